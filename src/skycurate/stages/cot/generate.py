"""Sharded, resumable teacher generation.

Prompts (sorted by id) are cut into shards of ``shard_size``. A shard is named by the hash of
its content (prompt ids, texts, penalties) and written atomically as
``<work>/shard-<hash>.parquet`` (a temporary name, then ``os.replace``). The work folder's name
is a hash of what decides the samples besides the prompts (teacher, template, sampling, shard
size), so a changed setting never reuses stale shards, while the same prompts in the same
shards are never generated twice:

- a killed run loses at most the shards in flight; the rerun generates only the missing ones;
- a new version of the prompts regenerates only the shards whose content changed (prompts
  added at the end of the id order: only the last shard and the new ones).

Seeds: a shard samples with ``seed +`` a number derived from its hash (backends that seed per
prompt add the prompt's index in the shard), so a shard gives the same samples whenever and
wherever it is generated (for backends that are deterministic given a seed). A shard in which
every sample failed (engine down), or any sample failed for a reason that says nothing about its
prompt (``transient_error``: a timeout, a lost connection, an overloaded endpoint), is not
journalled: the next run retries it. ``force`` regenerates journalled shards too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from skycurate.errors import SkycurateError
from skycurate.localfs import atomic_path, remove_dead_temporaries
from skycurate.schemas.cot import GENERATION_SCHEMA
from skycurate.schemas.generation import SamplingParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptItem:
    id: str
    text: str                      # what the engine gets (templated prompt, or the user turn for chat endpoints)
    penalty: float = 1.0           # R1V repetition penalty P for this prompt
    images: tuple[bytes, ...] = ()  # encoded images (PNG, JPEG, ...) the engine gets with the text, in order


@dataclass
class ShardReport:
    shards: int = 0
    reused: int = 0
    generated: int = 0
    unjournalled: int = 0          # every sample failed, or some transiently: not journalled, retried next run
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    work: str = ""                 # the journal folder

    def to_dict(self) -> dict[str, Any]:
        return {"shards": self.shards, "reused": self.reused, "generated": self.generated,
                "unjournalled": self.unjournalled, "seconds": round(self.seconds, 2)}


#: An engine error that says nothing about the prompt: the HTTP statuses the OpenAI client retries
#: (408, 409, 429, 5xx) and httpx's transport errors (timeouts, refused or dropped connections).
_TRANSIENT = re.compile(r"^(?:HTTP (?:408|409|429|5\d\d)\b|(?:Connect|Read|Write|Pool)Timeout\b|TimeoutException\b"
                        r"|(?:Connect|Read|Write|Close|Network|RemoteProtocol|Proxy|Transport)Error\b)")


def transient_error(error: str | None) -> bool:
    """Whether a sample's ``error`` is the engine's passing trouble, to be retried by the next run."""
    return bool(error) and _TRANSIENT.match(error) is not None


def plan_shards(ids: Sequence[str], shard_size: int) -> list[list[str]]:
    ordered = sorted(ids)
    return [ordered[i:i + shard_size] for i in range(0, len(ordered), shard_size)]


def shard_digest(items: Sequence[PromptItem]) -> str:
    """The content hash that names a shard and seeds it."""
    payload = json.dumps([(i.id, i.text, i.penalty, *[hashlib.sha256(b).hexdigest() for b in i.images])
                          for i in items], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def shard_path(work: Path, digest: str) -> Path:
    return work / f"shard-{digest}.parquet"


def _rows(shard: str, items: Sequence[PromptItem], outputs: Sequence[Sequence[Any]], seed: int) -> pa.Table:
    cols: dict[str, list] = {f.name: [] for f in GENERATION_SCHEMA}
    for item, gens in zip(items, outputs, strict=True):
        for k, g in enumerate(gens):
            cols["prompt_id"].append(item.id)
            cols["sample_index"].append(k)
            cols["completion"].append(g.text if not g.error else None)
            cols["finish_reason"].append(g.finish_reason)
            cols["prompt_tokens"].append(g.prompt_tokens)
            cols["completion_tokens"].append(g.completion_tokens)
            cols["error"].append(g.error)
            cols["seed"].append(seed)
            cols["repetition_penalty"].append(item.penalty)
            cols["shard"].append(shard)
    return pa.Table.from_pydict(cols, schema=GENERATION_SCHEMA)


def run_shards(items: Sequence[PromptItem], generate: Callable[..., list], params: SamplingParams, work: Path,
               shard_size: int, *, add_special_tokens: bool = True,
               progress: Callable[[int, int, int], None] | None = None, force: bool = False) -> ShardReport:
    """Generate every missing shard (``force``: every shard); ``generate(texts, params, penalties=...,
    add_special_tokens=...)`` is a ``Generator.generate``. Returns what was reused and generated;
    the shard files hold the rows."""
    work.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(work)   # shards a killed run was writing
    by_id = {i.id: i for i in items}
    if len(by_id) != len(items):
        raise SkycurateError("generation: prompt ids are not unique")
    plan = plan_shards(list(by_id), shard_size)
    report = ShardReport(shards=len(plan), work=str(work))
    t0 = time.perf_counter()
    for k, ids in enumerate(plan):
        batch = [by_id[i] for i in ids]
        digest = shard_digest(batch)
        path = shard_path(work, digest)
        if path.exists() and not force:
            report.reused += 1
            report.files.append(str(path))
            if progress:
                progress(k + 1, len(plan), len(ids))
            continue
        shard_params = params.model_copy(update={"seed": params.seed + int(digest[:8], 16)})
        penalties = [b.penalty for b in batch]
        extra = {"images": [list(b.images) for b in batch]} if any(b.images for b in batch) else {}
        outputs = generate([b.text for b in batch], shard_params,
                           penalties=None if all(p == 1.0 for p in penalties) else penalties,
                           add_special_tokens=add_special_tokens, **extra)
        table = _rows(digest, batch, outputs, shard_params.seed)
        if table.num_rows and (table["error"].null_count == 0
                               or any(transient_error(e) for e in table["error"].to_pylist())):
            # every sample failed, or some for a passing reason: the rows serve this run (failed ones
            # are quarantined), the shard is retried next run
            report.unjournalled += 1
            tmp = work / f"failed-{digest}.parquet"
            pq.write_table(table, tmp)
            report.files.append(str(tmp))
        else:
            with atomic_path(path) as tmp:
                pq.write_table(table, tmp, compression="zstd")
            report.generated += 1
            report.files.append(str(path))
        if progress:
            progress(k + 1, len(plan), len(ids))
    report.seconds = time.perf_counter() - t0
    log.info("generation: %d shards, %d reused, %d generated, %d failed (retried next run)", report.shards,
             report.reused, report.generated, report.unjournalled)
    return report
