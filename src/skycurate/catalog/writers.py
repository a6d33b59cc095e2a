"""Turn whatever a stage produced into Parquet files inside a staging folder.

Accepted inputs: a pyarrow Table / RecordBatch / RecordBatchReader / Dataset, an
iterable of RecordBatches, a Spark DataFrame (written by Spark itself, never
collected to the driver), or a callable ``writer(staging_url) -> None`` that
writes ``*.parquet`` files into the folder it is given.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from collections.abc import Iterable
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from skycurate.catalog.manifest import FileEntry
from skycurate.errors import PublishError

PART_NAME = "part-{:05d}.parquet"
DEFAULT_MAX_ROWS_PER_FILE = 1_000_000
# Spark's Hadoop connectors spell some schemes differently from fsspec.
_SPARK_SCHEMES = {"file": "file", "local": "file", "s3": "s3a", "s3a": "s3a", "gcs": "gs", "gs": "gs",
                  "hdfs": "hdfs", "abfs": "abfs", "abfss": "abfss"}


def is_spark_dataframe(obj: Any) -> bool:
    return hasattr(obj, "sparkSession") and hasattr(obj, "write") and hasattr(obj, "mapInArrow")


def spark_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URL under which Spark (Hadoop) sees ``path`` of ``fs``."""
    if isinstance(fs, LocalFileSystem):
        return "file://" + path
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    scheme = _SPARK_SCHEMES.get(protocol)
    if scheme is None:
        raise PublishError(
            f"Spark cannot write to a {protocol}:// store; use a local path or an object store "
            "Spark can reach (s3://, gs://, hdfs://), or pass an Arrow table"
        )
    return f"{scheme}://{path}"


def spark_reaches(spark: Any, fs: fsspec.AbstractFileSystem) -> bool:
    """Whether Spark's Hadoop layer can read and write ``fs`` itself.

    Local stores always; an object store only when the cluster has its connector (``s3a://``
    needs ``hadoop-aws`` on the classpath, which pyspark does not ship). Otherwise the catalog
    moves files between the store and the driver's disk for Spark (``spark_local_master``).
    """
    if isinstance(fs, LocalFileSystem):
        return True
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    scheme = _SPARK_SCHEMES.get(protocol)
    if scheme is None:
        return False
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:  # Spark Connect: the server has its own classpath; let it try
        return True
    try:
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, spark._jsc.hadoopConfiguration())
        return True
    except Exception:  # noqa: BLE001 - py4j raises a generic error for "No FileSystem for scheme"
        return False


def spark_local_master(spark: Any, fs: fsspec.AbstractFileSystem) -> None:
    """Fail clearly when Spark can reach neither the store nor the driver's disk (a cluster without the connector)."""
    master = spark.sparkContext.master
    if not master.startswith("local"):
        protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
        raise PublishError(
            f"Spark ({master}) cannot reach {protocol}:// stores: add the connector to the cluster "
            "(e.g. spark.jars.packages=org.apache.hadoop:hadoop-aws:<its Hadoop version>) or use a local master")


def _writer_options() -> dict[str, Any]:
    # Microsecond timestamps: Spark cannot read nanosecond Parquet timestamps.
    return {"compression": "zstd", "coerce_timestamps": "us", "allow_truncated_timestamps": True}


class _RollingParquetWriter:
    """Writes batches into part files of at most ``max_rows`` rows each."""

    def __init__(self, fs, staging: str, schema: pa.Schema | None, max_rows: int):
        self.fs, self.staging, self.schema, self.max_rows = fs, staging, schema, max_rows
        self.parts, self._rows, self._writer, self._handle = 0, 0, None, None

    def _open(self) -> None:
        self._handle = self.fs.open(posixpath.join(self.staging, PART_NAME.format(self.parts)), "wb")
        self._writer = pq.ParquetWriter(self._handle, self.schema, **_writer_options())
        self.parts += 1
        self._rows = 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._handle.close()
            self._writer = self._handle = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self.schema is None:
            self.schema = batch.schema
        offset = 0
        while offset < batch.num_rows:
            if self._writer is None:
                self._open()
            take = min(batch.num_rows - offset, self.max_rows - self._rows)
            self._writer.write_batch(batch.slice(offset, take))
            offset += take
            self._rows += take
            if self._rows >= self.max_rows:
                self.close()

    def finish(self) -> None:
        self.close()
        if self.parts == 0:  # an empty dataset still gets one file that carries the schema
            if self.schema is None:
                raise PublishError("nothing to publish: no record batches and no schema given")
            self._open()
            self.close()


