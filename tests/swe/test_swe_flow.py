"""The SWE mining flow end to end against the real Docker daemon: fixture repositories with a real
bug fix, an incomplete fix, a flaky test, a failing install, a hanging test and non-UTF-8 output."""

from __future__ import annotations

import json
import time
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skycurate import catalog
from skycurate.cli import app

sys.path.insert(0, str(Path(__file__).parent))
import fixture_repos  # noqa: E402

pytestmark = [pytest.mark.usefixtures("prefect_harness", "spark", "base_image"), pytest.mark.integration]


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _leftover_containers() -> list:
    from skycurate.sandbox.run import list_containers

    return list_containers()


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    root = tmp_path_factory.mktemp("swe")
    fixtures = fixture_repos.build_all(root / "repos")
    export = fixture_repos.write_export(fixtures, root / "issues.jsonl")
    store = str(root / "store")
    args = ["run", "swe", "--store", store, "--prs", str(export), "--workers", "2", "--timeout", "20", "--json"]
    for f in fixtures.values():
        args += ["--repos", str(f.path)]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    return {"fixtures": fixtures, "store": store, "args": args, "out": json.loads(result.stdout)}


def test_each_fixture_ends_where_it_should(mined):
    store, fixtures = mined["store"], mined["fixtures"]
    instances = {r["instance_id"]: r for r in catalog.open("swe/instances@latest", store=store).to_table().to_pylist()}
    rejected = {r["instance_id"]: r for r in catalog.open("swe/rejected@latest", store=store).to_table().to_pylist()}
    for f in fixtures.values():
        if f.outcome == "valid" and not f.flaky_tests:
            row = instances.get(f.instance_id)
            assert row is not None, (f.key, rejected.get(f.instance_id))
            assert sorted(row["FAIL_TO_PASS"]) == sorted(f.fail_to_pass)
            assert sorted(row["PASS_TO_PASS"]) == sorted(f.pass_to_pass)
            assert row["image_tag"].startswith("skycurate/instance:") and row["install_recipe"]
            assert json.loads(row["runs"])[0]["run"] == "pre" and len(json.loads(row["runs"])) == 4
            assert row["base_commit"] == f.base_commit and "fixes #" not in (row["problem_statement"] or "")
        else:
            assert f.instance_id in rejected, (f.key, instances.get(f.instance_id))
    assert rejected[fixtures["nopass"].instance_id]["reason"] == "no_fail_to_pass"
    assert rejected[fixtures["badinstall"].instance_id]["stage"] == "install"
    assert rejected[fixtures["badinstall"].instance_id]["reason"] == "install_failed"
    assert "this-package-does-not-exist-skycurate" in rejected[fixtures["badinstall"].instance_id]["detail"]
    assert rejected[fixtures["hang"].instance_id]["reason"] == "timeout"
    assert rejected[fixtures["flaky"].instance_id]["reason"] == "flaky_tests"
    m = catalog.manifest("swe/instances@latest", store=store)
    assert fixtures["flaky"].instance_id in m.stats["flaky"]
    # The non-UTF-8 log did not drop its instance, and the log is on disk.
    old = instances[fixtures["oldpytest"].instance_id]      # found by the environment search
    assert "pytest>=7,<8" in json.loads(old["install_recipe"])["requirements"]
    assert [a.split(": ")[0] for a in old["env_attempts"]] == ["py3.11 plain", "py3.11 plain+pytest<9"]
    assert all("collection errors with the gold patch: tests/test_clamp.py" in a for a in old["env_attempts"])
    hook = instances[fixtures["oldhook"].instance_id]       # pytest could not start: also the environment's fault
    assert "pytest>=7,<8" in json.loads(hook["install_recipe"])["requirements"]
    assert [a.split(": ")[0] for a in hook["env_attempts"]] == ["py3.11 plain", "py3.11 plain+pytest<9"]
    assert all("pytest could not start (exit 3)" in a for a in hook["env_attempts"])
    # one Python per repository and date: 2019 code on 3.9, requires-python >=3.12 on 3.13, the rest on 3.11
    assert instances[fixtures["py39"].instance_id]["python"] == "3.9"
    assert json.loads(instances[fixtures["py39"].instance_id]["install_recipe"])["python"] == "3.9"
    assert instances[fixtures["py313"].instance_id]["python"] == "3.13"
    assert {instances[fixtures[k].instance_id]["python"] for k in ("calc", "nonutf8", "oldpytest")} == {"3.11"}
    # an install that fails everywhere: every recipe on each Python, nearest first, up to max_environments
    bad = rejected[fixtures["badinstall"].instance_id]["detail"].splitlines()
    assert [line.split(": ")[0] for line in bad if line.startswith("py")] == [
        "py3.11 declared", "py3.11 unpinned", "py3.11 pip-extras", "py3.9 declared", "py3.9 unpinned",
        "py3.9 pip-extras", "py3.13 declared", "py3.13 unpinned"]
    assert bad[-1] == "stopped after 8 environments (validation.max_environments); 1 not tried"
    nonutf8 = instances[fixtures["nonutf8"].instance_id]
    assert Path(nonutf8["log_dir"], "pre.log").read_text(encoding="utf-8").count("\ufffd") >= 1


