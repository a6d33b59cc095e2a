"""Reference-set builder: fresh items in a benchmark's style, none overlapping the benchmark.

The Skywork-13B audit compares a model's loss on the test split with its loss on a reference
set "in the same style" that no model can have seen. This stage builds the prompts (a few
benchmark items as style examples) and screens what the engine wrote: empty or too short,
a copy of an earlier sample, or any shared ``overlap_n``-gram with any benchmark item (all
splits) and the sample is rejected with its reason. Engine calls live in the flow.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from skycurate.schemas.leakage_flows import ReferenceConfig
from skycurate.stages.leakage.ngrams import item_ngram_hashes, tokenize

REFERENCE_SCHEMA = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("prompt_index", pa.int64(), nullable=False),
    pa.field("example_ids", pa.list_(pa.string())),   # the benchmark items shown as style examples
    pa.field("engine", pa.string()),
    pa.field("finish_reason", pa.string()),
])

REJECTED_SCHEMA = pa.schema([
    pa.field("prompt_index", pa.int64(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("text", pa.string()),
])


@dataclass
class Prompt:
    index: int
    text: str
    example_ids: list[str]


def build_prompts(items: Sequence[tuple[str, str]], cfg: ReferenceConfig, count: int) -> list[Prompt]:
    """``count`` prompts, each showing ``examples_per_prompt`` items drawn with a seeded RNG."""
    if not items:
        return []
    rng = random.Random(cfg.seed)
    k = min(cfg.examples_per_prompt, len(items))
    prompts = []
    for i in range(count):
        picked = rng.sample(range(len(items)), k)
        examples = cfg.example_separator.join(items[j][1].strip() for j in picked)
        prompts.append(Prompt(i, cfg.prompt_template.format(examples=examples), [items[j][0] for j in picked]))
    return prompts


class OverlapScreen:
    """Benchmark n-grams (every split) and the samples already accepted, for one screening run."""

    def __init__(self, benchmark_texts: Sequence[str], n: int) -> None:
        self.n = n
        hashes, _ = item_ngram_hashes(list(benchmark_texts), n, n)
        self.benchmark = np.unique(np.concatenate(hashes)) if hashes else np.zeros(0, np.uint64)
        self.benchmark_norm = {self._norm_key(t) for t in benchmark_texts}
        self.seen: set[str] = set()

    @staticmethod
    def _norm_key(text: str) -> str:
        toks = tokenize([text])
        return hashlib.sha1(toks.hashes.tobytes()).hexdigest()

    def verdict(self, text: str, min_chars: int) -> str | None:
        """None when the sample is acceptable, else the reason it is rejected."""
        if not text.strip():
            return "empty"
        if len(text.strip()) < min_chars:
            return f"short:<{min_chars}_chars"
        key = self._norm_key(text)
        if key in self.benchmark_norm:
            return "copy_of_benchmark_item"
        if key in self.seen:
            return "duplicate_sample"
        grams, _ = item_ngram_hashes([text], self.n, self.n)
        if grams and len(grams[0]) and np.isin(grams[0], self.benchmark).any():
            return f"overlap:{self.n}-gram_shared_with_benchmark"
        self.seen.add(key)
        return None


def sample_id(benchmark: str, prompt_index: int, k: int) -> str:
    return f"{benchmark}-ref-{prompt_index:05d}-{k}"


@dataclass
class ReferenceRun:
    """What one build produced: accepted items, rejected samples (with reasons), prompts sent."""

    kept: list[dict]
    rejected: list[dict]
    sent: int

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejected:
            key = r["reason"].split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def collect_reference(generator, benchmark: str, splits: dict[str, pa.Table], cfg: ReferenceConfig,
                      progress=None) -> ReferenceRun:
    """Ask ``generator`` (a ``connectors.llm`` Generator) for items in the style of the benchmark's
    example splits, in rounds, until ``cfg.samples`` passed the n-gram screen or the prompt budget
    (``max_requests``, default 4 x samples) is spent. Every sample is accounted for: accepted, or
    rejected with its reason (engine error, overlap, too short, surplus)."""
    from skycurate.errors import SkycurateError

    sources = [s for s in cfg.from_splits if s in splits]
    if not sources:
        raise SkycurateError(f"benchmark {benchmark}: none of the example splits {cfg.from_splits} exists")
    examples = [(i, t) for s in sources for i, t in zip(splits[s]["item_id"].to_pylist(),
                                                        splits[s]["text"].to_pylist(), strict=True) if t]
    screen = OverlapScreen([t for tbl in splits.values() for t in tbl["text"].to_pylist() if t], cfg.overlap_n)
    prompts = build_prompts(examples, cfg, cfg.max_requests or 4 * cfg.samples)
    params = cfg.sampling.model_copy(update={"stop": cfg.stop or cfg.sampling.stop})
    run = ReferenceRun([], [], 0)
    while len(run.kept) < cfg.samples and run.sent < len(prompts):
        wanted = int(1.5 * (cfg.samples - len(run.kept))) + 1
        wave = prompts[run.sent:run.sent + max(1, min(len(prompts) - run.sent, wanted))]
        run.sent += len(wave)
        seed = params.model_copy(update={"seed": cfg.seed + wave[0].index})
        outputs = generator.generate([p.text for p in wave], seed)
        for prompt, gens in zip(wave, outputs, strict=True):
            for k, g in enumerate(gens):
                if g.error:
                    run.rejected.append({"prompt_index": prompt.index, "reason": f"engine_error:{g.error[:200]}",
                                         "text": None})
                    continue
                text = g.text.strip()
                reason = screen.verdict(text, cfg.min_chars)
                if reason is None and len(run.kept) >= cfg.samples:
                    reason = "surplus"
                if reason:
                    run.rejected.append({"prompt_index": prompt.index, "reason": reason, "text": text})
                    continue
                run.kept.append({"item_id": sample_id(benchmark, prompt.index, k), "text": text,
                                 "prompt_index": prompt.index, "example_ids": prompt.example_ids,
                                 "engine": generator.name, "finish_reason": g.finish_reason})
        if progress:
            progress(len(run.kept), run.sent)
    if not run.kept:
        raise SkycurateError(f"reference for {benchmark}: the engine wrote nothing usable in {run.sent} prompts "
                             f"({len(run.rejected)} rejected; first reasons: "
                             f"{', '.join(sorted({r['reason'] for r in run.rejected})[:3])})")
    return run
