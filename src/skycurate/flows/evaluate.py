"""Benchmark evaluation flow (CSVQA-style): models x benchmark test splits -> verified answers -> accuracy.

Three kinds of dataset task, each cached on its own inputs:

1. ``benchmark_items``: every benchmark's test split, rows in their own layout -> canonical items
   (``eval/prompts``) and the rows that are not items (``eval/quarantine``, with the reason).
2. ``generate_model``, once per model: its answers through the distillation engines in resumable
   shards journalled per model -> ``eval/samples-<model>``. A cached version holding answers that
   failed for a passing reason (endpoint down, 429) is retried by the next run, which reuses the
   journalled shards and asks only for the failed ones.
3. ``score``: the distillation verifier on every answer, the judge hook for the undecided ones, the
   counts -> ``eval/items`` and ``eval/accuracy`` (with ``_charts.png``).

No Spark: a benchmark is thousands of items, and generation dominates; the verifier and the
counts run on Arrow tables on the driver. Accounting (per benchmark and model: rows in = items
evaluated + quarantined) is checked before ``score`` publishes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
from prefect import flow

import skycurate.flows._preflight_evaluate  # noqa: F401 - registers the evaluate pre-flight checks
from skycurate.catalog import Catalog, DatasetRef
from skycurate.catalog.pins import pin_model_folder
from skycurate.connectors.benchmarks import BenchmarkPins, benchmark_parents, pin_benchmarks
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import (
    GPU_SLOTS,
    attach_run_report,
    current_producer,
    dataset_task,
    run_dataset_task,
    slots,
)
from skycurate.flows._engines import engine_identity
from skycurate.schemas import evaluate as E
from skycurate.schemas.cot import EngineConfig, GenerateConfig, TemplateConfig
from skycurate.schemas.cot_judge import JudgeConfig
from skycurate.schemas.cot_prompts import PromptFields
from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.schemas.leakage import BenchmarkSpec
from skycurate.stages.accounting import AccountingError


@dataset_task()
def benchmark_items(store: str, benchmarks: list[BenchmarkSpec], files: BenchmarkPins,
                    fields: dict[str, PromptFields], subject_field: str | None) -> dict[str, DatasetRef]:
    """Test splits -> ``eval/prompts`` (items) and ``eval/quarantine`` (rows that are not items)."""
    from pathlib import Path

    from skycurate.stages.evaluate.items import benchmark_items as items_of

    catalog, producer = Catalog(store), current_producer()
    tables, dropped, by_benchmark = [], [], {}
    for spec in benchmarks:
        paths = [Path(f.path) for f in files[spec.name][E.SPLIT]]
        items, quarantined, by_benchmark[spec.name] = items_of(spec.name, paths, fields[spec.name], subject_field)
        tables.append(items)
        dropped.append(quarantined)
    items, quarantined = pa.concat_tables(tables), pa.concat_tables(dropped)
    reasons: dict[str, int] = {}
    for r in quarantined["reason"].to_pylist():
        reasons[r] = reasons.get(r, 0) + 1
    parents = benchmark_parents(files)
    stats = {"by_benchmark": by_benchmark, "rows": sum(c["rows"] for c in by_benchmark.values()),
             "items": items.num_rows, "quarantined": quarantined.num_rows, "by_reason": reasons}
    with catalog.all_or_nothing():
        q_ref = catalog.publish(E.QUARANTINE, quarantined, parents, producer, {"by_reason": reasons})
        ref = catalog.publish(E.PROMPTS, items, [*parents, q_ref], producer, stats)
    return {"prompts": ref, "quarantine": q_ref}


@dataset_task()
def generate_model(store: str, prompts: DatasetRef, model: str, engine_identity: Any, template: TemplateConfig,
                   engine: EngineConfig, gen: GenerateConfig, retry_of: str | None = None,
                   force: bool = False) -> DatasetRef:
    """One model's answers -> ``eval/samples-<model>``. ``retry_of`` (only in the cache key) names a
    cached version with failed answers that this run retries; ``force`` regenerates journalled shards."""
    from skycurate.stages.cot.teacher import work_key
    from skycurate.stages.evaluate.generation import model_samples

    catalog, producer = Catalog(store), current_producer()
    items = catalog.open(prompts).to_table().sort_by("prompt_id")
    work = catalog.work_dir(E.NAMESPACE, work_key(engine_identity, template, engine, gen))
    with slots(GPU_SLOTS):
        run = model_samples(items, template, engine, gen, work, force=force)
    answered = len(set(run.samples["prompt_id"].to_pylist()))
    if answered != run.items or run.samples.num_rows != run.items * gen.samples:
        raise AccountingError(f"evaluate {model}: {run.items:,} items x {gen.samples} samples but "
                              f"{run.samples.num_rows:,} rows for {answered:,} items; nothing published")
    stats = {"model": model, "engine": engine.engine, "items": run.items, "too_long": run.too_long,
             "samples": run.samples.num_rows, "errors": run.samples.num_rows - run.samples["error"].null_count,
             "shards": run.report.to_dict(), "work": run.report.work,
             "sampling": gen.sampling.model_copy(update={"n": gen.samples}).model_dump(mode="json")}
    parents: list[Any] = [prompts]
    if engine.engine != "openai":
        parents.append(pin_model_folder(engine.model).parent(f"model:{model}"))
    return catalog.publish(E.SAMPLES_PREFIX + E.model_slug(model), run.samples, parents, producer, stats)


@dataset_task()
def score(store: str, prompts: DatasetRef, quarantine: DatasetRef, samples: list[tuple[str, DatasetRef]],
          benchmarks: list[str], verify: VerifyConfig, judge: JudgeConfig = JudgeConfig(),
          judge_identity: Any = None) -> dict[str, DatasetRef]:
    """Verify every answer, let the judge decide the undecided, count -> ``eval/items``, ``eval/accuracy``."""
    from skycurate.reporting.evaluate import accuracy_chart_png
    from skycurate.stages.evaluate.scoring import accuracy_table, evaluation_funnel, judge_undecided, scored_items

    catalog, producer = Catalog(store), current_producer()
    table = catalog.open(prompts).to_table().drop_columns(["images"])
    models = [m for m, _ in samples]
    per_model = [scored_items(table, catalog.open(ref).to_table(), m, verify) for m, ref in samples]
    items = pa.concat_tables(per_model) if per_model else E.ITEM_SCHEMA.empty_table()
    judged = None
    if judge.enabled:
        from skycurate.stages.cot.judge import Judge, judge_work_key

        with slots(GPU_SLOTS), Judge(judge, catalog.work_dir(E.NAMESPACE, judge_work_key(judge_identity, judge))) \
                as client:
            items, judged = judge_undecided(items, judge, client.ask)
    prepared = catalog.manifest(prompts).stats
    funnel = evaluation_funnel(prepared["by_benchmark"], items, models)   # raises before anything is published
    accuracy = accuracy_table(items, benchmarks, models)
    rows = accuracy.to_pylist()
    totals = [r for r in rows if r["subject"] == E.ALL]
    stats = {"funnel": funnel, "models": models, "benchmarks": benchmarks, "by_benchmark": prepared["by_benchmark"],
             "quarantined": prepared["quarantined"], "quarantine_by_reason": prepared["by_reason"],
             "accuracy": {f"{r['benchmark']}/{r['model']}": r["accuracy"] for r in totals},
             "samples": items.num_rows, "undecided": sum(r["undecided"] for r in totals),
             "errors": sum(r["errors"] for r in totals),
             "judge": None if judged is None else {
                 "asked": client.asked, "decided": sum(1 for m in items["verify_method"].to_pylist() if m == "judge")
                 - judged.num_rows, "quarantined": judged.num_rows}}
    chart = accuracy_chart_png(rows, f"accuracy of {len(models)} model(s) on {', '.join(benchmarks)}")
    parents = [prompts, quarantine, *(ref for _, ref in samples)]
    with catalog.all_or_nothing():
        items_ref = catalog.publish(E.ITEMS, items, parents, producer, stats)
        extra = {}
        if judged is not None:
            extra["judge_quarantine"] = catalog.publish(E.JUDGE_QUARANTINE, judged, [items_ref], producer,
                                                        {"by_reason": dict(Counter(judged["reason"].to_pylist()))})
        acc_ref = catalog.publish(E.ACCURACY, accuracy, [items_ref, quarantine], producer, stats,
                                  attachments={"_charts.png": chart})
    return {"items": items_ref, "accuracy": acc_ref, **extra}


def _failed_before(catalog: Catalog, ref: DatasetRef) -> bool:
    """A version made by an earlier flow run whose answers failed for a passing reason (shards not journalled)."""
    from prefect.runtime import flow_run

    m = catalog.manifest(ref)
    return bool(m.stats["shards"]["unjournalled"]) and m.producer.flow_run_id != str(flow_run.id)


def _model_samples(store: str, force: bool, prompts: DatasetRef, model: E.EvalModel,
                   cfg: E.EvalFlowConfig) -> DatasetRef:
    engine = model.engine_config()
    args = {"prompts": prompts, "model": model.label, "engine_identity": engine_identity(engine),
            "template": model.template or cfg.template, "engine": engine, "gen": cfg.generate}
    ref = run_dataset_task(generate_model, store=store, force=force, **args)
    catalog = Catalog(store)
    while _failed_before(catalog, ref):   # a cached version with failures: retry them (journalled shards reused)
        ref = run_dataset_task(generate_model, store=store, force=force, retry_of=ref.label, **args)
    return ref


@flow(name="evaluate")
def evaluate_flow(store: str | None = None, config: E.EvalFlowConfig = E.EvalFlowConfig(),
                  force: bool = False) -> dict[str, Any]:
    """Benchmarks' test splits -> each model's answers -> verdicts -> accuracy per model and subject."""
    cfg = config
    store, catalog = open_flow(store, cfg)
    pins = {name: {E.SPLIT: splits[E.SPLIT]} for name, splits in pin_benchmarks(cfg.benchmarks).items()}
    loaded = run_dataset_task(benchmark_items, store=store, force=force, benchmarks=cfg.benchmarks, files=pins,
                              fields={b.name: cfg.fields_for(b) for b in cfg.benchmarks},
                              subject_field=cfg.subject_field)
    samples = [(m.label, _model_samples(store, force, loaded["prompts"], m, cfg)) for m in cfg.models]
    final = run_dataset_task(score, store=store, force=force, prompts=loaded["prompts"],
                             quarantine=loaded["quarantine"], samples=samples,
                             benchmarks=[b.name for b in cfg.benchmarks], verify=cfg.verify, judge=cfg.judge,
                             judge_identity=engine_identity(cfg.judge.engine) if cfg.judge.enabled else None)
    funnel = attach_run_report("evaluate", catalog, final["accuracy"], chart="_charts.png")
    # accuracy first: the CLI's "read it" hint names the first dataset
    return {"datasets": {"accuracy": final["accuracy"], **final, **loaded,
                         **{f"samples-{E.model_slug(m)}": ref for m, ref in samples}},
            "funnel": funnel, "stats": catalog.manifest(final["accuracy"]).stats,
            "accuracy": catalog.open(final["accuracy"]).to_table().to_pylist()}
