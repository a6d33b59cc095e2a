"""The decontamination dataset task, shared by the decontaminate flow and the web flow (which
decontaminates each new ``web/clean`` in the same run): flows never import one another.

The benchmark n-gram index is built on the driver (benchmarks are small) and broadcast; the
corpus is scanned once by a Spark job whose output (annotated documents and match rows) is
written once to the store's scratch space, then published as three datasets:

- ``<corpus>-decontaminated`` (or ``output``): the kept documents, GPT-3-cut text in place;
- ``leakage/contamination``: one row per (document, benchmark item) that matched, with the
  per-benchmark summary in the manifest;
- ``leakage/rejected``: every dropped document with its reason.

Lineage: the corpus version and every benchmark file by its sha256.
"""

from __future__ import annotations

from typing import Any

from skycurate.catalog import Catalog, DatasetRef
from skycurate.errors import SkycurateError
from skycurate.flows._runtime import current_producer, dataset_task, funnel_stats
from skycurate.connectors.benchmarks import BenchmarkPins, benchmark_parents
from skycurate.schemas.config import SparkConfig
from skycurate.schemas.leakage import BenchmarkSpec, DecontaminateConfig
from skycurate.spark import get_spark, read_dataset
from skycurate.stages.accounting import FunnelStep

NAMESPACE = "leakage"
STAGE = "decontaminate"


@dataset_task()
def decontaminate(store: str, corpus: DatasetRef, benchmarks: list[BenchmarkSpec],
                  files: BenchmarkPins, cfg: DecontaminateConfig, output: str,
                  spark: SparkConfig) -> dict[str, DatasetRef]:
    from pyspark.sql import functions as F

    from skycurate.connectors.benchmarks import load_benchmark
    from skycurate.reporting import funnel_chart_png
    from skycurate.stages.leakage.decontaminate import build_index, rejected_rows, scan_on_spark, split_scan, summary
    from skycurate.stages.web.pipeline import kept as kept_rows

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer(cfg)
    tables = [load_benchmark(spec, cfg.splits) for spec in benchmarks]
    index = build_index(tables, cfg)
    df = kept_rows(read_dataset(session, corpus))  # a stage dataset with verdicts: its kept rows only
    missing = [c for c in ("id", "text") if c not in df.columns]
    if missing:
        raise SkycurateError(f"{corpus.label} has no {'/'.join(missing)} column: decontamination needs id and text")
    parents = [corpus, *benchmark_parents(files)]
    index_stats = {"n": index.n, "keys": int(len(index.keys)), "items": index.num_items,
                   "bytes": index.nbytes, "skipped_short_items": dict(index.skipped_short)}
    with catalog.scratch("decontaminate") as scratch:
        # One scan, written once: kept, rejected and matches are read back from it.
        scan_on_spark(df, index, cfg).write.mode("overwrite").option("compression", "zstd").parquet(scratch)
        annotated, matches = split_scan(session.read.parquet(scratch))
        n_input = annotated.count()
        with catalog.all_or_nothing():
            rejected_ref = catalog.publish(f"{NAMESPACE}/rejected", rejected_rows(annotated, cfg), parents, producer)
            n_rejected = catalog.manifest(rejected_ref).num_rows
            per_benchmark = summary(matches, annotated, index)
            contamination_ref = catalog.publish(f"{NAMESPACE}/contamination", matches, parents, producer,
                                                {"summary": per_benchmark, "index": index_stats,
                                                 "corpus": corpus.label})
            clean = annotated.filter(F.col("reject_reason").isNull()).drop("reject_stage", "reject_reason")
            stale_tokens = cfg.mode != "drop_document" and "n_tokens" in clean.columns
            if stale_tokens:   # cut texts: the corpus's token counts no longer hold (recount: skycurate run tokens)
                clean = clean.drop("n_tokens")

            def stats(n_kept: int) -> dict[str, Any]:
                step = FunnelStep(stage=STAGE, rows_in=n_input, rows_out=n_kept, rejected=n_rejected)
                return {**funnel_stats(None, step), "input": n_input, "kept": n_kept, "rejected": n_rejected,
                        "summary": per_benchmark, "decontaminate": cfg.model_dump(mode="json"),
                        **({"n_tokens_dropped": "texts were cut; recount with skycurate run tokens"}
                           if stale_tokens else {})}

            chart = funnel_chart_png([{"stage": "corpus", "rows_in": n_input, "rows_out": n_input},
                                      {"stage": STAGE, "rows_in": n_input, "rows_out": n_input - n_rejected,
                                       "rejected": n_rejected}], f"decontamination of {corpus.label}")
            clean_ref = catalog.publish(output, clean, [*parents, rejected_ref, contamination_ref], producer, stats,
                                        attachments={"_funnel.png": chart})
    return {"clean": clean_ref, "contamination": contamination_ref, "rejected": rejected_ref}
