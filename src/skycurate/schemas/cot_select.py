"""Config and columns of the CoT selection stage: which verified chains become SFT data.

Selection follows Skywork R1V's adaptive-length CoT distillation (easy prompts get short chains,
hard prompts may keep long ones), R1V3's cold-start filtering (rejection sampling on the final
answer, then drop rambling/overlong chains) and DeepSeek-R1's rejection sampling (keep correct
chains; drop mixed-language chains and overlong paragraphs).

``SelectConfig`` holds every threshold, so a published selection records exactly how it was made.
A threshold set to ``None`` turns that one rule off.
"""

from __future__ import annotations

from itertools import pairwise

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from skycurate.schemas.config import StrictModel

STAGE = "cot_select"

# ---- input columns ----
REQUIRED_COLUMNS = ("prompt_id", "sample_index", "completion", "completion_tokens", "finish_reason", "correct")
DIFFICULTY_SCORE = "difficulty_score"   # optional, per sample row, in [0, 1]; wins over 1 - pass_rate
LANG = "lang"                           # optional: the prompt's language code (en, zh, zh-CN, ...)
# optional R1V quality/difficulty scores in [0, 1]; when all three columns are present the output
# gets a ``repetition_penalty`` column (the P that a (re)generation round would sample with).
SCORE_COLUMNS = ("s_v", "s_t", "s_i")

# ---- reasons (reject_reason values); reject_stage is always STAGE ----
# per sample, in the order they are checked (the first that applies is the verdict):
INCORRECT = "incorrect"                 # the verifier said the final answer is wrong
UNVERIFIED = "unverified"               # correct is null (verification failed): counts as not passing
TRUNCATED = "truncated"                 # finish_reason is "length"
BAD_FORMAT = "bad_format"               # empty, unbalanced <think> tags, empty reasoning, no final answer marker
REPETITIVE = "repetitive"               # duplicated n-grams, a loop, or a line repeated many times
LANGUAGE_MIXED = "language_mixed"       # too much of the other script for the prompt's language
OVERLONG_PARAGRAPH = "overlong_paragraph"
OVER_BUDGET = "over_budget"             # correct and clean but longer than the bucket's token budget
NOT_SHORTEST = "not_shortest"           # correct, clean, within budget, but k shorter chains were preferred
QUALITY_REASONS = (TRUNCATED, BAD_FORMAT, REPETITIVE, LANGUAGE_MIXED, OVERLONG_PARAGRAPH)
SAMPLE_REASONS = (INCORRECT, UNVERIFIED) + QUALITY_REASONS + (OVER_BUDGET, NOT_SHORTEST)
# per prompt (summary rows), when none of its samples was selected:
NO_CORRECT_SAMPLE = "no_correct_sample"   # pass rate 0
NO_CLEAN_SAMPLE = "no_clean_sample"       # correct chains exist, every one failed a quality check
ALL_OVER_BUDGET = "all_over_budget"       # clean correct chains exist, all longer than the budget
PROMPT_REASONS = (NO_CORRECT_SAMPLE, NO_CLEAN_SAMPLE, ALL_OVER_BUDGET)

# Math function names and the like that are Latin words in any language's math text.
MATH_WORDS = (
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "log", "ln", "lg", "exp", "max", "min", "sup", "inf", "lim", "gcd", "lcm", "mod", "det", "deg",
    "arg", "dim", "ker", "sqrt", "frac", "sum", "prod", "int", "cm", "mm", "km", "kg", "mg", "ml",
)


class DifficultyBucket(StrictModel):
    """Prompts with ``difficulty >= min_difficulty`` (and below the next bucket's) get this budget."""

    name: str
    min_difficulty: float = Field(ge=0, le=1, description="inclusive lower bound of the bucket")
    max_tokens: int | None = Field(
        ge=1, description="token budget: chains with more completion_tokens are rejected (over_budget); "
                          "None = no budget")
    keep: int = Field(ge=1, description="keep at most this many chains per prompt: the shortest correct clean "
                                        "ones within budget (ties broken by sample_index)")


def _default_buckets() -> list[DifficultyBucket]:
    return [
        DifficultyBucket(name="easy", min_difficulty=0.0, max_tokens=1024, keep=1),
        DifficultyBucket(name="medium", min_difficulty=0.34, max_tokens=2048, keep=2),
        DifficultyBucket(name="hard", min_difficulty=0.67, max_tokens=4096, keep=3),
    ]


