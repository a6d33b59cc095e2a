"""The web corpus flow's config: one block per stage (YAML keys = field names)."""

from __future__ import annotations

from pydantic import Field, field_validator

from skycurate.schemas.config import FlowConfig
from skycurate.schemas.leakage import BenchmarkSpec, DecontaminateConfig
from skycurate.schemas.tokens import TokenizerConfig
from skycurate.schemas.web import BoilerplateConfig, ExactDedupConfig
from skycurate.schemas.web_annotate import LidConfig, QualityModelConfig, SafetyConfig
from skycurate.schemas.web_dedup import MinHashConfig
from skycurate.schemas.web_extract import ExtractConfig, ReaderConfig
from skycurate.schemas.web_quality import QualityFilterConfig, QualitySignalsConfig


class WebConfig(FlowConfig):
    """SkyPile-style pipeline: read -> extract -> lid -> signals -> filters -> boilerplate -> dedup -> classifier."""

    inputs: list[str] = Field(default_factory=list, description="WARC/HTML/JSONL/Parquet files, folders or globs")
    dedup_against: str | None = Field(
        default=None, description="an earlier web/clean version (e.g. web/clean@v0003) whose pages must not come back")
    rejected_preview_chars: int = Field(default=500, ge=0, description="text kept per rejected record, for audits")
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=list, description="decontaminate every new web/clean version against these in the same run "
                                          "(web/clean-decontaminated); empty = no decontamination")
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    reader: ReaderConfig = Field(default_factory=ReaderConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    lid: LidConfig = Field(default_factory=LidConfig)
    quality_signals: QualitySignalsConfig = Field(default_factory=QualitySignalsConfig)
    quality_filter: QualityFilterConfig = Field(default_factory=QualityFilterConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    boilerplate: BoilerplateConfig = Field(default_factory=BoilerplateConfig)
    exact_dedup: ExactDedupConfig = Field(default_factory=ExactDedupConfig)
    minhash: MinHashConfig = Field(default_factory=MinHashConfig)
    quality_model: QualityModelConfig = Field(default_factory=QualityModelConfig)
    tokens: TokenizerConfig | None = Field(
        default=None, description="count tokens with this tokenizer: web/clean gets an n_tokens column and its "
                                  "manifest the totals (stats.tokens); none = no counting")

    @field_validator("dedup_against")
    @classmethod
    def _a_clean_version(cls, value: str | None) -> str | None:
        if value is not None and value.partition("@")[0] != "web/clean":
            raise ValueError("must name a web/clean version, e.g. web/clean@v0003")
        return value
