"""Pre-flight checks of a flow config: what must hold before Prefect and Spark start.

One implementation, called by the CLI (``skycurate run ...``) before it starts anything and by
every flow at its start (so a Prefect deployment run fails the same way, with the same words)::

    preflight(cfg, catalog)

Each check raises ``SkycurateError`` (or the error type the check it calls raises: ``ConfigError``,
``StoreError``, ``DatasetNotFound``, ``SandboxError``, ...) with one line for the user. The order
is the same for every flow: the config names its inputs, the inputs exist and parse, the store
can be written, the dataset versions the config names resolve (after the store check, so a new
store is created rather than reported missing).

The checks live here, not as methods on the config models, because they call connectors
(benchmark readers, crawl discovery), the sandbox (is the Docker daemon up) and the catalog:
``skycurate.schemas`` sits below all of those and stays a layer of plain data models. This module
imports neither Prefect nor Spark, and the connectors only inside the checks that need them, so
the CLI can run it before it starts any of them.
"""

from __future__ import annotations

import os
from functools import singledispatch

from skycurate.catalog import Catalog, normalize_store
from skycurate.errors import SkycurateError
from skycurate.schemas.config import FlowConfig
from skycurate.schemas.cot import DistillFlowConfig
from skycurate.schemas.hello import HelloConfig
from skycurate.schemas.pref_flow import PrefFlowConfig
from skycurate.schemas.leakage_flows import (
    DecontaminateFlowConfig,
    LeakageAuditFlowConfig,
    LeakageReferenceFlowConfig,
)
from skycurate.schemas.swe_flow import PatchValidationConfig, SweConfig
from skycurate.schemas.web_flow import WebConfig

NO_BENCHMARK = "no benchmark: pass --benchmark NAME=PATH"


@singledispatch
def preflight(cfg: FlowConfig, catalog: Catalog) -> None:
    """Fail now, with one line, on anything that would fail the run of ``cfg`` later; a flow config
    without checks of its own only needs a writable store."""
    catalog.ensure_writable()


def open_flow(store: str | None, cfg: FlowConfig) -> tuple[str, Catalog]:
    """The start of every flow: the store's URL and catalog, once ``cfg`` passed its checks."""
    store = normalize_store(store)
    catalog = Catalog(store)
    preflight(cfg, catalog)
    return store, catalog


def _require_file(path: str | None) -> None:
    if path is not None and not os.path.isfile(path):
        raise SkycurateError(f"file not found: {path}")


@preflight.register
def _hello(cfg: HelloConfig, catalog: Catalog) -> None:
    from skycurate.connectors.jsonl import expand_sources

    if cfg.ingest.sources:  # none: the built-in sample
        expand_sources(cfg.ingest.sources)
    catalog.ensure_writable()


@preflight.register
def _web(cfg: WebConfig, catalog: Catalog) -> None:
    if not cfg.inputs:
        raise SkycurateError("no input: pass --input (a folder, file or glob) or set inputs in --config")
    from skycurate.connectors.web_readers import discover_inputs

    discover_inputs(cfg.inputs)
    for path in (cfg.quality_model.model_path, cfg.safety.url_blocklist, cfg.safety.keyword_blocklist):
        _require_file(path)
    catalog.ensure_writable()
    if cfg.dedup_against:
        catalog.resolve(cfg.dedup_against)
    from skycurate.connectors.benchmarks import load_benchmark

    for spec in cfg.benchmarks:
        load_benchmark(spec, cfg.decontaminate.splits)


@preflight.register
def _decontaminate(cfg: DecontaminateFlowConfig, catalog: Catalog) -> None:
    if not cfg.corpus:
        raise SkycurateError("no corpus: pass --corpus NS/NAME[@VERSION] (e.g. web/clean@latest)")
    if not cfg.benchmarks:
        raise SkycurateError(NO_BENCHMARK)
    from skycurate.connectors.benchmarks import load_benchmark

    for spec in cfg.benchmarks:
        load_benchmark(spec, cfg.decontaminate.splits)
    catalog.ensure_writable()
    catalog.resolve(cfg.corpus)


