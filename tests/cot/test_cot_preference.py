"""Preference pairs (MPO / Skywork-VL Reward style): candidates, ties, length band, dedup, accounting."""

from __future__ import annotations

import sys
from pathlib import Path

import hashlib
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from skycurate.schemas.cot import DROPPED_SCHEMA
from skycurate.schemas.cot_rl import PAIR_SCHEMA, PreferenceConfig
from skycurate.stages.cot.preference import (
    pair_id,
    preference_counts,
    preference_pairs,
    similarity,
)

sys.path.insert(0, str(Path(__file__).parent))
from generation_rows import GEN_SCHEMA  # noqa: E402
VOCAB = [f"w{i}" for i in range(500)]


def text(seed: int, n: int = 60) -> str:
    """A chain of ``n`` words that shares almost no 3-gram with another seed's."""
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def row(pid: str, i: int, correct: bool | None, **kw) -> dict:
    """A generations row with defaults (distinct text per prompt and sample); ``kw`` overrides any column."""
    base = {"prompt_id": pid, "sample_index": i, "question": f"What is {pid}?", "reference_answer": "42",
            "answer_type": "numeric", "lang": "en", "domain": "math", "source": None,
            "completion": text(sum(map(ord, pid)) * 100 + i),
            "finish_reason": "stop", "completion_tokens": 10, "error": None,
            "extracted_answer": "42" if correct else "7", "correct": correct, "quality_issues": [],
            "selected": False}
    return base | kw


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=GEN_SCHEMA)


def sample_map(gens: pa.Table) -> dict[tuple[str, int], dict]:
    return {(r["prompt_id"], r["sample_index"]): r for r in gens.to_pylist()}


def test_basic_pair_layout_exact():
    gens = table([row("p", 0, True), row("p", 1, False)])
    pairs, rejected = preference_pairs(gens, PreferenceConfig(), template_system="Reason, then answer.")
    assert pairs.schema == PAIR_SCHEMA and rejected.schema == DROPPED_SCHEMA and rejected.num_rows == 0
    (p,) = pairs.to_pylist()
    src = sample_map(gens)
    assert p["prompt"] == [{"role": "system", "content": "Reason, then answer."},
                           {"role": "user", "content": "What is p?"}]
    assert p["chosen"] == [{"role": "assistant", "content": src[("p", 0)]["completion"]}]
    assert p["rejected"] == [{"role": "assistant", "content": src[("p", 1)]["completion"]}]
    expected_id = hashlib.sha256(b"p\x1f0\x1f1").hexdigest()[:16]
    sim = p.pop("similarity")
    assert 0.0 <= sim < 0.2
    assert {k: v for k, v in p.items() if k not in ("prompt", "chosen", "rejected")} == {
        "pair_id": expected_id, "prompt_id": "p", "chosen_sample_index": 0, "rejected_sample_index": 1,
        "chosen_correct": True, "rejected_correct": False, "rejected_kind": "wrong",
        "chosen_extracted_answer": "42", "rejected_extracted_answer": "7", "chosen_tokens": 10,
        "rejected_tokens": 10, "reference_answer": "42", "answer_type": "numeric"}
    assert pair_id("p", 0, 1) == expected_id
    assert preference_pairs(gens, PreferenceConfig())[0]["prompt"].to_pylist() == [
        [{"role": "user", "content": "What is p?"}]]


def test_chosen_clean_correct_rejected_bad_and_ordering():
    rows = [
        row("p", 0, True, completion_tokens=30),
        row("p", 1, True, completion_tokens=20),
        row("p", 2, True, completion_tokens=35, selected=True),
        row("p", 3, True, quality_issues=["repetition"]),          # correct but sloppy: rejected low_quality
        row("p", 4, True, finish_reason="length"),                  # truncated correct: never chosen
        row("p", 5, False, finish_reason="length", extracted_answer=None),
        row("p", 6, False),                                         # wrong with an answer: first rejected
        row("p", 7, None, error="engine down"),                     # errored: unused
        row("p", 8, None),                                          # unverified clean: unused
    ]
    gens = table(rows)
    pairs, rejected = preference_pairs(gens, PreferenceConfig(max_pairs_per_prompt=10))
    got = [(p["chosen_sample_index"], p["rejected_sample_index"], p["rejected_kind"]) for p in pairs.to_pylist()]
    # chosen: selected first (2), then shorter (1 then 0); rejected: wrong w/ answer, truncated (4 then 5), low quality
    assert got == [(2, 6, "wrong"), (1, 4, "truncated"), (0, 5, "truncated")]
    src = sample_map(gens)
    for p in pairs.to_pylist():
        c, r = src[("p", p["chosen_sample_index"])], src[("p", p["rejected_sample_index"])]
        assert c["correct"] is True and not c["quality_issues"] and c["finish_reason"] != "length" and c["error"] is None
        assert r["error"] is None and (r["correct"] is False or r["finish_reason"] == "length" or r["quality_issues"])
    assert rejected.num_rows == 0
    # without prefer_selected the shortest chosen comes first
    pairs, _ = preference_pairs(gens, PreferenceConfig(max_pairs_per_prompt=1, prefer_selected=False))
    assert pairs["chosen_sample_index"].to_pylist() == [1]


