"""The Spark jobs of the web corpus flow: each applies pure batch stages or a global stage to a
DataFrame and returns a DataFrame; the flow publishes them. No Prefect here.

Every stage dataset keeps all rows that entered the stage, with its verdict columns; ``kept``
selects the rows the next stage works on, ``funnel`` reconstructs rows (and bytes) in/out per
stage from the stage datasets with small-column aggregations.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from skycurate.schemas.web import QUARANTINE_SCHEMA, RAW_DOC_SCHEMA, BoilerplateConfig, ExactDedupConfig
from skycurate.schemas.web_annotate import LidConfig, QualityModelConfig, SafetyConfig
from skycurate.schemas.web_dedup import MinHashConfig
from skycurate.schemas.web_extract import ExtractConfig, ReaderConfig
from skycurate.schemas.web_quality import QualityFilterConfig, QualitySignalsConfig
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE, VERDICT_FIELDS, AccountingError
from skycurate.stages.base import chain_on_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Which verdicts each stage dataset may hold, in the order the stages run.
STAGES_OF = {
    "extracted": ["extract"],
    "filtered": ["lid", "safety", "gopher_quality", "gopher_repetition", "c4", "fineweb", "boilerplate"],
    "deduped": ["exact_dedup", "near_dedup"],
    "scored": ["quality_classifier"],
}
CLEAN_COLUMNS = ["id", "url", "domain", "title", "text", "lang", "lang_score", "quality_score", "cluster_id",
                 "source", "offset", "fetch_date", "text_bytes", "n_words", "n_chars", "n_lines",
                 "gopher_stopwords", "rep_dup_line_frac", "pii_emails", "pii_phones", "pii_ips",
                 "boilerplate_lines"]
INDEX_COLUMNS = ["id", "text_hash", "minhash_bands", "minhash_sig"]


def release(spark: "SparkSession") -> None:
    """Drop cached intermediate data once a stage's outputs are published."""
    spark.catalog.clearCache()


def kept(df: "DataFrame") -> "DataFrame":
    """Rows without a verdict, without the verdict columns."""
    from pyspark.sql import functions as F

    if REJECT_REASON not in df.columns:
        return df
    return df.filter(F.col(REJECT_REASON).isNull()).drop(REJECT_STAGE, REJECT_REASON)


def _with_empty_verdicts(df: "DataFrame") -> "DataFrame":
    from pyspark.sql import functions as F

    return df.withColumn(REJECT_STAGE, F.lit(None).cast("string")).withColumn(REJECT_REASON, F.lit(None).cast("string"))


# ---- read + extract ---------------------------------------------------------------------

def _extracted_schema() -> pa.Schema:
    from skycurate.stages.web.extract import EXTRACT

    schema = EXTRACT.output_schema(RAW_DOC_SCHEMA)
    return pa.schema([f for f in schema if f.name != "html"] + [pa.field("text_bytes", pa.int64())])


def _read_and_extract_files(batch: pa.RecordBatch, inputs: tuple[dict[str, Any], ...], reader: ReaderConfig,
                            cfg: ExtractConfig):
    """Read and extract the input files whose positions in ``inputs`` are the batch's ``id`` values."""
    from skycurate.connectors.web_readers import InputFile, read_input
    from skycurate.stages.web.extract import EXTRACT

    for index in batch.column("id").to_pylist():
        row = inputs[index]
        f = InputFile(path=row["path"], label=row["label"], kind=row["kind"], size=row["size"])
        for raw in read_input(f, reader):
            out = EXTRACT(raw, cfg)
            text_bytes = pc.fill_null(pc.binary_length(out.column("text")), 0).cast(pa.int64())
            names = [n for n in out.schema.names if n != "html"]
            yield pa.RecordBatch.from_arrays([out.column(n) for n in names] + [text_bytes],
                                             names=names + ["text_bytes"])


