"""Config of the judge: a model asked what rules cannot decide (Skywork R1V used a strong judge model).

Three questions, each a prompt template in the config (placeholders in braces, filled by plain
replacement so that JSON examples need no escaping):

- ``equivalence``: is a chain's final answer equivalent to the reference, when rule-based
  verification is undecided (free-form answers)? -> ``correct``, ``verify_method = judge``.
- ``scores``: R1V's per-prompt scores visual dependency, text quality and image information
  (``s_v``, ``s_t``, ``s_i`` in [0, 1]) for prompts that do not supply them, so the adaptive
  repetition penalty is computed instead of supplied.
- ``reasoning``: does a chain's reasoning agree with the prompt's reference explanation
  (CSVQA-style checking; only prompts with an ``explanation``)? A correct answer reached by
  reasoning the judge rejects is not kept.

A reply that does not parse is quarantined with its text, never guessed. Judge calls go through
the same resumable shards as teacher generation, so a rerun asks the judge nothing twice.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from skycurate.schemas.config import StrictModel
from skycurate.schemas.engine import EngineConfig
from skycurate.schemas.generation import SamplingParams

STAGE = "judge"
JUDGE_UNPARSABLE = "judge_unparsable"        # the reply holds no verdict in the expected form
JUDGE_ERROR = "judge_error"                  # the engine failed on the judge prompt
REASONING_REJECTED = "reasoning_rejected"    # the answer matches but the judge rejects the reasoning

EQUIVALENCE_TEMPLATE = """You are grading an answer to a question against the reference answer.

Question:
{question}

Reference answer:
{reference}

Candidate answer:
{answer}

Are the candidate answer and the reference answer equivalent (same meaning and value; ignore \
formatting, units written differently and wording)? Think briefly, then end your reply with \
exactly one line: "Verdict: [[YES]]" or "Verdict: [[NO]]"."""

SCORES_TEMPLATE = """You rate a question (with its image, if any) used to train a reasoning model.

Question:
{question}

Give three scores between 0 and 1:
- s_v, visual dependency: how much answering needs the image (0 = not at all, 1 = impossible without it);
- s_t, text quality: how clear, complete and well-posed the question text is;
- s_i, image information: how much relevant information the image carries.

Reply with one JSON object and nothing else, for example {"s_v": 0.8, "s_t": 0.9, "s_i": 0.7}."""

REASONING_TEMPLATE = """You check a solution's reasoning against a reference explanation.

Question:
{question}

Reference answer:
{reference}

Reference explanation:
{explanation}

Solution to check:
{response}

Is the solution's reasoning consistent with the reference explanation (the key steps and facts \
agree, no step is wrong even if the final answer matches)? End your reply with exactly one line: \
"Verdict: [[YES]]" or "Verdict: [[NO]]"."""

PLACEHOLDERS = {
    "equivalence_template": ("question", "reference", "answer"),
    "scores_template": ("question",),
    "reasoning_template": ("question", "explanation", "response"),
}
ALL_FIELDS = ("question", "reference", "answer", "response", "explanation")


class JudgeConfig(StrictModel):
    """The judge model and the questions it is asked; off until ``judge.engine`` is set."""

    engine: EngineConfig | None = Field(default=None, description="the judge model and its engine; None = no judge")
    mode: Literal["chat", "raw"] = Field(default="chat", description="chat: the judge's chat template (or chat "
                                                                     "messages for an endpoint); raw: the text as is")
    system: str | None = Field(default=None, description="chat mode: a system turn for every judge prompt")
    equivalence: bool = Field(default=True, description="judge answers the rules leave undecided")
    equivalence_on: Literal["undecided", "not_correct"] = Field(
        default="undecided",
        description="undecided: only samples whose rule verdict is null (e.g. a free-form reference); not_correct: "
                    "also re-judge rule negatives that have an extracted answer (costlier, more recall)")
    scores: bool = Field(default=False, description="judge s_v/s_t/s_i for prompts that do not supply all three")
    reasoning: bool = Field(default=True, description="check correct chains against the prompt's explanation, "
                                                      "when it has one")
    equivalence_template: str = EQUIVALENCE_TEMPLATE
    scores_template: str = SCORES_TEMPLATE
    reasoning_template: str = REASONING_TEMPLATE
    response_chars: int = Field(default=6000, ge=200, description="reasoning check: the chain's last characters "
                                                                  "the judge sees")
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_new_tokens=512, temperature=0.0),
                                     description="greedy by default: a judge should not be sampled")
    shard_size: int = Field(default=64, ge=1, description="judge prompts per journalled shard")

    @field_validator("equivalence_template", "scores_template", "reasoning_template")
    @classmethod
    def _placeholders(cls, value: str, info) -> str:
        missing = [p for p in PLACEHOLDERS[info.field_name] if "{" + p + "}" not in value]
        if missing:
            raise ValueError(f"{info.field_name} must contain {', '.join('{' + m + '}' for m in missing)}")
        return value

    @model_validator(mode="after")
    def _one_sample(self) -> JudgeConfig:
        if self.sampling.n != 1:
            raise ValueError("judge.sampling.n must be 1 (one verdict per question)")
        return self

    @property
    def enabled(self) -> bool:
        return self.engine is not None


def fill(template: str, **values: str) -> str:
    """The template with its ``{name}`` placeholders replaced, in one pass (a value that itself
    holds ``{answer}`` is not filled again)."""
    return re.sub(r"\{(" + "|".join(ALL_FIELDS) + r")\}", lambda m: values.get(m.group(1), m.group(0)), template)
