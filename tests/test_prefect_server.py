"""Deployments on a real Prefect server: ``prefect server start`` on 127.0.0.1 (own home and database
in a temp folder), a process work pool, ``prefect deploy`` from prefect.yaml, a run triggered
through the API and executed by ``prefect worker start --run-once``; then the run's state, its
artifacts, the published dataset, and every process stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from skycurate.catalog import Catalog

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_URL=f"http://127.0.0.1:{port}/api", SKYCURATE_HOME=str(ROOT),
               SKYCURATE_STORE=str(tmp_path / "store"))
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    api = env["PREFECT_API_URL"]
    try:
        for _ in range(120):
            try:
                if requests.get(f"{api}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("prefect server did not come up in 60 s")
        yield api, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _cli(env: dict, *args: str, timeout: int = 300) -> str:
    done = subprocess.run([PREFECT, *args], cwd=ROOT, env={**env, "COLUMNS": "250"}, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_a_deployment_runs_on_a_worker_and_reports_to_the_server(server):
    api, env = server
    _cli(env, "work-pool", "create", "skycurate", "--type", "process")
    deployed = subprocess.run([str(Path(sys.executable).with_name("skycurate")), "deploy", "--name", "hello-nightly"],
                              env=env, capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0 and "registered hello-nightly" in deployed.stdout, deployed.stderr
    deployment = requests.get(f"{api}/deployments/name/hello/hello-nightly", timeout=10).json()
    assert deployment["work_pool_name"] == "skycurate"
    assert [s["active"] for s in deployment["schedules"]] == [False]          # schedules ship inactive
    run = requests.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json={}, timeout=10).json()
    _cli(env, "worker", "start", "--pool", "skycurate", "--run-once")          # picks the run up, runs it

    state = requests.get(f"{api}/flow_runs/{run['id']}", timeout=10).json()["state"]
    assert state["type"] == "COMPLETED", state
    artifacts = requests.post(f"{api}/artifacts/filter", timeout=10,
                              json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}).json()
    assert {a["type"] for a in artifacts} >= {"table", "markdown"}             # the funnel table and chart
    assert run["id"] in _cli(env, "flow-run", "ls")                            # `prefect flow-run ls` shows it
    store = Catalog(env["SKYCURATE_STORE"])
    m = store.manifest("hello/clean@latest")
    assert m.num_rows > 0 and m.producer.flow == "hello" and m.producer.flow_run_id == run["id"]


def test_deploy_without_a_server_is_one_clear_line(monkeypatch):
    from typer.testing import CliRunner

    from skycurate.cli import app

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{_free_port()}/api")
    res = CliRunner().invoke(app, ["deploy"])
    assert res.exit_code != 0 and "does not answer" in res.output and "Traceback" not in res.output
    monkeypatch.delenv("PREFECT_API_URL")
    res = CliRunner().invoke(app, ["deploy"])
    assert res.exit_code != 0 and "PREFECT_API_URL is not set" in res.output


def test_serve_runs_deployments_from_one_process_without_a_worker(server, tmp_path):
    api, env = server
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("skycurate")), "serve", "--name", "hello-nightly"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deployment = None
        for _ in range(240):
            got = requests.get(f"{api}/deployments/name/hello/hello-nightly", timeout=10)
            if got.ok:
                deployment = got.json()
                break
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.5)
        assert deployment is not None, "skycurate serve did not register hello-nightly"
        assert [s["active"] for s in deployment["schedules"]] == [False]
        assert deployment["parameters"]["store"] == env["SKYCURATE_STORE"]          # {{ $SKYCURATE_STORE }} filled
        run: dict = {}
        for _ in range(120):   # serve may still be updating the deployment it just registered: retry
            deployment = requests.get(f"{api}/deployments/name/hello/hello-nightly", timeout=10).json()
            run = requests.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json={}, timeout=10).json()
            if "id" in run:
                break
            time.sleep(0.5)
        assert "id" in run, run
        state = {}
        for _ in range(480):
            state = requests.get(f"{api}/flow_runs/{run['id']}", timeout=10).json()["state"] or {}
            if state.get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(0.5)
        assert state.get("type") == "COMPLETED", state
        m = Catalog(env["SKYCURATE_STORE"]).manifest("hello/clean@latest")
        assert m.producer.flow_run_id == run["id"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
