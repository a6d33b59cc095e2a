"""The versioned Parquet catalog: layout, manifest, resolve, open, lineage, verify, fsspec stores."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skycurate import catalog
from skycurate.catalog import Catalog, DatasetRef, Parent, Producer
from skycurate.errors import DatasetNotFound, InvalidReference, PublishError, StoreError
from skycurate.stages.accounting import AccountingError, FunnelStep

MANIFEST_KEYS = {"name", "version", "created_at", "num_rows", "schema", "files", "parents", "producer", "stats"}


def table(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                     "text": [f"doc {i}" for i in range(start, start + n)]})


def test_publish_lays_out_version_manifest_and_latest(store):
    producer = Producer(flow="f", flow_run_id="run-1", task="t", code_version="0.1.0+abc", config={"k": 1})
    ref = catalog.publish("web/clean", table(5), producer=producer, stats={"funnel": []}, store=store)

    assert ref == DatasetRef(store=store, name="web/clean", version="v0001")
    folder = Path(store, "web", "clean", "v0001")
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "part-00000.parquet"]
    assert Path(store, "web", "clean", "_latest").read_text().strip() == "v0001"

    manifest = json.loads((folder / "_manifest.json").read_text())
    assert MANIFEST_KEYS <= manifest.keys()
    assert manifest["num_rows"] == 5
    assert manifest["producer"] == {"flow": "f", "flow_run_id": "run-1", "task": "t",
                                    "code_version": "0.1.0+abc", "config": {"k": 1}}
    assert [f["name"] for f in manifest["schema"]["fields"]] == ["id", "text"]
    (entry,) = manifest["files"]
    assert entry["rows"] == 5 and entry["bytes"] == (folder / "part-00000.parquet").stat().st_size
    import hashlib
    assert entry["sha256"] == hashlib.sha256((folder / "part-00000.parquet").read_bytes()).hexdigest()


def test_versions_increment_and_published_versions_do_not_change(store):
    first = catalog.publish("web/clean", table(3), store=store)
    before = Path(first.uri, "_manifest.json").read_bytes()
    second = catalog.publish("web/clean", table(4), parents=[first], store=store)

    assert (first.version, second.version) == ("v0001", "v0002")
    assert Path(first.uri, "_manifest.json").read_bytes() == before
    assert catalog.resolve("web/clean@latest", store=store) == second
    assert catalog.resolve("web/clean", store=store) == second
    assert catalog.resolve("web/clean@v0001", store=store) == first
    assert catalog.resolve("web/clean@1", store=store) == first
    assert catalog.open("web/clean@v0001", store=store).count_rows() == 3
    assert Catalog(store).latest_pointer("web/clean") == "v0002"


def test_large_input_is_split_into_parts_with_row_counts(store):
    ref = catalog.publish("web/big", table(10), store=store, max_rows_per_file=4)
    m = catalog.manifest(ref)
    assert [(f.path, f.rows) for f in m.files] == [
        ("part-00000.parquet", 4), ("part-00001.parquet", 4), ("part-00002.parquet", 2)]
    assert catalog.open(ref).to_table().column("id").to_pylist() == list(range(10))


def test_timestamps_are_written_in_microseconds(store):
    ts = pa.array([dt.datetime(2024, 5, 1, 12, 0, 0, 123456)], pa.timestamp("ns", tz="UTC"))
    ref = catalog.publish("web/ts", pa.table({"fetched": ts}), store=store)
    schema = pq.read_schema(catalog.Catalog(store).file_paths(ref)[0])
    assert schema.field("fetched").type == pa.timestamp("us", tz="UTC")
    assert catalog.manifest(ref).schema_["fields"][0]["type"] == "timestamp[us, tz=UTC]"


def test_empty_table_publishes_one_file_that_keeps_the_schema(store):
    ref = catalog.publish("web/empty", table(0), store=store)
    m = catalog.manifest(ref)
    assert m.num_rows == 0 and len(m.files) == 1
    assert catalog.open(ref).schema.names == ["id", "text"]


def test_record_batch_iterables_and_writer_callables(store):
    batches = table(6).to_batches(max_chunksize=2)
    assert catalog.open(catalog.publish("a/batches", iter(batches), store=store)).count_rows() == 6

    def writer(folder_url: str) -> None:
        path = folder_url.removeprefix("file://")
        pq.write_table(table(2), os.path.join(path, "x-1.parquet"))
        pq.write_table(table(3, start=2), os.path.join(path, "x-2.parquet"))
        Path(path, "_SUCCESS").touch()

    ref = catalog.publish("a/writer", writer, store=store)
    assert [f.path for f in catalog.manifest(ref).files] == ["part-00000.parquet", "part-00001.parquet"]
    assert sorted(catalog.open(ref).to_table().column("id").to_pylist()) == list(range(5))
    assert not Path(ref.uri, "_SUCCESS").exists()


def test_failed_publish_leaves_nothing_visible_and_next_publish_succeeds(store):
    def broken_writer(folder_url: str) -> None:
        pq.write_table(table(2), os.path.join(folder_url.removeprefix("file://"), "half.parquet"))
        raise RuntimeError("disk full")

    with pytest.raises(PublishError, match="disk full"):
        catalog.publish("web/clean", broken_writer, store=store)
    assert Catalog(store).versions("web/clean") == []
    assert not Path(store, "web", "clean", "_staging").exists()

    def stats_that_do_not_reconcile(num_rows: int) -> dict:
        return {"funnel": [FunnelStep(stage="x", rows_in=10, rows_out=num_rows).model_dump()]}

    with pytest.raises(AccountingError, match="10 rows in != 3 kept"):
        catalog.publish("web/clean", table(3), stats=stats_that_do_not_reconcile, store=store)
    assert Catalog(store).versions("web/clean") == []

    assert catalog.publish("web/clean", table(3), store=store).version == "v0001"


def test_resolve_errors_name_what_exists(store):
    catalog.publish("web/clean", table(1), store=store)
    with pytest.raises(DatasetNotFound, match=r"unknown dataset 'web/other'.*known: web/clean"):
        catalog.resolve("web/other", store=store)
    with pytest.raises(DatasetNotFound, match=r"no version v0007.*versions: v0001"):
        catalog.resolve("web/clean@v0007", store=store)
    for bad in ("clean", "Web/Clean", "web/clean@Seven!", "web/clean@v12", "a/b/c"):
        with pytest.raises(InvalidReference):
            catalog.resolve(bad, store=store)
    with pytest.raises(DatasetNotFound, match=r"web/clean has no tag 'seven'.*tags: none"):   # tag syntax
        catalog.resolve("web/clean@seven", store=store)
    with pytest.raises(StoreError, match="does not exist"):
        Catalog(os.path.join(store, "nowhere")).names()
    with pytest.raises(StoreError, match="cannot open store"):
        Catalog("nosuchprotocol://x")


def test_lineage_walks_parents_including_external_files(store):
    source = Parent(name="crawl/part-0.warc.gz", uri="s3://bucket/crawl/part-0.warc.gz", sha256="ab" * 32)
    raw = catalog.publish("web/raw", table(4), parents=[source], store=store)
    clean = catalog.publish("web/clean", table(3), parents=[raw], store=store)
    bench = catalog.publish("bench/gsm8k", table(2), store=store)
    decon = catalog.publish("web/decon", table(2), parents=[clean, "bench/gsm8k@latest", raw], store=store)

    tree = catalog.lineage(decon)
    assert tree.label == "web/decon@v0001" and tree.num_rows == 2
    assert [p.label for p in tree.parents] == ["web/clean@v0001", "bench/gsm8k@v0001", "web/raw@v0001"]
    clean_node = tree.parents[0]
    assert [p.label for p in clean_node.parents] == ["web/raw@v0001"]
    assert clean_node.parents[0].parents[0].uri == source.uri
    assert clean_node.parents[0].parents[0].sha256 == source.sha256
    assert tree.parents[2].parents == []  # seen once already: listed, not expanded twice
    assert bench.version == "v0001"


def test_verify_detects_corruption_missing_and_unlisted_files(store):
    ref = catalog.publish("web/clean", table(100), store=store, max_rows_per_file=50)
    assert catalog.verify(ref).ok

    part = Path(ref.uri, "part-00001.parquet")
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    report = catalog.verify(ref)
    assert not report.ok
    assert any(p.startswith("part-00001.parquet: sha256") for p in report.problems)

    part.unlink()
    Path(ref.uri, "part-00009.parquet").write_bytes(Path(ref.uri, "part-00000.parquet").read_bytes())
    problems = catalog.verify(ref).problems
    assert "part-00001.parquet: missing" in problems
    assert "part-00009.parquet: not in the manifest" in problems


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_fsspec_urls_work_like_local_paths(scheme, tmp_path):
    url = f"memory://skycurate-test-{uuid.uuid4().hex}" if scheme == "memory" else f"file://{tmp_path}/store"
    first = catalog.publish("web/clean", table(5), store=url)
    second = catalog.publish("web/clean", table(7), parents=[first], store=url, max_rows_per_file=3)

    assert second == DatasetRef(store=url, name="web/clean", version="v0002")
    assert catalog.resolve("web/clean@latest", store=url) == second
    assert catalog.open(second).count_rows() == 7
    assert catalog.verify(second).ok
    assert [p.label for p in catalog.lineage(second).parents] == ["web/clean@v0001"]
    assert Catalog(url).names() == ["web/clean"]
    assert Catalog(url).latest_pointer("web/clean") == "v0002"


def test_scratch_folder_is_private_and_removed_even_on_error(store):
    cat = Catalog(store)
    cat.publish("t/a", pa.table({"x": [1]}))
    with cat.scratch("extract") as url:
        assert url.startswith("file://") and "/_scratch/extract-" in url
        path = url.removeprefix("file://")
        pq.write_table(pa.table({"x": [1, 2]}), os.path.join(path, "part.parquet"))
        assert cat.names() == ["t/a"]  # scratch is never a dataset
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.join(store, "_scratch"))
    with pytest.raises(RuntimeError):
        with cat.scratch("x") as url:
            raise RuntimeError("job died")
    assert not os.path.exists(url.removeprefix("file://"))


def test_publish_survives_a_concurrent_publisher_removing_the_staging_parent(store, monkeypatch):
    """The race of two publishers: B removes the empty ``_staging`` between A's two mkdirs."""
    cat = Catalog(store)
    cat.publish("race/data", pa.table({"x": [1]}))  # the dataset folder exists; _staging was removed
    real_makedirs = cat.fs.makedirs
    removed = []

    def makedirs_while_b_cleans_up(path, exist_ok=False):
        if "_staging" in path and not removed:
            parent = os.path.dirname(path)
            os.makedirs(parent, exist_ok=True)   # A creates the parent ...
            os.rmdir(parent)                     # ... B's _remove_if_empty takes it away again
            removed.append(parent)
            raise FileNotFoundError(2, "No such file or directory", path)  # ... so A's child mkdir fails
        return real_makedirs(path, exist_ok=exist_ok)

    monkeypatch.setattr(cat.fs, "makedirs", makedirs_while_b_cleans_up)
    ref = cat.publish("race/data", pa.table({"x": [2]}))
    assert removed and ref.version == "v0002"
    assert cat.open(ref).to_table().column("x").to_pylist() == [2]


