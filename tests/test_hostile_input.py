"""Hostile input (issue 16): the readers never crash and account for every record; hostile dataset
names, repository specs and revisions are refused with a clear one-line error before anything runs.

Readers are fuzzed with hypothesis: arbitrary bytes, and structured inputs broken on purpose (truncated
or re-framed WARC records, cut gzip members, JSONL lines that are not JSON / not objects / of the wrong
types, Parquet files truncated or with the wrong schema, junk test logs and JUnit XML). Example counts
are kept small so the file runs in well under a minute.
"""

from __future__ import annotations

import atexit
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from skycurate.catalog.refs import check_name, parse_ref
from skycurate.connectors import git_repos
from skycurate.connectors.benchmarks import BenchmarkError, load_benchmark
from skycurate.connectors.git_repos import GitRepo, RepoError, check_repo_spec, expand_repo_specs, resolve_repo
from skycurate.connectors.github_api import ExportError, load_export
from skycurate.connectors.jsonl import read_jsonl
from skycurate.connectors.web_readers import InputFile, read_input
from skycurate.errors import InvalidReference, SkycurateError
from skycurate.sandbox.logs import STATUSES, parse_junit_xml, parse_pytest_log
from skycurate.schemas.leakage import BenchmarkSpec
from skycurate.schemas.web import RAW_DOC_SCHEMA
from skycurate.schemas.web_extract import ReaderConfig
from skycurate.stages.accounting import REJECT_REASON
from skycurate.stages.swe.patch_split import is_test_path, pytest_targets
from skycurate.stages.web.extract import extract_batch

FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
FEW = settings(FUZZ, max_examples=30)

PAGE = "<html><head><title>{t}</title></head><body><p>{t} body text.</p></body></html>"
N_PAGES = 4
PAGES = [PAGE.format(t=f"Page {i}").encode() for i in range(N_PAGES)]


# --------------------------------------------------------------------------------------------- helpers

_SCRATCH = Path(tempfile.mkdtemp(prefix="skycurate-hostile-"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
set_hypothesis_home_dir(str(_SCRATCH / ".hypothesis"))   # no cache folder in the work tree
_counter = iter(range(10**9))


def _file(data: bytes, suffix: str) -> Path:
    """A fresh file per example (hypothesis runs many examples inside one test)."""
    path = _SCRATCH / f"f{next(_counter)}{suffix}"
    path.write_bytes(data)
    return path


def _read(path: Path, kind: str, **cfg) -> list[dict]:
    f = InputFile(path=str(path), label=path.name, kind=kind, size=path.stat().st_size)
    rows = []
    for b in read_input(f, ReaderConfig(**cfg)):
        assert b.schema == RAW_DOC_SCHEMA
        rows += b.to_pylist()
    assert len({r["id"] for r in rows}) == len(rows), "record ids must be unique"
    for r in rows:
        if r["quarantine_reason"] is not None:
            assert r["html"] is None and r["text"] is None and r["quarantine_reason"].strip()
        else:
            assert (r["html"] is None) != (r["text"] is None)
    return rows


def _split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    good = [r for r in rows if r["quarantine_reason"] is None]
    return good, [r for r in rows if r["quarantine_reason"] is not None]


def _plain_warc() -> bytes:
    """warcinfo, then N_PAGES (request, response) pairs, uncompressed."""
    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=False)
    w.write_record(w.create_warcinfo_record("x.warc", {"software": "test"}))
    for i, page in enumerate(PAGES):
        url = f"http://www.example.com/p{i}"
        w.write_record(w.create_warc_record(url, "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")))
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(page), http_headers=http))
    # warcio draws record ids and dates afresh: fixed ones (same lengths) make the bytes, and so the
    # derandomized examples' cut points, the same in every run
    ids = iter(range(10**6))
    data = re.sub(rb"urn:uuid:[0-9a-f-]{36}", lambda m: b"urn:uuid:00000000-0000-4000-8000-%012d" % next(ids),
                  buf.getvalue())
    return re.sub(rb"WARC-Date: [0-9T:.Z-]+", b"WARC-Date: 2024-01-01T00:00:00Z", data)


WARC = _plain_warc()
STARTS = [0] + [m.start() + 1 for m in re.finditer(rb"\nWARC/1\.[01]\r\n", WARC)]
RECORDS = [WARC[a:b] for a, b in zip(STARTS, STARTS[1:] + [len(WARC)])]
RESPONSES = [i for i, r in enumerate(RECORDS) if b"WARC-Type: response" in r]
assert len(RESPONSES) == N_PAGES


