"""SWE validation in Docker vs the same tests on the host, side by side.

A synthetic Python repo (``--modules`` modules with a bug each, their tests, a small data file
and ``--filler-commits`` of history) yields ``--instances`` task instances: instance *i* has
base = the commit before fix *i*, gold patch = the fix of module *i*, test patch = its new test.
Every instance gets its own instance image over one shared env image.

Measured:
  (a) one test run: container (create + copy patches + start + git apply + pytest + remove) vs the
      host (git apply in a temp checkout + pytest with this venv's interpreter + reset);
  (b) validation throughput: per instance 1 pre run (test patch) + ``--post-repeats`` post runs
      (test + gold patch), with 1 and 2 parallel workers, in instances/hour;
  (c) disk: bytes each instance image adds over the shared env image vs the checkout it holds
      (goal: <= checkout + 10%);
  (d) build times: base (reused or built), env, instance images.

Run: ``.venv/bin/python benchmarks/swe_validation.py [--quick] [--keep-images] [--json F]``.
Needs a running Docker daemon (and, the first time, root + debootstrap for the base image).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from skycurate.sandbox import (
    base_image_tag,
    build_env_image,
    build_instance_image,
    disk_usage,
    ensure_base_image,
    image_exists,
    remove_image,
    run_tests,
)
from skycurate.sandbox.images import dir_size, prepare_checkout
from skycurate.sandbox.logs import parse_pytest_log
from skycurate.schemas.swe import EnvRecipe, SandboxLimits

TEST_CMD = "python -m pytest -rA --tb=no -p no:cacheprovider"
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.org"}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True,
                          text=True).stdout


# ------------------------------------------------------------------------ synthetic repo

@dataclass
class Instance:
    instance_id: str
    base: str
    patch: str
    test_patch: str
    test_file: str


def module_src(i: int, fixed: bool) -> str:
    body = [f'"""Module {i} of the synthetic package."""\n\n']
    for j in range(12):
        body.append(f"def helper_{j}(x):\n    \"\"\"Helper {j}.\"\"\"\n    return x * {j} + {i}\n\n\n")
    op = "+" if fixed else "-"
    body.append(f"def combine(a, b):\n    return a {op} b\n")
    return "".join(body)


def test_src(i: int, with_new: bool) -> str:
    lines = [f"from synth import mod_{i:03d} as m\n\n"]
    for j in range(12):
        lines.append(f"def test_helper_{j}():\n    assert m.helper_{j}(1) == {j} + {i}\n\n\n")
    if with_new:
        lines.append("def test_combine():\n    assert m.combine(2, 3) == 5\n")
    return "".join(lines)


def make_repo(root: Path, modules: int, instances: int, filler: int) -> list[Instance]:
    root.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=root)
    (root / "synth").mkdir()
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "synth"\nversion = "0.1"\n\n[tool.setuptools]\npackages = ["synth"]\n')
    (root / "synth" / "__init__.py").write_text("")
    (root / "README.md").write_text("synthetic repo\n" * 200)
    # a data file (fixtures, vendored assets...) as real repos have
    (root / "tests" / "data.json").write_text(json.dumps({f"k{i}": "v" * 200 for i in range(1500)}))
    for i in range(modules):
        (root / "synth" / f"mod_{i:03d}.py").write_text(module_src(i, fixed=False))
        (root / "tests" / f"test_mod_{i:03d}.py").write_text(test_src(i, with_new=False))
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "initial", cwd=root)
    for k in range(filler):                                  # history: edits to README and modules
        (root / "README.md").write_text(f"synthetic repo, revision {k}\n" * 200)
        m = root / "synth" / f"mod_{k % modules:03d}.py"
        m.write_text(m.read_text() + f"\n\nREVISION_{k} = {k}\n")
        git("commit", "-q", "-am", f"filler {k}", cwd=root)
    out = []
    for i in range(instances):
        base = git("rev-parse", "HEAD", cwd=root).strip()
        mod = root / "synth" / f"mod_{i:03d}.py"
        mod.write_text(mod.read_text().replace("return a - b", "return a + b"))
        tf = f"tests/test_mod_{i:03d}.py"
        (root / tf).write_text(test_src(i, with_new=True))
        git("commit", "-q", "-am", f"fix combine in mod_{i:03d} (fixes #{i + 1})", cwd=root)
        patch = git("diff", "HEAD~1", "HEAD", "--", "synth", cwd=root)
        test_patch = git("diff", "HEAD~1", "HEAD", "--", "tests", cwd=root)
        out.append(Instance(f"bench__synth-{i + 1}", base, patch, test_patch, tf))
    return out


# ------------------------------------------------------------------------ runners

class HostRunner:
    """The same validation on the host: one clean checkout per instance, git apply, pytest, reset.
    Plugin autoload is off, as the container's venv holds pytest alone (this venv has many)."""

    def __init__(self, repo: Path, workdir: Path):
        self.repo, self.workdir = repo, workdir
        workdir.mkdir(parents=True, exist_ok=True)

    def checkout(self, name: str, base: str) -> Path:
        dest = self.workdir / name
        if not dest.exists():
            git("clone", "-q", "--no-hardlinks", str(self.repo), str(dest), cwd=self.workdir)
        git("checkout", "-q", "--detach", base, cwd=dest)
        return dest

    def run(self, dest: Path, patches: list[str], test_file: str) -> dict[str, str]:
        for p in patches:
            subprocess.run(["git", "apply", "-"], cwd=dest, input=p, text=True, check=True)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-rA", "--tb=no", "-p", "no:cacheprovider",
                               test_file], cwd=dest, capture_output=True, check=False,
                              env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        git("checkout", "-q", "--", ".", cwd=dest)
        git("clean", "-fdxq", cwd=dest)
        return parse_pytest_log(proc.stdout.decode("utf-8", errors="replace"))


