"""HTML extraction: charsets, non-HTML rejection, boilerplate removal, pass-through and verdict rules."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from skycurate.connectors.web_readers import InputFile, read_input
from skycurate.schemas.web import RAW_DOC_SCHEMA
from skycurate.schemas.web_extract import ExtractConfig
from skycurate.stages.accounting import split_verdicts_arrow
from skycurate.stages.web import extract
from skycurate.stages.web.extract import EXTRACT, decode_html, extract_batch, html_verdict

EN_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Harbor library reopens</title>
<script>var tracking = {id: 1};</script><style>.x{color:red}</style></head><body>
<header><a href="/">The Riverside Courier</a><nav><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li>
<li><a href="/sport">Sport</a></li><li><a href="/weather">Weather forecast</a></li><li><a href="/login">Sign in</a></li>
</ul></nav></header>
<main><article><h1>Harbor library reopens after renovation</h1>
<p>The central library on Harbor Street reopened on Saturday after a renovation that took almost two years.</p>
<p>Visitors lined up before the doors opened to see the new reading rooms in the old warehouse wing.</p>
<p>The library will keep extended opening hours until the end of the summer.</p>
</article></main>
<footer><ul><li><a href="/about">About us</a></li><li><a href="/privacy">Privacy policy</a></li></ul>
<p>Copyright 2024 Riverside Media Group. All rights reserved.</p></footer></body></html>"""
EN_PARAGRAPHS = [
    "The central library on Harbor Street reopened on Saturday after a renovation that took almost two years.",
    "Visitors lined up before the doors opened to see the new reading rooms in the old warehouse wing.",
    "The library will keep extended opening hours until the end of the summer.",
]
EN_BOILERPLATE = ["Home", "Weather forecast", "Sign in", "Privacy policy", "All rights reserved", "tracking"]

ZH_PAGE = """<!DOCTYPE html><html lang="zh-CN"><head><meta charset="{charset}"><title>市图书馆重新开放</title></head>
<body><div class="top"><nav><a href="/">首页</a> | <a href="/news">新闻</a> | <a href="/sports">体育频道</a> |
<a href="/login">用户登录</a></nav></div>
<div id="content"><article><h1>市图书馆历时两年翻新后重新开放</h1>
<p>位于海港路的市中心图书馆于周六上午重新开放，此次翻新工程历时近两年。</p>
<p>馆长介绍说，翻新后的图书馆座位数量是原来的三倍，还为儿童专门开辟了新的楼层。</p>
<p>暑假结束前，图书馆将延长开放时间，周一至周四晚上十点闭馆。</p></article></div>
<footer><a href="/about">关于我们</a> | <a href="/contact">联系我们</a><p>版权所有 2024 江城日报 京ICP备12345678号</p></footer>
</body></html>"""
ZH_PARAGRAPHS = [
    "位于海港路的市中心图书馆于周六上午重新开放，此次翻新工程历时近两年。",
    "馆长介绍说，翻新后的图书馆座位数量是原来的三倍，还为儿童专门开辟了新的楼层。",
    "暑假结束前，图书馆将延长开放时间，周一至周四晚上十点闭馆。",
]
ZH_BOILERPLATE = ["首页", "体育频道", "用户登录", "关于我们", "版权所有", "京ICP备"]


def _raw(*rows: dict) -> pa.RecordBatch:
    full = []
    for i, r in enumerate(rows):
        html = r.get("html")
        full.append({"id": f"id{i}", "source": "t", "offset": i, "url": None, "domain": None, "fetch_date": None,
                     "content_type": r.get("content_type"), "html": html.encode() if isinstance(html, str) else html,
                     "text": r.get("text"), "payload_bytes": len(html or r.get("text") or ""),
                     "quarantine_reason": r.get("quarantine_reason")})
    return pa.RecordBatch.from_pylist(full, schema=RAW_DOC_SCHEMA)


def _one(row: dict, cfg: ExtractConfig | None = None) -> dict:
    return EXTRACT(_raw(row), cfg or ExtractConfig()).to_pylist()[0]


@pytest.mark.parametrize("engine", ["resiliparse", "trafilatura"])
def test_english_main_content_without_navigation(engine):
    out = _one({"html": EN_PAGE, "content_type": "text/html"}, ExtractConfig(engine=engine))
    assert out["reject_reason"] is None and out["reject_stage"] is None
    lines = out["text"].split("\n")
    for p in EN_PARAGRAPHS:
        assert p in lines  # one paragraph per line
    for junk in EN_BOILERPLATE:
        assert junk not in out["text"]
    assert "\n\n" not in out["text"]
    assert out["title"] == "Harbor library reopens" and out["charset"] == "utf-8"


