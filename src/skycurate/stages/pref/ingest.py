"""Preference ingest on Spark: raw rows of each source -> canonical pairs -> ties, duplicates and
contaminated prompts dropped, every input record accounted.

``pairs_batch`` is the pure per-batch step (``layouts.to_pairs`` per record, then the tie check of
the two answers with the MinHash similarity the CoT preference pairs use); ``ingest_on_spark``
chains it with the global steps: exact dedup across sources (the earliest source, then the
smallest ``pair_id``, keeps its pair), near dedup (the web pipeline's MinHash LSH on the pair's
text) and decontamination of the prompt (the leakage n-gram scan). Each input record gives exactly
one output row: a pair, or a rejection with its stage and reason.
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from skycurate.schemas.pref import PAIR_SCHEMA, PairFields
from skycurate.schemas.pref_flow import PrefDedupConfig
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE
from skycurate.stages.raw_records import parse_text

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from skycurate.schemas.leakage import DecontaminateConfig
    from skycurate.stages.leakage.decontaminate import NgramIndex

READ, LAYOUT, TIE, EXACT_DEDUP, NEAR_DEDUP, DECONTAMINATE = ("read", "layout", "tie", "exact_dedup", "near_dedup",
                                                             "decontaminate")
OUT_SCHEMA = PAIR_SCHEMA.append(pa.field("source_rank", pa.int32())) \
    .append(pa.field(REJECT_STAGE, pa.string())).append(pa.field(REJECT_REASON, pa.string())) \
    .append(pa.field("detail", pa.string())).append(pa.field("record", pa.string()))
REJECTED_SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("source", pa.string()),
                             pa.field("stage", pa.string()), pa.field("reason", pa.string()),
                             pa.field("detail", pa.string()), pa.field("record", pa.string())])


def _record_json(row: dict[str, Any]) -> str:
    def safe(v: Any) -> Any:
        if isinstance(v, (bytes, bytearray)):
            return f"<{len(v)} bytes>"
        if isinstance(v, dict):
            return {k: safe(x) for k, x in v.items()}
        if isinstance(v, list):
            return [safe(x) for x in v]
        return v
    return json.dumps(safe(row), ensure_ascii=False, default=str)[:4000]


def _rejected(source: str, rank: int, stage: str, reason: str, detail: str, record: str | None,
              rid: str | None = None) -> dict[str, Any]:
    return {"pair_id": rid, "source": source, "source_rank": rank, REJECT_STAGE: stage, REJECT_REASON: reason,
            "detail": detail, "record": record}


def pairs_batch(batch: pa.RecordBatch, layout: str, fields: PairFields, source: str, rank: int, text: bool,
                tie_threshold: float) -> pa.RecordBatch:
    """Raw records of one source -> one ``OUT_SCHEMA`` row each: its pair, or why it has none."""
    from skycurate.stages.cot.preference import similarity
    from skycurate.stages.pref.layouts import to_pairs

    if text:
        raw = [r for v, w in zip(batch.column("value").to_pylist(), batch.column("whole").to_pylist(), strict=True)
               for r in parse_text(v or "", bool(w))]
    else:
        raw = batch.to_pylist()
    out = []
    for rec in raw:
        if "_corrupt_record" in rec and len(rec) == 1:
            out.append(_rejected(source, rank, READ, "malformed_record", "not a JSON object",
                                 rec["_corrupt_record"]))
            continue
        pairs, why = to_pairs(rec, layout, fields, source)
        if not pairs:
            reason = (why or "malformed").split(":", 1)[0].strip()
            stage = TIE if reason == "tie" else LAYOUT
            out.append(_rejected(source, rank, stage, reason, why or "", _record_json(rec)))
            continue
        pair = pairs[0]
        sim = similarity(pair["chosen_text"], pair["rejected_text"])
        if sim >= tie_threshold:
            out.append(_rejected(source, rank, TIE, "tie", f"near-identical chosen and rejected (similarity {sim:.2f})",
                                 _record_json(rec), pair["pair_id"]))
            continue
        out.append({**pair, "source_rank": rank, REJECT_STAGE: None, REJECT_REASON: None, "detail": None,
                    "record": None})
    return pa.RecordBatch.from_pylist(out, schema=OUT_SCHEMA)


def _near_batch(batch: pa.RecordBatch, cfg: PrefDedupConfig) -> pa.RecordBatch:
    from skycurate.stages.web.minhash import minhash_batch

    return minhash_batch(batch, _minhash_config(cfg))


def _minhash_config(cfg: PrefDedupConfig):
    from skycurate.schemas.web_dedup import MinHashConfig

    return MinHashConfig(bands=cfg.bands, rows=cfg.rows, verify_threshold=cfg.near_threshold, char_ngram=5,
                         char_ngram_langs=["_chars"], verify_all_pairs_up_to=200)


def to_pairs_on_spark(df: DataFrame, layout: str, fields: PairFields, source: str, rank: int, text: bool,
                      cfg: PrefDedupConfig) -> DataFrame:
    """One source's raw records as ``OUT_SCHEMA`` rows (Spark ``mapInArrow``)."""
    from skycurate.spark import map_batches

    return map_batches(df, partial(pairs_batch, layout=layout, fields=fields, source=source, rank=rank, text=text,
                                   tie_threshold=cfg.tie_threshold), OUT_SCHEMA)