def _gzip_per_record(records: list[bytes]) -> bytes:
    return b"".join(gzip.compress(r, mtime=0) for r in records)


# ------------------------------------------------------------------------------------ readers: any bytes

@FUZZ
@given(data=st.binary(max_size=2000),
       kind=st.sampled_from([("warc", ".warc"), ("warc", ".warc.gz"), ("html", ".html"), ("jsonl", ".jsonl"),
                             ("jsonl", ".jsonl.gz"), ("parquet", ".parquet")]),
       prefix=st.sampled_from([b"", b"\x1f\x8b\x08", b"\x28\xb5\x2f\xfd", b"WARC/1.0\r\n", b"PAR1"]))
def test_web_readers_never_raise_on_arbitrary_bytes(data, kind, prefix):
    rows = _read(_file(prefix + data, kind[1]), kind[0])
    if kind[0] == "html":   # one file, one record
        assert len(rows) == 1


@FEW
@given(html=st.binary(max_size=3000) | st.builds(
           lambda t, junk: f"<html><head><meta charset='{t}'></head><body><p>{t}</p>".encode() + junk,
           st.sampled_from(["utf-8", "gbk", "x-bogus", "utf-16", ""]), st.binary(max_size=200)),
       ctype=st.sampled_from([None, "text/html", "text/html; charset=utf-8", "text/html; charset=\x00bogus",
                              "application/octet-stream", "text/html; charset=utf-16"]))
def test_html_with_invalid_utf8_reads_and_extracts_without_crash(html, ctype):
    """HTML file -> one row; extraction keeps the row count and gives every row text or a verdict."""
    rows = _read(_file(html, ".html"), "html")
    assert len(rows) == 1
    n = len(rows)
    batch = pa.RecordBatch.from_pylist([{**r, "content_type": ctype} for r in rows], schema=RAW_DOC_SCHEMA)
    out = extract_batch(batch)
    assert out.num_rows == n
    for r in out.to_pylist():
        assert r["quarantine_reason"] is not None or r[REJECT_REASON] is not None or r["text"]


# ----------------------------------------------------------------------------------------- WARC framing

@FUZZ
@given(victim=st.integers(0, N_PAGES - 1),
       damage=st.sampled_from(["version", "content_length", "length_too_small", "length_too_large",
                               "type", "garbage_between", "header_cut"]),
       per_record_gzip=st.booleans())
def test_warc_one_damaged_record_costs_only_itself(victim, damage, per_record_gzip):
    """Exact accounting: the damaged response is one quarantine row, every other page is kept."""
    records = list(RECORDS)
    i = RESPONSES[victim]
    rec = records[i]
    if damage == "version":
        rec = rec.replace(b"WARC/1.0", b"WARX/1.0", 1)
    elif damage == "content_length":
        rec = re.sub(rb"Content-Length: \d+", b"Content-Length: 12x", rec, count=1)
    elif damage == "length_too_small":
        rec = re.sub(rb"Content-Length: \d+", b"Content-Length: 10", rec, count=1)
    elif damage == "length_too_large":
        rec = re.sub(rb"Content-Length: (\d+)", lambda m: b"Content-Length: %d" % (int(m.group(1)) + 37), rec,
                     count=1)
    elif damage == "type":
        rec = rec.replace(b"WARC-Type: response", b"WARC-Type: bogus-type", 1)
    elif damage == "garbage_between":
        rec = b"NOT A RECORD\r\n\x00\xff garbage\r\n\r\n" + rec
    else:  # the header stops mid-way, then the next record starts
        rec = rec[: rec.index(b"Content-Length")] + b"\r\n"
    records[i] = rec
    data = _gzip_per_record(records) if per_record_gzip else b"".join(records)
    good, bad = _split(_read(_file(data, ".warc.gz" if per_record_gzip else ".warc"), "warc"))
    if damage == "garbage_between":   # stray bytes between records are no record
        assert [r["html"] for r in good] == PAGES and not bad
        return
    assert [r["html"] for r in good] == [p for k, p in enumerate(PAGES) if k != victim]
    assert len(bad) == 1, [r["quarantine_reason"] for r in bad]
    assert bad[0]["quarantine_reason"].split(":")[0] in ("malformed_warc", "truncated")


