"""Where the fields of a CoT prompt are in the input rows (``fields`` in the distill config).

Public prompt sets (GSM8K, MATH, NuminaMath, MMLU, ARC, MMBench-style TSVs) keep the question and
the answer under their own names and shapes; ``PromptFields`` names the layout (or lets it be
detected) and the columns that differ from the layout's defaults. ``stages/cot/prompt_layouts``
maps each row to the canonical prompt columns of ``schemas/cot.py``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from skycurate.schemas.config import StrictModel

LAYOUTS = ("skycurate", "gsm8k", "math", "mcq", "letter_options")
Layout = Literal["auto", "skycurate", "gsm8k", "math", "mcq", "letter_options"]


class PromptFields(StrictModel):
    """The layout of the input rows and the columns that hold each field, when not the defaults."""

    layout: Layout = Field(
        default="auto",
        description="auto (detected from the columns) | skycurate (id, question, reference_answer, answer_type) | "
                    "gsm8k (question, answer ending '#### N') | math (problem, solution with \\boxed{} or answer) | "
                    "mcq (question, choices, answer index/letter or answerKey: MMLU, ARC) | "
                    "letter_options (question, answer letter(s), option columns A, B, C, ...: MMBench-style TSV)")
    id: str | None = Field(default=None, description="column of the prompt id; default id/idx/index/unique_id/"
                                                     "problem_id, else an id hashed from question and answer")
    question: str | None = Field(default=None, description="column of the question (default: question; "
                                                           "problem for the math layout)")
    answer: str | None = Field(default=None, description="column of the gold answer (default: reference_answer for "
                                                         "skycurate, answer, answerKey for mcq, answer or "
                                                         "solution for math)")
    answer_type: str | None = Field(default=None, description="column of the answer type (default: answer_type)")
    choices: str | None = Field(default=None, description="column of the options of the mcq layout "
                                                          "(default: choices)")
    images: str | None = Field(default=None, description="column of the images (default: images, else image)")
    explanation: str | None = Field(default=None, description="column of a reference explanation (default: "
                                                              "explanation, else rationale)")
    default_answer_type: Literal["math", "mcq", "exact", "numeric", "code"] | None = Field(
        default=None, description="answer type of rows that have none (mcq layouts are always mcq); "
                                  "None infers it from the answer")