def read_and_extract(spark: "SparkSession", inputs: list[dict[str, Any]], reader: ReaderConfig,
                     cfg: ExtractConfig, scratch: str) -> tuple["DataFrame", "DataFrame"]:
    """(documents, quarantine): input files are read and extracted in parallel, one task per file.

    Task i reads file i of ``inputs`` sorted largest first (``spark.range`` with one partition per
    file puts exactly one index in each; tasks start in index order, so on a few cores the long
    files do not come last). The file list travels with the task function: no Python-side
    DataFrame, no shuffle to spread it.

    Both outputs come from one pass over the crawl, written once to ``scratch`` (a Spark URL the
    caller owns and removes after publishing): caching the pass instead held the whole extracted
    corpus in executor memory, which does not stay bounded at a million pages.
    """
    from pyspark.sql import functions as F

    from skycurate.spark import flat_map_batches

    ordered = tuple(sorted(({k: i[k] for k in ("path", "label", "kind", "size")} for i in inputs),
                           key=lambda i: (-i["size"], i["path"])))
    files = spark.range(0, len(ordered), 1, max(1, len(ordered)))
    read = partial(_read_and_extract_files, inputs=ordered, reader=reader, cfg=cfg)
    records = flat_map_batches(files, read, _extracted_schema())
    records.write.mode("overwrite").option("compression", "zstd").parquet(scratch)
    records = spark.read.parquet(scratch)
    quarantine = records.filter(F.col("quarantine_reason").isNotNull()).select(*QUARANTINE_SCHEMA.names)
    docs = records.filter(F.col("quarantine_reason").isNull()).drop("quarantine_reason")
    return docs, quarantine


# ---- annotate, filter, boilerplate ----------------------------------------------------------

def annotate_and_filter(df: "DataFrame", lid: LidConfig, signals: QualitySignalsConfig, safety: SafetyConfig,
                        quality: QualityFilterConfig, boilerplate: BoilerplateConfig,
                        scratch: str | None = None) -> "DataFrame":
    """Signals as columns, the thresholds on them, then distribution filtering of the survivors.

    Annotate, then filter, in one Python pass over the text: language ID, safety hits and PII
    masking, quality signals, then the language, safety and quality thresholds applied to those
    stored signals (the first failing rule wins; the signals stay in the output). The result,
    every row that entered with its signals and verdict, is computed once (``_materialize``):
    the rejected rows, the line counts and the cleaned survivors all read it.
    """
    from pyspark.sql import functions as F

    from skycurate.spark import balanced
    from skycurate.stages.web.boilerplate import remove_boilerplate
    from skycurate.stages.web.lid import LID, LID_FILTER
    from skycurate.stages.web.quality_signals import QUALITY_FILTER, QUALITY_SIGNALS
    from skycurate.stages.web.safety import SAFETY, SAFETY_FILTER

    judged = chain_on_spark(balanced(df), [(LID, lid), (SAFETY, safety), (QUALITY_SIGNALS, signals),
                                           (LID_FILTER, lid), (SAFETY_FILTER, safety), (QUALITY_FILTER, quality)])
    if boilerplate.enabled:
        judged = _materialize(judged, scratch, "judged")
    removed = judged.filter(F.col(REJECT_REASON).isNotNull())
    survivors = kept(judged)
    if boilerplate.enabled:
        cleaned = remove_boilerplate(survivors, boilerplate)
    else:
        cleaned = _with_empty_verdicts(survivors.withColumn("boilerplate_bytes", F.lit(0).cast("long"))
                                       .withColumn("boilerplate_lines", F.lit(0)))
    return removed.unionByName(cleaned, allowMissingColumns=True)


# ---- dedup --------------------------------------------------------------------------------

def _materialize(df: "DataFrame", scratch: str | None, name: str) -> "DataFrame":
    """Compute ``df`` once for several later reads.

    With ``scratch`` (a Spark URL the caller removes) it is written there as Parquet and read
    back: the Parquet writer's memory is bounded by its row group. Spark's cache (even
    ``DISK_ONLY``) first builds 10,000-row column batches in the heap, which ran a 1M-document
    run out of a 2g heap. Without ``scratch`` (direct callers, tests) the cache is used.
    """
    if scratch is None:
        from pyspark import StorageLevel

        return df.persist(StorageLevel.DISK_ONLY)
    path = f"{scratch.rstrip('/')}/{name}"
    df.write.mode("overwrite").option("compression", "zstd").parquet(path)
    return df.sparkSession.read.parquet(path)