def validate_docker(tag: str, inst: Instance, post_repeats: int, limits: SandboxLimits) -> bool:
    pre = run_tests(tag, patches=[inst.test_patch], test_cmd=TEST_CMD, test_files=[inst.test_file], limits=limits)
    posts = [run_tests(tag, patches=[inst.test_patch, inst.patch], test_cmd=TEST_CMD,
                       test_files=[inst.test_file], limits=limits) for _ in range(post_repeats)]
    return f2p_ok(pre.statuses, [p.statuses for p in posts], inst)


def validate_host(host: HostRunner, worker_dir: str, inst: Instance, post_repeats: int) -> bool:
    dest = host.checkout(worker_dir, inst.base)
    pre = host.run(dest, [inst.test_patch], inst.test_file)
    posts = [host.run(dest, [inst.test_patch, inst.patch], inst.test_file) for _ in range(post_repeats)]
    return f2p_ok(pre, posts, inst)


def f2p_ok(pre: dict[str, str], posts: list[dict[str, str]], inst: Instance) -> bool:
    new = f"{inst.test_file}::test_combine"
    return pre.get(new) == "FAILED" and all(p.get(new) == "PASSED" for p in posts) and \
        all(len(p) == 13 for p in posts)


def timed(fn, *a, **kw) -> float:
    t0 = time.perf_counter()
    fn(*a, **kw)
    return time.perf_counter() - t0


