"""Training-mixture flow (``skycurate run mix``): catalog datasets -> one shuffled mixture planned in tokens.

One dataset task, ``mix`` (Spark): each source version is read, filtered (language, quality
quantile, date range), counted in tokens (its ``n_tokens`` column, else the configured tokenizer)
and written once to scratch; the plan gives every source its tokens (budgets, weights, the
upsampling cap: ``stages.mix.plan_mixture``); each source's documents are picked for whole and
partial epochs, the union is globally shuffled by a seeded hash and published as
``train/<name>`` in shards of ``shard_rows``, with per-source tokens planned vs achieved in the
manifest, lineage to every source version and a chart.
"""

from __future__ import annotations

import math
from typing import Any

from prefect import flow

import skycurate.flows._preflight_mix  # noqa: F401 - registers the mix pre-flight checks
from skycurate.catalog import Catalog, DatasetRef
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import attach_run_report, current_producer, dataset_task, run_dataset_task
from skycurate.schemas import mix as M
from skycurate.schemas.tokens import TOKENS_COLUMN, TokenizerConfig
from skycurate.spark import get_spark

PRESERVED = ("id", "lang")   # carried into the mixture when a source has them (as strings)


def _prepared(session: Any, ref: DatasetRef, source: M.MixSource, tokenizer: TokenizerConfig | None, store: str):
    """One source's rows after its filters: source, dataset, id, lang, text or messages, n_tokens, doc key."""
    from pyspark.sql import functions as F

    from skycurate.errors import SkycurateError
    from skycurate.spark import read_dataset
    from skycurate.stages.mix import DOC_KEY, doc_key
    from skycurate.stages.tokens import text_column, tokens_on_spark

    df = read_dataset(session, ref)
    where = f"source {source.name} ({ref.label})"
    f = source.filter
    if f.lang is not None:
        if "lang" not in df.columns:
            raise SkycurateError(f"{where} has no lang column: remove filter.lang")
        df = df.filter(F.col("lang").isin(f.lang))
    for name, bound, op in (("date_from", f.date_from, "ge"), ("date_to", f.date_to, "lt")):
        if bound is not None:
            if f.date_column not in df.columns:
                raise SkycurateError(f"{where} has no column {f.date_column!r}: set filter.date_column")
            col = F.col(f.date_column)
            df = df.filter(col >= F.lit(bound) if op == "ge" else col < F.lit(bound))
    if f.min_quality_quantile is not None:
        if f.quality_column not in df.columns:
            raise SkycurateError(f"{where} has no column {f.quality_column!r}: set filter.quality_column")
        scored = df.filter(F.col(f.quality_column).isNotNull())
        cut = scored.approxQuantile(f.quality_column, [f.min_quality_quantile], 0.0)   # exact
        df = scored.filter(F.col(f.quality_column) >= cut[0]) if cut else scored.limit(0)
    cfg = tokenizer or TokenizerConfig(tokenizer="(none)")
    column = text_column(df.columns, cfg.model_copy(update={"text_column": source.text_column or cfg.text_column}),
                         where)
    if TOKENS_COLUMN not in df.columns:
        if tokenizer is None:
            raise SkycurateError(f"{where} has no {TOKENS_COLUMN} column: set tokenizer (or count it first with "
                                 "skycurate run tokens)")
        df = tokens_on_spark(df, tokenizer.model_copy(update={"text_column": column}), where)
    has_id = "id" in df.columns
    cols = [F.lit(source.name).alias("source"), F.lit(ref.label).alias("dataset"),
            *[(F.col(c).cast("string") if c in df.columns else F.lit(None).cast("string")).alias(c)
              for c in PRESERVED],
            F.col(column).alias("messages" if column == "messages" else "text"),
            F.col(TOKENS_COLUMN).cast("long").alias(TOKENS_COLUMN), doc_key(column, has_id).alias(DOC_KEY)]
    return df.select(*cols)


