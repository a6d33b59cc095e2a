"""Training mixtures: plan each source's tokens, pick its documents, shuffle them all.

Planning (pure, ``plan_mixture``): a source with a budget gets it; weighted sources share the rest
of ``total_tokens`` (default: the largest mixture in which no weighted source repeats). A source
whose target exceeds ``max_epochs`` passes over what it holds is an error that says by how much.

Selection (Spark, ``select_source``): a target of ``t`` tokens over a source holding ``a`` takes
``floor(t / a)`` whole passes (epochs 0, 1, ...) and, for the rest, documents in a seeded hash order
while the running total stays within the remainder: every source lands within one document's tokens
of its plan, below it. ``shuffle_key`` (Spark's xxhash64 of seed, source, document and epoch) orders
the whole mixture: the same seed gives the same rows in the same order on any cluster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from skycurate.errors import SkycurateError
from skycurate.schemas.mix import MixSource

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

DOC_KEY = "_doc_key"
SHUFFLE_KEY = "_shuffle_key"


class MixError(SkycurateError):
    """A mixture that cannot be made as asked (a budget over the upsampling cap, an empty source)."""


@dataclass(frozen=True)
class SourcePlan:
    name: str
    available_tokens: int
    available_docs: int
    target_tokens: int
    max_epochs: float

    @property
    def full_epochs(self) -> int:
        return self.target_tokens // self.available_tokens if self.available_tokens else 0

    @property
    def remainder(self) -> int:
        return self.target_tokens - self.full_epochs * self.available_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "full_epochs": self.full_epochs, "remainder_tokens": self.remainder,
                "epochs_planned": round(self.target_tokens / self.available_tokens, 4) if self.available_tokens else 0}


def _fmt(n: float) -> str:
    return f"{int(round(n)):,}"


def plan_mixture(sources: Sequence[MixSource], available: dict[str, tuple[int, int]],
                 total_tokens: int | None) -> list[SourcePlan]:
    """Each source's target tokens; ``available``: name -> (tokens, documents) after its filters."""
    for s in sources:
        if available[s.name][0] <= 0:
            raise MixError(f"source {s.name} ({s.dataset}) holds no tokens after its filters")
    budgets = {s.name: s.tokens for s in sources if s.tokens is not None}
    weighted = [s for s in sources if s.weight is not None]
    wsum = sum(s.weight for s in weighted)
    if weighted:
        if total_tokens is None:   # the largest mixture with no weighted source repeated
            share = min(available[s.name][0] * wsum / s.weight for s in weighted)
        else:
            share = total_tokens - sum(budgets.values())
            if share <= 0:
                raise MixError(f"the token budgets ({_fmt(sum(budgets.values()))}) leave nothing of total_tokens "
                               f"({_fmt(total_tokens)}) for the weighted sources")
        targets = {s.name: int(round(share * s.weight / wsum)) for s in weighted}
    else:
        targets = {}
    targets.update(budgets)
    plans, short = [], []
    for s in sources:
        tokens, docs = available[s.name]
        cap = s.max_epochs * tokens
        if targets[s.name] > cap:
            need = targets[s.name] / tokens
            short.append(f"source {s.name} needs {_fmt(targets[s.name])} tokens but holds {_fmt(tokens)} "
                         f"(x{s.max_epochs:g} cap = {_fmt(cap)}): {_fmt(targets[s.name] - cap)} short; raise its "
                         f"max_epochs to {math.ceil(need * 100) / 100:g}, lower its share or the total")
        plans.append(SourcePlan(s.name, tokens, docs, targets[s.name], s.max_epochs))
    if short:
        raise MixError("; ".join(short))
    return plans


def doc_key(text_column: str, has_id: bool) -> Column:
    """A document's identity inside its source: its id when it has one, else the hash of its text
    (exact duplicates share a key: dedup them first, as the web flow does)."""
    from pyspark.sql import functions as F

    if has_id:
        return F.col("id").cast("string")
    text = F.to_json(F.col(text_column)) if text_column == "messages" else F.coalesce(F.col(text_column), F.lit(""))
    return F.sha2(text, 256)


def shuffle_key(seed: int, source: str) -> Column:
    from pyspark.sql import functions as F

    return F.xxhash64(F.lit(seed), F.lit(source), F.col(DOC_KEY), F.col("epoch"))


def select_source(df: DataFrame, plan: SourcePlan, seed: int) -> DataFrame:
    """The rows of one source for its plan: ``epoch`` added; ``df`` has ``DOC_KEY`` and ``n_tokens``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    session = df.sparkSession
    parts = []
    if plan.full_epochs:
        epochs = session.range(plan.full_epochs).select(F.col("id").cast("int").alias("epoch"))
        parts.append(df.crossJoin(epochs))
    if plan.remainder:
        pick = F.xxhash64(F.lit(seed), F.lit(plan.name), F.col(DOC_KEY), F.lit("pick"))
        order = Window.orderBy(F.col("_pick"), F.col(DOC_KEY)).rowsBetween(Window.unboundedPreceding,
                                                                            Window.currentRow)
        partial = (df.withColumn("_pick", pick).withColumn("_cum", F.sum("n_tokens").over(order))
                   .filter(F.col("_cum") <= plan.remainder).drop("_pick", "_cum")
                   .withColumn("epoch", F.lit(plan.full_epochs).cast("int")))
        parts.append(partial)
    if not parts:
        return df.withColumn("epoch", F.lit(0).cast("int")).limit(0)
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.withColumn(SHUFFLE_KEY, shuffle_key(seed, plan.name))
