"""Candidate patches (agent trajectories, model predictions) checked against validated instances.

Each patch goes through the same runner as the gold patch (``validate.run_suite``: one fresh
container, test_patch + candidate applied, the instance's test files) and is graded by
``grading.grade_patch``: resolved only if every FAIL_TO_PASS and PASS_TO_PASS test passes.
Finished checks are journalled, so a killed run resumes without redoing them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from skycurate.errors import SkycurateError
from skycurate.schemas.swe import EnvRecipe, ValidationConfig
from skycurate.stages.journal import Journal
from skycurate.stages.swe.grading import grade_patch
from skycurate.stages.swe.validate import run_suite

UNKNOWN_INSTANCE = "unknown_instance"


def load_patches(path: str) -> list[dict[str, Any]]:
    """Read a JSONL of candidate patches: ``instance_id`` and ``patch`` (or SWE-bench's
    ``model_patch``), optional ``id`` and ``model``. A bad line stops with its line number."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SkycurateError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            patch = rec.get("patch", rec.get("model_patch")) if isinstance(rec, dict) else None
            if not isinstance(patch, str) or not isinstance(rec.get("instance_id"), str):
                raise SkycurateError(f"{path}:{n}: needs string fields instance_id and patch (or model_patch)")
            pid = str(rec.get("id") or f"{rec['instance_id']}#{hashlib.sha256(patch.encode()).hexdigest()[:10]}")
            out.append({"patch_id": pid, "instance_id": rec["instance_id"], "model": rec.get("model"), "patch": patch})
    return out


def _instance_image(inst: dict[str, Any], recipe: EnvRecipe) -> str:
    """The instance's image: reused when still present, else rebuilt from its recorded recipe."""
    from skycurate.sandbox.images import build_env_image, build_instance_image, image_exists

    if image_exists(inst["image_tag"]):
        return inst["image_tag"]
    env = build_env_image(recipe)
    return build_instance_image(env, inst["repo_path"], inst["base_commit"], recipe.install, inst["instance_id"]).tag


def check_patch(p: dict[str, Any], inst: dict[str, Any] | None, cfg: ValidationConfig, log_dir: Path) -> dict:
    """One candidate patch -> a ``PATCH_RESULT_SCHEMA`` row (never raises for a bad patch)."""
    from skycurate.sandbox.errors import BuildError

    row = {"patch_id": p["patch_id"], "instance_id": p["instance_id"], "model": p.get("model"), "resolved": False,
           "reason": None, "f2p_passed": 0, "f2p_total": 0, "p2p_passed": 0, "p2p_total": 0, "failing_tests": [],
           "log_path": None}
    if inst is None:
        return {**row, "reason": UNKNOWN_INSTANCE}
    recipe = EnvRecipe.model_validate_json(inst["install_recipe"])
    f2p, p2p = list(inst["FAIL_TO_PASS"] or []), list(inst["PASS_TO_PASS"] or [])
    row.update(f2p_total=len(f2p), p2p_total=len(p2p))
    try:
        tag = _instance_image(inst, recipe)
    except BuildError as e:
        return {**row, "reason": f"image_build_failed: {str(e)[:300]}"}
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{hashlib.sha256(p['patch_id'].encode()).hexdigest()[:16]}.log"
    row["log_path"] = str(log_path)
    run = run_suite(tag, recipe, list(inst["test_files"] or []), [inst["test_patch"], p["patch"]], cfg, log_path,
                    "candidate", "candidate patch", "patch_does_not_apply")
    if run.reason:
        return {**row, "reason": run.reason}
    grade = grade_patch(f2p, p2p, run.statuses)
    row.update(f2p_passed=grade.f2p_passed, p2p_passed=grade.p2p_passed, failing_tests=grade.failing,
               resolved=grade.resolved, reason=None if grade.resolved else "tests_fail")
    return row


def check_key(p: dict[str, Any], instances_label: str, cfg: ValidationConfig) -> str:
    """What decides a check's result: the patch, the instances version and the sandbox limits."""
    payload = [p["patch_id"], p["patch"], instances_label, cfg.limits.model_dump()]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:24]


def check_patches(patches: Sequence[dict[str, Any]], instances: dict[str, dict[str, Any]], instances_label: str,
                  cfg: ValidationConfig, work: Path,
                  progress: Callable[[int, int, dict], None] | None = None) -> list[dict]:
    """Check every patch with ``cfg.workers`` in parallel, reusing journalled results; rows in
    patch order."""
    journal = Journal(work / "results")
    finished = itertools.count(1)

    def one(p: dict) -> dict:
        key = check_key(p, instances_label, cfg)
        row = journal.get(key)
        if row is None:
            row = check_patch(p, instances.get(p["instance_id"]), cfg, work / "logs")
            journal.put(key, row)
        n = next(finished)
        if progress:
            progress(n, len(patches), row)
        return row

    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        return list(pool.map(one, patches))
