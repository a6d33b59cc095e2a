"""Config of ``skycurate run preference``: public preference sets in, one deduplicated, decontaminated
``pref/pairs`` out (Skywork-VL Reward built ~190K pairs this way from several public sources)."""

from __future__ import annotations

from pydantic import Field, field_validator

from skycurate.schemas.config import FlowConfig, StrictModel
from skycurate.schemas.leakage import BenchmarkSpec, DecontaminateConfig
from skycurate.schemas.pref import PairFields

NAMESPACE = "pref"
PAIRS = f"{NAMESPACE}/pairs"
REJECTED = f"{NAMESPACE}/rejected"


class PrefSource(StrictModel):
    """One input set: its name (kept in every pair's ``source``), where it is, and its layout."""

    name: str = Field(description="source name, e.g. hh-rlhf, ultrafeedback")
    path: str = Field(description="JSONL / JSON / Parquet files (globs allowed) or a dataset ref")
    fields: PairFields = Field(default_factory=PairFields, description="layout (auto-detected) and column names")


class PrefDedupConfig(StrictModel):
    """Ties inside a pair and duplicates across pairs and sources."""

    tie_threshold: float = Field(
        default=0.9, gt=0, le=1,
        description="a pair whose chosen and rejected answers have an estimated Jaccard (word 3-grams) at or "
                    "above this is a tie and dropped")
    exact: bool = Field(default=True, description="drop pairs equal to an earlier one (prompt, chosen, rejected; "
                                                  "case and whitespace folded), across sources")
    near: bool = Field(default=True, description="drop near-duplicate pairs (MinHash LSH on prompt + chosen + "
                                                 "rejected, character 5-grams, verified)")
    near_threshold: float = Field(default=0.8, gt=0, le=1)
    bands: int = Field(default=20, ge=1, le=256)
    rows: int = Field(default=5, ge=1, le=64)


class PrefFlowConfig(FlowConfig):
    """Preference sets -> ``pref/pairs`` (TRL DPO conversational layout) and ``pref/rejected``."""

    sources: list[PrefSource] = Field(default_factory=list, description="the input sets, in priority order: a "
                                                                        "duplicate keeps the earliest source's pair")
    benchmarks: list[BenchmarkSpec] = Field(default_factory=list, description="drop pairs whose prompt is in these")
    dedup: PrefDedupConfig = Field(default_factory=PrefDedupConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[PrefSource]) -> list[PrefSource]:
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique: {', '.join(names)}")
        return v
