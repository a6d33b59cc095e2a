"""Export a published version to another folder and layout, with its card.

For consumers that want shards of their own size, or JSON Lines instead of Parquet. The source is
verified first (an export of corrupt files would carry the corruption on under a clean-looking
card); the destination gets ``part-NNNNN.parquet`` / ``.jsonl`` / ``.jsonl.gz`` shards, the source's
attachments (its charts), ``_export.json`` (each shard with rows, bytes and sha256) and, written
last so that a folder with a card is a finished export, the ``README.md`` card whose ``data_files``
name the shards, so ``datasets.load_dataset(DEST)`` reads them.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import gzip
import hashlib
import json
import os
import posixpath
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from pydantic import BaseModel

from skycurate.catalog.card_files import card_options
from skycurate.catalog.cards import DataLayout, render_card
from skycurate.catalog.manifest import CARD_FILE, FileEntry
from skycurate.catalog.refs import DatasetRef
from skycurate.catalog.store import Catalog
from skycurate.catalog.writers import _writer_options as parquet_options  # the catalog's codec and time unit
from skycurate.errors import SkycurateError
from skycurate.redact import redact

Format = Literal["parquet", "jsonl"]
EXPORT_FILE = "_export.json"
_SHARD = re.compile(r"^part-\d{5,}\.(parquet|jsonl|jsonl\.gz)\Z")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*\Z", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
#: Parquet row groups per shard when shards are sized in bytes (each is checked against the size)
_GROUPS_PER_SHARD = 8


class ExportError(SkycurateError):
    """An export that cannot start or finish (busy destination, a source that fails verification)."""


class ShardSize(NamedTuple):
    """At most ``rows`` rows, or about ``bytes`` bytes (a shard closes once it reaches them), per shard."""

    rows: int | None = None
    bytes: int | None = None


class ExportReport(BaseModel):
    dataset: str
    dest: str
    format: str
    files: list[FileEntry]
    rows: int
    bytes: int
    card: str


def parse_shard_size(text: str) -> ShardSize:
    """``100000`` -> rows per shard; ``256MB`` / ``1GiB`` / ``500kb`` -> bytes per shard."""
    text = text.strip()
    if text.isdigit():
        if int(text) < 1:
            raise ExportError("--shard-size must be at least 1 row")
        return ShardSize(rows=int(text))
    m = _SIZE.match(text)
    if not m or float(m.group(1)) * _UNITS[m.group(2).lower()] < 1:
        raise ExportError(f"bad --shard-size {text!r}: rows (100000) or a size (256MB, 1GiB, 500KB)")
    return ShardSize(bytes=int(float(m.group(1)) * _UNITS[m.group(2).lower()]))


# ---- JSON values ---------------------------------------------------------------------------

def json_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow types a version's columns have in JSON Lines, as its card declares them: binary as
    base64 strings, times of day as strings, durations as float seconds; timestamps, dates and decimals
    are ISO / decimal strings in the files and keep their types (``datasets`` casts them back)."""
    return pa.schema([pa.field(f.name, _json_type(f.type), f.nullable) for f in schema])


