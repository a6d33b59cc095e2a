"""Runtime validation of mined candidates in Docker: recipe -> env image -> instance image ->
pre run (test_patch) -> post runs (test_patch + gold patch, repeated) -> verdict.

One candidate in, one outcome out (an instance row or a rejected row with stage and reason);
bad candidates never raise. Infrastructure failures (the daemon going away) do raise
``SandboxError``: the candidate is not at fault, and a rerun picks up where this one stopped.

Crash safety: every finished outcome is written as ``<work>/results/<key>.json`` (atomic rename),
keyed by a hash of the candidate and the validation settings; ``validate_all`` skips keys that
are already there, so a killed run redoes only the instances it had not finished.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from skycurate.schemas.swe import EnvRecipe, ValidationConfig
from skycurate.stages.swe.validation import classify

log = logging.getLogger(__name__)

STAGE_RECIPE, STAGE_INSTALL, STAGE_VALIDATE = "recipe", "install", "validate"


def outcome_key(candidate: dict[str, Any], cfg: ValidationConfig, python: str) -> str:
    payload = {k: candidate.get(k) for k in ("instance_id", "repo", "base_commit", "patch", "test_patch",
                                             "test_files")}
    payload["cfg"] = cfg.model_dump(mode="json", exclude={"workers", "keep_images", "docker_hosts"})
    payload["python"] = python
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def safe_name(instance_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", instance_id)[:120]


def _reject(c: dict, stage: str, reason: str, detail: str, log_dir: Path) -> dict:
    return {"kind": "rejected", "row": {"instance_id": c["instance_id"], "repo": c["repo"], "stage": stage,
                                        "reason": reason, "detail": (detail or "")[-2000:], "log_dir": str(log_dir)}}


def _statuses_or_reason(result, what: str) -> tuple[dict[str, str] | None, str | None, str]:
    if result.timed_out:
        return None, "timeout", f"{what} run killed after the timeout"
    if result.oom_killed:
        return None, "out_of_memory", f"{what} run killed by the memory limit"
    if not result.statuses:
        tail = "\n".join(result.log_text.strip().splitlines()[-15:])
        return None, "tests_did_not_run", f"{what} run reported no test results (exit {result.exit_code}):\n{tail}"
    return result.statuses, None, ""


def _build(c: dict, recipes: list[EnvRecipe], log_dir: Path) -> tuple[Any, EnvRecipe | None, list[str]]:
    """The first recipe whose env and instance images build: (ImageInfo, recipe, attempts)."""
    from skycurate.sandbox.errors import BuildError, InstallError
    from skycurate.sandbox.images import build_env_image, build_instance_image
    from skycurate.stages.swe.recipe import precheck

    attempts: list[str] = []
    for i, recipe in enumerate(recipes):
        reason = precheck(recipe)
        if reason:
            attempts.append(f"{recipe.name}: precheck: {reason}")
            continue
        try:
            env_tag = build_env_image(recipe, log_path=log_dir / f"env-{i}.log")
            info = build_instance_image(env_tag, c["repo_path"], c["base_commit"], recipe.install, c["instance_id"],
                                        log_path=log_dir / f"instance-{i}.log")
            return info, recipe, attempts
        except InstallError as e:
            attempts.append(f"{recipe.name}: install: {str(e)[:400]}")
        except BuildError as e:
            attempts.append(f"{recipe.name}: build: {str(e)[:400]}")
    return None, None, attempts


def validate_candidate(c: dict[str, Any], cfg: ValidationConfig, log_dir: Path, python: str = "3.11") -> dict:
    """One candidate -> ``{"kind": "instance"|"rejected", "row": {...}}``. Instance images are removed
    afterwards unless ``cfg.keep_images``."""
    from skycurate.sandbox.errors import PatchError
    from skycurate.sandbox.images import remove_image
    from skycurate.sandbox.run import run_tests
    from skycurate.stages.swe.recipe import infer_recipes

    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        recipes = [r.model_copy(update={"python": python}) for r in infer_recipes(c["repo_path"], c["base_commit"])]
    except Exception as e:  # noqa: BLE001 - a repo we cannot read a recipe from is this candidate's problem
        return _reject(c, STAGE_RECIPE, "no_recipe", f"{type(e).__name__}: {e}", log_dir)
    if not recipes:
        return _reject(c, STAGE_RECIPE, "no_recipe", "no install recipe could be inferred", log_dir)
    info, recipe, attempts = _build(c, recipes, log_dir)
    if info is None:
        reason = "precheck_failed" if attempts and all(": precheck: " in a for a in attempts) else "install_failed"
        return _reject(c, STAGE_INSTALL, reason, "\n".join(attempts), log_dir)
    tests = list(c.get("test_files") or [])
    runs: list[dict[str, Any]] = []
    try:
        try:
            pre = run_tests(info.tag, patches=[c["test_patch"]], test_cmd=recipe.test_cmd, test_files=tests,
                            limits=cfg.limits, log_path=log_dir / "pre.log")
        except PatchError as e:
            return _reject(c, STAGE_VALIDATE, "test_patch_does_not_apply", str(e), log_dir)
        runs.append({"run": "pre", "exit": pre.exit_code, "seconds": round(pre.duration_s, 2),
                     "statuses": pre.statuses})
        pre_statuses, reason, detail = _statuses_or_reason(pre, "pre-patch")
        if reason:
            return _reject(c, STAGE_VALIDATE, reason, detail, log_dir)
        posts = []
        for k in range(cfg.post_repeats):
            try:
                post = run_tests(info.tag, patches=[c["test_patch"], c["patch"]], test_cmd=recipe.test_cmd,
                                 test_files=tests, limits=cfg.limits, log_path=log_dir / f"post-{k + 1}.log")
            except PatchError as e:
                return _reject(c, STAGE_VALIDATE, "patch_does_not_apply", str(e), log_dir)
            runs.append({"run": f"post-{k + 1}", "exit": post.exit_code, "seconds": round(post.duration_s, 2),
                         "statuses": post.statuses})
            statuses, reason, detail = _statuses_or_reason(post, f"post-patch #{k + 1}")
            if reason:
                return _reject(c, STAGE_VALIDATE, reason, detail, log_dir)
            posts.append(statuses)
        verdict = classify(pre_statuses, posts)
        (log_dir / "runs.json").write_text(json.dumps(runs, indent=1))
        if not verdict.valid:
            out = _reject(c, STAGE_VALIDATE, verdict.reason, verdict.detail, log_dir)
            out["flaky"] = verdict.flaky
            return out
        row = {k: c.get(k) for k in ("instance_id", "repo", "base_commit", "patch", "test_patch",
                                     "problem_statement", "hints_text", "created_at", "version",
                                     "environment_setup_commit", "problem_source", "repo_path", "test_files")}
        row.update(FAIL_TO_PASS=verdict.fail_to_pass, PASS_TO_PASS=verdict.pass_to_pass,
                   image_tag=info.tag, image_digest=info.digest, env_image_tag=info.env_tag,
                   install_recipe=recipe.model_dump_json(), runs=json.dumps(runs), flaky_tests=verdict.flaky,
                   log_dir=str(log_dir))
        return {"kind": "instance", "row": row, "image_bytes": info.extra_bytes_over_env,
                "checkout_bytes": info.checkout_bytes}
    finally:
        if not cfg.keep_images:
            remove_image(info.tag)


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def validate_all(candidates: Iterable[dict[str, Any]], cfg: ValidationConfig, work: Path, python: str = "3.11",
                 progress: Callable[[int, int, dict], None] | None = None) -> list[dict]:
    """Validate every candidate with ``cfg.workers`` in parallel; finished outcomes are journalled
    under ``work/results`` and reused. Returns the outcomes in candidate order."""
    results_dir, logs_dir = work / "results", work / "logs"
    results_dir.mkdir(parents=True, exist_ok=True)
    todo, outcomes = [], {}
    cands = list(candidates)
    for i, c in enumerate(cands):
        key = outcome_key(c, cfg, python)
        done = results_dir / f"{key}.json"
        if done.exists():
            outcomes[i] = json.loads(done.read_text())
        else:
            todo.append((i, c, key))
    if outcomes:
        log.info("swe validation: %d of %d candidates already validated; %d to go", len(outcomes), len(cands),
                 len(todo))

    from skycurate.sandbox.daemon import use_host
    from skycurate.sandbox.images import ensure_base_image

    hosts: list[str | None] = list(cfg.docker_hosts) or [None]
    for host in hosts:
        with use_host(host):
            ensure_base_image(python)
    slots = threading.local()
    counter = itertools.count()

    def one(i: int, c: dict, key: str) -> tuple[int, dict]:
        if not hasattr(slots, "host"):  # each worker thread sticks to one host, round-robin
            slots.host = hosts[next(counter) % len(hosts)]
        t0 = time.perf_counter()
        with use_host(slots.host):
            out = validate_candidate(c, cfg, logs_dir / safe_name(c["instance_id"]), python)
        out["seconds"] = round(time.perf_counter() - t0, 2)
        _write_atomic(results_dir / f"{key}.json", out)
        return i, out

    with ThreadPoolExecutor(max_workers=cfg.workers * len(hosts)) as pool:
        futures = [pool.submit(one, *t) for t in todo]
        for n, fut in enumerate(as_completed(futures), 1):
            i, out = fut.result()  # SandboxError (daemon gone) propagates: finished work is journalled
            outcomes[i] = out
            if progress:
                progress(n, len(todo), out)
    return [outcomes[i] for i in range(len(cands))]
