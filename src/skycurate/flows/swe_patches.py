"""Patch validation flow: apply candidate patches and agent trajectories' final patches to
validated instances, and mark each resolved only if every FAIL_TO_PASS and PASS_TO_PASS test passes.

Publishes ``swe/patch_validations`` (one row per checked patch) and, with trajectories,
``swe/trajectories`` (the resolved ones, as chat ``messages`` for SFT) and
``swe/trajectory_rejected`` (every other trajectory with its reason: unreadable, no patch,
duplicate, not resolved). The checking is ``stages/swe/patches``: the gold validation's runner and
a grader, journalled so a killed run resumes.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
from prefect import flow

from skycurate.catalog import Catalog, DatasetRef
from skycurate.catalog.pins import FilePin, ModelFolderPin, pin_file, pin_model_folder
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import (
    DOCKER_SLOTS,
    attach_run_report,
    current_producer,
    dataset_task,
    funnel_stats,
    run_dataset_task,
    slots,
)
from skycurate.schemas.swe import PATCH_RESULT_SCHEMA, TRAJECTORY_REJECTED_SCHEMA, TRAJECTORY_SCHEMA, ValidationConfig
from skycurate.schemas.swe_flow import PatchValidationConfig
from skycurate.stages.accounting import FunnelStep

NAMESPACE = "swe"
log = logging.getLogger(__name__)


@dataset_task()
def validate_patches(store: str, instances: DatasetRef, patches: FilePin | None, trajectories: list[FilePin],
                     tokenizer: ModelFolderPin | None, cfg: ValidationConfig) -> dict[str, DatasetRef]:
    from skycurate.stages.swe.patches import check_patches, load_patches
    from skycurate.stages.swe.trajectories import as_patches, read_trajectories

    catalog = Catalog(store)
    by_id = {r["instance_id"]: r for r in catalog.open(instances).to_table().to_pylist()}
    cands = load_patches(patches.path) if patches else []
    read = read_trajectories([t.path for t in trajectories])
    traj_patches, traj_rejected = as_patches(read.trajectories)

    def progress(n: int, total: int, row: dict) -> None:
        log.info("[%d/%d] %s %s", n, total, row["patch_id"], "RESOLVED" if row["resolved"] else row["reason"])

    key = "-".join([patches.sha256[:12] if patches else "none", *(t.sha256[:8] for t in trajectories)])
    work = catalog.work_dir(NAMESPACE, f"patches-{key[:48]}")
    with slots(DOCKER_SLOTS, cfg.workers):
        rows = check_patches(cands + traj_patches, by_id, instances.label, cfg, work, progress)
    resolved = sum(r["resolved"] for r in rows)
    parents = [instances, *([patches.parent("patches")] if patches else []),
               *(t.parent(f"trajectories:{i}") for i, t in enumerate(trajectories))]
    producer = current_producer(cfg)
    step = FunnelStep(stage="patches", rows_in=len(rows), rows_out=resolved, rejected=len(rows) - resolved)
    stats = {**funnel_stats(None, step), "patches": len(rows), "resolved": resolved,
             "resolve_rate": resolved / len(rows) if rows else 0.0,
             "by_reason": {k: sum(1 for r in rows if r["reason"] == k) for k in {r["reason"] for r in rows} if k}}
    out: dict[str, DatasetRef] = {}
    with catalog.all_or_nothing():
        out["patch_validations"] = catalog.publish(f"{NAMESPACE}/patch_validations",
                                                   pa.Table.from_pylist(rows, PATCH_RESULT_SCHEMA), parents,
                                                   producer, stats)
        if trajectories:
            out.update(_publish_trajectories(catalog, read, traj_rejected, rows, tokenizer,
                                             [*parents, out["patch_validations"]], producer))
    return out


def _publish_trajectories(catalog: Catalog, read, traj_rejected: list[dict], rows: list[dict],
                          tokenizer: ModelFolderPin | None, parents: list, producer) -> dict[str, DatasetRef]:
    from skycurate.stages.swe.trajectories import trajectory_rows

    tok = None
    if tokenizer is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer.path, local_files_only=True)
    kept, not_resolved = trajectory_rows(read.trajectories, {r["patch_id"]: r for r in rows}, tok)
    quarantined = [{"trajectory_id": None, "instance_id": None, **q} for q in read.quarantined]
    rejected = traj_rejected + not_resolved + quarantined
    n_in = len(read.trajectories) + len(read.quarantined)
    # every trajectory read (or unreadable) is resolved, rejected or quarantined: checked before publishing
    step = FunnelStep(stage="trajectories", rows_in=n_in, rows_out=len(kept),
                      rejected=len(traj_rejected) + len(not_resolved), quarantined=len(quarantined))
    by_reason: dict[str, int] = {}
    for r in rejected:
        by_reason[r["reason"].split(":")[0]] = by_reason.get(r["reason"].split(":")[0], 0) + 1
    rej_ref = catalog.publish(f"{NAMESPACE}/trajectory_rejected",
                              pa.Table.from_pylist(rejected, TRAJECTORY_REJECTED_SCHEMA), parents, producer,
                              {"by_reason": by_reason})
    stats = {**funnel_stats(None, step), "trajectories": n_in, "resolved": len(kept), "by_reason": by_reason,
             "turns": sum(r["turns"] for r in kept),
             "tokens": sum(r["tokens"] for r in kept) if tok is not None else None}
    ref = catalog.publish(f"{NAMESPACE}/trajectories", pa.Table.from_pylist(kept, TRAJECTORY_SCHEMA),
                          [*parents, rej_ref], producer, stats)
    return {"trajectories": ref, "trajectory_rejected": rej_ref}


@flow(name="swe-validate-patches")
def swe_validate_patches_flow(store: str | None = None, config: PatchValidationConfig = PatchValidationConfig(),
                              force: bool = False) -> dict[str, Any]:
    """Candidate patches and agent trajectories -> resolved or not, per validated instance."""
    from skycurate.stages.swe.trajectories import list_trajectory_files

    cfg = config
    store, catalog = open_flow(store, cfg)
    instances = catalog.resolve(cfg.instances)
    files = [pin_file(f) for f in list_trajectory_files(cfg.trajectories)] if cfg.trajectories else []
    refs = run_dataset_task(validate_patches, store=store, force=force, instances=instances,
                            patches=pin_file(cfg.patches), trajectories=files,
                            tokenizer=pin_model_folder(cfg.tokenizer) if cfg.tokenizer else None, cfg=cfg.validation)
    main = refs.get("trajectories") or refs["patch_validations"]
    return {"datasets": refs, "funnel": attach_run_report("swe-validate-patches", catalog, main)}
