"""The judge through real engines: a tiny model that memorised its replies gives the same verdicts
through transformers and a real ``vllm serve``; journalled replies are reused without opening the
engine; and the distill flow with a judge scores prompts (R1V penalty computed, an unparsable reply
quarantined) and judges undecided answers, every count reconciled."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

from skycurate.catalog import Catalog
from skycurate.cli import app
from skycurate.schemas.cot_judge import JudgeConfig, fill
from skycurate.schemas.engine import EngineConfig
from skycurate.stages.cot.judge import Judge, Reply, judge_samples, parse_verdict, score_prompts
from skycurate.stages.cot.select import repetition_penalty

SHORT = {"equivalence_template": "Q: {question}\nRef: {reference}\nAns: {answer}\nSame?\n",
         "scores_template": "Rate: {question}\n",
         "reasoning_template": "Check: {question}\nExpl: {explanation}\nSol: {response}\n"}

ROWS = pa.Table.from_pylist([
    {"prompt_id": "p2", "sample_index": 0, "question": "Shape?", "reference_answer": "an isosceles triangle",
     "answer_type": "math", "extracted_answer": "isosceles triangle", "completion": "...", "correct": None,
     "verify_method": "math_verify", "verify_error": "unparseable_reference", "explanation": None},
    {"prompt_id": "p2", "sample_index": 1, "question": "Shape?", "reference_answer": "an isosceles triangle",
     "answer_type": "math", "extracted_answer": "scalene", "completion": "...", "correct": None,
     "verify_method": "math_verify", "verify_error": "unparseable_reference", "explanation": None},
    {"prompt_id": "p3", "sample_index": 0, "question": "Why 7?", "reference_answer": "7", "answer_type": "numeric",
     "extracted_answer": "7", "completion": "guess 7", "correct": True, "verify_method": "numeric",
     "verify_error": None, "explanation": "3 + 4 = 7"},
])
PROMPTS = pa.Table.from_pylist([
    {"id": "sky", "question": "What colour is the sky?", "images": [], "s_v": None, "s_t": None, "s_i": None},
    {"id": "dots", "question": "Count the dots.", "images": [], "s_v": None, "s_t": None, "s_i": None},
], pa.schema([("id", pa.string()), ("question", pa.string()), ("images", pa.list_(pa.binary())),
              ("s_v", pa.float64()), ("s_t", pa.float64()), ("s_i", pa.float64())]))
REPLIES = {"eq:p2:0": "Verdict: [[YES]]", "eq:p2:1": "It depends on the angles.", "rs:p3:0": "Verdict: [[NO]]",
           "sc:sky": '{"s_v": 0.2, "s_t": 0.9, "s_i": 0.1}', "sc:dots": "A fine question.",
           # the flow's prompts (below): scores for two, prose for the third
           "sc:f1": '{"s_v": 0.0, "s_t": 1.0, "s_i": 0.5}', "sc:f2": '{"s_v": 0.6, "s_t": 0.3, "s_i": 0.9}',
           "sc:f3": "Hard to rate."}
FLOW_PROMPTS = [
    # the smoke teacher answers 77 greedily without a penalty (it is barely trained): the reference follows
    # it, so that the chains are correct by rule and their reasoning goes to the judge. Given scores of 1
    # mean no penalty, and given scores are never re-judged.
    {"id": "f1", "question": "What is 12+30?", "reference_answer": "77", "answer_type": "numeric",
     "explanation": "12 plus 30 is 77 in this puzzle", "s_v": 1.0, "s_t": 1.0, "s_i": 1.0},
    # a free-form reference: the rules cannot read it, the judge is asked about every answer
    {"id": "f2", "question": "What is 21+21?", "reference_answer": "forty-two", "answer_type": "numeric"},
    {"id": "f3", "question": "What is 7+5?", "reference_answer": "12", "answer_type": "numeric"},
]


def _cfg(**engine) -> JudgeConfig:
    return JudgeConfig(engine=EngineConfig(**engine), mode="raw", **SHORT,
                       sampling={"max_new_tokens": 64, "temperature": 0.0})


def _prompt_texts() -> dict[str, str]:
    """Each memorised prompt, by the key of REPLIES, built by the stage itself (a recording ask)."""
    seen: dict[str, str] = {}

    def record(requests):
        for r in requests:
            seen[r.id.replace("\x1f", ":")] = r.text
        return {r.id: Reply(REPLIES[r.id.replace("\x1f", ":")], None) for r in requests}

    cfg = _cfg(engine="openai", model="x", base_url="http://127.0.0.1:1/v1")
    judge_samples(ROWS, cfg, record)
    score_prompts(PROMPTS, cfg, record)
    for p in FLOW_PROMPTS:
        seen[f"sc:{p['id']}"] = fill(SHORT["scores_template"], question=p["question"])
    return seen


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    from skycurate.samples.judge import build_tiny_judge

    texts = _prompt_texts()
    return build_tiny_judge(tmp_path_factory.mktemp("judge"), [(texts[k], REPLIES[k]) for k in sorted(texts)])


def _expect_verdicts(judge_cfg: JudgeConfig, work) -> Judge:
    with Judge(judge_cfg, work) as client:
        overrides, quarantine = judge_samples(ROWS, judge_cfg, client.ask)
        scored, dropped, _ = score_prompts(PROMPTS, judge_cfg, client.ask)
    got = {(r["prompt_id"], r["sample_index"]): r for r in overrides.to_pylist()}
    assert (got[("p2", 0)]["correct"], got[("p2", 0)]["verify_method"]) == (True, "judge")
    assert got[("p2", 0)]["judge_output"] == "Verdict: [[YES]]"
    assert (got[("p2", 1)]["correct"], got[("p2", 1)]["verify_error"]) == (None, "judge_unparsable")
    assert (got[("p3", 0)]["correct"], got[("p3", 0)]["verify_error"]) == (False, "reasoning_rejected")
    assert quarantine.select(["prompt_id", "task", "reason", "judge_output"]).to_pylist() == [
        {"prompt_id": "p2", "task": "equivalence", "reason": "judge_unparsable",
         "judge_output": "It depends on the angles."}]
    assert scored.select(["id", "s_v", "s_t", "s_i"]).to_pylist() == [{"id": "sky", "s_v": 0.2, "s_t": 0.9,
                                                                        "s_i": 0.1}]
    assert [(d["id"], d["reason"]) for d in dropped] == [("dots", "judge_unparsable")]
    return client


def test_tiny_judge_through_transformers_and_journalled_replies(judge_dir, tmp_path):
    cfg = _cfg(engine="transformers", model=str(judge_dir), device="cpu")
    client = _expect_verdicts(cfg, tmp_path / "work")
    assert client.asked == 5
    # the same questions again: every reply comes from the journal, the engine never opens
    again = _expect_verdicts(cfg, tmp_path / "work")
    assert again._engine is None and again.asked == 5


def test_tiny_judge_through_a_real_vllm_server(judge_dir, vllm_serve, tmp_path):
    with vllm_serve(judge_dir, "judge", args=["--dtype", "float32", "--max-model-len", "512",
                                              "--enforce-eager"]) as url:
        _expect_verdicts(_cfg(engine="openai", model="judge", base_url=url), tmp_path / "work")


@pytest.mark.usefixtures("prefect_harness")
def test_distill_flow_with_a_judge(judge_dir, smoke_teacher, tmp_path):
    teacher, _ = smoke_teacher
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in FLOW_PROMPTS))
    config = tmp_path / "distill.yaml"
    config.write_text(yaml.safe_dump({"judge": {"mode": "raw", **SHORT, "sampling": {"max_new_tokens": 64,
                                                                                      "temperature": 0.0}},
                                      "prepare": {"near_dedup": False}}))
    store = str(tmp_path / "store")
    res = CliRunner().invoke(app, [
        "run", "distill", "--config", str(config), "--prompts", str(prompts), "--engine", "transformers",
        "--model", str(teacher), "--template", "Question: {question}\\nAnswer:", "--samples", "2",
        "--max-new-tokens", "40", "--temperature", "0", "--judge-model", str(judge_dir), "--judge-engine",
        "transformers", "--judge-scores", "--store", store, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    catalog, s = Catalog(store), out["stats"]

    # scores: f1's given, f2's judged, f3's prose reply quarantined (never given a default)
    scored = {r["id"]: r for r in catalog.open("cot/prompts-scored@latest").to_table().to_pylist()}
    assert {k: (r["s_v"], r["s_t"], r["s_i"]) for k, r in scored.items()} == {"f1": (1.0, 1.0, 1.0),
                                                                            "f2": (0.6, 0.3, 0.9)}
    quarantine = {r["id"]: r for r in catalog.open("cot/quarantine@latest").to_table().to_pylist()}
    assert set(quarantine) == {"f3"}
    assert (quarantine["f3"]["stage"], quarantine["f3"]["reason"], quarantine["f3"]["record"]) == (
        "judge", "judge_unparsable", "Hard to rate.")
    # the R1V penalty is computed from the judged scores
    gens = catalog.open("cot/generations@latest").to_table().to_pylist()
    assert {g["prompt_id"] for g in gens} == {"f1", "f2"}
    for g in gens:
        want = repetition_penalty(*(scored[g["prompt_id"]][k] for k in ("s_v", "s_t", "s_i")))
        assert g["repetition_penalty"] == pytest.approx(want)
    # f2's free-form reference: every answer went to the judge; verdicts are the parsed replies, a reply
    # that parses to nothing leaves the sample unverified and sits in cot/judge-quarantine
    judged = [g for g in gens if g["prompt_id"] == "f2" and g["extracted_answer"]]
    assert judged and all(g["verify_method"] == "judge" for g in judged)
    assert all(g["correct"] is parse_verdict(g["judge_output"]) for g in judged)
    # f1 has an explanation: its correct chains had their reasoning checked (a NO rejects the chain)
    checked = [g for g in gens if g["prompt_id"] == "f1" and g["reasoning_output"] is not None]
    assert len(checked) == 2 and [g for g in gens if g["prompt_id"] == "f1" and g["verify_method"] == "numeric"
                                  and g["extracted_answer"] == "77"] == checked
    for g in checked:
        verdict = parse_verdict(g["reasoning_output"])
        assert g["correct"] is verdict and g["verify_error"] == {True: None, False: "reasoning_rejected",
                                                                  None: "judge_unparsable"}[verdict]
    assert s["judge"]["asked"] == len(judged) + len(checked)
    jq = catalog.open("cot/judge-quarantine@latest").to_table().to_pylist()
    assert sorted((r["task"], r["prompt_id"], r["sample_index"]) for r in jq) == sorted(
        [("equivalence", g["prompt_id"], g["sample_index"]) for g in judged if g["correct"] is None]
        + [("reasoning", g["prompt_id"], g["sample_index"]) for g in checked if g["correct"] is None])
    # accounting, judge step included
    assert s["prompts_in"] == 3 == s["prompts_with_chain"] + s["rejected"] + s["quarantined"]
    steps = {f["stage"]: f for f in s["funnel"]}
    assert (steps["judge"]["rows_in"], steps["judge"]["rows_out"], steps["judge"]["quarantined"]) == (3, 2, 1)
