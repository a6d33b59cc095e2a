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
