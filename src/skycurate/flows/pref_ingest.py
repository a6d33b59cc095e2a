"""Preference ingest flow: public preference sets (TRL, HH-RLHF, UltraFeedback, ultrafeedback_binarized,
with or without images) -> one ``pref/pairs`` in TRL's conversational DPO layout, and ``pref/rejected``.

One dataset task on Spark (``stages/pref/ingest``): each source's records become canonical pairs in
the source's layout (detected, or named in ``fields``), ties are dropped (equal scores, identical
or near-identical answers), duplicates across sources are dropped (exact, then MinHash near
duplicates; the earlier source wins), and pairs whose prompt is in a benchmark are dropped. Every
input record is one row of ``pref/pairs`` or of ``pref/rejected``; the manifest counts them per
source, checked before anything is published.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from skycurate.catalog import Catalog, DatasetRef
from skycurate.connectors.benchmarks import BenchmarkPins, benchmark_parents, pin_benchmarks
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import attach_run_report, current_producer, dataset_task, run_dataset_task
from skycurate.schemas.config import SparkConfig
from skycurate.schemas.leakage import BenchmarkSpec, DecontaminateConfig
from skycurate.schemas.pref_flow import PAIRS, REJECTED, PrefDedupConfig, PrefFlowConfig, PrefSource
from skycurate.spark import get_spark
from skycurate.stages.accounting import FunnelStep
from skycurate.stages.pref.ingest import source_layouts
from skycurate.stages.raw_records import resolve_source


@dataset_task()
def ingest_pairs(store: str, sources: list[PrefSource], keys: list[Any], layouts: list[str],
                 benchmarks: list[BenchmarkSpec], files: BenchmarkPins, dedup: PrefDedupConfig,
                 decontaminate: DecontaminateConfig, spark: SparkConfig) -> dict[str, DatasetRef]:
    from pyspark.sql import functions as F

    from skycurate.connectors.benchmarks import load_benchmark
    from skycurate.stages.leakage.decontaminate import build_index
    from skycurate.stages.pref.ingest import ingest_on_spark, kept_and_rejected, to_pairs_on_spark
    from skycurate.stages.raw_records import read_records

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer()
    frames, parents = [], []
    for rank, (src, key, layout) in enumerate(zip(sources, keys, layouts, strict=True)):
        df, src_parents, text = read_records(session, key, store)
        frames.append(to_pairs_on_spark(df, layout, src.fields, src.name, rank, text, dedup))
        parents += src_parents
    index = None
    if benchmarks:
        index = build_index([load_benchmark(b, decontaminate.splits) for b in benchmarks], decontaminate)
        parents += benchmark_parents(files)
    with catalog.scratch("pref-ingest") as scratch:
        ingest_on_spark(frames, dedup, index, decontaminate).write.mode("overwrite").parquet(scratch)
        out = session.read.parquet(scratch)
        kept, rejected = kept_and_rejected(out)
        counts = {(r["source"], r["kept"]): r["count"]
                  for r in out.groupBy("source", F.col("reject_reason").isNull().alias("kept")).count().collect()}
        by_source = {s.name: {"records": counts.get((s.name, True), 0) + counts.get((s.name, False), 0),
                              "pairs": counts.get((s.name, True), 0), "rejected": counts.get((s.name, False), 0)}
                     for s in sources}
        by_reason = {f"{r['stage']}:{r['reason']}": r["count"]
                     for r in rejected.groupBy("stage", "reason").count().collect()}
        # one funnel row per source, each reconciled (records = pairs + rejected) before publishing
        funnel = [FunnelStep(stage=name, rows_in=v["records"], rows_out=v["pairs"], rejected=v["rejected"])
                  .model_dump() for name, v in by_source.items()]
        stats = {"funnel": funnel, "by_source": by_source, "by_reason": by_reason,
                 "layouts": {s.name: layout for s, layout in zip(sources, layouts, strict=True)}}
        with catalog.all_or_nothing():
            rej_ref = catalog.publish(REJECTED, rejected, parents, producer, {"by_reason": by_reason,
                                                                              "by_source": by_source})
            pairs_ref = catalog.publish(PAIRS, kept, [*parents, rej_ref], producer, stats)
    return {"pairs": pairs_ref, "rejected": rej_ref}


@flow(name="preference")
def preference_flow(store: str | None = None, config: PrefFlowConfig = PrefFlowConfig(),
                    force: bool = False) -> dict[str, Any]:
    """Preference sets -> ``pref/pairs`` (deduplicated across sources, ties dropped, decontaminated)."""
    cfg = config
    store, catalog = open_flow(store, cfg)
    out = run_dataset_task(ingest_pairs, store=store, force=force, sources=cfg.sources,
                           keys=[resolve_source(s.path, store) for s in cfg.sources],
                           layouts=source_layouts(cfg.sources, store), benchmarks=cfg.benchmarks,
                           files=pin_benchmarks(cfg.benchmarks), dedup=cfg.dedup, decontaminate=cfg.decontaminate,
                           spark=cfg.spark)
    funnel = attach_run_report("preference", catalog, out["pairs"])
    return {"datasets": out, "funnel": funnel, "stats": catalog.manifest(out["pairs"]).stats}