def test_all_or_nothing_commits_together_or_not_at_all(store):
    from skycurate.stages.accounting import AccountingError

    def check(n_clean: int) -> dict:
        raise AccountingError(f"input 4 != kept {n_clean} + rejected 2: counts do not reconcile")

    cat = Catalog(store)
    with pytest.raises(AccountingError, match="counts do not reconcile"):
        with cat.all_or_nothing():
            first = cat.publish("group/rejected", pa.table({"x": [1, 2]}))
            assert cat.manifest(first).num_rows == 2  # readable inside the block, not visible outside
            assert Catalog(store).names() == []
            cat.publish("group/clean", pa.table({"x": [3]}), [first], stats=check)
    assert cat.names() == [] and not os.path.exists(os.path.join(store, "group", "rejected", "_claims", "v0001"))

    with cat.all_or_nothing():
        rejected = cat.publish("group/rejected", pa.table({"x": [1, 2]}))
        clean = cat.publish("group/clean", pa.table({"x": [3]}), [rejected])
    assert (rejected.version, clean.version) == ("v0001", "v0001")  # the released claim was reused
    assert cat.names() == ["group/clean", "group/rejected"]
    assert [p.name for p in cat.manifest("group/clean@latest").parents] == ["group/rejected"]
    with pytest.raises(PublishError, match="do not nest"):
        with cat.all_or_nothing():
            with cat.all_or_nothing():
                pass


