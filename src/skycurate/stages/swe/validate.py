"""Runtime validation of mined candidates in Docker: recipe -> env image -> instance image ->
pre run (test_patch) -> post runs (test_patch + gold patch, repeated) -> verdict.

One candidate in, one outcome out (an instance row or a rejected row with stage and reason);
bad candidates never raise. Infrastructure failures (the daemon going away) do raise
``SandboxError``: the candidate is not at fault, and a rerun picks up where this one stopped.

Crash safety: every finished outcome is written as ``<work>/results/<key>.json`` (atomic rename),
keyed by a hash of the candidate, the validation settings and the version of the code that decides
outcomes; ``validate_all`` skips keys that are already there (unless forced), so a killed run redoes
only the instances it had not finished, and an upgrade redoes them all. A daemon failure is no
outcome: it raises, nothing is journalled for that candidate, and the next run retries it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skycurate.schemas.swe import EnvRecipe, ValidationConfig
from skycurate.stages.accounting import FunnelStep
from skycurate.stages.journal import Journal
from skycurate.stages.swe.grading import classify, collection_errors
from skycurate.stages.swe.pythons import AUTO, DEFAULT_PYTHON

log = logging.getLogger(__name__)

STAGE_RECIPE, STAGE_INSTALL, STAGE_VALIDATE = "recipe", "install", "validate"


def outcome_key(candidate: dict[str, Any], cfg: ValidationConfig, python: str) -> str:
    """The journal key of a candidate's outcome: everything that decides it, this code's version included."""
    from skycurate.codehash import module_code_version

    payload = {k: candidate.get(k) for k in ("instance_id", "repo", "base_commit", "patch", "test_patch",
                                             "test_files")}
    payload["code"] = module_code_version(__name__)
    payload["cfg"] = cfg.model_dump(mode="json", exclude={"workers", "keep_images", "docker_hosts"})
    payload["python"] = python
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def safe_name(instance_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", instance_id)[:120]


def _reject(c: dict, stage: str, reason: str, detail: str, log_dir: Path) -> dict:
    return {"kind": "rejected", "row": {"instance_id": c["instance_id"], "repo": c["repo"], "stage": stage,
                                        "reason": reason, "detail": (detail or "")[-2000:], "log_dir": str(log_dir)}}


@dataclass
class SuiteRun:
    """One test run in a fresh container: the statuses, or why there are none."""

    statuses: dict[str, str] | None
    reason: str | None = None
    detail: str = ""
    record: dict[str, Any] | None = None   # for ``runs.json``; None when no test ran (a patch did not apply)
    started: bool = True                   # pytest got as far as its "test session starts" line


def run_suite(tag: str, recipe: EnvRecipe, tests: list[str], patches: list[str], cfg: ValidationConfig,
              log_path: Path, run: str, what: str, patch_reason: str) -> SuiteRun:
    """The one runner for gold and candidate patches (SWE-bench's ``run_instance`` idea): apply
    ``patches``, run the instance's tests, and turn a timeout, an OOM kill, a patch that does not
    apply (``patch_reason``) or a run without results into a reason."""
    from skycurate.sandbox.errors import PatchError
    from skycurate.sandbox.run import run_tests
    from skycurate.stages.swe.patch_split import pytest_targets

    try:
        result = run_tests(tag, patches=patches, test_cmd=recipe.test_cmd, test_files=pytest_targets(tests),
                           limits=cfg.limits, log_path=log_path)
    except PatchError as e:
        return SuiteRun(None, patch_reason, str(e))
    record = {"run": run, "exit": result.exit_code, "seconds": round(result.duration_s, 2),
              "statuses": result.statuses}
    if result.timed_out:
        return SuiteRun(None, "timeout", f"{what} run killed after the timeout", record)
    if result.oom_killed:
        return SuiteRun(None, "out_of_memory", f"{what} run killed by the memory limit", record)
    if not result.statuses:
        tail = "\n".join(result.log_text.strip().splitlines()[-15:])
        return SuiteRun(None, "tests_did_not_run",
                        f"{what} run reported no test results (exit {result.exit_code}):\n{tail}", record,
                        started="test session starts" in result.log_text)
    return SuiteRun(result.statuses, record=record)


def env_label(recipe: EnvRecipe) -> str:
    """How an environment is named in ``env_attempts``: its Python and recipe (``py3.9 declared+pytest<9``)."""
    return f"py{recipe.python} {recipe.name}"


def _build(c: dict, recipe: EnvRecipe, n: int, log_dir: Path, attempts: list[str], keep: bool) -> Any:
    """The env and instance images of ``recipe`` (ImageInfo), or None with the reason in ``attempts``."""
    from skycurate.sandbox.errors import BuildError, InstallError
    from skycurate.sandbox.images import build_env_image, build_instance_image

    try:
        env_tag = build_env_image(recipe, log_path=log_dir / f"env-{n}.log")
        return build_instance_image(env_tag, c["repo_path"], c["base_commit"], recipe.install, c["instance_id"],
                                    log_path=log_dir / f"instance-{n}.log", keep=keep)
    except InstallError as e:
        attempts.append(f"{env_label(recipe)}: install: {str(e)[:400]}")
    except BuildError as e:
        attempts.append(f"{env_label(recipe)}: build: {str(e)[:400]}")
    return None


#: pytest's exit codes for "internal error" and "usage error": it could not even start (a conftest
#: hook or an option today's pytest no longer knows), so no test ran; the environment is at fault.
#: So is a run that never printed "test session starts" (pytest died parsing its config: exit 1).
PYTEST_COULD_NOT_START = (3, 4)


class _WrongEnvironment(Exception):
    """pytest could not start, or the gold patch's run could not import some test modules: try
    another environment."""


def _runs(c: dict, cfg: ValidationConfig, info: Any, recipe: EnvRecipe, log_dir: Path,
          runs: list[dict]) -> dict:
    """pre run, post runs, verdict -> outcome; ``_WrongEnvironment`` when the first post run shows
    collection errors (the environment, not the fix, is at fault)."""
    tests = list(c.get("test_files") or [])
    pre = run_suite(info.tag, recipe, tests, [c["test_patch"]], cfg, log_dir / "pre.log", "pre", "pre-patch",
                    "test_patch_does_not_apply")
    runs += [pre.record] if pre.record else []
    if pre.reason == "tests_did_not_run" and pre.record and (pre.record["exit"] in PYTEST_COULD_NOT_START
                                                             or not pre.started):
        from skycurate.sandbox.image_build import failure_cause

        raise _WrongEnvironment(f"pytest could not start (exit {pre.record['exit']}): "
                                f"{failure_cause(pre.detail)[:200]}")
    if pre.reason:
        return _reject(c, STAGE_VALIDATE, pre.reason, pre.detail, log_dir)
    posts = []
    for k in range(cfg.post_repeats):
        post = run_suite(info.tag, recipe, tests, [c["test_patch"], c["patch"]], cfg,
                         log_dir / f"post-{k + 1}.log", f"post-{k + 1}", f"post-patch #{k + 1}",
                         "patch_does_not_apply")
        runs += [post.record] if post.record else []
        if post.reason:
            return _reject(c, STAGE_VALIDATE, post.reason, post.detail, log_dir)
        if k == 0 and collection_errors(post.statuses):
            raise _WrongEnvironment(", ".join(collection_errors(post.statuses)[:5]))
        posts.append(post.statuses)
    verdict = classify(pre.statuses, posts)
    (log_dir / "runs.json").write_text(json.dumps(runs, indent=1))
    if not verdict.valid:
        out = _reject(c, STAGE_VALIDATE, verdict.reason, verdict.detail, log_dir)
        out["flaky"] = verdict.flaky
        return out
    row = {k: c.get(k) for k in ("instance_id", "repo", "base_commit", "patch", "test_patch",
                                 "problem_statement", "hints_text", "created_at", "version",
                                 "environment_setup_commit", "problem_source", "issue_numbers", "issue_link",
                                 "repo_path", "test_files")}
    row.update(FAIL_TO_PASS=verdict.fail_to_pass, PASS_TO_PASS=verdict.pass_to_pass,
               image_tag=info.tag, image_digest=info.digest, env_image_tag=info.env_tag,
               install_recipe=recipe.model_dump_json(), runs=json.dumps(runs), flaky_tests=verdict.flaky,
               log_dir=str(log_dir))
    return {"kind": "instance", "row": row, "image_bytes": info.extra_bytes_over_env,
            "checkout_bytes": info.checkout_bytes}


def validate_candidate(c: dict[str, Any], cfg: ValidationConfig, log_dir: Path, python: str = "auto") -> dict:
    """One candidate -> ``{"kind": "instance"|"rejected", "row": {...}}``.

    Environment search (``recipe.environments``): the inferred recipes on the first-choice Python
    (by ``requires-python`` and the commit's date, ``pythons``), then on the fallback Pythons; the
    first whose images build is run. If the gold patch's run cannot even import some test modules,
    that environment is the problem, not the fix: the same recipe with each older pytest era
    (``recipe.older_pytest``) comes next, then the same recipe on the other Pythons, then the
    remaining environments. At most
    ``cfg.max_environments`` are built. Every environment tried before the one that ran is recorded
    (``env_attempts`` on the instance, the rejection's detail otherwise). Instance images are
    removed afterwards unless ``cfg.keep_images``."""
    from skycurate.sandbox.images import remove_image
    from skycurate.stages.swe.recipe import environments, older_pytest, precheck

    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        recipes = environments(c["repo_path"], c["base_commit"], python)
    except Exception as e:  # noqa: BLE001 - a repo we cannot read a recipe from is this candidate's problem
        return _reject(c, STAGE_RECIPE, "no_recipe", f"{type(e).__name__}: {e}", log_dir)
    if not recipes:
        return _reject(c, STAGE_RECIPE, "no_recipe", "no install recipe could be inferred", log_dir)
    pythons = list(dict.fromkeys(r.python for r in recipes))
    queue, attempts, tried, built, n = list(recipes), [], set(), 0, 0
    while queue:
        recipe = queue.pop(0)
        key = (recipe.python, tuple(recipe.requirements), tuple(recipe.install))
        if key in tried:
            continue
        tried.add(key)
        reason = precheck(recipe)
        if reason:
            attempts.append(f"{env_label(recipe)}: precheck: {reason}")
            continue
        if n >= cfg.max_environments:
            attempts.append(f"stopped after {n} environments (validation.max_environments); "
                            f"{len(queue) + 1} not tried")
            break
        n += 1
        info = _build(c, recipe, n - 1, log_dir, attempts, cfg.keep_images)
        if info is None:
            continue
        built += 1
        run_dir = log_dir if built == 1 else log_dir / f"env-{n - 1}"
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            out = _runs(c, cfg, info, recipe, run_dir, [])
        except _WrongEnvironment as e:
            # The recipe installed, its tests do not import: an older pytest, then another Python
            # (removed stdlib modules, syntax), before the other recipes of this Python.
            attempts.append(f"{env_label(recipe)}: "
                            + (str(e) if str(e).startswith("pytest could not start")
                               else f"collection errors with the gold patch: {e}"))
            queue = older_pytest(recipe) + [recipe.model_copy(update={"python": py}) for py in pythons
                                            if py != recipe.python] + queue
            continue
        finally:
            if not cfg.keep_images:
                remove_image(info.tag)
        if out["kind"] == "instance":
            out["row"]["env_attempts"] = attempts
            out["row"]["python"] = recipe.python
        elif attempts:
            out["row"]["detail"] = ("environments tried before:\n" + "\n".join(attempts) + "\n\n"
                                    + (out["row"]["detail"] or ""))[-2000:]
        return out
    if built:
        return _reject(c, STAGE_VALIDATE, "collection_error",
                       "no environment could collect the tests:\n" + "\n".join(attempts), log_dir)
    reason = "precheck_failed" if attempts and all(": precheck: " in a for a in attempts) else "install_failed"
    return _reject(c, STAGE_INSTALL, reason, "\n".join(attempts), log_dir)


def validate_all(candidates: Iterable[dict[str, Any]], cfg: ValidationConfig, work: Path, python: str = "auto",
                 progress: Callable[[int, int, dict], None] | None = None, force: bool = False) -> list[dict]:
    """Validate every candidate with ``cfg.workers`` in parallel; finished outcomes are journalled
    under ``work/results`` and reused (``force``: validated again). Returns the outcomes in
    candidate order."""
    from skycurate.sandbox.image_build import run_id

    journal, logs_dir = Journal(work / "results"), work / "logs"
    todo, outcomes = [], {}
    cands = list(candidates)
    log.info("swe validation: sandbox run %s (skycurate sandbox cleanup --run %s removes what it leaves)",
             run_id(), run_id())
    for i, c in enumerate(cands):
        key = outcome_key(c, cfg, python)
        done = None if force else journal.get(key)
        if done is not None:
            outcomes[i] = done
        else:
            todo.append((i, c, key))
    if outcomes:
        log.info("swe validation: %d of %d candidates already validated; %d to go", len(outcomes), len(cands),
                 len(todo))

    from skycurate.sandbox.daemon import use_host
    from skycurate.sandbox.images import ensure_base_image

    hosts: list[str | None] = list(cfg.docker_hosts) or [None]
    from skycurate.sandbox.run import cleanup_containers

    for host in hosts:   # fail fast when no base image can be had; the fallback Pythons' are built on first use
        with use_host(host):
            ensure_base_image(DEFAULT_PYTHON if python == AUTO else python)
            swept = cleanup_containers()   # what killed runs of this host left running (never a live run's)
            if swept:
                log.info("swe validation: removed %d container(s) left by ended runs", swept)
    slots = threading.local()
    counter = itertools.count()

    def one(i: int, c: dict, key: str) -> tuple[int, dict]:
        if not hasattr(slots, "host"):  # each worker thread sticks to one host, round-robin
            slots.host = hosts[next(counter) % len(hosts)]
        t0 = time.perf_counter()
        with use_host(slots.host):
            out = validate_candidate(c, cfg, logs_dir / safe_name(c["instance_id"]), python)
        out["seconds"] = round(time.perf_counter() - t0, 2)
        journal.put(key, out)
        return i, out

    with ThreadPoolExecutor(max_workers=cfg.workers * len(hosts)) as pool:
        futures = [pool.submit(one, *t) for t in todo]
        for n, fut in enumerate(as_completed(futures), 1):
            i, out = fut.result()  # SandboxError (daemon gone) propagates: finished work is journalled
            outcomes[i] = out
            if progress:
                progress(n, len(todo), out)
    return [outcomes[i] for i in range(len(cands))]


def validation_funnel(n_repos: int, repos_rejected: int, n_candidates: int, outcomes: list[dict]) -> list[dict]:
    """repos -> candidates -> installable -> validated (rows = repos for the first step, candidates after)."""
    not_installable = sum(1 for o in outcomes if o["kind"] == "rejected"
                          and o["row"]["stage"] in (STAGE_RECIPE, STAGE_INSTALL))
    invalid = sum(1 for o in outcomes if o["kind"] == "rejected" and o["row"]["stage"] == STAGE_VALIDATE)
    installable = n_candidates - not_installable
    steps = [
        FunnelStep(stage="repos", rows_in=n_repos, rows_out=n_repos - repos_rejected, rejected=repos_rejected),
        FunnelStep(stage="candidates", rows_in=n_candidates, rows_out=n_candidates),
        FunnelStep(stage="installable", rows_in=n_candidates, rows_out=installable, rejected=not_installable),
        FunnelStep(stage="validated", rows_in=installable, rows_out=installable - invalid, rejected=invalid),
    ]
    return [s.model_dump() for s in steps]
