"""Selection of distilled CoT chains: which of N verified samples per prompt become SFT data.

Per prompt (all its samples together):

1. pass_rate = correct / N (a null ``correct``, failed verification, counts as not passing and is
   reported as ``unverified``); difficulty = the given ``difficulty_score`` (mean over the prompt's
   rows, clipped to [0, 1]) or else 1 - pass_rate; bucket = the last ``cfg.buckets`` entry whose
   ``min_difficulty`` <= difficulty, which gives the token budget and how many chains to keep.
2. Each sample gets the first verdict that applies: incorrect / unverified (rejection sampling on the
   final answer), then the quality checks of ``quality.py`` (truncated, bad_format, repetitive,
   language_mixed, overlong_paragraph), then over_budget (completion_tokens > the bucket's budget).
3. Of the remaining candidates the ``keep`` shortest (completion_tokens, then sample_index, then the
   text: fully determined by the data, never by row order) are selected; the others are
   ``not_shortest``. Easy prompts thus keep one short chain; hard prompts keep up to three, and
   their larger budget admits longer chains.

``select_chains`` is pure (Arrow in, Arrow out, input row order kept) and works on any set of
whole prompts; ``select_on_spark`` runs it per prompt with ``groupBy("prompt_id").applyInArrow``.
``prompt_summary`` gives one row per prompt, with a reason (``no_correct_sample``, ``no_clean_sample``,
``all_over_budget``) for prompts left without a selected chain; ``selection_funnel`` checks that
samples in = selected + rejected and prompts in = with a selected chain + without.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skycurate.errors import StageContractError
from skycurate.schemas.cot_select import (
    ADDED_FIELDS,
    ALL_OVER_BUDGET,
    DIFFICULTY_SCORE,
    INCORRECT,
    LANG,
    NO_CLEAN_SAMPLE,
    NO_CORRECT_SAMPLE,
    NOT_SHORTEST,
    OVER_BUDGET,
    PENALTY_FIELD,
    PROMPT_FIELDS,
    REQUIRED_COLUMNS,
    SCORE_COLUMNS,
    STAGE,
    SUMMARY_FIELDS,
    UNVERIFIED,
    SelectConfig,
)
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE, FunnelStep
from skycurate.stages.cot.quality import annotate_chains, reason_code

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

ArrayLike = Any  # a float, a sequence with None, a numpy array, a pyarrow (chunked) array


# --------------------------------------------------------------------------- repetition penalty (R1V)


def repetition_penalty(s_v: float | None, s_t: float | None, s_i: float | None,
                       alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0) -> float:
    """Skywork R1V: ``P = min(2, exp(alpha * (1 - (S_v + beta*S_t + gamma*S_I) / (1 + beta + gamma))))``.

    Scores are expected in [0, 1] (then P is in [1, min(2, e^alpha)]). A missing (None or NaN) score
    means the sample was not assessed: P = 1.0, no penalty, rather than a guess from the others.
    """
    if any(s is None or (isinstance(s, float) and math.isnan(s)) for s in (s_v, s_t, s_i)):
        return 1.0
    mean = (s_v + beta * s_t + gamma * s_i) / (1.0 + beta + gamma)
    return min(2.0, math.exp(alpha * (1.0 - mean)))


def _floats(x: ArrayLike) -> np.ndarray:
    if isinstance(x, (pa.Array, pa.ChunkedArray)):
        return np.asarray(x.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(x, dtype=np.float64)  # None -> nan


def repetition_penalties(s_v: ArrayLike, s_t: ArrayLike, s_i: ArrayLike,
                         alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """``repetition_penalty`` over arrays (numpy, pyarrow or sequences with None): float64, 1.0 where a score is missing."""
    v, t, i = _floats(s_v), _floats(s_t), _floats(s_i)
    mean = (v + beta * t + gamma * i) / (1.0 + beta + gamma)
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.minimum(2.0, np.exp(alpha * (1.0 - mean)))
    return np.where(np.isnan(mean), 1.0, p)


# --------------------------------------------------------------------------- schema


def output_schema(schema: pa.Schema) -> pa.Schema:
    """The schema ``select_chains`` returns for an input of ``schema`` (added columns replace same-named ones)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise StageContractError(
            f"stage {STAGE} needs column(s) {', '.join(missing)}; input has {', '.join(schema.names)}")
    added = list(ADDED_FIELDS) + ([PENALTY_FIELD] if all(c in schema.names for c in SCORE_COLUMNS) else [])
    names = {f.name for f in added}
    return pa.schema([f for f in schema if f.name not in names] + added)


def summary_schema(prompt_id_type: pa.DataType) -> pa.Schema:
    return pa.schema([pa.field("prompt_id", prompt_id_type)] + list(SUMMARY_FIELDS))