@dataset_task()
def mix(store: str, sources: list[M.MixSource], refs: list[DatasetRef], name: str, total_tokens: int | None,
        tokenizer: TokenizerConfig | None, tokenizer_pin: Any, seed: int, shard_rows: int,
        spark: Any) -> dict[str, DatasetRef]:
    """Sources -> ``train/<name>`` (one row per document and epoch, globally shuffled)."""
    from pyspark.sql import functions as F

    from skycurate.errors import SkycurateError
    from skycurate.reporting.mix import mix_chart_png
    from skycurate.stages.mix import DOC_KEY, SHUFFLE_KEY, plan_mixture, select_source

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer()
    with catalog.scratch("mix") as scratch:
        available, kinds = {}, set()
        for s, ref in zip(sources, refs, strict=True):
            _prepared(session, ref, s, tokenizer, store).write.mode("overwrite").parquet(f"{scratch}/src-{s.name}")
            df = session.read.parquet(f"{scratch}/src-{s.name}")
            kinds.add("messages" if "messages" in df.columns else "text")
            row = df.agg(F.coalesce(F.sum(TOKENS_COLUMN), F.lit(0)).alias("t"), F.count(F.lit(1)).alias("n")).first()
            available[s.name] = (int(row["t"]), int(row["n"]))
        if len(kinds) > 1:
            raise SkycurateError("sources mix plain text and chat messages: a mixture is one or the other")
        plans = plan_mixture(sources, available, total_tokens)
        picked = None
        for plan in plans:
            part = select_source(session.read.parquet(f"{scratch}/src-{plan.name}"), plan, seed)
            picked = part if picked is None else picked.unionByName(part)
        picked.write.mode("overwrite").parquet(f"{scratch}/mixture")
        mixture = session.read.parquet(f"{scratch}/mixture")
        got = {r["source"]: r for r in mixture.groupBy("source").agg(
            F.sum(TOKENS_COLUMN).alias("tokens"), F.count(F.lit(1)).alias("rows"),
            F.countDistinct(DOC_KEY).alias("docs"), F.max("epoch").alias("max_epoch")).collect()}
        total = sum(int(r["tokens"]) for r in got.values())
        per_source = {}
        for p in plans:
            r = got.get(p.name)
            achieved = int(r["tokens"]) if r else 0
            per_source[p.name] = {**p.to_dict(), "achieved_tokens": achieved,
                                  "rows": int(r["rows"]) if r else 0, "docs": int(r["docs"]) if r else 0,
                                  "share_planned": round(p.target_tokens / sum(q.target_tokens for q in plans), 6),
                                  "share_achieved": round(achieved / total, 6) if total else 0.0,
                                  "epochs_achieved": round(achieved / p.available_tokens, 4)}
        rows = sum(v["rows"] for v in per_source.values())
        stats = {"sources": per_source, "tokens": total, "rows": rows, "seed": seed, "shard_rows": shard_rows,
                 "planned_tokens": sum(p.target_tokens for p in plans), "kind": kinds.pop() if kinds else "text"}
        keys = [SHUFFLE_KEY, DOC_KEY, "source", "epoch"]
        ordered = (mixture.repartitionByRange(max(1, math.ceil(rows / shard_rows)), *keys)
                   .sortWithinPartitions(*keys).drop(SHUFFLE_KEY, DOC_KEY))
        chart = mix_chart_png(per_source, f"train/{name}: {total:,} tokens from {len(plans)} sources (seed {seed})")
        ref = catalog.publish(f"{M.NAMESPACE}/{name}", ordered, refs, producer, stats, max_rows_per_file=shard_rows,
                              attachments={"_mix.png": chart})
    return {"mixture": ref}


@flow(name="mix")
def mix_flow(store: str | None = None, config: M.MixFlowConfig = M.MixFlowConfig(), force: bool = False
             ) -> dict[str, Any]:
    """Catalog datasets -> a token-planned, capped, shuffled training mixture ``train/<name>``."""
    from skycurate.stages.tokens import tokenizer_pin

    cfg = config
    store, catalog = open_flow(store, cfg)
    refs = [catalog.resolve(s.dataset) for s in cfg.sources]
    pin = tokenizer_pin(cfg.tokenizer) if cfg.tokenizer is not None else None   # by content: a new one recounts
    out = run_dataset_task(mix, store=store, force=force, sources=cfg.sources, refs=refs, name=cfg.name,
                           total_tokens=cfg.total_tokens, tokenizer=cfg.tokenizer, tokenizer_pin=pin, seed=cfg.seed,
                           shard_rows=cfg.shard_rows, spark=cfg.spark)
    funnel = attach_run_report("mix", catalog, out["mixture"], chart="_mix.png")   # no funnel: upsampling adds rows
    return {"datasets": out, "funnel": funnel, "stats": catalog.manifest(out["mixture"]).stats}
