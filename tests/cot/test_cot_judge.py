"""The judge stage's pure parts: strict reply parsing, which samples are asked, how verdicts apply."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from skycurate.schemas.cot_judge import JudgeConfig, fill
from skycurate.schemas.engine import EngineConfig
from skycurate.stages.cot.judge import Reply, judge_samples, parse_scores, parse_verdict, score_prompts

JUDGE = JudgeConfig(engine=EngineConfig(engine="openai", model="judge", base_url="http://127.0.0.1:1/v1"))


@pytest.mark.parametrize(("reply", "want"), [
    ("The two agree.\nVerdict: [[YES]]", True),
    ("Verdict: [[NO]]", False),
    ("First I thought [[NO]] but on reflection [[YES]]", True),     # the last marker wins
    ("<think>maybe [[NO]]</think>\nVerdict: [[YES]]", True),        # hidden reasoning is not the verdict
    ("Final verdict: no.", False),
    ("**Verdict:** yes", True),                                     # markdown bold around the label
    ("Verdict: **yes**", True),
    ("YES", True),
    ("no.", False),
    ("Equivalent", True),
    ("The answers look the same to me, I would say they match.", None),   # prose: not guessed
    ("yes and no", None),
    ("", None),
    (None, None),
    ("<think>unfinished reasoning [[YES]]", None),                 # only hidden text
])
def test_parse_verdict(reply, want):
    assert parse_verdict(reply) is want


@pytest.mark.parametrize(("reply", "want"), [
    ('{"s_v": 0.8, "s_t": 0.9, "s_i": 0.7}', (0.8, 0.9, 0.7)),
    ('Scores:\n```json\n{"s_v": 1, "s_t": 0, "s_i": 0.5}\n```', (1.0, 0.0, 0.5)),
    ('{"visual_dependency": 0.2, "Text Quality": "0.4", "image_information": 0.6}', (0.2, 0.4, 0.6)),
    ('{"s_v": 0.1, "s_t": 0.1, "s_i": 0.1} then corrected {"s_v": 0.3, "s_t": 0.2, "s_i": 0.9}', (0.3, 0.2, 0.9)),
    ('{"s_v": 8, "s_t": 9, "s_i": 7}', None),          # another scale is not rescaled
    ('{"s_v": 0.8, "s_t": 0.9}', None),                # a score missing
    ('{"s_v": true, "s_t": 0.9, "s_i": 0.1}', None),
    ("s_v is high, text is fine, image is informative", None),
    ("{not json}", None),
])
def test_parse_scores(reply, want):
    assert parse_scores(reply) == want


def test_fill_replaces_each_placeholder_once_and_leaves_json_alone():
    t = 'Q: {question}\nA: {answer}\nExample: {"s_v": 0.1}'
    assert fill(t, question="what is {answer}?", answer="42") == 'Q: what is {answer}?\nA: 42\nExample: {"s_v": 0.1}'


def test_config_checks_templates_and_sampling():
    with pytest.raises(ValidationError, match=r"equivalence_template must contain \{reference\}"):
        JudgeConfig(equivalence_template="{question} {answer}")
    with pytest.raises(ValidationError, match="n must be 1"):
        JudgeConfig(sampling={"n": 3})
    assert not JudgeConfig().enabled and JUDGE.enabled


ROWS = pa.Table.from_pylist([
    # rules decided: not asked
    {"prompt_id": "p1", "sample_index": 0, "question": "2+2?", "reference_answer": "4", "answer_type": "numeric",
     "extracted_answer": "4", "completion": "\\boxed{4}", "correct": True, "verify_method": "numeric",
     "verify_error": None, "explanation": None},
    # free-form reference the rules cannot read: asked, judge says yes
    {"prompt_id": "p2", "sample_index": 0, "question": "Shape?", "reference_answer": "an isosceles triangle",
     "answer_type": "math", "extracted_answer": "isosceles triangle", "completion": "...", "correct": None,
     "verify_method": "math_verify", "verify_error": "unparseable_reference", "explanation": None},
    # asked, judge replies prose: quarantined, stays undecided
    {"prompt_id": "p2", "sample_index": 1, "question": "Shape?", "reference_answer": "an isosceles triangle",
     "answer_type": "math", "extracted_answer": "scalene", "completion": "...", "correct": None,
     "verify_method": "math_verify", "verify_error": "unparseable_reference", "explanation": None},
    # correct by rule, has an explanation: reasoning checked, rejected
    {"prompt_id": "p3", "sample_index": 0, "question": "Why 7?", "reference_answer": "7", "answer_type": "numeric",
     "extracted_answer": "7", "completion": "guess \\boxed{7}", "correct": True, "verify_method": "numeric",
     "verify_error": None, "explanation": "3 + 4 = 7"},
    # wrong by rule: not asked in the default 'undecided' mode, nor reasoning-checked
    {"prompt_id": "p3", "sample_index": 1, "question": "Why 7?", "reference_answer": "7", "answer_type": "numeric",
     "extracted_answer": "8", "completion": "\\boxed{8}", "correct": False, "verify_method": "numeric",
     "verify_error": None, "explanation": "3 + 4 = 7"},
])


class FakeJudge:
    """Answers from a table keyed by (task, prompt_id, sample_index): stands in for the engine in
    pure-logic tests only (the engine path is tested with real models in test_cot_judge_engines)."""

    def __init__(self, answers: dict[str, str]):
        self.answers, self.seen = answers, []

    def __call__(self, requests):
        self.seen.extend(requests)
        return {r.id: Reply(self.answers[r.id.replace("\x1f", ":")], None) for r in requests}


def test_judge_samples_asks_only_what_rules_leave_and_applies_verdicts():
    ask = FakeJudge({"eq:p2:0": "Verdict: [[YES]]", "eq:p2:1": "It depends on the angles.",
                     "rs:p3:0": "The solution guesses. Verdict: [[NO]]"})
    overrides, quarantine = judge_samples(ROWS, JUDGE, ask)
    assert [r.id.replace("\x1f", ":") for r in ask.seen] == ["eq:p2:0", "eq:p2:1", "rs:p3:0"]
    assert "Candidate answer:\nisosceles triangle" in ask.seen[0].text
    assert "Reference explanation:\n3 + 4 = 7" in ask.seen[2].text and "guess \\boxed{7}" in ask.seen[2].text
    got = {(r["prompt_id"], r["sample_index"]): r for r in overrides.to_pylist()}
    assert set(got) == {("p2", 0), ("p2", 1), ("p3", 0)}
    assert got[("p2", 0)]["correct"] is True and got[("p2", 0)]["verify_method"] == "judge"
    assert got[("p2", 0)]["judge_output"] == "Verdict: [[YES]]" and got[("p2", 0)]["verify_error"] is None
    assert got[("p2", 1)]["correct"] is None and got[("p2", 1)]["verify_error"] == "judge_unparsable"
    assert got[("p3", 0)]["correct"] is False and got[("p3", 0)]["verify_error"] == "reasoning_rejected"
    assert got[("p3", 0)]["verify_method"] == "numeric" and got[("p3", 0)]["reasoning_output"].endswith("[[NO]]")
    assert quarantine.to_pylist() == [{"prompt_id": "p2", "sample_index": 1, "task": "equivalence",
                                       "reason": "judge_unparsable", "detail": "It depends on the angles.",
                                       "judge_output": "It depends on the angles."}]


def test_judge_samples_rejudges_negatives_when_asked_and_reports_engine_errors():
    cfg = JUDGE.model_copy(update={"equivalence_on": "not_correct", "reasoning": False})

    def ask(requests):
        return {r.id: Reply(None, "HTTP 500 upstream") for r in requests}

    overrides, quarantine = judge_samples(ROWS, cfg, ask)
    assert sorted((r["prompt_id"], r["sample_index"]) for r in overrides.to_pylist()) == [
        ("p2", 0), ("p2", 1), ("p3", 1)]
    assert set(quarantine["reason"].to_pylist()) == {"judge_error"}
    assert all(c is None for c in overrides["correct"].to_pylist())


def test_score_prompts_fills_missing_scores_keeps_given_and_quarantines_prose():
    prompts = pa.Table.from_pylist([
        {"id": "a", "question": "q a", "images": [b"img"], "s_v": None, "s_t": None, "s_i": None},
        {"id": "b", "question": "q b", "images": [], "s_v": 0.5, "s_t": None, "s_i": None},
        {"id": "c", "question": "q c", "images": [], "s_v": 0.1, "s_t": 0.2, "s_i": 0.3},
        {"id": "d", "question": "q d", "images": [], "s_v": None, "s_t": None, "s_i": None},
    ], pa.schema([("id", pa.string()), ("question", pa.string()), ("images", pa.list_(pa.binary())),
                  ("s_v", pa.float64()), ("s_t", pa.float64()), ("s_i", pa.float64())]))
    ask = FakeJudge({"sc:a": '{"s_v": 0.9, "s_t": 0.8, "s_i": 0.7}', "sc:b": '{"s_v": 0.0, "s_t": 1, "s_i": 0.25}',
                     "sc:d": "This question is good."})
    scored, dropped, quarantine = score_prompts(prompts, JUDGE, ask)
    assert [r.id for r in ask.seen] == ["sc\x1fa", "sc\x1fb", "sc\x1fd"] and ask.seen[0].images == (b"img",)
    assert scored.select(["id", "s_v", "s_t", "s_i"]).to_pylist() == [
        {"id": "a", "s_v": 0.9, "s_t": 0.8, "s_i": 0.7}, {"id": "b", "s_v": 0.5, "s_t": 1.0, "s_i": 0.25},
        {"id": "c", "s_v": 0.1, "s_t": 0.2, "s_i": 0.3}]
    assert [(d["id"], d["stage"], d["reason"]) for d in dropped] == [("d", "judge", "judge_unparsable")]
    assert quarantine["task"].to_pylist() == ["scores"] and quarantine["judge_output"].to_pylist() == [
        "This question is good."]
