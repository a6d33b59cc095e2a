"""CoT distillation flow (Skywork R1V): prompts -> verified reasoning chains of adaptive length.

Three dataset tasks, each cached on its own inputs:

1. ``prepare_prompts`` (Spark): check and normalise the prompts, quarantine bad rows, drop exact
   and near-duplicate questions and benchmark-contaminated ones -> ``cot/prompts`` (+ the dropped
   rows in ``cot/prompts-dropped``).
2. ``generate``: template the prompts for the teacher (prompts longer than the context are
   rejected -> ``cot/template-rejected``) and generate N samples per prompt in resumable shards
   through the configured engine (vLLM offline batch, an OpenAI-compatible endpoint, or
   transformers) -> ``cot/samples``. Its cache key holds no verifier or selection setting, so
   re-selecting with another budget never touches the engine.
3. ``distill`` (Spark): verify the answers and select chains of adaptive length ->
   ``cot/generations`` (every sample with its verdict), ``cot/sft`` (``messages`` + metadata),
   ``cot/rejected`` and ``cot/quarantine`` (one row per prompt left without a chain), with the
   selection chart attached to ``cot/sft``.

Accounting holds at the prompt level: prompts in = with a selected chain + rejected + quarantined,
checked before the last task publishes anything.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow

from skycurate.catalog import Catalog, DatasetRef
from skycurate.catalog.pins import pin_model_folder
from skycurate.connectors.benchmarks import BenchmarkPins, benchmark_parents, pin_benchmarks
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import (
    GPU_SLOTS,
    attach_run_report,
    current_producer,
    dataset_task,
    funnel_stats,
    run_dataset_task,
    slots,
)
from skycurate.schemas import cot as S
from skycurate.schemas.config import SparkConfig
from skycurate.schemas.cot_prompts import PromptFields
from skycurate.schemas.cot_rl import PreferenceConfig, RLPoolConfig
from skycurate.schemas.cot_select import SelectConfig
from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.schemas.leakage import BenchmarkSpec
from skycurate.spark import get_spark
from skycurate.stages.accounting import AccountingError, FunnelStep
from skycurate.stages.cot.prompts import prompt_layout
from skycurate.stages.raw_records import resolve_source

log = logging.getLogger(__name__)
DROPPED = f"{S.NAMESPACE}/prompts-dropped"


# ------------------------------------------------------------------------------------ prepare


@dataset_task()
def prepare_prompts(store: str, source: str, source_key: Any, layout: str, fields: PromptFields,
                    benchmarks: list[BenchmarkSpec], files: BenchmarkPins, cfg: S.PrepareConfig,
                    spark: SparkConfig) -> dict[str, DatasetRef]:
    from pyspark.sql import functions as F

    from skycurate.connectors.benchmarks import load_benchmark
    from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE
    from skycurate.stages.cot.prompts import (
        PROMPT_COLUMNS,
        dedup_key,
        prepare_on_spark,
    )
    from skycurate.stages.leakage.decontaminate import build_index
    from skycurate.stages.raw_records import read_records

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer(cfg)
    df, parents, text = read_records(session, source_key, store)
    index, keys = None, []
    if benchmarks:
        tables = [load_benchmark(spec, cfg.decontaminate.splits) for spec in benchmarks]
        index = build_index(tables, cfg.decontaminate)
        keys = sorted({dedup_key(t) for tbl in tables for split in tbl.values() for t in split["text"].to_pylist()
                       if t})
        parents = [*parents, *benchmark_parents(files)]
    # relative image paths: against the folder of the (first) prompts file
    base_dir = None if isinstance(source_key, str) else str(Path(source_key[0].path).parent)
    with catalog.scratch("cot-prepare") as scratch:
        prepare_on_spark(df, cfg, index, keys, base_dir, layout, fields, text).write.mode("overwrite").parquet(scratch)
        out = session.read.parquet(scratch)
        n_input = out.count()
        kept = out.filter(F.col(REJECT_REASON).isNull()).select(*PROMPT_COLUMNS).orderBy("id")
        dropped = out.filter(F.col(REJECT_REASON).isNotNull()).select(
            F.col("id"), F.col(REJECT_STAGE).alias("stage"),
            F.when(F.col("quarantine_reason").isNotNull(), F.lit("quarantine")).otherwise(F.lit("rejected"))
            .alias("kind"),
            F.when(F.col(REJECT_REASON).contains(":"), F.split(F.col(REJECT_REASON), ":").getItem(0))
            .when(F.col(REJECT_REASON).startswith("exact_duplicate"), F.lit("exact_duplicate"))
            .when(F.col(REJECT_REASON).startswith("near_duplicate"), F.lit("near_duplicate"))
            .otherwise(F.col(REJECT_REASON)).alias("reason"),
            F.coalesce(F.col("quarantine_detail"), F.col(REJECT_REASON)).alias("detail"),
            F.col("question"), F.col("record"))
        by_reason = {f"{r['kind']}:{r['reason']}": r["count"]
                     for r in dropped.groupBy("kind", "reason").count().collect()}
        with catalog.all_or_nothing():
            dropped_ref = catalog.publish(DROPPED, dropped, parents, producer, {"by_reason": by_reason})
            n_dropped = catalog.manifest(dropped_ref).num_rows
            stats = {"input": n_input, "kept": n_input - n_dropped, "dropped": n_dropped, "by_reason": by_reason,
                     "source": source, "layout": layout}
            # kept and dropped split the same rows on one condition, so kept = input - dropped
            prompts_ref = catalog.publish(S.PROMPTS, kept, [*parents, dropped_ref], producer, stats)
    return {"prompts": prompts_ref, "dropped": dropped_ref}


# ------------------------------------------------------------------------------------ distill


@dataset_task()
def generate(store: str, prompts: DatasetRef, engine_identity: Any, template: S.TemplateConfig,
             teacher: S.EngineConfig, gen: S.GenerateConfig, force: bool = False) -> dict[str, DatasetRef]:
    """Template + teacher generation -> ``cot/samples`` (every sample) and ``cot/template-rejected``;
    ``force`` regenerates journalled shards too."""
    from skycurate.stages.cot.teacher import generate_samples, work_key

    catalog, producer = Catalog(store), current_producer()
    table = catalog.open(prompts).to_table().sort_by("id")
    work = catalog.work_dir(S.NAMESPACE, work_key(engine_identity, template, teacher, gen))
    with slots(GPU_SLOTS):   # one teacher engine per slot across the server's flow runs
        run = generate_samples(table, template, teacher, gen, work, force=force)
    step = FunnelStep(stage=S.TEMPLATE, rows_in=table.num_rows, rows_out=run.prompts_sent,
                      rejected=run.too_long.num_rows)
    answered = len(set(run.samples["prompt_id"].to_pylist()))
    if answered != run.prompts_sent:
        raise AccountingError(f"generate: {run.prompts_sent:,} prompts sent but samples for {answered:,}; "
                              "nothing published")
    params = gen.sampling.model_copy(update={"n": gen.samples})
    teacher_name = engine_identity if isinstance(engine_identity, str) else f"{teacher.engine}:{teacher.model}"
    stats = {**funnel_stats(None, step), "prompts_in": table.num_rows, "prompts_sent": run.prompts_sent,
             "too_long": run.too_long.num_rows, "shards": run.report.to_dict(), "work": run.report.work,
             "teacher": teacher_name, "sampling": params.model_dump(mode="json")}
    with catalog.all_or_nothing():
        rej_ref = catalog.publish(S.TEMPLATE_REJECTED, run.too_long, [prompts], producer,
                                  {"by_reason": {f"{S.TEMPLATE}:{S.TOO_LONG}": run.too_long.num_rows}})
        samples_ref = catalog.publish(S.SAMPLES, run.samples, [prompts, rej_ref], producer, stats)
    return {"samples": samples_ref, "template_rejected": rej_ref}


@dataset_task()
def distill(store: str, prompts: DatasetRef, dropped: DatasetRef, samples: DatasetRef, template_rejected: DatasetRef,
            template: S.TemplateConfig, verify: VerifyConfig, select: SelectConfig, rl: RLPoolConfig,
            preference: PreferenceConfig, spark: SparkConfig) -> dict[str, DatasetRef]:
    """Verify + select over the samples -> ``cot/generations``, ``cot/sft``, ``cot/rejected``, ``cot/quarantine``,
    and from the same verdicts ``cot/rl_pool`` and ``cot/preference`` (each with its ``-rejected``)."""
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    from skycurate.reporting.cot import cot_charts_png
    from skycurate.spark import read_dataset
    from skycurate.stages.cot import outputs as O
    from skycurate.stages.cot.preference import preference_pairs
    from skycurate.stages.cot.rl_pool import rl_pool

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer()
    table = catalog.open(prompts).to_table().sort_by("id")
    generated = catalog.manifest(samples).stats
    n_generated, teacher_name, sampling = generated["prompts_sent"], generated["teacher"], generated["sampling"]
    prompt_cols = (table.select(["id", "question", "reference_answer", "answer_type", "lang", "s_v", "s_t", "s_i",
                                 "difficulty", "domain", "source"])
                   .rename_columns(["prompt_id", "question", "reference_answer", "answer_type", "lang", "s_v", "s_t",
                                    "s_i", "difficulty_score", "domain", "source"]))
    questions = session.createDataFrame(table.select(["id", "question"]).rename_columns(["prompt_id", "question"]))
    images = session.createDataFrame(table.select(["id", "images"]).rename_columns(["prompt_id", "images"]))
    prep = catalog.open(dropped).to_table()
    prep_rejected = prep.filter(pc.equal(prep["kind"], "rejected")).drop(["kind"]).cast(S.DROPPED_SCHEMA)
    prep_quarantined = prep.filter(pc.equal(prep["kind"], "quarantine")).drop(["kind"]).cast(S.DROPPED_SCHEMA)
    too_long = catalog.open(template_rejected).to_table().cast(S.DROPPED_SCHEMA)
    parents = [prompts, dropped, samples, template_rejected]
    with catalog.scratch("cot-distill") as scratch:
        gens = read_dataset(session, samples).join(session.createDataFrame(prompt_cols), "prompt_id")
        selected, errors, summary = O.verify_and_select(gens, verify, select, scratch)
        selection_rejected = O.selection_rejections(summary, questions)
        engine_failed = O.engine_quarantine(errors, selected, questions)
        rejected = pa.concat_tables([prep_rejected, too_long, selection_rejected])
        quarantined = pa.concat_tables([prep_quarantined, engine_failed])

        n_input = catalog.manifest(prompts).stats["input"]
        n_with = summary.filter(F.col("n_selected") > 0).count()
        # checked before anything is published: prompts in = with a chain + rejected + quarantined
        FunnelStep(stage="distill", rows_in=n_input, rows_out=n_with, rejected=rejected.num_rows,
                   quarantined=quarantined.num_rows)
        reasons = O.reason_counts(rejected, quarantined)
        funnel = O.funnel(n_input, table.num_rows, prep_rejected.num_rows, prep_quarantined.num_rows, n_generated,
                          too_long.num_rows, engine_failed.num_rows, n_with, selection_rejected.num_rows)
        gen_stats = {**O.generation_totals(gens), "samples_selected": selected.filter(F.col("selected")).count(),
                     "shards": generated["shards"], "teacher": teacher_name, "sampling": sampling}
        stats = {"funnel": funnel, "prompts_in": n_input, "prompts_with_chain": n_with, "rejected": rejected.num_rows,
                 "quarantined": quarantined.num_rows, **gen_stats,
                 "yield": round(n_with / n_generated, 4) if n_generated else 0.0, "by_reason": reasons,
                 "work": generated["work"]}
        every_sample = selected.unionByName(errors, allowMissingColumns=True).orderBy("prompt_id", "sample_index")
        # RL pool and preference pairs: pure per-prompt functions over the verdicts, on the driver
        # (they reconcile their own prompt counts and raise before anything is published)
        verdicts = every_sample.drop("images").toArrow()
        pool, pool_rejected = rl_pool(verdicts, rl) if rl.enabled else (None, None)
        if pool is not None:   # vision-language prompts keep their images (verl's multimodal ``images`` column)
            by_id = dict(zip(table["id"].to_pylist(), table["images"].to_pylist(), strict=True))
            pool = pool.append_column("images", pa.array([by_id.get(p) for p in pool["prompt_id"].to_pylist()],
                                                         pa.list_(pa.binary())))
        pairs, pairs_rejected = preference_pairs(verdicts, preference, template.system) \
            if preference.enabled else (None, None)
        with catalog.all_or_nothing():
            gen_ref = catalog.publish(S.GENERATIONS, every_sample, parents, producer, gen_stats)
            rej_ref = catalog.publish(S.REJECTED, rejected, parents, producer, {"by_reason": reasons})
            q_ref = catalog.publish(S.QUARANTINE, quarantined, parents, producer, {"by_reason": reasons})
            chart = cot_charts_png(selected.select("prompt_id", "pass_rate", "difficulty", "bucket", "token_budget",
                                                   "completion_tokens", "selected").toArrow(),
                                   f"CoT selection: {n_with} of {n_generated} prompts kept")
            sft = O.sft_frame(selected, images, template, teacher_name, json.dumps(sampling, sort_keys=True))
            sft_ref = catalog.publish(S.SFT, sft, [*parents, gen_ref, rej_ref, q_ref], producer, stats,
                                      attachments={"_charts.png": chart})
            extra = {}
            if pool is not None:
                extra.update(_publish_side(catalog, S.RL_POOL, pool, pool_rejected, [gen_ref], producer))
            if pairs is not None:
                extra.update(_publish_side(catalog, S.PREFERENCE, pairs, pairs_rejected, [gen_ref], producer))
    return {"sft": sft_ref, "generations": gen_ref, "rejected": rej_ref, "quarantine": q_ref, **extra}


def _publish_side(catalog: Catalog, name: str, table: pa.Table, rejected: pa.Table, parents: list[DatasetRef],
                  producer: Any) -> dict[str, DatasetRef]:
    """An RL-side output and its per-prompt rejections (``<name>-rejected``), with their counts."""
    import pyarrow.compute as pc

    prompts_in = len(set(rejected["id"].to_pylist())) + len(set(table["prompt_id"].to_pylist()))
    by_reason = {r["values"]: r["counts"] for r in pc.value_counts(rejected["reason"]).to_pylist()} \
        if rejected.num_rows else {}
    rej_ref = catalog.publish(f"{name}-rejected", rejected, parents, producer, {"by_reason": by_reason})
    stats = {"prompts_in": prompts_in, "rows": table.num_rows, "rejected": rejected.num_rows, "by_reason": by_reason}
    ref = catalog.publish(name, table, [*parents, rej_ref], producer, stats)
    short = name.split("/", 1)[1].replace("-", "_")
    return {short: ref, f"{short}_rejected": rej_ref}


def engine_identity(teacher: S.EngineConfig) -> Any:
    if teacher.engine == "openai":
        from skycurate.redact import redact

        return redact(f"openai:{teacher.model}@{teacher.base_url}")   # the `teacher` column: no credentials
    return {"engine": teacher.engine, "model": pin_model_folder(teacher.model).model_dump()}


@flow(name="distill")
def distill_flow(store: str | None = None, config: S.DistillFlowConfig = S.DistillFlowConfig(),
                 force: bool = False) -> dict[str, Any]:
    """Prompts -> prepared prompts -> teacher samples (sharded, resumable) -> verified, selected SFT chains."""
    cfg = config
    store, catalog = open_flow(store, cfg)
    source_key = resolve_source(cfg.prompts, store)
    prepared = run_dataset_task(prepare_prompts, store=store, force=force, source=cfg.prompts, source_key=source_key,
                                layout=prompt_layout(cfg.prompts, store, cfg.fields), fields=cfg.fields,
                                benchmarks=cfg.benchmarks,
                                files=pin_benchmarks(cfg.benchmarks), cfg=cfg.prepare, spark=cfg.spark)
    generated = run_dataset_task(generate, store=store, force=force, prompts=prepared["prompts"],
                                 engine_identity=engine_identity(cfg.teacher), template=cfg.template,
                                 teacher=cfg.teacher, gen=cfg.generate)
    final = run_dataset_task(distill, store=store, force=force, prompts=prepared["prompts"],
                             dropped=prepared["dropped"], samples=generated["samples"],
                             template_rejected=generated["template_rejected"], template=cfg.template,
                             verify=cfg.verify, select=cfg.select, rl=cfg.rl_pool, preference=cfg.preference,
                             spark=cfg.spark)
    funnel = attach_run_report("distill", catalog, final["sft"], chart="_charts.png")
    return {"datasets": {**prepared, **generated, **final}, "funnel": funnel,
            "stats": catalog.manifest(final["sft"]).stats}
