"""Sampling parameters shared by every text-generation backend (connectors/llm/generation.py)."""

from __future__ import annotations

from pydantic import Field

from skycurate.schemas.config import StrictModel


class SamplingParams(StrictModel):
    """How to sample; the same fields for every backend."""

    n: int = Field(default=1, ge=1, description="samples per prompt")
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.8, ge=0.0, description="0 = greedy")
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    seed: int = 0
    stop: list[str] = Field(default_factory=list, description="cut the completion at the first of these")
    repetition_penalty: float = Field(default=1.0, gt=0.0,
                                      description="repetition penalty (1 = none) for prompts without a "
                                                  "per-prompt penalty in Generator.generate(penalties=...)")