@FUZZ
@given(cut=st.integers(0, len(WARC) - 1), gz=st.sampled_from(["plain", "single_member", "per_record"]))
def test_truncated_warc_keeps_a_prefix_and_accounts_for_the_rest(cut, gz):
    """A WARC (or gzip member) cut anywhere: the pages before the cut are kept, at most one row for the rest."""
    if gz == "plain":
        data, end = WARC[:cut], cut
    elif gz == "single_member":
        full = gzip.compress(WARC, mtime=0)
        data = full[: cut * len(full) // len(WARC)]
        end = None
    else:
        full = _gzip_per_record(RECORDS)
        data = full[: cut * len(full) // len(WARC)]
        end = None
    good, bad = _split(_read(_file(data, ".warc" if gz == "plain" else ".warc.gz"), "warc"))
    assert [r["html"] for r in good] == PAGES[: len(good)]
    assert len(bad) <= 1
    if end is not None:
        started = sum(1 for i in RESPONSES if STARTS[i] < end)
        complete = sum(1 for i in RESPONSES if i + 1 < len(STARTS) and STARTS[i + 1] <= end)
        assert complete <= len(good) <= started
        assert len(good) + len(bad) <= started + 1


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=3),
       per_record_gzip=st.booleans())
def test_warc_with_flipped_bytes_accounts_for_every_page(flips, per_record_gzip):
    """Random byte damage: no crash; kept pages are intact (gzip: the CRC guards them); a lost page means a
    quarantine row."""
    data = bytearray(_gzip_per_record(RECORDS) if per_record_gzip else WARC)
    for at, x in flips:
        data[at % len(data)] ^= x
    good, bad = _split(_read(_file(bytes(data), ".warc.gz" if per_record_gzip else ".warc"), "warc"))
    if per_record_gzip:
        assert all(r["html"] in PAGES for r in good)
    # A damaged stream keeps what it read before the damage and adds a quarantine row for the rest
    # (a flipped gzip magic byte makes the whole file one unreadable record): no page is lost silently.
    assert len(good) == N_PAGES or bad
    assert len(good) <= N_PAGES


@FUZZ
@given(victim=st.integers(0, N_PAGES - 1), mode=st.sampled_from(["cut", "flip", "zero"]), where=st.floats(0.3, 0.9))
def test_warc_gzip_member_cut_mid_way_costs_only_its_record(victim, mode, where):
    """One gzip member per record (as Common Crawl writes them); one response's member is cut short or
    damaged mid-way and the next member follows: that page is one quarantine row, the others are kept."""
    members = [gzip.compress(r, mtime=0) for r in RECORDS]
    i = RESPONSES[victim]
    m = bytearray(members[i])
    at = 10 + int((len(m) - 18) * where)   # inside the deflate data, not the header or the CRC trailer
    if mode == "cut":
        m = m[:at]
    elif mode == "flip":
        m[at] ^= 0xFF
    else:
        m[at:at + 16] = bytes(min(16, len(m) - at))
    members[i] = bytes(m)
    good, bad = _split(_read(_file(b"".join(members), ".warc.gz"), "warc"))
    assert [r["html"] for r in good] == [p for k, p in enumerate(PAGES) if k != victim]
    assert len(bad) == 1, [r["quarantine_reason"] for r in bad]


HOSTILE_URIS = ["../../etc/passwd", "/etc/passwd", "file:///etc/passwd", "http://x/" + "a" * 20000,
                "http://x/\x00nul", "..\\..\\windows\\system32", "http://x/%2e%2e/%2e%2e/etc/passwd"]


def test_hostile_warc_target_uris_write_no_file(tmp_path, monkeypatch):
    """Record names are data, never paths: reading and extracting such records writes nothing."""
    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=False)
    for uri in HOSTILE_URIS:
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html"),
                                           ("Content-Disposition", f"attachment; filename={uri}")],
                                protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(uri, "response", payload=io.BytesIO(PAGES[0]), http_headers=http))
    work = tmp_path / "work"
    work.mkdir()
    src = tmp_path / "in" / "x.warc"
    src.parent.mkdir()
    src.write_bytes(buf.getvalue())
    monkeypatch.chdir(work)
    before = sorted(p for p in tmp_path.rglob("*"))
    rows = _read(src, "warc")
    good, bad = _split(rows)
    assert len(good) + len(bad) == len(HOSTILE_URIS)
    assert {r["url"] for r in good} <= set(HOSTILE_URIS)
    extract_batch(pa.RecordBatch.from_pylist(rows, schema=RAW_DOC_SCHEMA))
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not any(work.iterdir())


# ------------------------------------------------------------------------------------------------ JSONL

def _huge_int() -> str:
    return "9" * 5000   # Python refuses int("9" * 5000): a ValueError, not a JSONDecodeError