@preflight.register
def _leakage_audit(cfg: LeakageAuditFlowConfig, catalog: Catalog) -> None:
    if not cfg.model:
        raise SkycurateError("no model: pass --model DIR (a local folder)")
    if not os.path.isdir(cfg.model):
        raise SkycurateError(f"model folder not found: {cfg.model}")
    if not os.path.isfile(os.path.join(cfg.model, "config.json")):
        raise SkycurateError(f"{cfg.model} is not a model folder (no config.json; save it with save_pretrained)")
    if not cfg.benchmarks:
        raise SkycurateError(NO_BENCHMARK)
    unknown = sorted(set(cfg.references) - {b.name for b in cfg.benchmarks})
    if unknown:
        raise SkycurateError(f"reference given for unknown benchmark(s): {', '.join(unknown)}")
    from skycurate.connectors.benchmarks import load_benchmark

    for spec in cfg.benchmarks:
        have = set(load_benchmark(spec)) | ({"reference"} if spec.name in cfg.references else set())
        missing = [s for s in ("train", "test", "reference") if s not in have]
        if missing:
            raise SkycurateError(
                f"benchmark {spec.name}: the audit needs train, test and reference splits; {spec.path} has no "
                f"{'/'.join(missing)}" + (" (build a reference with `skycurate run leakage-reference`)"
                                          if "reference" in missing else ""))
    catalog.ensure_writable()
    for ref in cfg.references.values():
        catalog.resolve(ref)


@preflight.register
def _leakage_reference(cfg: LeakageReferenceFlowConfig, catalog: Catalog) -> None:
    if cfg.benchmark is None:
        raise SkycurateError(NO_BENCHMARK)
    if not cfg.reference.model:
        raise SkycurateError("no model: pass --model (a local folder, or the served model name with --base-url)")
    from skycurate.connectors.benchmarks import load_benchmark

    load_benchmark(cfg.benchmark)
    catalog.ensure_writable()


@preflight.register
def _distill(cfg: DistillFlowConfig, catalog: Catalog) -> None:
    teacher = cfg.teacher
    if not cfg.prompts:
        raise SkycurateError("no prompts: pass --prompts (a dataset ref or JSONL/Parquet files)")
    if not teacher.model:
        raise SkycurateError("no teacher: pass --model (a local folder, or the served name with --base-url)")
    if teacher.engine != "openai" and not os.path.isdir(teacher.model):
        raise SkycurateError(f"model folder not found: {teacher.model} (the {teacher.engine} engine "
                             "loads a local folder; use --engine openai --base-url for a served model)")
    if teacher.engine == "openai" and not teacher.base_url:
        raise SkycurateError("the openai engine needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    from skycurate.connectors.benchmarks import load_benchmark

    from skycurate.stages.cot.prompts import prompt_layout

    prompt_layout(cfg.prompts, catalog.url, cfg.fields)   # a layout/mapping error: one line, nothing started
    for spec in cfg.benchmarks:
        load_benchmark(spec, cfg.prepare.decontaminate.splits)
    catalog.ensure_writable()


@preflight.register
def _preference(cfg: PrefFlowConfig, catalog: Catalog) -> None:
    if not cfg.sources:
        raise SkycurateError("no preference sets: pass --source NAME=PATH (repeatable)")
    from skycurate.connectors.benchmarks import load_benchmark
    from skycurate.stages.pref.ingest import source_layouts

    source_layouts(cfg.sources, catalog.url)   # a layout/mapping error: one line, nothing started
    for spec in cfg.benchmarks:
        load_benchmark(spec, cfg.decontaminate.splits)
    catalog.ensure_writable()


def _docker_daemon() -> None:
    from skycurate.sandbox.daemon import client

    client()  # a daemon that is down is one clear error, before anything starts


@preflight.register
def _swe(cfg: SweConfig, catalog: Catalog) -> None:
    if not cfg.repos:
        raise SkycurateError("no repository: pass --repos PATH_OR_URL (repeatable)")
    if cfg.prs:
        _require_file(cfg.prs)
    if cfg.mining.filters.exclude_instances:
        from skycurate.stages.swe.benchmark_overlap import load_benchmark_instances

        load_benchmark_instances(cfg.mining.filters.exclude_instances)
    _docker_daemon()
    from skycurate.connectors.git_repos import expand_repo_specs

    expand_repo_specs(cfg.repos)   # a folder or glob without repositories fails here
    catalog.ensure_writable()


@preflight.register
def _swe_patches(cfg: PatchValidationConfig, catalog: Catalog) -> None:
    if not cfg.instances or not (cfg.patches or cfg.trajectories):
        raise SkycurateError("pass --instances swe/instances@vN and --patches FILE or --trajectories PATH")
    if cfg.patches:
        _require_file(cfg.patches)
    if cfg.trajectories:
        from skycurate.stages.swe.trajectories import list_trajectory_files

        if not list_trajectory_files(cfg.trajectories):
            raise SkycurateError(f"no trajectory files in {', '.join(cfg.trajectories)}")
    if cfg.tokenizer is not None and not os.path.isdir(cfg.tokenizer):
        raise SkycurateError(f"tokenizer folder not found: {cfg.tokenizer}")
    _docker_daemon()
    catalog.ensure_writable()
    catalog.resolve(cfg.instances)