class QualityCheckConfig(StrictModel):
    """Per-chain checks (stages/cot/quality.py). Signals are computed on the whole completion."""

    truncated_finish_reasons: list[str] = Field(
        default_factory=lambda: ["length"],
        description="finish_reason values that mean the chain was cut off; empty = check off")

    # repetition: tokens are Latin words, digit runs, single punctuation marks and single Han characters
    ngram_n: int = Field(default=10, ge=2,
                         description="n-gram size (tokens) of the duplicated n-gram share and the loop check; "
                                     "10 tokens ~ 10 English words or ~5 Chinese words")
    max_dup_ngram_frac: float | None = Field(
        default=0.4, ge=0, le=1,
        description="repetitive above this share of n-gram positions whose n-gram already occurred earlier; "
                    "normal long chains re-derive and re-check, so 10-30% is common, loops push it past 50%")
    min_ngrams: int = Field(default=50, ge=1, description="the duplicated share is not judged on fewer n-grams")
    max_loop_tokens: int | None = Field(
        default=100, ge=1,
        description="repetitive when one stretch repeats back-to-back (a loop, 'wait wait wait ...', a sentence "
                    "again and again) for more than this many tokens after its first copy")
    max_line_repeats: int | None = Field(
        default=5, ge=1, description="repetitive when one non-trivial line occurs more than this many times")
    min_line_chars: int = Field(default=20, ge=1,
                                description="lines shorter than this (stripped) are not counted as repeated lines")

    # language mixing (prompt language en or zh; other languages are not checked)
    default_lang: str | None = Field(
        default=None,
        description="language of rows whose lang is missing or null; None = the chain's dominant script "
                    "(Han or Latin) decides, which catches mixing but not a chain wholly in the wrong language")
    max_other_script_frac_en: float | None = Field(
        default=0.05, ge=0, le=1,
        description="en prompts: language_mixed above this share of Han (and other non-Latin) units; "
                    "a Han character counts as one unit, like a Latin word")
    max_other_script_frac_zh: float | None = Field(
        default=0.2, ge=0, le=1,
        description="zh prompts: language_mixed above this share of Latin words (2+ letters, math words and "
                    "math/code/LaTeX excluded); Chinese technical text keeps some English terms")
    min_script_units: int = Field(default=20, ge=1,
                                  description="texts with fewer letter units are not judged for mixing")
    ignored_words: list[str] = Field(default_factory=lambda: list(MATH_WORDS),
                                     description="Latin words (lower case) never counted as a script")

    # format
    think_open: str = "<think>"
    think_close: str = "</think>"
    require_think: bool = Field(
        default=True, description="the chain must have its reasoning closed by think_close (a distilled CoT "
                                  "sample without a delimited reasoning part is not one)")
    allow_implicit_open: bool = Field(
        default=True, description="accept a chain with think_close but no think_open: chat templates of "
                                  "DeepSeek-R1-0528, Qwen3 etc. put <think> in the prompt")
    min_reasoning_chars: int = Field(default=1, ge=0,
                                     description="bad_format when the reasoning (stripped) is shorter")
    answer_pattern: str | None = Field(
        default=r"\\boxed\s*\{|```",
        description="Python regex the final answer must match (searched after think_close when the chain has "
                    "one): a \\boxed{} answer, or a fenced code block for code answers; None = no answer marker "
                    "required")

    # paragraphs (split on blank lines; fenced code blocks are not paragraphs)
    max_paragraph_chars: int | None = Field(default=3000, ge=1,
                                            description="overlong_paragraph above this many characters")
    max_paragraph_chars_zh: int | None = Field(
        default=1500, ge=1, description="the same for Chinese chains (a Han character carries ~2x the content)")

    @field_validator("answer_pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        import re

        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"answer_pattern is not a valid regex: {e}") from None
        return v


