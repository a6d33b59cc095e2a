"""A real Spark standalone cluster (master + worker on 127.0.0.1) runs a stage through the factory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _master_state(ui_port: int) -> dict | None:
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


@pytest.fixture
def standalone_cluster(tmp_path):
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    spark_class = str(spark_home / "bin" / "spark-class")
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_DAEMON_MEMORY": "256m", "PYSPARK_PYTHON": sys.executable}
    port, ui, worker_ui = _free_port(), _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(ui)], env=env, stdout=open(logs / "master.log", "w"), stderr=subprocess.STDOUT))
        _wait(lambda: (_master_state(ui) or {}).get("status") == "ALIVE", "the Spark master")
        procs.append(subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
             "--memory", "1g", "--webui-port", str(worker_ui), "--work-dir", str(tmp_path / "work"), url],
            env=env, stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT))
        _wait(lambda: (_master_state(ui) or {}).get("aliveworkers", 0) >= 1, "the Spark worker to register")
        yield url, ui
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


JOB = textwrap.dedent("""
    import json, sys
    import pyarrow as pa
    from skycurate import catalog
    from skycurate.schemas.config import SparkConfig
    from skycurate.schemas.hello import LengthFilterConfig
    from skycurate.spark import get_spark, read_dataset
    from skycurate.stages import hello

    store = sys.argv[1]
    spark = get_spark(SparkConfig(conf={"spark.executor.memory": "512m", "spark.cores.max": "1"}))
    texts = ["one two three four", "too short", "长江是亚洲第一长河", ""]
    raw = catalog.publish("t/raw", pa.table({"id": [str(i) for i in range(4)], "text": texts}), store=store)
    kept, rejected = hello.clean(read_dataset(spark, raw), LengthFilterConfig(min_words=3))
    clean = catalog.publish("t/clean", kept, parents=[raw], store=store)
    print(json.dumps({"master": spark.sparkContext.master, "app_id": spark.sparkContext.applicationId,
                      "kept": sorted(catalog.open(clean).to_table().column("id").to_pylist()),
                      "rejected": rejected.count()}))
    spark.stop()
""")


def test_job_runs_on_a_standalone_cluster_through_the_factory(standalone_cluster, store, python):
    url, ui = standalone_cluster
    env = {**os.environ, "SKYCURATE_SPARK_MASTER": url}
    done = subprocess.run([python, "-c", JOB, store], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["master"] == url
    assert result["kept"] == ["0", "2"] and result["rejected"] == 2
    apps = (_master_state(ui) or {})
    ran_here = [a["id"] for a in apps.get("activeapps", []) + apps.get("completedapps", [])]
    assert result["app_id"] in ran_here, "the job did not run on the standalone master"
