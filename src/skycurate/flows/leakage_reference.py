"""Reference-set flow: ask an LLM engine for fresh items in a benchmark's style and publish the
ones that share no n-gram with the benchmark as ``leakage/reference-<benchmark>``.

The audit takes it with ``--reference NAME=leakage/reference-NAME@latest``. Prompts are sent in
rounds until ``samples`` items passed the screen or ``max_requests`` prompts were spent; every
rejected sample is kept (``leakage/reference-rejected``) with its reason.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
from prefect import flow

from skycurate.catalog import Catalog, DatasetRef, Parent
from skycurate.catalog.pins import pin_model_folder
from skycurate.connectors.benchmarks import BenchmarkPins, benchmark_parents, pin_benchmarks
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import attach_run_report, current_producer, dataset_task, funnel_stats, run_dataset_task
from skycurate.schemas.leakage import BenchmarkSpec
from skycurate.schemas.leakage_flows import LeakageReferenceFlowConfig, ReferenceConfig
from skycurate.stages.accounting import FunnelStep

NAMESPACE = "leakage"
log = logging.getLogger(__name__)


def dataset_name(benchmark: str) -> str:
    return f"{NAMESPACE}/reference-{benchmark.lower()}"


@dataset_task()
def build_reference(store: str, benchmark: BenchmarkSpec, files: BenchmarkPins,
                    engine_identity: Any, cfg: ReferenceConfig) -> dict[str, DatasetRef]:
    from skycurate.connectors.benchmarks import load_benchmark
    from skycurate.connectors.llm.generation import open_generator
    from skycurate.stages.leakage.reference import REFERENCE_SCHEMA, REJECTED_SCHEMA, collect_reference

    catalog = Catalog(store)
    splits = load_benchmark(benchmark)
    generator = open_generator(cfg.engine, cfg.model, base_url=cfg.base_url)

    def progress(accepted: int, sent: int) -> None:
        log.info("reference %s: %d/%d accepted after %d prompts", benchmark.name, accepted, cfg.samples, sent)

    try:
        run = collect_reference(generator, benchmark.name, splits, cfg, progress)
    finally:
        generator.close()
    parents = [*benchmark_parents(files), Parent(name=f"engine:{generator.name}", uri=str(engine_identity))]
    producer = current_producer(cfg)
    reasons = run.reasons()
    step = FunnelStep(stage="screen", rows_in=len(run.kept) + len(run.rejected), rows_out=len(run.kept),
                      rejected=len(run.rejected))
    with catalog.all_or_nothing():
        rej_ref = catalog.publish(f"{NAMESPACE}/reference-rejected",
                                  pa.Table.from_pylist(run.rejected, REJECTED_SCHEMA), parents, producer,
                                  {"benchmark": benchmark.name, "by_reason": reasons})
        stats = {**funnel_stats(None, step), "benchmark": benchmark.name, "prompts_sent": run.sent,
                 "accepted": len(run.kept), "rejected": len(run.rejected), "wanted": cfg.samples,
                 "rejected_by_reason": reasons, "overlap_n": cfg.overlap_n}
        ref = catalog.publish(dataset_name(benchmark.name), pa.Table.from_pylist(run.kept, REFERENCE_SCHEMA),
                              [*parents, rej_ref], producer, stats)
    return {"reference": ref, "rejected": rej_ref}


@flow(name="leakage-reference")
def leakage_reference_flow(store: str | None = None,
                           config: LeakageReferenceFlowConfig = LeakageReferenceFlowConfig(),
                           force: bool = False) -> dict[str, Any]:
    """Fresh reference items for the leakage audit, screened against the benchmark's n-grams."""
    cfg = config
    store, catalog = open_flow(store, cfg)
    ident: Any = (pin_model_folder(cfg.reference.model).model_dump() if cfg.reference.engine == "transformers"
                  else f"{cfg.reference.base_url}#{cfg.reference.model}")
    got = run_dataset_task(build_reference, store=store, force=force, benchmark=cfg.benchmark,
                           files=pin_benchmarks([cfg.benchmark]), engine_identity=ident, cfg=cfg.reference)
    funnel = attach_run_report("leakage-reference", catalog, got["reference"])
    return {"datasets": got, "funnel": funnel, "stats": catalog.manifest(got["reference"]).stats}