class SelectConfig(StrictModel):
    """Adaptive-length selection of verified CoT chains.

    Repetition penalty (R1V): ``P = min(2, exp(alpha * (1 - (S_v + beta*S_t + gamma*S_I) / (1+beta+gamma))))``.
    The R1V report gives the formula but, as far as we could find, no values for alpha, beta, gamma:
    the defaults weight the three scores equally (beta = gamma = 1) and alpha = 1 maps the weighted
    mean score m in [0, 1] to P = e^(1-m) in [1, e], capped at 2 (P reaches the cap for m < 1 - ln 2 ~ 0.31):
    a high-quality/easy sample gets no penalty, a poor one the strongest.
    """

    alpha: float = Field(default=1.0, ge=0, description="penalty strength; 0 = no penalty (P = 1)")
    beta: float = Field(default=1.0, ge=0, description="weight of S_t relative to S_v")
    gamma: float = Field(default=1.0, ge=0, description="weight of S_I relative to S_v")
    buckets: list[DifficultyBucket] = Field(
        default_factory=_default_buckets,
        description="by min_difficulty, ascending, the first at 0. Defaults: easy [0, 0.34) 1024 tokens keep 1; "
                    "medium [0.34, 0.67) 2048 keep 2; hard [0.67, 1] 4096 keep 3. Easy prompts give one concise "
                    "chain (no overthinking, no over-weighting of easy content); hard prompts are scarce and "
                    "several distinct correct chains teach more. Budgets suit concise teachers; R1-class "
                    "teachers need about 2-4x")
    quality: QualityCheckConfig = Field(default_factory=QualityCheckConfig)

    @model_validator(mode="after")
    def _check_buckets(self) -> SelectConfig:
        if not self.buckets:
            raise ValueError("buckets must not be empty")
        bounds = [b.min_difficulty for b in self.buckets]
        if bounds[0] != 0.0:
            raise ValueError("the first bucket must start at min_difficulty 0")
        if any(b2 <= b1 for b1, b2 in pairwise(bounds)):
            raise ValueError("buckets must be sorted by strictly increasing min_difficulty")
        names = [b.name for b in self.buckets]
        if len(set(names)) != len(names):
            raise ValueError("bucket names must be unique")
        return self

    def bucket_for(self, difficulty: float) -> DifficultyBucket:
        chosen = self.buckets[0]
        for b in self.buckets:
            if difficulty >= b.min_difficulty:
                chosen = b
        return chosen


# ---- output columns ----
# Quality signals (annotate) of every row, then the per-prompt numbers, then the decision.
SIGNAL_FIELDS: tuple[pa.Field, ...] = (
    pa.field("dup_ngram_frac", pa.float64()),      # share of n-grams seen earlier; null below min_ngrams
    pa.field("loop_tokens", pa.int32()),           # longest back-to-back repetition after its first copy
    pa.field("max_line_repeats", pa.int32()),      # occurrences of the most frequent non-trivial line
    pa.field("other_script_frac", pa.float64()),   # null when not judged (language not en/zh, too short)
    pa.field("max_paragraph_chars", pa.int32()),
    pa.field("quality_issues", pa.list_(pa.string())),  # every failed check's reason code, in check order
)
PROMPT_FIELDS: tuple[pa.Field, ...] = (
    pa.field("n_samples", pa.int32()),
    pa.field("n_correct", pa.int32()),
    pa.field("n_unverified", pa.int32()),
    pa.field("pass_rate", pa.float64()),           # n_correct / n_samples (null correct = not passing)
    pa.field("difficulty", pa.float64()),          # given difficulty_score (mean over the prompt) else 1 - pass_rate
    pa.field("bucket", pa.string()),
    pa.field("token_budget", pa.int64()),          # the bucket's max_tokens (null = none)
)
DECISION_FIELDS: tuple[pa.Field, ...] = (
    pa.field("selected", pa.bool_()),
    pa.field("reject_stage", pa.string()),         # null when selected
    pa.field("reject_reason", pa.string()),        # null when selected
    pa.field("reject_detail", pa.string()),        # human-readable numbers behind the reason
)
PENALTY_FIELD = pa.field("repetition_penalty", pa.float64())
ADDED_FIELDS = SIGNAL_FIELDS + PROMPT_FIELDS + DECISION_FIELDS

# One row per prompt (stages/cot/select.py: prompt_summary).
SUMMARY_FIELDS: tuple[pa.Field, ...] = PROMPT_FIELDS + (
    pa.field("n_selected", pa.int32()),
    pa.field("selected_tokens", pa.int64()),       # completion_tokens of the selected chains, summed
    pa.field("reject_stage", pa.string()),         # null when n_selected >= 1
    pa.field("reject_reason", pa.string()),        # no_correct_sample | no_clean_sample | all_over_budget
)
