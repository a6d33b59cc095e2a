"""EMMA's "solvable from text alone" filter: an image prompt the teacher answers correctly without
its images, in every one of N samples, teaches nothing about looking at images and is rejected.

The text-only questions go through the same journalled shards as generation (their ids carry a
prefix, so their shards never mix with the real ones) and the answers through the same verifier;
a prompt with any failed, unverified or wrong text-only sample keeps its images and goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from skycurate.schemas import cot as S
from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.schemas.generation import SamplingParams
from skycurate.stages.cot.generate import PromptItem, ShardReport, run_shards

PREFIX = "text-only\x1f"


def text_only_items(items: Sequence[PromptItem], texts: dict[str, str]) -> list[PromptItem]:
    """The image prompts again, each with ``texts[id]`` (the prompt rendered without image parts)."""
    return [replace(i, id=PREFIX + i.id, text=texts[i.id], images=()) for i in items if i.images]


def solvable_ids(samples: pa.Table, prompts: pa.Table, n: int, verify: VerifyConfig) -> set[str]:
    """Prompt ids whose ``n`` text-only samples are all verified correct."""
    from skycurate.stages.cot.verify import verify_batch

    if samples.num_rows == 0:
        return set()
    ids = [p[len(PREFIX):] for p in samples["prompt_id"].to_pylist()]
    ref = dict(zip(prompts["id"].to_pylist(), zip(prompts["reference_answer"].to_pylist(),
                                                  prompts["answer_type"].to_pylist(), strict=True), strict=True))
    batch = pa.RecordBatch.from_pydict({
        "completion": samples["completion"].combine_chunks(), "reference_answer": pa.array([ref[i][0] for i in ids], pa.string()),
        "answer_type": pa.array([ref[i][1] for i in ids], pa.string())})
    correct = verify_batch(batch, verify).column("correct").to_pylist()
    right: dict[str, int] = {}
    for pid, ok, err in zip(ids, correct, samples["error"].to_pylist(), strict=True):
        right[pid] = right.get(pid, 0) + (1 if ok is True and err is None else 0)
    return {pid for pid, k in right.items() if k >= n}


def filter_text_only(items: list[PromptItem], texts: dict[str, str], prompts: pa.Table,
                     generate: Callable[..., list], params: SamplingParams, work: Path, shard_size: int,
                     verify: VerifyConfig, *, add_special_tokens: bool, force: bool = False,
                     ) -> tuple[list[PromptItem], list[dict[str, Any]], ShardReport]:
    """(items left to generate, ``DROPPED_SCHEMA`` rejections, the text-only shards' report)."""
    probe = text_only_items(items, texts)
    report = run_shards(probe, generate, params, work, shard_size, add_special_tokens=add_special_tokens,
                        force=force)
    samples = (pa.concat_tables([pq.read_table(f, columns=["prompt_id", "completion", "error"])
                                 for f in report.files]) if report.files else None)
    solvable = solvable_ids(samples, prompts, params.n, verify) if samples is not None else set()
    questions = dict(zip(prompts["id"].to_pylist(), prompts["question"].to_pylist(), strict=True))
    rejected = [{"id": pid, "stage": S.TEXT_ONLY, "reason": S.SOLVABLE_WITHOUT_IMAGE,
                 "detail": f"all {params.n} samples correct without the image(s)",
                 "question": (questions[pid] or "")[:2000], "record": None} for pid in sorted(solvable)]
    return [i for i in items if i.id not in solvable], rejected, report
