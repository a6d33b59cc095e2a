"""Config of ``skycurate run mix``: a training mixture of several datasets, planned in tokens.

Each source is a catalog ref or tag (``web/clean@latest``, ``cot/sft@prod``) with either a
``weight`` (its share of the mixture's tokens) or a ``tokens`` budget, an upsampling cap
(``max_epochs``, default 5: SkyPile upsampled no source more than five times) and optional filters.
The mixture is published as ``train/<name>``: one row per document and epoch, globally shuffled
by a seeded hash, in shards of ``shard_rows`` rows.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from skycurate.schemas.config import FlowConfig, StrictModel
from skycurate.schemas.tokens import TokenizerConfig

NAMESPACE = "train"
SKYPILE_MAX_EPOCHS = 5.0


class SourceFilter(StrictModel):
    """Which rows of a source may enter the mixture."""

    lang: list[str] | None = Field(default=None, description="keep rows whose lang is one of these")
    min_quality_quantile: float | None = Field(
        default=None, ge=0, lt=1, description="keep rows whose quality column is at or above this quantile of the "
                                               "rows the other filters leave (exact; 0.5 keeps the better half; "
                                               "rows without a score are dropped)")
    quality_column: str = Field(default="quality_score", description="the score min_quality_quantile reads")
    date_from: datetime | None = Field(default=None, description="keep rows dated at or after (date_column)")
    date_to: datetime | None = Field(default=None, description="keep rows dated before (date_column)")
    date_column: str = Field(default="fetch_date", description="the date the range reads (web: fetch_date)")


class MixSource(StrictModel):
    """One dataset in the mixture."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="label in the mixture's source "
                                                                                "column and stats")
    dataset: str = Field(description="catalog ref or tag, e.g. web/clean@latest, web/clean@v3, cot/sft@prod")
    weight: float | None = Field(default=None, gt=0, description="share of the mixture's tokens (normalised over "
                                                                 "the sources with a weight)")
    tokens: int | None = Field(default=None, gt=0, description="a token budget for this source instead of a weight")
    max_epochs: float = Field(default=SKYPILE_MAX_EPOCHS, gt=0,
                              description="upsampling cap: at most this many passes over the source (SkyPile: 5)")
    filter: SourceFilter = Field(default_factory=SourceFilter)
    text_column: str | None = Field(default=None, description="the text (or messages) column; default as tokens")

    @model_validator(mode="after")
    def _one_target(self) -> MixSource:
        if (self.weight is None) == (self.tokens is None):
            raise ValueError(f"source {self.name}: give exactly one of weight and tokens")
        return self


class MixFlowConfig(FlowConfig):
    """``skycurate run mix --config mix.yaml``."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                             description="the mixture: published as train/<name>")
    sources: list[MixSource] = Field(default_factory=list)
    total_tokens: int | None = Field(
        default=None, gt=0, description="the mixture's size in tokens; the weighted sources share what the token "
                                        "budgets leave. Default (weights only): the largest mixture in which no "
                                        "source is repeated")
    tokenizer: TokenizerConfig | None = Field(default=None, description="counts the tokens of sources without an "
                                                                        "n_tokens column")
    seed: int = Field(default=0, description="the shuffle and the choice of documents in a partial epoch")
    shard_rows: int = Field(default=100_000, ge=1, description="rows per Parquet shard of the mixture")

    @model_validator(mode="after")
    def _sources(self) -> MixFlowConfig:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"two sources are called {dup[0]!r}")
        if any(s.tokens for s in self.sources) and any(s.weight for s in self.sources) and not self.total_tokens:
            raise ValueError("sources with a weight next to token budgets need total_tokens")
        return self
