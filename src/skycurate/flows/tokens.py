"""Token-count flow (``skycurate run tokens``): any published dataset -> the same rows plus ``n_tokens``.

One dataset task, ``count_tokens`` (Spark): every Python worker loads the tokenizer once and counts
its batches with the fast tokenizers library; the counted rows are written once to scratch, summed
by language and source (the small columns only) and published as ``<ns>/<name>-tokens`` with the
totals and the tokenizer's identity in the manifest, and lineage to the source version and to the
tokenizer file by its sha256. The task's cache key holds the source version and the tokenizer's
content, so a rerun is free and a changed tokenizer recounts.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import skycurate.flows._preflight_tokens  # noqa: F401 - registers the tokens pre-flight checks
from skycurate.catalog import Catalog, DatasetRef
from skycurate.catalog.pins import FilePin
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import attach_run_report, current_producer, dataset_task, funnel_stats, run_dataset_task
from skycurate.schemas.config import SparkConfig
from skycurate.schemas.tokens import TokenizerConfig
from skycurate.schemas.tokens_flow import TokensFlowConfig
from skycurate.stages.accounting import FunnelStep

STAGE = "tokens"


@dataset_task()
def count_tokens(store: str, source: DatasetRef, cfg: TokenizerConfig, tokenizer: FilePin | None, by: list[str],
                 output: str, spark: SparkConfig) -> dict[str, DatasetRef]:
    from skycurate.spark import balanced, get_spark, read_dataset
    from skycurate.stages.tokens import counted_on_spark, text_column, token_stats_on_spark, tokenizer_identity

    catalog, session, producer = Catalog(store), get_spark(spark), current_producer(cfg)
    df = read_dataset(session, source)
    column = text_column(df.columns, cfg, source.label)
    parents: list[Any] = [source, *([tokenizer.parent()] if tokenizer else [])]
    with catalog.scratch("tokens") as scratch:
        counted = counted_on_spark(balanced(df), cfg, scratch, source.label)
        totals = {**token_stats_on_spark(counted, cfg, by), **tokenizer_identity(cfg, tokenizer, column)}
        step = FunnelStep(stage=STAGE, rows_in=catalog.manifest(source).num_rows, rows_out=totals["rows"])
        stats = {**funnel_stats(None, step), "tokens": totals, "source": source.label}
        ref = catalog.publish(output, counted, parents, producer, stats)
    return {"counted": ref}


@flow(name="tokens")
def tokens_flow(store: str | None = None, config: TokensFlowConfig = TokensFlowConfig(),
                force: bool = False) -> dict[str, Any]:
    """A dataset version -> ``<name>-tokens``: its rows with ``n_tokens``, totals by language and source."""
    from skycurate.stages.tokens import tokenizer_pin

    cfg = config
    store, catalog = open_flow(store, cfg)
    assert cfg.tokens is not None and cfg.dataset   # the pre-flight checks said so
    source = catalog.resolve(cfg.dataset)
    out = run_dataset_task(count_tokens, store=store, force=force, source=source, cfg=cfg.tokens,
                           tokenizer=tokenizer_pin(cfg.tokens), by=cfg.by, output=cfg.output_name(source.name),
                           spark=cfg.spark)
    funnel = attach_run_report(STAGE, catalog, out["counted"])
    return {"datasets": out, "funnel": funnel,
            "stats": catalog.manifest(out["counted"]).stats["tokens"]}
