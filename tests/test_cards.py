"""Dataset cards and exports: the card's YAML header is what Hugging Face ``datasets`` expects, and
``load_dataset(folder)`` reads exactly the rows of a version folder (or an export) that has one."""

from __future__ import annotations

import base64
import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from skycurate.catalog import Catalog, Parent, Producer
from skycurate.catalog.card_files import version_card, write_version_card
from skycurate.catalog.cards import card_header, size_category
from skycurate.catalog.export import ExportError, ShardSize, export_version, parse_shard_size
from skycurate.catalog.hf_features import _mirror
from skycurate.cli import app
from skycurate.errors import PublishError

FEATURES = [
    {"name": "text", "dtype": "string"},
    {"name": "n", "dtype": "int64"},
    {"name": "tags", "list": "string"},
    {"name": "image", "dtype": "binary"},
    {"name": "meta", "struct": [{"name": "source", "dtype": "string"}, {"name": "score", "dtype": "float64"}]},
]
FUNNEL = [{"stage": "ingest", "rows_in": 9, "rows_out": 7, "rejected": 0, "quarantined": 2},
          {"stage": "length_filter", "rows_in": 7, "rows_out": 5, "rejected": 2, "quarantined": 0}]


def known_table() -> pa.Table:
    return pa.table({
        "text": pa.array(["alpha", "beta", "gamma", "delta", "epsilon"], pa.string()),
        "n": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "tags": pa.array([["a"], [], ["b", "c"], None, ["d"]], pa.list_(pa.string())),
        "image": pa.array([b"\x89PNG\x00\x01", None, b"\xff\xd8\xff", b"", b"GIF89a"], pa.binary()),
        "meta": pa.array([{"source": "s1", "score": 0.5}, {"source": "s2", "score": None}, None,
                          {"source": "s1", "score": 1.0}, {"source": None, "score": 2.5}],
                         pa.struct([("source", pa.string()), ("score", pa.float64())])),
    })


@pytest.fixture
def hf(monkeypatch, tmp_path):
    """Hugging Face ``datasets`` offline, with its cache under tmp_path (env for a first import, its
    config for a module another test imported already)."""
    cache = tmp_path / "hf"
    for key, value in {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(cache),
                       "HF_DATASETS_CACHE": str(cache / "datasets")}.items():
        monkeypatch.setenv(key, value)
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    datasets.disable_progress_bars()
    yield datasets
    datasets.enable_progress_bars()


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def publish_known(store: str, **kwargs):
    cat = Catalog(store)
    raw = cat.publish("demo/raw", known_table())
    producer = Producer(flow="hello", flow_run_id="run-42", task="clean", code_version="0.1.0+abc",
                        config={"inputs": ["https://alice:hunter2@example.com/data.jsonl"], "min_chars": 3})
    stats = {"funnel": FUNNEL, "by_reason": {"length_filter:too_short": 2, "ingest:malformed_record": 2},
             "tokens": {"tokens": 1234, "rows": 5, "tokenizer": "tiktoken:cl100k_base",
                        "by_lang": {"en": 1000, "zh": 234},
                        "by_source": {"demo/raw@v0001": {"tokens": 1234, "rows": 5}}},
             "seed": 7}
    parents = [raw, Parent(name="sample.jsonl", uri="file:///data/sample.jsonl", sha256="ab" * 32)]
    ref = cat.publish("demo/clean", known_table(), parents, producer, stats, max_rows_per_file=2,
                      attachments={"_funnel.png": b"\x89PNG fake chart"}, **kwargs)
    return cat, ref


def rows_of(dataset) -> list[dict]:
    return [dict(r) for r in dataset]


# ---- the card ---------------------------------------------------------------------------------

def test_card_header_parses_with_exact_features_size_category_and_license(store):
    cat, ref = publish_known(store)
    card = version_card(cat, ref, license="cc-by-4.0", tags=["demo"])
    assert card.startswith("---\n")
    header = card_header(card)
    assert header["dataset_info"]["features"] == FEATURES
    assert header["dataset_info"]["splits"] == [{"name": "train", "num_bytes": cat.manifest(ref).num_bytes,
                                                 "num_examples": 5}]
    assert header["configs"] == [{"config_name": "default",
                                  "data_files": [{"split": "train", "path": "part-*.parquet"}]}]
    assert header["size_categories"] == ["n<1K"]
    assert header["license"] == "cc-by-4.0"
    assert header["tags"] == ["skycurate", "demo"]
    assert header["pretty_name"] == "demo/clean v0001"
    # without a license anywhere, the card says "unknown" and tells how to set one
    plain = version_card(cat, ref)
    assert card_header(plain)["license"] == "unknown"
    assert "No license was chosen" in plain


