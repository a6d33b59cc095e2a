"""The SWE mining Spark job gives the same candidates and rejections on ``local[1]``, ``local[2]`` and
a standalone cluster of two workers on 127.0.0.1 (each in its own driver process, as a flow run is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixture_repos as fr  # noqa: E402

pytestmark = pytest.mark.integration

MINE = """
import json, sys
from skycurate.schemas.config import SparkConfig
from skycurate.schemas.swe import MiningConfig
from skycurate.spark import get_spark
from skycurate.stages.swe.mining import mine_on_spark

master, specs, export, cache = json.loads(sys.argv[1])
spark = get_spark(SparkConfig(master=master, conf={"spark.executor.memory": "1g", "spark.cores.max": "2"}))
candidates, rejected = mine_on_spark(spark, specs, MiningConfig(cache_dir=cache), export=export)
rows = lambda df: sorted(json.dumps(r.asDict(recursive=True), sort_keys=True, default=str) for r in df.collect())
print("MINED " + json.dumps({"candidates": rows(candidates), "rejected": rows(rejected),
                             "partitions": spark.sparkContext.defaultParallelism}))
"""


def test_mining_gives_the_same_rows_on_every_engine(standalone_cluster, tmp_path):
    fx = fr.build_all(tmp_path / "repos")
    export = fr.write_export(fx, tmp_path / "export.jsonl")
    specs = [str(r.path) for r in fx.values()] + [{"spec": fx["flaky"].path.as_uri(), "name": "mirror/flaky"},
                                                  (tmp_path / "missing").as_uri()]
    mined = {}
    for master in ("local[1]", "local[2]", standalone_cluster.url):
        arg = json.dumps([master, specs, str(export), str(tmp_path / "cache")])
        done = subprocess.run([sys.executable, "-c", MINE, arg], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{master}:\n{done.stderr[-3000:]}"
        [line] = [x for x in done.stdout.splitlines() if x.startswith("MINED ")]
        mined[master] = json.loads(line.removeprefix("MINED "))
    first = mined["local[1]"]
    assert len(first["candidates"]) >= len(fx) and first["rejected"]   # candidates of every fixture, and rejections
    assert {m["partitions"] for m in mined.values()} == {1, 2}          # really one and two cores
    for master, got in mined.items():
        assert got["candidates"] == first["candidates"], master
        assert got["rejected"] == first["rejected"], master
