"""The distill flow's Spark steps after generation: verify + select, and the published tables.

``verify_and_select`` runs the verification stage (``mapInArrow``) and the per-prompt selection
(``applyInArrow``) over the generated samples joined with their prompts; samples the engine failed
on skip both and are kept as ``engine_error`` rows. The builders turn the results into the
``cot/sft`` rows (``messages`` + metadata), the per-prompt rejection rows of the selection, and
the quarantine rows of prompts whose every sample failed in the engine.
"""

from __future__ import annotations

from functools import partial
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from skycurate.schemas import cot as S
from skycurate.schemas.cot_judge import JudgeConfig
from skycurate.schemas.cot_select import SelectConfig
from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE, FunnelStep

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

SFT_COLUMNS = ("id", "prompt_id", "sample_index", "messages", "question", "reference_answer", "answer_type",
               "extracted_answer", "correct", "verify_method", "completion", "completion_tokens", "prompt_tokens",
               "finish_reason", "pass_rate", "difficulty", "bucket", "token_budget", "chain_chars",
               "repetition_penalty", "teacher", "sampling", "domain", "source", "images")


def verify_and_select(gens: DataFrame, verify: VerifyConfig, select: SelectConfig, scratch: str,
                      judge: Callable[[DataFrame], DataFrame] | None = None) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(selected samples, engine-error samples, per-prompt summary), each written once to
    ``scratch`` and read back (later steps read them several times). ``judge`` (``judge_on_spark``
    with its engine) revisits the verdicts between verification and selection."""
    from pyspark.sql import functions as F

    from skycurate.spark import arrow_schema, map_batches
    from skycurate.stages.cot.select import prompt_summary_on_spark, select_on_spark
    from skycurate.stages.cot.verify import VERIFY, verify_batch

    session = gens.sparkSession
    ok = gens.filter(F.col("error").isNull())
    verified = map_batches(ok, partial(verify_batch, cfg=verify), VERIFY.output_schema(arrow_schema(ok)))
    if judge is not None:
        verified.write.mode("overwrite").parquet(f"{scratch}/verified")   # verified once, read twice
        verified = judge(session.read.parquet(f"{scratch}/verified"))
    select_on_spark(verified, select).write.mode("overwrite").parquet(f"{scratch}/selected")
    (gens.filter(F.col("error").isNotNull()).withColumn("selected", F.lit(False))
     .withColumn(REJECT_STAGE, F.lit(S.GENERATE)).withColumn(REJECT_REASON, F.lit(S.ENGINE_ERROR))
     .write.mode("overwrite").parquet(f"{scratch}/errors"))
    selected = session.read.parquet(f"{scratch}/selected")
    prompt_summary_on_spark(selected).write.mode("overwrite").parquet(f"{scratch}/summary")
    return selected, session.read.parquet(f"{scratch}/errors"), session.read.parquet(f"{scratch}/summary")


JUDGE_INPUT_COLUMNS = ("prompt_id", "sample_index", "question", "reference_answer", "answer_type", "extracted_answer",
                       "completion", "correct", "verify_method", "verify_error")


def judge_on_spark(verified: DataFrame, judge: JudgeConfig, ask: Any, quarantine: list[pa.Table]) -> DataFrame:
    """``verified`` with the judge's verdicts: the samples it is asked about (undecided answers,
    correct chains of prompts with an explanation: a small share) go to the driver, the verdicts
    come back as a join. Adds ``judge_output`` and ``reasoning_output``; unparsable replies are
    appended to ``quarantine``."""
    from pyspark.sql import functions as F

    from skycurate.stages.cot.judge import OVERRIDE_SCHEMA, judge_samples

    has_expl = "explanation" in verified.columns
    wanted = F.lit(False)
    if judge.equivalence:
        undecided = F.col("correct").isNull() if judge.equivalence_on == "undecided" else ~F.coalesce(
            F.col("correct"), F.lit(False))
        wanted = wanted | (undecided & F.col("extracted_answer").isNotNull())
    if judge.reasoning and has_expl:
        wanted = wanted | (F.length(F.trim(F.coalesce(F.col("explanation"), F.lit("")))) > 0)
    cols = [*JUDGE_INPUT_COLUMNS, *(["explanation"] if has_expl else [])]
    rows = verified.filter(wanted).select(*cols).toArrow()
    if rows is None or rows.num_rows == 0:
        overrides, q = OVERRIDE_SCHEMA.empty_table(), None
    else:
        overrides, q = judge_samples(rows, judge, ask)
    if q is not None and q.num_rows:
        quarantine.append(q)
    o = verified.sparkSession.createDataFrame(overrides.rename_columns(
        ["prompt_id", "sample_index", "j_correct", "j_method", "j_error", "judge_output", "reasoning_output"]))
    joined = verified.join(o.withColumn("_judged", F.lit(True)), ["prompt_id", "sample_index"], "left")
    judged = F.coalesce(F.col("_judged"), F.lit(False))
    return (joined.withColumn("correct", F.when(judged, F.col("j_correct")).otherwise(F.col("correct")))
            .withColumn("verify_method", F.when(judged, F.col("j_method")).otherwise(F.col("verify_method")))
            .withColumn("verify_error", F.when(judged, F.col("j_error")).otherwise(F.col("verify_error")))
            .drop("j_correct", "j_method", "j_error", "_judged"))


def messages_column(template: S.TemplateConfig) -> Column:
    """[system?, user, assistant] as ``list<struct<role, content>>`` (TRL, LLaMA-Factory, OpenRLHF)."""
    from pyspark.sql import functions as F

    def msg(role: str, content: Column) -> Column:
        return F.struct(F.lit(role).alias("role"), content.alias("content"))

    answer = F.trim(F.concat(F.lit(template.assistant_prefix), F.coalesce(F.col("completion"), F.lit(""))))
    turns = ([msg("system", F.lit(template.system))] if template.system else []) + [
        msg("user", F.col("user_content")), msg("assistant", answer)]
    return F.array(*turns)


def sft_frame(selected: DataFrame, images: DataFrame, template: S.TemplateConfig, teacher: str,
              sampling_json: str) -> DataFrame:
    """The ``cot/sft`` rows: one per selected chain, ordered by prompt and sample."""
    from pyspark.sql import functions as F

    return (selected.filter(F.col("selected")).join(images, "prompt_id", "left")
            .withColumn("id", F.concat(F.col("prompt_id"), F.lit("#"), F.col("sample_index").cast("string")))
            .withColumn("messages", messages_column(template))
            .withColumn("teacher", F.lit(teacher)).withColumn("sampling", F.lit(sampling_json))
            .withColumn("chain_chars", F.length("completion"))
            .select(*SFT_COLUMNS).orderBy("prompt_id", "sample_index"))


def _dropped(df: DataFrame, questions: DataFrame, stage: Column, reason: Column,
             detail: Column) -> pa.Table:
    from pyspark.sql import functions as F

    out = df.join(questions, "prompt_id").select(
        F.col("prompt_id").alias("id"), stage.alias("stage"), reason.alias("reason"), detail.alias("detail"),
        F.col("question"), F.lit(None).cast("string").alias("record")).toArrow()
    return out.select(S.DROPPED_SCHEMA.names).cast(S.DROPPED_SCHEMA) if out.num_rows else S.DROPPED_SCHEMA.empty_table()


def selection_rejections(summary: DataFrame, questions: DataFrame) -> pa.Table:
    """One ``DROPPED_SCHEMA`` row per prompt the selection left without a chain."""
    from pyspark.sql import functions as F

    return _dropped(summary.filter(F.col(REJECT_REASON).isNotNull()), questions, F.col(REJECT_STAGE),
                    F.col(REJECT_REASON), F.format_string("%d of %d samples correct (pass rate %.2f)", "n_correct",
                                                          "n_samples", "pass_rate"))


def engine_quarantine(errors: DataFrame, selected: DataFrame, questions: DataFrame) -> pa.Table:
    """One ``DROPPED_SCHEMA`` row per prompt whose every sample failed in the engine (with the error)."""
    from pyspark.sql import functions as F

    failed = (errors.groupBy("prompt_id").agg(F.first("error").alias("error"))
              .join(selected.select("prompt_id").distinct(), "prompt_id", "left_anti"))
    return _dropped(failed, questions, F.lit(S.GENERATE), F.lit(S.ENGINE_ERROR), F.col("error"))


def generation_totals(gens: DataFrame) -> dict[str, int]:
    """Samples, engine errors, empty completions and token totals (the cost accounting)."""
    from pyspark.sql import functions as F

    row = gens.agg(F.count(F.lit(1)).alias("samples"),
                   F.sum(F.col("error").isNotNull().cast("int")).alias("engine_errors"),
                   F.sum(((F.coalesce(F.col("completion"), F.lit("")) == "") & F.col("error").isNull()).cast("int"))
                   .alias("empty_completions"),
                   F.sum("prompt_tokens").alias("prompt_tokens"),
                   F.sum("completion_tokens").alias("completion_tokens")).collect()[0]
    return {k: int(row[k] or 0) for k in row.asDict()}


def reason_counts(*tables: pa.Table) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in tables:
        for stage, reason in zip(t["stage"].to_pylist(), t["reason"].to_pylist(), strict=True):
            counts[f"{stage}:{reason}"] = counts.get(f"{stage}:{reason}", 0) + 1
    return counts


def funnel(n_input: int, n_prepared: int, prep_rejected: int, prep_quarantined: int, n_generated: int,
           too_long: int, engine_failed: int, n_with_chain: int, selection_rejected: int,
           judge_quarantined: int | None = None, text_only: int = 0) -> list[dict[str, Any]]:
    """Prompt counts per step: in, kept, rejected, quarantined (each step must reconcile);
    ``judge_quarantined``: prompts whose judged scores did not parse (a judge step, when scoring ran);
    ``text_only``: image prompts solvable without their images (a text_only step, when any)."""
    from skycurate.schemas.cot_judge import STAGE as JUDGE_STAGE

    judged = n_prepared - (judge_quarantined or 0)
    steps = [
        FunnelStep(stage=S.PREPARE, rows_in=n_input, rows_out=n_prepared, rejected=prep_rejected,
                   quarantined=prep_quarantined),
        *([FunnelStep(stage=JUDGE_STAGE, rows_in=n_prepared, rows_out=judged, quarantined=judge_quarantined)]
          if judge_quarantined is not None else []),
        FunnelStep(stage=S.TEMPLATE, rows_in=judged, rows_out=judged - too_long, rejected=too_long),
        *([FunnelStep(stage=S.TEXT_ONLY, rows_in=judged - too_long, rows_out=n_generated, rejected=text_only)]
          if text_only else []),
        FunnelStep(stage=S.GENERATE, rows_in=n_generated, rows_out=n_generated - engine_failed,
                   quarantined=engine_failed),
        FunnelStep(stage=S.SELECT, rows_in=n_generated - engine_failed, rows_out=n_with_chain,
                   rejected=selection_rejected),
    ]
    return [s.model_dump() for s in steps]