def dedup(df: "DataFrame", exact: ExactDedupConfig, minhash: MinHashConfig,
          previous: "DataFrame | None" = None, scratch: str | None = None) -> "DataFrame":
    """Exact dedup on the normalised-text hash, then MinHash LSH near-dedup of the survivors.

    ``previous`` is an earlier version's index (id, text_hash, minhash_bands, minhash_sig):
    documents matching it are duplicates of pages already published.
    """
    from pyspark.sql import functions as F

    from skycurate.stages.web.exact_dedup import TEXT_HASH, exact_dedup
    from skycurate.stages.web.minhash import MINHASH
    from skycurate.stages.web.near_dedup import near_dedup

    from skycurate.spark import balanced

    hashed = _materialize(chain_on_spark(balanced(df), [(TEXT_HASH, None), (MINHASH, minhash)]), scratch, "hashed")
    if exact.enabled:
        exact_done = exact_dedup(hashed, previous.select("id", "text_hash") if previous is not None else None)
    else:
        exact_done = _with_empty_verdicts(hashed)
    exact_done = _materialize(exact_done, scratch, "exact_done")
    prev_index = previous.select("id", "minhash_bands", "minhash_sig") if previous is not None else None
    near = near_dedup(kept(exact_done), minhash, previous_index=prev_index)
    return exact_done.filter(F.col(REJECT_REASON).isNotNull()).unionByName(near.annotated, allowMissingColumns=True)


# ---- quality classifier -----------------------------------------------------------------

def classify(df: "DataFrame", cfg: QualityModelConfig, scratch: str | None = None) -> tuple["DataFrame", float | None]:
    """Score with the fastText quality model and apply the keep rule; no model = no-op (scores null)."""
    from pyspark.sql import functions as F

    from skycurate.spark import arrow_schema, balanced, map_batches
    from skycurate.stages.web.quality_model import QUALITY_SCORE, quality_threshold_verdicts

    if cfg.model_path is None:
        return _with_empty_verdicts(df.withColumn("quality_score", F.lit(None).cast("double"))), None
    scored = _materialize(QUALITY_SCORE.on_spark(balanced(df), cfg), scratch, "scored")  # quantile + write: score once
    threshold = cfg.threshold
    if threshold is None and cfg.top_fraction is not None:
        # A global quantile is an aggregation: nothing but the one number reaches the driver.
        quantiles = scored.approxQuantile("quality_score", [1.0 - cfg.top_fraction], 0.001)
        threshold = quantiles[0] if quantiles else None
    if threshold is None:
        return _with_empty_verdicts(scored), None

    schema = arrow_schema(scored)
    schema = pa.schema([f for f in schema if f.name not in (REJECT_STAGE, REJECT_REASON)] + list(VERDICT_FIELDS))
    return map_batches(scored, partial(quality_threshold_verdicts, threshold=threshold), schema), threshold


# ---- outputs and accounting ---------------------------------------------------------------

def rejected_rows(frames: list["DataFrame"], preview_chars: int) -> "DataFrame":
    """Every removed record of every stage: who, where, which stage, why, and the start of its text."""
    from pyspark.sql import functions as F

    out = None
    for df in frames:
        cols = set(df.columns)
        part = df.filter(F.col(REJECT_REASON).isNotNull()).select(
            "id", "source", "offset", "url", "domain",
            (F.col("lang") if "lang" in cols else F.lit(None).cast("string")).alias("lang"),
            REJECT_STAGE, REJECT_REASON, "text_bytes",
            F.substring(F.coalesce(F.col("text"), F.lit("")), 1, preview_chars).alias("text_preview"))
        out = part if out is None else out.unionByName(part)
    return out


def clean_rows(scored: "DataFrame") -> "DataFrame":
    return kept(scored).select(*[c for c in CLEAN_COLUMNS if c in scored.columns])


def index_rows(scored: "DataFrame") -> "DataFrame":
    return kept(scored).select(*[c for c in INDEX_COLUMNS if c in scored.columns])


