"""A real Spark standalone cluster (master + workers on 127.0.0.1, ``standalone_cluster`` in conftest) runs a
stage through the factory."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest

pytestmark = pytest.mark.integration


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
    url = standalone_cluster.url
    env = {**os.environ, "SKYCURATE_SPARK_MASTER": url}
    done = subprocess.run([python, "-c", JOB, store], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["master"] == url
    assert result["kept"] == ["0", "2"] and result["rejected"] == 2
    apps = (standalone_cluster.state() or {})
    ran_here = [a["id"] for a in apps.get("activeapps", []) + apps.get("completedapps", [])]
    assert result["app_id"] in ran_here, "the job did not run on the standalone master"