# (line, verdict): True good, False quarantined, None blank (no record)
JSONL_LINE = st.one_of(
    st.builds(lambda t: (json.dumps({"text": t}).encode(), True), st.text(max_size=50)),
    st.builds(lambda t: (json.dumps({"html": t, "url": 5}).encode(), True), st.text(max_size=50)),
    st.builds(lambda t: (json.dumps({"html": t}).encode(), False),
              st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.booleans(), st.floats(),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))),
    st.builds(lambda v: (json.dumps(v).encode(), False),
              st.one_of(st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3), st.none())),
    st.builds(lambda t: (json.dumps({"other": t}).encode(), False), st.text(max_size=10)),
    st.sampled_from([
        (b'{"text": "a\\u0000b"}', True),                       # escaped NUL: a fine string
        (b'{"text": "a\x00b"}', False),                         # raw NUL: not JSON
        (b"\x00\x00\x00", False),
        (b'{"text": "\\ud800 lone surrogate"}', True),
        (b'{"text": "caf\xe9"}', False),                        # not UTF-8
        (b"\xff\xfe{\x00", False),
        (b'{"text": "x", "n": ' + _huge_int().encode() + b"}", False),
        (b'{"text": ' + _huge_int().encode() + b"}", False),
        (b"[" * 50000 + b"]" * 50000, False),                   # nested too deeply
        (b'{"a":' * 20000 + b"1" + b"}" * 20000, False),
        (b'{"text": "ok"', False),                              # cut mid-object
        (b"not json at all", False),
        (b"NaN", False),
        (b"", None), (b"   \t\r", None),
    ]),
)


@FUZZ
@given(lines=st.lists(JSONL_LINE, max_size=12), noise=st.lists(st.binary(max_size=40), max_size=3),
       compress=st.sampled_from(["", ".gz"]))
def test_web_jsonl_reader_accounts_for_every_line(lines, noise, compress):
    """One row per non-blank line, offset = line number; good/bad exactly as each line deserves."""
    lines = list(lines) + [(b.replace(b"\n", b" "), "?") for b in noise]
    data = b"\n".join(raw for raw, _ in lines) + b"\n"
    if compress:
        data = gzip.compress(data, mtime=0)
    rows = _read(_file(data, ".jsonl" + compress), "jsonl")
    expected = {n: v for n, (raw, v) in enumerate(lines, start=1) if raw.strip()}
    assert sorted(r["offset"] for r in rows) == sorted(expected)
    for r in rows:
        want = expected[r["offset"]]
        if want != "?":
            assert (r["quarantine_reason"] is None) == want, (lines[r["offset"] - 1], r["quarantine_reason"])


@FUZZ
@given(lines=st.lists(JSONL_LINE, min_size=1, max_size=10), cut=st.floats(0, 1))
def test_web_jsonl_gz_cut_mid_member(lines, cut):
    data = b"\n".join(raw for raw, _ in lines) + b"\n"
    full = gzip.compress(data, mtime=0)
    rows = _read(_file(full[: int(len(full) * cut)], ".jsonl.gz"), "jsonl")
    offsets = sorted(r["offset"] for r in rows)
    assert offsets == sorted(set(offsets))
    non_blank = [n for n, (raw, _) in enumerate(lines, start=1) if raw.strip()]
    assert len([r for r in rows if not (r["quarantine_reason"] or "").startswith("truncated")]) <= len(non_blank)
    assert sum(1 for r in rows if (r["quarantine_reason"] or "").startswith("truncated")) <= 1


@FUZZ
@given(lines=st.lists(JSONL_LINE, max_size=12), gz_cut=st.none() | st.floats(0, 1))
def test_connector_read_jsonl_accounts_for_every_line(lines, gz_cut):
    """``read_jsonl``: records + quarantined == non-blank lines; records are the objects with a string text."""
    data = b"\n".join(raw for raw, _ in lines) + b"\n"
    suffix = ".jsonl"
    if gz_cut is not None:
        full = gzip.compress(data, mtime=0)
        data, suffix = full[: int(len(full) * gz_cut)], ".jsonl.gz"
    out = read_jsonl(_file(data, suffix), "src")
    assert len(out.records) + len(out.quarantined) == out.lines
    if gz_cut is None:
        non_blank = [(n, raw) for n, (raw, _) in enumerate(lines, start=1) if raw.strip()]
        assert out.lines == len(non_blank)
        kept = {r["line"] for r in out.records}
        for n, raw in non_blank:
            try:
                obj = json.loads(raw.decode("utf-8"))
                ok = isinstance(obj, dict) and isinstance(obj.get("text"), str)
            except (ValueError, RecursionError):
                ok = False
            assert (n in kept) == ok, raw[:80]


