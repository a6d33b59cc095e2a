"""Configs and columns of the two RL-side outputs of the CoT flow: the RL prompt pool and preference pairs.

RL pool: Skywork R1V2's Selective Sample Buffer keeps prompts whose sampled answers are neither all
right nor all wrong (0 < pass rate < 1): only those give GRPO a non-zero advantage. The pool is
written in verl's RL parquet layout (``prompt``, ``data_source``, ``ability``, ``reward_model``,
``extra_info``) plus the flat columns TRL's GRPOTrainer passes to reward functions.

Preference pairs: MPO (Mixed Preference Optimization, InternVL) and Skywork-VL Reward build pairs
from one prompt's sampled responses: a verified-correct, clean chain is ``chosen``; a wrong,
truncated or low-quality one is ``rejected``. Pairs are written in TRL's conversational DPO layout.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field, model_validator

from skycurate.schemas.config import StrictModel
from skycurate.schemas.chat import MESSAGES

RL_STAGE = "rl_pool"
PREF_STAGE = "preference"

# ---- rl_pool reasons (one rejected row per dropped prompt) ----
ALL_CORRECT = "all_correct"          # pass rate 1 and the band excludes it
ALL_WRONG = "all_wrong"              # pass rate 0 and the band excludes it
OUTSIDE_BAND = "outside_band"        # any other pass rate outside the band
NO_SAMPLES = "no_samples"            # every sample of the prompt errored in the engine

# ---- preference reasons ----
NO_CORRECT_CHAIN = "no_correct_chain"   # no correct, clean, untruncated chain
NO_WRONG_CHAIN = "no_wrong_chain"       # no wrong / truncated / low-quality chain to pair with
ONLY_TIES = "only_ties"                 # every candidate pair was identical, near-identical or off the length band
DUPLICATE_PAIRS = "duplicate_pairs"     # every valid pair repeats a (question, chosen, rejected) already kept

# rejected_kind values
WRONG = "wrong"
TRUNCATED = "truncated"
LOW_QUALITY = "low_quality"


class RLPoolConfig(StrictModel):
    """Which prompts enter the RL pool (by pass rate over the teacher's samples) and how they are rendered."""

    enabled: bool = True
    min_pass_rate: float = Field(default=0.0, ge=0, le=1, description="lower edge of the pass-rate band")
    max_pass_rate: float = Field(default=1.0, ge=0, le=1, description="upper edge of the pass-rate band")
    include_bounds: bool = Field(
        default=False, description="False: min < p < max (default 0 < p < 1, R1V2 SSB); True: min <= p <= max")
    data_source: str | None = Field(
        default=None, description="verl data_source (selects the reward function); None = the prompt's source, "
                                  "else 'skycurate'")
    ability: str = "reasoning"
    system: str | None = Field(default=None, description="system message prepended to the prompt messages")
    user_template: str = Field(default="{question}", description="user message; {question} is replaced")

    @model_validator(mode="after")
    def _check_band(self) -> RLPoolConfig:
        if self.min_pass_rate > self.max_pass_rate:
            raise ValueError(f"min_pass_rate {self.min_pass_rate} > max_pass_rate {self.max_pass_rate}")
        if "{question}" not in self.user_template:
            raise ValueError("user_template must contain {question}")
        return self

    def in_band(self, p: float) -> bool:
        if self.include_bounds:
            return self.min_pass_rate <= p <= self.max_pass_rate
        return self.min_pass_rate < p < self.max_pass_rate

    def band_text(self) -> str:
        op = "<=" if self.include_bounds else "<"
        return f"{self.min_pass_rate:g} {op} p {op} {self.max_pass_rate:g}"


class PreferenceConfig(StrictModel):
    """How chosen/rejected pairs are drawn from one prompt's verified samples."""

    enabled: bool = True
    max_pairs_per_prompt: int = Field(default=2, ge=1)
    min_length_ratio: float = Field(default=0.0, ge=0,
                                    description="chosen tokens / rejected tokens must be >= this")
    max_length_ratio: float | None = Field(
        default=4.0, gt=0, description="chosen tokens / rejected tokens must be <= this; None = no upper bound")
    near_duplicate_threshold: float = Field(
        default=0.9, gt=0, le=1,
        description="MinHash-estimated Jaccard of word 3-gram sets at or above this drops the pair as a tie")
    num_perm: int = Field(default=64, ge=8, description="MinHash permutations")
    prefer_selected: bool = Field(default=True, description="chains selected for SFT are chosen first")

    @model_validator(mode="after")
    def _check_ratio(self) -> PreferenceConfig:
        if self.max_length_ratio is not None and self.max_length_ratio < self.min_length_ratio:
            raise ValueError(f"max_length_ratio {self.max_length_ratio} < min_length_ratio {self.min_length_ratio}")
        return self


# ---- output schemas ----

REWARD_MODEL = pa.struct([pa.field("style", pa.string()), pa.field("ground_truth", pa.string())])
EXTRA_INFO = pa.struct([
    pa.field("index", pa.int64()),
    pa.field("prompt_id", pa.string()),
    pa.field("answer_type", pa.string()),
    pa.field("pass_rate", pa.float64()),
    pa.field("n_samples", pa.int32()),
    pa.field("n_correct", pa.int32()),
    pa.field("difficulty", pa.float64()),
])

RL_POOL_SCHEMA = pa.schema([
    pa.field("prompt", MESSAGES),                 # verl / TRL: chat messages
    pa.field("data_source", pa.string()),
    pa.field("ability", pa.string()),
    pa.field("reward_model", REWARD_MODEL),       # {"style": "rule", "ground_truth": reference answer}
    pa.field("extra_info", EXTRA_INFO),
    pa.field("prompt_id", pa.string()),
    pa.field("question", pa.string()),
    pa.field("reference_answer", pa.string()),
    pa.field("answer_type", pa.string()),
    pa.field("pass_rate", pa.float64()),          # n_correct / n_samples over samples without an engine error
    pa.field("difficulty", pa.float64()),         # 1 - pass_rate
    pa.field("n_samples", pa.int32()),
    pa.field("n_correct", pa.int32()),
    pa.field("solution", pa.string()),            # = reference_answer (TRL reward kwargs)
    pa.field("domain", pa.string()),
    pa.field("lang", pa.string()),
])

PAIR_SCHEMA = pa.schema([
    pa.field("prompt", MESSAGES),                 # TRL DPO conversational: system?, user
    pa.field("chosen", MESSAGES),                 # one assistant message
    pa.field("rejected", MESSAGES),               # one assistant message
    pa.field("pair_id", pa.string()),             # sha256(prompt_id, chosen index, rejected index)[:16]
    pa.field("prompt_id", pa.string()),
    pa.field("chosen_sample_index", pa.int32()),
    pa.field("rejected_sample_index", pa.int32()),
    pa.field("chosen_correct", pa.bool_()),
    pa.field("rejected_correct", pa.bool_()),
    pa.field("rejected_kind", pa.string()),       # wrong | truncated | low_quality
    pa.field("chosen_extracted_answer", pa.string()),
    pa.field("rejected_extracted_answer", pa.string()),
    pa.field("chosen_tokens", pa.int32()),
    pa.field("rejected_tokens", pa.int32()),
    pa.field("similarity", pa.float64()),         # MinHash Jaccard of word 3-grams
    pa.field("reference_answer", pa.string()),
    pa.field("answer_type", pa.string()),
])