def test_attachments_are_read_back_through_the_catalog_on_any_store(store):
    cat = Catalog(store)
    ref = cat.publish("web/clean", table(2), attachments={"_funnel.png": b"\x89PNG-bytes"})
    assert cat.attachment(ref, "_funnel.png") == b"\x89PNG-bytes"
    assert cat.attachment("web/clean@latest", "_funnel.png") == b"\x89PNG-bytes"
    with pytest.raises(DatasetNotFound, match="has no attachment '_other.png'"):
        cat.attachment(ref, "_other.png")
    mem = Catalog(f"memory://att-{uuid.uuid4().hex[:8]}")
    mref = mem.publish("web/clean", table(1), attachments={"_charts.png": b"chart"})
    assert mem.attachment(mref, "_charts.png") == b"chart"


def test_work_and_cache_folders_are_local_paths_inside_a_local_store_and_outside_a_remote_one(store, tmp_path,
                                                                                              monkeypatch):
    local = Catalog(store)
    assert local.work_dir("cot", "abc") == Path(store, "_work", "cot", "abc")
    assert local.cache_dir("git") == Path(store, "_cache", "git")
    monkeypatch.setenv("SKYCURATE_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("SKYCURATE_CACHE_DIR", str(tmp_path / "cache"))
    remote_a, remote_b = Catalog("memory://store-a"), Catalog("memory://store-b")
    wa, wb = remote_a.work_dir("swe", "x"), remote_b.work_dir("swe", "x")
    assert wa.is_absolute() and wa.parent.parent.parent == tmp_path / "work" and wa.parts[-2:] == ("swe", "x")
    assert wa != wb                                    # one folder per store: journals never mix
    assert remote_a.cache_dir("git").parent.parent == tmp_path / "cache"
    for bad in ("..", "", "a/b"):
        with pytest.raises(ValueError, match="bad _work folder part"):
            local.work_dir("cot", bad)
