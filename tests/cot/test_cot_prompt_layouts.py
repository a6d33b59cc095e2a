"""Prompt layouts of public sets (stages/cot/prompt_layouts.py): detection from the columns,
mapping each layout's rows to the canonical prompt columns, and the errors a user sees."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from skycurate.errors import ConfigError
from skycurate.schemas.cot import OPTIONAL_PROMPT_COLUMNS, REQUIRED_PROMPT_COLUMNS
from skycurate.schemas.cot_prompts import PromptFields
from skycurate.stages.cot import prompt_layouts as L

AUTO = PromptFields()

GSM8K = {
    "question": "A toy factory made 617 toys on Monday. On Tuesday it made twice as many toys as on Monday. "
                "How many toys did the factory make on Tuesday?",
    "answer": "On Monday the factory made 617 toys.\n"
              "On Tuesday it made 2 * 617 = <<2*617=1234>>1,234 toys.\n"
              "#### 1,234",
}
MATH = {
    "problem": "What is $\\frac{1}{4} + \\frac{1}{4}$?",
    "solution": "First, $\\boxed{\\frac{1}{4}}$ is a quarter. Adding two quarters gives "
                "$\\frac{1}{4}+\\frac{1}{4} = \\boxed{\\frac{1}{2}}$.",
    "level": "Level 1", "type": "Prealgebra",
}
NUMINA = {"problem": "Compute $3 \\cdot 4$.", "solution": "It is $\\boxed{12}$.", "answer": "12",
          "source": "amc_aime"}
MMLU = {"question": "Which planet is closest to the Sun?", "subject": "astronomy",
        "choices": ["Venus", "Earth", "Mercury", "Mars"], "answer": 2}
ARC = {"id": "Mercury_7175875", "question": "An astronomer observes that a planet rotates faster after a "
       "meteorite impact. Which is the most likely effect of this increase in rotation?",
       "choices": {"text": ["Planetary density will decrease.", "Planetary years will become longer.",
                            "Planetary days will become shorter.", "Planetary gravity will become stronger."],
                   "label": ["A", "B", "C", "D"]},
       "answerKey": "C"}
MMBENCH = {"index": 17, "question": "Which of these are mammals?", "hint": "Look at the animals.",
           "A": "whale", "B": "shark", "C": "bat", "D": None, "answer": "A,C", "category": "biology",
           "image": "imgs/17.png"}


def _canonical(row: dict, fields: PromptFields = AUTO) -> dict:
    return L.to_canonical(row, L.detect_layout(row.keys(), fields, "x.jsonl"), fields)


def test_gsm8k_takes_the_number_after_the_last_marks_without_thousands_commas():
    out = _canonical(GSM8K)
    assert list(out) == list(REQUIRED_PROMPT_COLUMNS + OPTIONAL_PROMPT_COLUMNS)
    assert out["question"] == GSM8K["question"]
    assert out["reference_answer"] == "1234"
    assert out["answer_type"] == "numeric"
    assert out["id"].startswith("p-") and len(out["id"]) == 18
    assert out["images"] is None and out["domain"] is None and out["difficulty"] is None


@pytest.mark.parametrize("answer, reference, answer_type", [
    ("She has 3 left.\n#### 3", "3", "numeric"),
    ("#### -2.5", "-2.5", "numeric"),
    ("no marker, just 42 ", "no marker, just 42", "exact"),
    ("#### 3/4", "3/4", "math"),
    ("worked out\n####  ", None, "exact"),
])
def test_gsm8k_answers(answer, reference, answer_type):
    out = L.to_canonical({"question": "q", "answer": answer}, "gsm8k", AUTO)
    assert (out["reference_answer"], out["answer_type"]) == (reference, answer_type)


def test_math_takes_the_last_boxed_expression_with_nested_braces():
    out = _canonical(MATH)
    assert out["question"] == MATH["problem"]
    assert out["reference_answer"] == "\\frac{1}{2}"
    assert out["answer_type"] == "math"


def test_numina_math_prefers_the_answer_column_and_keeps_the_source():
    out = _canonical(NUMINA)
    assert (out["reference_answer"], out["answer_type"], out["source"]) == ("12", "numeric", "amc_aime")


@pytest.mark.parametrize("solution, reference", [
    ("so $\\fbox{x^{2}+1}$", "x^{2}+1"),
    ("\\boxed{1} then \\boxed {\\{2, 3\\}}", "\\{2, 3\\}"),
    ("\\boxed{7} and a cut-off \\boxed{\\frac{1", "7"),
    ("no box at all", None),
])
def test_math_boxed_extraction(solution, reference):
    out = L.to_canonical({"problem": "p", "solution": solution, "answer": None}, "math", AUTO)
    assert out["reference_answer"] == reference


def test_mmlu_int_answer_becomes_a_letter_and_the_options_are_rendered():
    out = _canonical(MMLU)
    assert out["question"] == ("Which planet is closest to the Sun?\n"
                               "A. Venus\nB. Earth\nC. Mercury\nD. Mars")
    assert (out["reference_answer"], out["answer_type"], out["domain"]) == ("C", "mcq", "astronomy")


def test_arc_answer_key_and_labels():
    out = _canonical(ARC)
    assert out["id"] == "Mercury_7175875"
    assert out["question"].splitlines()[1:] == [
        "A. Planetary density will decrease.", "B. Planetary years will become longer.",
        "C. Planetary days will become shorter.", "D. Planetary gravity will become stronger."]
    assert (out["reference_answer"], out["answer_type"]) == ("C", "mcq")


def test_arc_numeric_labels_map_to_letters_by_position():
    row = {"question": "Pick.", "choices": {"text": ["x", "y", "z"], "label": ["1", "2", "3"]}, "answerKey": "2"}
    out = L.to_canonical(row, "mcq", AUTO)
    assert out["question"] == "Pick.\nA. x\nB. y\nC. z"
    assert out["reference_answer"] == "B"


@pytest.mark.parametrize("answer, reference", [(0, "A"), ("b", "B"), ("1", "B"), (3.0, "D"), (7, None),
                                               ("E", None), (None, None)])
def test_mcq_answer_forms(answer, reference):
    row = {"question": "Q", "choices": ["w", "x", "y", "z"], "answer": answer}
    assert L.to_canonical(row, "mcq", AUTO)["reference_answer"] == reference


def test_letter_options_sorts_the_letter_set_skips_empty_options_and_prepends_the_hint():
    out = _canonical(MMBENCH)
    assert out["question"] == ("Look at the animals.\nWhich of these are mammals?\n"
                               "A. whale\nB. shark\nC. bat")
    assert (out["reference_answer"], out["answer_type"]) == ("AC", "mcq")
    assert (out["id"], out["domain"], out["images"]) == ("17", "biology", ["imgs/17.png"])


@pytest.mark.parametrize("answer, reference", [("C, A", "AC"), ("A,C", "AC"), ("ca", "AC"), ("B", "B"),
                                               ("D", None), ("yes", None)])
def test_letter_options_answers(answer, reference):
    row = {"question": "Q", "A": "a", "B": "b", "C": "c", "D": float("nan"), "answer": answer}
    assert L.to_canonical(row, "letter_options", AUTO)["reference_answer"] == reference


def test_skycurate_rows_pass_through():
    row = {"id": 12, "question": "  What is 2+2?\n", "reference_answer": 4, "answer_type": "Numeric",
           "images": ["a.png", "b.png"], "domain": "arith", "source": "unit", "difficulty": 0.25,
           "s_v": 0.5, "s_t": 0.75, "s_i": 1.0, "lang": "en", "rationale": "2 and 2 make 4"}
    assert _canonical(row) == {"id": "12", "question": "  What is 2+2?\n", "reference_answer": "4",
                               "answer_type": "numeric", "images": ["a.png", "b.png"], "domain": "arith",
                               "source": "unit", "difficulty": 0.25, "s_v": 0.5, "s_t": 0.75, "s_i": 1.0,
                               "lang": "en", "explanation": "2 and 2 make 4"}


@pytest.mark.parametrize("reference, default, expected", [
    ("Paris", None, "exact"), ("Paris", "math", "math"), ("x^2", None, "math"), ("-17", None, "numeric"),
    (None, None, "exact"),
])
def test_skycurate_answer_type_from_the_default_else_inferred(reference, default, expected):
    fields = PromptFields(default_answer_type=default)
    out = L.to_canonical({"question": "q", "reference_answer": reference}, "skycurate", fields)
    assert out["answer_type"] == expected


@pytest.mark.parametrize("reference, has_options, expected", [
    ("B", True, "mcq"), ("A, C", True, "mcq"), ("B", False, "exact"), ("42", False, "numeric"),
    ("-3.5", False, "numeric"), ("1,234", False, "numeric"), ("3/4", False, "math"),
    ("\\frac{3}{4}", False, "math"), ("2^10", False, "math"), ("sqrt 2", False, "math"), ("2 pi", False, "math"),
    ("(1, 2)", False, "math"), ("Paris", True, "exact"), ("well-known", False, "exact"), ("", False, "exact"),
])
def test_infer_answer_type(reference, has_options, expected):
    assert L.infer_answer_type(reference, has_options) == expected


def test_ids_are_deterministic_and_follow_the_content():
    a = _canonical(GSM8K)["id"]
    assert _canonical(dict(GSM8K))["id"] == a
    assert _canonical({**GSM8K, "question": GSM8K["question"] + " Explain."})["id"] != a
    expected = "p-" + hashlib.sha256((GSM8K["question"] + "\x00" + "1234").encode()).hexdigest()[:16]
    assert a == expected


@pytest.mark.parametrize("id_column", ["id", "idx", "index", "unique_id", "problem_id"])
def test_id_columns(id_column):
    assert L.to_canonical({"question": "q", "answer": "1", id_column: 5.0}, "gsm8k", AUTO)["id"] == "5"


def test_mapped_id_and_images_columns():
    fields = PromptFields(id="qid", images="pics")
    row = {"qid": "k-1", "question": "q", "answer": "1", "pics": b"\x89PNG", "image": "ignored.png"}
    out = L.to_canonical(row, "gsm8k", fields)
    assert (out["id"], out["images"]) == ("k-1", [b"\x89PNG"])


@pytest.mark.parametrize("columns, layout", [
    (["id", "question", "reference_answer", "answer_type"], "skycurate"),
    (["question", "reference_answer", "answer", "choices"], "skycurate"),
    (["question", "subject", "choices", "answer"], "mcq"),
    (["id", "question", "choices", "answerKey"], "mcq"),
    (["index", "question", "hint", "A", "B", "C", "D", "answer"], "letter_options"),
    (["problem", "solution", "level", "type"], "math"),
    (["problem", "solution", "answer", "source"], "math"),
    (["question", "answer"], "gsm8k"),
    (["question", "answer", "A"], "gsm8k"),
])
def test_detect_layout(columns, layout):
    assert L.detect_layout(columns, AUTO, "x.jsonl") == layout


def test_detect_layout_failure_is_one_line_naming_the_file_and_its_columns():
    with pytest.raises(ConfigError) as e:
        L.detect_layout(["text", "label", "meta"], AUTO, "x.jsonl")
    assert str(e.value) == ("prompts x.jsonl: cannot tell the prompt layout from its fields [label, meta, text]; "
                            "set fields.question and fields.answer (and fields.layout) in the distill config")


def test_detect_layout_failure_lists_at_most_twenty_columns():
    columns = [f"c{i:02d}" for i in range(25)]
    with pytest.raises(ConfigError) as e:
        L.detect_layout(columns, AUTO, "big.parquet")
    msg = str(e.value)
    assert "\n" not in msg and "c19, ... (+5 more)]" in msg and "c20" not in msg


@pytest.mark.parametrize("layout, columns, expected", [
    ("gsm8k", ["question", "reference_answer"],
     ("prompts x.jsonl: layout 'gsm8k' needs answer for the answer but the file has [question, reference_answer]; "
     "set fields.answer in the distill config")),
    ("mcq", ["question", "answer"],
     ("prompts x.jsonl: layout 'mcq' needs choices for the choices but the file has [answer, question]; "
     "set fields.choices in the distill config")),
    ("math", ["problem", "level"],
     ("prompts x.jsonl: layout 'math' needs answer or solution for the answer but the file has [level, problem]; "
     "set fields.answer in the distill config")),
    ("letter_options", ["question", "answer", "A"],
     ("prompts x.jsonl: layout 'letter_options' needs option columns A, B (C, D, ...) but the file has "
     "[A, answer, question]; set fields.layout in the distill config")),
])
def test_explicit_layout_with_a_missing_column_fails(layout, columns, expected):
    with pytest.raises(ConfigError) as e:
        L.detect_layout(columns, PromptFields(layout=layout), "x.jsonl")
    assert str(e.value) == expected


@pytest.mark.parametrize("layout", ["skycurate", "gsm8k", "math", "mcq", "letter_options"])
def test_explicit_layout_is_returned_when_its_columns_are_there(layout):
    columns = ["question", "problem", "answer", "reference_answer", "choices", "A", "B"]
    assert L.detect_layout(columns, PromptFields(layout=layout), "x.jsonl") == layout


def test_mapping_overrides_count_as_the_columns():
    fields = PromptFields(question="prompt", answer="target")
    row = {"prompt": "What is 3 + 4?", "target": "7"}
    assert L.detect_layout(row.keys(), fields, "x.jsonl") == "gsm8k"
    out = L.to_canonical(row, "gsm8k", fields)
    assert (out["question"], out["reference_answer"], out["answer_type"]) == ("What is 3 + 4?", "7", "numeric")


def test_mapped_column_missing_from_the_file_fails():
    with pytest.raises(ConfigError, match=r"^prompts x.jsonl: fields.question is 'prompt' but the file has no "
                                          r"such field \(it has \[answer, text\]\); fix fields.question"):
        L.detect_layout(["text", "answer"], PromptFields(question="prompt"), "x.jsonl")


def test_bad_rows_get_no_reference_instead_of_raising():
    rows = [{"question": "Q", "choices": ["a", "b"], "answer": float("inf")},
            {"question": "Q", "choices": "not a list", "answer": 1},
            {"question": None, "choices": {"text": None}, "answerKey": "A"}]
    out = L.canonical_rows(rows, "mcq", AUTO)
    assert [r["reference_answer"] for r in out] == [None, None, None]
    assert [r["question"] for r in out] == ["Q\nA. a\nB. b", "Q", None]


def test_prompt_fields_reject_unknown_keys_and_layouts():
    with pytest.raises(ValidationError):
        PromptFields(qestion="prompt")
    with pytest.raises(ValidationError):
        PromptFields(layout="csv")
