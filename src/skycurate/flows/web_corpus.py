"""The web corpus flow (SkyPile): raw crawl -> clean, deduplicated Chinese and English text.

    read+extract -> annotate + filter (lid, safety/PII, quality signals, then their thresholds)
      + boilerplate -> exact + near dedup -> quality classifier
      -> web/clean, web/rejected, web/minhash_index

Each task publishes its stage dataset (extract also ``web/quarantine``), which holds every row
that entered the stage, with the stage's verdict (``reject_stage``/``reject_reason``); the next stage reads
the kept rows. Signals and the thresholds on them are one pass (one task): ``web/filtered``
keeps every signal column next to the verdict. ``finalize`` gathers the rejected rows of all
stages into ``web/rejected``, computes the funnel from the stage datasets (one small-column
aggregation job) and checks that input = kept + rejected + quarantined before any of
``web/rejected``, ``web/clean`` and ``web/minhash_index`` becomes visible (``all_or_nothing``).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from prefect import flow
from skycurate.catalog import Catalog, DatasetRef
from skycurate.catalog.pins import CrawlFilePin, FilePin, pin_crawl_file, pin_file
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import (attach_run_report, current_producer, dataset_task,
                                      run_dataset_task)
from skycurate.schemas.config import SparkConfig
from skycurate.schemas.tokens import TokenizerConfig
from skycurate.schemas.web import BoilerplateConfig, ExactDedupConfig
from skycurate.schemas.web_annotate import LidConfig, QualityModelConfig, SafetyConfig
from skycurate.schemas.web_dedup import MinHashConfig
from skycurate.schemas.web_extract import ExtractConfig, ReaderConfig
from skycurate.schemas.web_flow import WebConfig
from skycurate.schemas.web_quality import QualityFilterConfig, QualitySignalsConfig
from skycurate.spark import get_spark, read_dataset
from skycurate.stages.web import pipeline

NAMESPACE = "web"


def pin_inputs(patterns: list[str]) -> list[CrawlFilePin]:
    from skycurate.connectors.web_readers import discover_inputs

    return [pin_crawl_file(f.path, f.label, f.kind) for f in discover_inputs(patterns)]


@dataset_task()
def extract(store: str, inputs: list[CrawlFilePin], reader: ReaderConfig, cfg: ExtractConfig,
            spark: SparkConfig) -> dict[str, DatasetRef]:
    catalog, producer, session = Catalog(store), current_producer(cfg), get_spark(spark)
    parents = [i.parent() for i in inputs]
    with catalog.scratch("extract") as scratch:
        docs, quarantine = pipeline.read_and_extract(session, [i.model_dump() for i in inputs], reader, cfg,
                                                     scratch)
        with catalog.all_or_nothing():   # a kill between the two must not leave one to be published again
            return {"quarantine": catalog.publish(f"{NAMESPACE}/quarantine", quarantine, parents, producer),
                    "extracted": catalog.publish(f"{NAMESPACE}/extracted", docs, parents, producer)}


@dataset_task()
def annotate_and_filter(store: str, extracted: DatasetRef, lid: LidConfig, signals: QualitySignalsConfig,
                        safety: SafetyConfig, quality: QualityFilterConfig, boilerplate: BoilerplateConfig,
                        files: dict[str, FilePin | None], spark: SparkConfig) -> DatasetRef:
    # ``files`` (blocklists, lid model by content hash) is only there for the cache key.
    catalog, session = Catalog(store), get_spark(spark)
    try:
        with catalog.scratch("filter") as scratch:
            out = pipeline.annotate_and_filter(pipeline.kept(read_dataset(session, extracted)), lid, signals, safety,
                                               quality, boilerplate, scratch)
            return catalog.publish(f"{NAMESPACE}/filtered", out, [extracted], current_producer(quality))
    finally:
        pipeline.release(session)


@dataset_task()
def dedup(store: str, filtered: DatasetRef, exact: ExactDedupConfig, minhash: MinHashConfig,
          previous_index: DatasetRef | None, spark: SparkConfig) -> DatasetRef:
    catalog = Catalog(store)
    session = get_spark(spark)
    previous = read_dataset(session, previous_index) if previous_index else None
    parents = [filtered] + ([previous_index] if previous_index else [])
    try:
        with catalog.scratch("dedup") as scratch:
            out = pipeline.dedup(pipeline.kept(read_dataset(session, filtered)), exact, minhash, previous, scratch)
            return catalog.publish(f"{NAMESPACE}/deduped", out, parents, current_producer(minhash))
    finally:
        pipeline.release(session)


@dataset_task()
def classify(store: str, deduped: DatasetRef, cfg: QualityModelConfig, model: FilePin | None,
             spark: SparkConfig) -> DatasetRef:
    catalog, session = Catalog(store), get_spark(spark)
    try:
        with catalog.scratch("classify") as scratch:
            out, threshold = pipeline.classify(pipeline.kept(read_dataset(session, deduped)), cfg, scratch)
            return catalog.publish(f"{NAMESPACE}/scored", out, [deduped], current_producer(cfg),
                                   {"quality_threshold": threshold})
    finally:
        pipeline.release(session)


def _import_charting() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

    import skycurate.reporting  # noqa: F401


@dataset_task()
def finalize(store: str, quarantine: DatasetRef, extracted: DatasetRef, filtered: DatasetRef, deduped: DatasetRef,
             scored: DatasetRef, previous_index: DatasetRef | None, rejected_preview_chars: int,
             spark: SparkConfig, tokens: TokenizerConfig | None = None,
             tokenizer: FilePin | None = None) -> dict[str, DatasetRef]:
    from skycurate.stages.tokens import counted_on_spark, token_stats_on_spark, tokenizer_identity
    from skycurate.stages.web.ablation import rule_ablation

    # matplotlib takes a second or more to import: do it while the driver waits for Spark below.
    charts = threading.Thread(target=_import_charting, daemon=True)
    charts.start()
    catalog, producer = Catalog(store), current_producer()
    session = get_spark(spark)
    frames = {name: read_dataset(session, ref) for name, ref in
              (("quarantine", quarantine), ("extracted", extracted), ("filtered", filtered), ("deduped", deduped),
               ("scored", scored))}
    funnel = pipeline.funnel(frames)
    n_quarantined = catalog.manifest(quarantine).num_rows
    n_input = funnel[0]["rows_in"]
    ablation = rule_ablation(frames["filtered"])
    charts.join()
    from skycurate.reporting import funnel_chart_png

    chart = funnel_chart_png(funnel, "web corpus funnel")
    # rejected, clean and the index become visible together, and only if the counts reconcile
    # (checked in clean's stats, after all rows are written, before anything is committed).
    with catalog.scratch("web-tokens") if tokens else contextlib.nullcontext() as scratch, catalog.all_or_nothing():
        rejected_ref = catalog.publish(
            f"{NAMESPACE}/rejected",
            pipeline.rejected_rows([frames["extracted"], frames["filtered"], frames["deduped"], frames["scored"]],
                                   rejected_preview_chars),
            [extracted, filtered, deduped, scored], producer,
            {"rejected_by_stage": {s["stage"]: s["rejected"] for s in funnel}})
        n_rejected = catalog.manifest(rejected_ref).num_rows

        clean, counted = pipeline.clean_rows(frames["scored"]), {}
        if tokens is not None:   # n_tokens on every clean row, totals by language and source
            clean = counted_on_spark(clean, tokens, scratch, f"{NAMESPACE}/clean")
            counted = {"tokens": {**token_stats_on_spark(clean, tokens), **tokenizer_identity(tokens, tokenizer)}}

        def stats(n_clean: int) -> dict[str, Any]:
            pipeline.check_reconciles(n_input, n_clean, n_rejected, n_quarantined, funnel)
            return {"funnel": funnel, "input": n_input, "kept": n_clean, "rejected": n_rejected,
                    "quarantined": n_quarantined, "rule_ablation": ablation, **counted}

        clean_ref = catalog.publish(f"{NAMESPACE}/clean", clean,
                                    [scored, rejected_ref, quarantine, *([tokenizer.parent()] if tokenizer else [])],
                                    producer, stats, attachments={"_funnel.png": chart})
        # The index is cumulative: this version's clean pages plus everything the previous index
        # held, so deduplicating against it covers every earlier crawl in the chain.
        index = pipeline.index_rows(frames["scored"])
        index_parents: list[DatasetRef] = [clean_ref]
        if previous_index is not None:
            index = index.unionByName(read_dataset(session, previous_index).select(*index.columns))
            index_parents.append(previous_index)
        index_ref = catalog.publish(f"{NAMESPACE}/minhash_index", index, index_parents, producer)
    return {"clean": clean_ref, "rejected": rejected_ref, "quarantine": quarantine, "minhash_index": index_ref}


def index_for(catalog: Catalog, clean: str) -> DatasetRef:
    """The MinHash index published with a given web/clean version."""
    from skycurate.errors import DatasetNotFound

    clean_ref = catalog.resolve(clean)
    for version in reversed(catalog.versions(f"{NAMESPACE}/minhash_index")):
        ref = catalog.resolve(f"{NAMESPACE}/minhash_index@{version}")
        if any(p.name == clean_ref.name and p.version == clean_ref.version for p in catalog.manifest(ref).parents):
            return ref
    raise DatasetNotFound(f"no web/minhash_index was published with {clean_ref.label}")


@flow(name="web")
def web_flow(store: str | None = None, config: WebConfig = WebConfig(), force: bool = False) -> dict[str, Any]:
    """Raw crawl (WARC/HTML/JSONL/Parquet) -> web/clean + web/rejected + web/quarantine, with the funnel."""
    from skycurate.stages.tokens import checked_pin

    cfg = config
    store, catalog = open_flow(store, cfg)
    tokenizer = checked_pin(cfg.tokens)
    previous_index = index_for(catalog, cfg.dedup_against) if cfg.dedup_against else None
    lists = {"url_blocklist": pin_file(cfg.safety.url_blocklist),
             "keyword_blocklist": pin_file(cfg.safety.keyword_blocklist),
             "lid_model": pin_file(cfg.lid.model_path)}
    common = {"store": store, "force": force, "spark": cfg.spark}

    got = run_dataset_task(extract, **common, inputs=pin_inputs(cfg.inputs), reader=cfg.reader,
                           cfg=cfg.extract)
    filtered = run_dataset_task(annotate_and_filter, **common, extracted=got["extracted"], lid=cfg.lid,
                                signals=cfg.quality_signals, safety=cfg.safety, quality=cfg.quality_filter,
                                boilerplate=cfg.boilerplate, files=lists)
    deduped = run_dataset_task(dedup, **common, filtered=filtered, exact=cfg.exact_dedup, minhash=cfg.minhash,
                               previous_index=previous_index)
    scored = run_dataset_task(classify, **common, deduped=deduped, cfg=cfg.quality_model,
                              model=pin_file(cfg.quality_model.model_path))
    final = run_dataset_task(finalize, **common, quarantine=got["quarantine"], extracted=got["extracted"],
                             filtered=filtered, deduped=deduped, scored=scored, previous_index=previous_index,
                             rejected_preview_chars=cfg.rejected_preview_chars, tokens=cfg.tokens, tokenizer=tokenizer)
    funnel = attach_run_report("web", catalog, final["clean"], chart="_funnel.png")
    if cfg.benchmarks:   # chained: each new web/clean version is decontaminated in the run that made it
        from skycurate.connectors.benchmarks import pin_benchmarks
        from skycurate.flows._decontamination import decontaminate

        clean = final["clean"]
        chained = run_dataset_task(decontaminate, **common, corpus=clean, benchmarks=cfg.benchmarks,
                                   files=pin_benchmarks(cfg.benchmarks), cfg=cfg.decontaminate,
                                   output=f"{clean.name}-decontaminated")
        final = {**final, "decontaminated": chained["clean"], "contamination": chained["contamination"],
                 "decontaminate_rejected": chained["rejected"]}
        attach_run_report("web-decontaminate", catalog, chained["clean"], chart="_funnel.png")
    clean_stats = catalog.manifest(final["clean"]).stats
    return {"datasets": final, "funnel": funnel, "rule_ablation": clean_stats.get("rule_ablation"),
            "tokens": clean_stats.get("tokens")}
