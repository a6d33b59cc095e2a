"""The Spark session factory and the mapInArrow stage wrapper, on the session's local Spark."""

from __future__ import annotations

import os
import sys
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from skycurate import catalog
from skycurate.catalog import Catalog
from skycurate.errors import StageContractError, StoreError
from skycurate.schemas.config import SparkConfig
from skycurate.spark import _session_conf, get_spark, map_batches, read_dataset
from skycurate.stages.base import BatchStage, with_columns


def test_factory_defaults(spark):
    assert spark.sparkContext.master == "local[2]"  # from SKYCURATE_SPARK_MASTER set by conftest
    conf = spark.conf
    assert conf.get("spark.sql.parquet.outputTimestampType") == "TIMESTAMP_MICROS"
    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert os.environ["PYSPARK_PYTHON"] == sys.executable
    assert os.environ["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert get_spark() is spark  # same master: the one session is reused


def test_local_sessions_compile_with_c1_only_unless_told_otherwise(spark):
    # The running JVM's own flag, read through the management bean: the option reached the JVM.
    bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert "-XX:TieredStopAtLevel=1" in list(bean.getInputArguments())
    assert _session_conf(SparkConfig(), "local[2]")["spark.driver.extraJavaOptions"] == "-XX:TieredStopAtLevel=1"
    mixed = _session_conf(SparkConfig(conf={"spark.driver.extraJavaOptions": "-Dx=1"}), "local[2]")
    assert mixed["spark.driver.extraJavaOptions"] == "-XX:TieredStopAtLevel=1 -Dx=1"
    theirs = _session_conf(SparkConfig(conf={"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=4"}), "local")
    assert theirs["spark.driver.extraJavaOptions"] == "-XX:TieredStopAtLevel=4"
    assert "spark.driver.extraJavaOptions" not in _session_conf(SparkConfig(local_jit="full"), "local[2]")
    # a cluster's executors are other JVMs: the driver's JIT is left alone
    assert "spark.driver.extraJavaOptions" not in _session_conf(SparkConfig(), "spark://10.0.0.1:7077")


def test_master_precedence(monkeypatch):
    monkeypatch.setenv("SKYCURATE_SPARK_MASTER", "spark://10.0.0.1:7077")
    assert SparkConfig().resolved_master() == "spark://10.0.0.1:7077"
    assert SparkConfig(master="local[4]").resolved_master() == "local[4]"
    monkeypatch.delenv("SKYCURATE_SPARK_MASTER")
    assert SparkConfig().resolved_master() == "local[*]"


def _double(batch: pa.RecordBatch) -> pa.RecordBatch:
    # int32 on purpose: map_batches must cast to the declared int64
    return pa.RecordBatch.from_arrays([batch.column("x"), pc.multiply(batch.column("x"), 2).cast(pa.int32())],
                                      names=["x", "y"])


def test_map_batches_applies_a_pure_function_and_casts_to_the_declared_schema(spark):
    df = spark.createDataFrame([(i,) for i in range(100)], "x long").repartition(3)
    out = map_batches(df, _double, pa.schema([("x", pa.int64()), ("y", pa.int64())]))
    assert out.schema.simpleString() == "struct<x:bigint,y:bigint>"
    rows = sorted(out.collect())
    assert [(r.x, r.y) for r in rows] == [(i, 2 * i) for i in range(100)]


def _shout(batch: pa.RecordBatch, suffix: str) -> pa.RecordBatch:
    return with_columns(batch, {"loud": pc.binary_join_element_wise(pc.utf8_upper(batch.column("text")), suffix, "")})


SHOUT = BatchStage(name="shout", fn=_shout, requires=("text",), adds=(pa.field("loud", pa.string()),))


def test_batch_stage_runs_the_same_on_arrow_and_on_spark(spark, store):
    t = pa.table({"id": [1, 2, 3], "text": ["a", "b", None]})
    local = SHOUT(t.to_batches()[0], "!")
    assert local.column("loud").to_pylist() == ["A!", "B!", None]

    ref = catalog.publish("t/in", t, store=store)
    out = SHOUT.on_spark(read_dataset(spark, ref), "!")
    published = catalog.publish("t/out", out, parents=[ref], store=store)  # Spark writes, driver never collects
    m = catalog.manifest(published)
    assert m.num_rows == 3 and all(f.path.startswith("part-") for f in m.files)
    got = catalog.open(published).to_table().sort_by("id")
    assert got.column("loud").to_pylist() == local.column("loud").to_pylist()
    assert catalog.verify(published).ok


def test_batch_stage_refuses_input_without_its_columns(spark):
    df = spark.createDataFrame([(1,)], "id long")
    with pytest.raises(StageContractError, match="stage shout needs column\\(s\\) text"):
        SHOUT.on_spark(df, "!")
    with pytest.raises(StageContractError):
        SHOUT(pa.record_batch({"id": [1]}), "!")


def test_spark_reaches_a_store_without_a_hadoop_connector_through_the_drivers_disk(spark, tmp_path, monkeypatch):
    """memory:// has no Hadoop filesystem: Spark writes locally and the parts are uploaded; reading
    back goes through verified local copies; a scratch folder lands on the driver's disk."""
    from skycurate.spark import read_dataset

    monkeypatch.setenv("SKYCURATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SKYCURATE_WORK_DIR", str(tmp_path / "work"))
    catalog = Catalog(f"memory://spark-{uuid.uuid4().hex[:8]}")
    df = spark.createDataFrame([(i, f"t{i}") for i in range(7)], "id long, text string").repartition(3)
    ref = catalog.publish("t/x", df)
    assert catalog.verify(ref).ok and catalog.manifest(ref).num_rows == 7
    back = read_dataset(spark, ref)
    assert sorted(r.id for r in back.collect()) == list(range(7))
    copies = catalog.local_files(ref)
    assert len(copies) == len(catalog.manifest(ref).files)
    assert all(p.startswith(str(tmp_path / "cache")) for p in copies)
    with catalog.scratch("probe") as scratch:
        assert scratch.startswith("file://" + str(tmp_path / "work"))
        spark.range(3).write.parquet(scratch + "/x")
    assert not any((tmp_path / "work").rglob("*.parquet"))


def test_a_corrupted_remote_file_is_not_handed_to_spark(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("SKYCURATE_CACHE_DIR", str(tmp_path / "cache"))
    catalog = Catalog(f"memory://spark-{uuid.uuid4().hex[:8]}")
    ref = catalog.publish("t/x", pa.table({"id": [1, 2]}))
    path = catalog.file_paths(ref)[0]
    catalog.fs.pipe_file(path, catalog.fs.cat_file(path)[:-9] + b"x" * 9)
    with pytest.raises(StoreError, match="differs from its manifest's sha256"):
        catalog.local_files(ref)
    assert not any((tmp_path / "cache").rglob("*.parquet*"))


def test_balanced_spreads_a_small_input_over_the_cores_and_leaves_a_split_one_alone(spark):
    from skycurate.spark import balanced

    target = 2 * spark.sparkContext.defaultParallelism
    one = spark.createDataFrame([(i,) for i in range(50)], "x long").coalesce(1)
    spread = balanced(one)
    assert spread.rdd.getNumPartitions() == target
    assert sorted(r.x for r in spread.collect()) == list(range(50))
    many = one.repartition(target + 1)
    assert balanced(many) is many
