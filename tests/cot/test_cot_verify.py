"""CoT verification: answer extraction, comparison per answer type, the Math-Verify worker pool
(timeouts included) and the batch stage."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest
from pydantic import ValidationError

from skycurate.errors import StageContractError
from skycurate.schemas.cot_verify import VERIFY_FIELDS, VerifyConfig
from skycurate.stages.cot import compare as C
from skycurate.stages.cot import math_pool as P
from skycurate.stages.cot.answers import extract_answer
from skycurate.stages.cot.compare import is_equivalent
from skycurate.stages.cot.verify import VERIFY, verify_batch

CFG = VerifyConfig(workers=2)
# sympy evaluates this tower for far longer than any timeout (measured: > 10 s, ~80 MB).
SLOW = "9^{9^{9^{9}}}"


@pytest.fixture(scope="module", autouse=True)
def _stop_workers():
    yield
    P.shutdown_pool()


def _batch(rows: list[tuple]) -> pa.RecordBatch:
    completion, ref, atype = zip(*rows, strict=True)
    return pa.RecordBatch.from_pydict({
        "id": list(range(len(rows))),
        "completion": pa.array(completion, pa.string()),
        "reference_answer": pa.array(ref, pa.string()),
        "answer_type": pa.array(atype, pa.string()),
    })


# --------------------------------------------------------------------------- extraction


def test_boxed_nested_braces_last_first_and_fbox():
    text = r"First try \boxed{\frac{1}{\sqrt{2}}}. Corrected: \boxed{x^{2}+\{1\}} done."
    assert extract_answer(text, "math", CFG) == (r"x^{2}+\{1\}", "boxed")
    assert extract_answer(text, "math", VerifyConfig(boxed="first")) == (r"\frac{1}{\sqrt{2}}", "boxed")
    assert extract_answer(r"so $\fbox{12}$", "numeric", CFG) == ("12", "boxed")
    # an unclosed (truncated) box is skipped, the complete one before it is used
    assert extract_answer(r"\boxed{3} then \boxed{\frac{4}{", "math", CFG) == ("3", "boxed")
    # a box inside a box
    assert extract_answer(r"\boxed{\boxed{7}}", "math", CFG) == ("7", "boxed")


def test_gsm8k_marker():
    text = "Natalia sold 48/2 = 24 clips in May.\nAltogether 48+24 = 72 clips.\n#### 72"
    assert extract_answer(text, "numeric", CFG) == ("72", "gsm8k")
    assert extract_answer("...\n#### 1,234", "numeric", CFG) == ("1,234", "gsm8k")


@pytest.mark.parametrize("text, atype, want", [
    ("Adding them up, the final answer is $42$.", "math", "42"),
    ("So the answer is 17.", "numeric", "17"),
    ("**Final Answer:** 3.5", "numeric", "3.5"),
    ("**Final Answer**\n\n-8", "numeric", "-8"),
    ("The final answer is: 1,000 dollars.", "numeric", "1,000"),
    ("Final answer: x = 5.", "math", "x = 5"),
    ("Answer: Paris.", "exact", "Paris"),
    ("计算得到面积为 12，所以答案是 12。", "numeric", "12"),
    ("综上，最终答案：$\\frac{3}{4}$", "math", "\\frac{3}{4}"),
    ("最终答案为 -2.5", "numeric", "-2.5"),
])
def test_answer_phrases_en_zh(text, atype, want):
    assert extract_answer(text, atype, CFG) == (want, "phrase")


def test_phrase_takes_the_last_occurrence_and_a_box_after_it():
    text = "I first thought the answer is 3. Checking again, the answer is $\\boxed{4}$ indeed"
    assert extract_answer(text, "numeric", CFG) == ("4", "boxed")
    assert extract_answer("The answer is 3. No wait, the answer is 5.", "numeric", CFG) == ("5", "phrase")


def test_answer_tags():
    assert extract_answer("work... <answer> 7 </answer>", "numeric", CFG) == ("7", "answer_tag")
    # the tag wins over a box elsewhere, and a box inside the tag is unwrapped
    text = r"maybe \boxed{5}? <answer>The area is $\boxed{6}$.</answer>"
    assert extract_answer(text, "numeric", CFG) == ("6", "answer_tag")
    assert extract_answer("<answer>(B)</answer>", "mcq", CFG) == ("B", "answer_tag")


def test_think_tags_are_skipped_unless_nothing_is_outside():
    text = r"<think>Perhaps \boxed{3}? No...</think>The answer is 4."
    assert extract_answer(text, "numeric", CFG) == ("4", "phrase")
    # R1 style: the opening tag was in the prompt, only </think> is in the completion
    assert extract_answer(r"hmm \boxed{3} wait </think> So \boxed{5}", "math", CFG) == ("5", "boxed")
    # nothing outside: the think block is searched, and the method says so
    inside = r"<think>Therefore \boxed{3}.</think>I hope this helps."
    assert extract_answer(inside, "math", CFG) == ("3", "boxed_in_think")
    assert extract_answer(inside, "math", VerifyConfig(think="outside_only")) == (None, "none")
    # an unclosed <think> (truncated chain) hides everything after it
    assert extract_answer(r"<think>so \boxed{9", "math", VerifyConfig(think="outside_only")) == (None, "none")
    # whole_text ignores the tags: the last box of the whole text
    text2 = r"<think>\boxed{3}</think>x \boxed{8} <think>\boxed{2}</think>"
    assert extract_answer(text2, "math", VerifyConfig(think="whole_text")) == ("2", "boxed")
    assert extract_answer(text2, "math", CFG) == ("8", "boxed")


@pytest.mark.parametrize("text, want", [
    ("所以答案是 C。", "C"),
    ("The answer is AC.", "AC"),
    ("The correct options are A, C", "AC"),
    ("答案：(C)(A)", "AC"),
    ("综上，选 A 和 C", "AC"),
    ("故选B", "B"),
    (r"Final answer: $\boxed{\text{(D)}}$", "D"),
    (r"The answers are \boxed{C} and \boxed{A}.", "AC"),
    ("The correct option is B. 3.5 m/s", "B"),
    ("Option A is wrong, option B is wrong.\n\n(A)(C)", "AC"),
    ("答案为 A、B、D", "ABD"),
])
def test_mcq_letter_sets(text, want):
    assert extract_answer(text, "mcq", CFG)[0] == want


def test_mcq_no_letters_found():
    assert extract_answer("I cannot tell which one.", "mcq", CFG) == (None, "none")
    # a box with the option's value, not its letter, is kept as it is (and verified as unparseable)
    assert extract_answer(r"\boxed{3.5 m/s}", "mcq", CFG) == ("3.5 m/s", "boxed")
    assert is_equivalent("3.5 m/s", "B", "mcq", CFG) == (False, "unparseable_answer")


@pytest.mark.parametrize("text, want", [
    ("Total: we get 12,345 apples and so on", "12,345"),
    ("The ratio comes out as 3/4", "3/4"),
    ("It grew by 25%", "25%"),
    ("The temperature fell to -15 degrees", "-15"),
    ("c is about 2.998e8 m/s", "2.998e8"),
    ("Its charge is $-1.6 \\times 10^{-19}$ C", "-1.6e-19"),
])
def test_numeric_last_number_fallback(text, want):
    assert extract_answer(text, "numeric", CFG) == (want, "last_number")


def test_numeric_forms_in_marked_answers():
    assert extract_answer(r"the answer is $\frac{3}{4}$.", "numeric", CFG) == ("3/4", "phrase")
    assert extract_answer(r"\boxed{x = -12 \text{ cm}}", "numeric", CFG) == ("-12", "boxed")
    assert extract_answer(r"\boxed{50\%}", "numeric", CFG) == ("50%", "boxed")
    assert extract_answer(r"\boxed{5 \text{ m}^2}", "numeric", CFG) == ("5", "boxed")  # units are fine
    # an expression is not a number: kept as is (no fallback to a digit inside it)
    assert extract_answer(r"\boxed{\sqrt{2}}", "numeric", CFG) == (r"\sqrt{2}", "boxed")
    assert extract_answer(r"\boxed{2\pi}", "numeric", CFG) == (r"2\pi", "boxed")
    assert extract_answer(r"\boxed{2^{10}}", "numeric", CFG) == (r"2^{10}", "boxed")
    assert extract_answer("no digits at all", "numeric", CFG) == (None, "none")
    assert extract_answer("no digits", "numeric", VerifyConfig(last_number_fallback=False)) == (None, "none")
    assert extract_answer("it is 5", "numeric", VerifyConfig(last_number_fallback=False)) == (None, "none")


@pytest.mark.parametrize("text", ["", "   \n ", None])
def test_empty_completion_has_no_answer(text):
    assert extract_answer(text, "math", CFG) == (None, "none")
    assert is_equivalent(None, "3", "math", CFG) == (False, "no_answer_found")


def test_pathological_chains_stay_fast():
    looping = {
        "unclosed boxes": "\\boxed{" * 20000 + "x" * 50000,
        "unclosed tags": "<answer>" * 20000 + "y" * 50000,
        "choices": "选 " * 50000,
        "letters": "The answer is " + "A" * 50000 + "a",
        "spaces": "the answer is " + " " * 100000 + "x",
    }
    for name, text in looping.items():
        t0 = time.monotonic()
        for atype in ("math", "mcq", "numeric", "exact"):
            extract_answer(text, atype, CFG)
        assert time.monotonic() - t0 < 3, name


def test_unknown_answer_type_is_refused():
    with pytest.raises(ValueError, match="answer_type"):
        extract_answer("x", "essay", CFG)


# --------------------------------------------------------------------------- comparison (no workers)


def test_exact_normalises_case_and_whitespace():
    assert is_equivalent("  New   York ", "new york", "exact", CFG) == (True, "exact")
    assert is_equivalent(r"\text{Paris}", "Paris.", "exact", CFG) == (True, "exact")
    assert is_equivalent("Paris", "London", "exact", CFG) == (False, "exact")


def test_mcq_sets_are_order_insensitive_and_wrong_sets_are_wrong():
    assert is_equivalent("AC", "CA", "mcq", CFG) == (True, "mcq_set")
    assert is_equivalent("(A)(C)", "A, C", "mcq", CFG) == (True, "mcq_set")
    assert is_equivalent("C", "AC", "mcq", CFG) == (False, "mcq_set")        # a subset is wrong
    assert is_equivalent("ABC", "AC", "mcq", CFG) == (False, "mcq_set")      # a superset is wrong
    assert is_equivalent("B", "A", "mcq", CFG) == (False, "mcq_set")
    assert is_equivalent("A", "???", "mcq", CFG) == (None, "unparseable_reference")


def test_numeric_tolerance_and_forms():
    assert is_equivalent("1,000", "1000", "numeric", CFG) == (True, "numeric")
    assert is_equivalent("0.5", "1/2", "numeric", CFG) == (True, "numeric")
    assert is_equivalent(r"\frac{1}{2}", "0.5", "numeric", CFG) == (True, "numeric")
    assert is_equivalent("3e8", r"3 \times 10^{8}", "numeric", CFG) == (True, "numeric")
    assert is_equivalent("-0.25", "-1/4", "numeric", CFG) == (True, "numeric")
    assert is_equivalent("-0.25", "1/4", "numeric", CFG) == (False, "numeric")
    # rel_tol 1e-6 by default: 7 significant digits agree, 5 do not
    assert is_equivalent("0.3333333", "1/3", "numeric", CFG) == (True, "numeric")
    assert is_equivalent("0.33333", "1/3", "numeric", CFG) == (False, "numeric")
    assert is_equivalent("0.33333", "1/3", "numeric", VerifyConfig(rel_tol=1e-3)) == (True, "numeric")
    # near zero only abs_tol helps
    assert is_equivalent("1e-12", "0", "numeric", CFG) == (True, "numeric")
    assert is_equivalent("1e-6", "0", "numeric", CFG) == (False, "numeric")
    assert is_equivalent("sqrt 2", "1.414", "numeric", CFG) == (False, "numeric")  # "2" != 1.414
    assert is_equivalent(r"\sqrt{2}", "1.414", "numeric", CFG) == (False, "unparseable_answer")
    assert is_equivalent("5", r"\pi", "numeric", CFG) == (None, "unparseable_reference")


def test_percentages_follow_the_documented_rule():
    # either (default): p% equals p/100 and p
    assert is_equivalent("50%", "0.5", "numeric", CFG) == (True, "numeric")
    assert is_equivalent("50%", "50", "numeric", CFG) == (True, "numeric")
    assert is_equivalent("50%", "0.05", "numeric", CFG) == (False, "numeric")
    assert is_equivalent("50%", "50\\%", "numeric", CFG) == (True, "numeric")
    fraction = VerifyConfig(percent="fraction")
    assert is_equivalent("50%", "0.5", "numeric", fraction) == (True, "numeric")
    assert is_equivalent("50%", "50", "numeric", fraction) == (False, "numeric")
    ignore = VerifyConfig(percent="ignore")
    assert is_equivalent("50%", "0.5", "numeric", ignore) == (False, "numeric")
    assert is_equivalent("50%", "50", "numeric", ignore) == (True, "numeric")


def test_math_cheap_paths_do_not_use_workers(monkeypatch):
    def no_pool(cfg):
        raise AssertionError("the worker pool must not be used")

    monkeypatch.setattr(C, "_get_pool", no_pool)
    assert is_equivalent("x^2 + 1", "x^2+1", "math", CFG) == (True, "exact")
    assert is_equivalent("1/2", "0.5", "math", CFG) == (True, "numeric")
    assert is_equivalent("2", "3", "math", CFG) == (False, "numeric")
    assert is_equivalent("3", None, "math", CFG) == (None, "missing_reference")
    assert is_equivalent("3", "  ", "math", CFG) == (None, "missing_reference")


def test_reference_solutions_keep_only_their_answer():
    assert is_equivalent("72", "She sold 48+24 clips.\n#### 72", "numeric", CFG) == (True, "numeric")
    assert is_equivalent("C", r"so the answer is $\boxed{C}$", "mcq", CFG) == (True, "mcq_set")


# --------------------------------------------------------------------------- Math-Verify in workers


@pytest.mark.parametrize("pred, ref", [
    (r"\frac{1}{2}", "0.5"),
    ("(x+1)^2", "x^2+2x+1"),
    (r"1/\sqrt{2}", r"\sqrt{2}/2"),
])
def test_symbolic_equivalence_via_math_verify(pred, ref):
    assert is_equivalent(pred, ref, "math", CFG) == (True, "math_verify")


def test_math_verify_says_no_and_unparseable():
    assert is_equivalent(r"1/\sqrt{3}", r"\sqrt{2}/2", "math", CFG) == (False, "math_verify")
    assert is_equivalent("(x-1)^2", "x^2+2x+1", "math", CFG) == (False, "math_verify")
    assert is_equivalent("5", "???", "math", CFG) == (None, "unparseable_reference")


@pytest.mark.timeout(60)  # a broken timeout would hang here
def test_timeout_kills_the_worker_and_the_pool_keeps_working():
    cfg = VerifyConfig(workers=2, math_verify_timeout_s=2.0)
    batch = _batch([
        (rf"\boxed{{{SLOW}}}", "1", "math"),
        (r"\boxed{\frac{1}{2}}", "0.5", "math"),
        (r"\boxed{\frac{2}{3}}", "0.5", "math"),
    ])
    P._get_pool(cfg).compare([("1", "1")], 30.0)  # workers up, so only the comparisons are timed
    pids = set(P._get_pool(cfg).worker_pids)
    t0 = time.monotonic()
    out = verify_batch(batch, cfg).to_pydict()
    elapsed = time.monotonic() - t0
    assert out["verify_error"] == ["timeout", None, None]
    assert out["correct"] == [None, True, False]
    assert out["verify_method"] == ["math_verify"] * 3
    assert elapsed < 10, elapsed
    # the stuck worker was killed and replaced; the pool answers again
    assert len(pids - set(P._get_pool(cfg).worker_pids)) == 1
    assert is_equivalent(r"\sqrt{4}", "2", "math", VerifyConfig(workers=2)) == (True, "math_verify")


# --------------------------------------------------------------------------- the batch stage


def test_verify_batch_columns_and_verdicts():
    batch = _batch([
        (r"<think>\boxed{3}</think> The final answer is \boxed{\frac{1}{2}}", "0.5", "math"),
        ("So the answer is (A)(C).", "CA", "mcq"),
        ("So the answer is C.", "AC", "MCQ"),
        ("#### 1,000", "1000", " numeric "),
        ("", "5", "numeric"),
        (None, "5", "math"),
        ("The answer is 5.", None, "numeric"),
        ("The answer is 5.", "5", "essay"),
        ("Answer: PARIS", "Paris", "exact"),
    ])
    out = verify_batch(batch, CFG)
    assert out.schema == VERIFY.output_schema(batch.schema)
    assert out.column("id").to_pylist() == list(range(9))  # input columns kept, row for row
    d = out.to_pydict()
    assert d["extracted_answer"] == [r"\frac{1}{2}", "AC", "C", "1,000", None, None, "5", None, "PARIS"]
    assert d["extract_method"] == ["boxed", "phrase", "phrase", "gsm8k", "none", "none", "phrase", "none", "phrase"]
    assert d["correct"] == [True, True, False, True, False, False, None, None, True]
    assert d["verify_method"] == ["math_verify", "mcq_set", "mcq_set", "numeric", None, None, None, None, "exact"]
    assert d["verify_error"] == [None, None, None, None, "no_answer_found", "no_answer_found",
                                 "missing_reference", "unknown_answer_type", None]


def test_default_answer_type_fills_null_types():
    batch = _batch([("The answer is 5.", "5", None), ("The answer is 5.", "5", "")])
    assert verify_batch(batch, CFG).column("verify_error").to_pylist() == ["unknown_answer_type"] * 2
    out = verify_batch(batch, VerifyConfig(default_answer_type="numeric"))
    assert out.column("correct").to_pylist() == [True, True]


def test_one_pool_call_per_batch_with_distinct_pairs(monkeypatch):
    calls = []
    real = P.MathVerifyPool.compare

    def spy(self, pairs, timeout_s):
        calls.append(list(pairs))
        return real(self, pairs, timeout_s)

    monkeypatch.setattr(P.MathVerifyPool, "compare", spy)
    rows = [(r"\boxed{\frac{1}{2}}", "0.5", "math")] * 4 + [(r"\boxed{\frac{1}{3}}", "0.5", "math")] * 2
    out = verify_batch(_batch(rows), CFG)
    assert out.column("correct").to_pylist() == [True] * 4 + [False] * 2
    assert calls == [[("0.5", r"\frac{1}{2}"), ("0.5", r"\frac{1}{3}")]]  # gold first
    calls.clear()
    verify_batch(_batch([("#### 4", "4", "numeric")]), CFG)
    assert calls == []  # nothing for Math-Verify: no pool call at all


def test_stage_contract():
    with pytest.raises(StageContractError, match="reference_answer"):
        VERIFY(pa.RecordBatch.from_pydict({"completion": ["x"], "answer_type": ["math"]}), CFG)
    out = VERIFY(_batch([("#### 4", "4", "numeric")]), CFG)
    assert [f.name for f in VERIFY_FIELDS] == out.schema.names[-5:]
    # non-string input columns (an integer reference) are read as text
    batch = pa.RecordBatch.from_pydict(
        {"completion": ["#### 42"], "reference_answer": [42], "answer_type": ["numeric"]})
    assert verify_batch(batch, CFG).column("correct").to_pylist() == [True]


def test_config_is_strict():
    with pytest.raises(ValidationError):
        VerifyConfig(timeout=3)
    with pytest.raises(ValidationError):
        VerifyConfig(boxed="middle")
    with pytest.raises(ValidationError):
        VerifyConfig(math_verify_timeout_s=0)
    with pytest.raises(ValidationError):
        VerifyConfig(mcq_letters="abc")
