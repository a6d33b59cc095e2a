"""The demo flow: JSONL -> ``hello/raw`` (+ quarantine) -> Spark length filter -> ``hello/clean`` (+ rejected).

It exercises every platform piece the real flows use: a connector, a pure stage run by
Spark's ``mapInArrow``, verdict accounting, versioned publishing with lineage and funnel
stats, Prefect caching and the funnel artifact.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from prefect import flow

from skycurate.catalog import Catalog, DatasetRef
from skycurate.catalog.pins import FilePin, pin_file
from skycurate.connectors.jsonl import expand_sources, read_jsonl, to_tables
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import (attach_run_report, current_producer, dataset_task, funnel_stats,
                                      run_dataset_task)
from skycurate.schemas.hello import QUARANTINE_SCHEMA, RAW_SCHEMA, HelloConfig, IngestConfig, LengthFilterConfig
from skycurate.schemas.config import SparkConfig
from skycurate.spark import get_spark, read_dataset
from skycurate.stages import hello as hello_stage
from skycurate.stages.accounting import FunnelStep

BUILTIN_PREFIX = "builtin:"


def builtin_sample() -> Path:
    return Path(str(resources.files("skycurate") / "data" / "hello" / "sample.jsonl"))


def pin_sources(patterns: list[str]) -> list[FilePin]:
    """Source files pinned by content; labels are stable across machines (they go into record ids)."""
    if not patterns:
        return [pin_file(builtin_sample(), label=f"{BUILTIN_PREFIX}hello/sample.jsonl")]
    return [pin_file(p, label=str(p)) for p in expand_sources(patterns)]


@dataset_task()
def ingest(store: str, sources: list[FilePin], cfg: IngestConfig) -> dict[str, DatasetRef]:
    reads = [read_jsonl(Path(s.path), s.label, cfg.text_field) for s in sources]
    raw, quarantine = to_tables(reads, RAW_SCHEMA, QUARANTINE_SCHEMA)
    step = FunnelStep(stage="ingest", rows_in=sum(r.lines for r in reads), rows_out=raw.num_rows,
                      quarantined=quarantine.num_rows)
    parents = [s.parent() for s in sources]
    catalog, producer = Catalog(store), current_producer(cfg)
    with catalog.all_or_nothing():
        return {
            "raw": catalog.publish("hello/raw", raw, parents, producer, funnel_stats(None, step)),
            "quarantine": catalog.publish("hello/quarantine", quarantine, parents, producer,
                                          {"quarantined": quarantine.num_rows}),
        }


@dataset_task()
def clean(store: str, raw: DatasetRef, cfg: LengthFilterConfig, spark: SparkConfig) -> dict[str, DatasetRef]:
    catalog, producer = Catalog(store), current_producer(cfg)
    raw_manifest = catalog.manifest(raw)
    kept, rejected = hello_stage.clean(read_dataset(get_spark(spark), raw), cfg)
    with catalog.all_or_nothing():
        rejected_ref = catalog.publish("hello/rejected", rejected, [raw], producer)
        n_rejected = catalog.manifest(rejected_ref).num_rows

        def stats(n_kept: int) -> dict[str, Any]:
            step = FunnelStep(stage=hello_stage.annotate.name, rows_in=raw_manifest.num_rows, rows_out=n_kept,
                              rejected=n_rejected)
            return funnel_stats(raw_manifest.stats.get("funnel"), step)

        return {"clean": catalog.publish("hello/clean", kept, [raw], producer, stats), "rejected": rejected_ref}


@flow(name="hello")
def hello_flow(store: str | None = None, config: HelloConfig = HelloConfig(), force: bool = False) -> dict[str, Any]:
    """Read the sample (or ``config.ingest.sources``), filter out too-short texts on Spark, publish."""
    cfg = config
    store, catalog = open_flow(store, cfg)
    ingested = run_dataset_task(ingest, store=store, force=force, sources=pin_sources(cfg.ingest.sources),
                                cfg=cfg.ingest)
    cleaned = run_dataset_task(clean, store=store, force=force, raw=ingested["raw"], cfg=cfg.length_filter,
                               spark=cfg.spark)
    funnel = attach_run_report("hello", catalog, cleaned["clean"])
    return {"datasets": {**ingested, **cleaned}, "funnel": funnel}
