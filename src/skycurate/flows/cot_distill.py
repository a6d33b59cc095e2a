"""CoT distillation flow (Skywork R1V): prompts -> verified reasoning chains of adaptive length.

Two dataset tasks:

1. ``prepare_prompts`` (Spark): check and normalise the prompts, quarantine bad rows, drop exact
   and near-duplicate questions and benchmark-contaminated ones -> ``cot/prompts`` (+ the dropped
   rows in ``cot/prompts-dropped``).
2. ``distill``: template the prompts for the teacher (prompts longer than the context are
   rejected), generate N samples per prompt in resumable shards through the configured engine
   (vLLM offline batch, an OpenAI-compatible endpoint, or transformers), then on Spark verify the
   answers and select chains of adaptive length -> ``cot/generations`` (every sample),
   ``cot/sft`` (``messages`` + metadata), ``cot/rejected`` and ``cot/quarantine`` (one row per
   prompt left without a chain), with the selection chart attached to ``cot/sft``.

Accounting holds at the prompt level: prompts in = with a selected chain + rejected + quarantined.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow

from skycurate.catalog import Catalog, DatasetRef, normalize_store
from skycurate.catalog.pins import pin_model_folder
from skycurate.connectors.benchmarks import BenchmarkPins, benchmark_parents, pin_benchmarks
from skycurate.errors import SkycurateError
from skycurate.flows._runtime import (
    attach_chart_artifact,
    attach_funnel_artifact,
    current_producer,
    dataset_task,
    run_dataset_task,
)
from skycurate.schemas import cot as S
from skycurate.schemas.config import SparkConfig
from skycurate.schemas.cot_select import SelectConfig
from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.schemas.leakage import BenchmarkSpec
from skycurate.spark import get_spark
from skycurate.stages.cot.prompts import resolve_source

log = logging.getLogger(__name__)
DROPPED = f"{S.NAMESPACE}/prompts-dropped"
_CODE = ["skycurate.stages.cot", "skycurate.schemas.cot", "skycurate.connectors.llm", "skycurate.reporting_cot"]


# ------------------------------------------------------------------------------------ prepare


@dataset_task(code=_CODE + ["skycurate.stages.leakage", "skycurate.stages.web.minhash",
                            "skycurate.stages.web.near_dedup"])
def prepare_prompts(store: str, source: str, source_key: Any, benchmarks: list[BenchmarkSpec],
                    files: BenchmarkPins, cfg: S.PrepareConfig,
                    spark: SparkConfig) -> dict[str, DatasetRef]:
    from pyspark.sql import functions as F

    from skycurate.connectors.benchmarks import load_benchmark
    from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE
    from skycurate.stages.cot.prompts import (
        PROMPT_COLUMNS,
        dedup_key,
        prepare_on_spark,
        read_prompts,
    )
    from skycurate.stages.leakage.decontaminate import build_index

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer(cfg)
    df, parents = read_prompts(session, source_key, store)
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
        prepare_on_spark(df, cfg, index, keys, base_dir).write.mode("overwrite").parquet(scratch)
        out = session.read.parquet(scratch)
        n_input = out.count()
        kept = out.filter(F.col(REJECT_REASON).isNull()).select(*PROMPT_COLUMNS).orderBy("id")
        dropped = out.filter(F.col(REJECT_REASON).isNotNull()).select(
            F.col("id"), F.col(REJECT_STAGE).alias("stage"),
            F.when(F.col("quarantine_reason").isNotNull(), F.lit("quarantine")).otherwise(F.lit("rejected")).alias("kind"),
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
                     "source": source}
            # kept and dropped split the same rows on one condition, so kept = input - dropped
            prompts_ref = catalog.publish(S.PROMPTS, kept, [*parents, dropped_ref], producer, stats)
    return {"prompts": prompts_ref, "dropped": dropped_ref}


# ------------------------------------------------------------------------------------ distill


def _tokenizer(teacher: S.EngineConfig):
    folder = teacher.tokenizer or (teacher.model if teacher.engine != "openai" else None)
    if not folder or not Path(folder).is_dir():
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - one line for the user
        raise SkycurateError(f"cannot load the tokenizer in {folder}: {type(e).__name__}") from None


def _open_engine(teacher: S.EngineConfig, template: S.TemplateConfig, work: Path):
    from skycurate.connectors.llm.generation import open_generator

    options = dict(teacher.vllm_options)
    if teacher.max_model_len:
        options.setdefault("max_model_len", teacher.max_model_len)
    if teacher.engine == "vllm":
        work.mkdir(parents=True, exist_ok=True)
    return open_generator(teacher.engine, teacher.model or "", base_url=teacher.base_url, device=teacher.device,
                          batch_size=teacher.batch_size, chat=template.mode == "chat", system=template.system,
                          concurrency=teacher.concurrency, timeout_s=teacher.timeout_s, retries=teacher.retries,
                          vllm_python=teacher.vllm_python, options=options, log_path=work / "vllm-worker.log",
                          request_timeout_s=teacher.request_timeout_s)


def work_key(identity: Any, template: S.TemplateConfig, teacher: S.EngineConfig,
             gen: S.GenerateConfig) -> str:
    payload = {"engine": identity, "template": template.model_dump(mode="json"),
               "teacher": teacher.model_dump(mode="json", exclude={"concurrency", "timeout_s", "retries", "batch_size",
                                                                   "vllm_python", "device", "request_timeout_s"}),
               "generate": gen.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _generate(catalog: Catalog, table: pa.Table, identity: Any, template: S.TemplateConfig,
              teacher: S.EngineConfig, gen: S.GenerateConfig) -> tuple[Any, list[dict], pa.Table, int]:
    """Template the prompts and generate every missing shard: (shard report, too-long rows,
    per-prompt columns, prompts sent to the engine)."""
    from skycurate.stages.cot.generate import run_shards
    from skycurate.stages.cot.prompts import generation_items

    tokenizer = _tokenizer(teacher)
    if template.mode == "chat" and tokenizer is None and teacher.engine != "openai":
        raise SkycurateError("chat templating needs a local tokenizer: set teacher.tokenizer")
    items, too_long, extra = generation_items(table, template, teacher, gen, tokenizer)
    params = gen.sampling.model_copy(update={"n": gen.samples})
    work = Path(catalog.root) / "_work" / S.NAMESPACE / work_key(identity, template, teacher, gen)
    generator = _open_engine(teacher, template, work) if items else None

    def progress(done: int, total: int, n: int) -> None:
        log.info("generation: shard %d/%d done (%d prompts x %d samples)", done, total, n, gen.samples)

    try:
        report = run_shards(items, generator.generate if generator else (lambda *a, **k: []), params, work,
                            gen.shard_size, add_special_tokens=template.add_special_tokens and template.mode == "raw",
                            progress=progress)
    finally:
        if generator is not None:
            generator.close()
    return report, too_long, extra, len(items)


@dataset_task(code=_CODE)
def distill(store: str, prompts: DatasetRef, dropped: DatasetRef, engine_identity: Any, template: S.TemplateConfig,
            teacher: S.EngineConfig, gen: S.GenerateConfig, verify: VerifyConfig, select: SelectConfig,
            spark: SparkConfig) -> dict[str, DatasetRef]:
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    from skycurate.reporting_cot import cot_charts_png
    from skycurate.stages.accounting import AccountingError
    from skycurate.stages.cot import outputs as O

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer()
    table = catalog.open(prompts).to_table().sort_by("id")
    report, too_long, extra, n_generated = _generate(catalog, table, engine_identity, template, teacher, gen)
    params = gen.sampling.model_copy(update={"n": gen.samples})
    teacher_name = engine_identity if isinstance(engine_identity, str) else f"{teacher.engine}:{teacher.model}"

    prompt_cols = (table.select(["id", "question", "reference_answer", "answer_type", "lang", "s_v", "s_t", "s_i",
                                 "difficulty", "domain", "source"])
                   .rename_columns(["prompt_id", "question", "reference_answer", "answer_type", "lang", "s_v", "s_t",
                                    "s_i", "difficulty_score", "domain", "source"]))
    questions = session.createDataFrame(table.select(["id", "question"]).rename_columns(["prompt_id", "question"]))
    images = session.createDataFrame(table.select(["id", "images"]).rename_columns(["prompt_id", "images"]))
    prep = catalog.open(dropped).to_table()
    prep_rejected = prep.filter(pc.equal(prep["kind"], "rejected")).drop(["kind"]).cast(S.DROPPED_SCHEMA)
    prep_quarantined = prep.filter(pc.equal(prep["kind"], "quarantine")).drop(["kind"]).cast(S.DROPPED_SCHEMA)
    parents = [prompts, dropped]
    with catalog.scratch("cot-distill") as scratch:
        gens = (session.read.parquet(*report.files) if report.files
                else session.createDataFrame(S.GENERATION_SCHEMA.empty_table()))
        gens = gens.join(session.createDataFrame(prompt_cols.join(extra, "prompt_id")), "prompt_id")
        selected, errors, summary = O.verify_and_select(gens, verify, select, scratch)
        selection_rejected = O.selection_rejections(summary, questions)
        engine_failed = O.engine_quarantine(errors, selected, questions)
        rejected = pa.concat_tables([prep_rejected, pa.Table.from_pylist(too_long, S.DROPPED_SCHEMA),
                                     selection_rejected])
        quarantined = pa.concat_tables([prep_quarantined, engine_failed])

        n_input = catalog.manifest(prompts).stats["input"]
        n_with = summary.filter(F.col("n_selected") > 0).count()
        if n_input != n_with + rejected.num_rows + quarantined.num_rows:
            raise AccountingError(f"distill: {n_input:,} prompts in but {n_with:,} with a chain + "
                                  f"{rejected.num_rows:,} rejected + {quarantined.num_rows:,} quarantined; "
                                  "nothing published")
        totals = O.generation_totals(gens)
        reasons = O.reason_counts(rejected, quarantined)
        funnel = O.funnel(n_input, table.num_rows, prep_rejected.num_rows, prep_quarantined.num_rows, n_generated,
                          len(too_long), engine_failed.num_rows, n_with, selection_rejected.num_rows)
        gen_stats = {**totals, "samples_selected": selected.filter(F.col("selected")).count(),
                     "shards": report.to_dict(), "teacher": teacher_name, "sampling": params.model_dump(mode="json")}
        stats = {"funnel": funnel, "prompts_in": n_input, "prompts_with_chain": n_with, "rejected": rejected.num_rows,
                 "quarantined": quarantined.num_rows, **gen_stats,
                 "yield": round(n_with / n_generated, 4) if n_generated else 0.0, "by_reason": reasons,
                 "work": report.work}
        with catalog.all_or_nothing():
            gen_ref = catalog.publish(S.GENERATIONS, selected.unionByName(errors, allowMissingColumns=True)
                                      .orderBy("prompt_id", "sample_index"), parents, producer, gen_stats)
            rej_ref = catalog.publish(S.REJECTED, rejected, parents, producer, {"by_reason": reasons})
            q_ref = catalog.publish(S.QUARANTINE, quarantined, parents, producer, {"by_reason": reasons})
            chart = cot_charts_png(selected.select("prompt_id", "pass_rate", "difficulty", "bucket", "token_budget",
                                                   "completion_tokens", "selected").toArrow(),
                                   f"CoT selection: {n_with} of {n_generated} prompts kept")
            sft = O.sft_frame(selected, images, template, teacher_name,
                              json.dumps(params.model_dump(mode="json"), sort_keys=True))
            sft_ref = catalog.publish(S.SFT, sft, [*parents, gen_ref, rej_ref, q_ref], producer, stats,
                                      attachments={"_charts.png": chart})
    return {"sft": sft_ref, "generations": gen_ref, "rejected": rej_ref, "quarantine": q_ref}


def engine_identity(teacher: S.EngineConfig) -> Any:
    if teacher.engine == "openai":
        return f"openai:{teacher.model}@{teacher.base_url}"
    return {"engine": teacher.engine, "model": pin_model_folder(teacher.model).model_dump()}


@flow(name="distill")
def distill_flow(store: str | None = None, config: S.DistillFlowConfig = S.DistillFlowConfig(),
                 force: bool = False) -> dict[str, Any]:
    """Prompts -> prepared prompts -> teacher samples (sharded, resumable) -> verified, selected SFT chains."""
    store = normalize_store(store)
    cfg = config
    if not cfg.prompts:
        raise SkycurateError("no prompts: pass --prompts (a dataset ref or JSONL/Parquet files)")
    if not cfg.teacher.model:
        raise SkycurateError("no teacher: pass --model (a local folder, or the served model name with --base-url)")
    catalog = Catalog(store)
    prepared = run_dataset_task(prepare_prompts, store=store, force=force, source=cfg.prompts,
                                source_key=resolve_source(cfg.prompts, store), benchmarks=cfg.benchmarks,
                                files=pin_benchmarks(cfg.benchmarks), cfg=cfg.prepare, spark=cfg.spark)
    final = run_dataset_task(distill, store=store, force=force, prompts=prepared["prompts"],
                             dropped=prepared["dropped"], engine_identity=engine_identity(cfg.teacher),
                             template=cfg.template, teacher=cfg.teacher, gen=cfg.generate, verify=cfg.verify,
                             select=cfg.select, spark=cfg.spark)
    m = catalog.manifest(final["sft"])
    attach_funnel_artifact("distill", m.stats["funnel"])
    attach_chart_artifact("distill", catalog.fs.cat_file(
        f"{catalog.root}/{final['sft'].name}/{final['sft'].version}/_charts.png"))
    return {"datasets": {**prepared, **final}, "funnel": m.stats["funnel"], "stats": m.stats}