def test_card_body_tells_what_how_and_from_what(store):
    cat, ref = publish_known(store)
    card = version_card(cat, ref)
    body = card.split("\n---\n", 1)[1]
    assert "# demo/clean v0001" in body
    assert "| produced by | flow `hello`, task `clean`, run `run-42` |" in body
    assert "| code version | `0.1.0+abc` |" in body and "| rows | 5 |" in body
    assert "| files | 3 (`part-*.parquet`) |" in body
    assert "| length_filter | 7 | 5 | 2 | 0 |" in body                       # the funnel
    assert "| length_filter:too_short | 2 |" in body                         # reasons
    assert "1,234 tokens in 5 rows, counted with `tiktoken:cl100k_base`." in body
    assert "| en | 1,000 |" in body and "| demo/raw@v0001 | 1,234 | 5 |" in body
    assert "| seed | 7 |" in body
    assert "- `demo/raw@v0001`, 5 rows" in body                              # lineage
    assert "- `sample.jsonl`: `file:///data/sample.jsonl` (sha256 `abababababababab…`)" in body
    assert "![_funnel.png](_funnel.png)" in body
    assert "hunter2" not in card and "https://alice:***@example.com/data.jsonl" in body   # redacted config
    assert f'load_dataset("{ref.uri}", split="train")' in body
    assert f"read_parquet('{ref.uri}/part-*.parquet')" in body and "spark.read.parquet(" in body


@pytest.mark.parametrize("rows,label", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (9_999, "1K<n<10K"),
                                        (10_000, "10K<n<100K"), (250_000, "100K<n<1M"), (1_000_000, "1M<n<10M"),
                                        (10**8, "100M<n<1B"), (10**12, "n>1T")])
def test_size_category_uses_hugging_face_buckets(rows, label):
    assert size_category(rows) == label


def test_feature_mirror_matches_datasets_when_datasets_is_missing():
    """Without ``datasets`` installed the card's features come from a mirror of its conversion: the same."""
    import datasets

    types = [pa.null(), pa.bool_(), pa.int8(), pa.uint64(), pa.float16(), pa.float32(), pa.float64(), pa.string(),
             pa.large_string(), pa.binary(), pa.large_binary(), pa.binary(4), pa.date32(), pa.date64(),
             pa.time32("ms"), pa.time64("us"), pa.timestamp("us"), pa.timestamp("us", tz="UTC"), pa.duration("ms"),
             pa.decimal128(10, 2), pa.dictionary(pa.int32(), pa.string()), pa.list_(pa.string()),
             pa.large_list(pa.int64()), pa.list_(pa.float32(), 3), pa.list_(pa.list_(pa.int8())),
             pa.list_(pa.struct([("x", pa.string()), ("y", pa.list_(pa.binary()))])),
             pa.struct([("a", pa.int32()), ("b", pa.struct([("c", pa.large_list(pa.struct([("d", pa.bool_())])))]))])]
    schema = pa.schema([(f"c{i}", t) for i, t in enumerate(types)])
    assert _mirror(schema) == datasets.Features.from_arrow_schema(schema)._to_yaml_list()
    assert _mirror(pa.schema([("m", pa.map_(pa.string(), pa.int64()))])) is None   # no HF equivalent: left out


# ---- cards in the catalog ---------------------------------------------------------------------

