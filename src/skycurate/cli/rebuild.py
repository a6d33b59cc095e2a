"""``skycurate rebuild DATASET[@vN] [--set key=value ...]``: make a version again from its manifest.

The manifest records the producing flow and its whole config (``producer``) and every input
(``parents``). A rebuild checks that the inputs are still there (a garbage-collected parent
version, a deleted or changed input file: refused with one line naming each), applies the
``--set`` overrides to the recorded config, and runs the flow with ``force`` (every dataset task
recomputes; generation shards and SWE validations journalled under the work folder are reused,
as in any forced run). Every output of the run records ``rebuild_of`` in its producer config.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Optional

import typer
import yaml

from skycurate.catalog import Catalog
from skycurate.catalog.manifest import Manifest
from skycurate.cli.common import DebugOpt, JsonOpt, RefArg, StoreOpt, _catalog, _errors
from skycurate.errors import SkycurateError


def missing_inputs(catalog: Catalog, manifest: Manifest) -> list[str]:
    """The inputs of ``manifest``'s run that are gone: parent versions no longer in the store, input
    files deleted or changed since (sha256). Parents made by the same flow run are followed (the
    rebuild makes them again, so their inputs count); other flows' outputs only need to exist."""
    from skycurate.catalog.pins import sha256_file

    gone: list[str] = []
    for p in manifest.parents:
        if p.version:
            ref = f"{p.name}@{p.version}"
            if not catalog.exists(ref):
                gone.append(f"{ref} (no longer in the store)")
                continue
            parent = catalog.manifest(ref)
            if manifest.producer.flow_run_id and parent.producer.flow_run_id == manifest.producer.flow_run_id:
                gone += [g for g in missing_inputs(catalog, parent) if g not in gone]
        elif p.uri and "://" not in p.uri:
            if not os.path.exists(p.uri):
                gone.append(f"{p.uri} (deleted)")
            elif p.sha256 and os.path.isfile(p.uri) and sha256_file(p.uri) != p.sha256:
                gone.append(f"{p.uri} (changed since: sha256 differs)")
    return gone


def _overrides(values: list[str]) -> dict[str, Any]:
    out = {}
    for v in values:
        key, sep, raw = v.partition("=")
        if not sep or not key.strip():
            raise SkycurateError(f"--set {v!r}: expected key=value, e.g. --set select.alpha=0.5")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def rebuild_command(ref: RefArg,
                    set_: Annotated[Optional[list[str]], typer.Option(
                        "--set", help="key=value over the recorded config (dotted keys, YAML values); repeatable.")
                    ] = None,
                    from_stage: Annotated[Optional[str], typer.Option(
                        help="Recompute from this stage (a dataset task of the flow) on; earlier ones use their "
                             "cache. Default: every stage.")] = None,
                    store: StoreOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Run the flow that made a version again, with its recorded config and inputs (plus --set changes)."""
    import importlib

    from skycurate.cli.run import RUN_COMMANDS, RUN_EXTRAS, _load, run_config
    from skycurate.flows._runtime import dataset_task_names, force_from
    from skycurate.schemas.config import _set_dotted, validate_config

    with _errors(debug):
        catalog = _catalog(store)
        target = catalog.resolve(ref)
        m = catalog.manifest(target)
        flow_name = m.producer.flow
        if flow_name not in RUN_COMMANDS:
            raise SkycurateError(f"cannot rebuild {target.label}: it was not made by a skycurate flow "
                                 f"(producer flow: {flow_name or 'none'}; flows: {', '.join(sorted(RUN_COMMANDS))})")
        gone = missing_inputs(catalog, m)
        if gone:
            raise SkycurateError(f"cannot rebuild {target.label}: its inputs are gone: {'; '.join(gone)}")
        data = dict(m.producer.config)
        for key, value in _overrides(set_ or []).items():
            _set_dotted(data, key, value)
        data["rebuild_of"] = target.label
        model, flow = RUN_COMMANDS[flow_name]
        cfg = validate_config(_load(model), data, f"{target.label} (recorded config)")
        if from_stage is not None:
            stages = dataset_task_names(importlib.import_module(flow.partition(":")[0]))
            if from_stage not in stages:
                raise SkycurateError(f"--from-stage {from_stage!r}: the {flow_name} flow's stages are "
                                     f"{', '.join(stages)}")
        with force_from(from_stage):
            run_config(flow_name, cfg, flow, store=catalog.url, force=from_stage is None, as_json=as_json,
                       debug=debug, **RUN_EXTRAS[flow_name])
