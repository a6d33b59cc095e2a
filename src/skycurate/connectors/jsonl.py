"""Read JSON Lines files (plain or .gz) into Arrow, quarantining lines that do not parse."""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from skycurate.errors import SkycurateError

RAW_PREVIEW_CHARS = 1000


def record_id(source: str, offset: int) -> str:
    """Deterministic record id: the same source and offset give the same id on any machine."""
    return hashlib.sha1(f"{source}\x00{offset}".encode()).hexdigest()[:16]


def expand_sources(patterns: list[str]) -> list[Path]:
    """Files named directly, found under folders, or matched by globs, sorted and de-duplicated."""
    found: set[Path] = set()
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir():
            found.update(x for x in p.rglob("*") if x.is_file() and x.name.endswith((".jsonl", ".jsonl.gz", ".json")))
        elif p.is_file():
            found.add(p)
        else:
            matches = [Path(m) for m in glob.glob(pattern, recursive=True) if os.path.isfile(m)]
            if not matches:
                raise SkycurateError(f"source {pattern!r} matches no file")
            found.update(matches)
    return sorted(found)


@dataclass
class JsonlRead:
    records: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    lines: int = 0


def _lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        yield from f


def read_jsonl(path: Path, source: str, text_field: str = "text") -> JsonlRead:
    """Every line becomes a record or a quarantine row with the reason; none is lost."""
    out = JsonlRead()
    try:
        for line_no, raw in enumerate(_lines(path), start=1):
            if not raw.strip():
                continue
            out.lines += 1
            preview = raw[:RAW_PREVIEW_CHARS].decode("utf-8", errors="replace")
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                out.quarantined.append({"source": source, "line": line_no, "error": f"not UTF-8: {e.reason}", "raw": preview})
                continue
            except json.JSONDecodeError as e:
                out.quarantined.append({"source": source, "line": line_no, "error": f"invalid JSON: {e.msg}", "raw": preview})
                continue
            except (ValueError, RecursionError) as e:   # an int of > 4300 digits; nesting too deep for Python
                reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(":")[0]
                out.quarantined.append({"source": source, "line": line_no, "error": f"invalid JSON: {reason}",
                                        "raw": preview})
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
                out.quarantined.append({"source": source, "line": line_no,
                                        "error": f"no string field {text_field!r}", "raw": preview})
                continue
            url = obj.get("url")
            out.records.append({"id": record_id(source, line_no), "source": source, "line": line_no,
                                "url": url if isinstance(url, str) else None, "text": obj[text_field]})
    except (OSError, EOFError) as e:  # truncated gzip and the like: keep what was read, quarantine the rest
        out.lines += 1
        out.quarantined.append({"source": source, "line": -1, "error": f"unreadable file: {e}", "raw": None})
    return out


def to_tables(reads: list[JsonlRead], raw_schema: pa.Schema, quarantine_schema: pa.Schema) -> tuple[pa.Table, pa.Table]:
    records = [r for read in reads for r in read.records]
    quarantined = [q for read in reads for q in read.quarantined]
    return (pa.Table.from_pylist(records, schema=raw_schema),
            pa.Table.from_pylist(quarantined, schema=quarantine_schema))