def test_load_dataset_reads_exactly_the_version_after_datasets_card(store, cli, hf):
    cat, ref = publish_known(store)
    before = cat.manifest(ref)
    result = cli("datasets", "card", ref.label, "--store", store, "--license", "cc-by-4.0")
    assert result.exit_code == 0, result.output
    folder = Path(ref.uri)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "_funnel.png", "_manifest.json",
                                                         "part-00000.parquet", "part-00001.parquet",
                                                         "part-00002.parquet"]
    loaded = hf.load_dataset(str(folder))
    assert list(loaded) == ["train"]
    train = loaded["train"]
    assert train.num_rows == 5
    assert train.features.to_dict() == hf.Features.from_arrow_schema(known_table().schema).to_dict()
    assert rows_of(train) == known_table().to_pylist()
    assert train[3]["image"] == b"" and train[1]["image"] is None and train[2]["tags"] == ["b", "c"]
    # the version's data is untouched; the card is one more attachment, checked by verify
    after = cat.manifest(ref)
    assert after.model_dump(exclude={"attachments"}) == before.model_dump(exclude={"attachments"})
    card = next(a for a in after.attachments if a.path == "README.md")
    assert card.bytes == (folder / "README.md").stat().st_size
    assert cat.verify(ref).ok
    assert cli("datasets", "verify", ref.label, "--store", store).exit_code == 0
    (folder / "README.md").write_text((folder / "README.md").read_text() + "tampered\n")
    assert cat.verify(ref).problems == ["README.md: sha256 differs from the manifest"]


def test_regenerating_a_card_keeps_its_license_unless_told(store, cli):
    cat, ref = publish_known(store)
    assert cli("datasets", "card", ref.label, "--store", store, "--license", "mit", "--tag", "demo").exit_code == 0
    assert cli("datasets", "card", ref.label, "--store", store).exit_code == 0
    header = card_header(Path(ref.uri, "README.md").read_text())
    assert header["license"] == "mit" and header["tags"] == ["skycurate", "demo"]
    out = json.loads(cli("datasets", "card", ref.label, "--store", store, "--license", "apache-2.0",
                         "--json").stdout)
    assert out == {"dataset": ref.label, "card": f"{ref.uri}/README.md", "attached": True}
    assert card_header(Path(ref.uri, "README.md").read_text())["license"] == "apache-2.0"
    assert [a.path for a in cat.manifest(ref).attachments] == ["_funnel.png", "README.md"]
    assert cat.verify(ref).ok


def test_card_to_a_file_or_stdout_leaves_the_version_alone(store, cli, tmp_path):
    cat, ref = publish_known(store)
    out = tmp_path / "card.md"
    assert cli("datasets", "card", "demo/clean", "--store", store, "--out", str(out)).exit_code == 0
    assert card_header(out.read_text())["dataset_info"]["features"] == FEATURES
    printed = cli("datasets", "card", "demo/clean@v0001", "--store", store, "--out", "-")
    assert card_header(printed.stdout)["size_categories"] == ["n<1K"]
    assert [a.path for a in cat.manifest(ref).attachments] == ["_funnel.png"]
    assert not Path(ref.uri, "README.md").exists()


def test_a_bad_license_is_one_line_error(store, cli):
    publish_known(store)
    result = cli("datasets", "card", "demo/clean", "--store", store, "--license", "CC BY 4.0")
    assert result.exit_code == 1
    assert "is not a Hugging Face license id" in result.stderr and "Traceback" not in result.output


def test_publish_writes_the_card_when_the_config_asks(store, hf):
    cat = Catalog(store)
    producer = Producer(flow="f", config={"card": {"enabled": True, "license": "cc-by-4.0", "tags": ["web"]}})
    ref = cat.publish("demo/carded", known_table(), producer=producer, max_rows_per_file=3)
    assert [a.path for a in cat.manifest(ref).attachments] == ["README.md"]
    header = card_header(Path(ref.uri, "README.md").read_text())
    assert header["license"] == "cc-by-4.0" and header["tags"] == ["skycurate", "web"]
    assert cat.verify(ref).ok
    assert rows_of(hf.load_dataset(ref.uri)["train"]) == known_table().to_pylist()
    # off (the default) or card=False: no card; card=True: one with the defaults
    plain = cat.publish("demo/plain", known_table(), producer=Producer(config={"card": {"enabled": False}}))
    assert cat.manifest(plain).attachments == [] and not Path(plain.uri, "README.md").exists()
    off = cat.publish("demo/off", known_table(), producer=producer, card=False)
    assert cat.manifest(off).attachments == []
    on = cat.publish("demo/on", known_table(), card=True)
    assert card_header(cat.attachment(on, "README.md").decode())["license"] == "unknown"


