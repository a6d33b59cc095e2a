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
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow

from skycurate.catalog import Catalog, DatasetRef
from skycurate.catalog.pins import FilePin
from skycurate.connectors.benchmarks import BenchmarkPins, benchmark_parents, pin_benchmarks
from skycurate.flows._preflight import open_flow
from skycurate.flows._engines import engine_identity
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
from skycurate.schemas.cot_judge import STAGE as JUDGE_STAGE
from skycurate.schemas.cot_judge import JudgeConfig
from skycurate.schemas.cot_prompts import PromptFields
from skycurate.schemas.cot_rl import PreferenceConfig, RLPoolConfig
from skycurate.schemas.cot_select import SelectConfig
from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.schemas.leakage import BenchmarkSpec
from skycurate.schemas.tokens import TokenizerConfig
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

    from skycurate.connectors.benchmarks import load_benchmark, load_benchmark_images
    from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE
    from skycurate.stages.cot.image_checks import CONVERTED, RECOMPRESSED, RESIZED
    from skycurate.stages.cot.image_decontam import build_image_index
    from skycurate.stages.cot.prompts import (
        PROMPT_COLUMNS,
        dedup_key,
        prepare_on_spark,
    )
    from skycurate.stages.leakage.decontaminate import build_index
    from skycurate.stages.raw_records import read_records

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer(cfg)
    df, parents, text = read_records(session, source_key, store)
    index, keys, image_index = None, [], None
    if benchmarks:
        tables = [load_benchmark(spec, cfg.decontaminate.splits) for spec in benchmarks]
        index = build_index(tables, cfg.decontaminate)
        if cfg.image_decontaminate:   # None unless a benchmark has images
            image_index = build_image_index({spec.name: load_benchmark_images(spec, cfg.decontaminate.splits)
                                             for spec in benchmarks}, cfg.image_max_hamming)
        keys = sorted({dedup_key(t) for tbl in tables for split in tbl.values() for t in split["text"].to_pylist()
                       if t})
        parents = [*parents, *benchmark_parents(files)]
    # relative image paths: against the folder of the (first) prompts file
    base_dir = None if isinstance(source_key, str) else str(Path(source_key[0].path).parent)
    with catalog.scratch("cot-prepare") as scratch:
        prepare_on_spark(df, cfg, index, keys, base_dir, layout, fields, text,
                         image_index).write.mode("overwrite").parquet(scratch)
        out = session.read.parquet(scratch)
        n_input = out.count()
        # images the limits changed (prompts dropped later included: what this step did)
        notes = {r["note"]: r["count"] for r in
                 out.select(F.explode("image_notes").alias("note")).groupBy("note").count().collect()}
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
                     "source": source, "layout": layout, "images_resized": notes.get(RESIZED, 0),
                     "images_converted": notes.get(CONVERTED, 0), "images_recompressed": notes.get(RECOMPRESSED, 0),
                     "benchmark_images": 0 if image_index is None else len(image_index.hashes)}
            # kept and dropped split the same rows on one condition, so kept = input - dropped
            prompts_ref = catalog.publish(S.PROMPTS, kept, [*parents, dropped_ref], producer, stats)
    return {"prompts": prompts_ref, "dropped": dropped_ref}


# ------------------------------------------------------------------------------------ distill


@dataset_task()
def score_prompts(store: str, prompts: DatasetRef, judge_identity: Any, judge: JudgeConfig,
                  force: bool = False) -> dict[str, DatasetRef]:
    """R1V's s_v/s_t/s_i from the judge for prompts that do not supply them -> ``cot/prompts-scored``;
    prompts whose reply does not parse -> ``cot/scores-quarantine`` (with the reply), never a default."""
    from skycurate.stages.cot.judge import Judge, judge_work_key
    from skycurate.stages.cot.judge import score_prompts as judge_scores

    catalog, producer = Catalog(store), current_producer()
    table = catalog.open(prompts).to_table().sort_by("id")
    with slots(GPU_SLOTS), Judge(judge, catalog.work_dir(S.NAMESPACE, judge_work_key(judge_identity, judge)),
                                 force=force) as client:
        scored, dropped, judged = judge_scores(table, judge, client.ask)
    dropped_t = pa.Table.from_pylist(
        [{**d, "record": o} for d, o in zip(dropped, judged["judge_output"].to_pylist(), strict=True)],
        S.DROPPED_SCHEMA)
    FunnelStep(stage=JUDGE_STAGE, rows_in=table.num_rows, rows_out=scored.num_rows, quarantined=dropped_t.num_rows)
    by_reason = {f"quarantine:{r}": n for r, n in Counter(dropped_t["reason"].to_pylist()).items()}
    prepared = catalog.manifest(prompts).stats
    stats = {"input": prepared["input"], "prepared": table.num_rows, "kept": scored.num_rows,
             "judge_quarantined": dropped_t.num_rows, "asked": client.asked, "by_reason": by_reason}
    with catalog.all_or_nothing():
        q_ref = catalog.publish(S.SCORES_QUARANTINE, dropped_t, [prompts], producer, {"by_reason": by_reason})
        ref = catalog.publish(S.PROMPTS_SCORED, scored, [prompts, q_ref], producer, stats)
    return {"prompts": ref, "scores_quarantine": q_ref}