def test_funnel_reconciles_and_nothing_is_left_behind(mined):
    from skycurate.sandbox.images import image_exists

    store = mined["store"]
    m = catalog.manifest("swe/instances@latest", store=store)
    steps = {s["stage"]: s for s in m.stats["funnel"]}
    n_candidates = catalog.manifest("swe/candidates@latest", store=store).num_rows
    assert steps["repos"]["rows_in"] == len(mined["fixtures"])
    assert steps["candidates"]["rows_out"] == n_candidates == len(mined["fixtures"])
    assert steps["validated"]["rows_out"] == m.num_rows
    assert m.num_rows + sum(1 for r in catalog.open("swe/rejected@latest", store=store).to_table().to_pylist()
                            if r["stage"] in ("recipe", "install", "validate")) == n_candidates
    assert not _leftover_containers()
    for row in catalog.open("swe/instances@latest", store=store).to_table().to_pylist():
        assert not image_exists(row["image_tag"])  # instance images are removed after validation
    assert Path(store, "swe/instances", m.version, "_funnel.png").exists()


def test_rerun_is_cached_and_forced_rerun_validates_again(mined):
    store = mined["store"]
    first = catalog.manifest("swe/instances@latest", store=store)
    again = json.loads(_cli(*mined["args"]).stdout)
    assert again["datasets"]["instances"]["ref"] == f"swe/instances@{first.version}"  # cached: nothing re-ran
    calc = mined["fixtures"]["calc"]
    pre_log = next(Path(first.stats["work"], "logs").glob(f"{calc.instance_id}*")) / "pre.log"
    assert pre_log.exists()
    started = time.time_ns()
    forced = _cli(*mined["args"], "--force")
    assert forced.exit_code == 0, forced.output
    redone = catalog.manifest("swe/instances@latest", store=store).stats["work"]
    pre_log = next(Path(redone, "logs").glob(f"{calc.instance_id}*")) / "pre.log"
    assert pre_log.stat().st_mtime_ns >= started  # --force validates again (journalled outcomes too)
    latest = catalog.open("swe/instances@latest", store=store).to_table().to_pylist()
    assert sorted(r["instance_id"] for r in latest) == sorted(
        r["instance_id"] for r in catalog.open(f"swe/instances@{first.version}", store=store).to_table().to_pylist())


def test_patch_validation_resolves_the_gold_patch_only(mined, tmp_path):
    store = mined["store"]
    calc = next(r for r in catalog.open("swe/instances@latest", store=store).to_table().to_pylist()
                if r["instance_id"] == mined["fixtures"]["calc"].instance_id)
    assert "+    for _ in range(b):" in calc["patch"]
    wrong = calc["patch"].replace("+    for _ in range(b):", "+    for _ in range(b + 1):")  # off by one the other way
    patches = tmp_path / "patches.jsonl"
    patches.write_text("\n".join(json.dumps(r) for r in [
        {"instance_id": calc["instance_id"], "patch": calc["patch"], "model": "gold", "id": "gold"},
        {"instance_id": calc["instance_id"], "model_patch": "", "model": "empty", "id": "empty"},
        {"instance_id": calc["instance_id"], "patch": wrong, "model": "wrong", "id": "wrong"},
        {"instance_id": "nobody__nothing-1", "patch": calc["patch"], "id": "unknown"},
    ]) + "\n")
    result = _cli("run", "swe-validate-patches", "--instances", "swe/instances@latest", "--patches", str(patches),
                  "--store", store, "--json")
    assert result.exit_code == 0, result.output
    rows = {r["patch_id"]: r for r in catalog.open("swe/patch_validations@latest", store=store).to_table().to_pylist()}
    assert rows["gold"]["resolved"] and rows["gold"]["f2p_passed"] == rows["gold"]["f2p_total"] > 0
    assert not rows["empty"]["resolved"] and rows["empty"]["reason"] == "tests_fail"
    assert not rows["wrong"]["resolved"] and "tests/test_calc.py::test_add" in rows["wrong"]["failing_tests"]
    assert rows["unknown"]["reason"] == "unknown_instance"
    assert not _leftover_containers()


