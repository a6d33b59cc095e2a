"""Token counts (``stages.tokens``, ``skycurate run tokens``): the Arrow and Spark paths equal the
tokenizer's own count per row and in total (English, Chinese, null, chat messages), totals per
language and source are exact, the command publishes ``<name>-tokens`` with lineage and reuses its
cache, a changed tokenizer recounts, and a missing tokenizer is one line before Spark starts."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from skycurate.catalog import Catalog
from skycurate.cli import app
from skycurate.errors import SkycurateError
from skycurate.schemas.tokens import TOKENS_COLUMN, TokenizerConfig
from skycurate.stages import tokens as T

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Tokenizers count what a trainer's loss will see, not characters or words.",
    "Spark runs the same count on every worker, batch by batch.",
    "天空是蓝色的，今天的天气很好。",
    "我们用分词器统计训练语料中的词元数量。",
    "Mixed 文本 with both English and 中文 words.",
]
ROWS = [  # id, text, lang, source: English, Chinese, a null text and an empty one
    ("d0", CORPUS[0], "en", "crawl-a"), ("d1", CORPUS[3], "zh", "crawl-a"), ("d2", None, "en", "crawl-b"),
    ("d3", CORPUS[5], "zh", "crawl-b"), ("d4", "", None, "crawl-a"), ("d5", CORPUS[1] * 3, "en", None),
    ("d6", CORPUS[4] + CORPUS[2], "zh", "crawl-b"),
]


def train_bpe(path: Path, vocab_size: int = 300) -> Path:
    """A byte-level BPE trained on ``CORPUS`` (every text encodes, Chinese too) that adds ``<s>``
    when special tokens are asked for; saved as ``tokenizer.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>"],
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory) -> Path:
    return train_bpe(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="module")