def test_low_quality_rejected_kind():
    gens = table([row("p", 0, True), row("p", 1, True, quality_issues=["loop"])])
    (p,) = preference_pairs(gens, PreferenceConfig())[0].to_pylist()
    assert (p["rejected_kind"], p["rejected_correct"], p["rejected_sample_index"]) == ("low_quality", True, 1)


def test_identical_and_near_identical_are_ties():
    long = text(7, n=200)
    words = long.split()
    words[100] = "changed"
    one_word_changed = " ".join(words)
    assert similarity(long, one_word_changed) >= 0.9
    rows = [row("same", 0, True, completion="a  b\nc d"), row("same", 1, False, completion="a b c   d"),
            row("near", 0, True, completion=long), row("near", 1, False, completion=one_word_changed),
            row("far", 0, True, completion=long), row("far", 1, False, completion=text(8, n=200))]
    pairs, rejected = preference_pairs(table(rows), PreferenceConfig())
    assert pairs["prompt_id"].to_pylist() == ["far"]
    assert pairs["similarity"].to_pylist()[0] < 0.2
    assert rejected.select(["id", "stage", "reason"]).to_pylist() == [
        {"id": "near", "stage": "preference", "reason": "only_ties"},
        {"id": "same", "stage": "preference", "reason": "only_ties"}]
    details = dict(zip(rejected["id"].to_pylist(), rejected["detail"].to_pylist()))
    assert details["same"].startswith("1 candidate pairs of 1 chosen x 1 rejected dropped: 1 identical, 0 near")
    assert "0 identical, 1 near-identical (MinHash >= 0.9)" in details["near"]
    # a looser threshold keeps the near pair
    pairs, _ = preference_pairs(table(rows), PreferenceConfig(near_duplicate_threshold=1.0))
    assert sorted(pairs["prompt_id"].to_pylist()) == ["far", "near"]


def test_tied_candidate_falls_back_to_next_rejected():
    long = text(3, n=200)
    rows = [row("p", 0, True, completion=long), row("p", 1, False, completion=long + " more"),
            row("p", 2, False)]
    pairs, _ = preference_pairs(table(rows), PreferenceConfig())
    assert pairs.select(["chosen_sample_index", "rejected_sample_index"]).to_pylist() == [
        {"chosen_sample_index": 0, "rejected_sample_index": 2}]


def test_max_pairs_per_prompt_and_each_sample_once():
    rows = [row("p", i, i < 4) for i in range(8)]  # 4 correct, 4 wrong
    for k, expected in ((1, 1), (2, 2), (3, 3), (10, 4)):
        pairs, _ = preference_pairs(table(rows), PreferenceConfig(max_pairs_per_prompt=k))
        assert pairs.num_rows == expected
        assert len(set(pairs["chosen_sample_index"].to_pylist())) == expected
        assert len(set(pairs["rejected_sample_index"].to_pylist())) == expected
    assert pairs.select(["chosen_sample_index", "rejected_sample_index"]).to_pylist() == [
        {"chosen_sample_index": c, "rejected_sample_index": r} for c, r in ((0, 4), (1, 5), (2, 6), (3, 7))]


def test_length_ratio_band():
    rows = [row("long", 0, True, completion_tokens=100), row("long", 1, False, completion_tokens=10),
            row("short", 0, True, completion_tokens=10), row("short", 1, False, completion_tokens=100),
            row("ok", 0, True, completion_tokens=40), row("ok", 1, False, completion_tokens=10)]
    pairs, rejected = preference_pairs(table(rows), PreferenceConfig())  # band [0, 4]
    assert sorted(pairs["prompt_id"].to_pylist()) == ["ok", "short"]
    assert rejected.select(["id", "reason"]).to_pylist() == [{"id": "long", "reason": "only_ties"}]
    assert "1 length ratio outside [0, 4]" in rejected["detail"][0].as_py()
    pairs, rejected = preference_pairs(table(rows), PreferenceConfig(min_length_ratio=0.5, max_length_ratio=None))
    assert sorted(pairs["prompt_id"].to_pylist()) == ["long", "ok"]
    assert rejected["id"].to_pylist() == ["short"]


