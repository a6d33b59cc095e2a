"""Scoring evaluated models: the distillation verifier's verdict on every answer, the judge's on what
it leaves undecided, then accuracy per (benchmark, model, subject) and per (benchmark, model).

``verify_batch`` decides each sample as it does for distillation (boxed answers, multi-select
letter sets, numeric tolerance, Math-Verify); a sample the engine did not answer (an error, an item
longer than the context) is not correct (``verify_error = no_completion``). Samples whose
``correct`` is still null are "undecided": ``judge_undecided`` is where the judge decides them.
Accuracy is correct / n over every sample, so undecided and failed ones count against a model.
Pure pyarrow on the driver: the tables are items x models, small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from skycurate.schemas.cot_judge import JudgeConfig
from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.schemas.evaluate import ACCURACY_SCHEMA, ALL, ITEM_SCHEMA, NO_COMPLETION
from skycurate.stages.accounting import FunnelStep

VERIFY_BATCH_ROWS = 1024
_PROMPT_COLUMNS = ["prompt_id", "benchmark", "item_id", "subject", "question", "reference_answer", "answer_type"]


def scored_items(prompts: pa.Table, samples: pa.Table, model: str, verify: VerifyConfig) -> pa.Table:
    """One model's samples joined to their items, with the verdict columns -> ``ITEM_SCHEMA``."""
    from skycurate.stages.cot.verify import verify_batch

    joined = samples.join(prompts.select(_PROMPT_COLUMNS), "prompt_id", join_type="inner")
    failed = pc.is_valid(joined["error"])
    answered, unanswered = joined.filter(pc.invert(failed)), joined.filter(failed)
    verified = [pa.Table.from_batches([verify_batch(b, verify)])
                for b in answered.to_batches(max_chunksize=VERIFY_BATCH_ROWS) if b.num_rows]
    n = unanswered.num_rows
    unanswered = (unanswered.append_column("extracted_answer", pa.nulls(n, pa.string()))
                  .append_column("extract_method", pa.array(["none"] * n, pa.string()))
                  .append_column("correct", pa.array([False] * n, pa.bool_()))
                  .append_column("verify_method", pa.nulls(n, pa.string()))
                  .append_column("verify_error", pa.array([NO_COMPLETION] * n, pa.string())))
    rows = pa.concat_tables([t.select(unanswered.column_names) for t in verified] + [unanswered])
    rows = (rows.append_column("model", pa.array([model] * rows.num_rows, pa.string()))
            .append_column("judge_output", pa.nulls(rows.num_rows, pa.string())))
    return rows.select(ITEM_SCHEMA.names).cast(ITEM_SCHEMA).sort_by(
        [("benchmark", "ascending"), ("item_id", "ascending"), ("sample_index", "ascending")])


def judge_undecided(results: pa.Table, judge: JudgeConfig, ask: Any) -> tuple[pa.Table, pa.Table]:
    """(items with the judge's verdicts, judge quarantine): the samples the rules left undecided (an
    answer was extracted, ``correct`` is null) go to ``stages.cot.judge.judge_samples``; its verdicts
    replace theirs (``verify_method = judge``, the reply in ``judge_output``), a reply that does not
    parse leaves the sample undecided and is quarantined. Each model's answers are keyed apart."""
    from skycurate.stages.cot.judge import judge_samples

    keys = ["\x1f".join(k) for k in zip(*(results[c].to_pylist() for c in ("model", "benchmark", "item_id")),
                                         strict=True)]
    asked = results.append_column("prompt_id", pa.array(keys, pa.string()))
    cfg = judge.model_copy(update={"reasoning": False})   # benchmark items carry no explanation
    overrides, quarantine = judge_samples(asked, cfg, ask)
    got = {(r["prompt_id"], r["sample_index"]): r for r in overrides.to_pylist()}
    cols = {c: results[c].to_pylist() for c in ("correct", "verify_method", "verify_error", "judge_output")}
    for n, k in enumerate(zip(keys, results["sample_index"].to_pylist(), strict=True)):
        if k in got:
            for c in cols:
                cols[c][n] = got[k][c]
    for name, values in cols.items():
        idx = results.schema.get_field_index(name)
        results = results.set_column(idx, results.schema.field(idx), pa.array(values, results.schema.field(idx).type))
    parts = [p.split("\x1f", 2) for p in quarantine["prompt_id"].to_pylist()]
    quarantine = pa.table({"model": pa.array([p[0] for p in parts], pa.string()),
                           "benchmark": pa.array([p[1] for p in parts], pa.string()),
                           "item_id": pa.array([p[2] for p in parts], pa.string()),
                           **{c: quarantine[c] for c in quarantine.column_names if c != "prompt_id"}})
    return results, quarantine


def accuracy_table(items: pa.Table, benchmarks: Sequence[str], models: Sequence[str]) -> pa.Table:
    """``ACCURACY_SCHEMA``: per benchmark and model the ``all`` row, then one row per subject (sorted).
    A benchmark without items for a model still gets its ``all`` row (n 0, accuracy null)."""
    counts: dict[tuple[str, str, str], dict[str, Any]] = {}
    cols = [items[c].to_pylist() for c in ("benchmark", "model", "subject", "item_id", "correct", "error")]
    for bench, model, subject, item, correct, error in zip(*cols, strict=True):
        for key in {(bench, model, ALL), (bench, model, subject)}:
            c = counts.setdefault(key, {"items": set(), "n": 0, "correct": 0, "undecided": 0, "errors": 0})
            c["items"].add(item)
            c["n"] += 1
            c["correct"] += correct is True
            c["undecided"] += correct is None and error is None
            c["errors"] += error is not None
    rows = []
    for bench in benchmarks:
        for model in models:
            subjects = sorted({s for b, m, s in counts if (b, m) == (bench, model) and s != ALL})
            for subject in [ALL, *subjects]:
                c = counts.get((bench, model, subject), {"items": set(), "n": 0, "correct": 0, "undecided": 0,
                                                         "errors": 0})
                rows.append({"benchmark": bench, "model": model, "subject": subject, "items": len(c["items"]),
                             "n": c["n"], "correct": c["correct"],
                             "accuracy": round(c["correct"] / c["n"], 6) if c["n"] else None,
                             "undecided": c["undecided"], "errors": c["errors"]})
    return pa.Table.from_pylist(rows, ACCURACY_SCHEMA)


def evaluation_funnel(by_benchmark: dict[str, dict[str, Any]], items: pa.Table,
                      models: Sequence[str]) -> list[dict[str, Any]]:
    """One funnel step per (benchmark, model): rows in = items evaluated + quarantined, checked here
    (``AccountingError``) before anything is published."""
    evaluated: dict[tuple[str, str], set[str]] = {}
    for bench, model, item in zip(*(items[c].to_pylist() for c in ("benchmark", "model", "item_id")), strict=True):
        evaluated.setdefault((bench, model), set()).add(item)
    steps = []
    for bench, counts in by_benchmark.items():
        for model in models:
            steps.append(FunnelStep(stage=f"{bench} x {model}", rows_in=counts["rows"],
                                    rows_out=len(evaluated.get((bench, model), ())),
                                    quarantined=counts["quarantined"]).model_dump())
    return steps