def test_cards_on_an_object_store(s3_store):
    """Publish-time cards and cards attached later land on object stores as on a local disk."""
    cat = Catalog(s3_store)
    raw = cat.publish("demo/raw", known_table(), producer=Producer(config={"card": {"enabled": True}}))
    clean = cat.publish("demo/clean", known_table(), [raw], attachments={"_funnel.png": b"chart"})
    with cat.all_or_nothing():
        staged = cat.publish("demo/staged", known_table(), [clean], card=True)
    write_version_card(cat, clean, license="mit")
    for ref in (raw, clean, staged):
        assert cat.verify(ref).ok, cat.verify(ref).problems
        assert "README.md" in {a.path for a in cat.manifest(ref).attachments}
    assert card_header(cat.attachment(clean, "README.md").decode())["license"] == "mit"
    assert "- `demo/clean@v0001`, 5 rows\n  - `demo/raw@v0001`, 5 rows" in cat.attachment(staged, "README.md").decode()


def test_attach_names_and_replacing(store):
    cat, ref = publish_known(store)
    for bad in ("notes.txt", "_manifest.json", "_a/b.png"):
        with pytest.raises(PublishError):
            cat.attach(ref, bad, b"x")
    cat.attach(ref, "_report.json", b"{}")
    with pytest.raises(PublishError, match="already has an attachment"):
        cat.attach(ref, "_report.json", b"{}")
    cat.attach(ref, "_report.json", b'{"v": 2}', replace=True)
    assert cat.attachment(ref, "_report.json") == b'{"v": 2}'
    assert [a.path for a in cat.manifest(ref).attachments] == ["_funnel.png", "_report.json"]
    assert cat.verify(ref).ok


# ---- export -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,size", [("10", ShardSize(rows=10)), ("256MB", ShardSize(bytes=256 * 10**6)),
                                       ("1GiB", ShardSize(bytes=2**30)), ("1.5 kb", ShardSize(bytes=1500))])
def test_parse_shard_size(text, size):
    assert parse_shard_size(text) == size


@pytest.mark.parametrize("text", ["0", "ten", "10 rows", "-5", "1XB"])
def test_parse_shard_size_rejects_nonsense(text):
    with pytest.raises(ExportError):
        parse_shard_size(text)


def many(n: int = 25) -> pa.Table:
    return pa.concat_tables([known_table()] * (n // 5))


def test_export_parquet_shards_by_rows_reads_back_with_its_card(store, cli, hf, tmp_path):
    cat = Catalog(store)
    ref = cat.publish("demo/many", many(), attachments={"_funnel.png": b"chart"}, max_rows_per_file=7)
    dest = tmp_path / "out"
    result = cli("datasets", "export", ref.label, str(dest), "--store", store, "--shard-size", "10", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(f["path"], f["rows"]) for f in report["files"]] == [
        ("part-00000.parquet", 10), ("part-00001.parquet", 10), ("part-00002.parquet", 5)]
    assert sorted(os.listdir(dest)) == ["README.md", "_export.json", "_funnel.png", "part-00000.parquet",
                                        "part-00001.parquet", "part-00002.parquet"]
    header = card_header((dest / "README.md").read_text())
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "part-*.parquet"}]
    assert header["dataset_info"]["features"] == FEATURES
    assert "exported from | `demo/many@v0001`" in (dest / "README.md").read_text()
    assert rows_of(hf.load_dataset(str(dest))["train"]) == many().to_pylist()
    listed = json.loads((dest / "_export.json").read_text())
    import hashlib
    assert all(hashlib.sha256((dest / f["path"]).read_bytes()).hexdigest() == f["sha256"] for f in listed["files"])