def throughput(fn, items, workers: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ok = sum(bool(x) for x in pool.map(fn, items))
    return time.perf_counter() - t0, ok


def mb(n: float) -> str:
    return f"{n / 1e6:8.2f} MB"


# ------------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 instances, 3 repetitions")
    ap.add_argument("--instances", type=int, default=6)
    ap.add_argument("--modules", type=int, default=60)
    ap.add_argument("--filler-commits", type=int, default=40)
    ap.add_argument("--reps", type=int, default=5, help="repetitions of the single-run timing")
    ap.add_argument("--post-repeats", type=int, default=3)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--keep-images", action="store_true")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    if args.quick:
        args.instances, args.reps, args.modules, args.filler_commits = 3, 3, 40, 20
    workers = [int(w) for w in args.workers.split(",")]
    limits = SandboxLimits(timeout_s=300)
    fig: dict = {"args": vars(args), "load_before": os.getloadavg()[0]}

    # (d) images
    had_base = image_exists(base_image_tag())
    t = time.perf_counter()
    base = ensure_base_image()
    fig["base_s"] = time.perf_counter() - t
    recipe = EnvRecipe()                                          # the default recipe: no extra requirements
    had_env = image_exists(f"skycurate/env:{recipe.env_key()}")
    t = time.perf_counter()
    env = build_env_image(recipe)
    fig["env_s"] = time.perf_counter() - t

    tmp = Path(tempfile.mkdtemp(prefix="swe-bench-"))
    tags: list[str] = []
    try:
        t = time.perf_counter()
        insts = make_repo(tmp / "synth", args.modules, args.instances, args.filler_commits)
        fig["repo_s"] = time.perf_counter() - t
        infos = []
        for inst in insts:
            info = build_instance_image(env, tmp / "synth", inst.base, recipe.install, inst.instance_id, rebuild=True)
            infos.append(info)
            tags.append(info.tag)
        fig["instance_build_s"] = [i.build_s for i in infos]

        # (c) disk
        worktree = []
        for inst in insts[:1]:
            d = tmp / "sizes"
            prepare_checkout(tmp / "synth", inst.base, d)
            worktree.append(dir_size(d) - dir_size(d / ".git"))
            shutil.rmtree(d)
        fig["disk"] = [{"tag": i.tag, "extra_bytes_over_env": i.extra_bytes_over_env,
                        "checkout_bytes": i.checkout_bytes, "ratio": i.extra_bytes_over_env / i.checkout_bytes}
                       for i in infos]
        env_img_size = next((r.size_bytes for r in disk_usage().images if r.tag == env), 0)

        # sanity: both sides see the same FAIL_TO_PASS
        host = HostRunner(tmp / "synth", tmp / "host")
        assert validate_docker(infos[0].tag, insts[0], 1, limits), "docker validation failed"
        assert validate_host(host, "w-check", insts[0], 1), "host validation failed"

        # (a) one run, post patch (test + gold), median of reps
        dock, inside = [], []
        for _ in range(args.reps):
            t = time.perf_counter()
            res = run_tests(infos[0].tag, patches=[insts[0].test_patch, insts[0].patch], test_cmd=TEST_CMD,
                            test_files=[insts[0].test_file], limits=limits)
            dock.append(time.perf_counter() - t)
            inside.append(res.duration_s)
        dest = host.checkout("w-single", insts[0].base)
        hostt = [timed(host.run, dest, [insts[0].test_patch, insts[0].patch], insts[0].test_file)
                 for _ in range(args.reps)]
        fig["single_run_s"] = {"docker": statistics.median(dock), "host": statistics.median(hostt),
                               "docker_inside": statistics.median(inside)}

        # (b) throughput; host checkouts are made up front (as the images are)
        for inst in insts:
            host.checkout(inst.instance_id, inst.base)
        fig["throughput"] = {}
        runs_per_inst = 1 + args.post_repeats
        for w in workers:
            pairs = list(zip(infos, insts, strict=True))
            d_s, d_ok = throughput(lambda p: validate_docker(p[0].tag, p[1], args.post_repeats, limits), pairs, w)
            h_s, h_ok = throughput(lambda p: validate_host(host, p[1].instance_id, p[1], args.post_repeats),
                                   pairs, w)
            fig["throughput"][w] = {"docker_s": d_s, "docker_ok": d_ok, "host_s": h_s, "host_ok": h_ok,
                                    "docker_per_h": len(pairs) * 3600 / d_s, "host_per_h": len(pairs) * 3600 / h_s}
    finally:
        if not args.keep_images:
            for tag in tags:
                remove_image(tag)
        shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ report
    n = len(insts)
    print(f"\nSWE validation: {n} instances of a synthetic repo ({args.modules} modules, "
          f"{args.filler_commits} filler commits; 13 tests per run); {os.cpu_count()} CPUs, "
          f"load average before: {fig['load_before']:.1f}")
    print("\n(d) images")
    print(f"  base  {base:45s} {'reused' if had_base else 'built'} in {fig['base_s']:.1f}s")
    print(f"  env   {env:45s} {'reused' if had_env else 'built'} in {fig['env_s']:.1f}s "
          f"({mb(env_img_size).strip()} with base)")
    bs = fig["instance_build_s"]
    print(f"  instance images: {n} built, median {statistics.median(bs):.1f}s each "
          f"(min {min(bs):.1f}, max {max(bs):.1f})")
    print("\n(a) one test run (post patch: git apply x2 + pytest on 13 tests), median of", args.reps)
    s = fig["single_run_s"]
    print(f"  {'docker (create+copy+start+run+remove)':42s} {s['docker']:7.2f} s")
    print(f"  {'host (git apply + pytest + reset)':42s} {s['host']:7.2f} s")
    print(f"  {'overhead per run':42s} {s['docker'] - s['host']:+7.2f} s   ({s['docker'] / s['host']:.2f}x)")
    print(f"  {'  of which create/copy/logs/remove':42s} {s['docker'] - s['docker_inside']:7.2f} s "
          f"(container start to exit: {s['docker_inside']:.2f} s)")
    print(f"\n(b) validation throughput (per instance: 1 pre + {args.post_repeats} post runs = "
          f"{runs_per_inst} runs)")
    print(f"  {'workers':>8} {'docker inst/h':>14} {'host inst/h':>12} {'docker/host':>12} "
          f"{'docker ok':>10} {'host ok':>8}")
    for w, r in fig["throughput"].items():
        print(f"  {w:>8} {r['docker_per_h']:>14.0f} {r['host_per_h']:>12.0f} "
              f"{r['docker_per_h'] / r['host_per_h']:>12.2f} {r['docker_ok']:>7}/{n} {r['host_ok']:>5}/{n}")
    print("\n(c) disk per instance image, over the shared env layer")
    print(f"  {'checkout (work tree + .git)':32s} {mb(statistics.median([d['checkout_bytes'] for d in fig['disk']]))}"
          f"   (work tree alone {mb(worktree[0]).strip()})")
    print(f"  {'image bytes over env':32s} {mb(statistics.median([d['extra_bytes_over_env'] for d in fig['disk']]))}")
    ratios = [d["ratio"] for d in fig["disk"]]
    print(f"  {'ratio image/checkout':32s} {statistics.median(ratios):8.3f}    "
          f"(max {max(ratios):.3f}; goal <= 1.10: {'met' if max(ratios) <= 1.10 else 'NOT met'})")
    full = n * (env_img_size + statistics.median([d['extra_bytes_over_env'] for d in fig['disk']]))
    layered = env_img_size + sum(d["extra_bytes_over_env"] for d in fig["disk"])
    print(f"  {n} instances: layered {mb(layered).strip()} vs {mb(full).strip()} as full images")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2, default=str))


if __name__ == "__main__":
    main()
