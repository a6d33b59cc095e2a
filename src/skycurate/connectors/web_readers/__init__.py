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

The package front: ``read_input`` and the table of readers. The work is in ``inputs`` (discovery),
``rows`` (the row and the batcher), ``decoded_stream`` (gzip/zstd with checkpoints), ``warc`` and
``file_readers`` (HTML, JSONL, Parquet).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pyarrow as pa

from skycurate.connectors.web_readers.file_readers import (
    UTF8_HTML,
    _html_rows,
    _jsonl_rows,
    _parquet_rows,
)
from skycurate.connectors.web_readers.inputs import (
    INPUT_SUFFIXES,
    Discovery,
    InputFile,
    Kind,
    discover_inputs,
    input_kind,
    scan_inputs,
)
from skycurate.connectors.web_readers.rows import (
    Row,
    _Batcher,
    _describe,
    _is_recoverable,
    _q,
    url_domain,
)
from skycurate.connectors.web_readers.warc import MAX_RESYNCS, _warc_rows
from skycurate.schemas.web_extract import ReaderConfig

__all__ = [
    "INPUT_SUFFIXES", "MAX_RESYNCS", "UTF8_HTML", "Discovery", "InputFile", "Kind", "Row", "discover_inputs",
    "input_kind", "read_input", "scan_inputs", "url_domain",
]

log = logging.getLogger(__name__)


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


_READERS = {"warc": _warc_rows, "html": _html_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}