@dataset_task()
def generate(store: str, prompts: DatasetRef, engine_identity: Any, template: S.TemplateConfig,
             teacher: S.EngineConfig, gen: S.GenerateConfig, force: bool = False,
             verify: VerifyConfig | None = None) -> dict[str, DatasetRef]:
    """Template + teacher generation -> ``cot/samples`` (every sample) and ``cot/template-rejected``
    (too long, and with ``gen.text_only_filter`` image prompts solvable without their images, judged
    by ``verify``); ``force`` regenerates journalled shards too."""
    from skycurate.stages.cot.teacher import generate_samples, work_key

    catalog, producer = Catalog(store), current_producer()
    table = catalog.open(prompts).to_table().sort_by("id")
    work = catalog.work_dir(S.NAMESPACE, work_key(engine_identity, template, teacher, gen))
    with slots(GPU_SLOTS):   # one teacher engine per slot across the server's flow runs
        run = generate_samples(table, template, teacher, gen, work, force=force, verify=verify)
    step = FunnelStep(stage=S.TEMPLATE, rows_in=table.num_rows, rows_out=run.prompts_sent,
                      rejected=run.too_long.num_rows)
    n_text_only = sum(1 for st in run.too_long["stage"].to_pylist() if st == S.TEXT_ONLY)
    answered = len(set(run.samples["prompt_id"].to_pylist()))
    if answered != run.prompts_sent:
        raise AccountingError(f"generate: {run.prompts_sent:,} prompts sent but samples for {answered:,}; "
                              "nothing published")
    params = gen.sampling.model_copy(update={"n": gen.samples})
    teacher_name = engine_identity if isinstance(engine_identity, str) else f"{teacher.engine}:{teacher.model}"
    stats = {**funnel_stats(None, step), "prompts_in": table.num_rows, "prompts_sent": run.prompts_sent,
             "too_long": run.too_long.num_rows - n_text_only, "text_only_rejected": n_text_only,
             "shards": run.report.to_dict(), "work": run.report.work,
             "teacher": teacher_name, "sampling": params.model_dump(mode="json")}
    with catalog.all_or_nothing():
        rej_ref = catalog.publish(S.TEMPLATE_REJECTED, run.too_long, [prompts], producer, {"by_reason": dict(Counter(
            f"{st}:{r}" for st, r in zip(run.too_long["stage"].to_pylist(), run.too_long["reason"].to_pylist(),
                                         strict=True)))})
        samples_ref = catalog.publish(S.SAMPLES, run.samples, [prompts, rej_ref], producer, stats)
    return {"samples": samples_ref, "template_rejected": rej_ref}