@FEW
@given(lines=st.lists(JSONL_LINE, max_size=8), noise=st.binary(max_size=60))
def test_benchmark_loader_raises_only_benchmark_error(lines, noise):
    data = b"\n".join(raw for raw, _ in lines) + b"\n" + noise
    path = _file(data, ".jsonl")
    try:
        tables = load_benchmark(BenchmarkSpec(name="fuzz", path=str(path)))
    except BenchmarkError as e:
        assert "\n" not in str(e).strip() or str(e).count("\n") < 3
        return
    assert sum(t.num_rows for t in tables.values()) == sum(1 for raw, _ in lines if raw.strip())


HOSTILE_JSON_LINES = [b'{"text": "x", "n": ' + _huge_int().encode() + b"}", b"[" * 50000 + b"]" * 50000,
                      b'{"text": "caf\xe9"}', b'{"text": "a\x00b"}', b"\x00",
                      b'{"text": ' + _huge_int().encode() + b"}"]


@pytest.mark.parametrize("line", HOSTILE_JSON_LINES, ids=range(len(HOSTILE_JSON_LINES)))
@pytest.mark.parametrize("gz", [False, True])
def test_json_line_readers_on_known_hostile_lines(line, gz):
    """Lines Python's json cannot take (an int of > 4300 digits is a ValueError, deep nesting a
    RecursionError): each record reader quarantines the line or raises its own documented error."""
    good = json.dumps({"text": "fine", "type": "issue", "number": 1}).encode()
    data = b"\n".join([good, line, good]) + b"\n"
    suffix = ".jsonl"
    if gz:
        data, suffix = gzip.compress(data, mtime=0)[:-9], ".jsonl.gz"   # also cut the gzip member short
    path = _file(data, suffix)
    rows = _read(path, "jsonl")
    if not gz:
        assert [r["quarantine_reason"] is None for r in rows] == [True, False, True]
    out = read_jsonl(path, "src")
    assert len(out.records) + len(out.quarantined) == out.lines
    if not gz:
        assert out.lines == 3 and [r["line"] for r in out.records] == [1, 3]
    with pytest.raises(BenchmarkError):
        load_benchmark(BenchmarkSpec(name="b", path=str(path)))
    with pytest.raises(ExportError):
        load_export(path)


@pytest.mark.parametrize("cut", [0, 4, 50, 0.5, 0.9])
def test_benchmark_loader_on_truncated_parquet(cut):
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["a", "b"], "id": [1, 2]}), buf)
    data = buf.getvalue()
    path = _file(data[: int(len(data) * cut) if isinstance(cut, float) else cut], ".parquet")
    with pytest.raises(BenchmarkError):
        load_benchmark(BenchmarkSpec(name="b", path=str(path)))


EXPORT_LINE = st.one_of(
    st.builds(lambda n, t, ca: json.dumps({"type": "pr", "number": n, "title": t, "created_at": ca,
                                           "merged_at": ca, "merge_commit_sha": t}).encode(),
              st.integers(-10**20, 10**20), st.text(max_size=20),
              st.one_of(st.none(), st.text(max_size=25), st.integers(-10**20, 10**20),
                        st.floats(allow_nan=True), st.sampled_from(["2024-03-01T00:00:00Z", "9999-99-99"]))),
    st.builds(lambda c, li: json.dumps({"type": "issue", "number": 1, "comments": c,
                                        "linked_issues": li}).encode(),
              st.one_of(st.none(), st.lists(st.one_of(st.integers(), st.dictionaries(
                  st.sampled_from(["created_at", "body"]), st.one_of(st.text(max_size=5), st.floats())))),
                  st.text(max_size=4)),
              st.one_of(st.lists(st.integers(), max_size=2), st.text(max_size=3), st.none())),
    JSONL_LINE.map(lambda lv: lv[0]),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")),
)


@FUZZ
@given(lines=st.lists(EXPORT_LINE, max_size=6), gz_cut=st.none() | st.floats(0, 1))
def test_github_export_loader_raises_only_export_error(lines, gz_cut):
    data = b"\n".join(lines) + b"\n"
    suffix = ".jsonl"
    if gz_cut is not None:
        full = gzip.compress(data, mtime=0)
        data, suffix = full[: int(len(full) * gz_cut)], ".jsonl.gz"
    try:
        meta = load_export(_file(data, suffix))
    except ExportError:
        return
    assert len(meta.prs) + len(meta.issues) <= sum(1 for raw in lines if raw.strip())


# ---------------------------------------------------------------------------------------------- Parquet

