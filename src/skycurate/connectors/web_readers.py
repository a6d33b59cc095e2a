"""Read web inputs (WARC, HTML files, JSONL[.gz|.zst], Parquet) into ``RAW_DOC_SCHEMA`` record batches.

Two promises, whatever the bytes look like:

* ``read_input`` never raises on bad data. Each record that cannot be read becomes a row with
  ``quarantine_reason`` set (``html``/``text`` null), so ``input records == good rows + quarantine rows``.
  A damaged stream keeps every record read before the damage and adds one quarantine row for the rest.
* Ids are deterministic: ``record_id(label, offset)``, where the label is the file's path relative to
  the folder or glob root it was found under, so the same files give the same ids on any machine.

Quarantine reasons start with a short code, then detail: ``too_large``, ``truncated``, ``malformed_warc``,
``corrupt``, ``bad_http``, ``bad_encoding``, ``bad_json``, ``not_utf8``, ``bad_field``, ``missing_field``,
``unreadable``.

WARC: only ``response`` records are documents (request, metadata, warcinfo, revisit... are skipped and not
counted); ``offset`` is the record's byte offset in the *decompressed* WARC stream, which is unique and
stable even for single-member ``.warc.gz`` files. After a malformed record the reader resynchronises on
the next ``WARC/1.x`` line and goes on.
"""

from __future__ import annotations

import bisect
import glob
import json
import logging
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import pyarrow as pa
import zstandard
from fastwarc.warc import ArchiveIterator, WarcRecordType

from skycurate.connectors.jsonl import record_id
from skycurate.errors import SkycurateError
from skycurate.schemas.web import RAW_DOC_SCHEMA
from skycurate.schemas.web_extract import ReaderConfig

try:  # a transitive dependency (urllib3/trafilatura); only needed for "Content-Encoding: br"
    import brotli
except ImportError:  # pragma: no cover
    brotli = None

log = logging.getLogger(__name__)

Kind = Literal["warc", "html", "jsonl", "parquet"]

# Longest suffix first; matched case-insensitively.
INPUT_SUFFIXES: tuple[tuple[str, Kind], ...] = (
    (".warc.gz", "warc"), (".warc.zst", "warc"), (".warc", "warc"),
    (".jsonl.gz", "jsonl"), (".jsonl.zst", "jsonl"), (".json.gz", "jsonl"), (".jsonl", "jsonl"),
    (".html", "html"), (".htm", "html"),
    (".parquet", "parquet"),
)

UTF8_HTML = "text/html; charset=utf-8"  # content type of HTML given as a JSON/Arrow string (we encode it as UTF-8)
MAX_RESYNCS = 1000  # malformed WARC records per file before the rest of the file is given up
_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


# --------------------------------------------------------------------------------------------- discovery

@dataclass(frozen=True)
class InputFile:
    path: str    # as found on this machine
    label: str   # stable across machines: path relative to the folder/glob root, or the file name
    kind: Kind
    size: int