@pytest.mark.parametrize("engine", ["resiliparse", "trafilatura"])
def test_chinese_main_content_without_navigation(engine):
    out = _one({"html": ZH_PAGE.format(charset="utf-8")}, ExtractConfig(engine=engine))
    lines = out["text"].split("\n")
    for p in ZH_PARAGRAPHS:
        assert p in lines
    for junk in ZH_BOILERPLATE:
        assert junk not in out["text"]
    assert out["title"] == "市图书馆重新开放"


@pytest.mark.parametrize("charset,codec", [("gbk", "gbk"), ("gb2312", "gbk"), ("GB18030", "gb18030")])
def test_gbk_family_page_with_charset_only_in_meta(charset, codec):
    page = ZH_PAGE.format(charset=charset)
    if codec == "gb18030":  # U+20000 needs GB18030's four-byte codes
        data = page.replace("暑假结束前", "暑假结束前𠀀").encode("gb18030")
    else:
        data = page.encode("gbk")
    out = _one({"html": data, "content_type": "text/html"})
    assert out["charset"] == codec
    assert ZH_PARAGRAPHS[1] in out["text"].split("\n")
    assert ("𠀀" in out["text"]) == (codec == "gb18030")
    assert out["title"] == "市图书馆重新开放"


def test_gb2312_label_with_gbk_only_characters_decodes_fully():
    data = "<html><head><meta charset=gb2312></head><body><p>镕基与喆的名字在GB2312里没有。</p></body></html>".encode("gbk")
    text, charset = decode_html(data, None)
    assert "镕基与喆" in text and charset == "gbk"


def test_charset_sources_in_order():
    big5 = "<html><body><p>這是一個繁體中文網頁，使用大五碼編碼。</p></body></html>".encode("big5")
    assert decode_html(big5, "text/html; charset=Big5") == (big5.decode("big5"), "big5")
    # The header lies (says UTF-8, bytes are GBK): the meta label that decodes cleanly wins.
    gbk = ZH_PAGE.format(charset="gbk").encode("gbk")
    assert decode_html(gbk, "text/html; charset=utf-8")[1] == "gbk"
    # A default ISO-8859-1 header does not beat valid UTF-8.
    utf8 = "<p>Café crème — naïve</p>".encode()
    assert decode_html(utf8, "text/html; charset=ISO-8859-1") == ("<p>Café crème — naïve</p>", "utf-8")
    # No label anywhere: detection.
    undeclared = ("<html><body><p>" + "这是一个没有声明编码的中文网页，需要自动检测字符集。" * 5 + "</p></body></html>")
    text, charset = decode_html(undeclared.encode("gbk"), None)
    assert text == undeclared and charset in ("gbk", "gb18030")
    assert decode_html(b"\xef\xbb\xbf<p>bom</p>", "text/html; charset=gbk") == ("<p>bom</p>", "utf-8")


@pytest.mark.parametrize("content_type,data,reason", [
    ("application/pdf", b"%PDF-1.4 ...", "not_html: application/pdf"),
    ("text/html", b"%PDF-1.7\n%\xe2\xe3", "not_html: application/pdf"),
    ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00", "not_html: image/png"),
    (None, b"\xff\xd8\xff\xe0\x00\x10JFIF", "not_html: image/jpeg"),
    ("application/octet-stream", b"\x00\x01\x02\x03binary", "not_html: application/octet-stream"),
    ("application/json", b'{"a": 1}', "not_html: application/json"),
    ("text/plain", b"just some plain text, no markup", "not_html: text/plain"),
    ("text/plain", b"<!DOCTYPE html><html><body><p>mislabelled</p></body></html>", None),
    (None, b"<html><body><p>no content type</p></body></html>", None),
    ("application/xhtml+xml; charset=utf-8", b"<html><body><p>x</p></body></html>", None),
])
def test_html_verdict(content_type, data, reason):
    assert html_verdict(content_type, data) == reason


def test_non_html_and_empty_pages_are_rejected():
    batch = _raw({"html": b"%PDF-1.4 binary", "content_type": "application/pdf"},
                 {"html": "<html><head><title>Nothing</title></head><body><nav><a href='/'>Home</a></nav>"
                          "</body></html>", "content_type": "text/html"},
                 {"html": b"", "content_type": "text/html"})
    out = EXTRACT(batch, ExtractConfig()).to_pylist()
    assert [(r["reject_stage"], r["reject_reason"]) for r in out] == [
        ("extract", "not_html: application/pdf"), ("extract", "empty: 0 chars < 1"), ("extract", "empty: 0 chars < 1")]
    assert out[0]["text"] is None