@dataset_task()
def distill(store: str, prompts: DatasetRef, dropped: DatasetRef, samples: DatasetRef, template_rejected: DatasetRef,
            template: S.TemplateConfig, verify: VerifyConfig, select: SelectConfig, rl: RLPoolConfig,
            preference: PreferenceConfig, spark: SparkConfig, judge: JudgeConfig = JudgeConfig(),
            judge_identity: Any = None, scores_quarantine: DatasetRef | None = None,
            tokens: TokenizerConfig | None = None, tokenizer: FilePin | None = None) -> dict[str, DatasetRef]:
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
    carried = ["question", "reference_answer", "answer_type", "lang", "s_v", "s_t", "s_i", "difficulty", "domain",
               "source", *(["explanation"] if "explanation" in table.column_names else [])]   # older prompts: none
    prompt_cols = (table.select(["id", *carried])
                   .rename_columns(["prompt_id", *["difficulty_score" if c == "difficulty" else c for c in carried]]))
    questions = session.createDataFrame(table.select(["id", "question"]).rename_columns(["prompt_id", "question"]))
    images = session.createDataFrame(table.select(["id", "images"]).rename_columns(["prompt_id", "images"]))
    prep = catalog.open(dropped).to_table()
    prep_rejected = prep.filter(pc.equal(prep["kind"], "rejected")).drop(["kind"]).cast(S.DROPPED_SCHEMA)
    prep_quarantined = prep.filter(pc.equal(prep["kind"], "quarantine")).drop(["kind"]).cast(S.DROPPED_SCHEMA)
    too_long = catalog.open(template_rejected).to_table().cast(S.DROPPED_SCHEMA)
    n_text_only = sum(1 for st in too_long["stage"].to_pylist() if st == S.TEXT_ONLY)
    judged_out = (catalog.open(scores_quarantine).to_table().cast(S.DROPPED_SCHEMA) if scores_quarantine
                  else S.DROPPED_SCHEMA.empty_table())
    parents = [prompts, dropped, samples, template_rejected, *([scores_quarantine] if scores_quarantine else [])]
    judge_q: list[pa.Table] = []
    with catalog.scratch("cot-distill") as scratch, _sample_judge(catalog, judge, judge_identity) as client:
        gens = read_dataset(session, samples).join(session.createDataFrame(prompt_cols), "prompt_id")
        hook = None if client is None else partial(O.judge_on_spark, judge=judge, ask=client.ask, quarantine=judge_q)
        selected, errors, summary = O.verify_and_select(gens, verify, select, scratch, judge=hook)
        selection_rejected = O.selection_rejections(summary, questions)
        engine_failed = O.engine_quarantine(errors, selected, questions)
        rejected = pa.concat_tables([prep_rejected, too_long, selection_rejected])
        quarantined = pa.concat_tables([prep_quarantined, judged_out, engine_failed])

        n_input = catalog.manifest(prompts).stats["input"]
        n_with = summary.filter(F.col("n_selected") > 0).count()
        # checked before anything is published: prompts in = with a chain + rejected + quarantined
        FunnelStep(stage="distill", rows_in=n_input, rows_out=n_with, rejected=rejected.num_rows,
                   quarantined=quarantined.num_rows)
        reasons = O.reason_counts(rejected, quarantined)
        funnel = O.funnel(n_input, table.num_rows + judged_out.num_rows, prep_rejected.num_rows,
                          prep_quarantined.num_rows, n_generated, too_long.num_rows - n_text_only,
                          engine_failed.num_rows, n_with,
                          selection_rejected.num_rows, judge_quarantined=judged_out.num_rows if scores_quarantine
                          else None, text_only=n_text_only)
        gen_stats = {**O.generation_totals(gens), "samples_selected": selected.filter(F.col("selected")).count(),
                     "shards": generated["shards"], "teacher": teacher_name, "sampling": sampling}
        stats = {"funnel": funnel, "prompts_in": n_input, "prompts_with_chain": n_with, "rejected": rejected.num_rows,
                 "quarantined": quarantined.num_rows, **gen_stats,
                 "yield": round(n_with / n_generated, 4) if n_generated else 0.0, "by_reason": reasons,
                 "work": generated["work"]}
        judge_rows = pa.concat_tables(judge_q) if judge_q else None
        if client is not None:
            stats["judge"] = {"asked": client.asked, "quarantined": judge_rows.num_rows if judge_rows else 0,
                              "by_task": dict(Counter(judge_rows["task"].to_pylist())) if judge_rows else {}}
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
            extra = {}
            if client is not None:
                from skycurate.stages.cot.judge import QUARANTINE_SCHEMA

                rows = judge_rows if judge_rows is not None else QUARANTINE_SCHEMA.empty_table()
                extra["judge_quarantine"] = catalog.publish(
                    S.JUDGE_QUARANTINE, rows, [gen_ref], producer,
                    {"by_reason": {f"{t}:{r}": n for (t, r), n in Counter(
                        zip(rows["task"].to_pylist(), rows["reason"].to_pylist(), strict=True)).items()}})
            rej_ref = catalog.publish(S.REJECTED, rejected, parents, producer, {"by_reason": reasons})
            q_ref = catalog.publish(S.QUARANTINE, quarantined, parents, producer, {"by_reason": reasons})
            chart = cot_charts_png(selected.select("prompt_id", "pass_rate", "difficulty", "bucket", "token_budget",
                                                   "completion_tokens", "selected").toArrow(),
                                   f"CoT selection: {n_with} of {n_generated} prompts kept")
            sft = O.sft_frame(selected, images, template, teacher_name, json.dumps(sampling, sort_keys=True))
            if tokens is not None:   # n_tokens of every chain's messages, totals in stats["tokens"]
                from skycurate.stages.tokens import counted_on_spark, token_stats_on_spark, tokenizer_identity

                sft = counted_on_spark(sft, tokens, f"{scratch}/sft-tokens", S.SFT).orderBy("prompt_id", "sample_index")
                stats = {**stats, "tokens": {**token_stats_on_spark(sft, tokens),
                                             **tokenizer_identity(tokens, tokenizer)}}
            sft_ref = catalog.publish(S.SFT, sft, [*parents, gen_ref, rej_ref, q_ref,
                                                   *([tokenizer.parent()] if tokenizer else [])], producer, stats,
                                      attachments={"_charts.png": chart})
            if pool is not None:
                extra.update(_publish_side(catalog, S.RL_POOL, pool, pool_rejected, [gen_ref], producer))
            if pairs is not None:
                extra.update(_publish_side(catalog, S.PREFERENCE, pairs, pairs_rejected, [gen_ref], producer))
    return {"sft": sft_ref, "generations": gen_ref, "rejected": rej_ref, "quarantine": q_ref, **extra}


