"""Token counts: a ``n_tokens`` column for any dataset, and totals by language and source.

The counting is the ``tokenizers`` library's ``encode_batch`` (Rust, the same fast tokenizer
trainers load), once per batch of rows; on Spark every Python worker loads the tokenizer once
(``_cached``) and counts its partitions. Chat data (a ``messages`` column) counts the content of
every turn: what the trainer's loss sees, without the chat template's few fixed tokens per turn.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from skycurate.catalog.pins import FilePin, pin_file
from skycurate.errors import SkycurateError
from skycurate.schemas.tokens import TEXT_COLUMNS, TOKENS_COLUMN, TokenizerConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class _Tiktoken:
    def __init__(self, name: str) -> None:
        try:
            import tiktoken
        except ImportError:
            raise SkycurateError(f"tokenizer tiktoken:{name} needs tiktoken: pip install tiktoken") from None
        self.enc = tiktoken.get_encoding(name)

    def counts(self, texts: list[str], add_special_tokens: bool) -> list[int]:
        return [len(t) for t in self.enc.encode_ordinary_batch(texts)]


class _HF:
    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))
        self.tok.no_truncation()
        self.tok.no_padding()

    def counts(self, texts: list[str], add_special_tokens: bool) -> list[int]:
        return [len(e.ids) for e in self.tok.encode_batch(texts, add_special_tokens=add_special_tokens)]


def _resolve(spec: str) -> Path:
    """The ``tokenizer.json`` a spec names (a folder holds it); one line when there is none."""
    path = Path(spec)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise SkycurateError(f"tokenizer not found: {spec} (a folder with tokenizer.json, a tokenizer.json file, or "
                             "tiktoken:<encoding>)")
    return path


@functools.lru_cache(maxsize=4)
def _cached(spec: str, stamp: tuple[int, int] | None = None) -> Any:
    """One loaded tokenizer per process and file state: ``stamp`` (size, mtime) makes a tokenizer.json
    replaced in place load again, in the driver and in reused Spark Python workers alike."""
    if spec.startswith("tiktoken:"):
        return _Tiktoken(spec.split(":", 1)[1])
    path = _resolve(spec)
    try:
        return _HF(path)
    except Exception as e:  # noqa: BLE001 - one line for the user
        raise SkycurateError(f"cannot load the tokenizer {path}: {type(e).__name__}: {e}") from None


def load_counter(cfg: TokenizerConfig) -> Any:
    """The tokenizer (loaded once per process); raises ``SkycurateError`` with one line when it cannot."""
    if cfg.tokenizer.startswith("tiktoken:"):
        return _cached(cfg.tokenizer)
    st = _resolve(cfg.tokenizer).stat()
    return _cached(cfg.tokenizer, (st.st_size, st.st_mtime_ns))


def tokenizer_pin(cfg: TokenizerConfig) -> FilePin | None:
    """The ``tokenizer.json`` counted with, pinned by content: as a dataset task input a changed
    tokenizer recounts, as a lineage parent the manifest says which one counted (tiktoken: None,
    the encoding's name is its identity)."""
    if cfg.tokenizer.startswith("tiktoken:"):
        return None
    return pin_file(_resolve(cfg.tokenizer), label="tokenizer")


def checked_pin(cfg: TokenizerConfig | None) -> FilePin | None:
    """At a flow's start: the tokenizer loads (else one line, before any stage runs) and is pinned;
    None when the flow counts no tokens."""
    if cfg is None:
        return None
    load_counter(cfg)
    return tokenizer_pin(cfg)


def tokenizer_identity(cfg: TokenizerConfig, pin: FilePin | None, column: str | None = None) -> dict[str, Any]:
    """What a manifest records about the count: the tokenizer as configured, its file's sha256, the
    counted column and whether special tokens were counted."""
    out: dict[str, Any] = {"tokenizer": cfg.tokenizer, "tokenizer_sha256": pin.sha256 if pin else None,
                           "add_special_tokens": cfg.add_special_tokens}
    if column is not None:
        out["text_column"] = column
    return out


def text_column(names: Sequence[str], cfg: TokenizerConfig, where: str = "the dataset") -> str:
    """The column counted: ``cfg.text_column``, else the first of ``TEXT_COLUMNS`` the data has."""
    if cfg.text_column:
        if cfg.text_column not in names:
            raise SkycurateError(f"{where} has no column {cfg.text_column!r} (it has {', '.join(names)}): "
                                 "fix tokens.text_column")
        return cfg.text_column
    found = next((c for c in TEXT_COLUMNS if c in names), None)
    if found is None:
        raise SkycurateError(f"{where} has none of the text columns {', '.join(TEXT_COLUMNS)} (it has "
                             f"{', '.join(names)}): set tokens.text_column")
    return found


def _texts(col: pa.Array | pa.ChunkedArray) -> list[str]:
    """Strings of a text column; a chat column (list of {role, content}) becomes its turns' contents
    joined by newlines; null is the empty text."""
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        out = []
        for turns in col.to_pylist():
            parts = [t.get("content") if isinstance(t, dict) else t for t in turns or ()]
            out.append("\n".join(p if isinstance(p, str) else json.dumps(p, ensure_ascii=False)
                                 for p in parts if p is not None))
        return out
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    return [t or "" for t in col.to_pylist()]


def count_texts(texts: Sequence[str], cfg: TokenizerConfig) -> list[int]:
    """Tokens of each text, ``cfg.batch_rows`` at a time."""
    counter = load_counter(cfg)
    out: list[int] = []
    for i in range(0, len(texts), cfg.batch_rows):
        out.extend(counter.counts(list(texts[i:i + cfg.batch_rows]), cfg.add_special_tokens))
    return out


def count_batch(batch: pa.RecordBatch, cfg: TokenizerConfig, column: str) -> pa.RecordBatch:
    """``batch`` with ``n_tokens`` (int64) added (replaced if present)."""
    counts = pa.array(count_texts(_texts(batch.column(column)), cfg), pa.int64())
    if TOKENS_COLUMN in batch.schema.names:
        idx = batch.schema.get_field_index(TOKENS_COLUMN)
        return batch.set_column(idx, pa.field(TOKENS_COLUMN, pa.int64()), counts)
    return batch.append_column(pa.field(TOKENS_COLUMN, pa.int64()), counts)


def count_table(table: pa.Table, cfg: TokenizerConfig, where: str = "the dataset") -> pa.Table:
    """``count_batch`` over a whole Arrow table (driver-side datasets: CoT, SWE)."""
    column = text_column(table.column_names, cfg, where)
    batches = [count_batch(b, cfg, column) for b in table.to_batches(max_chunksize=cfg.batch_rows * 8)]
    if not batches:
        return table.append_column(pa.field(TOKENS_COLUMN, pa.int64()), pa.array([], pa.int64()))
    return pa.Table.from_batches(batches)


def tokens_on_spark(df: DataFrame, cfg: TokenizerConfig, where: str = "the dataset") -> DataFrame:
    """``df`` with ``n_tokens``: every worker loads the tokenizer once and counts its batches."""
    from skycurate.spark import arrow_schema, map_batches

    column = text_column(df.columns, cfg, where)
    load_counter(cfg)   # a missing tokenizer is one line on the driver, not a failed Spark task
    schema = arrow_schema(df)
    if TOKENS_COLUMN in schema.names:
        schema = schema.remove(schema.get_field_index(TOKENS_COLUMN))
    return map_batches(df, functools.partial(_count_on_worker, cfg=cfg, column=column),
                       schema.append(pa.field(TOKENS_COLUMN, pa.int64())))


def _count_on_worker(batch: pa.RecordBatch, cfg: TokenizerConfig, column: str) -> pa.RecordBatch:
    """``count_batch`` in a Spark Python worker. Spark already runs one task per core, so the
    tokenizer's own Rust thread pool stays off there (N workers x N threads on N cores only
    contend), unless ``TOKENIZERS_PARALLELISM`` is set."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return count_batch(batch, cfg, column)


def counted_on_spark(df: DataFrame, cfg: TokenizerConfig, scratch: str, where: str = "the dataset") -> DataFrame:
    """``tokens_on_spark`` written once to ``scratch`` (a ``Catalog.scratch`` folder) and read back: the
    publish copies it and ``token_stats_on_spark`` sums its small columns, with one tokenizer pass and
    nothing cached in executor memory. ``scratch`` must outlive the publish."""
    tokens_on_spark(df, cfg, where).write.mode("overwrite").option("compression", "zstd").parquet(scratch)
    return df.sparkSession.read.parquet(scratch)


def _group(values: list[Any], counts: list[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v, n in zip(values, counts, strict=True):
        key = "unknown" if v is None else str(v)
        out[key] = out.get(key, 0) + n
    return dict(sorted(out.items()))


def token_stats(table: pa.Table, cfg: TokenizerConfig, by: Sequence[str] = ("lang", "source")) -> dict[str, Any]:
    """Manifest stats of a counted table: total tokens and rows, and tokens per ``by`` column present."""
    counts = table[TOKENS_COLUMN].to_pylist()
    stats: dict[str, Any] = {"tokenizer": cfg.tokenizer, "tokens": int(sum(counts)), "rows": table.num_rows}
    for name in by:
        if name in table.column_names:
            stats[f"by_{name}"] = _group(table[name].to_pylist(), counts)
    return stats


def token_stats_on_spark(df: DataFrame, cfg: TokenizerConfig, by: Sequence[str] = ("lang", "source")
                         ) -> dict[str, Any]:
    """``token_stats`` of a counted Spark DataFrame (aggregated on the cluster)."""
    from pyspark.sql import functions as F

    total = df.agg(F.coalesce(F.sum(TOKENS_COLUMN), F.lit(0)).alias("t"), F.count(F.lit(1)).alias("n")).first()
    stats: dict[str, Any] = {"tokenizer": cfg.tokenizer, "tokens": int(total["t"]), "rows": int(total["n"])}
    for name in by:
        if name in df.columns:
            rows = df.groupBy(name).agg(F.sum(TOKENS_COLUMN).alias("t")).collect()
            stats[f"by_{name}"] = dict(sorted(("unknown" if r[name] is None else str(r[name]), int(r["t"] or 0))
                                              for r in rows))
    return stats


def total_tokens(table: pa.Table) -> int:
    return int(pc.sum(table[TOKENS_COLUMN]).as_py() or 0) if table.num_rows else 0