def test_min_text_chars_and_keep_title():
    page = "<html><head><title>Short page</title></head><body><main><p>Tiny text.</p></main></body></html>"
    out = _one({"html": page}, ExtractConfig(min_text_chars=20))
    assert out["reject_reason"] == "empty: 10 chars < 20"
    out = _one({"html": page}, ExtractConfig(keep_title=True))
    assert out["text"].split("\n")[0] == "Short page" and out["title"] == "Short page"


def test_text_rows_and_quarantined_rows_pass_through():
    batch = _raw({"text": "Given text stays as it is.\nSecond line."},
                 {"quarantine_reason": "bad_json: Expecting value at column 1"},
                 {"text": "   "})
    out = extract_batch(batch, ExtractConfig()).to_pylist()
    assert out[0]["text"] == "Given text stays as it is.\nSecond line."
    assert (out[0]["title"], out[0]["charset"], out[0]["reject_reason"]) == (None, None, None)
    assert out[1]["text"] is None and out[1]["reject_reason"] is None  # accounted as quarantined, not rejected
    assert out[1]["quarantine_reason"].startswith("bad_json")
    assert out[2]["reject_reason"] == "empty: 0 chars < 1"


def test_existing_verdicts_are_kept():
    batch = _raw({"html": EN_PAGE}, {"html": EN_PAGE})
    batch = batch.append_column("reject_stage", pa.array(["earlier", None], pa.string()))
    batch = batch.append_column("reject_reason", pa.array(["blocked_domain: x", None], pa.string()))
    out = EXTRACT(batch, ExtractConfig()).to_pylist()
    assert (out[0]["reject_stage"], out[0]["reject_reason"], out[0]["text"]) == ("earlier", "blocked_domain: x", None)
    assert out[1]["reject_reason"] is None and EN_PARAGRAPHS[0] in out[1]["text"]


def test_a_page_that_breaks_the_parser_is_rejected_not_raised(monkeypatch):
    real = extract.ENGINES["resiliparse"]

    def fragile(html: str, main_content: bool):
        if "explode" in html:
            raise RecursionError("maximum recursion depth exceeded")
        return real(html, main_content)

    monkeypatch.setitem(extract.ENGINES, "resiliparse", fragile)
    out = EXTRACT(_raw({"html": "<html><body><p>explode</p></body></html>"}, {"html": EN_PAGE}),
                  ExtractConfig()).to_pylist()
    assert (out[0]["reject_stage"], out[0]["reject_reason"]) == ("extract", "extract_error: RecursionError")
    assert out[1]["reject_reason"] is None


def test_stage_contract():
    schema = EXTRACT.output_schema(RAW_DOC_SCHEMA)
    assert schema.names[-5:] == ["text", "title", "charset", "reject_stage", "reject_reason"]
    out = EXTRACT(_raw({"html": EN_PAGE}, {"text": "x"}), ExtractConfig())
    assert out.schema.names == schema.names and out.schema.types == schema.types


def test_warc_to_extraction_accounting_reconciles(tmp_path):
    path = tmp_path / "mix.warc.gz"
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        for i, (ctype, body) in enumerate([
                ("text/html; charset=utf-8", EN_PAGE.encode()),
                ("text/html", ZH_PAGE.format(charset="gbk").encode("gbk")),
                ("application/pdf", b"%PDF-1.4 x"), ("text/html", b"<html><body></body></html>"),
                ("text/html", b"<p>" + b"y" * 3000 + b"</p>")]):
            http = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(f"http://e.com/{i}", "response", payload=io.BytesIO(body),
                                                http_headers=http))
    from skycurate.schemas.web_extract import ReaderConfig

    f = InputFile(path=str(path), label="mix.warc.gz", kind="warc", size=0)
    batches = read_input(f, ReaderConfig(max_payload_bytes=2000))
    table = pa.Table.from_batches([EXTRACT(b, ExtractConfig()) for b in batches])
    quarantined = table.filter(pa.compute.is_valid(table["quarantine_reason"]))
    rest = table.filter(pa.compute.is_null(table["quarantine_reason"]))
    kept, rejected = split_verdicts_arrow(rest)
    assert (kept.num_rows, rejected.num_rows, quarantined.num_rows) == (2, 2, 1)
    assert kept.num_rows + rejected.num_rows + quarantined.num_rows == 5
    assert ZH_PARAGRAPHS[0] in kept.column("text")[1].as_py()


def test_pathologically_deep_page_does_not_stall():
    deep = b"<html><body>" + b"<div>" * 100_000 + b"<p>deep text here</p>" + b"</div>" * 100_000 + b"</body></html>"
    out = _one({"html": deep, "content_type": "text/html"})  # main-content heuristics are quadratic in depth
    assert out["text"] == "deep text here" and out["reject_reason"] is None
