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

from skycurate.catalog import Catalog, DatasetRef, Parent, normalize_store
from skycurate.catalog.pins import pin_model_folder
from skycurate.connectors.benchmarks import BenchmarkPins, benchmark_parents, pin_benchmarks
from skycurate.errors import SkycurateError
from skycurate.flows._runtime import current_producer, dataset_task, run_dataset_task
from skycurate.schemas.leakage import BenchmarkSpec
from skycurate.schemas.leakage_flows import LeakageReferenceFlowConfig, ReferenceConfig

NAMESPACE = "leakage"
log = logging.getLogger(__name__)


def dataset_name(benchmark: str) -> str:
    return f"{NAMESPACE}/reference-{benchmark.lower()}"


@dataset_task(code=["skycurate.stages.leakage", "skycurate.connectors.llm", "skycurate.connectors.benchmarks"])
def build_reference(store: str, benchmark: BenchmarkSpec, files: BenchmarkPins,
                    engine_identity: Any, cfg: ReferenceConfig) -> dict[str, DatasetRef]:
    from skycurate.connectors.benchmarks import load_benchmark
    from skycurate.connectors.llm.generation import open_generator
    from skycurate.stages.leakage.reference import (REFERENCE_SCHEMA, REJECTED_SCHEMA, OverlapScreen, build_prompts,
                                                    sample_id)

    catalog = Catalog(store)
    splits = load_benchmark(benchmark)
    sources = [s for s in cfg.from_splits if s in splits]
    if not sources:
        raise SkycurateError(f"benchmark {benchmark.name}: none of the example splits {cfg.from_splits} exists")
    examples = [(i, t) for s in sources for i, t in zip(splits[s]["item_id"].to_pylist(),
                                                        splits[s]["text"].to_pylist(), strict=True) if t]
    screen = OverlapScreen([t for tbl in splits.values() for t in tbl["text"].to_pylist() if t], cfg.overlap_n)
    generator = open_generator(cfg.engine, cfg.model, base_url=cfg.base_url)
    budget = cfg.max_requests or 4 * cfg.samples
    prompts = build_prompts(examples, cfg, budget)
    params = cfg.sampling.model_copy(update={"stop": cfg.stop or cfg.sampling.stop})
    kept: list[dict] = []
    rejected: list[dict] = []
    sent = 0
    try:
        while len(kept) < cfg.samples and sent < len(prompts):
            wave = prompts[sent:sent + max(1, min(len(prompts) - sent, int(1.5 * (cfg.samples - len(kept))) + 1))]
            sent += len(wave)
            outputs = generator.generate([p.text for p in wave],
                                         params.model_copy(update={"seed": cfg.seed + wave[0].index}))
            for prompt, gens in zip(wave, outputs, strict=True):
                for k, g in enumerate(gens):
                    if g.error:
                        rejected.append({"prompt_index": prompt.index, "reason": f"engine_error:{g.error[:200]}",
                                         "text": None})
                        continue
                    text = g.text.strip()
                    reason = screen.verdict(text, cfg.min_chars)
                    if reason is None and len(kept) >= cfg.samples:
                        reason = "surplus"
                    if reason:
                        rejected.append({"prompt_index": prompt.index, "reason": reason, "text": text})
                        continue
                    kept.append({"item_id": sample_id(benchmark.name, prompt.index, k), "text": text,
                                 "prompt_index": prompt.index, "example_ids": prompt.example_ids,
                                 "engine": generator.name, "finish_reason": g.finish_reason})
            log.info("reference %s: %d/%d accepted after %d prompts", benchmark.name, len(kept), cfg.samples, sent)
    finally:
        generator.close()
    if not kept:
        raise SkycurateError(f"reference for {benchmark.name}: the engine wrote nothing usable in {sent} prompts "
                             f"({len(rejected)} rejected; first reasons: "
                             f"{', '.join(sorted({r['reason'] for r in rejected})[:3])})")
    parents = [*benchmark_parents(files), Parent(name=f"engine:{generator.name}", uri=str(engine_identity))]
    producer = current_producer(cfg)
    reasons: dict[str, int] = {}
    for r in rejected:
        key = r["reason"].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    with catalog.all_or_nothing():
        rej_ref = catalog.publish(f"{NAMESPACE}/reference-rejected", pa.Table.from_pylist(rejected, REJECTED_SCHEMA),
                                  parents, producer, {"benchmark": benchmark.name, "by_reason": reasons})
        stats = {"benchmark": benchmark.name, "prompts_sent": sent, "accepted": len(kept), "rejected": len(rejected),
                 "wanted": cfg.samples, "rejected_by_reason": reasons, "overlap_n": cfg.overlap_n}
        ref = catalog.publish(dataset_name(benchmark.name), pa.Table.from_pylist(kept, REFERENCE_SCHEMA),
                              [*parents, rej_ref], producer, stats)
    return {"reference": ref, "rejected": rej_ref}


@flow(name="leakage-reference")
def leakage_reference_flow(store: str | None = None,
                           config: LeakageReferenceFlowConfig = LeakageReferenceFlowConfig(),
                           force: bool = False) -> dict[str, Any]:
    """Fresh reference items for the leakage audit, screened against the benchmark's n-grams."""
    store = normalize_store(store)
    cfg = config
    if cfg.benchmark is None:
        raise SkycurateError("no benchmark: pass --benchmark NAME=PATH")
    if not cfg.reference.model:
        raise SkycurateError("no model: pass --model (a local folder, or the served model name with --base-url)")
    ident: Any = (pin_model_folder(cfg.reference.model).model_dump() if cfg.reference.engine == "transformers"
                  else f"{cfg.reference.base_url}#{cfg.reference.model}")
    got = run_dataset_task(build_reference, store=store, force=force, benchmark=cfg.benchmark,
                           files=pin_benchmarks([cfg.benchmark]), engine_identity=ident, cfg=cfg.reference)
    m = Catalog(store).manifest(got["reference"])
    funnel = [{"stage": "screen", "rows_in": m.stats["accepted"] + m.stats["rejected"],
               "rows_out": m.stats["accepted"], "rejected": m.stats["rejected"], "quarantined": 0}]
    return {"datasets": got, "funnel": funnel, "stats": m.stats}
