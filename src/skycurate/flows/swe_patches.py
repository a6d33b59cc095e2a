"""Patch validation flow: apply candidate patches (agent trajectories) to validated instances and
mark each resolved only if every FAIL_TO_PASS and PASS_TO_PASS test passes.

Publishes ``swe/patch_validations`` (one row per candidate patch). Instance images are reused
when present, else rebuilt from the instance's recorded install recipe. Finished checks are
journalled like instance validation, so a killed run resumes.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow

from skycurate.catalog import Catalog, DatasetRef, normalize_store
from skycurate.catalog.pins import FilePin, pin_file
from skycurate.errors import SkycurateError
from skycurate.flows._runtime import current_producer, dataset_task, run_dataset_task
from skycurate.schemas.swe import EnvRecipe, ValidationConfig
from skycurate.schemas.swe_flow import PatchValidationConfig

NAMESPACE = "swe"

PATCH_RESULT_SCHEMA = pa.schema([
    pa.field("patch_id", pa.string(), nullable=False),
    pa.field("instance_id", pa.string(), nullable=False),
    pa.field("model", pa.string()),
    pa.field("resolved", pa.bool_(), nullable=False),
    pa.field("reason", pa.string()),                      # why not resolved (null when resolved)
    pa.field("f2p_passed", pa.int64()),
    pa.field("f2p_total", pa.int64()),
    pa.field("p2p_passed", pa.int64()),
    pa.field("p2p_total", pa.int64()),
    pa.field("failing_tests", pa.list_(pa.string())),
    pa.field("log_path", pa.string()),
])


def load_patches(path: str) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SkycurateError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            patch = rec.get("patch", rec.get("model_patch"))
            if not isinstance(rec.get("instance_id"), str) or not isinstance(patch, str):
                raise SkycurateError(f"{path}:{n}: needs string fields instance_id and patch (or model_patch)")
            pid = str(rec.get("id") or f"{rec['instance_id']}#{hashlib.sha256(patch.encode()).hexdigest()[:10]}")
            out.append({"patch_id": pid, "instance_id": rec["instance_id"], "model": rec.get("model"), "patch": patch})
    return out


def check_patch(p: dict[str, Any], inst: dict[str, Any] | None, cfg: ValidationConfig, log_dir: Path) -> dict:
    from skycurate.sandbox.errors import BuildError, PatchError
    from skycurate.sandbox.images import build_env_image, build_instance_image, image_exists
    from skycurate.sandbox.run import run_tests

    base = {"patch_id": p["patch_id"], "instance_id": p["instance_id"], "model": p.get("model"), "resolved": False,
            "reason": None, "f2p_passed": 0, "f2p_total": 0, "p2p_passed": 0, "p2p_total": 0, "failing_tests": [],
            "log_path": None}
    if inst is None:
        return {**base, "reason": "unknown_instance"}
    recipe = EnvRecipe.model_validate_json(inst["install_recipe"])
    tag = inst["image_tag"]
    if not image_exists(tag):
        try:
            env = build_env_image(recipe)
            tag = build_instance_image(env, inst["repo_path"], inst["base_commit"], recipe.install,
                                       inst["instance_id"]).tag
        except BuildError as e:
            return {**base, "reason": f"image_build_failed: {str(e)[:300]}"}
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{hashlib.sha256(p['patch_id'].encode()).hexdigest()[:16]}.log"
    base["log_path"] = str(log_path)
    f2p, p2p = list(inst["FAIL_TO_PASS"] or []), list(inst["PASS_TO_PASS"] or [])
    base.update(f2p_total=len(f2p), p2p_total=len(p2p))
    try:
        result = run_tests(tag, patches=[inst["test_patch"], p["patch"]], test_cmd=recipe.test_cmd,
                           test_files=list(inst["test_files"] or []), limits=cfg.limits, log_path=log_path)
    except PatchError:
        return {**base, "reason": "patch_does_not_apply"}
    if result.timed_out:
        return {**base, "reason": "timeout"}
    ok = {t for t, s in result.statuses.items() if s in ("PASSED", "XFAIL")}
    failing = sorted(t for t in f2p + p2p if t not in ok)
    base.update(f2p_passed=sum(t in ok for t in f2p), p2p_passed=sum(t in ok for t in p2p), failing_tests=failing)
    if failing:
        return {**base, "reason": "tests_fail"}
    return {**base, "resolved": True}


@dataset_task(code=["skycurate.flows.swe_patches", "skycurate.sandbox"])
def validate_patches(store: str, instances: DatasetRef, patches: FilePin,
                     cfg: ValidationConfig) -> DatasetRef:
    catalog = Catalog(store)
    by_id = {r["instance_id"]: r for r in catalog.open(instances).to_table().to_pylist()}
    cands = load_patches(patches.path)
    work = Path(catalog.root) / "_work" / NAMESPACE / f"patches-{patches.sha256[:16]}"
    done_dir = work / "results"
    done_dir.mkdir(parents=True, exist_ok=True)

    def one(p: dict) -> dict:
        key = hashlib.sha256(json.dumps([p["patch_id"], p["patch"], instances.label,
                                         cfg.limits.model_dump()]).encode()).hexdigest()[:24]
        done = done_dir / f"{key}.json"
        if done.exists():
            return json.loads(done.read_text())
        out = check_patch(p, by_id.get(p["instance_id"]), cfg, work / "logs")
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(out))
        tmp.replace(done)
        return out

    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        rows = list(pool.map(one, cands))
    resolved = sum(r["resolved"] for r in rows)
    stats = {"patches": len(rows), "resolved": resolved,
             "resolve_rate": resolved / len(rows) if rows else 0.0,
             "by_reason": {k: sum(1 for r in rows if r["reason"] == k) for k in {r["reason"] for r in rows} if k}}
    return catalog.publish(f"{NAMESPACE}/patch_validations", pa.Table.from_pylist(rows, PATCH_RESULT_SCHEMA),
                           [instances, patches.parent("patches")],
                           current_producer(cfg), stats)


@flow(name="swe-validate-patches")
def swe_validate_patches_flow(store: str | None = None, config: PatchValidationConfig = PatchValidationConfig(),
                              force: bool = False) -> dict[str, Any]:
    """Candidate patches -> resolved or not, per validated instance."""
    store = normalize_store(store)
    cfg = config
    if not cfg.instances or not cfg.patches:
        raise SkycurateError("pass --instances swe/instances@vN and --patches FILE")
    catalog = Catalog(store)
    instances = catalog.resolve(cfg.instances)
    ref = run_dataset_task(validate_patches, store=store, force=force, instances=instances,
                           patches=pin_file(cfg.patches), cfg=cfg.validation)
    m = catalog.manifest(ref)
    funnel = [{"stage": "patches", "rows_in": m.stats["patches"], "rows_out": m.stats["resolved"],
               "rejected": m.stats["patches"] - m.stats["resolved"], "quarantined": 0}]
    return {"datasets": {"patch_validations": ref}, "funnel": funnel}
