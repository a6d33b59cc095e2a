"""The WARC reader: ``response`` records become rows; a malformed record costs only itself.

Split from the other readers because WARC framing is most of the reading code: records are read with
fastwarc over a ``_DecodedStream``; after a malformed record (bad header, wrong Content-Length, damaged
gzip member) the reader resynchronises on the next ``WARC/1.x`` line and goes on, at most
``MAX_RESYNCS`` times per file. HTTP payloads are de-chunked and Content-Encoding is undone here too.
``offset`` is the record's byte offset in the *decompressed* WARC stream.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import zstandard
from fastwarc.warc import ArchiveIterator, WarcRecordType

from skycurate.connectors.web_readers.decoded_stream import (
    _GZIP_MAGIC,
    _Checkpoints,
    _DecodedStream,
)
from skycurate.connectors.web_readers.inputs import InputFile
from skycurate.connectors.web_readers.rows import (
    Row,
    _describe,
    _is_recoverable,
    _q,
    _too_large,
)
from skycurate.schemas.web_extract import ReaderConfig

try:  # a transitive dependency (urllib3/trafilatura); only needed for "Content-Encoding: br"
    import brotli
except ImportError:  # pragma: no cover
    brotli = None

log = logging.getLogger(__name__)

MAX_RESYNCS = 1000  # malformed WARC records per file before the rest of the file is given up
_RECORD_START = re.compile(rb"\nWARC/1\.[01]\r?\n")
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
    head = region.lstrip(b"\r\n")
    if head.startswith(b"WARC/") or (0 < len(head) < 5 and b"WARC/".startswith(head)):
        return True   # (the file may end a few bytes into the next header: that record is cut, not the last)
    cut = region.find(b"\nWARC/1.")
    head = (region if cut < 0 else region[:cut]).lower()
    return b"\nwarc-record-id:" in head or b"\nwarc-type:" in head


def _release(held: Row, until: int, damage: list[int]) -> Row:
    """A held response row, or a quarantine row when a corrupt gzip member was skipped inside it."""
    if any(held[0] <= d <= until for d in damage):
        return _q(held[0], "corrupt: damaged gzip member inside the record", url=held[1], size=held[6])
    return held


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