@dataclass
class Discovery:
    files: list[InputFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files under folders/globs with an unknown extension


def input_kind(name: str) -> Kind | None:
    """The input kind a file name's extension says, or None."""
    low = name.lower()
    for suffix, kind in INPUT_SUFFIXES:
        if low.endswith(suffix):
            return kind
    return None


def _has_magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def _glob_root(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def _label(path: str, root: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def scan_inputs(patterns: list[str]) -> Discovery:
    """Like ``discover_inputs`` but also returns the files skipped for an unknown extension."""
    if not patterns:
        raise SkycurateError("no input given")
    found: dict[str, InputFile] = {}
    skipped: list[str] = []

    def add(path: str, label: str) -> bool:
        kind = input_kind(path)
        if kind is None:
            skipped.append(path)
            return False
        real = os.path.realpath(path)
        if real not in found:
            try:
                size = os.stat(path).st_size
            except OSError:
                size = 0  # read_input turns the unreadable file into a quarantine row
            found[real] = InputFile(path=path, label=label, kind=kind, size=size)
        return True

    def add_folder(folder: str, root: str) -> int:
        n = 0
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                n += add(str(p), _label(str(p), root))
            elif not p.is_dir():
                skipped.append(str(p))  # broken link, socket...
        return n

    for pattern in patterns:
        if not pattern:
            raise SkycurateError("empty input pattern")
        p = Path(pattern)
        if p.is_dir():
            if not add_folder(pattern, pattern):
                raise SkycurateError(f"input folder {pattern!r} holds no .warc[.gz], .html, .jsonl[.gz|.zst] "
                                     f"or .parquet file")
        elif p.is_file():
            if input_kind(p.name) is None:
                raise SkycurateError(f"input {pattern!r} has an unknown file type (expected "
                                     f"{', '.join(s for s, _ in INPUT_SUFFIXES)})")
            add(pattern, p.name)
        else:
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise SkycurateError(f"input {pattern!r} matches no file")
            root = _glob_root(pattern)
            n = 0
            for m in matches:
                if os.path.isdir(m):
                    n += add_folder(m, root)
                elif os.path.isfile(m):
                    n += add(m, _label(m, root))
            if not n:
                raise SkycurateError(f"input {pattern!r} matches no .warc[.gz], .html, .jsonl[.gz|.zst] "
                                     f"or .parquet file")
    files = sorted(found.values(), key=lambda f: (f.label, f.path))
    for a, b in zip(files, files[1:]):
        if a.label == b.label:
            raise SkycurateError(f"inputs {a.path!r} and {b.path!r} share the label {a.label!r}, so their record "
                                 f"ids would collide; pass their common parent folder instead")
    return Discovery(files=files, skipped=sorted(set(skipped)))


def discover_inputs(patterns: list[str]) -> list[InputFile]:
    """Input files named directly, found under folders (recursively) or matched by globs; sorted by label.

    A pattern that matches no readable input raises ``SkycurateError``. Files with unknown extensions
    inside folders or globs are skipped and logged (``scan_inputs`` returns them).
    """
    found = scan_inputs(patterns)
    if found.skipped:
        log.info("skipped %d file(s) with an unknown extension, e.g. %s", len(found.skipped), found.skipped[0])
    return found.files


# ----------------------------------------------------------------------------------------------- helpers

def url_domain(url: str | None) -> str | None:
    """Lower-case host without port and without a leading ``www.``; None when there is none."""
    if not url:
        return None
    try:
        host = urlsplit(url if "//" in url else "//" + url).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    return host or None


def _is_recoverable(e: BaseException) -> bool:
    # fastwarc (Rust/pyo3) reports internal failures as pyo3's PanicException, a BaseException.
    return isinstance(e, Exception) or (not isinstance(e, _FATAL) and type(e).__name__ == "PanicException")


def _describe(e: BaseException) -> str:
    msg = str(e).splitlines()[0][:200] if str(e) else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


# (offset, url, fetch_date, content_type, html, text, payload_bytes, quarantine_reason)
Row = tuple[int, str | None, datetime | None, str | None, bytes | None, str | None, int, str | None]


def _q(offset: int, reason: str, url: str | None = None, size: int = 0) -> Row:
    return (offset, url, None, None, None, None, size, reason)


def _too_large(n: int, cap: int) -> str:
    return f"too_large: {n} bytes > {cap}"


class _Batcher:
    def __init__(self, source: str, cfg: ReaderConfig):
        self.source = source
        self.cfg = cfg
        self.rows: list[Row] = []
        self.bytes = 0

    def add(self, row: Row) -> None:
        self.rows.append(row)
        self.bytes += row[6] if row[7] is None else 0

    def full(self) -> bool:
        return len(self.rows) >= self.cfg.batch_size or self.bytes >= self.cfg.max_batch_bytes

    def flush(self) -> pa.RecordBatch:
        offsets, urls, dates, ctypes, htmls, texts, sizes, reasons = (list(c) for c in zip(*self.rows))
        self.rows, self.bytes = [], 0
        arrays = [
            pa.array([record_id(self.source, o) for o in offsets], pa.string()),
            pa.array([self.source] * len(offsets), pa.string()),
            pa.array(offsets, pa.int64()),
            pa.array(urls, pa.string()),
            pa.array([url_domain(u) for u in urls], pa.string()),
            pa.array(dates, pa.timestamp("us", tz="UTC")),
            pa.array(ctypes, pa.string()),
            pa.array(htmls, pa.binary()),
            pa.array(texts, pa.string()),
            pa.array(sizes, pa.int64()),
            pa.array(reasons, pa.string()),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=RAW_DOC_SCHEMA)


def read_input(f: InputFile, cfg: ReaderConfig | None = None) -> Iterator[pa.RecordBatch]:
    """Batches of exactly ``RAW_DOC_SCHEMA``, one row per input record; never raises on bad data."""
    cfg = cfg or ReaderConfig()
    out = _Batcher(f.label, cfg)
    rows = _READERS[f.kind](f, cfg)
    last = -1
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except BaseException as e:  # a bug or an unforeseen failure: the rest of the file is quarantined
            if not _is_recoverable(e):
                raise
            log.warning("reading %s failed after offset %d: %s", f.path, last, _describe(e))
            out.add(_q(last + 1, f"unreadable: {_describe(e)}"))
            break
        last = max(last, row[0])
        out.add(row)
        if out.full():
            yield out.flush()
    if out.rows:
        yield out.flush()


# ------------------------------------------------------------------------------------- decoded streams

class _Checkpoints:
    """(decoded offset, raw offset) of gzip member / zstd frame starts, to reopen a stream near an offset."""

    def __init__(self) -> None:
        self.decoded: list[int] = [0]
        self.raw: list[int] = [0]

    def add(self, decoded: int, raw: int) -> None:
        if decoded > self.decoded[-1]:
            self.decoded.append(decoded)
            self.raw.append(raw)

    def before(self, at: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.decoded, at) - 1
        return self.decoded[i], self.raw[i]


class _DecodedStream:
    """``read()``/``tell()`` over a plain, gzip (multi-member) or zstd (multi-frame) file; codec from magic bytes.

    Unlike ``gzip.GzipFile`` it never raises on a damaged stream: it returns every byte that decoded
    cleanly, then EOF, and sets ``error`` ("truncated" or "corrupt"). With ``recover``, a corrupt gzip
    member is skipped instead (decoding goes on at the next member header) and its decoded offset noted
    in ``damage``, so that a WARC reader loses only the record it held. ``tell()`` is the offset in the
    decoded stream.
    """

    def __init__(self, path: str, at: int = 0, checkpoints: _Checkpoints | None = None, recover: bool = False):
        self._recover = recover
        self.damage: list[int] = []  # decoded offsets where a corrupt gzip member was skipped (``recover``)
        self._raw = open(path, "rb")
        try:
            head = self._raw.read(4)
        except OSError:
            self._raw.close()
            raise
        self.codec = "gzip" if head[:2] == _GZIP_MAGIC else "zstd" if head == _ZSTD_MAGIC else None
        self.error: str | None = None
        self.checkpoints = checkpoints if checkpoints is not None else _Checkpoints()
        self._buf = b""
        self._off = 0
        self._eof = False
        self._dec = None
        if self.codec is None:
            self._raw.seek(at)
            self._pos = at
        else:
            decoded, raw = self.checkpoints.before(at)
            self._raw.seek(raw)
            self._raw_pos = raw
            self._pos = self._produced = decoded
            self.skip(at - decoded)

    def __enter__(self) -> _DecodedStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _new_decoder(self):
        return zlib.decompressobj(16 + zlib.MAX_WBITS) if self.codec == "gzip" else \
            zstandard.ZstdDecompressor().decompressobj()

    def _fill(self) -> None:
        try:
            chunk = self._raw.read(_CHUNK)
        except OSError as e:
            self.error, self._eof = f"read error: {_describe(e)}", True
            return
        if not chunk:
            if self._dec is not None:
                self.error = f"{self.codec} stream ends before its end marker"
            self._eof = True
            return
        self._raw_pos += len(chunk)
        out: list[bytes] = []
        produced = self._produced
        data = chunk
        while data:
            if self._dec is None:
                if self.codec == "gzip":
                    data = data.lstrip(b"\x00")  # zero padding between members is allowed
                    if not data:
                        break
                self.checkpoints.add(produced, self._raw_pos - len(data))
                self._dec = self._new_decoder()
            try:
                piece = self._dec.decompress(data)
            except (zlib.error, zstandard.ZstdError) as e:
                if not (self._recover and self.codec == "gzip"):
                    self.error, self._eof = f"corrupt {self.codec} stream: {e}", True
                    break
                self.damage.append(produced)
                self._dec = None
                data = self._next_member(data)
                continue
            out.append(piece)
            produced += len(piece)
            if self._dec.eof:
                data = self._dec.unused_data
                self._dec = None
            else:
                data = b""
        if produced > self._produced:
            self._buf = self._buf[self._off:] + b"".join(out)
            self._off = 0
            self._produced = produced

    def _next_member(self, data: bytes) -> bytes:
        """``data`` from the next gzip member header after its first byte, reading on as needed; b"" at EOF."""
        data = data[1:]
        while True:
            i = data.find(b"\x1f\x8b\x08")
            if i >= 0:
                return data[i:]
            try:
                more = self._raw.read(_CHUNK)
            except OSError:
                more = b""
            if not more:
                return b""
            self._raw_pos += len(more)
            data = data[-2:] + more

    def read(self, n: int = -1) -> bytes:
        if self.codec is None:
            try:
                data = self._raw.read(n)
            except OSError as e:
                self.error = f"read error: {_describe(e)}"
                return b""
            self._pos += len(data)
            return data
        if n is None or n < 0:
            while not self._eof:
                self._fill()
            n = len(self._buf) - self._off
        while len(self._buf) - self._off < n and not self._eof:
            self._fill()
        data = self._buf[self._off:self._off + n]
        self._off += len(data)
        self._pos += len(data)
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            got = len(self.read(min(n, 1 << 20)))
            if not got:
                return
            n -= got


# --------------------------------------------------------------------------------------------------- WARC

_RECORD_START = re.compile(rb"\nWARC/1\.[01]\r?\n")


def _record_end(path: str, cps: _Checkpoints, pos: int, block_len: int) -> int:
    """Where the next record should start after the (well-formed) record at ``pos``."""
    with _DecodedStream(path, pos, cps, recover=True) as s:
        head = s.read(1 << 20)
        end = head.find(b"\r\n\r\n")
        if end < 0:
            return pos + 1
        s.skip(pos + end + 4 + block_len - s.tell())
        trailer = s.read(4)
        return pos + end + 4 + block_len + len(trailer) - len(trailer.lstrip(b"\r\n"))


def _next_record_start(path: str, cps: _Checkpoints, frm: int) -> int | None:
    """Offset of the first ``WARC/1.x`` version line after ``frm`` (decoded stream), or None."""
    with _DecodedStream(path, frm, cps, recover=True) as s:
        carry = b""  # the last bytes of the previous chunk, so a match across chunks is found
        base = frm   # stream offset of carry[0]
        while True:
            chunk = s.read(1 << 20)
            if not chunk:
                return None
            data = carry + chunk
            m = _RECORD_START.search(data)
            if m:
                return base + m.start() + 1
            keep = min(len(data), 16)
            base += len(data) - keep
            carry = data[-keep:]


def _peek(path: str, cps: _Checkpoints, at: int, n: int) -> bytes:
    with _DecodedStream(path, at, cps, recover=True) as s:
        return s.read(n)


def _looks_like_record(region: bytes) -> bool:
    """Does ``region`` start with a (damaged) WARC record header rather than left-over bytes of the previous one?"""
    if region.startswith(b"WARC/"):
        return True
    cut = region.find(b"\nWARC/1.")
    head = (region if cut < 0 else region[:cut]).lower()
    return b"\nwarc-record-id:" in head or b"\nwarc-type:" in head


def _release(held: Row, until: int, damage: list[int]) -> Row:
    """A held response row, or a quarantine row when a corrupt gzip member was skipped inside it."""
    if any(held[0] <= d <= until for d in damage):
        return _q(held[0], "corrupt: damaged gzip member inside the record", url=held[1], size=held[6])
    return held


_DOC_TYPES = (WarcRecordType.response, WarcRecordType.unknown, WarcRecordType.no_type)


def _warc_rows(f: InputFile, cfg: ReaderConfig) -> Iterator[Row]:
    cps = _Checkpoints()
    start: int | None = 0
    resyncs = 0
    while start is not None:
        if resyncs > MAX_RESYNCS:
            yield _q(start, f"malformed_warc: more than {MAX_RESYNCS} malformed records; rest of file skipped")
            return
        try:
            start = yield from _warc_pass(f, cfg, cps, start)
        except OSError as e:  # re-reading the file while resynchronising failed
            yield _q(start + 1, f"unreadable: {_describe(e)}")
            return
        resyncs += 1


@dataclass
class _Pass:
    positions: list[int] = field(default_factory=list)  # record starts seen
    quarantined: list[int] = field(default_factory=list)  # offsets of quarantine rows emitted
    damage: list[int] = field(default_factory=list)  # where corrupt gzip members were skipped


def _warc_pass(f: InputFile, cfg: ReaderConfig, cps: _Checkpoints, start: int):
    """Read records from ``start`` until the end (returns None) or a framing error (returns where to resume).

    A skipped corrupt gzip member that no quarantine row accounts for (it held no record we saw start,
    or its record vanished) gets a row of its own: losing a document silently is worse than a spare row.
    """
    state = _Pass()
    body = _warc_pass_body(f, cfg, cps, start, state)
    while True:
        try:
            row = next(body)
        except StopIteration as stop:
            nxt = stop.value
            break
        if row[7] is not None:
            state.quarantined.append(row[0])
        yield row
    for d in sorted(set(state.damage)):
        if d < start or (nxt is not None and d >= nxt):  # read ahead: the next pass meets it again
            continue
        owner = max((p for p in state.positions if p <= d), default=start)
        if not any(owner <= q <= d for q in state.quarantined):
            yield _q(d + 1 if d in state.positions else d, "corrupt: damaged gzip member skipped")
    return nxt


def _warc_pass_body(f: InputFile, cfg: ReaderConfig, cps: _Checkpoints, start: int, state: _Pass):
    try:
        stream = _DecodedStream(f.path, start, cps, recover=True)
    except OSError as e:
        yield _q(start, f"unreadable: {_describe(e)}")
        return None
    state.damage = stream.damage
    held: Row | None = None  # a response row is emitted once the next record parses: its length was right
    last: tuple[int, int] | None = None  # (offset, Content-Length) of the last record read
    with stream:
        records = iter(ArchiveIterator(stream, parse_http=False, stream_detect=False))
        while True:
            try:
                rec = next(records)
            except StopIteration:
                break
            except BaseException as e:  # the header after ``last`` does not parse
                if not _is_recoverable(e):
                    raise
                if stream.error:
                    if held:
                        yield _release(held, stream.tell(), stream.damage)
                    yield _q(stream.tell(), f"truncated: {stream.error}")
                    return None
                end = _record_end(f.path, cps, *last) if last else start
                if last is None or _looks_like_record(_peek(f.path, cps, end, 8192)):
                    if held:
                        yield _release(held, end, stream.damage)
                    yield _q(end, f"malformed_warc: {_describe(e)}")
                    return _next_record_start(f.path, cps, end + 1)
                # No record header where the last record should end: its Content-Length was wrong
                # (or garbage follows it). Blame it, and resume at the first record start inside it.
                if held:
                    yield _q(held[0], "malformed_warc: Content-Length does not match the record", url=held[1])
                else:
                    log.warning("%s: bytes after the record at %d are not a WARC record; skipped", f.path, last[0])
                return _next_record_start(f.path, cps, last[0] + 1)
            pos = rec.stream_pos
            state.positions.append(pos)
            if held:
                yield _release(held, pos, stream.damage)
                held = None
            rtype = rec.record_type
            declared = rec.headers.get("Content-Length")
            block_len = rec.content_length
            bad = None
            if declared is None or not declared.strip().isdigit():
                bad = "WARC record header incomplete" if declared is None else f"bad Content-Length {declared!r}"
            elif rtype == WarcRecordType.response:
                row = _response_row(rec, pos, cfg)
                if row[7] is not None and row[7].startswith("short:"):
                    bad = row[7][len("short: "):]
                else:
                    held = row
            elif rtype in _DOC_TYPES:  # missing or unknown WARC-Type
                yield _q(pos, f"malformed_warc: {'missing' if rtype == WarcRecordType.no_type else 'unknown'} "
                              f"WARC-Type", url=_target_uri(rec), size=block_len)
            else:  # request, metadata, warcinfo, revisit...: not documents, but their length must hold too
                got = rec.reader.consume()
                if got is not None and got < block_len:
                    bad = f"record ends after {got} of {block_len} bytes"
            if bad is not None:
                # The record is cut short: the end of a truncated file, or a Content-Length too large.
                nxt = None if stream.error else _next_record_start(f.path, cps, pos + 1)
                if nxt is None:
                    yield _q(pos, f"truncated: {stream.error or bad}", url=_target_uri(rec))
                elif rtype in _DOC_TYPES:
                    yield _q(pos, f"malformed_warc: {bad}", url=_target_uri(rec))
                return nxt
            last = (pos, block_len)
        error, end_pos, damage = stream.error, stream.tell(), stream.damage
    if held:
        yield _release(held, end_pos, damage)
    if error:
        yield _q(end_pos, f"truncated: {error} (at byte {end_pos} of the decoded WARC)")
    return None


def _target_uri(rec) -> str | None:
    uri = rec.headers.get("WARC-Target-URI")
    return uri.strip().strip("<>") or None if uri else None


def _fetch_date(rec) -> datetime | None:
    try:
        d = rec.record_date
    except (ValueError, OSError):
        return None
    if d is None:
        return None
    return d.astimezone(timezone.utc) if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _response_row(rec, pos: int, cfg: ReaderConfig) -> Row:
    cap = cfg.max_payload_bytes
    url = _target_uri(rec)
    date = _fetch_date(rec)
    try:
        if rec.is_http:
            rec.parse_http(auto_decode="none")
            ctype = rec.http_headers.get("Content-Type")
            transfer = (rec.http_headers.get("Transfer-Encoding") or "").lower()
            encoding = (rec.http_headers.get("Content-Encoding") or "").lower().strip()
        else:  # e.g. a dns: or resource-like response: the whole block is the payload
            ctype = rec.headers.get("Content-Type")
            transfer = encoding = ""
    except BaseException as e:
        if not _is_recoverable(e):
            raise
        return (pos, url, date, None, None, None, rec.content_length, f"bad_http: {_describe(e)}")
    n = rec.content_length
    try:
        if n > cap:  # skip it without holding it, but make sure it is all there
            got = rec.reader.consume()
            if got is None or got >= n:
                return (pos, url, date, ctype, None, None, n, _too_large(n, cap))
            return (pos, url, date, ctype, None, None, n, f"short: record ends after {got} of {n} bytes")
        body = rec.reader.read(n) if n else b""
    except BaseException as e:
        if not _is_recoverable(e):
            raise
        return (pos, url, date, ctype, None, None, n, f"unreadable: {_describe(e)}")
    if len(body) < n:
        return (pos, url, date, ctype, None, None, n, f"short: record ends after {len(body)} of {n} bytes")
    if "chunked" in transfer:
        body = _dechunk(body)
    if encoding and encoding != "identity":
        try:
            body = _decode_content(body, encoding, cap)
        except Exception as e:
            return (pos, url, date, ctype, None, None, len(body), f"bad_encoding: {encoding}: {_describe(e)}")
    if len(body) > cap:
        return (pos, url, date, ctype, None, None, len(body), _too_large(len(body), cap))
    return (pos, url, date, ctype, body, None, len(body), None)


def _dechunk(body: bytes) -> bytes:
    """Undo HTTP chunked transfer coding; bodies that are not validly chunked (often already decoded) stay as is."""
    out = []
    i = 0
    while True:
        nl = body.find(b"\r\n", i)
        if nl < 0:
            return body
        try:
            size = int(body[i:nl].split(b";")[0].strip(), 16)
        except ValueError:
            return body
        if size == 0:
            return b"".join(out)
        out.append(body[nl + 2:nl + 2 + size])
        i = nl + 2 + size + 2
        if i > len(body):
            return b"".join(out) if out else body


def _decode_content(body: bytes, encoding: str, cap: int) -> bytes:
    """Undo Content-Encoding, producing at most ``cap + 1`` bytes (the caller rejects more)."""
    if encoding in ("gzip", "x-gzip", "deflate"):
        if not body.startswith(_GZIP_MAGIC) and encoding != "deflate" and body.lstrip()[:1] == b"<":
            return body  # declared gzip, sent plain: common enough to forgive
        wbits = 16 + zlib.MAX_WBITS if body.startswith(_GZIP_MAGIC) else \
            (zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS)
        return zlib.decompressobj(wbits).decompress(body, cap + 1)
    if encoding == "br" and brotli is not None:
        return brotli.Decompressor().process(body, output_buffer_limit=cap + 1)[:cap + 1]
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)[:cap + 1]
    raise ValueError(f"unsupported content encoding {encoding!r}")


# --------------------------------------------------------------------------------------------------- HTML

def _html_rows(f: InputFile, cfg: ReaderConfig) -> Iterator[Row]:
    cap = cfg.max_payload_bytes
    try:
        with open(f.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > cap:
                yield _q(0, _too_large(size, cap), size=size)
                return
            data = fh.read(cap + 1)
    except OSError as e:
        yield _q(0, f"unreadable: {_describe(e)}")
        return
    if len(data) > cap:
        yield _q(0, _too_large(len(data), cap), size=len(data))
        return
    yield (0, None, None, None, data, None, len(data), None)


# -------------------------------------------------------------------------------------- JSONL and Parquet

def _field_row(offset: int, html, text, url, names: tuple[str, str], cap: int) -> Row:
    """One JSONL object / Parquet row -> a row; ``html`` wins over ``text`` when it is not null."""
    url = url if isinstance(url, str) else None
    html_name, text_name = names
    if html is not None:
        if isinstance(html, str):
            data = html.encode("utf-8", "replace")
            ctype = UTF8_HTML
        elif isinstance(html, bytes):
            data, ctype = html, None
        else:
            return _q(offset, f"bad_field: {html_name!r} is {type(html).__name__}, expected string", url)
        if len(data) > cap:
            return _q(offset, _too_large(len(data), cap), url, len(data))
        return (offset, url, None, ctype, data, None, len(data), None)
    if text is None:
        return _q(offset, f"missing_field: no {html_name!r} or {text_name!r}", url)
    if not isinstance(text, str):
        return _q(offset, f"bad_field: {text_name!r} is {type(text).__name__}, expected string", url)
    try:
        n = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates from JSON "\ud800" escapes
        text = text.encode("utf-8", "replace").decode("utf-8")
        n = len(text.encode("utf-8"))
    if n > cap:
        return _q(offset, _too_large(n, cap), url, n)
    return (offset, url, None, None, None, text, n, None)


def _lines(stream: _DecodedStream, limit: int) -> Iterator[tuple[bytes | None, int, bool]]:
    """(line or None when longer than ``limit``, its length in bytes, complete) for every line."""
    parts: list[bytes] = []
    length = 0
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            piece = chunk[start:] if nl < 0 else chunk[start:nl]
            length += len(piece)
            if length <= limit:
                parts.append(piece)
            else:
                parts = []
            if nl < 0:
                break
            yield (b"".join(parts) if length <= limit else None), length, True
            parts, length = [], 0
            start = nl + 1
    if length:
        yield (b"".join(parts) if length <= limit else None), length, stream.error is None


def _jsonl_rows(f: InputFile, cfg: ReaderConfig) -> Iterator[Row]:
    cap = cfg.max_payload_bytes
    names = (cfg.jsonl_html_field, cfg.jsonl_text_field)
    limit = 6 * cap + (1 << 16)  # JSON escaping can at most ~6x a payload; longer lines are not parsed at all
    try:
        stream = _DecodedStream(f.path)
    except OSError as e:
        yield _q(1, f"unreadable: {_describe(e)}")
        return
    line_no = 0
    with stream:
        for raw, length, complete in _lines(stream, limit):
            line_no += 1
            if not complete:
                yield _q(line_no, f"truncated: {stream.error} (line {line_no} incomplete)")
                return
            if raw is None:
                yield _q(line_no, _too_large(length, cap), size=length)
                continue
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield _q(line_no, f"not_utf8: invalid byte at position {e.start}", size=length)
                continue
            except ValueError as e:
                msg = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else _describe(e)
                yield _q(line_no, f"bad_json: {msg}", size=length)
                continue
            except RecursionError:
                yield _q(line_no, "bad_json: nested too deeply", size=length)
                continue
            if not isinstance(obj, dict):
                yield _q(line_no, f"bad_json: top-level value is {type(obj).__name__}, expected object", size=length)
                continue
            yield _field_row(line_no, obj.get(names[0]), obj.get(names[1]), obj.get(cfg.jsonl_url_field), names, cap)
        if stream.error:
            yield _q(line_no + 1, f"truncated: {stream.error} (after line {line_no})")


def _parquet_rows(f: InputFile, cfg: ReaderConfig) -> Iterator[Row]:
    import pyarrow.parquet as pq

    cap = cfg.max_payload_bytes
    names = (cfg.parquet_html_column, cfg.parquet_text_column)
    row = 0
    try:
        pf = pq.ParquetFile(f.path)
        present = set(pf.schema_arrow.names)
        columns = [c for c in (*names, cfg.parquet_url_column) if c in present]
        if columns:
            batches = pf.iter_batches(batch_size=cfg.batch_size, columns=columns)
        else:  # no usable column: every row is quarantined, row by row
            batches = pf.iter_batches(batch_size=cfg.batch_size, columns=[pf.schema_arrow.names[0]])
        for batch in batches:
            def col(name):
                return batch.column(name).to_pylist() if name in columns else [None] * batch.num_rows
            htmls, texts, urls = col(names[0]), col(names[1]), col(cfg.parquet_url_column)
            for h, t, u in zip(htmls, texts, urls):
                yield _field_row(row, h, t, u, names, cap)
                row += 1
    except Exception as e:  # corrupt footer or page, unreadable file: the rest of the file
        yield _q(row, f"unreadable: {_describe(e)}")


_READERS = {"warc": _warc_rows, "html": _html_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}