COLUMN = st.sampled_from([
    pa.array(["<p>a</p>", None, "<b>x</b>"], pa.string()), pa.array([b"<p>\xff</p>", None, b""], pa.binary()),
    pa.array([1, None, 2**62], pa.int64()), pa.array([1.5, None, float("nan")], pa.float64()),
    pa.array([True, None, False]), pa.array([[1], None, []], pa.list_(pa.int64())),
    pa.array([{"a": 1}, None, {"a": 2}], pa.struct([("a", pa.int64())])),
    pa.array([None, None, None], pa.null()), pa.array(["a\x00b", "\u2028", None], pa.large_string()),
])


def _expected_ok(html, text) -> bool:
    if html is not None:
        return isinstance(html, (str, bytes))
    return isinstance(text, str)


@FUZZ
@given(cols=st.dictionaries(st.sampled_from(["html", "text", "url", "other", "HTML"]), COLUMN, max_size=4),
       cut=st.none() | st.floats(0, 1))
def test_parquet_reader_wrong_schema_and_truncation(cols, cut):
    """Exact per-row verdicts for any schema; a truncated file gives at most the rows before the cut + one."""
    table = pa.table(cols) if cols else pa.table({"other": pa.array([1, 2, 3])})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    if cut is not None:
        data = data[: int(len(data) * cut)]
    rows = _read(_file(data, ".parquet"), "parquet")
    if cut is None:
        assert [r["offset"] for r in rows] == list(range(table.num_rows))
        py = table.to_pylist()
        for r, src in zip(rows, py):
            assert (r["quarantine_reason"] is None) == _expected_ok(src.get("html"), src.get("text")), (src, r)
    else:
        assert len(rows) <= table.num_rows + 1 and len(rows) >= 1


# --------------------------------------------------------------------------------------- test logs, XML

SUMMARY_LINE = st.builds(lambda st_, path, name: f"{st_} {path}::{name}",
                         st.sampled_from(STATUSES), st.from_regex(r"[a-z_/]{1,12}\.py", fullmatch=True),
                         st.from_regex(r"test_[a-z0-9_]{1,8}(\[[^\n\]]{0,6}\])?", fullmatch=True))


@FUZZ
@given(lines=st.lists(SUMMARY_LINE | st.text(max_size=80) | st.sampled_from(
    ["\x1b[31mFAILED\x1b[0m t.py::x", "SKIPPED [1] ", "SKIPPED [x] a.py:1", "PASSED ", "ERROR  ::", "\x00\r\n",
     "[gw0] [ 50%] PASSED a.py::t", ">>>>> Start Test Output", "t.py::x PASSED [100%]"]), max_size=15))
def test_parse_pytest_log_never_raises(lines):
    out = parse_pytest_log("\n".join(lines))
    assert all(isinstance(k, str) and v in STATUSES for k, v in out.items())


def _deep(n: int) -> bytes:
    return b"<testsuite>" + b"<a>" * n + b"</a>" * n + b"</testsuite>"


JUNIT = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200),
    st.builds(lambda cls, name, file, child: (
        f'<testsuites><testsuite><testcase classname="{cls}" name="{name}" {file}>{child}</testcase>'
        f"</testsuite></testsuites>"),
        st.text(alphabet="abcT._/-", max_size=12), st.text(alphabet="abc_[]- ", max_size=10),
        st.sampled_from(["", 'file="t/test_x.py"', 'file=""', 'file="a\\b.py"']),
        st.sampled_from(["", "<failure/>", "<error/>", '<skipped type="pytest.xfail"/>', "<skipped/>",
                         "<failure>&undefined;</failure>", "<error>&amp;&#0;</error>", "<x><y></x>"])),
    st.sampled_from([
        _deep(100_000), _deep(10),
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY l2 "&lol;&lol;">]><t>&l2;</t>',
        b"<testsuite>&xxe;</testsuite>", b"<testcase name='a' classname=''/>", b"",
        b"<testsuite><testcase classname='a.B' name='t'>" * 500,
        b'<?xml version="1.0" encoding="bogus"?><t/>', b"\xef\xbb\xbf<t/>", b"<t>\x00</t>",
    ]),
)


@FUZZ
@given(xml=JUNIT, files=st.none() | st.lists(st.text(max_size=10), max_size=3))
def test_parse_junit_xml_raises_only_value_or_syntax_error(xml, files):
    """The caller (``sandbox.run``) catches ``ValueError`` and ``SyntaxError`` (``ET.ParseError``)."""
    try:
        out = parse_junit_xml(xml, files)
    except (ValueError, SyntaxError):
        return
    assert all(isinstance(k, str) and v in STATUSES for k, v in out.items())