@contextmanager
def _sample_judge(catalog: Catalog, judge: JudgeConfig, identity: Any) -> Iterator[Any]:
    """The judge client for answer equivalence and reasoning checks (None when neither is on),
    holding a GPU slot while open."""
    from skycurate.stages.cot.judge import Judge, judge_work_key

    if not (judge.enabled and (judge.equivalence or judge.reasoning)):
        yield None
        return
    with slots(GPU_SLOTS), Judge(judge, catalog.work_dir(S.NAMESPACE, judge_work_key(identity, judge))) as client:
        yield client


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


@flow(name="distill")
def distill_flow(store: str | None = None, config: S.DistillFlowConfig = S.DistillFlowConfig(),
                 force: bool = False) -> dict[str, Any]:
    """Prompts -> prepared prompts -> teacher samples (sharded, resumable) -> verified, selected SFT chains."""
    from skycurate.stages.tokens import checked_pin

    cfg = config
    store, catalog = open_flow(store, cfg)
    tokenizer = checked_pin(cfg.tokens)
    source_key = resolve_source(cfg.prompts, store)
    prepared = run_dataset_task(prepare_prompts, store=store, force=force, source=cfg.prompts, source_key=source_key,
                                layout=prompt_layout(cfg.prompts, store, cfg.fields), fields=cfg.fields,
                                benchmarks=cfg.benchmarks,
                                files=pin_benchmarks(cfg.benchmarks), cfg=cfg.prepare, spark=cfg.spark)
    prompts, scored = prepared["prompts"], {}
    judge_identity = engine_identity(cfg.judge.engine) if cfg.judge.enabled else None
    if cfg.judge.enabled and cfg.judge.scores:
        scored = run_dataset_task(score_prompts, store=store, force=force, prompts=prompts,
                                  judge_identity=judge_identity, judge=cfg.judge)
        prompts = scored["prompts"]
    generated = run_dataset_task(generate, store=store, force=force, prompts=prompts,
                                 engine_identity=engine_identity(cfg.teacher), template=cfg.template,
                                 teacher=cfg.teacher, gen=cfg.generate,
                                 verify=cfg.verify if cfg.generate.text_only_filter else None)
    final = run_dataset_task(distill, store=store, force=force, prompts=prompts,
                             dropped=prepared["dropped"], samples=generated["samples"],
                             template_rejected=generated["template_rejected"], template=cfg.template,
                             verify=cfg.verify, select=cfg.select, rl=cfg.rl_pool, preference=cfg.preference,
                             spark=cfg.spark, judge=cfg.judge, judge_identity=judge_identity,
                             scores_quarantine=scored.get("scores_quarantine"), tokens=cfg.tokens,
                             tokenizer=tokenizer)
    funnel = attach_run_report("distill", catalog, final["sft"], chart="_charts.png")
    return {"datasets": {**prepared, **scored, **generated, **final}, "funnel": funnel,
            "stats": catalog.manifest(final["sft"]).stats}