# --------------------------------------------------------------------------- selection


def _given_difficulty(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None
    return min(1.0, max(0.0, sum(vals) / len(vals)))


def _sort_key(toks: int | None, index: int | None, text: str | None) -> tuple:
    return (toks is None, toks or 0, index is None, index or 0, text or "")


def select_chains(data: pa.Table | pa.RecordBatch, cfg: SelectConfig) -> pa.Table:
    """Every sample with its quality signals, prompt numbers and verdict; rows in input order.

    ``data`` must hold every sample of each prompt it contains (a prompt split across calls would
    get two pass rates).
    """
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    schema = output_schema(table.schema)
    q = cfg.quality
    n = table.num_rows
    langs = table[LANG].cast(pa.string()).to_pylist() if LANG in table.schema.names else None
    ann = annotate_chains(table["completion"], table["finish_reason"], langs, q)

    pids = table["prompt_id"].to_pylist()
    sidx = table["sample_index"].to_pylist()
    toks = table["completion_tokens"].to_pylist()
    correct = table["correct"].to_pylist()
    texts = table["completion"].to_pylist()
    given = table[DIFFICULTY_SCORE].cast(pa.float64()).to_pylist() if DIFFICULTY_SCORE in table.schema.names else None

    groups: dict[Any, list[int]] = {}
    for r, pid in enumerate(pids):
        groups.setdefault(pid, []).append(r)

    col: dict[str, list] = {name: [None] * n for name in (
        "n_samples", "n_correct", "n_unverified", "pass_rate", "difficulty", "bucket", "token_budget",
        "selected", REJECT_STAGE, REJECT_REASON, "reject_detail")}
    for rows in groups.values():
        n_samples = len(rows)
        n_correct = sum(1 for r in rows if correct[r] is not None and bool(correct[r]))
        n_unverified = sum(1 for r in rows if correct[r] is None)
        pass_rate = n_correct / n_samples
        difficulty = _given_difficulty([given[r] for r in rows]) if given is not None else None
        if difficulty is None:
            difficulty = 1.0 - pass_rate
        bucket = cfg.bucket_for(difficulty)
        budget = bucket.max_tokens
        verdicts: dict[int, tuple[str, str]] = {}
        candidates = []
        for r in rows:
            if correct[r] is None:
                verdicts[r] = (UNVERIFIED, "correct is null (verification failed); counted as not passing")
            elif not correct[r]:
                verdicts[r] = (INCORRECT, "the verifier rejected the final answer")
            elif ann.reasons[r]:
                first = ann.reasons[r][0]
                more = [reason_code(x) for x in ann.reasons[r][1:]]
                detail = first.split(": ", 1)[-1] + (f" (also: {', '.join(more)})" if more else "")
                verdicts[r] = (reason_code(first), detail)
            elif budget is not None and (toks[r] is None or toks[r] > budget):
                n_tok = "unknown" if toks[r] is None else toks[r]
                verdicts[r] = (OVER_BUDGET, f"{n_tok} completion tokens > {budget}, the budget of bucket {bucket.name}")
            else:
                candidates.append(r)
        candidates.sort(key=lambda r: _sort_key(toks[r], sidx[r], texts[r]))
        for rank, r in enumerate(candidates[bucket.keep:], start=bucket.keep + 1):
            verdicts[r] = (NOT_SHORTEST, f"rank {rank} by length; bucket {bucket.name} keeps {bucket.keep}")
        for r in rows:
            col["n_samples"][r] = n_samples
            col["n_correct"][r] = n_correct
            col["n_unverified"][r] = n_unverified
            col["pass_rate"][r] = pass_rate
            col["difficulty"][r] = difficulty
            col["bucket"][r] = bucket.name
            col["token_budget"][r] = budget
            verdict = verdicts.get(r)
            col["selected"][r] = verdict is None
            if verdict is not None:
                col[REJECT_STAGE][r] = STAGE
                col[REJECT_REASON][r], col["reject_detail"][r] = verdict

    columns: dict[str, pa.Array] = dict(ann.columns)
    for f in schema:
        if f.name in col:
            columns[f.name] = pa.array(col[f.name], f.type)
    if PENALTY_FIELD.name in schema.names:
        columns[PENALTY_FIELD.name] = pa.array(
            repetition_penalties(*(table[c] for c in SCORE_COLUMNS), alpha=cfg.alpha, beta=cfg.beta, gamma=cfg.gamma),
            pa.float64())
    kept = table.drop_columns([c for c in table.schema.names if c in columns])
    out = pa.Table.from_arrays(list(kept.columns) + [columns[f.name] for f in schema if f.name in columns],
                               names=kept.schema.names + [f.name for f in schema if f.name in columns])
    return out.select(schema.names).cast(schema)


# --------------------------------------------------------------------------- per-prompt summary, funnel


def _prompt_reason(n_selected: int, n_correct: int, n_over_budget: int) -> str | None:
    if n_selected:
        return None
    if n_correct == 0:
        return NO_CORRECT_SAMPLE
    return ALL_OVER_BUDGET if n_over_budget else NO_CLEAN_SAMPLE


def prompt_summary(selected: pa.Table) -> pa.Table:
    """One row per prompt (sorted by prompt_id) from ``select_chains`` output; a reason where none was selected."""
    schema = summary_schema(selected.schema.field("prompt_id").type)
    consts = [f.name for f in PROMPT_FIELDS]
    cols = {c: selected[c].to_pylist() for c in ["prompt_id", "selected", "completion_tokens", REJECT_REASON] + consts}
    acc: dict[Any, dict[str, Any]] = {}
    for i, pid in enumerate(cols["prompt_id"]):
        a = acc.get(pid)
        if a is None:
            a = acc[pid] = {c: cols[c][i] for c in consts} | {"n_selected": 0, "selected_tokens": 0, "over": 0}
        if cols["selected"][i]:
            a["n_selected"] += 1
            a["selected_tokens"] += cols["completion_tokens"][i] or 0
        a["over"] += cols[REJECT_REASON][i] == OVER_BUDGET
    rows = []
    for pid in sorted(acc, key=lambda p: (p is None, p)):
        a = acc[pid]
        reason = _prompt_reason(a["n_selected"], a["n_correct"], a["over"])
        rows.append({"prompt_id": pid, **a, REJECT_STAGE: STAGE if reason else None, REJECT_REASON: reason})
    return pa.Table.from_pylist(rows, schema=schema)


def selection_funnel(selected: pa.Table, summary: pa.Table | None = None) -> list[FunnelStep]:
    """Sample and prompt counts of a selection; ``AccountingError`` if they do not reconcile."""
    summary = prompt_summary(selected) if summary is None else summary
    n_sel = int(pc.sum(pc.cast(selected["selected"], pa.int64())).as_py() or 0)
    n_rej = int(pc.sum(pc.cast(pc.is_valid(selected[REJECT_REASON]), pa.int64())).as_py() or 0)
    p_with = int(pc.sum(pc.cast(pc.greater(summary["n_selected"], 0), pa.int64())).as_py() or 0)
    p_without = int(pc.sum(pc.cast(pc.is_valid(summary[REJECT_REASON]), pa.int64())).as_py() or 0)
    return [FunnelStep(stage=STAGE, rows_in=selected.num_rows, rows_out=n_sel, rejected=n_rej),
            FunnelStep(stage=f"{STAGE}_prompts", rows_in=pc.count_distinct(selected["prompt_id"], mode="all").as_py(),
                       rows_out=p_with, rejected=p_without)]


def reason_counts(table: pa.Table) -> dict[str, int]:
    """``reject_reason`` -> rows, for samples or summary rows alike (selected rows not counted)."""
    vc = pc.value_counts(pc.drop_null(table[REJECT_REASON]).combine_chunks()) if table.num_rows else []
    return {d["values"]: d["counts"] for d in (vc.to_pylist() if len(vc) else [])}


# --------------------------------------------------------------------------- Spark


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return table.select(schema.names).cast(schema)


# applyInArrow infers the UDF kind from the function's type hints (pyspark 4.3 fails on a
# functools.partial, which has none), so the per-group functions are annotated closures.

def select_on_spark(df: DataFrame, cfg: SelectConfig) -> DataFrame:
    """``select_chains`` per prompt on Spark (``groupBy("prompt_id").applyInArrow``): one prompt's
    samples at a time in a Python worker, nothing collected to the driver."""
    from skycurate.spark import arrow_schema, spark_schema

    schema = output_schema(arrow_schema(df))

    def select_group(table: pa.Table) -> pa.Table:
        return _conform(select_chains(table, cfg), schema)

    return df.groupBy("prompt_id").applyInArrow(select_group, spark_schema(schema))


def prompt_summary_on_spark(selected: DataFrame) -> DataFrame:
    """``prompt_summary`` per prompt on Spark. ``selected`` is recomputed unless it was persisted or
    written and read back first."""
    from skycurate.spark import arrow_schema, spark_schema

    schema = summary_schema(arrow_schema(selected).field("prompt_id").type)

    def summarize_group(table: pa.Table) -> pa.Table:
        return _conform(prompt_summary(table), schema)

    return selected.groupBy("prompt_id").applyInArrow(summarize_group, spark_schema(schema))