@FEW
@given(patch=st.text(max_size=300) | st.lists(st.sampled_from([
    "diff --git a/x.py b/x.py", "diff --git a/ b/", "--- a/x.py", "+++ b/x.py", "+++ /dev/null", "+++ ",
    "@@ -1,3 +1,4 @@", "@@ -a,b +c @@", "@@", "+x", "-y", " z", "\\ No newline at end of file", "\x00",
    "diff --git a/../../etc/passwd b/../../etc/passwd"]), max_size=12).map("\n".join))
def test_patch_helpers_never_raise_on_bad_hunks(patch):
    from skycurate.sandbox.run import _diff_files, _failed_files

    assert all(isinstance(f, str) for f in _diff_files(patch))
    assert all(isinstance(f, str) for f in _failed_files(patch))
    paths = patch.splitlines()
    assert isinstance(pytest_targets(paths), list)
    assert all(isinstance(is_test_path(p), bool) for p in paths)


# -------------------------------------------------------------------------------------- dataset names

HOSTILE_NAMES = ["../etc", "web/..", "web/../x", "/etc/x", "/etc", "web/clean\n", "web/clean\r", "web/cl\x00ean",
                 "web\\clean", "web/..\\x", "web//clean", "/web/clean", "web/clean/", "web/", "/", "", "..", ".",
                 "web/.", "./web", "web/clean/../../x", "WEB/clean", "web/-x", "web/clean ", " web/clean\n"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_dataset_names_are_rejected(name):
    with pytest.raises(InvalidReference, match="bad dataset"):
        check_name(name)


@pytest.mark.parametrize("ref", [*[n for n in HOSTILE_NAMES if n.strip(" ") not in ("", "web/clean")],
                                 "web/clean\n@v0001",
                                 "web/clean@v0001\n", "web/clean@prod\n", "web/clean@../x", "web/clean@v0001/..",
                                 "web/clean@\x00", "web/clean@²", "web/clean@-v1", "web/clean@/etc/x",
                                 "web/clean@v0001@v0002"])
def test_hostile_dataset_refs_are_rejected(ref):
    with pytest.raises(InvalidReference):
        parse_ref(ref)


def test_ordinary_refs_still_parse():
    assert parse_ref("web/clean") == ("web/clean", "latest")
    assert parse_ref(" web/clean@v0003 ") == ("web/clean", "v0003")
    assert parse_ref("web/clean@3") == ("web/clean", "v0003")
    assert parse_ref("web/clean@prod") == ("web/clean", "prod")
    assert check_name("cot/math-v2.1_x") == "cot/math-v2.1_x"


@FUZZ
@given(text=st.text(max_size=40) | st.from_regex(r"[a-z./\\\-\n\x00]{0,12}(@[a-z0-9./\n]{0,8})?", fullmatch=True))
def test_parse_ref_accepts_only_safe_folder_names(text):
    try:
        name, version = parse_ref(text)
    except InvalidReference:
        return
    for part in (*name.split("/"), version):
        assert part and part not in (".", "..") and re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", part), (text, part)
    root = "/store"
    assert os.path.normpath(os.path.join(root, name, version)).startswith(root + "/")


# ------------------------------------------------------------------------------- repositories and revs

def _git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@b"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    (path / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(path), "add", "a.py"], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", "init"], check=True, env=env)
    return path


def _hostile_specs(pwned: Path) -> list[str]:
    return [
        f"--upload-pack=touch {pwned}", f"--upload-pack=touch${{IFS}}{pwned}", f"-c core.sshCommand=touch {pwned}",
        f"-ccore.sshCommand=touch {pwned}", "-", "--", f"ext::sh -c touch% {pwned}", f"ext::sh -c 'touch {pwned}'",
        f"fd::17/{pwned}", f"file:///tmp/x;touch {pwned}", f"file:///tmp/x;rm -rf {pwned.parent}",
        f"https://example.com/x$(touch {pwned})", f"https://example.com/x`touch {pwned}`",
        f"ssh://-oProxyCommand=touch%20{pwned}/x", f"ssh://git@-oProxyCommand=touch%20{pwned}/x",
        f"-oProxyCommand=touch {pwned}:x", f"git@host:org/repo\ntouch {pwned}", f"https://h/o/r\x00{pwned}",
        "https://example.com/org/repo.git\n", f"https://h/o/r --upload-pack=touch {pwned}",
        f"gopher://h/{pwned}", f"https://h/o/r|touch {pwned}", f"git@host:org/repo;touch {pwned}",
        "", "\n", f"{pwned.parent}/\x00x",
    ]


