"""RL prompt pool (R1V2 Selective Sample Buffer): pass-rate band, reasons, verl/TRL layout, accounting."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from skycurate.errors import StageContractError
from skycurate.schemas.cot import DROPPED_SCHEMA
from skycurate.schemas.cot_rl import RL_POOL_SCHEMA, RLPoolConfig
from skycurate.stages.cot.rl_pool import rl_pool, rl_pool_counts

sys.path.insert(0, str(Path(__file__).parent))
from generation_rows import GEN_SCHEMA  # noqa: E402


def row(pid: str, i: int, correct: bool | None, **kw) -> dict:
    """A generations row with defaults; ``kw`` overrides any column."""
    base = {"prompt_id": pid, "sample_index": i, "question": f"What is {pid}?", "reference_answer": "42",
            "answer_type": "numeric", "lang": "en", "domain": "math", "source": None,
            "completion": f"<think>chain {pid} {i}</think> \\boxed{{42}}", "finish_reason": "stop",
            "completion_tokens": 10, "error": None, "extracted_answer": "42" if correct else "7",
            "correct": correct, "quality_issues": [], "selected": False}
    return base | kw


def prompt(pid: str, verdicts: list[bool | None], **kw) -> list[dict]:
    return [row(pid, i, v, **kw) for i, v in enumerate(verdicts)]


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=GEN_SCHEMA)


def mixed_table() -> pa.Table:
    return table(prompt("a", [True, False, True, False])
                 + prompt("b", [True, True, True, True])
                 + prompt("c", [False, False, False, False])
                 + prompt("d", [True, False, False, False]))


def test_default_band_keeps_only_mixed_prompts():
    pool, rejected = rl_pool(mixed_table(), RLPoolConfig())
    assert pool.schema == RL_POOL_SCHEMA and rejected.schema == DROPPED_SCHEMA
    assert pool["prompt_id"].to_pylist() == ["a", "d"]
    assert pool["pass_rate"].to_pylist() == [0.5, 0.25]
    assert pool["difficulty"].to_pylist() == [0.5, 0.75]
    assert rejected.to_pylist() == [
        {"id": "b", "stage": "rl_pool", "reason": "all_correct", "detail": "pass rate 1.00 (4/4) outside 0 < p < 1",
         "question": "What is b?", "record": None},
        {"id": "c", "stage": "rl_pool", "reason": "all_wrong", "detail": "pass rate 0.00 (0/4) outside 0 < p < 1",
         "question": "What is c?", "record": None},
    ]


def test_custom_band_with_bounds():
    cfg = RLPoolConfig(min_pass_rate=0.5, max_pass_rate=1.0, include_bounds=True)
    pool, rejected = rl_pool(mixed_table(), cfg)
    assert pool["prompt_id"].to_pylist() == ["a", "b"]
    assert {r["id"]: r["reason"] for r in rejected.to_pylist()} == {"c": "all_wrong", "d": "outside_band"}
    assert rejected.filter(pc.equal(rejected["id"], "d"))["detail"].to_pylist() == [
        "pass rate 0.25 (1/4) outside 0.5 <= p <= 1"]
    # without the bounds 0.5 and 1.0 are out
    pool, rejected = rl_pool(mixed_table(), RLPoolConfig(min_pass_rate=0.5, max_pass_rate=1.0))
    assert pool.num_rows == 0
    assert [r["reason"] for r in rejected.to_pylist()] == ["outside_band", "all_correct", "all_wrong", "outside_band"]


def test_errored_samples_are_ignored_and_all_errored_prompt_is_rejected():
    rows = (prompt("e", [True, False]) + [row("e", 2, None, error="engine timeout", completion=None)]
            + [row("f", i, None, error="boom") for i in range(3)]
            + prompt("g", [True, None, None]))  # null verdict without error: counts, not passing
    pool, rejected = rl_pool(table(rows), RLPoolConfig())
    assert pool.select(["prompt_id", "n_samples", "n_correct", "pass_rate"]).to_pylist() == [
        {"prompt_id": "e", "n_samples": 2, "n_correct": 1, "pass_rate": 0.5},
        {"prompt_id": "g", "n_samples": 3, "n_correct": 1, "pass_rate": 1 / 3},
    ]
    assert rejected.select(["id", "reason", "detail"]).to_pylist() == [
        {"id": "f", "reason": "no_samples", "detail": "every sample has an engine error"}]


def test_verl_and_trl_layout_exact():
    rows = prompt("q1", [True, False, False, False], source="gsm8k", domain="arith", lang="zh")
    pool, _ = rl_pool(table(rows), RLPoolConfig(system="Think step by step.",
                                                 user_template="Solve: {question} Put the answer in \\boxed{}."))
    (r,) = pool.to_pylist()
    assert r["prompt"] == [{"role": "system", "content": "Think step by step."},
                           {"role": "user", "content": "Solve: What is q1? Put the answer in \\boxed{}."}]
    assert r["reward_model"] == {"style": "rule", "ground_truth": "42"}
    assert r["data_source"] == "gsm8k" and r["ability"] == "reasoning"
    assert r["extra_info"] == {"index": 0, "prompt_id": "q1", "answer_type": "numeric", "pass_rate": 0.25,
                               "n_samples": 4, "n_correct": 1, "difficulty": 0.75}
    assert (r["solution"], r["reference_answer"], r["question"]) == ("42", "42", "What is q1?")
    assert (r["domain"], r["lang"], r["answer_type"]) == ("arith", "zh", "numeric")


def test_data_source_defaults_and_override():
    rows = prompt("a", [True, False]) + prompt("b", [True, False], source="mathv")
    pool, _ = rl_pool(table(rows), RLPoolConfig())
    assert pool["data_source"].to_pylist() == ["skycurate", "mathv"]
    pool, _ = rl_pool(table(rows), RLPoolConfig(data_source="openr1", ability="math"))
    assert pool["data_source"].to_pylist() == ["openr1", "openr1"]
    assert pool["ability"].to_pylist() == ["math", "math"]
    assert pool["prompt"].to_pylist()[0] == [{"role": "user", "content": "What is a?"}]


def test_rows_sorted_by_prompt_id_and_index_is_position():
    rows = prompt("z", [True, False]) + prompt("m", [False, True]) + prompt("b", [True, False])
    pool, _ = rl_pool(table(list(reversed(rows))), RLPoolConfig())
    assert pool["prompt_id"].to_pylist() == ["b", "m", "z"]
    assert [e["index"] for e in pool["extra_info"].to_pylist()] == [0, 1, 2]


def test_counts_reconcile():
    gens = mixed_table()
    pool, rejected = rl_pool(gens, RLPoolConfig())
    assert rl_pool_counts(gens, pool, rejected) == {
        "prompts_in": 4, "pool": 2, "rejected": 2, "all_correct": 1, "all_wrong": 1}


def test_deterministic_and_order_independent():
    gens = mixed_table()
    a = rl_pool(gens, RLPoolConfig())
    b = rl_pool(gens.take(list(range(gens.num_rows))[::-1]), RLPoolConfig())
    assert a[0].equals(b[0]) and a[1].equals(b[1])


def test_datasets_reads_written_pool(tmp_path):
    datasets = pytest.importorskip("datasets")
    pool, _ = rl_pool(mixed_table(), RLPoolConfig(system="sys"))
    path = tmp_path / "rl_pool.parquet"
    pq.write_table(pool, path)
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train",
                               cache_dir=str(tmp_path / "hf_cache"))
    assert ds.num_rows == 2
    assert ds.to_list() == pool.to_pylist()
    assert ds[0]["reward_model"] == {"style": "rule", "ground_truth": "42"}


def test_missing_column_and_bad_config():
    with pytest.raises(StageContractError, match="reference_answer"):
        rl_pool(mixed_table().drop_columns(["reference_answer"]), RLPoolConfig())
    with pytest.raises(ValidationError):
        RLPoolConfig(min_pass_rate=0.8, max_pass_rate=0.2)
    with pytest.raises(ValidationError):
        RLPoolConfig(max_pass_rate=1.5)
    with pytest.raises(ValidationError):
        RLPoolConfig(band=0.5)
    with pytest.raises(ValidationError):
        RLPoolConfig(user_template="no placeholder")
