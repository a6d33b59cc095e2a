"""One Spark session and one Prefect harness per test session; a fresh store per test."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
import functools
import os
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

# Before anything imports pyspark or prefect: 2 local cores, offline Prefect, no telemetry.
os.environ.setdefault("SKYCURATE_SPARK_MASTER", "local[2]")
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("SKYCURATE_STORE", None)
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def spark():
    from skycurate.schemas.config import SparkConfig
    from skycurate.spark import get_spark

    session = get_spark(SparkConfig(shuffle_partitions=4))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    import skycurate.flows  # noqa: F401 - applies the offline defaults

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def store(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's server mode) on 127.0.0.1, reached the way users reach
    theirs: endpoint and credentials in the standard AWS environment variables."""
    from moto.server import ThreadedMotoServer

    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "skycurate-test",
           "AWS_SECRET_ACCESS_KEY": "skycurate-test", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env["AWS_ENDPOINT_URL"]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def s3_store(s3_server, tmp_path, monkeypatch) -> str:
    """``s3://<fresh bucket>/store`` on the test server; local work and cache folders under tmp_path."""
    import uuid

    import boto3

    bucket = f"skycurate-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    monkeypatch.setenv("SKYCURATE_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("SKYCURATE_CACHE_DIR", str(tmp_path / "cache"))
    return f"s3://{bucket}/store"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def master_state(ui_port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as r:
            return json.load(r)
    except OSError:
        return None


def _wait(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


class SparkCluster(NamedTuple):
    url: str
    ui: int

    def state(self) -> dict | None:
        """The master's JSON status (workers, apps), None while it does not answer."""
        return master_state(self.ui)


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    """``(master URL, web UI port)`` of a Spark standalone master with two one-core workers on 127.0.0.1."""
    import pyspark

    tmp_path = tmp_path_factory.mktemp("spark-cluster")

    spark_home = Path(pyspark.__file__).parent
    spark_class = str(spark_home / "bin" / "spark-class")
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_DAEMON_MEMORY": "256m", "PYSPARK_PYTHON": sys.executable}
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(ui)], env=env, stdout=open(logs / "master.log", "w"), stderr=subprocess.STDOUT))
        _wait(lambda: (master_state(ui) or {}).get("status") == "ALIVE", "the Spark master")
        for n in range(2):
            procs.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                 "--memory", "1g", "--webui-port", str(_free_port()), "--work-dir", str(tmp_path / f"work-{n}"), url],
                env=env, stdout=open(logs / f"worker-{n}.log", "w"), stderr=subprocess.STDOUT))
        _wait(lambda: (master_state(ui) or {}).get("aliveworkers", 0) >= 2, "the Spark workers to register")
        yield SparkCluster(url, ui)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The interpreter with vLLM (``.venv-vllm``, made by ``make vllm``); a failure, not a skip, without it."""
    from skycurate.connectors.llm.vllm_process import find_vllm_python

    python = find_vllm_python()
    if python is None:
        pytest.fail("no vLLM interpreter: run `make vllm` (creates .venv-vllm) or set SKYCURATE_VLLM_PYTHON",
                    pytrace=False)
    return python


@contextlib.contextmanager
def serve_vllm(python: str, model_dir: str | os.PathLike, name: str, *, args: tuple[str, ...] | list[str] = (),
               log_path: str | os.PathLike | None = None, timeout_s: float = 240):
    """A real ``vllm serve`` (OpenAI-compatible API server) of ``model_dir`` as ``name`` on 127.0.0.1;
    yields the base URL (``http://127.0.0.1:PORT/v1``). ``args``: more server options."""
    import socket
    import subprocess
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    log_path = Path(log_path) if log_path else Path(model_dir).parent / f"vllm-serve-{name}.log"
    log = open(log_path, "w")  # noqa: SIM115 - open while the server runs
    proc = subprocess.Popen([python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                             "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), *args],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited ({proc.returncode}); see {log_path}", pytrace=False)
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"vllm serve did not come up in {timeout_s:g} s; see {log_path}", pytrace=False)
        yield url
        if proc.poll() is not None:   # it died while in use: say why, from its log
            log.flush()
            tail = "".join(Path(log_path).read_text(errors="replace").splitlines(keepends=True)[-40:])
            pytest.fail(f"vllm serve exited ({proc.returncode}) while in use; log tail:\n{tail}", pytrace=False)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def vllm_serve(vllm_python):
    """``with vllm_serve(model_dir, name, args=[...]) as base_url:`` - see :func:`serve_vllm`."""
    return functools.partial(serve_vllm, vllm_python)


def pytest_collection_modifyitems(session, config, items):
    """Spark workers cannot import test modules: pickle their functions by value instead."""
    from pyspark import cloudpickle

    for module in {item.module for item in items if getattr(item, "module", None)}:
        cloudpickle.register_pickle_by_value(module)
