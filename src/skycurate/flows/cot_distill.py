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
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow

from skycurate.catalog import Catalog, DatasetRef, normalize_store
from skycurate.errors import SkycurateError
from skycurate.flows._runtime import (attach_chart_artifact, attach_funnel_artifact, current_producer, dataset_task,
                                      run_dataset_task)
from skycurate.flows.leakage_audit import FileHash, benchmark_fingerprints, benchmark_parents, fingerprint_model
from skycurate.schemas import cot as S
from skycurate.schemas.config import SparkConfig
from skycurate.schemas.cot_select import SelectConfig
from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.schemas.leakage import BenchmarkSpec
from skycurate.spark import get_spark, read_dataset

log = logging.getLogger(__name__)
DROPPED = f"{S.NAMESPACE}/prompts-dropped"
_CODE = ["skycurate.stages.cot", "skycurate.schemas.cot", "skycurate.connectors.llm", "skycurate.reporting_cot"]


# ------------------------------------------------------------------------------------ prepare


@dataset_task(code=_CODE + ["skycurate.stages.leakage", "skycurate.stages.web.minhash",
                            "skycurate.stages.web.near_dedup"])
def prepare_prompts(store: str, source: str, source_key: Any, benchmarks: list[BenchmarkSpec],
                    files: dict[str, dict[str, list[FileHash]]], cfg: S.PrepareConfig,
                    spark: SparkConfig) -> dict[str, DatasetRef]:
    from pyspark.sql import functions as F

    from skycurate.connectors.benchmarks import load_benchmark
    from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE
    from skycurate.stages.cot.prompts import PROMPT_COLUMNS, dedup_key, prepare_on_spark, read_prompts
    from skycurate.stages.leakage.decontaminate import build_index

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer(cfg)
    df, parents = read_prompts(session, source, store)
    index, keys = None, []
    if benchmarks:
        tables = [load_benchmark(spec, cfg.decontaminate.splits) for spec in benchmarks]
        index = build_index(tables, cfg.decontaminate)
        keys = sorted({dedup_key(t) for tbl in tables for split in tbl.values() for t in split["text"].to_pylist()
                       if t})
        parents = [*parents, *benchmark_parents(files)]
    base_dir = str(Path(source).resolve().parent) if Path(source).exists() else None
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
        dropped_ref = catalog.publish(DROPPED, dropped, parents, producer, {"by_reason": by_reason})
        n_dropped = catalog.manifest(dropped_ref).num_rows
        stats = {"input": n_input, "kept": n_input - n_dropped, "dropped": n_dropped, "by_reason": by_reason,
                 "source": source}
        prompts_ref = catalog.publish(S.PROMPTS, kept, [*parents, dropped_ref], producer, stats)
    if catalog.manifest(prompts_ref).num_rows + n_dropped != n_input:
        raise SkycurateError("prepare: counts do not reconcile")  # pragma: no cover - a bug, not an input
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


def _context_length(teacher: S.EngineConfig, tokenizer: Any) -> int | None:
    if teacher.max_model_len:
        return teacher.max_model_len
    folder = teacher.tokenizer or teacher.model
    conf = Path(folder or "") / "config.json"
    if conf.is_file():
        value = json.loads(conf.read_text()).get("max_position_embeddings")
        if value:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 10**7 else None


def _open_engine(teacher: S.EngineConfig, template: S.TemplateConfig):
    from skycurate.connectors.llm.generation import open_generator

    if teacher.engine == "openai":
        from skycurate.connectors.llm.generation import OpenAIGenerator

        if not teacher.base_url:
            raise SkycurateError("the openai engine needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return OpenAIGenerator(teacher.base_url, teacher.model or "", chat=template.mode == "chat",
                               concurrency=teacher.concurrency, system=template.system,
                               timeout_s=teacher.timeout_s, retries=teacher.retries)
    if teacher.engine == "vllm":
        opts = dict(teacher.vllm_options)
        if teacher.max_model_len:
            opts.setdefault("max_model_len", teacher.max_model_len)
        return open_generator("vllm", teacher.model, vllm_python=teacher.vllm_python, options=opts)
    return open_generator("transformers", teacher.model, device=teacher.device, batch_size=teacher.batch_size)


