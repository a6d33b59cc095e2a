"""The ``skycurate run`` group and what its commands share: ``_flow_command`` registers a command
from a function that declares only its own options and returns the config overrides they make;
``_run_command`` loads the config, runs the pre-flight checks, starts the backends and runs the
flow; ``_run_flow`` prints the published datasets, the funnel and the command's own report.
``RUN_COMMANDS`` maps each command to its config model and flow. The commands themselves are
declared in ``cli.run_commands``.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import typer
from rich.table import Table

from skycurate.cli.common import (
    ConfigOpt,
    DebugOpt,
    ForceOpt,
    JsonOpt,
    StoreOpt,
    _catalog,
    _command,
    _errors,
    _funnel_table,
    _human_bytes,
    _options,
    _print_json,
    err,
    stdout,
)

run_app = typer.Typer(help="Run a flow.", no_args_is_help=True)


class _NoTracebacks(logging.Filter):
    """Keep Prefect's failure messages but drop their tracebacks (``--debug`` keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


# The options every `skycurate run` command has, after the command's own (see ``_flow_command``).
_RUN_OPTIONS = _options(("store", StoreOpt, None), ("config", ConfigOpt, None), ("force", ForceOpt, False),
                        ("as_json", JsonOpt, False), ("debug", DebugOpt, False))
# command name -> ("module:ConfigModel", "module:flow"), for the tests
RUN_COMMANDS: dict[str, tuple[str, str]] = {}
RUN_EXTRAS: dict[str, dict[str, Any]] = {}   # name -> report, json_extra, backends (for rebuild)


def _load(target: str) -> Any:
    """``"package.module:attr"`` -> the object (imported when a command runs, not when the CLI starts)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _flow_command(name: str, config_model: str, flow: str, *, report: Callable[[dict, Any], None] | None = None,
                  json_extra: tuple[str, ...] = (), backends: bool = False) -> Callable:
    """Register ``skycurate run NAME``, which runs ``flow`` with a ``config_model`` config.

    The decorated function declares only the command's own options and returns the config
    overrides they make (dotted keys; None = not given). The options every run command has
    (``--store``, ``--config``, ``--force``, ``--json``, ``--debug``) are added to its signature
    here, and the command runs ``_run_command``. ``report(result, cfg)`` prints what the
    command adds to the datasets and funnel tables; ``json_extra`` names result keys added to
    ``--json``; ``backends`` starts Spark and the local Prefect API side by side first.
    """

    def register(options: Callable[..., dict[str, Any]]) -> Callable[..., None]:
        def run(*, store: str | None, config: str | None, force: bool, as_json: bool, debug: bool,
                **values: Any) -> None:
            with _errors(debug):
                _run_command(name, _load(config_model), config, options(**values), flow, store=store, force=force,
                             as_json=as_json, debug=debug, report=report, json_extra=json_extra, backends=backends)

        RUN_COMMANDS[name] = (config_model, flow)
        RUN_EXTRAS[name] = {"report": report, "json_extra": json_extra, "backends": backends}
        return _command(run_app, name, options, _RUN_OPTIONS, run)

    return register


def _run_command(flow_name: str, config_model: type, config_path: str | None, overrides: dict[str, Any], flow: str,
                 *, store: str | None, force: bool, as_json: bool, debug: bool,
                 report: Callable[[dict, Any], None] | None, json_extra: tuple[str, ...], backends: bool) -> None:
    """Config file + flag overrides -> pre-flight checks (before Prefect and Spark start) -> the flow -> tables."""
    from skycurate.schemas.config import load_config

    cfg = load_config(config_model, config_path, overrides)
    run_config(flow_name, cfg, flow, store=store, force=force, as_json=as_json, debug=debug, report=report,
               json_extra=json_extra, backends=backends)


def run_config(flow_name: str, cfg: Any, flow: str, *, store: str | None, force: bool, as_json: bool, debug: bool,
               report: Callable[[dict, Any], None] | None = None, json_extra: tuple[str, ...] = (),
               backends: bool = False) -> None:
    """A validated config -> pre-flight checks -> the flow -> tables (``run`` and ``rebuild`` both end here)."""
    from skycurate.flows._preflight import preflight

    preflight(cfg, _catalog(store))
    module = flow.partition(":")[0]
    if backends:
        from skycurate.flows._backends import local_backends

        # Spark and the local Prefect API start side by side (Prefect not imported before this).
        started = local_backends(cfg.spark, preload=(module,))
    else:
        started = nullcontext()
    with started:
        _run_flow(flow_name, _load(flow), store=store, config=cfg, force=force, as_json=as_json, debug=debug,
                  report=functools.partial(report, cfg=cfg) if report else None, json_extra=json_extra)


def _run_flow(flow_name: str, flow_fn: Any, *, store: str | None, config: Any, force: bool, as_json: bool,
              debug: bool, report: Any = None, json_extra: tuple[str, ...] = ()) -> None:
    from skycurate.catalog import Catalog

    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, _NoTracebacks)]:
            logger.removeFilter(f)
        if not debug:
            logger.addFilter(_NoTracebacks())
    with err.status(f"running flow [bold]{flow_name}[/bold] (Prefect + Spark)…"):
        result = flow_fn(store=store, config=config, force=force)
    catalog = Catalog(store)
    datasets = {}
    for key, ref in result["datasets"].items():
        m = catalog.manifest(ref)
        datasets[key] = {"ref": ref.label, "uri": ref.uri, "num_rows": m.num_rows, "num_bytes": m.num_bytes}
    if as_json:
        _print_json({"flow": flow_name, "store": catalog.url, "datasets": datasets, "funnel": result["funnel"],
                     **{k: result[k] for k in json_extra if k in result}})
        return
    table = Table(title=f"{flow_name}: published datasets")
    for col in ("dataset", "rows", "size", "path"):
        table.add_column(col, justify="right" if col in ("rows", "size") else "left",
                         overflow="fold" if col == "path" else "ellipsis")
    for d in datasets.values():
        table.add_row(d["ref"], f"{d['num_rows']:,}", _human_bytes(d["num_bytes"]), d["uri"])
    stdout.print(table)
    if result["funnel"]:
        stdout.print(_funnel_table(result["funnel"]))
    if report is not None:
        report(result)
    main = next(iter(d for k, d in datasets.items() if k in ("clean", "main", "sft")), next(iter(datasets.values())))
    stdout.print("Read it (no skycurate needed):")
    stdout.print(f"  python -c \"import pyarrow.dataset as ds; print(ds.dataset('{main['uri']}').to_table())\"")
    stdout.print(f"  DuckDB / Spark SQL: SELECT * FROM '{main['uri']}/*.parquet'")
    stdout.print(f"  skycurate datasets read {main['ref']} --store {catalog.url}")
