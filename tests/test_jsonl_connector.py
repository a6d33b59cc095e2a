"""JSONL reading: every line is a record or a quarantine row with its reason."""

from __future__ import annotations

import gzip
import json

import pytest

from skycurate.connectors.jsonl import expand_sources, read_jsonl, record_id, to_tables
from skycurate.errors import SkycurateError
from skycurate.schemas.hello import QUARANTINE_SCHEMA, RAW_SCHEMA


def test_bad_lines_are_quarantined_with_reasons(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps({"text": "good one", "url": "https://a"}).encode(),
        b'{"text": "cut off',
        json.dumps({"body": "no text"}).encode(),
        b'{"text": "caf\xe9"}',  # latin-1 byte, not UTF-8
        json.dumps(["not", "an", "object"]).encode(),
        b"",  # blank lines are not records
        json.dumps({"text": "good two", "url": 7}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    read = read_jsonl(path, "mixed.jsonl")
    assert read.lines == 6
    assert [r["text"] for r in read.records] == ["good one", "good two"]
    assert read.records[1]["url"] is None
    errors = {q["line"]: q["error"] for q in read.quarantined}
    assert errors[2].startswith("invalid JSON")
    assert errors[3] == "no string field 'text'"
    assert errors[4].startswith("not UTF-8")
    assert errors[5] == "no string field 'text'"
    assert read.lines == len(read.records) + len(read.quarantined)


def test_truncated_gzip_keeps_what_was_read_and_quarantines_the_rest(tmp_path):
    payload = gzip.compress(b"".join(json.dumps({"text": f"doc {i} " * 50}).encode() + b"\n" for i in range(200)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(payload[: len(payload) // 2])
    read = read_jsonl(path, "cut.jsonl.gz")
    assert 0 < len(read.records) < 200
    assert read.quarantined[-1]["error"].startswith("unreadable file")
    assert read.lines == len(read.records) + len(read.quarantined)


def test_ids_are_deterministic_and_tables_have_the_schemas(tmp_path):
    assert record_id("a.jsonl", 3) == record_id("a.jsonl", 3) != record_id("a.jsonl", 4)
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "x"}\n{bad\n')
    raw, quarantine = to_tables([read_jsonl(path, "a.jsonl")], RAW_SCHEMA, QUARANTINE_SCHEMA)
    assert raw.schema == RAW_SCHEMA and quarantine.schema == QUARANTINE_SCHEMA
    assert raw.column("id").to_pylist() == [record_id("a.jsonl", 1)]


def test_expand_sources(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("d/a.jsonl", "d/b.jsonl.gz", "d/skip.txt", "c.jsonl"):
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in expand_sources([str(tmp_path / "d"), str(tmp_path / "*.jsonl")])]
    assert found == ["c.jsonl", "d/a.jsonl", "d/b.jsonl.gz"]
    with pytest.raises(SkycurateError, match="matches no file"):
        expand_sources([str(tmp_path / "nothing-*.jsonl")])
