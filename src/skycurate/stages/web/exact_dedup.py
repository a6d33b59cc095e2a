"""Exact deduplication on a normalised-text hash, with a deterministic survivor.

Normalisation (NFKC, lower case, no whitespace or punctuation) makes copies that differ only
in spacing, case or punctuation count as the same text. The survivor of a group is the
document with the smallest id, so reruns and cluster runs agree.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

import pyarrow as pa
import xxhash

from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE
from skycurate.stages.base import BatchStage, with_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

STAGE = "exact_dedup"
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalized_text_hash(text: str | None) -> int | None:
    if not text:
        return None
    norm = _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())
    return xxhash.xxh64_intdigest(norm.encode()) - (1 << 63) if norm else None


def _hash_batch(batch: pa.RecordBatch, cfg: object = None) -> pa.RecordBatch:
    hashes = [normalized_text_hash(t) for t in batch.column("text").to_pylist()]
    return with_columns(batch, {"text_hash": pa.array(hashes, pa.int64())})


TEXT_HASH = BatchStage(name="text_hash", fn=_hash_batch, requires=("text",),
                       adds=(pa.field("text_hash", pa.int64()),))


def exact_dedup(df: "DataFrame", previous: "DataFrame | None" = None) -> "DataFrame":
    """Mark all but one document per ``text_hash`` as duplicates (Spark; no collect).

    ``df`` holds kept documents with ``id`` and ``text_hash`` (null hashes are never
    duplicates) and no verdict columns. ``previous`` (``id``, ``text_hash``) are documents of
    an earlier version: a new document with one of their hashes is a duplicate of it.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    group = Window.partitionBy("text_hash").orderBy("id")
    marked = df.withColumn("_first", F.first("id").over(group))
    reason = F.when(F.col("text_hash").isNotNull() & (F.col("_first") != F.col("id")),
                    F.concat(F.lit("exact_duplicate of "), F.col("_first")))
    if previous is not None:
        prev = (previous.filter(F.col("text_hash").isNotNull())
                .groupBy("text_hash").agg(F.min("id").alias("_prev")))
        marked = marked.join(prev, "text_hash", "left")
        reason = F.when(F.col("_prev").isNotNull(),
                        F.concat(F.lit("exact_duplicate of "), F.col("_prev"), F.lit(" (previous version)"))
                        ).otherwise(reason)
    marked = marked.withColumn(REJECT_REASON, reason)
    marked = marked.withColumn(REJECT_STAGE, F.when(F.col(REJECT_REASON).isNotNull(), F.lit(STAGE)))
    return marked.drop("_first", "_prev")