def ingest_on_spark(frames: list[DataFrame], cfg: PrefDedupConfig, index: NgramIndex | None,
                    decon: DecontaminateConfig) -> DataFrame:
    """The sources' rows (``to_pairs_on_spark``) unioned, deduplicated and decontaminated; every row
    kept, rejections marked in ``reject_stage``/``reject_reason``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from skycurate.schemas.web_dedup import MINHASH_FIELDS
    from skycurate.spark import arrow_schema, map_batches
    from skycurate.stages.leakage.decontaminate import scan_on_spark, split_scan
    from skycurate.stages.web.near_dedup import near_dedup

    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    pending = F.col(REJECT_REASON).isNull()
    if cfg.exact:
        fold = lambda c: F.lower(F.regexp_replace(F.trim(F.col(c)), r"\s+", " "))  # noqa: E731
        key = F.sha2(F.concat_ws("\u0000", fold("prompt_text"), fold("chosen_text"), fold("rejected_text")), 256)
        w = Window.partitionBy(F.when(pending, key)).orderBy("source_rank", "pair_id")
        first = F.first(F.struct("pair_id", "source")).over(w)
        dup = pending & (first["pair_id"] != F.col("pair_id"))
        out = (out.withColumn("_first", first)
               .withColumn(REJECT_STAGE, F.when(dup, F.lit(EXACT_DEDUP)).otherwise(F.col(REJECT_STAGE)))
               .withColumn(REJECT_REASON, F.when(dup, F.lit("exact_duplicate")).otherwise(F.col(REJECT_REASON)))
               .withColumn("detail", F.when(dup, F.concat(F.lit("same pair as "), F.col("_first.pair_id"),
                                                          F.lit(" from "), F.col("_first.source")))
                           .otherwise(F.col("detail")))
               .drop("_first"))
    if cfg.near:
        text = F.concat_ws("\n", "prompt_text", "chosen_text", "rejected_text")
        with_text = out.withColumn("id", F.col("pair_id")).withColumn("text", text).withColumn("lang", F.lit("_chars"))
        schema = arrow_schema(with_text)
        for f in MINHASH_FIELDS:
            schema = schema.append(f)
        active = with_text.where(F.col(REJECT_REASON).isNull())
        res = near_dedup(map_batches(active, partial(_near_batch, cfg=cfg), schema), _minhash_config(cfg))
        near = res.annotated.select(F.col("id").alias("_nid"), F.col(REJECT_REASON).alias("_nreason"))
        out = (out.join(near, F.col("pair_id") == F.col("_nid"), "left")
               .withColumn(REJECT_STAGE, F.when(F.col("_nreason").isNotNull(), F.lit(NEAR_DEDUP))
                           .otherwise(F.col(REJECT_STAGE)))
               .withColumn("detail", F.when(F.col("_nreason").isNotNull(), F.col("_nreason"))
                           .otherwise(F.col("detail")))
               .withColumn(REJECT_REASON, F.when(F.col("_nreason").isNotNull(), F.lit("near_duplicate"))
                           .otherwise(F.col(REJECT_REASON)))
               .drop("_nid", "_nreason"))
    if index is not None:
        prompts = out.where(F.col(REJECT_REASON).isNull()).select(F.col("pair_id").alias("id"),
                                                                  F.col("prompt_text").alias("text"))
        hits, _ = split_scan(scan_on_spark(prompts, index, decon.model_copy(update={"mode": "drop_document"})))
        hits = hits.where(F.col(REJECT_REASON).isNotNull()).select(F.col("id").alias("_cid"),
                                                                   F.col(REJECT_REASON).alias("_creason"))
        out = (out.join(hits, F.col("pair_id") == F.col("_cid"), "left")
               .withColumn(REJECT_STAGE, F.when(F.col("_creason").isNotNull(), F.lit(DECONTAMINATE))
                           .otherwise(F.col(REJECT_STAGE)))
               .withColumn("detail", F.when(F.col("_creason").isNotNull(), F.col("_creason"))
                           .otherwise(F.col("detail")))
               .withColumn(REJECT_REASON, F.when(F.col("_creason").isNotNull(), F.lit("contaminated"))
                           .otherwise(F.col(REJECT_REASON)))
               .drop("_cid", "_creason"))
    return out


def source_layouts(sources: list[Any], store: str) -> list[str]:
    """Each source's layout, from the fields of its first rows (one clear line when one does not
    fit); an empty source has nothing to detect."""
    from skycurate.stages.pref.layouts import detect_pair_layout
    from skycurate.stages.raw_records import sample_columns

    out = []
    for s in sources:
        columns, where = sample_columns(s.path, store)
        out.append(detect_pair_layout(columns, s.fields, f"{s.name} ({where})") if columns else "trl")
    return out


def kept_and_rejected(out: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(``pref/pairs`` rows in ``PAIR_SCHEMA``, ``pref/rejected`` rows in ``REJECTED_SCHEMA``)."""
    from pyspark.sql import functions as F

    kept = out.where(F.col(REJECT_REASON).isNull()).select(*PAIR_SCHEMA.names).orderBy("source", "pair_id")
    rejected = out.where(F.col(REJECT_REASON).isNotNull()).select(
        F.col("pair_id").alias("id"), "source", F.col(REJECT_STAGE).alias("stage"),
        F.col(REJECT_REASON).alias("reason"), "detail", "record").orderBy("source", "stage", "id")
    return kept, rejected
