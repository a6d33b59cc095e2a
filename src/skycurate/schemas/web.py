"""Arrow schemas shared by the web corpus (SkyPile) stages: column names are a contract.

Reader output (``RAW_DOC_SCHEMA``) -> extraction adds ``text``/``title``/``charset`` and drops
``html`` -> language ID adds ``lang``/``lang_score`` -> quality signals, safety, boilerplate,
dedup and the quality classifier add their columns. Every stage that removes records writes
the verdict columns ``reject_stage``/``reject_reason`` (``skycurate.stages.accounting``);
a record already rejected keeps its first verdict and is not processed further.
"""

from __future__ import annotations

import pyarrow as pa

# Reader output: one row per input record (WARC response, HTML file, JSONL line, Parquet row).
RAW_DOC_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),        # record_id(source, offset): 16 hex chars
    pa.field("source", pa.string(), nullable=False),    # input file label (stable across machines)
    pa.field("offset", pa.int64(), nullable=False),     # byte offset (WARC), line number (JSONL), row (Parquet), 0 (HTML file)
    pa.field("url", pa.string()),
    pa.field("domain", pa.string()),                    # lower-case host, no port, no leading "www."
    pa.field("fetch_date", pa.timestamp("us", tz="UTC")),
    pa.field("content_type", pa.string()),              # HTTP Content-Type when known
    pa.field("html", pa.binary()),                      # raw payload bytes (null for text inputs)
    pa.field("text", pa.string()),                      # given text (JSONL/Parquet ``text``), else null
    pa.field("payload_bytes", pa.int64(), nullable=False),
    pa.field("quarantine_reason", pa.string()),         # non-null: unreadable record, goes to web/quarantine
])

QUARANTINE_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("payload_bytes", pa.int64(), nullable=False),
    pa.field("quarantine_reason", pa.string(), nullable=False),
])

# Added by extraction (stages/web/extract.py)
EXTRACT_FIELDS = (
    pa.field("text", pa.string()),
    pa.field("title", pa.string()),
    pa.field("charset", pa.string()),
)
# Added by language ID (stages/web/lid.py)
LID_FIELDS = (pa.field("lang", pa.string()), pa.field("lang_score", pa.float64()))
# Added by the quality classifier (stages/web/quality_model.py)
QUALITY_SCORE_FIELD = pa.field("quality_score", pa.float64())
# Added by near-dedup (stages/web/near_dedup.py)
CLUSTER_FIELD = pa.field("cluster_id", pa.string())


# ---- config blocks of the global (Spark) stages written here; per-record blocks live in web_*.py
from pydantic import Field  # noqa: E402

from skycurate.schemas.config import StrictModel  # noqa: E402


class BoilerplateConfig(StrictModel):
    """SkyPile distribution filtering: lines that recur in too many documents are templates."""

    enabled: bool = True
    max_doc_frequency: int = Field(
        default=10, ge=2,
        description="a normalised line found in more than this many documents is removed everywhere")
    min_chars_after: int = Field(default=100, ge=0, description="documents shorter than this after removal are dropped")
    normalize_digits: bool = Field(default=True, description="'(c) 2023' and '(c) 2024' count as the same line")


class ExactDedupConfig(StrictModel):
    enabled: bool = True
