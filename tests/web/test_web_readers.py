"""Web readers: every input record becomes a good row or a quarantine row with a reason; nothing raises.

Fixtures are tiny and built here with warcio, gzip, zstandard and pyarrow.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from skycurate.connectors.jsonl import record_id
from skycurate.connectors.web_readers import (
    InputFile,
    discover_inputs,
    input_kind,
    read_input,
    scan_inputs,
    url_domain,
)
from skycurate.errors import SkycurateError
from skycurate.schemas.web import RAW_DOC_SCHEMA
from skycurate.schemas.web_extract import ReaderConfig

PAGE = "<html><head><title>{t}</title></head><body><p>{t} body text.</p></body></html>"
GBK_PAGE = ('<html><head><meta charset="gbk"><title>中文页面</title></head>'
            '<body><p>这是一个用GBK编码的中文网页。</p></body></html>').encode("gbk")


# --------------------------------------------------------------------------------------------- helpers

def _read(path, kind: str | None = None, label: str | None = None, **cfg) -> pa.Table:
    f = InputFile(path=str(path), label=label or path.name, kind=kind or input_kind(path.name), size=0)
    batches = list(read_input(f, ReaderConfig(**cfg)))
    for b in batches:
        assert b.schema == RAW_DOC_SCHEMA
    return pa.Table.from_batches(batches, schema=RAW_DOC_SCHEMA)


def _split(t: pa.Table) -> tuple[list[dict], list[dict]]:
    rows = t.to_pylist()
    good = [r for r in rows if r["quarantine_reason"] is None]
    bad = [r for r in rows if r["quarantine_reason"] is not None]
    for r in bad:
        assert r["html"] is None and r["text"] is None
    for r in good:
        assert (r["html"] is None) != (r["text"] is None)
    assert len({r["id"] for r in rows}) == len(rows)
    return good, bad


def _response(w: WARCWriter, url: str, body: bytes, headers: list[tuple[str, str]], date: str | None = None):
    http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
    extra = {"WARC-Date": date} if date else None
    w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http,
                                        warc_headers_dict=extra))


def _request(w: WARCWriter, url: str):
    w.write_record(w.create_warc_record(url, "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")))


def _pages_warc(path, n: int = 5, gz: bool = True):
    """warcinfo, then n (request, response) pairs of small HTML pages."""
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=gz)
        w.write_record(w.create_warcinfo_record(path.name, {"software": "test"}))
        for i in range(n):
            url = f"http://www.example.com/p{i}"
            _request(w, url)
            _response(w, url, PAGE.format(t=f"Page {i}").encode(), [("Content-Type", "text/html; charset=utf-8")])


def _record_starts(raw: bytes) -> list[int]:
    return [0] + [m.start() + 1 for m in re.finditer(rb"\nWARC/1\.[01]\r\n", raw)]


def _regzip_per_record(raw: bytes) -> bytes:
    """A plain WARC -> one gzip member per record (as Common Crawl writes them)."""
    starts = _record_starts(raw) + [len(raw)]
    return b"".join(gzip.compress(raw[a:b]) for a, b in zip(starts, starts[1:]))


# ------------------------------------------------------------------------------------------------ WARC

def test_warc_responses_become_rows_with_metadata(tmp_path):
    path = tmp_path / "crawl.warc.gz"
    html_gz = PAGE.format(t="Compressed").encode()
    chunked = PAGE.format(t="Chunked").encode()
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        w.write_record(w.create_warcinfo_record(path.name, {"software": "test"}))
        _request(w, "http://www.Example.com:8080/a")
        _response(w, "http://www.Example.com:8080/a", PAGE.format(t="A").encode(),
                  [("Content-Type", "text/html; charset=utf-8")], date="2024-03-12T09:30:00.123456Z")
        _response(w, "https://news.example.org/b", PAGE.format(t="B").encode(), [("Content-Type", "text/html")])
        _response(w, "https://example.net/c.gz", gzip.compress(html_gz),
                  [("Content-Type", "text/html"), ("Content-Encoding", "gzip")])
        _response(w, "https://example.net/chunked",
                  b"".join(b"%x\r\n%s\r\n" % (len(chunked[i:i + 40]), chunked[i:i + 40])
                           for i in range(0, len(chunked), 40)) + b"0\r\n\r\n",
                  [("Content-Type", "text/html"), ("Transfer-Encoding", "chunked")])
        _response(w, "https://example.net/doc.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
                  [("Content-Type", "application/pdf")])
        _response(w, "http://zh.example.cn/gbk", GBK_PAGE, [("Content-Type", "text/html")])
        _response(w, "http://example.com/empty", b"", [("Content-Type", "text/html")])
        w.write_record(w.create_warc_record("http://example.com/meta", "metadata", payload=io.BytesIO(b"x: y\r\n")))
    t = _read(path)
    good, bad = _split(t)
    assert (len(good), len(bad)) == (7, 0)  # 7 responses; warcinfo, request and metadata are not documents
    a = good[0]
    assert a["url"] == "http://www.Example.com:8080/a" and a["domain"] == "example.com"
    assert a["fetch_date"] == dt.datetime(2024, 3, 12, 9, 30, 0, 123456, tzinfo=dt.timezone.utc)
    assert a["content_type"] == "text/html; charset=utf-8"
    assert a["html"] == PAGE.format(t="A").encode() and a["payload_bytes"] == len(a["html"])
    assert a["source"] == "crawl.warc.gz" and a["id"] == record_id("crawl.warc.gz", a["offset"])
    assert [r["domain"] for r in good[1:3]] == ["news.example.org", "example.net"]
    assert good[2]["html"] == html_gz  # Content-Encoding undone
    assert good[3]["html"] == chunked  # chunked transfer coding undone
    assert good[4]["content_type"] == "application/pdf" and good[4]["html"].startswith(b"%PDF")
    assert good[5]["html"] == GBK_PAGE
    assert good[6]["html"] == b"" and good[6]["payload_bytes"] == 0
    offsets = [r["offset"] for r in good]
    assert offsets == sorted(offsets) and len(set(offsets)) == 7
    assert _read(path).column("id").to_pylist() == t.column("id").to_pylist()  # deterministic


def test_truncated_warc_gz_keeps_records_before_the_cut(tmp_path):
    full = tmp_path / "full.warc.gz"
    _pages_warc(full, n=6)
    data = full.read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[: len(data) * 6 // 10])
    whole, _ = _split(_read(full, label="x.warc.gz"))
    good, bad = _split(_read(cut, label="x.warc.gz"))
    assert 1 <= len(good) < 6
    assert [r["id"] for r in good] == [r["id"] for r in whole[: len(good)]]
    assert len(bad) == 1 and bad[0]["quarantine_reason"].startswith("truncated")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_warc_single_gzip_member_or_plain(tmp_path, gz):
    full = tmp_path / "full.warc"
    _pages_warc(full, n=4, gz=False)
    raw = full.read_bytes()
    starts = _record_starts(raw)
    cut_at = starts[6] + 300  # inside the 3rd response
    data = gzip.compress(raw)[: len(gzip.compress(raw)) * 7 // 10] if gz else raw[:cut_at]
    path = tmp_path / ("cut.warc.gz" if gz else "cut.warc")
    path.write_bytes(data)
    good, bad = _split(_read(path))
    assert 1 <= len(good) < 4 and len(bad) == 1
    assert bad[0]["quarantine_reason"].startswith("truncated")


@pytest.mark.parametrize("damage", ["version", "content_length", "garbage_between", "length_too_small"])
@pytest.mark.parametrize("per_record_gzip", [False, True])
def test_malformed_warc_record_is_quarantined_and_reading_goes_on(tmp_path, damage, per_record_gzip):
    plain = tmp_path / "src.warc"
    _pages_warc(plain, n=4, gz=False)
    raw = plain.read_bytes()
    s = _record_starts(raw)[4]  # the 2nd response record
    rec = raw[s:]
    if damage == "version":
        rec = rec.replace(b"WARC/1.0", b"WARX/1.0", 1)
    elif damage == "content_length":
        rec = re.sub(rb"Content-Length: \d+", b"Content-Length: 12x", rec, count=1)
    elif damage == "garbage_between":
        rec = b"NOT A RECORD\r\n\r\n" + rec
    else:
        rec = re.sub(rb"Content-Length: \d+", b"Content-Length: 10", rec, count=1)
    raw = raw[:s] + rec
    path = tmp_path / ("bad.warc.gz" if per_record_gzip else "bad.warc")
    path.write_bytes(_regzip_per_record(raw) if per_record_gzip else raw)
    good, bad = _split(_read(path))
    expect_bad = 0 if damage == "garbage_between" else 1  # stray bytes between records are no record
    assert (len(good), len(bad)) == (4 - expect_bad, expect_bad)
    assert [r["html"] for r in good][-1] == PAGE.format(t="Page 3").encode()  # read on after the damage
    if bad:
        assert bad[0]["quarantine_reason"].startswith("malformed_warc")


def test_oversize_warc_payload_is_quarantined(tmp_path):
    path = tmp_path / "big.warc.gz"
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        _response(w, "http://example.com/big", b"<p>" + b"x" * 5000 + b"</p>", [("Content-Type", "text/html")])
        _response(w, "http://example.com/small", PAGE.format(t="s").encode(), [("Content-Type", "text/html")])
    good, bad = _split(_read(path, max_payload_bytes=1000))
    assert len(good) == 1 and len(bad) == 1
    assert re.fullmatch(r"too_large: \d+ bytes > 1000", bad[0]["quarantine_reason"])
    assert bad[0]["url"] == "http://example.com/big" and bad[0]["payload_bytes"] > 1000


def test_unreadable_file_becomes_one_quarantine_row(tmp_path):
    for kind in ("warc", "html", "jsonl", "parquet"):
        good, bad = _split(_read(tmp_path / f"missing.{kind}", kind=kind))
        assert not good and len(bad) == 1 and bad[0]["quarantine_reason"].startswith("unreadable")


# ----------------------------------------------------------------------------------------------- JSONL

JSONL_LINES = [
    json.dumps({"html": PAGE.format(t="J1"), "url": "https://www.site.com/1"}).encode(),
    json.dumps({"text": "given text 二", "url": "https://site.com/2"}, ensure_ascii=False).encode(),
    b"",  # blank: not a record
    b'{"html": "<p>broken',
    b'{"text": "caf\xe9"}',  # Latin-1 byte: not UTF-8
    json.dumps({"html": 42}).encode(),
    json.dumps({"text": ["a"]}).encode(),
    json.dumps(["not", "an", "object"]).encode(),
    json.dumps({"url": "https://site.com/none"}).encode(),
    json.dumps({"html": None, "text": "falls back to text"}).encode(),
]
JSONL_RECORDS = 9  # non-blank lines


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_jsonl_records_and_bad_lines(tmp_path, suffix):
    data = b"\n".join(JSONL_LINES) + b"\n"
    if suffix == ".jsonl.gz":
        data = gzip.compress(data)
    elif suffix == ".jsonl.zst":
        data = zstandard.ZstdCompressor().compress(data)
    path = tmp_path / f"docs{suffix}"
    path.write_bytes(data)
    good, bad = _split(_read(path))
    assert len(good) + len(bad) == JSONL_RECORDS
    assert [r["offset"] for r in good] == [1, 2, 10]
    assert good[0]["html"] == PAGE.format(t="J1").encode() and good[0]["content_type"] == "text/html; charset=utf-8"
    assert good[0]["domain"] == "site.com"
    assert good[1]["text"] == "given text 二" and good[1]["html"] is None
    assert good[2]["text"] == "falls back to text"
    reasons = {r["offset"]: r["quarantine_reason"] for r in bad}
    assert reasons[4].startswith("bad_json:")
    assert reasons[5].startswith("not_utf8:")
    assert reasons[6] == "bad_field: 'html' is int, expected string"
    assert reasons[7] == "bad_field: 'text' is list, expected string"
    assert reasons[8] == "bad_json: top-level value is list, expected object"
    assert reasons[9] == "missing_field: no 'html' or 'text'"
    assert next(r for r in bad if r["offset"] == 9)["url"] == "https://site.com/none"


def test_jsonl_custom_fields_and_oversize(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"content": "<p>hi</p>", "link": "http://a.b/c"}) + "\n"
                    + json.dumps({"content": "y" * 500}) + "\n")
    good, bad = _split(_read(path, jsonl_html_field="content", jsonl_url_field="link", max_payload_bytes=100))
    assert good[0]["html"] == b"<p>hi</p>" and good[0]["url"] == "http://a.b/c"
    assert bad[0]["quarantine_reason"] == "too_large: 500 bytes > 100"


def test_truncated_jsonl_gz_keeps_lines_before_the_cut(tmp_path):
    lines = [json.dumps({"text": f"line {i} " + "w" * 200}) for i in range(200)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    good, bad = _split(_read(path))
    assert len(good) >= 1 and len(bad) == 1
    assert [r["offset"] for r in good] == list(range(1, len(good) + 1))
    assert bad[0]["offset"] == len(good) + 1 and bad[0]["quarantine_reason"].startswith("truncated")


# --------------------------------------------------------------------------------------------- Parquet

def test_parquet_rows(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({
        "html": [PAGE.format(t="P0"), None, None, None],
        "text": [None, "plain text row", None, "x" * 300],
        "url": ["http://www.p.com/0", None, "http://p.com/2", None],
    }), path)
    good, bad = _split(_read(path, max_payload_bytes=200))
    assert [r["offset"] for r in good] == [0, 1] and [r["offset"] for r in bad] == [2, 3]
    assert good[0]["html"] == PAGE.format(t="P0").encode() and good[0]["domain"] == "p.com"
    assert good[1]["text"] == "plain text row"
    assert bad[0]["quarantine_reason"] == "missing_field: no 'html' or 'text'"
    assert bad[1]["quarantine_reason"] == "too_large: 300 bytes > 200"


def test_parquet_binary_html_wrong_types_and_corrupt_file(tmp_path):
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"html": pa.array([GBK_PAGE], pa.binary())}), path)
    good, _ = _split(_read(path))
    assert good[0]["html"] == GBK_PAGE and good[0]["content_type"] is None  # bytes: charset found later

    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"html": [1, 2, 3]}), path)
    good, bad = _split(_read(path))
    assert not good and [r["quarantine_reason"] for r in bad] == ["bad_field: 'html' is int, expected string"] * 3

    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1" + b"\x00garbage" * 20)
    good, bad = _split(_read(path))
    assert not good and len(bad) == 1 and bad[0]["quarantine_reason"].startswith("unreadable")


# ------------------------------------------------------------------------------- HTML folders, discovery

def test_html_folder_discovery_and_reading(tmp_path):
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text(PAGE.format(t="Index"))
    (root / "sub" / "page.htm").write_bytes(GBK_PAGE)
    (root / "sub" / "big.html").write_text("<p>" + "z" * 3000 + "</p>")
    (root / "notes.txt").write_text("not an input")
    found = scan_inputs([str(root)])
    assert [f.label for f in found.files] == ["index.html", "sub/big.html", "sub/page.htm"]
    assert {f.kind for f in found.files} == {"html"}
    assert found.skipped == [str(root / "notes.txt")]
    total_good, total_bad = 0, 0
    for f in found.files:
        t = pa.Table.from_batches(list(read_input(f, ReaderConfig(max_payload_bytes=2000))))
        good, bad = _split(t)
        total_good, total_bad = total_good + len(good), total_bad + len(bad)
        assert t.column("offset").to_pylist() == [0] and t.column("url").to_pylist() == [None]
        assert t.column("id").to_pylist() == [record_id(f.label, 0)]
    assert (total_good, total_bad) == (2, 1)


def test_discover_inputs_globs_dedup_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/x.warc.gz", "a/deep/y.jsonl.zst", "a/deep/z.parquet", "a/w.json.gz", "a/q.WARC"):
        (tmp_path / name).write_bytes(b"")
    files = discover_inputs(["a/**/*.*", "a/x.warc.gz", str(tmp_path / "a")])
    assert [(f.label, f.kind) for f in files] == [
        ("deep/y.jsonl.zst", "jsonl"), ("deep/z.parquet", "parquet"), ("q.WARC", "warc"),
        ("w.json.gz", "jsonl"), ("x.warc.gz", "warc")]  # de-duplicated, the first pattern's label wins
    assert [f.label for f in discover_inputs(["a/deep/*.parquet"])] == ["z.parquet"]
    assert [f.label for f in discover_inputs(["a/x.warc.gz"])] == ["x.warc.gz"]
    with pytest.raises(SkycurateError, match="matches no file"):
        discover_inputs(["nowhere/*.warc.gz"])
    with pytest.raises(SkycurateError, match="matches no file"):
        discover_inputs(["missing.jsonl"])
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(SkycurateError, match="unknown file type"):
        discover_inputs(["readme.md"])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.warc.gz").write_bytes(b"")
    with pytest.raises(SkycurateError, match="share the label"):
        discover_inputs(["a/x.warc.gz", "b/x.warc.gz"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SkycurateError, match="holds no"):
        discover_inputs(["empty"])


def test_batches_respect_batch_size(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(7)))
    f = InputFile(path=str(path), label="many.jsonl", kind="jsonl", size=0)
    assert [b.num_rows for b in read_input(f, ReaderConfig(batch_size=3))] == [3, 3, 1]


@pytest.mark.parametrize("url,domain", [
    ("http://www.Example.COM:8080/x", "example.com"),
    ("https://sub.example.org./", "sub.example.org"),
    ("https://user:pw@www.a.cn/p?q=1", "a.cn"),
    ("example.com/path", "example.com"),
    ("http://[::1]:80/", "::1"),
    ("http://[bad", None),
    ("", None),
    (None, None),
])
def test_url_domain(url, domain):
    assert url_domain(url) == domain