def _no_git(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError(f"a git process was started: {a!r}")
    monkeypatch.setattr(git_repos.git.cmd.Git, "execute", refuse)
    monkeypatch.setattr(git_repos.git.cmd, "safer_popen", refuse)


@pytest.mark.parametrize("i", range(len(_hostile_specs(Path("/p")))))
def test_hostile_repo_specs_are_refused_before_git_runs(tmp_path, monkeypatch, i):
    pwned = tmp_path / "pwned"
    spec = _hostile_specs(pwned)[i]
    monkeypatch.chdir(tmp_path)
    _no_git(monkeypatch)
    with pytest.raises(RepoError) as err:
        resolve_repo(spec, tmp_path / "cache")
    assert "\n" not in str(err.value) and str(err.value)
    with pytest.raises(RepoError):
        expand_repo_specs([spec])
    assert not pwned.exists()
    assert not (tmp_path / "cache").exists()


def test_legitimate_repo_specs_pass_the_check(tmp_path):
    spaced = _git_repo(tmp_path / "my repos" / "calc")
    for spec in ["https://github.com/org/repo", "https://github.com/org/repo.git", "git@github.com:org/repo.git",
                 "ssh://git@github.com/org/repo.git", "ssh://git@[::1]:22/org/repo.git", "git://host.xz/org/repo",
                 "file:///srv/git/repo.git", "http://gitlab.example.com:8080/group/sub/repo.git", str(spaced),
                 "relative/path-to/repo_1.git", "~/src/*"]:
        assert check_repo_spec(spec) == spec
    h = resolve_repo(spaced)                       # a local path with a space still resolves
    assert h.name == "local/calc" and Path(h.path) == spaced.resolve()
    url = spaced.as_uri()                          # file://.../my%20repos/calc: a space in a URL is refused
    with pytest.raises(RepoError, match="whitespace"):
        resolve_repo(url, tmp_path / "cache")
    plain = _git_repo(tmp_path / "plain")
    cloned = resolve_repo(plain.as_uri(), tmp_path / "cache")   # an ordinary file:// clone works
    assert GitRepo(cloned.path).head() == GitRepo(plain).head()


@FUZZ
@given(spec=st.text(max_size=40) | st.from_regex(r"(-|ext::|https://|git@h:|ssh://-)?[a-z ;$`|\n\x00/:.-]{0,20}",
                                                  fullmatch=True))
def test_check_repo_spec_raises_only_repo_error(spec):
    try:
        ok = check_repo_spec(spec)
    except RepoError as e:
        assert "\n" not in str(e)
        return
    assert not ok.startswith("-") and "::" not in ok.split("/", 1)[0]
    assert not re.search(r"[\x00-\x1f\x7f]", ok)


HOSTILE_REVS = ["--output={pwned}", "-o{pwned}", "--output={pwned}..HEAD", "HEAD\n--output={pwned}",
                "HEAD\x00", "HEAD --output={pwned}", "-", "", " "]


@pytest.mark.parametrize("rev", HOSTILE_REVS)
def test_hostile_revisions_are_refused(tmp_path, rev):
    """A PR's merge sha or a branch name from an export is data: ``--output=F`` must not make git write F."""
    pwned = tmp_path / "pwned"
    rev = rev.format(pwned=pwned)
    repo = GitRepo(_git_repo(tmp_path / "r"))
    head = repo.head()
    try:
        _refuse_all(repo, rev, head)
    finally:
        assert not pwned.exists()
    assert repo.list_files(head) == ["a.py"] and repo.commit_info(head).sha == head   # ordinary revs still work
    assert repo.authored_dates(f"{head}..{head}") == []


def _refuse_all(repo: GitRepo, rev: str, head: str) -> None:
    assert repo.resolve(rev) is None
    for call in (lambda: repo.commit_date(rev), lambda: repo.commit_info(rev), lambda: repo.authored_dates(rev),
                 lambda: repo.changed_files(rev, head), lambda: repo.changed_files(head, rev),
                 lambda: repo.diff_bytes(rev, head, ["a.py"]), lambda: repo.list_files(rev),
                 lambda: repo.last_tag(rev)):
        with pytest.raises(RepoError, match="bad revision"):
            call()


def test_every_error_here_is_a_skycurate_error():
    assert issubclass(RepoError, SkycurateError) and issubclass(InvalidReference, SkycurateError)
    assert issubclass(BenchmarkError, SkycurateError) and issubclass(ExportError, SkycurateError)