def test_export_jsonl_base64_binary_and_shards_by_rows_and_bytes(store, hf, tmp_path):
    cat = Catalog(store)
    ref = cat.publish("demo/many", many())
    dest = tmp_path / "jsonl"
    report = export_version(cat, ref, str(dest), fmt="jsonl", shard_size=parse_shard_size("10"))
    assert [f.rows for f in report.files] == [10, 10, 5] and report.format == "jsonl"
    lines = [json.loads(line) for f in report.files for line in (dest / f.path).read_text().splitlines()]
    assert len(lines) == 25
    assert [base64.b64decode(r["image"]) if r["image"] is not None else None for r in lines] == \
        many().column("image").to_pylist()
    header = card_header((dest / "README.md").read_text())
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "part-*.jsonl"}]
    assert {"name": "image", "dtype": "string"} in header["dataset_info"]["features"]
    assert "base64" in (dest / "README.md").read_text()
    loaded = rows_of(hf.load_dataset(str(dest))["train"])
    expected = [{**r, "image": None if r["image"] is None else base64.b64encode(r["image"]).decode()}
                for r in many().to_pylist()]
    assert loaded == expected
    # gzip, sized in bytes: several shards, every row once
    small = tmp_path / "gz"
    report = export_version(cat, ref, str(small), fmt="jsonl", compress=True, shard_size=parse_shard_size("150B"))
    assert len(report.files) > 1 and all(f.path.endswith(".jsonl.gz") for f in report.files)
    assert sum(len(gzip.decompress((small / f.path).read_bytes()).splitlines()) for f in report.files) == 25
    assert len(hf.load_dataset(str(small))["train"]) == 25


def test_export_refuses_a_non_empty_destination_and_force_replaces_only_its_files(store, cli, tmp_path):
    cat = Catalog(store)
    ref = cat.publish("demo/many", many())
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    result = cli("datasets", "export", ref.label, str(dest), "--store", store)
    assert result.exit_code == 1 and "is not empty; pass --force" in result.stderr
    assert os.listdir(dest) == ["keep.txt"]
    export_version(cat, ref, str(dest), shard_size=ShardSize(rows=5), force=True)
    assert len(list(dest.glob("part-*.parquet"))) == 5
    result = cli("datasets", "export", ref.label, str(dest), "--store", store, "--force", "--shard-size", "20",
                 "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(dest)) == ["README.md", "_export.json", "keep.txt", "part-00000.jsonl",
                                        "part-00001.jsonl"]
    assert "exported demo/many@v0001" in result.stdout


def test_export_verifies_the_source_first(store, cli, tmp_path):
    cat = Catalog(store)
    ref = cat.publish("demo/many", many(), max_rows_per_file=10)
    part = Path(cat.file_paths(ref)[1])
    part.write_bytes(part.read_bytes()[:-1] + b"!")
    result = cli("datasets", "export", ref.label, str(tmp_path / "out"), "--store", store)
    assert result.exit_code == 1 and "fails verification, nothing exported" in result.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(ExportError, match="into the store itself"):
        export_version(cat, ref, os.path.join(store, "elsewhere"))


# ---- flows --------------------------------------------------------------------------------------

def test_flows_write_cards_when_their_config_asks(store, prefect_harness, spark):
    """``card.enabled`` in any flow config: every version the run publishes gets a card; a version a
    cached task returns (made before cards were on) gets one through the run report."""
    from skycurate.flows.hello import hello_flow
    from skycurate.schemas.config import CardConfig
    from skycurate.schemas.hello import HelloConfig

    cat = Catalog(store)
    hello_flow(store=store)
    names = ["hello/clean", "hello/quarantine", "hello/raw", "hello/rejected"]
    assert not any(Path(cat.resolve(n).uri, "README.md").exists() for n in names)

    carded = HelloConfig(card=CardConfig(enabled=True, license="cc-by-4.0"))
    hello_flow(store=store, config=carded)           # cached: the same versions; the main one gets a card
    assert cat.versions("hello/clean") == ["v0001"]
    assert card_header(cat.attachment("hello/clean@v0001", "README.md").decode())["license"] == "cc-by-4.0"
    assert "README.md" not in {a.path for a in cat.manifest("hello/raw@v0001").attachments}

    hello_flow(store=store, config=carded, force=True)   # new versions: each published with its card
    for name in names:
        ref = cat.resolve(name)
        assert ref.version == "v0002"
        assert "README.md" in {a.path for a in cat.manifest(ref).attachments}, name
        assert cat.verify(ref).ok
    card = cat.attachment("hello/clean", "README.md").decode()
    assert card_header(card)["license"] == "cc-by-4.0"
    assert "## Funnel" in card and "| length_filter |" in card and "- `hello/raw@v0002`" in card
