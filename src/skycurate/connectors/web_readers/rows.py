"""The row every reader yields, the quarantine row, and how rows become ``RAW_DOC_SCHEMA`` batches.

Split out because every reader (WARC, HTML, JSONL, Parquet) and the decoded stream share these: the
``Row`` tuple, ``_q`` for a quarantine row, the error description and the rule for which exceptions a
reader may turn into a quarantine row (``_is_recoverable``), and the ``_Batcher`` that sizes batches.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

import pyarrow as pa

from skycurate.connectors.jsonl import record_id
from skycurate.schemas.web import RAW_DOC_SCHEMA
from skycurate.schemas.web_extract import ReaderConfig

_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)

# (offset, url, fetch_date, content_type, html, text, payload_bytes, quarantine_reason)
Row = tuple[int, str | None, datetime | None, str | None, bytes | None, str | None, int, str | None]


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