def test_cross_prompt_dedup_of_identical_triples():
    a, b = text(1), text(2)
    rows = [row(pid, i, ok, question="Same question?", completion=t)
            for pid in ("x1", "x2") for i, (ok, t) in enumerate(((True, a), (False, b)))]
    rows += [row("x3", 0, True, question="Other question?", completion=a),
             row("x3", 1, False, question="Other question?", completion=b)]
    gens = table(rows)
    pairs, rejected = preference_pairs(gens, PreferenceConfig())
    assert pairs["prompt_id"].to_pylist() == ["x1", "x3"]     # another question is another pair
    assert rejected.select(["id", "reason"]).to_pylist() == [{"id": "x2", "reason": "duplicate_pairs"}]
    # within one prompt: two copies of the same chosen/rejected texts give one pair
    gens = table([row("y", 0, True, completion=a), row("y", 1, True, completion=a),
                  row("y", 2, False, completion=b), row("y", 3, False, completion=b)])
    assert preference_pairs(gens, PreferenceConfig())[0].num_rows == 1


def test_no_correct_and_no_wrong_reasons():
    rows = ([row("n1", i, False) for i in range(3)]
            + [row("n2", 0, True), row("n2", 1, True)]
            + [row("n3", 0, None, error="boom")]
            + [row("ok", 0, True), row("ok", 1, False)])
    pairs, rejected = preference_pairs(table(rows), PreferenceConfig())
    assert pairs["prompt_id"].to_pylist() == ["ok"]
    assert rejected.select(["id", "reason", "detail"]).to_pylist() == [
        {"id": "n1", "reason": "no_correct_chain",
         "detail": "0 clean correct chains of 3 samples (0 correct, 0 engine errors, 3 wrong/truncated/low quality)"},
        {"id": "n2", "reason": "no_wrong_chain",
         "detail": "2 clean correct chains, 0 wrong/truncated/low-quality chains of 2 samples (0 engine errors)"},
        {"id": "n3", "reason": "no_correct_chain",
         "detail": "0 clean correct chains of 1 samples (0 correct, 1 engine errors, 0 wrong/truncated/low quality)"},
    ]


def test_reconciliation():
    rows = ([row(f"p{k}", i, (i + k) % 3 == 0) for k in range(6) for i in range(3)]
            + [row("allgood", i, True) for i in range(2)] + [row("allbad", i, False) for i in range(2)])
    gens = table(rows)
    pairs, rejected = preference_pairs(gens, PreferenceConfig())
    prompts_in = set(gens["prompt_id"].to_pylist())
    paired = set(pairs["prompt_id"].to_pylist())
    assert len(prompts_in) == len(paired) + rejected.num_rows
    assert paired.isdisjoint(rejected["id"].to_pylist())
    assert preference_counts(gens, pairs, rejected) == {
        "prompts_in": 8, "prompts_with_pairs": 6, "pairs": 6, "rejected": 2,
        "no_correct_chain": 1, "no_wrong_chain": 1}


def test_deterministic_and_pair_ids_stable():
    rows = [row(f"p{k}", i, i % 2 == 0, completion_tokens=10 + i) for k in range(4) for i in range(5)]
    gens = table(rows)
    a = preference_pairs(gens, PreferenceConfig())
    b = preference_pairs(gens, PreferenceConfig())
    c = preference_pairs(gens.take(list(range(gens.num_rows))[::-1]), PreferenceConfig())
    assert a[0].equals(b[0]) and a[1].equals(b[1]) and a[0].equals(c[0]) and a[1].equals(c[1])
    ids = a[0]["pair_id"].to_pylist()
    assert len(set(ids)) == len(ids) and all(len(i) == 16 for i in ids)
    assert ids == [pair_id(p["prompt_id"], p["chosen_sample_index"], p["rejected_sample_index"])
                   for p in a[0].to_pylist()]


def test_datasets_reads_written_pairs(tmp_path):
    datasets = pytest.importorskip("datasets")
    gens = table([row("p", 0, True), row("p", 1, False), row("q", 0, True), row("q", 1, False, finish_reason="length")])
    pairs, _ = preference_pairs(gens, PreferenceConfig(), template_system="sys")
    path = tmp_path / "pairs.parquet"
    pq.write_table(pairs, path)
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert ds.num_rows == 2
    assert ds.to_list() == pairs.to_pylist()
    assert ds[1]["rejected_kind"] == "truncated"
    assert ds[0]["chosen"][0]["role"] == "assistant"


def test_bad_config():
    with pytest.raises(ValidationError):
        PreferenceConfig(min_length_ratio=2.0, max_length_ratio=1.0)
    with pytest.raises(ValidationError):
        PreferenceConfig(max_pairs_per_prompt=0)
    with pytest.raises(ValidationError):
        PreferenceConfig(threshold=0.5)
