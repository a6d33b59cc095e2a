"""Corpus decontamination flow: remove benchmark n-grams from a published corpus version (the
task itself is ``flows._decontamination.decontaminate``, which the web flow chains too)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from skycurate.connectors.benchmarks import pin_benchmarks
from skycurate.flows._decontamination import decontaminate
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import attach_run_report, run_dataset_task
from skycurate.schemas.leakage_flows import DecontaminateFlowConfig

__all__ = ["decontaminate", "decontaminate_flow"]


@flow(name="decontaminate")
def decontaminate_flow(store: str | None = None, config: DecontaminateFlowConfig = DecontaminateFlowConfig(),
                       force: bool = False) -> dict[str, Any]:
    """Corpus version minus benchmark n-grams (GPT-3 recipe or whole-document drop)."""
    cfg = config
    store, catalog = open_flow(store, cfg)
    corpus = catalog.resolve(cfg.corpus)
    output = cfg.output_name(corpus.name)
    final = run_dataset_task(decontaminate, store=store, force=force, corpus=corpus, benchmarks=cfg.benchmarks,
                             files=pin_benchmarks(cfg.benchmarks), cfg=cfg.decontaminate, output=output,
                             spark=cfg.spark)
    funnel = attach_run_report("decontaminate", catalog, final["clean"], chart="_funnel.png")
    return {"datasets": final, "funnel": funnel, "summary": catalog.manifest(final["clean"]).stats["summary"]}
