"""Patch validation flow: apply candidate patches (agent trajectories) to validated instances and
mark each resolved only if every FAIL_TO_PASS and PASS_TO_PASS test passes.

Publishes ``swe/patch_validations`` (one row per candidate patch). The checking is
``stages/swe/patches``: the gold validation's runner and a grader, journalled so a killed run
resumes.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
from prefect import flow

from skycurate.catalog import Catalog, DatasetRef, normalize_store
from skycurate.catalog.pins import FilePin, pin_file
from skycurate.flows._preflight import preflight
from skycurate.flows._runtime import attach_run_report, current_producer, dataset_task, funnel_stats, run_dataset_task
from skycurate.schemas.swe import PATCH_RESULT_SCHEMA, ValidationConfig
from skycurate.schemas.swe_flow import PatchValidationConfig
from skycurate.stages.accounting import FunnelStep

NAMESPACE = "swe"
log = logging.getLogger(__name__)


@dataset_task()
def validate_patches(store: str, instances: DatasetRef, patches: FilePin,
                     cfg: ValidationConfig) -> DatasetRef:
    from skycurate.stages.swe.patches import check_patches, load_patches

    catalog = Catalog(store)
    by_id = {r["instance_id"]: r for r in catalog.open(instances).to_table().to_pylist()}
    cands = load_patches(patches.path)

    def progress(n: int, total: int, row: dict) -> None:
        log.info("[%d/%d] %s %s", n, total, row["patch_id"], "RESOLVED" if row["resolved"] else row["reason"])

    work = catalog.work_dir(NAMESPACE, f"patches-{patches.sha256[:16]}")
    rows = check_patches(cands, by_id, instances.label, cfg, work, progress)
    resolved = sum(r["resolved"] for r in rows)
    step = FunnelStep(stage="patches", rows_in=len(cands), rows_out=resolved, rejected=len(rows) - resolved)
    stats = {**funnel_stats(None, step), "patches": len(rows), "resolved": resolved,
             "resolve_rate": resolved / len(rows) if rows else 0.0,
             "by_reason": {k: sum(1 for r in rows if r["reason"] == k) for k in {r["reason"] for r in rows} if k}}
    return catalog.publish(f"{NAMESPACE}/patch_validations", pa.Table.from_pylist(rows, PATCH_RESULT_SCHEMA),
                           [instances, patches.parent("patches")], current_producer(cfg), stats)


@flow(name="swe-validate-patches")
def swe_validate_patches_flow(store: str | None = None, config: PatchValidationConfig = PatchValidationConfig(),
                              force: bool = False) -> dict[str, Any]:
    """Candidate patches -> resolved or not, per validated instance."""
    store = normalize_store(store)
    cfg = config
    catalog = Catalog(store)
    preflight(cfg, catalog)
    instances = catalog.resolve(cfg.instances)
    ref = run_dataset_task(validate_patches, store=store, force=force, instances=instances,
                           patches=pin_file(cfg.patches), cfg=cfg.validation)
    return {"datasets": {"patch_validations": ref}, "funnel": attach_run_report("swe-validate-patches", catalog, ref)}
