"""Safety and privacy: what is masked, what must not be, and which pages are blocked, in English and Chinese."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from skycurate.errors import ConfigError, SkycurateError
from skycurate.schemas.config import validate_config
from skycurate.schemas.web_annotate import SafetyConfig
from skycurate.stages.web.safety import (SAFETY, SAFETY_FILTER, count_keywords, build_keyword_automaton, load_list,
                                         mask_pii, parse_url_blocklist, safety_batch, safety_verdicts)

# text, masked text, counts (emails, phones, ips)
MASKED = [
    ("mail me: john.doe+news@example.co.uk.", "mail me: <EMAIL>.", (1, 0, 0)),
    ("邮箱：zhangsan@qq.com，电话13800138000", "邮箱：<EMAIL>，电话<PHONE>", (1, 1, 0)),
    ("13800138000@163.com", "<EMAIL>", (1, 0, 0)),  # one e-mail, not a phone inside it
    ("手机 138 0013 8000 欢迎来电", "手机 <PHONE> 欢迎来电", (0, 1, 0)),
    ("联系：+86 138-0013-8000。", "联系：<PHONE>。", (0, 1, 0)),
    ("(+86)13800138000", "<PHONE>", (0, 1, 0)),
    ("0086 13912345678", "<PHONE>", (0, 1, 0)),
    ("8613800138000", "<PHONE>", (0, 1, 0)),
    ("价格咨询13800138000元起", "价格咨询<PHONE>元起", (0, 1, 0)),  # 11 digits 1[3-9]...: a mobile
    ("电话：010-12345678", "电话：<PHONE>", (0, 1, 0)),
    ("(0755) 8888 6666", "<PHONE>", (0, 1, 0)),
    ("Call +1 (415) 555-2671 now", "Call <PHONE> now", (0, 1, 0)),
    ("London +44 20 7946 0958", "London <PHONE>", (0, 1, 0)),
    ("+44 20 7946 0958 2024 edition", "<PHONE> 2024 edition", (0, 1, 0)),  # a glued-on year stays
    ("Berlin +49 30 123456", "Berlin <PHONE>", (0, 1, 0)),
    ("(415) 555-2671", "<PHONE>", (0, 1, 0)),
    ("tel 415-555-2671, fax 415.555.2672", "tel <PHONE>, fax <PHONE>", (0, 2, 0)),
    ("toll free 1-800-555-0199", "toll free <PHONE>", (0, 1, 0)),
    ("server at 8.8.8.8:53", "server at <IP>:53", (0, 0, 1)),
    ("IP地址为114.114.114.114。", "IP地址为<IP>。", (0, 0, 1)),
    ("from 1.1.1.1 and 9.9.9.9", "from <IP> and <IP>", (0, 0, 2)),
]

# Look-alikes that must stay as they are.
NOT_MASKED = [
    "version 1.2.3 was released in 2024",
    "upgrade to v1.2.3.4 or version 1.2.3.4",
    "版本 1.2.3.4 已发布",
    "Chrome 120.0.6099.109 and Windows 10.0.19041.1",
    "router 192.168.1.1, localhost 127.0.0.1, netmask 255.255.255.0",  # not personal: not masked
    "address 256.1.1.1 is not valid, nor 01.02.03.04",
    "In 1999 the population was 1,380,000,000.",
    "价格 ¥12,800 元，折后 $1,299.00",
    "ISBN 978-7-115-54608-1 and ISBN 0-306-40615-2, EAN 9787115546081",
    "订单号：2023081513800138000",
    "order ORD-2024-0815-3390 shipped",
    "date 2024-01-15 13:45, 15.01.2024, 2024.01.15",
    "sizes 250 300 2000 mm",
    "growth +3.5% and score +12 -4",
    "temperature +20.5 C",
    "pi is 3.14159265358",
    "short 1380013800 and long 138001380001",
    "email-like text user@localhost and @handle",
    "第12章 第345页 共6789字",
]


@pytest.mark.parametrize("text,masked,counts", MASKED, ids=[m[0][:24] for m in MASKED])
def test_pii_is_masked(text, masked, counts):
    out, found = mask_pii(text)
    assert out == masked
    assert (found["email"], found["phone"], found["ip"]) == counts


@pytest.mark.parametrize("text", NOT_MASKED)
def test_look_alikes_are_not_masked(text):
    out, found = mask_pii(text)
    assert out == text and found == {"email": 0, "ip": 0, "phone": 0}


def test_pathological_digit_runs_stay_fast():
    import time

    text = ("+" + "1" * 40 + " ") * 500 + "1." * 5000 + ("8" * 50 + " ") * 500
    start = time.perf_counter()
    assert mask_pii(text)[0] == text
    assert time.perf_counter() - start < 1.0


# --- lists -----------------------------------------------------------------------------------

@pytest.fixture
def lists(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("# domains and URL parts\nexample.com\n*.casino.test\nhttps://www.spam.org/\n.xxx\n"
                    "/free-download/\n\n", encoding="utf-8")
    words = tmp_path / "words.txt"
    words.write_text("\ufeff# keywords\n赌博\n网络赌博\nViagra\nass\n色情网站\n", encoding="utf-8")
    return str(urls), str(words)


DOMAINS = [
    # url, domain, blocked entry (None = not blocked)
    ("https://example.com/a", "example.com", "blocked_domain: example.com"),
    ("https://a.b.example.com/a", "a.b.example.com", "blocked_domain: example.com"),
    ("https://notexample.com/", "notexample.com", None),
    ("https://example.com.evil.net/", "example.com.evil.net", None),
    ("https://example.co/", "example.co", None),
    ("https://play.casino.test/x", "play.casino.test", "blocked_domain: casino.test"),
    ("https://news.spam.org/x", "news.spam.org", "blocked_domain: spam.org"),
    ("https://site.xxx/", "site.xxx", "blocked_domain: xxx"),
    ("https://xxx.com/", "xxx.com", None),
    ("https://ok.org/Free-Download/app", "ok.org", "blocked_url: /free-download/"),
    ("https://EXAMPLE.com/upper", None, "blocked_domain: example.com"),  # no domain column value: from the URL
    (None, None, None),
]


@pytest.mark.parametrize("url,domain,reason", DOMAINS, ids=[str(d[0]) for d in DOMAINS])
def test_url_blocklist_matches_domains_and_subdomains(lists, url, domain, reason):
    cfg = SafetyConfig(url_blocklist=lists[0])
    row = SAFETY_FILTER(SAFETY(_batch(["A normal page."], urls=[url], domains=[domain]), cfg), cfg).to_pylist()[0]
    assert row["blocked_url"] is (reason is not None)
    assert row["reject_reason"] == reason
    assert row["reject_stage"] == ("safety" if reason else None)


KEYWORDS = [
    # text, hits
    ("这个网站提供网络赌博服务", 1),  # longest match counts once, not 网络赌博 + 赌博
    ("赌博是违法的。赌博害人。", 2),
    ("Buy VIAGRA cheap, viagra online", 2),  # case-insensitive
    ("This class is about mass and passion", 0),  # ASCII keywords match whole words only
    ("what an ass!", 1),
    ("访问色情网站的风险", 1),
    ("A page about rivers.", 0),
    ("", 0),
]


@pytest.mark.parametrize("text,hits", KEYWORDS, ids=[k[0][:20] for k in KEYWORDS])
def test_keyword_blocklist(lists, text, hits):
    cfg = SafetyConfig(keyword_blocklist=lists[1])
    row = SAFETY_FILTER(SAFETY(_batch([text]), cfg), cfg).to_pylist()[0]
    assert row["blocked_keywords"] == hits
    assert row["reject_reason"] == (f"blocked_keywords: {hits} >= 1" if hits else None)


def test_max_keyword_hits_is_a_filter_setting(lists):
    cfg = SafetyConfig(keyword_blocklist=lists[1], max_keyword_hits=2)
    rows = SAFETY_FILTER(SAFETY(_batch(["赌博是违法的。", "赌博是违法的。赌博害人。"]), cfg), cfg).to_pylist()
    assert [r["reject_reason"] for r in rows] == [None, "blocked_keywords: 2 >= 2"]


def test_keyword_automaton_helpers():
    auto = build_keyword_automaton(["Spam", "垃圾"])
    assert count_keywords("SPAM spam Spammer 垃圾邮件", auto) == 3
    assert count_keywords(None, auto) == 0 and count_keywords("spam", None) == 0


def test_url_entries_parse():
    bl = parse_url_blocklist(["Example.COM", "www.foo.org", "http://bar.net", ".onion", "porn", "/ads?id="])
    assert bl.domains == {"example.com", "foo.org", "bar.net", "onion"}
    assert bl.match("https://x.porn-site.com/", "x.porn-site.com") == ("url", "porn")
    assert bl.match("https://a.onion/", "a.onion") == ("domain", "onion")


# --- the stage ---------------------------------------------------------------------------------

def _batch(texts, urls=None, domains=None, **extra) -> pa.RecordBatch:
    n = len(texts)
    return pa.record_batch({"id": [str(i) for i in range(n)], "text": pa.array(texts, pa.string()),
                            "url": pa.array(urls or [f"https://site{i}.org/p" for i in range(n)], pa.string()),
                            "domain": pa.array(domains or [f"site{i}.org" for i in range(n)], pa.string()), **extra})


def test_stage_masks_text_and_adds_counts():
    out = SAFETY(_batch(["Write to a@b.com or call 13800138000", None, "nothing here"]), SafetyConfig())
    rows = out.to_pylist()
    assert rows[0]["text"] == "Write to <EMAIL> or call <PHONE>"
    assert (rows[0]["pii_emails"], rows[0]["pii_phones"], rows[0]["pii_ips"]) == (1, 1, 0)
    assert rows[1]["text"] is None and rows[1]["pii_emails"] == 0
    assert rows[2]["blocked_url"] is False and rows[2]["blocked_keywords"] == 0
    assert out.schema == SAFETY.output_schema(_batch(["x"]).schema)
    for name in ("pii_emails", "pii_phones", "pii_ips", "blocked_keywords"):
        assert out.schema.field(name).type == pa.int32()


def test_count_only_and_selected_kinds():
    text = "a@b.com 13800138000 8.8.8.8"
    row = safety_batch(_batch([text]), SafetyConfig(mask_pii=False)).to_pylist()[0]
    assert row["text"] == text and (row["pii_emails"], row["pii_phones"], row["pii_ips"]) == (1, 1, 1)
    row = safety_batch(_batch([text]), SafetyConfig(pii_kinds=["email"])).to_pylist()[0]
    assert row["text"] == "<EMAIL> 13800138000 8.8.8.8"
    assert (row["pii_emails"], row["pii_phones"], row["pii_ips"]) == (1, None, None)


def test_already_rejected_rows_pass_through_untouched(lists):
    cfg = SafetyConfig(url_blocklist=lists[0], keyword_blocklist=lists[1])
    batch = _batch(["赌博 a@b.com", "赌博 a@b.com"], urls=["https://example.com/"] * 2, domains=["example.com"] * 2,
                   reject_stage=pa.array(["lid", None], pa.string()),
                   reject_reason=pa.array(["lang fr not in [zh, en]", None], pa.string()))
    rows = SAFETY_FILTER(SAFETY(batch, cfg), cfg).to_pylist()
    assert rows[0]["text"] == "赌博 a@b.com" and rows[0]["blocked_url"] is None and rows[0]["pii_emails"] is None
    assert (rows[0]["reject_stage"], rows[0]["reject_reason"]) == ("lid", "lang fr not in [zh, en]")
    assert rows[1]["text"] == "赌博 <EMAIL>"
    assert (rows[1]["reject_stage"], rows[1]["reject_reason"]) == ("safety", "blocked_domain: example.com")


def test_lists_are_cached_and_reloaded_when_changed(tmp_path):
    words = tmp_path / "w.txt"
    words.write_text("alpha\n", encoding="utf-8")
    cfg = SafetyConfig(keyword_blocklist=str(words))
    assert safety_batch(_batch(["alpha beta"]), cfg).to_pylist()[0]["blocked_keywords"] == 1
    words.write_text("alpha\nbeta\n", encoding="utf-8")
    os.utime(words, ns=(1, 1))  # a different mtime even on coarse clocks
    assert safety_batch(_batch(["alpha beta"]), cfg).to_pylist()[0]["blocked_keywords"] == 2


def test_missing_list_file_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^list file .*missing\.txt not found$") as e:
        load_list(tmp_path / "missing.txt")
    assert isinstance(e.value, SkycurateError) and "\n" not in str(e.value)
    with pytest.raises(SkycurateError, match="not found"):
        safety_batch(_batch(["x"]), SafetyConfig(keyword_blocklist=str(tmp_path / "missing.txt")))
    with pytest.raises(ConfigError, match="is a folder"):
        load_list(tmp_path)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_list(bad)


def test_load_list_skips_comments_blanks_and_bom(lists):
    assert load_list(lists[1]) == ["赌博", "网络赌博", "Viagra", "ass", "色情网站"]


def test_config_validation():
    assert SafetyConfig().max_keyword_hits == 1 and SafetyConfig().mask_pii is True
    with pytest.raises(ConfigError, match="pii_kinds"):
        validate_config(SafetyConfig, {"pii_kinds": ["ssn"]})
    with pytest.raises(ConfigError, match="max_keyword_hits"):
        validate_config(SafetyConfig, {"max_keyword_hits": 0})
    with pytest.raises(SkycurateError, match="needs column"):
        safety_verdicts(_batch(["x"]), SafetyConfig())