def _write_batches(fs, staging: str, batches: Iterable[pa.RecordBatch], schema: pa.Schema | None,
                   max_rows_per_file: int) -> None:
    writer = _RollingParquetWriter(fs, staging, schema, max_rows_per_file)
    try:
        for batch in batches:
            writer.write(batch)
        writer.finish()
    finally:
        writer.close()


def write_into(fs, staging: str, data: Any, *, schema: pa.Schema | None = None,
               max_rows_per_file: int = DEFAULT_MAX_ROWS_PER_FILE) -> None:
    """Write ``data`` as Parquet files into the (existing, empty) folder ``staging``."""
    if isinstance(data, pa.Table):
        _write_batches(fs, staging, data.to_batches(max_chunksize=max_rows_per_file), schema or data.schema,
                       max_rows_per_file)
    elif isinstance(data, pa.RecordBatch):
        _write_batches(fs, staging, [data], schema or data.schema, max_rows_per_file)
    elif isinstance(data, pa.RecordBatchReader):
        _write_batches(fs, staging, data, schema or data.schema, max_rows_per_file)
    elif isinstance(data, pads.Dataset):
        _write_batches(fs, staging, data.to_batches(), schema or data.schema, max_rows_per_file)
    elif is_spark_dataframe(data) and not spark_reaches(data.sparkSession, fs):
        _write_spark_through_local_disk(fs, staging, data, max_rows_per_file)
    elif is_spark_dataframe(data):
        out = posixpath.join(staging, "_spark")
        (data.write.mode("errorifexists").option("compression", "zstd")
         .option("maxRecordsPerFile", max_rows_per_file).parquet(spark_url(fs, out)))
        _adopt_parquet_files(fs, staging, out)
    elif callable(data):
        out = posixpath.join(staging, "_writer")
        fs.makedirs(out, exist_ok=True)
        target = spark_url(fs, out) if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(out)
        data(target)
        _adopt_parquet_files(fs, staging, out)
    elif isinstance(data, Iterable):
        _write_batches(fs, staging, iter(data), schema, max_rows_per_file)
    else:
        raise PublishError(f"cannot publish a {type(data).__name__}: pass an Arrow table, record batches, "
                           "a Spark DataFrame or a writer callable")


def _write_spark_through_local_disk(fs, staging: str, df: Any, max_rows_per_file: int) -> None:
    """Spark writes into a local temporary folder, then the parts are uploaded into ``staging``."""
    spark_local_master(df.sparkSession, fs)
    with tempfile.TemporaryDirectory(prefix="skycurate-publish-") as tmp:
        out = os.path.join(tmp, "out")
        df.write.option("compression", "zstd").option("maxRecordsPerFile", max_rows_per_file).parquet("file://" + out)
        found = sorted(n for n in os.listdir(out) if n.endswith(".parquet") and not n.startswith((".", "_")))
        if not found:
            raise PublishError("Spark produced no .parquet files")
        for i, name in enumerate(found):
            fs.put_file(os.path.join(out, name), posixpath.join(staging, PART_NAME.format(i)))


def _adopt_parquet_files(fs, staging: str, out: str) -> None:
    """Move the ``*.parquet`` files a foreign writer made into ``part-NNNNN.parquet`` names."""
    found = sorted(p for p in fs.find(out) if p.endswith(".parquet") and not posixpath.basename(p).startswith((".", "_")))
    if not found:
        raise PublishError(f"the writer produced no .parquet files under {out}")
    for i, path in enumerate(found):
        if posixpath.dirname(path).rstrip("/") != out.rstrip("/"):
            raise PublishError(f"partitioned output is not supported yet ({path}); write one flat folder")
        fs.mv(path, posixpath.join(staging, PART_NAME.format(i)))
    fs.rm(out, recursive=True)


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 hex of a local file (input fingerprints for lineage and cache keys), streamed."""
    return hash_file(LocalFileSystem(), str(path))[0]


def hash_file(fs, path: str, chunk: int = 8 << 20) -> tuple[str, int]:
    """(sha256 hex, size in bytes), streamed."""
    h = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def count_rows(fs, path: str) -> int:
    """Row count from the Parquet footer."""
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def describe_file(fs, path: str, rel: str) -> FileEntry:
    sha256, size = hash_file(fs, path)
    return FileEntry(path=rel, rows=count_rows(fs, path), bytes=size, sha256=sha256)


def read_schema(fs, path: str) -> pa.Schema:
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).schema_arrow