def _stage_counts(frames: dict[str, "DataFrame"]) -> dict[str, dict[str | None, dict[str, int]]]:
    """Per stage dataset and reject stage: rows, entry bytes, kept bytes and payload bytes, in one job.

    Entry bytes are the text bytes a row had when it entered the dataset's stages (boilerplate
    removal shrank ``text_bytes`` of the rows it kept, by ``boilerplate_bytes``); kept bytes
    sum ``text_bytes`` over rows without a verdict. Only these small aggregates reach the driver.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    zero = F.lit(0).cast("long")
    parts = []
    for name, df in frames.items():
        if name == "quarantine":
            stage, entry, kept_bytes, payload = F.lit(None).cast("string"), zero, zero, F.col("payload_bytes")
        else:
            stage = F.col(REJECT_STAGE)
            entry = F.col("text_bytes")
            if name == "filtered":
                entry = entry + F.coalesce(F.col("boilerplate_bytes"), zero)
            kept_bytes = F.when(F.col(REJECT_REASON).isNull(), F.col("text_bytes"))
            payload = F.col("payload_bytes") if name == "extracted" else zero
        parts.append(df.groupBy(stage.alias("stage")).agg(
            F.count(F.lit(1)).alias("n"), F.coalesce(F.sum(entry), zero).alias("b"),
            F.coalesce(F.sum(kept_bytes), zero).alias("kept_b"), F.coalesce(F.sum(payload), zero).alias("payload_b"),
        ).withColumn("dataset", F.lit(name)))
    out: dict[str, dict[str | None, dict[str, int]]] = {name: {} for name in frames}
    for r in reduce(lambda a, b: a.unionByName(b), parts).collect():
        out[r["dataset"]][r["stage"]] = {"n": r["n"], "b": r["b"], "kept_b": r["kept_b"], "payload_b": r["payload_b"]}
    return out


def funnel(frames: dict[str, "DataFrame"]) -> list[dict[str, Any]]:
    """Rows and bytes in/out per stage, from the published stage datasets; raises if they do not chain."""
    from skycurate.stages.accounting import FunnelStep

    counts = _stage_counts(frames)
    q_n = sum(c["n"] for c in counts["quarantine"].values())
    q_b = sum(c["payload_b"] for c in counts["quarantine"].values())
    e_n = sum(c["n"] for c in counts["extracted"].values())
    e_b = sum(c["payload_b"] for c in counts["extracted"].values())
    steps = [FunnelStep(stage="read", rows_in=q_n + e_n, rows_out=e_n, quarantined=q_n,
                        bytes_in=q_b + e_b, bytes_out=e_b)]
    rows_in, bytes_in = e_n, e_b
    for name in ("extracted", "filtered", "deduped", "scored"):
        by_stage = counts[name]
        total = sum(c["n"] for c in by_stage.values())
        if total != rows_in:
            raise AccountingError(f"{name}: {total} rows, but the previous stage kept {rows_in}")
        unknown = set(by_stage) - set(STAGES_OF[name]) - {None}
        if unknown:
            raise AccountingError(f"{name}: unexpected reject stages {sorted(unknown)}")
        if name != "extracted":
            bytes_in = sum(c["b"] for c in by_stage.values())
        for stage in STAGES_OF[name]:
            rejected = by_stage.get(stage, {"n": 0, "b": 0})
            out_rows = rows_in - rejected["n"]
            bytes_out = bytes_in - rejected["b"]
            if stage == STAGES_OF[name][-1]:  # the last stage of a dataset: bytes actually kept
                bytes_out = sum(c["kept_b"] for c in by_stage.values())
            steps.append(FunnelStep(stage=stage, rows_in=rows_in, rows_out=out_rows, rejected=rejected["n"],
                                    bytes_in=bytes_in, bytes_out=bytes_out))
            rows_in, bytes_in = out_rows, bytes_out
    return [s.model_dump() for s in steps]


def check_reconciles(n_input: int, n_clean: int, n_rejected: int, n_quarantined: int,
                     steps: list[dict[str, Any]]) -> None:
    if n_input != n_clean + n_rejected + n_quarantined:
        raise AccountingError(f"input {n_input} != kept {n_clean} + rejected {n_rejected} "
                              f"+ quarantined {n_quarantined}")
    if steps[-1]["rows_out"] != n_clean:
        raise AccountingError(f"the funnel ends with {steps[-1]['rows_out']} rows but web/clean has {n_clean}")
    if sum(s["rejected"] for s in steps) != n_rejected:
        raise AccountingError("the funnel's rejected counts do not add up to web/rejected")
