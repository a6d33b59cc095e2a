"""Records from the files people have (JSONL, JSON, Parquet) or a catalog dataset, for stages
whose input layout is only known after looking: prompt sets, preference datasets.

``resolve_source`` pins what a source names (cache key and lineage); ``read_records`` gives Spark
the raw rows: Parquet files and datasets as their own columns, JSON files as text (one row per
JSONL line, or per whole ``.json`` file), parsed per batch by ``parse_text`` so that every layout's
fields survive and a bad line becomes one ``_corrupt_record`` row, not a failed job.
``sample_columns`` reads the field names of the first rows, without Spark and without hashing
the files, for layout detection before a run starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from skycurate.catalog.pins import FilePin

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".jsonl.gz")


def _is_files(source: str) -> bool:
    return any(source.endswith(s) for s in FILE_SUFFIXES) or "*" in source or Path(source).exists()


def resolve_source(source: str, store: str) -> "str | list[FilePin]":
    """What ``source`` names, pinned: a dataset version label, or the matching files pinned by
    content (the cache key and the lineage of what is made from them; files are hashed once)."""
    from skycurate.catalog import Catalog
    from skycurate.catalog.pins import pin_file
    from skycurate.connectors.jsonl import expand_sources
    from skycurate.errors import SkycurateError

    if not _is_files(source):
        return Catalog(store).resolve(source).label
    files = expand_sources([source])
    if not files:
        raise SkycurateError(f"no file matches {source}")
    return [pin_file(f, label=f"file:{f.name}") for f in files]


def read_records(spark: SparkSession, source: "str | list[FilePin]", store: str) -> tuple[DataFrame, list[Any], bool]:
    """(DataFrame of the raw records, parents for lineage, ``text``) from ``resolve_source``'s answer.

    Parquet files and datasets come as their own columns; JSON files as text (``text`` True: one
    row per JSONL line, or per whole ``.json`` file, column ``value``, ``whole`` set), for the
    caller's batch function to parse with ``parse_text``."""
    from pyspark.sql import functions as F

    from skycurate.catalog import Catalog
    from skycurate.errors import SkycurateError
    from skycurate.spark import read_dataset

    if isinstance(source, str):
        ref = Catalog(store).resolve(source)
        return read_dataset(spark, ref), [ref], False
    parents = [f.parent() for f in source]
    paths = [f.path for f in source]
    if all(p.endswith(".parquet") for p in paths):
        return spark.read.parquet(*paths), parents, False
    if any(p.endswith(".parquet") for p in paths):
        raise SkycurateError("mix of Parquet and JSONL files; pass one kind")
    lines = [p for p in paths if not p.endswith(".json")]
    wholes = [p for p in paths if p.endswith(".json")]
    frames = ([spark.read.text(lines).withColumn("whole", F.lit(False))] if lines else []) + \
        ([spark.read.text(wholes, wholetext=True).withColumn("whole", F.lit(True))] if wholes else [])
    df = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    return df, parents, True


def parse_text(value: str, whole: bool) -> list[dict[str, Any]]:
    """The records of one JSONL line (or one whole .json file: an object or a list of them); what
    does not parse, or is not an object, becomes one ``_corrupt_record`` row."""
    if not whole and not value.strip():
        return []
    try:
        data = json.loads(value)
    except ValueError:
        return [{"_corrupt_record": value[:4000]}]
    items = data if whole and isinstance(data, list) else [data]
    return [x if isinstance(x, dict) else {"_corrupt_record": json.dumps(x, ensure_ascii=False)[:4000]}
            for x in items]


def sample_columns(source: str, store: str, limit: int = 200) -> tuple[list[str], str]:
    """The field names in the first ``limit`` rows of the prompts (``source`` as configured: a
    dataset ref or files) and where they come from: what the layout is detected from, before any
    Spark job and without hashing the files."""
    import gzip

    import pyarrow.parquet as pq

    from skycurate.catalog import Catalog
    from skycurate.connectors.jsonl import expand_sources

    if not _is_files(source):
        return list(Catalog(store).open(source).schema.names), source
    files = expand_sources([source])
    if not files:
        return [], source
    path = str(files[0])
    if path.endswith(".parquet"):
        return list(pq.read_schema(path).names), Path(path).name
    names: dict[str, None] = {}
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        if path.endswith(".json"):
            rows = parse_text(f.read(), True)[:limit]
        else:
            rows = []
            for line in f:
                rows += parse_text(line, False)
                if len(rows) >= limit:
                    break
    for r in rows:
        if "_corrupt_record" not in r:
            names.update(dict.fromkeys(r))
    return list(names), Path(path).name


