"""RL prompt pool from the CoT generations: prompts of intermediate pass rate, in verl's RL layout.

Skywork R1V2's Selective Sample Buffer (SSB) keeps prompts whose sampled answers are neither all
right nor all wrong: under GRPO a group of all-equal rewards has zero advantage and teaches nothing.
The teacher's N verified samples per prompt give that pass rate before any RL step is spent.

``rl_pool`` is pure (Arrow in, Arrow out). Pass rate = correct samples / samples without an engine
error (a null ``correct`` counts as not passing, as in selection); a prompt whose samples all errored
is rejected as ``no_samples``. One pool row per prompt in the band, sorted by prompt_id, in verl's
parquet layout (``prompt``, ``data_source``, ``ability``, ``reward_model``, ``extra_info``) plus flat
columns (``solution`` etc.) that TRL's GRPOTrainer hands to reward functions as keyword arguments.
Every input prompt ends up in the pool or in ``rejected`` (``DROPPED_SCHEMA``), never both.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from skycurate.errors import StageContractError
from skycurate.schemas.cot import DROPPED_SCHEMA
from skycurate.schemas.cot_rl import (
    ALL_CORRECT,
    ALL_WRONG,
    NO_SAMPLES,
    OUTSIDE_BAND,
    RL_POOL_SCHEMA,
    RL_STAGE,
    RLPoolConfig,
)
from skycurate.stages.accounting import AccountingError

REQUIRED = ("prompt_id", "sample_index", "question", "reference_answer", "answer_type", "correct")
PROMPT_COLUMNS = ("question", "reference_answer", "answer_type", "domain", "lang", "source")


def columns(table: pa.Table, names: tuple[str, ...], required: tuple[str, ...], stage: str) -> dict[str, list]:
    """Python lists of ``names``; optional columns that are absent read as all-null so callers need no checks."""
    missing = [c for c in required if c not in table.schema.names]
    if missing:
        raise StageContractError(f"stage {stage} needs column(s) {', '.join(missing)}; "
                                 f"input has {', '.join(table.schema.names)}")
    n = table.num_rows
    return {c: table[c].to_pylist() if c in table.schema.names else [None] * n for c in names}


def group_rows(pids: list, sample_index: list) -> dict[Any, list[int]]:
    """Row numbers per prompt_id (by prompt_id, then sample_index) so output never depends on input order."""
    groups: dict[Any, list[int]] = {}
    for r, pid in enumerate(pids):
        groups.setdefault(pid, []).append(r)
    key = lambda r: (sample_index[r] is None, sample_index[r] or 0, r)
    return {pid: sorted(groups[pid], key=key) for pid in sorted(groups, key=lambda p: (p is None, str(p)))}


def first_value(values: list, rows: list[int]) -> Any:
    """The first non-null per-sample copy of a per-prompt field (a missing copy on one row must not blank it)."""
    return next((values[r] for r in rows if values[r] is not None), None)


def _pass_counts(col: dict[str, list], rows: list[int]) -> tuple[int, int]:
    """(n_correct, n) over samples without an engine error: an errored sample says nothing about difficulty."""
    ok = [r for r in rows if col["error"][r] is None]
    return sum(1 for r in ok if col["correct"][r] is True), len(ok)


def _drop_reason(n_correct: int, n: int, cfg: RLPoolConfig) -> tuple[str, str] | None:
    """(reason, detail) for a prompt outside the band, else None; all-right/all-wrong get their own reason."""
    if n == 0:
        return NO_SAMPLES, "every sample has an engine error"
    p = n_correct / n
    if cfg.in_band(p):
        return None
    reason = ALL_CORRECT if n_correct == n else ALL_WRONG if n_correct == 0 else OUTSIDE_BAND
    return reason, f"pass rate {p:.2f} ({n_correct}/{n}) outside {cfg.band_text()}"


def _messages(question: str, cfg: RLPoolConfig) -> list[dict[str, str]]:
    """Chat messages of the prompt; ``replace`` not ``format`` so LaTeX braces in a template are safe."""
    user = {"role": "user", "content": cfg.user_template.replace("{question}", question or "")}
    return ([{"role": "system", "content": cfg.system}] if cfg.system is not None else []) + [user]


def _pool_row(index: int, pid: str, info: dict, n_correct: int, n: int, cfg: RLPoolConfig) -> dict:
    """One pool row: verl's nested fields and the flat copies TRL reward functions read."""
    p = n_correct / n
    answer = info["reference_answer"]
    extra = {"index": index, "prompt_id": pid, "answer_type": info["answer_type"], "pass_rate": p,
             "n_samples": n, "n_correct": n_correct, "difficulty": 1.0 - p}
    return {
        "prompt": _messages(info["question"], cfg),
        "data_source": cfg.data_source or info["source"] or "skycurate",
        "ability": cfg.ability,
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": extra,
        "prompt_id": pid, "question": info["question"], "reference_answer": answer,
        "answer_type": info["answer_type"], "pass_rate": p, "difficulty": 1.0 - p,
        "n_samples": n, "n_correct": n_correct, "solution": answer,
        "domain": info["domain"], "lang": info["lang"],
    }


def dropped_row(pid: Any, stage: str, reason: str, detail: str, question: str | None) -> dict:
    """A ``DROPPED_SCHEMA`` row, so RL drops land in the same cot/rejected table as the other stages."""
    return {"id": None if pid is None else str(pid), "stage": stage, "reason": reason, "detail": detail,
            "question": question, "record": None}


def rl_pool(generations: pa.Table, cfg: RLPoolConfig) -> tuple[pa.Table, pa.Table]:
    """(pool, rejected): prompts whose teacher pass rate lies in the band, and every other prompt with a reason."""
    names = ("prompt_id", "sample_index", "correct", "error") + PROMPT_COLUMNS
    col = columns(generations, names, REQUIRED, RL_STAGE)
    pool, dropped = [], []
    for pid, rows in group_rows(col["prompt_id"], col["sample_index"]).items():
        info = {c: first_value(col[c], rows) for c in PROMPT_COLUMNS}
        n_correct, n = _pass_counts(col, rows)
        drop = _drop_reason(n_correct, n, cfg)
        if drop is None:
            pool.append(_pool_row(len(pool), None if pid is None else str(pid), info, n_correct, n, cfg))
        else:
            dropped.append(dropped_row(pid, RL_STAGE, *drop, info["question"]))
    out = pa.Table.from_pylist(pool, schema=RL_POOL_SCHEMA), pa.Table.from_pylist(dropped, schema=DROPPED_SCHEMA)
    rl_pool_counts(generations, *out)
    return out


def rl_pool_counts(generations: pa.Table, pool: pa.Table, rejected: pa.Table) -> dict[str, int]:
    """Prompts in, pooled, rejected and per reason; raises when in != pool + rejected (a prompt lost or doubled)."""
    prompts_in = len(set(generations["prompt_id"].to_pylist()))
    counts = {"prompts_in": prompts_in, "pool": pool.num_rows, "rejected": rejected.num_rows}
    for reason in rejected["reason"].to_pylist():
        counts[reason] = counts.get(reason, 0) + 1
    if prompts_in != pool.num_rows + rejected.num_rows:
        raise AccountingError(f"rl_pool: {prompts_in} prompts in != {pool.num_rows} pooled + "
                              f"{rejected.num_rows} rejected")
    return counts