def test_resolved_agent_trajectories_become_sft_rows_and_every_other_one_has_a_reason(mined, tmp_path):
    store = mined["store"]
    calc = next(r for r in catalog.open("swe/instances@latest", store=store).to_table().to_pylist()
                if r["instance_id"] == mined["fixtures"]["calc"].instance_id)
    wrong = calc["patch"].replace("+    for _ in range(b):", "+    for _ in range(b + 1):")
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / f"{calc['instance_id']}.traj").write_text(json.dumps({        # SWE-agent: the gold fix
        "history": [{"role": "system", "content": "You fix bugs."},
                    {"role": "user", "content": calc["problem_statement"]},
                    {"role": "assistant", "content": "The loop starts at 1; start at 0."}],
        "info": {"submission": calc["patch"], "exit_status": "submitted"}}))
    (folder / "output.jsonl").write_text(json.dumps({                       # OpenHands: a wrong fix
        "instance_id": calc["instance_id"], "instruction": calc["problem_statement"],
        "history": [{"source": "user", "action": "message", "args": {"content": "Fix add"}},
                    {"source": "agent", "action": "finish", "message": "done", "args": {}}],
        "test_result": {"git_patch": wrong}}) + "\n" + "{truncated\n")
    result = _cli("run", "swe-validate-patches", "--instances", "swe/instances@latest", "--trajectories",
                  str(folder), "--store", store, "--json")
    assert result.exit_code == 0, result.output
    [row] = catalog.open("swe/trajectories@latest", store=store).to_table().to_pylist()
    assert row["instance_id"] == calc["instance_id"] and row["format"] == "swe-agent" and row["turns"] == 1
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    rejected = sorted((r["reason"], r["source"].rsplit("/", 1)[-1])
                      for r in catalog.open("swe/trajectory_rejected@latest", store=store).to_table().to_pylist())
    assert rejected == [("bad_json", "output.jsonl:2"), ("not_resolved:tests_fail", "output.jsonl:1")]
    m = catalog.manifest("swe/trajectories@latest", store=store)
    assert m.stats["funnel"][0] == {"stage": "trajectories", "rows_in": 3, "rows_out": 1, "rejected": 1,
                                    "quarantined": 1, "bytes_in": None, "bytes_out": None}
    assert not _leftover_containers()


def test_a_mining_failure_fails_the_run_and_publishes_nothing(tmp_path):
    """Not a ``mine_error`` row in a published dataset: the run exits non-zero with one line naming
    the repository, and no version of the mining outputs exists."""
    repo = fixture_repos.build_all(tmp_path / "repos")["calc"]
    bad = tmp_path / "prs.jsonl"
    bad.write_text('{"type": "pr", "number": "one"}\n')
    store = str(tmp_path / "store")
    result = _cli("run", "swe", "--store", store, "--prs", str(bad), "--repos", str(repo.path))
    assert result.exit_code != 0
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"mining {repo.name} failed: ExportError: " in last, result.output
    assert "Py4J" not in result.output and "at org.apache" not in result.output    # no Java stack trace
    assert not catalog.Catalog(store).exists("swe/candidates@latest")
    assert not catalog.Catalog(store).exists("swe/mine_rejected@latest")


def test_daemon_down_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    from skycurate.sandbox import daemon

    daemon.reset_client()
    try:
        result = _cli("run", "swe", "--repos", str(tmp_path), "--store", str(tmp_path / "s"))
    finally:
        monkeypatch.delenv("DOCKER_HOST")
        daemon.reset_client()
    assert result.exit_code != 0 and "Docker daemon not reachable" in result.output
    assert "Traceback" not in result.output


def test_workers_can_be_pointed_at_another_docker_host(tmp_path):
    from skycurate.sandbox import SandboxError, client
    from skycurate.sandbox.daemon import use_host

    default = client()
    with use_host(f"unix://{tmp_path}/other.sock"):
        with pytest.raises(SandboxError, match="other.sock"):
            client()
    assert client() is default and client().ping()