def work_key(identity: Any, template: S.TemplateConfig, teacher: S.EngineConfig,
             gen: S.GenerateConfig) -> str:
    payload = {"engine": identity, "template": template.model_dump(mode="json"),
               "teacher": teacher.model_dump(mode="json", exclude={"concurrency", "timeout_s", "retries", "batch_size",
                                                                   "vllm_python", "device"}),
               "generate": gen.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _prompt_rows(table: pa.Table, template: S.TemplateConfig, teacher: S.EngineConfig, gen: S.GenerateConfig,
                 tokenizer: Any) -> tuple[list, list[dict], pa.Table]:
    """(generation items, too-long rejections, per-prompt columns for the later joins)."""
    from skycurate.stages.cot.generate import PromptItem
    from skycurate.stages.cot.prompts import render, user_content
    from skycurate.stages.cot.select import repetition_penalties

    ids = table["id"].to_pylist()
    questions = table["question"].to_pylist()
    chat_endpoint = teacher.engine == "openai" and template.mode == "chat"
    texts = [user_content(q, template) if chat_endpoint else render(q, template, tokenizer) for q in questions]
    penalties = repetition_penalties(table["s_v"], table["s_t"], table["s_i"], gen.alpha, gen.beta, gen.gamma)
    context = _context_length(teacher, tokenizer)
    counts: list[int | None] = [None] * len(texts)
    if tokenizer is not None and texts:
        add = template.add_special_tokens and template.mode == "raw"
        counts = [len(x) for x in tokenizer(texts, add_special_tokens=add)["input_ids"]]
    items, too_long = [], []
    budget = None if context is None else context - gen.sampling.max_new_tokens
    for i, (pid, text, n_tok) in enumerate(zip(ids, texts, counts, strict=True)):
        if budget is not None and n_tok is not None and n_tok > budget:
            too_long.append({"id": pid, "stage": S.TEMPLATE, "reason": S.TOO_LONG,
                             "detail": f"{n_tok} prompt tokens + {gen.sampling.max_new_tokens} new tokens > "
                                       f"context {context}", "question": questions[i][:2000], "record": None})
            continue
        items.append(PromptItem(id=pid, text=text, penalty=float(penalties[i])))
    users = [user_content(q, template) if template.mode == "chat" else q for q in questions]
    extra = pa.table({"prompt_id": ids, "user_content": users, "prompt_tokens_counted": pa.array(counts, pa.int32())})
    return items, too_long, extra


def _arrow(df: Any, schema: pa.Schema) -> pa.Table:
    """A small Spark result as an Arrow table of ``schema`` (an empty result included)."""
    table = df.toArrow()
    return table.select(schema.names).cast(schema) if table.num_rows else schema.empty_table()


def _sft_columns(template: S.TemplateConfig):
    from pyspark.sql import functions as F

    def msg(role: str, content):
        return F.struct(F.lit(role).alias("role"), content.alias("content"))

    answer = F.trim(F.concat(F.lit(template.assistant_prefix), F.coalesce(F.col("completion"), F.lit(""))))
    turns = ([msg("system", F.lit(template.system))] if template.system else []) + [
        msg("user", F.col("user_content")), msg("assistant", answer)]
    return F.array(*turns)


@dataset_task(code=_CODE)
def distill(store: str, prompts: DatasetRef, dropped: DatasetRef, engine_identity: Any, template: S.TemplateConfig,
            teacher: S.EngineConfig, gen: S.GenerateConfig, verify: VerifyConfig, select: SelectConfig,
            spark: SparkConfig) -> dict[str, DatasetRef]:
    from pyspark.sql import functions as F

    from skycurate.reporting_cot import cot_charts_png
    from skycurate.spark import arrow_schema, map_batches
    from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE, AccountingError
    from skycurate.stages.cot.generate import run_shards
    from skycurate.stages.cot.select import prompt_summary_on_spark, select_on_spark
    from skycurate.stages.cot.verify import VERIFY, verify_batch

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer()
    table = catalog.open(prompts).to_table().sort_by("id")
    tokenizer = _tokenizer(teacher)
    if template.mode == "chat" and tokenizer is None and teacher.engine != "openai":
        raise SkycurateError("chat templating needs a local tokenizer: set teacher.tokenizer")
    items, too_long, extra = _prompt_rows(table, template, teacher, gen, tokenizer)
    params = gen.sampling.model_copy(update={"n": gen.samples})
    work = Path(catalog.root) / "_work" / S.NAMESPACE / work_key(engine_identity, template, teacher, gen)
    generator = _open_engine(teacher, template) if items else None
    try:
        def progress(done: int, total: int, n: int) -> None:
            log.info("generation: shard %d/%d done (%d prompts x %d samples)", done, total, n, gen.samples)

        report = run_shards(items, generator.generate if generator else (lambda *a, **k: []), params, work,
                            gen.shard_size, add_special_tokens=template.add_special_tokens and template.mode == "raw",
                            progress=progress)
    finally:
        if generator is not None:
            generator.close()

    parents = [prompts, dropped]
    prompt_cols = (table.select(["id", "question", "reference_answer", "answer_type", "lang", "s_v", "s_t", "s_i",
                                 "difficulty", "domain", "source"])
                   .rename_columns(["prompt_id", "question", "reference_answer", "answer_type", "lang", "s_v", "s_t",
                                    "s_i", "difficulty_score", "domain", "source"]))
    prompt_df = session.createDataFrame(prompt_cols.join(extra, "prompt_id"))
    with catalog.scratch("cot-distill") as scratch:
        gens = (session.read.parquet(*report.files) if report.files
                else session.createDataFrame(S.GENERATION_SCHEMA.empty_table()))
        gens = gens.join(prompt_df, "prompt_id")
        ok = gens.filter(F.col("error").isNull())
        verified = map_batches(ok, partial(verify_batch, cfg=verify), VERIFY.output_schema(arrow_schema(ok)))
        selected = select_on_spark(verified, select)
        selected.write.mode("overwrite").parquet(f"{scratch}/selected")
        errors = gens.filter(F.col("error").isNotNull()).withColumn("selected", F.lit(False)) \
            .withColumn(REJECT_STAGE, F.lit(S.GENERATE)).withColumn(REJECT_REASON, F.lit(S.ENGINE_ERROR))
        errors.write.mode("overwrite").parquet(f"{scratch}/errors")
        selected = session.read.parquet(f"{scratch}/selected")
        errors = session.read.parquet(f"{scratch}/errors")
        samples = selected.unionByName(errors, allowMissingColumns=True)
        summary = prompt_summary_on_spark(selected)
        summary.write.mode("overwrite").parquet(f"{scratch}/summary")
        summary = session.read.parquet(f"{scratch}/summary")

        # prompts whose every sample failed in the engine: quarantined with the error
        err_prompts = (errors.groupBy("prompt_id").agg(F.first("error").alias("error"))
                       .join(selected.select("prompt_id").distinct(), "prompt_id", "left_anti"))
        n_generated_prompts = len(items)

        teacher_name = engine_identity if isinstance(engine_identity, str) else f"{teacher.engine}:{teacher.model}"
        sampling_json = json.dumps(params.model_dump(mode="json"), sort_keys=True)
        images = session.createDataFrame(table.select(["id", "images"]).rename_columns(["prompt_id", "images"]))
        sft = (selected.filter(F.col("selected")).join(images, "prompt_id", "left")
               .withColumn("id", F.concat(F.col("prompt_id"), F.lit("#"), F.col("sample_index").cast("string")))
               .withColumn("messages", _sft_columns(template))
               .withColumn("teacher", F.lit(teacher_name)).withColumn("sampling", F.lit(sampling_json))
               .withColumn("chain_chars", F.length("completion"))
               .select("id", "prompt_id", "sample_index", "messages", "question", "reference_answer", "answer_type",
                       "extracted_answer", "correct", "verify_method", "completion", "completion_tokens",
                       "prompt_tokens", "finish_reason", "pass_rate", "difficulty", "bucket", "token_budget",
                       "chain_chars", "repetition_penalty", "teacher", "sampling", "domain", "source", "images")
               .orderBy("prompt_id", "sample_index"))

        prep = catalog.open(dropped).to_table()
        prep_rej = prep.filter(pa.compute.equal(prep["kind"], "rejected")).drop(["kind"])
        prep_q = prep.filter(pa.compute.equal(prep["kind"], "quarantine")).drop(["kind"])
        qcols = table.select(["id", "question"]).rename_columns(["prompt_id", "question"])
        sel_rej = (summary.filter(F.col(REJECT_REASON).isNotNull())
                   .join(session.createDataFrame(qcols), "prompt_id")
                   .select(F.col("prompt_id").alias("id"), F.col(REJECT_STAGE).alias("stage"),
                           F.col(REJECT_REASON).alias("reason"),
                           F.format_string("%d of %d samples correct (pass rate %.2f)", "n_correct", "n_samples",
                                           "pass_rate").alias("detail"),
                           F.col("question"), F.lit(None).cast("string").alias("record")))
        rejected_rows = pa.concat_tables([
            prep_rej.cast(S.DROPPED_SCHEMA),
            pa.Table.from_pylist(too_long, S.DROPPED_SCHEMA),
            _arrow(sel_rej, S.DROPPED_SCHEMA)])
        eng_q = (err_prompts.join(session.createDataFrame(qcols), "prompt_id")
                 .select(F.col("prompt_id").alias("id"), F.lit(S.GENERATE).alias("stage"),
                         F.lit(S.ENGINE_ERROR).alias("reason"), F.col("error").alias("detail"), "question",
                         F.lit(None).cast("string").alias("record")))
        eng_q = _arrow(eng_q, S.DROPPED_SCHEMA)
        quarantine_rows = pa.concat_tables([prep_q.cast(S.DROPPED_SCHEMA), eng_q])

        n_input = catalog.manifest(prompts).stats["input"]
        n_with = summary.filter(F.col("n_selected") > 0).count()
        n_rej, n_q = rejected_rows.num_rows, quarantine_rows.num_rows
        if n_input != n_with + n_rej + n_q:
            raise AccountingError(f"distill: {n_input:,} prompts in but {n_with:,} with a chain + {n_rej:,} rejected "
                                  f"+ {n_q:,} quarantined; nothing published")
        tokens = gens.agg(F.sum("prompt_tokens").alias("p"), F.sum("completion_tokens").alias("c"),
                          F.count(F.lit(1)).alias("n"), F.sum(F.col("error").isNotNull().cast("int")).alias("e"),
                          F.sum((F.coalesce(F.col("completion"), F.lit("")) == "").cast("int")).alias("empty")
                          ).collect()[0]
        reasons = {f"{r['stage']}:{r['reason']}": 0 for r in rejected_rows.to_pylist()}
        for r in rejected_rows.to_pylist() + quarantine_rows.to_pylist():
            key = f"{r['stage']}:{r['reason']}"
            reasons[key] = reasons.get(key, 0) + 1
        n_samples_sel = selected.filter(F.col("selected")).count()
        funnel = [
            {"stage": "prepare", "rows_in": n_input, "rows_out": table.num_rows,
             "rejected": prep_rej.num_rows, "quarantined": prep_q.num_rows},
            {"stage": S.TEMPLATE, "rows_in": table.num_rows, "rows_out": n_generated_prompts,
             "rejected": len(too_long), "quarantined": 0},
            {"stage": S.GENERATE, "rows_in": n_generated_prompts, "rows_out": n_generated_prompts - eng_q.num_rows,
             "rejected": 0, "quarantined": eng_q.num_rows},
            {"stage": S.SELECT, "rows_in": n_generated_prompts - eng_q.num_rows, "rows_out": n_with,
             "rejected": n_rej - prep_rej.num_rows - len(too_long), "quarantined": 0},
        ]
        stats = {"funnel": funnel, "prompts_in": n_input, "prompts_with_chain": n_with, "rejected": n_rej,
                 "quarantined": n_q, "samples": int(tokens["n"] or 0), "samples_selected": n_samples_sel,
                 "engine_errors": int(tokens["e"] or 0), "empty_completions": int(tokens["empty"] or 0),
                 "prompt_tokens": int(tokens["p"] or 0), "completion_tokens": int(tokens["c"] or 0),
                 "yield": round(n_with / n_generated_prompts, 4) if n_generated_prompts else 0.0,
                 "by_reason": reasons, "shards": report.to_dict(), "teacher": teacher_name,
                 "sampling": params.model_dump(mode="json"), "work": str(work)}
        gen_ref = catalog.publish(S.GENERATIONS, samples.orderBy("prompt_id", "sample_index"), parents, producer,
                                  {k: stats[k] for k in ("samples", "samples_selected", "engine_errors",
                                                         "empty_completions", "prompt_tokens", "completion_tokens",
                                                         "shards", "teacher", "sampling")})
        rej_ref = catalog.publish(S.REJECTED, rejected_rows, parents, producer, {"by_reason": reasons})
        q_ref = catalog.publish(S.QUARANTINE, quarantine_rows, parents, producer, {"by_reason": reasons})
        chart_cols = ["prompt_id", "pass_rate", "difficulty", "bucket", "token_budget", "completion_tokens", "selected"]
        chart = cot_charts_png(selected.select(*chart_cols).toArrow(),
                               f"CoT selection: {n_with} of {n_generated_prompts} prompts kept")
        sft_ref = catalog.publish(S.SFT, sft, [*parents, gen_ref, rej_ref, q_ref], producer, stats,
                                  attachments={"_charts.png": chart})
    return {"sft": sft_ref, "generations": gen_ref, "rejected": rej_ref, "quarantine": q_ref}


def _source_key(source: str, store: str) -> Any:
    from skycurate.catalog.writers import sha256_file
    from skycurate.connectors.jsonl import expand_sources

    path_like = any(source.endswith(s) for s in (".jsonl", ".json", ".parquet", ".jsonl.gz")) or "*" in source \
        or Path(source).exists()
    if path_like:
        files = expand_sources([source])
        if not files:
            raise SkycurateError(f"prompts: no file matches {source}")
        return [{"path": str(f.resolve()), "sha256": sha256_file(f)} for f in files]
    return Catalog(store).resolve(source).label


def engine_identity(teacher: S.EngineConfig) -> Any:
    if teacher.engine == "openai":
        return f"openai:{teacher.model}@{teacher.base_url}"
    return {"engine": teacher.engine, "model": fingerprint_model(teacher.model).model_dump()}


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
                                source_key=_source_key(cfg.prompts, store), benchmarks=cfg.benchmarks,
                                files=benchmark_fingerprints(cfg.benchmarks), cfg=cfg.prepare, spark=cfg.spark)
    final = run_dataset_task(distill, store=store, force=force, prompts=prepared["prompts"],
                             dropped=prepared["dropped"], engine_identity=engine_identity(cfg.teacher),
                             template=cfg.template, teacher=cfg.teacher, gen=cfg.generate, verify=cfg.verify,
                             select=cfg.select, spark=cfg.spark)
    m = catalog.manifest(final["sft"])
    attach_funnel_artifact("distill", m.stats["funnel"])
    attach_chart_artifact("distill", catalog.fs.cat_file(
        f"{catalog.root}/{final['sft'].name}/{final['sft'].version}/_charts.png"))
    return {"datasets": {**prepared, **final}, "funnel": m.stats["funnel"], "stats": m.stats}
