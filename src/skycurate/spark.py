"""The one SparkSession factory, and helpers to run pure Arrow batch functions on Spark.

``local[*]`` by default; any master (``spark://host:7077``, ``k8s://...``, ``yarn``) by
``spark.master`` in a flow config or ``$SKYCURATE_SPARK_MASTER``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from skycurate.schemas.config import SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from skycurate.catalog import DatasetRef

log = logging.getLogger(__name__)

BatchFn = Callable[[pa.RecordBatch], pa.RecordBatch]


def _is_local(master: str) -> bool:
    return master.startswith("local") or "127.0.0.1" in master or "localhost" in master


_DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
QUICK_JIT = "-XX:TieredStopAtLevel=1"


def _session_conf(cfg: SparkConfig, master: str) -> dict[str, str]:
    conf = {
        "spark.app.name": cfg.app_name,
        "spark.driver.memory": cfg.driver_memory,
        "spark.ui.enabled": str(cfg.ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        # Microsecond timestamps in Parquet (docs/architecture.md); INT96 is Spark's legacy default.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(cfg.arrow_batch_rows),
        "spark.sql.parquet.compression.codec": "zstd",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    if cfg.shuffle_partitions is not None:
        conf["spark.sql.shuffle.partitions"] = str(cfg.shuffle_partitions)
    elif master.startswith("local"):
        conf["spark.sql.shuffle.partitions"] = str(2 * (os.cpu_count() or 2))
    if _is_local(master):
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    conf.update(cfg.conf)
    if master.startswith("local") and cfg.local_jit == "quick":
        options = conf.get(_DRIVER_JAVA_OPTIONS, "")
        if "TieredStopAtLevel" not in options:
            conf[_DRIVER_JAVA_OPTIONS] = f"{QUICK_JIT} {options}".strip()
    return conf


def get_spark(cfg: SparkConfig | None = None) -> "SparkSession":
    """Return the process's SparkSession, creating it (or replacing one with another master)."""
    from pyspark.sql import SparkSession

    cfg = cfg or SparkConfig()
    master = cfg.resolved_master()
    # The active session is per thread; a session started in another thread is
    # the process's default one and is reused the same way.
    active = SparkSession.getActiveSession() or _default_session()
    if active is not None:
        if active.sparkContext.master == master:
            return active
        log.warning("stopping the Spark session on %s to start one on %s", active.sparkContext.master, master)
        active.stop()

    # Executors must run the same interpreter (and so see the same installed packages) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if _is_local(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if master.startswith("local"):
        # The JVM started below inherits this: glibc's default of 8 malloc arenas per core let the
        # local JVM's resident memory grow far past its heap on long runs.
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")

    builder = SparkSession.builder.master(master)
    for key, value in _session_conf(cfg, master).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    return spark


def _default_session() -> "SparkSession | None":
    from pyspark.sql import SparkSession

    session = SparkSession._instantiatedSession
    return session if session is not None and session._sc._jsc is not None else None


def balanced(df: "DataFrame", per_core: int = 2) -> "DataFrame":
    """``df`` spread over at least ``per_core`` partitions per core, for Python (``mapInArrow``) stages.

    A stage dataset is read in as many partitions as Spark packs its files into, and a small one
    often packs into two of very unequal size: on two cores one task then does most of the work.
    Inputs already split finer than that are left as they are (no extra shuffle at scale).
    Round-robin repartitioning is deterministic for the same input (Spark sorts before it).
    """
    target = per_core * df.sparkSession.sparkContext.defaultParallelism
    if df.rdd.getNumPartitions() >= target:
        return df
    return df.repartition(target)


def arrow_schema(df: "DataFrame") -> pa.Schema:
    """The Arrow schema of a Spark DataFrame as ``mapInArrow`` hands it over (timestamps in UTC)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(df.schema, timezone="UTC")


def spark_schema(schema: pa.Schema):
    """Arrow schema -> Spark StructType (for ``mapInArrow``)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def map_batches(df: "DataFrame", fn: BatchFn, output_schema: pa.Schema) -> "DataFrame":
    """Apply a pure ``RecordBatch -> RecordBatch`` function to every batch with ``mapInArrow``.

    The output of ``fn`` is cast to ``output_schema`` so a stage cannot drift from what it
    declares; ``fn`` must be picklable (a module-level function or a ``functools.partial``).
    """
    return flat_map_batches(df, partial(_one, fn), output_schema)


def _one(fn: BatchFn, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    yield fn(batch)


def flat_map_batches(df: "DataFrame", fn: Callable[[pa.RecordBatch], Iterator[pa.RecordBatch]],
                     output_schema: pa.Schema) -> "DataFrame":
    """Like ``map_batches`` for one-to-many functions (e.g. a batch of file paths -> their records)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for out in fn(batch):
                if out.schema != output_schema:
                    out = pa.Table.from_batches([out]).select(output_schema.names).cast(output_schema).combine_chunks()
                    yield from out.to_batches()
                else:
                    yield out

    return df.mapInArrow(run, spark_schema(output_schema))


def read_dataset(spark: "SparkSession", ref: "str | DatasetRef", store: Any = None) -> "DataFrame":
    """A Spark DataFrame over exactly the files of a published version."""
    from skycurate.catalog import Catalog, DatasetRef
    from skycurate.catalog.writers import spark_local_master, spark_reaches, spark_url

    cat = Catalog(ref.store if isinstance(ref, DatasetRef) and store is None else store)
    if spark_reaches(spark, cat.fs):
        paths = [spark_url(cat.fs, p) for p in cat.file_paths(ref)]
    else:  # no connector for the store: read verified copies on the driver's disk
        spark_local_master(spark, cat.fs)
        paths = ["file://" + p for p in cat.local_files(ref)]
    return spark.read.parquet(*paths)