def test_a_run_killed_mid_validation_resumes_to_the_same_data_and_leaves_no_container(mined, tmp_path):
    """SIGKILL of the whole run (CLI, Spark, Prefect) once one outcome is journalled and the next
    candidate's container is busy; the rerun reuses the journalled outcome, sweeps the dead run's
    container, and publishes what the uninterrupted run published for these candidates."""
    import contextlib
    import os
    import signal
    import subprocess

    fixtures = fixture_repos.build_all(tmp_path / "repos", keys=["calc", "nopass"])
    export = fixture_repos.write_export(fixtures, tmp_path / "issues.jsonl")
    store = str(tmp_path / "store")
    args = ["run", "swe", "--store", store, "--prs", str(export), "--workers", "1", "--timeout", "20", "--json"]
    for f in fixtures.values():
        args += ["--repos", str(f.path)]
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 - open while the child runs
    proc = subprocess.Popen([sys.executable, "-m", "skycurate.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "SKYCURATE_SPARK_MASTER": "local[1]"}, start_new_session=True)
    results = Path(store, "_work", "swe")
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if list(results.glob("*/results/*.json")) and _leftover_containers():
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        log.close()
    tail = "\n".join((tmp_path / "killed.log").read_text(errors="replace").splitlines()[-15:])
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself ({proc.returncode}):\n{tail}"
    journalled = {p: p.stat().st_mtime_ns for p in results.glob("*/results/*.json")}
    assert len(journalled) == 1 and _leftover_containers(), "killed between two candidates, a container busy"
    assert not catalog.Catalog(store).exists("swe/instances@latest")

    rerun = _cli(*args)
    assert rerun.exit_code == 0, rerun.output
    assert {p: p.stat().st_mtime_ns for p in journalled} == journalled     # the finished outcome was reused
    assert not _leftover_containers()                                      # the dead run's container is gone
    assert not [p for p in Path(store).rglob("*") if p.name in ("_staging", "_scratch") or "/_staging/" in str(p)]
    cat = catalog.Catalog(store)
    assert cat.versions("swe/instances") == ["v0001"]
    ids = {f.instance_id for f in fixtures.values()}
    keep = ("instance_id", "base_commit", "patch", "test_patch", "FAIL_TO_PASS", "PASS_TO_PASS", "problem_statement")

    def rows(st: str, name: str, cols: tuple[str, ...]) -> list[tuple]:
        table = catalog.open(f"{name}@latest", store=st).to_table().to_pylist()
        return sorted(tuple(json.dumps(r.get(c), sort_keys=True, default=str) for c in cols)
                      for r in table if r["instance_id"] in ids)

    assert rows(store, "swe/instances", keep) == rows(mined["store"], "swe/instances", keep) != []
    why = ("instance_id", "stage", "reason")
    assert rows(store, "swe/rejected", why) == rows(mined["store"], "swe/rejected", why) != []


def test_the_swe_flow_on_an_s3_store(mined, s3_store, tmp_path):
    """Mining (Spark, through the driver's disk) and validation (journal on the local work folder)
    against an S3-compatible server give what a local store got for the same candidate."""
    fixtures = fixture_repos.build_all(tmp_path / "repos", keys=["calc"])
    export = fixture_repos.write_export(fixtures, tmp_path / "issues.jsonl")
    result = _cli("run", "swe", "--store", s3_store, "--prs", str(export), "--repos", str(fixtures["calc"].path),
                  "--timeout", "20", "--json")
    assert result.exit_code == 0, result.output
    cat = catalog.Catalog(s3_store)
    out = json.loads(result.stdout)
    for ref in out["datasets"].values():
        assert cat.verify(ref["ref"]).ok
    keep = ("instance_id", "base_commit", "patch", "test_patch", "FAIL_TO_PASS", "PASS_TO_PASS")
    row = lambda r: tuple(json.dumps(r[c], sort_keys=True) for c in keep)  # noqa: E731
    [got] = [row(r) for r in cat.open("swe/instances@latest").to_table().to_pylist()]
    assert got in [row(r) for r in catalog.open("swe/instances@latest", store=mined["store"]).to_table().to_pylist()]
    assert list((tmp_path / "work").glob("*/swe/*/results/*.json"))    # the journal stayed on local disk
    assert not list((tmp_path / "work").glob("*/scratch/*"))            # Spark's driver-side copies are gone
    assert not cat.fs.glob(f"{cat.root}/**/_staging/*") and not _leftover_containers()
