"""SkyPile distribution filtering: remove lines that recur across many documents, then drop
documents left too short.

Site navigation, cookie banners, footers and templates are the same lines on thousands of
pages. Counting normalised lines over the whole corpus finds them without per-site rules.
The count is a Spark aggregation (document frequency per line hash); the removal is a pure
batch function given, per document, the line numbers to drop. Nothing is collected.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from skycurate.schemas.web import BoilerplateConfig
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

STAGE = "boilerplate"
LINE_SCHEMA = pa.schema([("id", pa.string()), ("line_no", pa.int32()), ("line_hash", pa.int64())])
_SPACE = re.compile(r"\s+")
_DIGITS = re.compile(r"\d+")


def normalize_line(line: str, digits: bool = True) -> str:
    """NFKC, lower case, collapsed spaces and (optionally) every number as '0'."""
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", line).lower()).strip()
    return _DIGITS.sub("0", text) if digits else text


def line_hash(line: str, digits: bool = True) -> int | None:
    norm = normalize_line(line, digits)
    return xxhash.xxh64_intdigest(norm.encode()) - (1 << 63) if norm else None  # as signed int64


def explode_lines(batch: pa.RecordBatch, cfg: BoilerplateConfig) -> pa.RecordBatch:
    """(id, line_no, line_hash) for every non-empty line of every document."""
    ids, nos, hashes = [], [], []
    for doc_id, text in zip(batch.column("id").to_pylist(), batch.column("text").to_pylist()):
        for no, line in enumerate((text or "").split("\n")):
            h = line_hash(line, cfg.normalize_digits)
            if h is not None:
                ids.append(doc_id)
                nos.append(no)
                hashes.append(h)
    return pa.RecordBatch.from_arrays([pa.array(ids, pa.string()), pa.array(nos, pa.int32()),
                                       pa.array(hashes, pa.int64())], schema=LINE_SCHEMA)


def remove_lines(batch: pa.RecordBatch, cfg: BoilerplateConfig) -> pa.RecordBatch:
    """Drop the listed lines (``drop_lines``) from ``text``; reject documents left too short.

    ``text_bytes`` becomes the new size and ``boilerplate_bytes`` the bytes removed.
    """
    texts = batch.column("text").to_pylist()
    drops = batch.column("drop_lines").to_pylist()
    new_texts, stages, reasons = [], [], []
    for text, drop in zip(texts, drops):
        if drop:
            skip = set(drop)
            text = "\n".join(line for no, line in enumerate((text or "").split("\n")) if no not in skip)
        new_texts.append(text)
        n = len(text or "")
        if n < cfg.min_chars_after:
            stages.append(STAGE)
            reasons.append(f"boilerplate: {n} chars left < {cfg.min_chars_after}"
                           + (f" after removing {len(drop)} recurring lines" if drop else ""))
        else:
            stages.append(None)
            reasons.append(None)
    text_arr = pa.array(new_texts, pa.string())
    text_bytes = pc.binary_length(text_arr).cast(pa.int64())
    cols = {"text": text_arr, "text_bytes": text_bytes,
            "boilerplate_bytes": pc.subtract(batch.column("text_bytes"), text_bytes),
            "boilerplate_lines": pa.array([len(d) if d else 0 for d in drops], pa.int32()),
            REJECT_STAGE: pa.array(stages, pa.string()), REJECT_REASON: pa.array(reasons, pa.string())}
    names = [n for n in batch.schema.names if n not in cols and n != "drop_lines"]
    return pa.RecordBatch.from_arrays([batch.column(n) for n in names] + list(cols.values()),
                                      names=names + list(cols))


def remove_boilerplate(df: "DataFrame", cfg: BoilerplateConfig) -> "DataFrame":
    """Spark job over kept documents (``id``, ``text``, ...): count line document-frequency, remove the frequent lines.

    The input needs ``id``, ``text`` and ``text_bytes`` and no verdict columns. Returns its rows
    with cleaned ``text``, ``text_bytes``, ``boilerplate_bytes``, ``boilerplate_lines`` and verdicts.
    """
    from functools import partial

    from pyspark.sql import functions as F

    from skycurate.spark import arrow_schema, map_batches
    from skycurate.stages.web.components import materialize

    # Read twice (the counts, then the lines to drop): split the text into lines once.
    lines = materialize(map_batches(df.select("id", "text"), partial(explode_lines, cfg=cfg), LINE_SCHEMA))
    frequent = (lines.groupBy("line_hash").agg(F.countDistinct("id").alias("docs"))
                .filter(F.col("docs") > cfg.max_doc_frequency).select("line_hash"))
    drops = (lines.join(frequent, "line_hash", "left_semi")
             .groupBy("id").agg(F.sort_array(F.collect_set("line_no")).alias("drop_lines")))
    joined = df.join(drops, "id", "left")
    in_schema = arrow_schema(joined)
    added = {"text_bytes": pa.int64(), "boilerplate_bytes": pa.int64(), "boilerplate_lines": pa.int32(), REJECT_STAGE: pa.string(),
             REJECT_REASON: pa.string()}
    out_schema = pa.schema([f for f in in_schema if f.name not in added and f.name != "drop_lines"]
                           + [pa.field(k, v) for k, v in added.items()])
    return map_batches(joined, partial(remove_lines, cfg=cfg), out_schema)
