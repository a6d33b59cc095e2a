"""Pre-flight checks of ``skycurate run tokens``, registered on ``_preflight.preflight`` (imported by
the CLI before Prefect and Spark start, and by the flow): the tokenizer loads and the dataset has
the column counted, or the run stops with one line."""

from __future__ import annotations

from skycurate.catalog import Catalog
from skycurate.errors import SkycurateError
from skycurate.flows._preflight import preflight
from skycurate.schemas.tokens_flow import TokensFlowConfig


@preflight.register
def _tokens(cfg: TokensFlowConfig, catalog: Catalog) -> None:
    from skycurate.stages.tokens import load_counter, text_column

    if not cfg.dataset:
        raise SkycurateError("no dataset: pass --dataset NS/NAME[@VERSION] (e.g. web/clean@latest)")
    if cfg.tokens is None:
        raise SkycurateError("no tokenizer: pass --tokenizer (a tokenizer folder, a tokenizer.json or "
                             "tiktoken:<encoding>)")
    load_counter(cfg.tokens)
    catalog.ensure_writable()
    ref = catalog.resolve(cfg.dataset)
    names = [f["name"] for f in catalog.manifest(ref).schema_.get("fields", [])]
    text_column(names, cfg.tokens, ref.label)
