"""Trainers read a published version with plain Parquet readers, without skycurate."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from skycurate import catalog


def _publish(store: str):
    t = pa.table({
        "id": [f"doc-{i}" for i in range(6)],
        "text": ["hello", "世界", "a b c", "", "x", "y"],
        "score": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        "fetched": pa.array([dt.datetime(2024, 1, 1, 0, 0, i) for i in range(6)], pa.timestamp("ns")),
    })
    return catalog.publish("web/clean", t, store=store, max_rows_per_file=4)


def test_pyarrow_duckdb_spark_and_hf_datasets_read_a_version(store, spark):
    ref = _publish(store)

    by_pyarrow = ds.dataset(ref.uri, format="parquet").to_table().sort_by("id")  # skips _manifest.json
    assert by_pyarrow.num_rows == 6
    assert by_pyarrow.column("text").to_pylist()[1] == "世界"

    con = duckdb.connect()
    n, total = con.execute(f"SELECT count(*), sum(score) FROM read_parquet('{ref.uri}/*.parquet')").fetchone()
    assert n == 6 and abs(total - 2.1) < 1e-9

    sdf = spark.read.parquet(ref.uri)
    assert sdf.count() == 6
    # Nanosecond timestamps were written as microseconds, which Spark reads (it rejects nanos).
    assert dict(sdf.dtypes)["fetched"] == "timestamp_ntz"
    assert sdf.filter("id = 'doc-5'").first().fetched == dt.datetime(2024, 1, 1, 0, 0, 5)
    assert sorted(r.id for r in sdf.select("id").collect()) == [f"doc-{i}" for i in range(6)]

    from datasets import load_dataset

    hf = load_dataset("parquet", data_files=f"{ref.uri}/*.parquet", split="train")
    assert hf.num_rows == 6 and set(hf.column_names) == {"id", "text", "score", "fetched"}
