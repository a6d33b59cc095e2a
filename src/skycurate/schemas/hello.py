"""Config and Arrow schemas of the ``hello`` demo flow."""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from skycurate.schemas.config import FlowConfig, StrictModel

RAW_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("line", pa.int64(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("text", pa.string()),
])

QUARANTINE_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("line", pa.int64(), nullable=False),
    pa.field("error", pa.string(), nullable=False),
    pa.field("raw", pa.string()),
])


class IngestConfig(StrictModel):
    sources: list[str] = Field(default_factory=list, description="JSONL files, folders or globs; empty = built-in sample")
    text_field: str = "text"


class LengthFilterConfig(StrictModel):
    min_words: int = Field(default=3, ge=0, description="drop texts with fewer words (a CJK character counts as one)")


class HelloConfig(FlowConfig):
    """The demo: read JSONL lines, count words (CJK-aware), drop documents that are too short.

    One block per stage, so that changing a stage's settings re-runs only that stage.
    """

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    length_filter: LengthFilterConfig = Field(default_factory=LengthFilterConfig)
