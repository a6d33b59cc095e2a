"""Re-check the SWE truth set on the host: do its FAIL_TO_PASS tests fail before and pass after?

For every fix in ``benchmarks/data/swe_real_truth.json`` (not a benchmark of skycurate; nothing of
skycurate is used): a working clone of the repository at its recorded head and a venv per
(repository, pytest version) with ``pytest==<pytest>`` + the entry's ``test_requirements`` +
``pip install --no-deps -e <clone>`` (Python 3.11). Then, in the clone:

  pre:  checkout base_commit, apply the commit's test-file changes only (``git diff base fix --
        <test_files> | git apply``), run ``python -m pytest -rA -p no:cacheprovider <pytest_args>``
        twice;
  post: checkout fix_commit, run the same twice.

FAIL_TO_PASS = tests that pass in both post runs and passed in neither pre run (a test absent
before, e.g. a file that failed to import, counts as not passed). Outcomes come from a small
pytest plugin (node id -> outcome), not from parsing the log. As root, with ``unshare`` and
``setpriv`` present, the runs have no network and run as uid 1000, like the sandbox (``--no-sandbox``
turns that off). The result is compared with the truth: ``equal`` or how it differs.

    .venv/bin/python benchmarks/swe_real_verify.py [--work .bench/swe-real/verify] [--only click,pyjwt]
                                                   [--fix 150d1071d6] [--runs 2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from swe_real_repos import MIRRORS, TRUTH, git, load_truth, rebuild_clones

PLUGIN = '''"""pytest plugin: {nodeid: outcome} to $SWE_REPORT."""
import json, os
_out = {}
def pytest_collectreport(report):
    if report.failed:
        _out["<collect>:" + report.nodeid] = "collect_error"
def pytest_runtest_logreport(report):
    nid = report.nodeid
    if report.when == "setup":
        if report.failed: _out[nid] = "error"
        elif report.skipped: _out[nid] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
    elif report.when == "call":
        if hasattr(report, "wasxfail"): _out[nid] = "xpassed" if report.passed else "xfailed"
        elif report.failed: _out[nid] = "failed"
        elif report.skipped: _out[nid] = "skipped"
        else: _out[nid] = "passed"
    elif report.when == "teardown" and report.failed:
        _out[nid] = "error"
def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("SWE_REPORT"):
        with open(os.environ["SWE_REPORT"], "w") as f:
            json.dump({"exit": int(exitstatus), "tests": _out}, f)
'''


def python311() -> str:
    for cand in ("python3.11", "/usr/bin/python3.11"):
        path = shutil.which(cand)
        if path:
            return path
    raise SystemExit("Python 3.11 not found")


def ensure_venv(work: Path, clone: Path, name: str, pytest_version: str, reqs: list[str]) -> Path:
    venv = work / "venvs" / f"{name}-pytest{pytest_version}"
    stamp = venv / ".swe-real-ok"
    if stamp.exists():
        return venv
    subprocess.run([python311(), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q", "install", "--disable-pip-version-check"]
    subprocess.run([*pip, f"pytest=={pytest_version}", *reqs], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(clone)], check=True)
    stamp.write_text(json.dumps({"pytest": pytest_version, "requirements": reqs}))
    return venv


def sandbox_prefix(enabled: bool) -> list[str]:
    if enabled and os.geteuid() == 0 and shutil.which("unshare") and shutil.which("setpriv"):
        return ["unshare", "-n", "setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"]
    return []


def run_pytest(venv: Path, clone: Path, files: list[str], work: Path, prefix: list[str], tag: str,
               timeout: int) -> dict:
    rep_dir = work / "reports"
    rep_dir.mkdir(parents=True, exist_ok=True)
    rep_dir.chmod(0o777)
    report = rep_dir / f"{os.getpid()}-{tag}.json"
    report.unlink(missing_ok=True)
    home = work / "home"
    home.mkdir(exist_ok=True)
    home.chmod(0o777)
    env = {**os.environ, "SWE_REPORT": str(report), "PYTHONPATH": str(work / "plugin"),
           "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(home)}
    env.pop("VIRTUAL_ENV", None)
    cmd = [*prefix, str(venv / "bin" / "python"), "-m", "pytest", "-rA", "--tb=short", "-p", "no:cacheprovider",
           "-p", "swe_report", *files]
    proc = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    (work / "logs").mkdir(exist_ok=True)
    (work / "logs" / f"{clone.name}-{tag}.log").write_text(proc.stdout + proc.stderr)
    if not report.exists():
        return {"exit": proc.returncode, "tests": {}}
    out = json.loads(report.read_text())
    report.unlink()
    return out


def checkout(clone: Path, commit: str) -> None:
    git("checkout", "-q", "-f", "--detach", commit, cwd=clone)
    git("clean", "-q", "-fd", cwd=clone)   # not -x: keeps the editable install's generated files


def verify_one(t: dict, clone: Path, venv: Path, work: Path, prefix: list[str], runs: int, timeout: int) -> dict:
    base, fix = t["base_commit"], t["fix_commit"]
    files = t.get("pytest_args") or [f for f in t["test_files"] if f.endswith(".py")]
    checkout(clone, base)
    diff = git("diff", "--binary", base, fix, "--", *t["test_files"], cwd=clone)
    proc = subprocess.run(["git", "apply", "--whitespace=nowarn"], cwd=clone, input=diff, text=True,
                          capture_output=True, check=False)
    if proc.returncode:
        return {"verdict": "test_patch_does_not_apply", "detail": proc.stderr[-300:]}
    t0 = time.perf_counter()
    pre = [run_pytest(venv, clone, files, work, prefix, f"{fix[:10]}-pre{i}", timeout)["tests"] for i in range(runs)]
    checkout(clone, fix)
    post = [run_pytest(venv, clone, files, work, prefix, f"{fix[:10]}-post{i}", timeout)["tests"]
            for i in range(runs)]
    seconds = time.perf_counter() - t0
    ok_post = [n for n in post[0] if not n.startswith("<collect>") and all(p.get(n) == "passed" for p in post)]
    f2p = sorted(n for n in ok_post if all(p.get(n) != "passed" for p in pre))
    want = set(t["fail_to_pass"])
    verdict = "equal" if set(f2p) == want else ("superset" if set(f2p) > want else
                                                ("subset" if set(f2p) < want else "differs"))
    return {"verdict": verdict, "fail_to_pass": f2p, "missing": sorted(want - set(f2p)),
            "extra": sorted(set(f2p) - want), "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", type=Path, default=TRUTH)
    ap.add_argument("--work", type=Path, default=REPO / ".bench" / "swe-real" / "verify",
                    help="working clones, venvs and logs (default %(default)s)")
    ap.add_argument("--mirrors", type=Path, default=MIRRORS)
    ap.add_argument("--only", help="repository names (owner/name or name), comma-separated")
    ap.add_argument("--fix", help="fix commit prefixes, comma-separated")
    ap.add_argument("--runs", type=int, default=2, help="pre and post runs each (default 2)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per pytest run")
    ap.add_argument("--no-sandbox", action="store_true", help="run with network and as the current user")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    repos, truth = load_truth(args.truth)
    if args.only:
        keep = set(args.only.split(","))
        truth = [t for t in truth if t["repo"] in keep or t["repo"].split("/")[1] in keep]
    if args.fix:
        prefixes = args.fix.split(",")
        truth = [t for t in truth if any(t["fix_commit"].startswith(p) for p in prefixes)]
    needed = {t["repo"] for t in truth}
    repos = [r for r in repos if r["repo"] in needed]
    work = args.work.resolve()
    (work / "plugin").mkdir(parents=True, exist_ok=True)
    (work / "plugin" / "swe_report.py").write_text(PLUGIN)
    rebuild_clones(work / "clones", repos, args.mirrors)
    prefix = sandbox_prefix(not args.no_sandbox)
    print(f"runs: {args.runs} pre + {args.runs} post; "
          f"{'no network, uid 1000' if prefix else 'network on, current user'}\n")
    results = []
    print(f"{'repository':30s} {'fix':10s} {'pytest':7s} {'truth':>5s} {'got':>5s} {'verdict':10s} seconds")
    for t in truth:
        name = t["repo"].split("/")[1]
        clone = work / "clones" / name
        reqs = t.get("test_requirements") or next((r.get("test_requirements", []) for r in repos
                                                   if r["repo"] == t["repo"]), [])
        try:
            venv = ensure_venv(work, clone, name, t["pytest"], reqs)
            res = verify_one(t, clone, venv, work, prefix, args.runs, args.timeout)
        except (subprocess.SubprocessError, RuntimeError, OSError) as exc:
            res = {"verdict": "error", "detail": f"{type(exc).__name__}: {exc}"[-300:]}
        results.append({"repo": t["repo"], "fix_commit": t["fix_commit"], **res})
        print(f"{t['repo']:30s} {t['fix_commit'][:10]:10s} {t['pytest']:7s} {len(t['fail_to_pass']):>5d} "
              f"{len(res.get('fail_to_pass', [])):>5d} {res['verdict']:10s} {res.get('seconds', '-')}", flush=True)
        for key in ("missing", "extra"):
            if res.get(key):
                print(f"    {key}: {res[key][:3]}{' ...' if len(res[key]) > 3 else ''}")
        if res.get("detail"):
            print(f"    {res['detail']}")
    for r in repos:   # leave the working clones at their heads
        git("checkout", "-q", "-f", r["head"], cwd=work / "clones" / r["repo"].split("/")[1])
    bad = [r for r in results if r["verdict"] != "equal"]
    print(f"\n{len(results) - len(bad)}/{len(results)} truth entries reproduced exactly")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
