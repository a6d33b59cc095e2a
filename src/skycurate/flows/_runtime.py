"""Prefect glue shared by every flow: dataset tasks, their cache key, producer info, the funnel artifact.

A dataset task returns ``DatasetRef``s (or a dict of them). It is skipped when its inputs
(resolved parent versions, config, source fingerprints), its code version and the store
are unchanged: the cache key hashes exactly those. Cache records live inside a local store
(``<store>/_cache/prefect``; for a remote store a local folder named after it), so deleting
a local store forgets them too; and a cached result
whose datasets are gone is recomputed rather than trusted.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import inspect
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import CachePolicy
from pydantic import BaseModel

import skycurate
from skycurate import faults
from skycurate.catalog import Catalog, DatasetRef, Producer
from skycurate.codehash import code_version, task_code_modules
from skycurate.schemas.config import SparkConfig
from skycurate.errors import SkycurateError
from skycurate.stages.accounting import FunnelStep

log = logging.getLogger(__name__)

_CODE_VERSIONS: dict[str, str] = {}
_CODE_MODULES: dict[str, frozenset[str]] = {}  # task name -> the modules its code version hashes


def canonical(value: Any) -> Any:
    """A JSON-able, stable form of a task input for the cache key."""
    if isinstance(value, DatasetRef):
        return {"dataset": f"{value.store}|{value.label}"}
    if isinstance(value, SparkConfig):
        return None  # how Spark is reached does not change what a stage computes
    if isinstance(value, BaseModel):
        return {k: canonical(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"dataset task input of type {type(value).__name__} has no stable cache form")


@dataclass
class DatasetCachePolicy(CachePolicy):
    """Key = hash(task name, code version, canonical inputs). ``force`` is not an input."""

    code: str = ""

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str:
        inputs = {k: v for k, v in inputs.items() if k != "force"}
        payload = {"task": task_ctx.task.name, "code": self.code, "inputs": canonical(inputs)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def dataset_task(*, code: Iterable[str] = (), name: str | None = None, **task_options: Any) -> Callable:
    """Make a Prefect task out of a function ``(store, ...) -> DatasetRef | dict[str, DatasetRef]``.

    Its code version hashes the source of the modules that define what the task computes,
    derived from the function (``_code.task_code_modules``: its own module, what its code
    uses and their skycurate imports, catalog and Prefect plumbing left out): editing any of
    them invalidates the cache. ``code`` names extra modules the derivation cannot see (a
    package: every module below it).
    """

    def wrap(fn: Callable) -> Any:
        modules = task_code_modules(fn, code)
        version = code_version(modules)
        task_name = name or fn.__name__
        _CODE_VERSIONS[task_name] = version
        _CODE_MODULES[task_name] = modules
        made = task(name=task_name, cache_policy=DatasetCachePolicy(code=version), persist_result=True,
                    **task_options)(fn)
        made._skycurate_dataset_task = True
        return made

    return wrap


def iter_refs(result: Any) -> Iterator[DatasetRef]:
    if isinstance(result, DatasetRef):
        yield result
    elif isinstance(result, dict):
        for v in result.values():
            yield from iter_refs(v)
    elif isinstance(result, (list, tuple)):
        for v in result:
            yield from iter_refs(v)


#: ``skycurate rebuild --from-stage S``: tasks before S use their cache, S and every task after it
#: in the flow recompute (set around the flow call; the flow body runs its tasks in order).
FORCE_FROM: contextvars.ContextVar[str | None] = contextvars.ContextVar("skycurate_force_from", default=None)
_FORCING: contextvars.ContextVar[bool] = contextvars.ContextVar("skycurate_forcing", default=False)


@contextlib.contextmanager
def force_from(stage: str | None) -> Iterator[None]:
    """Within the block, flows recompute from dataset task ``stage`` on (None: nothing changes);
    both switches are restored afterwards, so later runs in the process use their caches again."""
    tokens = FORCE_FROM.set(stage), _FORCING.set(False)
    try:
        yield
    finally:
        FORCE_FROM.reset(tokens[0])
        _FORCING.reset(tokens[1])


def dataset_task_names(module: Any) -> list[str]:
    """The dataset tasks a flow module defines (the stages ``--from-stage`` accepts)."""
    return [v.name for v in vars(module).values() if getattr(v, "_skycurate_dataset_task", False)]


def run_dataset_task(dataset_task_obj: Any, *, store: str, force: bool = False, **inputs: Any) -> Any:
    """Run a dataset task with the store's cache; ``force`` recomputes and refreshes the cache."""
    if FORCE_FROM.get() == dataset_task_obj.name:
        _FORCING.set(True)
    force = force or _FORCING.get()
    if "force" in inspect.signature(dataset_task_obj.fn).parameters:
        inputs = {**inputs, "force": force}   # a task with a resume journal of its own redoes it too
    catalog = Catalog(store)
    policy = dataset_task_obj.cache_policy
    policy = policy.configure(key_storage=str(catalog.cache_dir("prefect")))
    configured = dataset_task_obj.with_options(cache_policy=policy, refresh_cache=True if force else None)
    faults.point(f"task:{dataset_task_obj.name}")
    try:
        result = configured(store=store, **inputs)
    except SkycurateError as e:   # the failed run's state message names the stage that failed
        stage = dataset_task_obj.name
        if e.args and isinstance(e.args[0], str) and not e.args[0].startswith(f"stage {stage}: "):
            e.args = (f"stage {stage}: {e.args[0]}", *e.args[1:])
        raise
    if not force and not all(catalog.exists(ref) for ref in iter_refs(result)):
        log.warning("%s: cached result names dataset versions that are gone; recomputing",
                    dataset_task_obj.name)
        result = dataset_task_obj.with_options(cache_policy=policy, refresh_cache=True)(store=store, **inputs)
    return result


