"""Config and columns of the CoT verification stage: does a chain's final answer match the reference?

A teacher model wrote reasoning chains (``completion``); each row also carries the question's
``reference_answer`` and its ``answer_type``. The stage extracts the chain's final answer and
compares it with the reference, adding the ``VERIFY_FIELDS`` columns. The comparison depends on
the answer type:

- ``math``: the strings are equal (ignoring whitespace), or both are plain numbers equal within
  the numeric tolerance, or Math-Verify (LaTeX -> sympy) finds them equivalent. Math-Verify runs in
  worker processes with a per-comparison timeout, because sympy can hang on adversarial input.
- ``numeric``: both sides read as one number (thousands separators, fractions ``3/4``, LaTeX
  ``\\frac{3}{4}``, percentages, signs, scientific notation) and are equal within the tolerance.
- ``mcq``: the sets of option letters are equal ("AC" = "C, A" = "(A)(C)" = "选 A 和 C").
- ``exact``: the strings are equal after Unicode (NFKC) and case folding and whitespace collapsing.

``correct`` is True or False when a verdict was reached, and null when it could not be (see
``VERIFY_ERRORS``): a selection step treats null as "not verified", never as correct.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import Field, field_validator

from skycurate.schemas.config import StrictModel

STAGE = "cot_verify"

# ---- input columns ----
COMPLETION = "completion"                 # the teacher's chain (string; may contain <think>...</think>)
REFERENCE_ANSWER = "reference_answer"     # the gold answer (string; null/blank = missing)
ANSWER_TYPE = "answer_type"               # one of ANSWER_TYPES (case-insensitive)
REQUIRED_COLUMNS = (COMPLETION, REFERENCE_ANSWER, ANSWER_TYPE)

AnswerType = Literal["math", "mcq", "exact", "numeric", "code"]
ANSWER_TYPES: tuple[str, ...] = ("math", "mcq", "exact", "numeric", "code")   # code: the reference holds tests

# ---- extract_method values ----
# Where the answer came from; "_in_think" is appended when it was found only inside <think>...</think>.
EXTRACT_METHODS = (
    "answer_tag",    # <answer>...</answer> (its \boxed{} content when it has one)
    "boxed",         # \boxed{...} / \fbox{...}
    "gsm8k",         # "#### 42"
    "phrase",        # after an answer phrase ("the final answer is", "答案是", ...)
    "mcq_choice",    # mcq only: "选 A 和 C", "option (B)", "choose A"
    "last_line",     # mcq only, fallback: a last line that is only option letters ("(A)(C)")
    "last_number",   # numeric and math only, fallback: the last number of the text
    "short_reply",   # exact only, fallback: a reply of one line and at most 5 words is the answer
    "code_block",    # code only: the last fenced code block
    "none",          # nothing found (empty or null completion included)
)

# ---- verify_method values (null when no comparison was made) ----
VERIFY_METHODS = ("exact", "numeric", "mcq_set", "math_verify", "sandbox",   # sandbox: code run against tests
                  "judge")                                                 # judge: a model decided (cot_judge)

# ---- verify_error values (null when the comparison ran) ----
MISSING_REFERENCE = "missing_reference"          # correct null: reference null or blank
UNKNOWN_ANSWER_TYPE = "unknown_answer_type"      # correct null: answer_type not one of ANSWER_TYPES
NO_ANSWER_FOUND = "no_answer_found"              # correct False: the chain states no final answer
UNPARSEABLE_ANSWER = "unparseable_answer"        # correct False: the answer is not a number / letter set / expression
UNPARSEABLE_REFERENCE = "unparseable_reference"  # correct null: the reference is not one
TIMEOUT = "timeout"                              # correct null: Math-Verify ran past math_verify_timeout_s
VERIFIER_ERROR = "verifier_error"                # correct null: Math-Verify raised, or its worker died
PROGRAM_TIMEOUT = "program_timeout"              # correct False: a code answer ran past code_timeout_s
UNPARSEABLE_TESTS = "unparseable_tests"          # correct null: a code prompt's reference holds no runnable tests
VERIFY_ERRORS = (MISSING_REFERENCE, UNKNOWN_ANSWER_TYPE, NO_ANSWER_FOUND, UNPARSEABLE_ANSWER,
                 UNPARSEABLE_REFERENCE, TIMEOUT, VERIFIER_ERROR, PROGRAM_TIMEOUT, UNPARSEABLE_TESTS)
# Errors that leave ``correct`` null (no verdict); the others are a wrong answer (False).
NULL_VERDICT_ERRORS = frozenset({MISSING_REFERENCE, UNKNOWN_ANSWER_TYPE, UNPARSEABLE_REFERENCE, TIMEOUT,
                                 VERIFIER_ERROR, UNPARSEABLE_TESTS})

# ---- output columns ----
VERIFY_FIELDS: tuple[pa.Field, ...] = (
    pa.field("extracted_answer", pa.string()),  # the final answer (mcq: sorted letters; numeric: the number's text)
    pa.field("extract_method", pa.string()),    # one of EXTRACT_METHODS (never null)
    pa.field("correct", pa.bool_()),            # null when no verdict (see NULL_VERDICT_ERRORS)
    pa.field("verify_method", pa.string()),     # one of VERIFY_METHODS; null when no comparison was made
    pa.field("verify_error", pa.string()),      # one of VERIFY_ERRORS; null when the comparison ran
)

DEFAULT_ANSWER_PHRASES = (
    "final answer", "the answer is", "answer is", "answer:", "correct answer", "correct option",
    "答案是", "答案为", "答案：", "答案:", "最终答案", "正确答案", "正确选项",
)


class VerifyConfig(StrictModel):
    """How answers are extracted from chains and compared with references."""

    # ---- extraction ----
    boxed: Literal["last", "first"] = Field(
        default="last", description="which \\boxed{}/\\fbox{} holds the final answer when a chain has several")
    answer_phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ANSWER_PHRASES),
        description="phrases after which the final answer follows (case-insensitive; the last occurrence wins); "
                    "a following 'is'/':'/'是'/'为' and trailing punctuation or '$' are stripped")
    think: Literal["prefer_outside", "outside_only", "whole_text"] = Field(
        default="prefer_outside",
        description="prefer_outside: look for the answer outside <think>...</think> (also after a lone "
                    "</think>, or before an unclosed <think>), and inside only when nothing is found outside; "
                    "outside_only: never inside; whole_text: ignore the tags")
    last_number_fallback: bool = Field(
        default=True, description="numeric and math: take the last number of the text when no marked answer "
                                  "(tag, \\boxed, ####, phrase) is found")
    mcq_letters: str = Field(default="ABCDEFGHIJ", pattern=r"^[A-Z]+$",
                             description="the option letters an mcq answer may use")
    # ---- comparison ----
    rel_tol: float = Field(
        default=1e-6, ge=0,
        description="numeric: |a - b| <= max(rel_tol * max(|a|, |b|), abs_tol) is equal (math.isclose); 1e-6 "
                    "accepts a reference rounded to ~6 significant digits only when the answer agrees to ~6 digits")
    abs_tol: float = Field(default=1e-9, ge=0,
                           description="numeric: the absolute floor of the tolerance, for values near 0")
    percent: Literal["either", "fraction", "ignore"] = Field(
        default="either",
        description="when exactly one side is a percentage p%: fraction = it equals p/100 (50% = 0.5); "
                    "ignore = it equals p (50% = 50); either = both are accepted. 50% always equals 50%")
    default_answer_type: AnswerType | None = Field(
        default=None, description="the type used when answer_type is null or blank; None = such rows get "
                                  "verify_error unknown_answer_type")
    # ---- Math-Verify workers ----
    math_verify_timeout_s: float = Field(
        default=5.0, gt=0, le=600,
        description="longest one Math-Verify comparison (parse both sides + verify) may run; its worker is then "
                    "killed and replaced and the row gets verify_error timeout")
    workers: int = Field(default=2, ge=1, le=64,
                         description="Math-Verify worker processes, per Python process that runs the stage "
                                     "(so per Spark task slot on a cluster)")
    code_timeout_s: float = Field(default=10.0, gt=0, le=600,
                                  description="code answers: longest one test case of a program may run")
    code_memory: str = Field(default="1g", description="code answers: memory limit of the sandbox container")
    code_python: str = Field(default="3.11", description="code answers: Python of the sandbox's base image")
    worker_max_memory_mb: int | None = Field(
        default=2048, ge=64,
        description="address space a worker may add after start-up (RLIMIT_AS, Linux); an input that would "
                    "exceed it gives verifier_error instead of exhausting the machine. None = no limit")

    @field_validator("answer_phrases")
    @classmethod
    def _phrases_not_blank(cls, v: list[str]) -> list[str]:
        if any(not p.strip() for p in v):
            raise ValueError("answer phrases must not be blank")
        return v
