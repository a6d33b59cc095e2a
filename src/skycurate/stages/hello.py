"""The demo stage: count words (each CJK character counts as one) and reject too-short texts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from skycurate.schemas.hello import LengthFilterConfig
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE, VERDICT_FIELDS, split_verdicts
from skycurate.stages.base import BatchStage, with_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Latin-script words, digits, or single CJK ideographs: Chinese has no spaces between words.
WORD_PATTERN = r"\p{Han}|[^\s\p{P}\p{S}\p{Han}]+"


def _annotate(batch: pa.RecordBatch, cfg: LengthFilterConfig) -> pa.RecordBatch:
    text = pc.fill_null(batch.column("text"), "")
    n_chars = pc.utf8_length(text).cast(pa.int32())
    n_words = pc.count_substring_regex(text, WORD_PATTERN).cast(pa.int32())
    too_short = pc.less(n_words, cfg.min_words)
    reason = pc.if_else(too_short, pc.binary_join_element_wise(
        "too_short: ", n_words.cast(pa.string()), f" words < {cfg.min_words}", ""), pa.scalar(None, pa.string()))
    stage = pc.if_else(too_short, "length_filter", pa.scalar(None, pa.string()))
    return with_columns(batch, {"n_chars": n_chars, "n_words": n_words, REJECT_STAGE: stage, REJECT_REASON: reason})


annotate = BatchStage(
    name="length_filter",
    fn=_annotate,
    requires=("text",),
    adds=(pa.field("n_chars", pa.int32()), pa.field("n_words", pa.int32()), *VERDICT_FIELDS),
)


def clean(raw: "DataFrame", cfg: LengthFilterConfig) -> tuple["DataFrame", "DataFrame"]:
    """Spark job: annotate every batch, then split into kept and rejected."""
    return split_verdicts(annotate.on_spark(raw, cfg))
