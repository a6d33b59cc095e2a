"""One Spark session and one Prefect harness per test session; a fresh store per test."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

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