DOCKER_SLOTS, GPU_SLOTS = "skycurate-docker", "skycurate-gpu"


@contextlib.contextmanager
def slots(limit: str, occupy: int = 1) -> Iterator[None]:
    """Hold ``occupy`` slots of the Prefect global concurrency limit ``limit`` while the block runs:
    Docker validation workers (``DOCKER_SLOTS``) and teacher engines (``GPU_SLOTS``) shared by
    every flow run reporting to one Prefect server (``prefect gcl create skycurate-docker --limit 8``).
    No such limit on the server: the block runs at once. A limit smaller than ``occupy`` never admits it."""
    from prefect.concurrency.sync import concurrency

    with concurrency(limit, occupy=occupy, strict=False):
        yield


def current_producer(stage_config: BaseModel | None = None) -> Producer:
    """Who made a version: the running flow and task, their code version and the full flow config.

    The full config comes from the flow run's ``config`` parameter; outside a flow the
    stage's own config block is recorded instead.
    """
    from prefect.runtime import flow_run, task_run

    task_name = task_run.task_name
    flow_config = (flow_run.parameters or {}).get("config")
    if isinstance(flow_config, BaseModel):
        config = flow_config.model_dump(mode="json")
    elif isinstance(flow_config, dict):
        config = flow_config
    else:
        config = stage_config.model_dump(mode="json") if stage_config is not None else {}
    return Producer(
        flow=flow_run.flow_name,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        task=task_name,
        code_version=_CODE_VERSIONS.get(task_name, f"{skycurate.__version__}+unknown"),
        config=config,
    )


def funnel_stats(previous: list[dict] | None, step: FunnelStep) -> dict[str, Any]:
    """Manifest ``stats``: the funnel so far (from the parent's manifest) plus this stage."""
    return {"funnel": [*(previous or []), step.model_dump()]}


def attach_funnel_artifact(flow_name: str, funnel: list[dict]) -> None:
    """A table artifact on the flow run: rows in/out per stage."""
    rows = [{"stage": s["stage"], "rows_in": s["rows_in"], "rows_out": s["rows_out"],
             "rejected": s.get("rejected", 0), "quarantined": s.get("quarantined", 0)} for s in funnel]
    create_table_artifact(key=f"{flow_name}-funnel", table=rows,
                          description=f"Stage funnel of the {flow_name} flow: rows in and out of each stage.")


def attach_chart_artifact(flow_name: str, png: bytes) -> None:
    """The funnel chart, embedded in a markdown artifact (no image hosting needed)."""
    import base64

    from prefect.artifacts import create_markdown_artifact

    data = base64.b64encode(png).decode()
    create_markdown_artifact(key=f"{flow_name}-funnel-chart", markdown=f"![{flow_name} funnel](data:image/png;base64,{data})",
                             description=f"Stage funnel chart of the {flow_name} flow.")


def attach_run_report(flow_name: str, catalog: Catalog, ref: DatasetRef, chart: str | None = None) -> list[dict]:
    """The run's funnel (from ``ref``'s manifest) and, when named, its attached chart, as
    artifacts on the flow run; returns the funnel. With ``card.enabled`` in the flow config, ``ref``
    also gets a dataset card if it has none (a cached task returned a version made before cards
    were on; versions published in this run got theirs at publish)."""
    _ensure_card(catalog, ref)
    funnel = catalog.manifest(ref).stats.get("funnel") or []
    if funnel:
        attach_funnel_artifact(flow_name, funnel)
    if chart:
        attach_chart_artifact(flow_name, catalog.attachment(ref, chart))
    elif funnel:   # a flow without a chart of its own still gets its funnel drawn
        from skycurate.reporting import funnel_chart_png

        attach_chart_artifact(flow_name, funnel_chart_png(funnel, f"{flow_name} funnel"))
    return funnel


def _ensure_card(catalog: Catalog, ref: DatasetRef) -> None:
    """A card is documentation: failing to write one is logged, never a failed run."""
    from skycurate.catalog.card_files import ensure_card

    try:
        ensure_card(catalog, ref, current_producer().config)
    except Exception as e:  # noqa: BLE001 - see the docstring
        log.warning("%s: no dataset card (%s: %s); write one with `skycurate datasets card %s`",
                    ref.label, type(e).__name__, e, ref.label)
