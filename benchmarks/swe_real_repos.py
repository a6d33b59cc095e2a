"""The SWE miner on real repositories, scored against a hand-verified truth set.

Truth: ``benchmarks/data/swe_real_truth.json``, 29 issue-fixing commits of 7 pure-Python GitHub
repositories (pallets/click, jpadilla/pyjwt, tkem/cachetools, theskumar/python-dotenv,
marshmallow-code/marshmallow, pytest-dev/pluggy, tox-dev/platformdirs), each cloned at a recorded
HEAD. Every entry was checked by hand on the host (``benchmarks/swe_real_verify.py``): at the
first parent with only the commit's test-file changes applied, the ``fail_to_pass`` tests do not
pass (two runs); with the whole commit they pass (two runs). The link kinds are mixed on purpose:
``message`` (``Fix #N`` in the commit or merge message), ``merged_commit`` (a commit the merge
brought in says ``Fixes #N``), ``branch`` (only the merged branch's name holds the number) and
``pr_body`` (a squash merge ``Title (#PR)`` whose body names the issue; one of them without a
closing keyword).

What it runs and measures:
  1. ``--rebuild-clones DIR``: the 7 clones recreated at the recorded heads (from the ``fetch``
     mirrors in ``--mirrors`` when present, else from GitHub), ``origin`` set to the GitHub URL so
     the miner names them ``owner/name``;
  2. ``skycurate run swe --repos DIR/<name> ... --store STORE --json`` (the installed CLI in
     ``.venv``; Docker), timed as a whole; ``--max-repos N`` takes the first N repositories;
  3. reads ``swe/candidates``, ``swe/instances``, ``swe/rejected`` and ``swe/mine_rejected`` and
     prints per truth fix: found as a candidate (same repository and fix commit, else same base
     commit), validated, the miner's FAIL_TO_PASS against the truth (``equal``, ``superset``,
     ``subset``, ``differs``), and the rejection (stage: reason) when it was dropped or why it
     was never a candidate; then the totals: found %, validated %, install success of all
     candidates (not rejected at stage ``recipe``/``install``), validated instances with an empty
     FAIL_TO_PASS (must be 0) and wall time per validated instance.

The miner mines every linked commit of these histories, not only the truth (a few hundred
candidates, each validated in Docker): a full run takes hours; ``--max-repos`` and ``--config``
(e.g. ``validation: {workers: 2}``) size it. ``--skip-run`` scores a store from an earlier run.
``--dry-run`` checks the truth file and the clones only (no Docker, no skycurate run).

    .venv/bin/python benchmarks/swe_real_repos.py --rebuild-clones .bench/swe-real/repos --dry-run
    .venv/bin/python benchmarks/swe_real_repos.py --clones .bench/swe-real/repos \\
        [--store .bench/swe-real/store] [--max-repos N] [--config swe.yaml] [--skip-run] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TRUTH = BENCH_DIR / "data" / "swe_real_truth.json"
MIRRORS = Path("/work/.mirror")
LINKS = ("message", "merged_commit", "branch", "pr_body")
TEST_DIRS = frozenset({"test", "tests", "testing", "e2e"})
INSTALL_STAGES = ("recipe", "install")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def is_test_path(path: str) -> bool:
    """SWE-bench's path convention (what the truth's ``test_files`` follow)."""
    parts = path.split("/")
    base = parts[-1]
    return any(p in TEST_DIRS for p in parts[:-1]) \
        or (base.endswith(".py") and (base.startswith("test_") or base.endswith("_test.py"))) \
        or base in ("test.py", "tests.py", "conftest.py")


def git(*args: str, cwd: Path, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, errors="replace", check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {cwd}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


# ============================================================================ truth


def load_truth(path: Path) -> tuple[list[dict], list[dict]]:
    """(repos, instances); a bare list of instances (repos derived without heads) is accepted too."""
    data = json.loads(path.read_text())
    if isinstance(data, list):
        repos = {t["repo"]: {"repo": t["repo"], "url": t["url"], "head": None} for t in data}
        return list(repos.values()), data
    return data["repos"], data["instances"]


def check_truth(repos: list[dict], truth: list[dict]) -> list[str]:
    """Problems in the truth file itself (empty list: fine)."""
    problems = []
    names = {r["repo"] for r in repos}
    for r in repos:
        if not r.get("head") or not SHA_RE.match(r["head"]):
            problems.append(f"{r['repo']}: head is not a full sha")
        if r.get("url") != f"https://github.com/{r['repo']}.git":
            problems.append(f"{r['repo']}: url {r.get('url')!r} is not the GitHub URL")
    seen = set()
    for t in truth:
        key = f"{t.get('repo')}@{str(t.get('fix_commit'))[:10]}"
        for field in ("repo", "url", "fix_commit", "base_commit", "issue", "link", "fail_to_pass", "test_files",
                      "python", "pytest", "notes"):
            if field not in t:
                problems.append(f"{key}: no {field}")
        if t.get("repo") not in names:
            problems.append(f"{key}: repository not in 'repos'")
        for field in ("fix_commit", "base_commit"):
            if not SHA_RE.match(str(t.get(field, ""))):
                problems.append(f"{key}: {field} is not a full sha")
        if t.get("link") not in LINKS:
            problems.append(f"{key}: link {t.get('link')!r} not one of {LINKS}")
        if not t.get("fail_to_pass"):
            problems.append(f"{key}: empty fail_to_pass")
        if len(set(t.get("fail_to_pass", []))) != len(t.get("fail_to_pass", [])):
            problems.append(f"{key}: fail_to_pass has duplicates")
        files = t.get("test_files", [])
        if not files or not all(is_test_path(f) for f in files):
            problems.append(f"{key}: test_files empty or not test paths: {files}")
        for nid in t.get("fail_to_pass", []):
            if nid.split("::")[0] not in files:
                problems.append(f"{key}: {nid} is not in a changed test file")
        if key in seen:
            problems.append(f"{key}: listed twice")
        seen.add(key)
    per_repo = Counter(t["repo"] for t in truth)
    for name in names:
        if per_repo[name] < 2:
            problems.append(f"{name}: fewer than 2 truth fixes")
    return problems


def link_evidence(clone: Path, t: dict) -> bool:
    """Is the issue number where ``link`` says (read from git, independently of skycurate)?"""
    n = re.compile(rf"#{t['issue']}(?![0-9])")
    msg = git("log", "-1", "--format=%B", t["fix_commit"], cwd=clone)
    if t["link"] in ("message", "pr_body"):
        return n.search(msg) is not None
    if t["link"] == "merged_commit":
        return n.search(git("log", "--format=%B", f"{t['base_commit']}..{t['fix_commit']}", cwd=clone)) is not None
    branch = msg.splitlines()[0] if msg else ""
    return re.search(rf"(?<![0-9]){t['issue']}(?![0-9])", branch.split(" from ")[-1]) is not None


def check_clones(clones: Path, repos: list[dict], truth: list[dict]) -> tuple[list[str], list[dict]]:
    """Problems with the clones, and one row per repository for the table."""
    problems, rows = [], []
    for r in repos:
        clone = clones / r["repo"].split("/")[1]
        row = {"repo": r["repo"], "clone": str(clone), "ok": False}
        rows.append(row)
        if not (clone / ".git").exists():
            problems.append(f"{r['repo']}: no clone at {clone} (use --rebuild-clones)")
            continue
        origin = git("remote", "get-url", "origin", cwd=clone, check=False).strip()
        head = git("rev-parse", "HEAD", cwd=clone).strip()
        dirty = git("status", "--porcelain", "--untracked-files=no", cwd=clone).strip()
        first_parent = set(git("rev-list", "--first-parent", "HEAD", cwd=clone).split())
        row.update(head=head[:10], first_parent_commits=len(first_parent))
        if origin != r["url"]:
            problems.append(f"{r['repo']}: origin is {origin!r}, not {r['url']}")
        if r.get("head") and head != r["head"]:
            problems.append(f"{r['repo']}: HEAD {head[:10]} != recorded {r['head'][:10]}")
        if dirty:
            problems.append(f"{r['repo']}: the work tree has changes")
        n_ok = 0
        mine = [t for t in truth if t["repo"] == r["repo"]]
        for t in mine:
            key = f"{r['repo']}@{t['fix_commit'][:10]}"
            if t["fix_commit"] not in first_parent:
                problems.append(f"{key}: fix commit not on HEAD's first-parent history")
                continue
            parents = git("rev-list", "--parents", "-n1", t["fix_commit"], cwd=clone).split()[1:]
            if not parents or parents[0] != t["base_commit"]:
                problems.append(f"{key}: base_commit is not the fix's first parent")
                continue
            changed = git("diff", "--name-only", "--no-renames", t["base_commit"], t["fix_commit"], cwd=clone).split()
            tests = sorted(p for p in changed if is_test_path(p))
            if tests != sorted(t["test_files"]):
                problems.append(f"{key}: test files of the diff {tests} != truth {sorted(t['test_files'])}")
                continue
            if len(tests) == len(changed):
                problems.append(f"{key}: no non-test file changed")
                continue
            if not link_evidence(clone, t):
                problems.append(f"{key}: issue #{t['issue']} not found where link={t['link']} says")
                continue
            n_ok += 1
        row.update(truth=len(mine), truth_ok=n_ok, ok=n_ok == len(mine) and head == (r.get("head") or head)
                   and origin == r["url"] and not dirty)
    return problems, rows


def rebuild_clones(clones: Path, repos: list[dict], mirrors: Path) -> None:
    """Each repository cloned (mirror first, else GitHub) and reset to its recorded head."""
    clones.mkdir(parents=True, exist_ok=True)
    for r in repos:
        owner, name = r["repo"].split("/")
        clone = clones / name
        mirror = mirrors / f"{owner}+{name}" / "repo"
        source = str(mirror) if mirror.is_dir() else r["url"]
        if not (clone / ".git").exists():
            print(f"cloning {r['repo']} from {source}", flush=True)
            subprocess.run(["git", "clone", "-q", source, str(clone)], check=True)
        elif r.get("head") and git("cat-file", "-t", r["head"], cwd=clone, check=False).strip() != "commit":
            git("fetch", "-q", source, cwd=clone)
        git("remote", "set-url", "origin", r["url"], cwd=clone)
        if r.get("head"):
            branch = git("rev-parse", "--abbrev-ref", "HEAD", cwd=clone).strip()
            branch = "main" if branch == "HEAD" else branch
            git("checkout", "-q", "-f", "-B", branch, r["head"], cwd=clone)
        print(f"  {r['repo']:32s} {clone}  HEAD {git('rev-parse', 'HEAD', cwd=clone).strip()[:10]}", flush=True)


# ============================================================================ skycurate run


def run_miner(clone_paths: list[Path], store: Path, config: Path | None, log: Path) -> dict:
    """``skycurate run swe`` over the clones; its --json summary plus wall time (or an error)."""
    cmd = [str(REPO / ".venv" / "bin" / "skycurate"), "run", "swe"]
    for p in clone_paths:
        cmd += ["--repos", str(p)]
    cmd += ["--store", str(store), "--json"]
    if config:
        cmd += ["--config", str(config)]
    env = dict(os.environ, DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    print("running: " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": f"skycurate run swe failed (rc {proc.returncode}); see {log}", "wall_s": wall}
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        summary = {"stdout": proc.stdout[-2000:]}
    return {"wall_s": wall, "summary": summary}


def read_outputs(store: Path, summary: dict | None) -> dict[str, list[dict]]:
    """The four datasets as lists of dicts: the versions the run published, else ``@latest``."""
    from skycurate import catalog

    refs = {}
    for info in ((summary or {}).get("datasets") or {}).values():
        label = info.get("ref", "") if isinstance(info, dict) else str(info)
        name = label.split("@")[0]
        if name.startswith("swe/"):
            refs[name.split("/", 1)[1]] = label
    out = {}
    for name in ("candidates", "instances", "rejected", "mine_rejected"):
        ref = refs.get(name, f"swe/{name}@latest")
        try:
            out[name] = catalog.open(ref, store=str(store)).to_table().to_pylist()
        except Exception as exc:  # noqa: BLE001 - a missing dataset is reported, not fatal
            print(f"cannot open {ref}: {type(exc).__name__}: {exc}")
            out[name] = []
    return out


# ============================================================================ scoring


def compare_f2p(got: list[str] | None, want: list[str]) -> str:
    g, w = set(got or []), set(want)
    if g == w:
        return "equal"
    if g > w:
        return "superset"
    if g < w:
        return "subset"
    return "differs"


def score(truth: list[dict], out: dict[str, list[dict]]) -> tuple[list[dict], dict]:
    cands, insts = out["candidates"], {i["instance_id"]: i for i in out["instances"]}
    rejected = {}
    for r in out["rejected"] + out["mine_rejected"]:
        if r.get("instance_id"):
            rejected.setdefault(r["instance_id"], r)
    by_fix = {(c["repo"], c["fix_commit"]): c for c in cands}
    by_base = {(c["repo"], c["base_commit"]): c for c in cands}
    rows = []
    for t in truth:
        row = {"repo": t["repo"], "fix": t["fix_commit"][:10], "issue": t["issue"], "link": t["link"],
               "truth_f2p": len(t["fail_to_pass"]), "found": False, "matched_by": None, "instance_id": None,
               "miner_link": None, "validated": False, "f2p": None, "miner_f2p": None, "rejection": None}
        c = by_fix.get((t["repo"], t["fix_commit"]))
        if c is not None:
            row["matched_by"] = "fix_commit"
        else:
            c = by_base.get((t["repo"], t["base_commit"]))
            row["matched_by"] = "base_commit" if c is not None else None
        if c is None:
            # mining rejections name the commit in their detail ("commit <sha12>: ...")
            hit = next((r for r in out["mine_rejected"] if r.get("repo") == t["repo"]
                        and t["fix_commit"][:12] in (r.get("detail") or "")), None)
            row["rejection"] = f"{hit['stage']}: {hit['reason']}" if hit else "not linked (no candidate, no rejection)"
            rows.append(row)
            continue
        row.update(found=True, instance_id=c["instance_id"], miner_link=c.get("issue_link"))
        inst = insts.get(c["instance_id"])
        if inst is not None:
            row.update(validated=True, miner_f2p=len(inst.get("FAIL_TO_PASS") or []),
                       f2p=compare_f2p(inst.get("FAIL_TO_PASS"), t["fail_to_pass"]))
            missing = sorted(set(t["fail_to_pass"]) - set(inst.get("FAIL_TO_PASS") or []))
            if missing:
                row["f2p_missing"] = missing
        else:
            r = rejected.get(c["instance_id"])
            row["rejection"] = f"{r['stage']}: {r['reason']}" if r else "no instance and no rejection"
            if r and r.get("detail"):
                row["rejection_detail"] = str(r["detail"])[-300:]
        rows.append(row)

    n = len(truth)
    cand_ids = {c["instance_id"] for c in cands}
    install_rej = {r["instance_id"] for r in out["rejected"]
                   if r.get("stage") in INSTALL_STAGES and r.get("instance_id") in cand_ids}
    empty_f2p = [i["instance_id"] for i in out["instances"] if not i.get("FAIL_TO_PASS")]
    found = sum(r["found"] for r in rows)
    validated = sum(r["validated"] for r in rows)
    totals = {
        "truth": n, "found": found, "found_frac": found / n if n else 0.0,
        "validated": validated, "validated_frac": validated / n if n else 0.0,
        "f2p_equal": sum(r["f2p"] == "equal" for r in rows),
        "f2p_equal_or_superset": sum(r["f2p"] in ("equal", "superset") for r in rows),
        "candidates": len(cands), "instances": len(out["instances"]),
        "install_ok": len(cands) - len(install_rej),
        "install_ok_frac": (len(cands) - len(install_rej)) / len(cands) if cands else 0.0,
        "instances_empty_f2p": len(empty_f2p), "instances_empty_f2p_ids": empty_f2p[:20],
        "rejections_by_reason": dict(Counter(f"{r['stage']}: {r['reason']}" for r in out["rejected"])
                                     .most_common()),
    }
    return rows, totals


# ============================================================================ printing


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def print_truth_table(rows: list[dict]) -> None:
    head = f"{'repository':30s} {'fix':10s} {'issue':>6s} {'link':13s} {'found':12s} {'valid':5s} " \
           f"{'F2P (miner/truth)':22s} rejection / miner link"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        found = r["matched_by"] if r["found"] else "no"
        f2p = f"{r['f2p']} ({r['miner_f2p']}/{r['truth_f2p']})" if r["validated"] else f"- (-/{r['truth_f2p']})"
        tail = r["rejection"] or f"link {r['miner_link']}"
        print(f"{r['repo']:30s} {r['fix']:10s} {r['issue']:>6d} {r['link']:13s} {found:12s} "
              f"{'yes' if r['validated'] else 'no':5s} {f2p:22s} {tail}")
    for r in rows:
        if r.get("f2p_missing"):
            print(f"  {r['repo']}@{r['fix']}: truth tests missing from the miner's FAIL_TO_PASS: "
                  f"{r['f2p_missing'][:3]}{' ...' if len(r['f2p_missing']) > 3 else ''}")


def print_totals(t: dict, wall_s: float | None) -> None:
    print(f"\nfound as candidates       {t['found']}/{t['truth']} ({_pct(t['found_frac'])})")
    print(f"validated                 {t['validated']}/{t['truth']} ({_pct(t['validated_frac'])}); "
          f"FAIL_TO_PASS equal {t['f2p_equal']}, equal or superset {t['f2p_equal_or_superset']}")
    print(f"install success           {t['install_ok']}/{t['candidates']} candidates ({_pct(t['install_ok_frac'])}) "
          f"not rejected at {'/'.join(INSTALL_STAGES)}")
    print(f"instances, empty F2P      {t['instances_empty_f2p']} of {t['instances']} validated (must be 0)"
          + (f": {t['instances_empty_f2p_ids']}" if t["instances_empty_f2p"] else ""))
    if wall_s is not None:
        per = f"{wall_s / t['instances']:.1f} s per validated instance" if t["instances"] else "no instance"
        per_c = f", {wall_s / t['candidates']:.1f} s per candidate" if t["candidates"] else ""
        print(f"wall time                 {wall_s:.0f} s for the run: {per}{per_c}")
    if t["rejections_by_reason"]:
        print("rejections (all candidates and mined changes), by stage: reason:")
        for k, v in t["rejections_by_reason"].items():
            print(f"  {v:5d}  {k}")


def print_dry_run(repos: list[dict], truth: list[dict], rows: list[dict], problems: list[str]) -> None:
    links = Counter(t["link"] for t in truth)
    print(f"truth: {len(truth)} fixes in {len(repos)} repositories; links: "
          + ", ".join(f"{k} {links[k]}" for k in LINKS)
          + f"; merges {sum(bool(t.get('merge')) for t in truth)}; "
          f"FAIL_TO_PASS tests {sum(len(t['fail_to_pass']) for t in truth)}")
    print(f"\n{'repository':32s} {'HEAD':10s} {'first-parent':>12s} {'truth':>6s} {'checked':>8s}  clone")
    for r in rows:
        print(f"{r['repo']:32s} {r.get('head', '-'):10s} {r.get('first_parent_commits', 0):>12d} "
              f"{r.get('truth', 0):>6d} {r.get('truth_ok', 0):>8d}  {r['clone']}")
    print(f"\n{'repository':30s} {'fix':10s} {'issue':>6s} {'link':13s} {'F2P':>4s} {'pytest':7s} test files")
    for t in truth:
        print(f"{t['repo']:30s} {t['fix_commit'][:10]:10s} {t['issue']:>6d} {t['link']:13s} "
              f"{len(t['fail_to_pass']):>4d} {t['pytest']:7s} {', '.join(t['test_files'])}")
    print("\n" + ("dry run: OK (no Docker, nothing run)" if not problems else f"dry run: {len(problems)} problem(s):"))
    for p in problems:
        print(f"  - {p}")


# ============================================================================ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", type=Path, default=TRUTH, help="truth file (default %(default)s)")
    ap.add_argument("--clones", type=Path, default=REPO / ".bench" / "swe-real" / "repos",
                    help="folder holding one clone per repository, named after it (default %(default)s)")
    ap.add_argument("--rebuild-clones", type=Path, metavar="DIR",
                    help="(re)create the clones in DIR at the recorded heads, origin = GitHub URL; implies --clones DIR")
    ap.add_argument("--mirrors", type=Path, default=MIRRORS,
                    help="folder of bare mirrors OWNER+NAME/repo to clone from (else GitHub; default %(default)s)")
    ap.add_argument("--store", type=Path, default=REPO / ".bench" / "swe-real" / "store")
    ap.add_argument("--config", type=Path, help="YAML config passed to skycurate run swe")
    ap.add_argument("--max-repos", type=int, help="mine only the first N repositories of the truth file")
    ap.add_argument("--dry-run", action="store_true", help="check the truth file and the clones only (no Docker)")
    ap.add_argument("--skip-run", action="store_true", help="score the datasets already in --store")
    ap.add_argument("--json", type=Path, help="write the per-fix rows and totals here")
    args = ap.parse_args(argv)

    repos, truth = load_truth(args.truth)
    if args.rebuild_clones:
        args.clones = args.rebuild_clones
        rebuild_clones(args.clones, repos, args.mirrors)
    if args.max_repos:
        repos = repos[:args.max_repos]
        names = {r["repo"] for r in repos}
        truth = [t for t in truth if t["repo"] in names]

    problems = check_truth(repos, truth)
    clone_problems, clone_rows = check_clones(args.clones, repos, truth)
    problems += clone_problems
    if args.dry_run:
        if not (REPO / ".venv" / "bin" / "skycurate").exists():
            problems.append(f"no skycurate CLI at {REPO / '.venv' / 'bin' / 'skycurate'}")
        print_dry_run(repos, truth, clone_rows, problems)
        return 1 if problems else 0
    if clone_problems:
        print("the clones do not match the truth file:\n  - " + "\n  - ".join(clone_problems))
        print("rebuild them with --rebuild-clones DIR")
        return 1

    wall_s, summary = None, None
    args.store.mkdir(parents=True, exist_ok=True)
    if not args.skip_run:
        res = run_miner([args.clones / r["repo"].split("/")[1] for r in repos], args.store.resolve(), args.config,
                        args.store / "skycurate-run.log")
        wall_s = res["wall_s"]
        if "error" in res:
            print(res["error"])
            return 1
        summary = res["summary"]
    out = read_outputs(args.store.resolve(), summary)
    rows, totals = score(truth, out)
    print_truth_table(rows)
    print_totals(totals, wall_s)
    if summary and summary.get("funnel"):
        print("funnel: " + json.dumps(summary["funnel"], default=str))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "totals": totals, "wall_s": wall_s,
                                         "summary": summary}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
