"""Benchmark loading: folders of splits, single files, templates, and one clear line per bad input."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from skycurate.connectors.benchmarks import BenchmarkError, load_benchmark
from skycurate.errors import ConfigError, SkycurateError
from skycurate.schemas.leakage import (
    BENCHMARK_ITEM_SCHEMA,
    BenchmarkSpec,
    DecontaminateConfig,
    load_benchmark_specs,
    parse_benchmark_arg,
    parse_benchmark_specs,
)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


QA = [{"question": "What is 2 + 3?", "answer": "5", "uid": "q1"},
      {"question": "小明有几个苹果？", "answer": "三个", "uid": "q2"}]


def test_folder_with_splits_jsonl_gz_and_parquet(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    _jsonl(folder / "test.jsonl", [{"text": "alpha"}, {"text": "beta"}])
    with gzip.open(folder / "train.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "gamma"}) + "\n\n" + json.dumps({"text": "delta"}) + "\n")
    pq.write_table(pa.table({"text": ["epsilon"], "n": [1]}), folder / "reference-00000-of-00001.parquet")
    (folder / "README.md").write_text("not a split")

    tables = load_benchmark(BenchmarkSpec(name="toy", path=str(folder)))

    assert set(tables) == {"train", "test", "reference"}
    for split, t in tables.items():
        assert t.schema == BENCHMARK_ITEM_SCHEMA
        assert set(t["split"].to_pylist()) == {split}
        assert set(t["benchmark"].to_pylist()) == {"toy"}
    assert tables["test"].to_pylist() == [
        {"benchmark": "toy", "split": "test", "item_id": "test-0", "text": "alpha"},
        {"benchmark": "toy", "split": "test", "item_id": "test-1", "text": "beta"}]
    assert tables["train"]["text"].to_pylist() == ["gamma", "delta"]   # blank line skipped, not an item
    assert tables["train"]["item_id"].to_pylist() == ["train-0", "train-1"]
    assert tables["reference"]["text"].to_pylist() == ["epsilon"]
    # Only the requested splits are read.
    assert set(load_benchmark(BenchmarkSpec(name="toy", path=str(folder)), splits=["test"])) == {"test"}


def test_single_file_is_the_test_split_with_template_and_id_field(tmp_path):
    path = _jsonl(tmp_path / "gsm.jsonl", QA)
    spec = BenchmarkSpec(name="gsm", path=str(path), template="Q: {question}\nA: {answer}", id_field="uid")
    tables = load_benchmark(spec)
    assert list(tables) == ["test"]
    assert tables["test"].to_pylist() == [
        {"benchmark": "gsm", "split": "test", "item_id": "q1", "text": "Q: What is 2 + 3?\nA: 5"},
        {"benchmark": "gsm", "split": "test", "item_id": "q2", "text": "Q: 小明有几个苹果？\nA: 三个"}]


def test_text_field_and_parquet_single_file(tmp_path):
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"prompt": ["one", "two"], "idx": [7, 8]}), path)
    t = load_benchmark(BenchmarkSpec(name="b", path=str(path), text_field="prompt", id_field="idx"))["test"]
    assert t["text"].to_pylist() == ["one", "two"]
    assert t["item_id"].to_pylist() == ["7", "8"]


def _error(spec: BenchmarkSpec, splits=None) -> str:
    with pytest.raises(BenchmarkError) as e:
        load_benchmark(spec, splits=splits)
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, SkycurateError)
    return msg


def test_missing_folder_or_file(tmp_path):
    msg = _error(BenchmarkSpec(name="gone", path=str(tmp_path / "nope")))
    assert msg == f"benchmark gone: {tmp_path / 'nope'} does not exist"
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    (empty_dir / "notes.txt").write_text("x")
    msg = _error(BenchmarkSpec(name="e", path=str(empty_dir)))
    assert "no train/test/reference" in msg and "notes.txt" in msg and str(empty_dir) in msg


def test_missing_requested_split(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    _jsonl(folder / "test.jsonl", [{"text": "a"}])
    msg = _error(BenchmarkSpec(name="b", path=str(folder)), splits=["test", "train"])
    assert msg.startswith("benchmark b: no train split in") and "found test" in msg
    single = _jsonl(tmp_path / "one.jsonl", [{"text": "a"}])
    msg = _error(BenchmarkSpec(name="one", path=str(single)), splits=["reference"])
    assert "no reference split" in msg and "single file is taken as the test split" in msg


def test_empty_file(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text("\n  \n")
    assert _error(BenchmarkSpec(name="b", path=str(path))) == f"benchmark b: {path} is empty (no records)"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "e.parquet")
    assert "is empty" in _error(BenchmarkSpec(name="b", path=str(tmp_path / "e.parquet")))


def test_field_not_present_lists_fields(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", QA)
    msg = _error(BenchmarkSpec(name="b", path=str(path)))
    assert msg == (f"benchmark b: no field 'text' in {path}:1 (fields: question, answer, uid); "
                   "set text_field or template")
    msg = _error(BenchmarkSpec(name="b", path=str(path), text_field="problem"))
    assert msg == f"benchmark b: no field 'problem' in {path}:1 (fields: question, answer, uid)"
    msg = _error(BenchmarkSpec(name="b", path=str(path), text_field="question", id_field="id"))
    assert "no id field 'id'" in msg and "uid" in msg


def test_template_key_missing(tmp_path):
    rows = [QA[0], {"question": "second", "solution": "x"}]
    path = _jsonl(tmp_path / "test.jsonl", rows)
    msg = _error(BenchmarkSpec(name="b", path=str(path), template="{question}\n{answer}"))
    assert msg == f"benchmark b: template key 'answer' is not a field of {path}:2 (fields: question, solution)"
    msg = _error(BenchmarkSpec(name="b", path=str(path), template="{question"))
    assert "bad template" in msg


def test_non_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    msg = _error(BenchmarkSpec(name="b", path=str(path)))
    assert msg == f"benchmark b: {path}:2 is not UTF-8 (byte 0xe9 at column 14)"


def test_bad_json_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": "broken"\n', encoding="utf-8")
    msg = _error(BenchmarkSpec(name="b", path=str(path)))
    assert re.fullmatch(rf"benchmark b: {re.escape(str(path))}:3 is not valid JSON: .+ \(column \d+\)", msg)
    path.write_text('["a list"]\n', encoding="utf-8")
    assert _error(BenchmarkSpec(name="b", path=str(path))) == f"benchmark b: {path}:1 is a JSON list, not an object"


def test_duplicate_item_ids(tmp_path):
    path = _jsonl(tmp_path / "test.jsonl", [{"text": "a", "id": 1}, {"text": "b", "id": 1}])
    msg = _error(BenchmarkSpec(name="b", path=str(path), id_field="id"))
    assert msg == f"benchmark b: item id '1' of {path}:2 repeats {path}:1"


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "test.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "a"}\n' * 50)[:30])
    assert _error(BenchmarkSpec(name="b", path=str(path))).startswith(f"benchmark b: cannot read {path}")


# ---- specs from the CLI and from YAML

def test_parse_cli_and_yaml_specs(tmp_path):
    spec = parse_benchmark_arg("gsm8k=data/gsm8k")
    assert (spec.name, spec.path, spec.text_field, spec.template) == ("gsm8k", "data/gsm8k", None, None)
    for bad in ("gsm8k", "=path", "name=", "bad name=x"):
        with pytest.raises(ConfigError):
            parse_benchmark_arg(bad)

    yml = tmp_path / "b.yaml"
    yml.write_text("- name: gsm8k\n  path: data/gsm8k\n  template: \"{question}\\n{answer}\"\n  id_field: id\n"
                   "- mmlu=data/mmlu.jsonl\n")
    specs = load_benchmark_specs(yml)
    assert [s.name for s in specs] == ["gsm8k", "mmlu"]
    assert specs[0].template == "{question}\n{answer}" and specs[0].id_field == "id"
    assert parse_benchmark_specs({"benchmarks": [{"name": "a", "path": "p"}]})[0].name == "a"

    yml.write_text("- name: a\n  path: p\n  txt_field: x\n")
    with pytest.raises(ConfigError, match=r"unknown key '0?\.?txt_field'|unknown key 'txt_field'"):
        load_benchmark_specs(yml)
    yml.write_text("- {name: a, path: p}\n- {name: a, path: q}\n")
    with pytest.raises(ConfigError, match="appears twice"):
        load_benchmark_specs(yml)
    with pytest.raises(ConfigError, match="not both"):
        parse_benchmark_specs([{"name": "a", "path": "p", "text_field": "t", "template": "{t}"}])


def test_decontaminate_config_defaults_and_strictness():
    cfg = DecontaminateConfig()
    assert (cfg.n, cfg.mode, cfg.window_chars, cfg.min_fragment_chars, cfg.max_splits, cfg.splits) == (
        13, "gpt3", 200, 200, 10, ["test"])
    assert DecontaminateConfig(splits=["test", "train", "test"]).splits == ["test", "train"]
    with pytest.raises(ValidationError, match="mode"):
        DecontaminateConfig(mode="soft")
    with pytest.raises(ValidationError, match="splits"):
        DecontaminateConfig(splits=["validation"])
    with pytest.raises(ValidationError, match="ngram"):
        DecontaminateConfig(ngram=13)
