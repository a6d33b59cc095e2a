"""Pre-flight checks of ``skycurate run evaluate``, registered on ``_preflight.preflight``.

Kept out of the flow module so that the CLI can register them without importing Prefect (it imports
this module before it runs the checks); the flow imports it too, so a deployment run fails the
same way.
"""

from __future__ import annotations

import os

from skycurate.catalog import Catalog
from skycurate.errors import SkycurateError
from skycurate.flows._preflight import NO_BENCHMARK, preflight
from skycurate.schemas.evaluate import SPLIT, EvalFlowConfig


@preflight.register
def _evaluate(cfg: EvalFlowConfig, catalog: Catalog) -> None:
    if not cfg.benchmarks:
        raise SkycurateError(NO_BENCHMARK)
    if not cfg.models:
        raise SkycurateError("no model: pass --model (a local folder, or the served model name with --base-url)")
    for m in cfg.models:
        if m.engine != "openai" and not os.path.isdir(m.model or ""):
            raise SkycurateError(f"model folder not found: {m.model} (the {m.engine} engine loads a local folder; "
                                 "use --engine openai --base-url for a served model)")
        if m.engine == "openai" and not m.base_url:
            raise SkycurateError(f"model {m.label}: the openai engine needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    judge = cfg.judge.engine
    if judge is not None and judge.engine != "openai" and not os.path.isdir(judge.model or ""):
        raise SkycurateError(f"judge model folder not found: {judge.model}")
    if judge is not None and judge.engine == "openai" and not judge.base_url:
        raise SkycurateError("judge: the openai engine needs judge.engine.base_url")
    from skycurate.connectors.benchmarks import benchmark_files
    from skycurate.stages.evaluate.items import split_layout, split_records

    for spec in cfg.benchmarks:
        files = benchmark_files(spec)
        if SPLIT not in files:
            raise SkycurateError(f"benchmark {spec.name}: no test split in {spec.path} (found {', '.join(files)})")
        first = files[SPLIT][0]
        split_layout(split_records(first, spec.name), cfg.fields_for(spec), f"{spec.name} ({first.name})")
    catalog.ensure_writable()