def _json_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return _json_type(t.value_type)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) \
            or pa.types.is_binary_view(t) or pa.types.is_time(t):
        return pa.string()
    if pa.types.is_duration(t):
        return pa.float64()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(t.field(i).name, _json_type(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_fixed_size_list(t):
        return pa.list_(_json_type(t.value_type), t.list_size)
    if pa.types.is_large_list(t):
        return pa.large_list(_json_type(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(_json_type(t.value_type))
    return t


def _binary_paths(t: pa.DataType, path: str) -> Iterator[str]:
    """Dotted paths (``[]`` for list items) of the binary values inside a column."""
    if pa.types.is_dictionary(t):
        yield from _binary_paths(t.value_type, path)
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) \
            or pa.types.is_binary_view(t):
        yield path
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            yield from _binary_paths(t.field(i).type, f"{path}.{t.field(i).name}")
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        yield from _binary_paths(t.value_type, f"{path}[]")


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def _json_notes(schema: pa.Schema) -> list[str]:
    notes = []
    binary = [p for f in schema for p in _binary_paths(f.type, f.name)]
    if binary:
        notes.append("Binary values (" + ", ".join(f"`{p}`" for p in binary) + ") are base64 strings (standard "
                     "alphabet, padded) in the JSON files: decode them with `base64.b64decode`.")
    if any(pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_decimal(t) for t in _leaf_types(schema)):
        notes.append("Timestamps and dates are ISO 8601 strings and decimals are decimal strings in the files; "
                     "`load_dataset` casts them back to the types of the schema below.")
    if any(pa.types.is_time(t) or pa.types.is_duration(t) for t in _leaf_types(schema)):
        notes.append("Times of day are ISO 8601 strings; durations are seconds (float).")
    if any(pa.types.is_floating(t) for t in _leaf_types(schema)):
        notes.append("Non-finite floats are written as `NaN` / `Infinity`, as Python and pyarrow read them "
                     "(strict JSON parsers do not).")
    return notes


def _leaf_types(schema: pa.Schema) -> Iterator[pa.DataType]:
    def walk(t: pa.DataType) -> Iterator[pa.DataType]:
        if pa.types.is_struct(t):
            for i in range(t.num_fields):
                yield from walk(t.field(i).type)
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            yield from walk(t.value_type)
        elif pa.types.is_dictionary(t):
            yield from walk(t.value_type)
        else:
            yield t

    for f in schema:
        yield from walk(f.type)


# ---- shards ---------------------------------------------------------------------------------

class _Counting:
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, raw: Any):
        self.raw, self.sha256, self.size, self.closed = raw, hashlib.sha256(), 0, False

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False


class _ShardWriter:
    """Writes batches into ``part-NNNNN.<ext>`` files of at most ``size.rows`` rows / about ``size.bytes`` bytes."""

    def __init__(self, fs: Any, dest: str, fmt: Format, compress: bool, schema: pa.Schema, size: ShardSize):
        self.fs, self.dest, self.fmt, self.compress, self.schema, self.size = fs, dest, fmt, compress, schema, size
        self.ext = "parquet" if fmt == "parquet" else ("jsonl.gz" if compress else "jsonl")
        self.files: list[FileEntry] = []
        self._raw = self._out = self._parquet = self._gzip = None
        self._rows = self._pending = 0

    def _open(self) -> None:
        name = f"part-{len(self.files):05d}.{self.ext}"
        self._raw = self.fs.open(posixpath.join(self.dest, name), "wb")
        self._out = _Counting(self._raw)
        if self.fmt == "parquet":
            self._parquet = pq.ParquetWriter(self._out, self.schema, **parquet_options())
        elif self.compress:
            self._gzip = gzip.GzipFile(fileobj=self._out, mode="wb", mtime=0)   # mtime 0: same rows, same bytes
        self.files.append(FileEntry(path=name, rows=0, bytes=0, sha256=""))
        self._rows = self._pending = 0

    def _close(self) -> None:
        if self._raw is None:
            return
        if self._parquet is not None:
            self._parquet.close()
        if self._gzip is not None:
            self._gzip.close()
        self._raw.close()
        self.files[-1] = FileEntry(path=self.files[-1].path, rows=self._rows, bytes=self._out.size,
                                   sha256=self._out.sha256.hexdigest())
        self._raw = self._out = self._parquet = self._gzip = None

    def _full(self) -> bool:
        if self.size.rows is not None:
            return self._rows >= self.size.rows
        return self.size.bytes is not None and self._out.tell() >= self.size.bytes

    def write(self, batch: pa.RecordBatch) -> None:
        if self.fmt != "parquet":
            self._write_json(batch)
            return
        offset = 0
        while offset < batch.num_rows:
            if self._raw is None:
                self._open()
            take = batch.num_rows - offset
            if self.size.rows is not None:
                take = min(take, self.size.rows - self._rows)
            self._parquet.write_batch(batch.slice(offset, take))
            offset += take
            self._rows += take
            if self._full():
                self._close()

    def _write_json(self, batch: pa.RecordBatch) -> None:
        """Line by line, checking the shard's size after each: a gzip stream is flushed every
        1/16 of a shard (at most 1 MiB of text) so that its compressed size is known."""
        flush_every = max(1, min(1 << 20, (self.size.bytes or 0) // 16))
        for row in batch.to_pylist():
            if self._raw is None:
                self._open()
            line = (json.dumps(row, ensure_ascii=False, default=_json_default) + "\n").encode("utf-8")
            (self._gzip or self._out).write(line)
            self._rows += 1
            if self._gzip is not None and self.size.bytes is not None:
                self._pending += len(line)
                if self._pending >= flush_every:
                    self._gzip.flush(zlib.Z_SYNC_FLUSH)
                    self._pending = 0
            if self._full():
                self._close()

    def finish(self) -> list[FileEntry]:
        if not self.files:   # no rows: one empty shard still carries the schema (Parquet) / says so (JSONL)
            self._open()
        self._close()
        return self.files


def _batch_rows(size: ShardSize, rows: int, num_bytes: int, fmt: Format) -> int:
    """Rows per batch read from the source: whole shards by rows; by bytes, about 1/8 of a shard
    (estimated from the source's Parquet bytes per row) for Parquet, so each shard has row groups of
    a useful size; JSON checks its size after every line anyway."""
    if size.rows is not None:
        return max(1, min(size.rows, 65_536))
    if size.bytes is None or fmt != "parquet":
        return 65_536
    per_row = max(1.0, num_bytes / max(rows, 1))
    return int(max(1, min(65_536, size.bytes / per_row / _GROUPS_PER_SHARD)))


# ---- the export -----------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]


def export_version(catalog: Catalog, ref: str | DatasetRef, dest: str, *, fmt: Format = "parquet",
                   shard_size: ShardSize | None = None, compress: bool = False, force: bool = False,
                   verify: bool = True, license: str | None = None, tags: list[str] | None = None,
                   progress: Progress | None = None) -> ExportReport:
    """Write version ``ref`` to ``dest`` (a local folder or fsspec URL) as ``fmt`` shards with a card.

    ``progress(phase, done, total)`` is called with phase ``verify`` (files) and ``export`` (rows).
    A non-empty ``dest`` is refused unless ``force``, which removes a previous export's files there
    (shards, card, ``_export.json`` and what it lists) and nothing else."""
    if fmt not in ("parquet", "jsonl"):
        raise ExportError(f"unknown export format {fmt!r}: parquet or jsonl")
    if compress and fmt != "jsonl":
        raise ExportError("--gzip applies to jsonl exports (Parquet shards are zstd-compressed already)")
    ref = catalog.resolve(ref)
    manifest = catalog.manifest(ref)
    fs, folder, shown = _destination(catalog, ref, dest)
    previous = _previous_export(fs, folder, shown, force)
    if verify:
        report = catalog.verify(ref, progress=(lambda d, t: progress("verify", d, t)) if progress else None)
        if not report.ok:
            raise ExportError(f"{ref.label} fails verification, nothing exported: {'; '.join(report.problems[:3])}"
                              f"{' ...' if len(report.problems) > 3 else ''} (see `skycurate datasets verify`)")
    for name in sorted(previous, key=lambda n: n != CARD_FILE):   # the card first: half-removed is no export
        fs.rm(posixpath.join(folder, name))
    fs.makedirs(folder, exist_ok=True)
    source_schema = catalog.arrow_schema(ref)
    size = shard_size or ShardSize()
    writer = _ShardWriter(fs, folder, fmt, compress, source_schema, size)
    done = 0
    for batch in catalog.open(ref).to_batches(batch_size=_batch_rows(size, manifest.num_rows, manifest.num_bytes,
                                                                      fmt)):
        writer.write(batch)
        done += batch.num_rows
        if progress:
            progress("export", done, manifest.num_rows)
    files = writer.finish()
    for att in manifest.attachments:
        if att.path != CARD_FILE:
            fs.pipe_file(posixpath.join(folder, att.path), catalog.attachment(ref, att.path))
    num_bytes = sum(f.bytes for f in files)
    notes = [f"`{EXPORT_FILE}` lists every shard with its rows, bytes and sha256."]
    schema = source_schema if fmt == "parquet" else json_schema(source_schema)
    if fmt == "jsonl":
        notes = _json_notes(source_schema) + notes
    layout = DataLayout(format="parquet" if fmt == "parquet" else "json", files=[f.path for f in files],
                        pattern=f"part-*.{writer.ext}", location=shown, exported_from=ref.label, notes=notes,
                        num_bytes=num_bytes)
    card = render_card(manifest, schema, layout, card_options(catalog, ref, manifest, license, tags),
                       catalog.parent_nodes(manifest.parents))
    record = {"source": ref.label, "source_store": redact(catalog.url), "format": writer.ext,
              "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "num_rows": done, "files": [f.model_dump() for f in files],
              "attachments": [a.path for a in manifest.attachments if a.path != CARD_FILE]}
    fs.pipe_file(posixpath.join(folder, EXPORT_FILE), (json.dumps(record, indent=2) + "\n").encode())
    fs.pipe_file(posixpath.join(folder, CARD_FILE), card.encode())   # last: a folder with a card is complete
    return ExportReport(dataset=ref.label, dest=shown, format=writer.ext, files=files, rows=done, bytes=num_bytes,
                        card=CARD_FILE)


def _destination(catalog: Catalog, ref: DatasetRef, dest: str) -> tuple[Any, str, str]:
    """(filesystem, path in it, what to call it) for ``dest``; never a folder inside the source store."""
    text = dest if ("://" in dest or "::" in dest) else os.path.abspath(os.path.expanduser(dest))
    try:
        fs, path = url_to_fs(text)
    except (ValueError, ImportError) as e:
        raise ExportError(f"cannot open export destination {dest}: {e}") from None
    path = path.rstrip("/") or "/"
    if type(fs) is type(catalog.fs) and (path == catalog.root or path.startswith(catalog.root.rstrip("/") + "/")):
        raise ExportError(f"refusing to export {ref.label} into the store itself ({dest}): choose a folder outside "
                          f"{catalog.url}")
    return fs, path, text.rstrip("/") if "://" in text else path


def _previous_export(fs: Any, folder: str, shown: str, force: bool) -> set[str]:
    """The files of a previous export in ``folder`` that ``force`` replaces; an error if the folder
    holds anything and ``force`` is not given (other files stay where they are)."""
    if not fs.exists(folder):
        return set()
    if not fs.isdir(folder):
        raise ExportError(f"export destination {shown} is a file")
    names = {posixpath.basename(p.rstrip("/")) for p in fs.ls(folder, detail=False)}
    if names and not force:
        raise ExportError(f"export destination {shown} is not empty; pass --force to replace a previous export "
                          "there, or choose another folder")
    ours = {n for n in names if _SHARD.match(n) or n in (CARD_FILE, EXPORT_FILE)}
    if EXPORT_FILE in names:
        try:
            ours |= set(json.loads(fs.cat_file(posixpath.join(folder, EXPORT_FILE))).get("attachments", [])) & names
        except (ValueError, AttributeError, TypeError):
            pass
    return ours
