"""The readers of one-record-per-file, per-line and per-row inputs: HTML files, JSONL and Parquet.

Split from the WARC reader: these need no framing recovery. A JSONL line or Parquet row gives its
``html`` (wins when not null) or ``text`` field (names from ``ReaderConfig``); ids use the line number
(JSONL, from 1) or the row number (Parquet, from 0) as the offset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from skycurate.connectors.web_readers.decoded_stream import _DecodedStream
from skycurate.connectors.web_readers.inputs import InputFile
from skycurate.connectors.web_readers.rows import Row, _describe, _q, _too_large
from skycurate.schemas.web_extract import ReaderConfig

UTF8_HTML = "text/html; charset=utf-8"  # content type of HTML given as a JSON/Arrow string (we encode it as UTF-8)


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
