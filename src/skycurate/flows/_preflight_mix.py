"""Pre-flight checks of ``skycurate run mix``, registered on ``_preflight.preflight`` (imported by the
CLI before Prefect starts, and by the flow)."""

from __future__ import annotations

from skycurate.catalog import Catalog
from skycurate.errors import SkycurateError
from skycurate.flows._preflight import preflight
from skycurate.schemas.mix import MixFlowConfig


@preflight.register
def _mix(cfg: MixFlowConfig, catalog: Catalog) -> None:
    if not cfg.name:
        raise SkycurateError("no mixture name: pass --name NAME (published as train/NAME) or set name")
    if not cfg.sources:
        raise SkycurateError("no sources: list them under sources: in --config (dataset, weight or tokens)")
    if cfg.tokenizer is not None:
        from skycurate.stages.tokens import load_counter

        load_counter(cfg.tokenizer)
    catalog.ensure_writable()
    for s in cfg.sources:
        catalog.resolve(s.dataset)