def tok_folder(tmp_path_factory, tok_file) -> Path:
    """The same tokenizer as a Hugging Face folder (``save_pretrained``)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tok-folder")
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(str(tok_file)), bos_token="<s>",
                            eos_token="</s>").save_pretrained(str(folder))
    assert (folder / "tokenizer.json").is_file()
    return folder


def direct(tok_path: Path, texts: list[str | None], special: bool = False) -> list[int]:
    """The reference: ``Tokenizer.encode`` one text at a time (null = the empty text)."""
    from tokenizers import Tokenizer

    path = tok_path / "tokenizer.json" if tok_path.is_dir() else tok_path
    tok = Tokenizer.from_file(str(path))
    return [len(tok.encode(t or "", add_special_tokens=special).ids) for t in texts]


def _table() -> pa.Table:
    return pa.table({k: [r[i] for r in ROWS] for i, k in enumerate(("id", "text", "lang", "source"))})


def _grouped(keys: list, counts: list[int]) -> dict[str, int]:
    out: Counter = Counter()
    for k, n in zip(keys, counts, strict=True):
        out["unknown" if k is None else k] += n
    return dict(sorted(out.items()))


def _messages_table() -> pa.Table:
    msg = pa.struct([("role", pa.string()), ("content", pa.string())])
    rows = [[{"role": "user", "content": CORPUS[0]}, {"role": "assistant", "content": CORPUS[3]}],
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": CORPUS[4]},
             {"role": "assistant", "content": None}],
            None, []]
    return pa.table({"id": ["m0", "m1", "m2", "m3"], "messages": pa.array(rows, pa.list_(msg)),
                     "source": ["sft", "sft", "rl", "rl"]})


def _joined_contents(table: pa.Table) -> list[str]:
    return ["\n".join(t["content"] for t in turns or [] if t["content"] is not None)
            for turns in table["messages"].to_pylist()]


# ----------------------------------------------------------------------------------- the stage


@pytest.mark.parametrize("variant", ["file", "folder"])
def test_arrow_counts_equal_a_direct_tokenizer_count(variant, tok_file, tok_folder):
    path = tok_file if variant == "file" else tok_folder
    cfg = TokenizerConfig(tokenizer=str(path), batch_rows=2)   # several encode_batch calls
    counted = T.count_table(_table(), cfg)
    want = direct(path, [r[1] for r in ROWS])
    assert counted[TOKENS_COLUMN].to_pylist() == want and counted[TOKENS_COLUMN].type == pa.int64()
    assert want[2] == want[4] == 0 and all(n > 0 for i, n in enumerate(want) if i not in (2, 4))
    stats = T.token_stats(counted, cfg)
    assert stats["tokens"] == sum(want) and stats["rows"] == len(ROWS) and stats["tokenizer"] == str(path)
    assert stats["by_lang"] == _grouped([r[2] for r in ROWS], want)
    assert stats["by_source"] == _grouped([r[3] for r in ROWS], want)
    assert sum(stats["by_lang"].values()) == sum(stats["by_source"].values()) == stats["tokens"]
    # counting again replaces the column; special tokens add the <s> of each text
    again = T.count_table(counted, cfg.model_copy(update={"add_special_tokens": True}))
    assert again.column_names.count(TOKENS_COLUMN) == 1
    assert again[TOKENS_COLUMN].to_pylist() == [n + 1 for n in want] == direct(path, [r[1] for r in ROWS], True)


def test_chat_messages_count_every_turns_content(tok_file):
    cfg = TokenizerConfig(tokenizer=str(tok_file))
    table = _messages_table()
    assert T.text_column(table.column_names, cfg) == "messages"
    counted = T.count_table(table, cfg)
    want = direct(tok_file, _joined_contents(table))
    assert counted[TOKENS_COLUMN].to_pylist() == want and want[2] == want[3] == 0
    assert T.token_stats(counted, cfg)["by_source"] == _grouped(table["source"].to_pylist(), want)


def test_swe_instances_count_the_problem_statement_per_repo(tok_file):
    """What the SWE flow does to swe/instances (its Docker run is too costly here): the issue text by
    default, totals per repository."""
    from skycurate.schemas.swe import INSTANCE_SCHEMA

    rows = [{"instance_id": f"i{i}", "repo": repo, "base_commit": "c", "patch": "p", "test_patch": "t",
             "problem_statement": text} for i, (repo, text) in enumerate(
        [("o/a", CORPUS[0]), ("o/b", CORPUS[3]), ("o/a", None), ("o/b", CORPUS[2])])]
    table = pa.Table.from_pylist(rows, INSTANCE_SCHEMA)
    cfg = TokenizerConfig(tokenizer=str(tok_file))
    counted = T.count_table(table, cfg, "swe/instances")
    want = direct(tok_file, [r["problem_statement"] for r in rows])
    assert counted[TOKENS_COLUMN].to_pylist() == want
    stats = T.token_stats(counted, cfg, ("lang", "source", "repo"))
    assert stats["by_repo"] == _grouped([r["repo"] for r in rows], want) and "by_lang" not in stats


def test_spark_path_equals_the_arrow_path(spark, tok_folder):
    cfg = TokenizerConfig(tokenizer=str(tok_folder), batch_rows=3)
    for table, texts in ((_table(), [r[1] for r in ROWS]), (_messages_table(), _joined_contents(_messages_table()))):
        df = spark.createDataFrame(table).repartition(3)
        counted = T.tokens_on_spark(df, cfg)
        got = {r["id"]: r[TOKENS_COLUMN] for r in counted.select("id", TOKENS_COLUMN).collect()}
        want = direct(tok_folder, texts)
        assert got == dict(zip(table["id"].to_pylist(), want, strict=True))
        assert T.token_stats_on_spark(counted, cfg) == T.token_stats(T.count_table(table, cfg), cfg)


def test_a_tokenizer_replaced_in_place_is_loaded_again(tmp_path, tok_file):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(tok_file.read_bytes())
    cfg = TokenizerConfig(tokenizer=str(path))
    before = T.count_texts(CORPUS, cfg)
    train_bpe(path, vocab_size=270)   # fewer merges: more tokens
    assert T.count_texts(CORPUS, cfg) == direct(path, CORPUS) != before


def test_tokenizer_errors_are_one_line(tmp_path, tok_file):
    with pytest.raises(SkycurateError, match=r"^tokenizer not found: /no/such/tok \(a folder with tokenizer.json"):
        T.load_counter(TokenizerConfig(tokenizer="/no/such/tok"))
    with pytest.raises(SkycurateError, match="^tokenizer not found: .*a folder with tokenizer.json"):
        T.load_counter(TokenizerConfig(tokenizer=str(tmp_path)))          # a folder without tokenizer.json
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SkycurateError, match=r"^cannot load the tokenizer .*bad.json: Exception"):
        T.load_counter(TokenizerConfig(tokenizer=str(bad)))
    with pytest.raises(SkycurateError, match=r"^the dataset has no column 'body' \(it has id, text"):
        T.count_table(_table(), TokenizerConfig(tokenizer=str(tok_file), text_column="body"))
    with pytest.raises(SkycurateError, match="has none of the text columns"):
        T.count_table(pa.table({"x": [1]}), TokenizerConfig(tokenizer=str(tok_file)))


# ---------------------------------------------------------------------------- skycurate run tokens


@pytest.fixture
def docs_store(tmp_path) -> str:
    store = str(tmp_path / "store")
    Catalog(store).publish("corpus/docs", _table(), max_rows_per_file=3)
    return store


def _cli(*args: str):
    return CliRunner().invoke(app, ["run", "tokens", *args], catch_exceptions=False)


def test_run_tokens_end_to_end(docs_store, tmp_path, tok_file, prefect_harness, spark):
    tok = tmp_path / "tok" / "tokenizer.json"
    tok.parent.mkdir()
    tok.write_bytes(tok_file.read_bytes())
    res = _cli("--dataset", "corpus/docs@latest", "--tokenizer", str(tok), "--store", docs_store, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["datasets"]["counted"]["ref"] == "corpus/docs-tokens@v0001"
    catalog = Catalog(docs_store)
    table = catalog.open("corpus/docs-tokens@v0001").to_table()
    assert table.column_names == ["id", "text", "lang", "source", TOKENS_COLUMN]
    want = dict(zip([r[0] for r in ROWS], direct(tok, [r[1] for r in ROWS]), strict=True))
    assert dict(zip(table["id"].to_pylist(), table[TOKENS_COLUMN].to_pylist(), strict=True)) == want
    assert sorted(table["text"].to_pylist(), key=str) == sorted((r[1] for r in ROWS), key=str)   # the same rows

    m = catalog.manifest("corpus/docs-tokens@v0001")
    sha = hashlib.sha256(tok.read_bytes()).hexdigest()
    assert m.stats["tokens"] == out["stats"] == {
        "tokenizer": str(tok), "tokens": sum(want.values()), "rows": len(ROWS),
        "by_lang": _grouped([r[2] for r in ROWS], list(want.values())),
        "by_source": _grouped([r[3] for r in ROWS], list(want.values())),
        "tokenizer_sha256": sha, "add_special_tokens": False, "text_column": "text"}
    assert [(p.name, p.version, p.sha256) for p in m.parents] == [("corpus/docs", "v0001", None),
                                                                  ("tokenizer", None, sha)]
    assert m.stats["funnel"] == [{"stage": "tokens", "rows_in": 7, "rows_out": 7, "rejected": 0, "quarantined": 0,
                                  "bytes_in": None, "bytes_out": None}]

    # unchanged dataset and tokenizer: cached, nothing new; the human report prints the totals
    again = _cli("--dataset", "corpus/docs@latest", "--tokenizer", str(tok), "--store", docs_store)
    assert again.exit_code == 0, again.output
    assert f"tokens: {sum(want.values()):,} in 7 rows" in again.stdout
    assert catalog.versions("corpus/docs-tokens") == ["v0001"]

    # a changed tokenizer (same path) recounts into a new version
    train_bpe(tok, vocab_size=270)
    res = _cli("--dataset", "corpus/docs@latest", "--tokenizer", str(tok), "--store", docs_store, "--json")
    assert res.exit_code == 0, res.output
    recount = catalog.open("corpus/docs-tokens@v0002").to_table()
    want2 = dict(zip([r[0] for r in ROWS], direct(tok, [r[1] for r in ROWS]), strict=True))
    assert want2 != want
    assert dict(zip(recount["id"].to_pylist(), recount[TOKENS_COLUMN].to_pylist(), strict=True)) == want2
    assert json.loads(res.stdout)["stats"]["tokens"] == sum(want2.values())


@pytest.mark.parametrize("args,message", [
    (["--tokenizer", "{tmp}/nope"], "error: tokenizer not found: {tmp}/nope (a folder with tokenizer.json"),
    (["--tokenizer", "{tok}", "--text-column", "body"],
     "error: corpus/docs@v0001 has no column 'body' (it has id, text, lang, source): fix tokens.text_column"),
    ([], "error: no tokenizer: pass --tokenizer"),
])
def test_run_tokens_errors_are_one_line_before_spark_starts(docs_store, tmp_path, tok_file, monkeypatch, args,
                                                            message):
    import skycurate.flows._backends as backends

    def no_backends(*a, **k):
        raise AssertionError("Spark and Prefect must not start")

    monkeypatch.setattr(backends, "local_backends", no_backends)
    args = [a.format(tmp=tmp_path, tok=tok_file) for a in args]
    res = _cli("--dataset", "corpus/docs", *args, "--store", docs_store)
    assert res.exit_code == 1 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(tmp=tmp_path)), res.stderr


def test_the_swe_validate_task_counts_swe_instances(tmp_path, tok_file, monkeypatch, prefect_harness):
    """The SWE flow's last task with ``tokens`` set, its Docker validation replaced by a stand-in that
    accepts every candidate (a real SWE run needs Docker; the counting is what is checked here)."""
    import skycurate.stages.swe.validate as swe_validate
    from skycurate.flows.swe_mining import validate
    from skycurate.schemas.swe import INSTANCE_SCHEMA, REJECTED_SCHEMA, ValidationConfig

    rows = [{"instance_id": f"o__{repo[2]}-{i}", "repo": repo, "base_commit": "c", "patch": "p", "test_patch": "t",
             "problem_statement": text} for i, (repo, text) in enumerate(
        [("o/a", CORPUS[1]), ("o/b", CORPUS[4]), ("o/a", CORPUS[5])])]
    catalog = Catalog(str(tmp_path / "store"))
    candidates = catalog.publish("swe/candidates", pa.Table.from_pylist(rows, INSTANCE_SCHEMA))
    mine_rejected = catalog.publish("swe/mine_rejected", REJECTED_SCHEMA.empty_table())
    monkeypatch.setattr(swe_validate, "validate_all",
                        lambda rows, *a, **k: [{"kind": "instance", "row": dict(r)} for r in rows])
    cfg = TokenizerConfig(tokenizer=str(tok_file))
    out = validate.fn(store=catalog.url, candidates=candidates, mine_rejected=mine_rejected, n_repos=2,
                      python="3.11", cfg=ValidationConfig(), tokens=cfg, tokenizer=T.checked_pin(cfg))
    table = catalog.open(out["instances"]).to_table()
    want = direct(tok_file, [r["problem_statement"] for r in rows])
    assert table[TOKENS_COLUMN].to_pylist() == want
    m = catalog.manifest(out["instances"])
    assert m.stats["validated"] == 3 and m.stats["tokens"]["tokens"] == sum(want)
    assert m.stats["tokens"]["by_repo"] == _grouped([r["repo"] for r in rows], want)
    assert m.parents[-1].name == "tokenizer" and m.parents[-1].sha256 == m.stats["tokens"]["tokenizer_sha256"]
