"""Build the real-page evaluation set of the web flow from Debian documentation packages.

Real English and Chinese documentation pages (HTML as the packages ship it, many generators:
Sphinx, DocBook, texinfo, LibreOffice's help, AsciiDoc, Doxygen-like API pages), with planted
duplicates and junk, written as WARC.gz with the ground truth next to it:

    <out>/crawl/crawl-00000.warc.gz ...   the crawl (records shuffled)
    <out>/truth.json                      one entry per record: url, kind, lang, cluster, source, detail
    <out>/samples.txt                     the first lines of random good pages and junk, for reading

Kinds: ``good`` (a distinct documentation page), ``near_dup`` (a planted near copy of a good page:
word edits, a sentence added or removed, the same content in another site's template, the same
text re-wrapped in other markup), ``exact_dup`` (the same bytes under another URL), ``junk``
(empty, binary, navigation-only, lorem ipsum, other languages, link spam, error pages).

How good pages are labelled (no skycurate code runs here). Candidate pages are read with lxml,
their navigation (nav/header/footer, sidebars, "related" bars, tables of contents) dropped;
then a page is a good page when it holds a real amount of prose in one language: >= 80 Latin
words for English, >= 150 Han characters for Chinese, at most half its text inside links (else
it is a table of contents: a few of those become navigation-only junk), at least 3 sentences of
running text (>= 6 words, or >= 12 Han characters, ending in . ! ? 。！？: pages that are only an API
signature, a parameter table or a formula are not labelled), and its language is
unmixed (Chinese packages ship many untranslated pages; those are left out, not labelled).
These rules were checked by reading samples of what they keep and leave out (``samples.txt``
is written for that). Pages that are natural near duplicates of each other (generated API
stubs, translated-and-not pages) are reduced to one with datasketch MinHash LSH (word 5-grams,
character 5-grams for Chinese, threshold 0.7) so that "distinct good pages" are distinct.

Sources the project is evaluated on independently are not used (python3.x-doc, postgresql-doc,
python-django-doc, git-doc, apache2-doc, postfix-doc, gimp-help-en, sqlite3-doc, exim4-doc-html,
linux-doc, debian-handbook, octave-doc, wireshark-doc, python-sqlalchemy-doc, manpages-zh,
maint-guide-zh-cn, debian-reference-zh-cn).

    .venv/bin/python benchmarks/web_eval_set.py [--out .bench/web-eval] [--install] [--seed 11]

``--install`` apt-installs the packages that are missing (needs root and Debian's archive).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / ".bench" / "web-eval"


@dataclass(frozen=True)
class Source:
    package: str
    lang: str                 # the language of its good pages: en | zh
    pattern: str              # recursive glob of its HTML pages
    cap: int                  # at most this many good pages from it (diversity)
    host: str                 # the site the pages pretend to come from
    root: str                 # path prefix removed to make the URL path
    skip: tuple[str, ...] = ()  # path substrings that are never pages (indexes, sources, search)


SPHINX_SKIP = ("/_modules/", "/_static/", "/_sources/", "/_images/", "genindex", "/search.html", "py-modindex",
               "/404.html")
SOURCES = (
    # English
    Source("python-pandas-doc", "en", "/usr/share/doc/python-pandas-doc/html/**/*.html", 380, "pandas.pydata.org",
           "/usr/share/doc/python-pandas-doc/html/", SPHINX_SKIP),
    Source("python-scipy-doc", "en", "/usr/share/doc/python-scipy-doc/html/**/*.html", 380, "docs.scipy.org",
           "/usr/share/doc/python-scipy-doc/html/", SPHINX_SKIP),
    Source("cmake-doc", "en", "/usr/share/doc/cmake-data/html/**/*.html", 320, "cmake.org",
           "/usr/share/doc/cmake-data/html/", SPHINX_SKIP),
    Source("libreoffice-help-en-us", "en", "/usr/share/libreoffice/help/en-US/text/**/*.html", 320,
           "help.libreoffice.org", "/usr/share/libreoffice/help/"),
    Source("lilypond-doc-html", "en", "/usr/share/doc/lilypond/html/**/*.html", 320, "lilypond.org",
           "/usr/share/doc/lilypond/html/"),
    Source("gnucash-docs", "en", "/usr/share/doc/gnucash-docs/gnucash-*-en/*.html", 200, "gnucash.org",
           "/usr/share/doc/gnucash-docs/"),
    Source("installation-guide-amd64", "en", "/usr/share/doc/installation-guide-amd64/en/*.html", 80,
           "www.debian.org", "/usr/share/doc/"),
    Source("sphinx-doc", "en", "/usr/share/doc/sphinx-doc/html/**/*.html", 90, "www.sphinx-doc.org",
           "/usr/share/doc/sphinx-doc/html/", SPHINX_SKIP),
    Source("python-flask-doc", "en", "/usr/share/doc/python-flask-doc/html/**/*.html", 60,
           "flask.palletsprojects.com", "/usr/share/doc/python-flask-doc/html/", SPHINX_SKIP),
    Source("python-requests-doc", "en", "/usr/share/doc/python-requests-doc/html/**/*.html", 20,
           "requests.readthedocs.io", "/usr/share/doc/python-requests-doc/html/", SPHINX_SKIP),
    Source("debian-policy", "en", "/usr/share/doc/debian-policy/**/*.html", 50, "www.debian.org",
           "/usr/share/doc/"),
    Source("debian-faq", "en", "/usr/share/doc/debian/FAQ/*.en.html", 30, "www.debian.org", "/usr/share/doc/"),
    Source("developers-reference", "en", "/usr/share/developers-reference/*.html", 20, "www.debian.org",
           "/usr/share/"),
    Source("debian-reference-en", "en", "/usr/share/debian-reference/*.en.html", 20, "www.debian.org",
           "/usr/share/"),
    Source("kicad-doc-en", "en", "/usr/share/doc/kicad/help/en/*.html", 10, "docs.kicad.org", "/usr/share/doc/"),
    Source("r-doc-html", "en", "/usr/share/R/doc/manual/*.html", 10, "cran.r-project.org", "/usr/share/R/doc/"),
    # Chinese
    Source("libreoffice-help-zh-cn", "zh", "/usr/share/libreoffice/help/zh-CN/text/**/*.html", 260,
           "help.libreoffice.org", "/usr/share/libreoffice/help/"),
    Source("libreoffice-help-zh-tw", "zh", "/usr/share/libreoffice/help/zh-TW/text/**/*.html", 160,
           "help.libreoffice.org", "/usr/share/libreoffice/help/"),
    Source("installation-guide-amd64", "zh", "/usr/share/doc/installation-guide-amd64/zh_CN/*.html", 90,
           "www.debian.org", "/usr/share/doc/"),
    Source("debian-faq-zh-cn", "zh", "/usr/share/doc/debian/FAQ/zh-cn/*.html", 30, "www.debian.org",
           "/usr/share/doc/"),
    Source("gimp-help-zh-cn", "zh", "/usr/share/gimp/2.0/help/zh_CN/*.html", 60, "docs.gimp.org",
           "/usr/share/gimp/2.0/help/"),
    Source("lilypond-doc-html-zh", "zh", "/usr/share/doc/lilypond/html/**/*.zh.html", 40, "lilypond.org",
           "/usr/share/doc/lilypond/html/"),
    Source("kicad-doc-zh", "zh", "/usr/share/doc/kicad/help/zh/*.html", 10, "docs.kicad.org", "/usr/share/doc/"),
    Source("debian-edu-doc-zh-cn", "zh", "/usr/share/doc/debian-edu-doc-zh-cn/*.html", 3, "wiki.debian.org",
           "/usr/share/doc/"),
    Source("linuxcnc-doc-zh-cn", "zh", "/usr/share/doc/linuxcnc/*zh_CN.html", 3, "linuxcnc.org", "/usr/share/doc/"),
)
# Real pages in other languages (junk for an EN+ZH corpus).
OTHER_LANG_PAGES = (
    ("installation-guide-amd64", "/usr/share/doc/installation-guide-amd64/de/*.html", "de"),
    ("installation-guide-amd64", "/usr/share/doc/installation-guide-amd64/fr/*.html", "fr"),
    ("installation-guide-amd64", "/usr/share/doc/installation-guide-amd64/ru/*.html", "ru"),
    ("installation-guide-amd64", "/usr/share/doc/installation-guide-amd64/ja/*.html", "ja"),
    ("installation-guide-amd64", "/usr/share/doc/installation-guide-amd64/ko/*.html", "ko"),
    ("installation-guide-amd64", "/usr/share/doc/installation-guide-amd64/es/*.html", "es"),
    ("debian-faq-it", "/usr/share/doc/debian/FAQ/it/*.html", "it"),
    ("gnucash-docs", "/usr/share/doc/gnucash-docs/gnucash-guide-pt/*.html", "pt"),
    ("gnucash-docs", "/usr/share/doc/gnucash-docs/gnucash-guide-de/*.html", "de"),
    ("installation-guide-amd64", "/usr/share/doc/installation-guide-amd64/vi/*.html", "vi"),
)
PACKAGES = sorted({s.package for s in SOURCES} | {p for p, _, _ in OTHER_LANG_PAGES})

MIN_EN_WORDS = 80
MIN_ZH_HAN = 150
MAX_LINK_SHARE = 0.5
MIN_SENTENCES = 3  # sentences of >= 6 words (>= 12 Han characters): running text, not an API signature dump
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
# Containers that are navigation in the generators above (class or id, lower case, substring).
NAV_MARKERS = ("sidebar", "related", "navbar", "nav-", "navigation", "breadcrumb", "footer", "header", "toc",
               "menu", "nav_", "searchbox", "skip", "prev-next", "navheader", "navfooter", "bd-sidebar", "headerlink")


# =============================================================================== reading pages


@dataclass
class Page:
    path: str
    source: Source
    html: bytes
    text: str = ""
    words: int = 0
    han: int = 0
    link_share: float = 0.0
    lang: str | None = None
    url: str = ""
    reason: str = ""  # why it is not a good page ("" = good)
    extra: dict = field(default_factory=dict)


def _parse(data: bytes):
    import lxml.html

    try:
        return lxml.html.document_fromstring(data)
    except Exception:  # noqa: BLE001 - an unparsable file is simply not a candidate
        return None


INLINE = frozenset(("span", "a", "em", "strong", "b", "i", "code", "tt", "kbd", "samp", "var", "abbr", "cite",
                    "small", "sup", "sub", "img", "br"))
# The site's own chrome, which a mirror replaces with its own (tables of contents are content).
CHROME_MARKERS = ("sidebar", "related", "navbar", "navigation", "breadcrumb", "footer", "header", "nav_",
                  "navheader", "navfooter", "searchbox", "prev-next")


def _is_nav(el, markers: tuple[str, ...] = NAV_MARKERS) -> bool:
    """Navigation: nav/header/footer elements and block elements marked as navigation (not inline
    spans: LibreOffice marks menu names in running text with class="menuitem")."""
    tag = el.tag if isinstance(el.tag, str) else ""
    if tag in ("nav", "header", "footer", "script", "style", "noscript", "form", "button"):
        return True
    if tag in INLINE:
        return False
    marks = f"{el.get('class', '')} {el.get('id', '')} {el.get('role', '')}".lower()
    return any(m in marks for m in markers)


def main_text(doc) -> tuple[str, float]:
    """The page's visible text without navigation, and the share of it that sits inside links."""
    body = doc.find("body")
    root = body if body is not None else doc
    for el in list(root.iter()):
        if el.getparent() is not None and _is_nav(el):
            el.drop_tree()
    text = " ".join(root.text_content().split())
    linked = sum(len(" ".join((a.text_content() or "").split())) for a in root.iter("a"))
    return text, (linked / len(text) if text else 0.0)


def read_page(path: str, source: Source) -> Page | None:
    data = Path(path).read_bytes()
    doc = _parse(data)
    if doc is None:
        return None
    page = Page(path=path, source=source, html=data)
    page.text, page.link_share = main_text(doc)
    page.words = len(LATIN_WORD.findall(page.text))
    page.han = len(HAN.findall(page.text))
    share = page.han / max(1, page.han + page.words)
    page.lang = "zh" if share >= 0.75 else "en" if share <= 0.02 else "mixed"
    page.url = f"https://{source.host}/{path.removeprefix(source.root)}"
    if page.lang != source.lang:
        page.reason = f"language {page.lang} (Han share {share:.2f})"
    elif source.lang == "en" and page.words < MIN_EN_WORDS:
        page.reason = f"{page.words} words < {MIN_EN_WORDS}"
    elif source.lang == "zh" and page.han < MIN_ZH_HAN:
        page.reason = f"{page.han} Han characters < {MIN_ZH_HAN}"
    elif page.link_share > MAX_LINK_SHARE:
        page.reason = f"navigation: {page.link_share:.0%} of the text is links"
    elif sentences(page.text, source.lang) < MIN_SENTENCES:
        page.reason = f"fewer than {MIN_SENTENCES} sentences of running text (a signature or table dump)"
    return page


def sentences(text: str, lang: str) -> int:
    """Sentences of running text: ending in . ! ? (or 。！？) with >= 6 words (>= 12 Han characters)."""
    n = 0
    for sent in SENTENCE_END.split(text):
        if not sent or sent[-1] not in ".!?。！？":
            continue
        if (len(HAN.findall(sent)) >= 12) if lang == "zh" else (len(LATIN_WORD.findall(sent)) >= 6):
            n += 1
    return n


def shingles(text: str, lang: str) -> set[bytes]:
    if lang == "zh":
        chars = "".join(HAN.findall(text))
        return {chars[i:i + 5].encode() for i in range(max(1, len(chars) - 4))}
    words = [w.lower() for w in LATIN_WORD.findall(text)]
    return {" ".join(words[i:i + 5]).encode() for i in range(max(1, len(words) - 4))}


def pick_good_pages(rng: random.Random, log) -> tuple[list[Page], list[Page]]:
    """(good pages, table-of-contents pages) over all sources, natural near duplicates reduced to one."""
    from datasketch import MinHash, MinHashLSH

    lsh = {"en": MinHashLSH(threshold=0.7, num_perm=128), "zh": MinHashLSH(threshold=0.7, num_perm=128)}
    good: list[Page] = []
    tocs: list[Page] = []
    seen_text: set[str] = set()
    for src in SOURCES:
        paths = sorted(p for p in glob.glob(src.pattern, recursive=True)
                       if os.path.isfile(p) and not any(s in p for s in src.skip))
        rng.shuffle(paths)
        taken = left_out = natural_dups = 0
        for path in paths:
            if taken >= src.cap:
                break
            page = read_page(path, src)
            if page is None:
                continue
            if page.reason:
                left_out += 1
                if page.reason.startswith("navigation") and page.lang == src.lang and len(tocs) < 400:
                    tocs.append(page)
                continue
            key = hashlib.sha1(page.text.encode()).hexdigest()
            mh = MinHash(num_perm=128)
            mh.update_batch(list(shingles(page.text, src.lang)))
            if key in seen_text or lsh[src.lang].query(mh):
                natural_dups += 1
                continue
            seen_text.add(key)
            lsh[src.lang].insert(page.url, mh)
            good.append(page)
            taken += 1
        log(f"  {src.package:26s} {src.lang}  {len(paths):5d} files  {taken:4d} good  "
            f"{left_out:5d} left out  {natural_dups:4d} natural near-duplicates")
    return good, tocs


# =============================================================================== planting


WORD_SWAPS = {"the": "a", "is": "was", "can": "may", "this": "that", "use": "employ", "must": "should",
              "file": "document", "value": "setting", "example": "sample", "default": "standard"}
ZH_SWAPS = {"的": "之", "可以": "能够", "使用": "采用", "文件": "文档", "选择": "选取", "如果": "若", "这个": "此",
            "您": "你", "单击": "点击", "设置": "设定"}
EXTRA_SENTENCES = {"en": "This page was reviewed for accuracy by the documentation team in the last release cycle.",
                   "zh": "本页内容已由文档团队在最近一次发布周期中审校。"}


def _text_nodes(doc):
    """(element, attribute) pairs holding visible text outside navigation and code."""
    out = []
    for el in doc.iter():
        if not isinstance(el.tag, str) or el.tag in ("script", "style", "pre", "code", "title", "head"):
            continue
        if any(_is_nav(a) for a in el.iterancestors()) or _is_nav(el):
            continue
        if el.text and el.text.strip():
            out.append((el, "text"))
        if el.tail and el.tail.strip() and el.getparent() is not None:
            out.append((el, "tail"))
    return out


def word_edits(page: Page, rng: random.Random) -> bytes:
    """A few words swapped or dropped here and there (~3% of text nodes changed)."""
    import lxml.html

    doc = _parse(page.html)
    swaps = ZH_SWAPS if page.source.lang == "zh" else WORD_SWAPS
    nodes = _text_nodes(doc)
    changed = 0
    for el, attr in nodes:
        value = getattr(el, attr)
        if rng.random() > 0.25:
            continue
        for old, new in swaps.items():
            if (old in value) if page.source.lang == "zh" else re.search(rf"\b{old}\b", value):
                value = (value.replace(old, new, 1) if page.source.lang == "zh"
                         else re.sub(rf"\b{old}\b", new, value, count=1))
                changed += 1
                break
        setattr(el, attr, value)
    if not changed and nodes:
        el, attr = nodes[len(nodes) // 2]
        setattr(el, attr, getattr(el, attr) + (" 另见下文。" if page.source.lang == "zh" else " See below."))
    return lxml.html.tostring(doc, encoding="utf-8", doctype="<!DOCTYPE html>")


def sentence_edit(page: Page, rng: random.Random) -> bytes:
    """One sentence added after a paragraph, and the last paragraph's last sentence removed."""
    import lxml.html

    doc = _parse(page.html)
    paras = [p for p in doc.iter("p") if (p.text_content() or "").strip() and not any(_is_nav(a) for a in
                                                                                       p.iterancestors())]
    if paras:
        target = paras[rng.randrange(len(paras))]
        extra = lxml.html.fragment_fromstring(f"<p>{EXTRA_SENTENCES[page.source.lang]}</p>")
        target.addnext(extra)
        last = paras[-1]
        if last.text and re.search(r"[.。]\s*\S", last.text):
            last.text = re.split(r"(?<=[.。])\s*", last.text.strip())[0]
    else:
        body = doc.find("body")
        if body is not None:
            body.append(lxml.html.fragment_fromstring(f"<p>{EXTRA_SENTENCES[page.source.lang]}</p>"))
    return lxml.html.tostring(doc, encoding="utf-8", doctype="<!DOCTYPE html>")


MIRROR_TEMPLATE = """<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title} | DocMirror</title>
<link rel="stylesheet" href="/static/mirror.css"></head>
<body>
<header class="site-header"><a href="/">DocMirror</a> <a href="/projects">Projects</a> <a href="/about">About</a>
<a href="/login">Sign in</a></header>
<nav class="site-nav"><ul><li><a href="/p/1">Getting started</a></li><li><a href="/p/2">Reference</a></li>
<li><a href="/p/3">Tutorials</a></li><li><a href="/p/4">FAQ</a></li><li><a href="/p/5">Downloads</a></li></ul></nav>
<main><article>{content}</article></main>
<aside class="ads"><p>Sponsored: hosting for open-source documentation.</p></aside>
<footer class="site-footer"><p>Mirrored for offline reading. Content licensed by its authors.</p>
<p><a href="/privacy">Privacy</a> | <a href="/terms">Terms</a> | <a href="/contact">Contact</a></p></footer>
</body></html>"""


def _content_html(doc) -> str:
    """The page body without its own navigation, as HTML."""
    import lxml.html

    body = doc.find("body")
    root = body if body is not None else doc
    for el in list(root.iter()):
        if el.getparent() is not None and _is_nav(el, CHROME_MARKERS):
            el.drop_tree()
    return "".join(lxml.html.tostring(c, encoding="unicode") for c in root)


def other_template(page: Page, rng: random.Random) -> bytes:
    """The same content inside another site's template (a mirror with its own header, nav and footer)."""
    doc = _parse(page.html)
    title = (doc.findtext(".//title") or "").strip()
    return MIRROR_TEMPLATE.format(lang=page.source.lang, title=title, content=_content_html(doc)).encode()


def rewrapped(page: Page, rng: random.Random) -> bytes:
    """The same text in other markup: <p> as <div>, <span>s unwrapped, inline styles gone, whitespace
    reflowed. (Classes and ids stay: stripping them is another site template, not a re-wrap.)"""
    import lxml.html

    doc = _parse(page.html)
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue
        el.attrib.pop("style", None)
        if el.tag == "p":
            el.tag = "div"
    for span in list(doc.iter("span")):
        span.drop_tag()
    out = lxml.html.tostring(doc, encoding="unicode", doctype="<!DOCTYPE html>")
    out = re.sub(r">\s+<", ">\n<", out)
    return out.encode()


VARIANTS = (("word_edits", word_edits), ("sentence_edit", sentence_edit), ("other_template", other_template),
            ("rewrapped", rewrapped))


# =============================================================================== junk


LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip "
         "ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu "
         "fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia "
         "deserunt mollit anim id est laborum.")
SPAM_EN = ("cheap replica watches", "best online casino bonus", "buy followers instantly", "payday loans no credit",
           "free slots jackpot", "discount pharmacy online", "win real money now", "lose weight fast pills")
SPAM_ZH = ("网上赌场", "六合彩开奖", "代开发票", "高仿名表", "快速减肥药", "网络兼职日结", "百家乐平台", "刷单返利")


def _page(title: str, body: str, lang: str = "en") -> bytes:
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body>{body}</body></html>").encode()


ENGLISH_STOPWORDS = frozenset("the and of to is in that for with this are be".split())


def _mostly_english(html: bytes) -> bool:
    doc = _parse(html)
    if doc is None:
        return True
    words = [w.lower() for w in LATIN_WORD.findall(main_text(doc)[0])]
    return len(words) > 50 and sum(w in ENGLISH_STOPWORDS for w in words) / len(words) > 0.05


def make_junk(rng: random.Random, tocs: list[Page]) -> list[dict]:
    """40 junk records: what a crawl of documentation sites also brings in."""
    junk: list[dict] = []

    def add(kind: str, lang: str | None, html: bytes, content_type: str = "text/html; charset=utf-8",
            url: str | None = None) -> None:
        junk.append({"url": url or f"https://junk-{len(junk):02d}.example.net/{kind}.html", "html": html,
                     "content_type": content_type, "detail": kind, "lang": lang})

    add("empty", None, b"")
    add("empty", None, _page("", "   \n  "))
    add("empty", None, _page("Untitled", ""))
    add("empty", None, b"<html><head><title>Redirecting</title><meta http-equiv=refresh content='0; url=/'></head>"
                       b"</html>")
    png = next(iter(sorted(glob.glob("/usr/share/doc/**/*.png", recursive=True))), None)
    pdf = next(iter(sorted(glob.glob("/usr/share/doc/linuxcnc/*.pdf"))), None)
    add("binary_png_as_html", None, Path(png).read_bytes()[:200_000] if png else b"\x89PNG\r\n\x1a\n" + bytes(500))
    add("binary_pdf", None, Path(pdf).read_bytes()[:200_000] if pdf else b"%PDF-1.4\n" + bytes(500),
        content_type="application/pdf")
    add("binary_gzip", None, __import__("gzip").compress(b"<html>" + random.Random(2000).randbytes(2000)),
        content_type="application/octet-stream")
    add("binary_noise", None, random.Random(4000).randbytes(4000), content_type="text/html")
    # Navigation-only: real tables of contents (most of their text is links).
    en_tocs = [t for t in tocs if t.source.lang == "en" and t.link_share >= 0.8]
    zh_tocs = [t for t in tocs if t.source.lang == "zh" and t.link_share >= 0.8]
    for t in rng.sample(en_tocs, min(4, len(en_tocs))) + rng.sample(zh_tocs, min(4, len(zh_tocs))):
        add("navigation_only", t.source.lang, t.html, url=t.url)
    for i in range(4):
        body = "".join(f"<h2>Section {j}</h2><p>{LOREM}</p>" for j in range(2 + i))
        add("lorem_ipsum", "en", _page("Lorem ipsum", f"<main>{body}</main>"))
    # Real pages in other languages.
    for package, pattern, lang in OTHER_LANG_PAGES:
        candidates = [p for p in sorted(glob.glob(pattern)) if Path(p).stat().st_size > 6000]
        rng.shuffle(candidates)
        # Translations leave some pages (licence texts, appendices) in English: take one that is not.
        path = next((p for p in candidates if not _mostly_english(Path(p).read_bytes())), None)
        if path:
            add(f"other_language_{lang}", lang, Path(path).read_bytes(),
                url=f"https://www.debian.org/{package}/{lang}/{Path(path).name}")
    # Link spam.
    for i in range(3):
        links = " ".join(f'<a href="https://spam{j}.example/{k}">{w}</a>' for j, w in
                         enumerate(rng.sample(SPAM_EN, 6)) for k in range(3))
        add("link_spam", "en", _page("Best deals online", f"<div>{links}</div><p>{' '.join(SPAM_EN)} "
                                                           f"{' '.join(SPAM_EN)}</p>"))
    for i in range(3):
        links = " ".join(f'<a href="https://spam{j}.example/{k}">{w}</a>' for j, w in
                         enumerate(rng.sample(SPAM_ZH, 6)) for k in range(3))
        add("link_spam", "zh", _page("优惠", f"<div>{links}</div><p>{'，'.join(SPAM_ZH * 3)}</p>", "zh"))
    add("error_page", "en", _page("404 Not Found", "<h1>Not Found</h1><p>The requested URL was not found on this "
                                                  "server.</p><hr><address>Apache Server</address>"))
    add("error_page", "zh", _page("404", "<h1>页面不存在</h1><p>您访问的页面不存在或已被删除。</p><p><a href='/'>返回首页</a></p>",
                                  "zh"))
    add("cookie_wall", "en", _page("Consent", "<div class='consent'><p>We use cookies to improve your experience. "
                                              "By continuing you agree to our cookie policy and privacy policy.</p>"
                                              "<button>Accept all</button><button>Reject</button></div>"))
    add("login_wall", "en", _page("Sign in", "<form><label>Email</label><input name=e><label>Password</label>"
                                             "<input type=password name=p><button>Sign in</button></form>"
                                             "<p><a href='/forgot'>Forgot password?</a></p>"))
    while len(junk) < 40:  # top up with keyword-stuffed pages if a source lacked candidates
        add("keyword_stuffing", "en", _page("cheap cheap cheap", "<p>" + " ".join(rng.choices(SPAM_EN, k=60)) +
                                            "</p>"))
    return junk[:40]


# =============================================================================== writing


def write_warcs(records: list[dict], folder: Path) -> list[Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from web_throughput import write_warcs as write

    return write(records, folder)


def ensure_packages(install: bool) -> None:
    missing = [p for p in PACKAGES
               if subprocess.run(["dpkg", "-s", p], capture_output=True, check=False).returncode != 0]
    if not missing:
        return
    if not install:
        raise SystemExit(f"missing Debian packages: {' '.join(missing)} (rerun with --install, as root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def build(out: Path, seed: int, log=print) -> dict:
    rng = random.Random(seed)
    log("reading documentation packages ...")
    good, tocs = pick_good_pages(rng, log)
    records: list[dict] = []
    truth: list[dict] = []

    def emit(url: str, html: bytes, kind: str, lang: str | None, cluster: str | None, source: str, detail: str,
             content_type: str = "text/html; charset=utf-8") -> None:
        records.append({"url": url, "html": html, "content_type": content_type})
        truth.append({"url": url, "kind": kind, "lang": lang, "cluster": cluster, "source": source, "detail": detail})

    for page in good:
        emit(page.url, page.html, "good", page.source.lang, page.url, page.source.package,
             f"{page.words} words, {page.han} Han")
    # ~8% of each language's good pages get a near copy (the four variants in turn), ~4% an exact copy.
    for lang in ("en", "zh"):
        pages = [p for p in good if p.source.lang == lang]
        rng.shuffle(pages)
        n_near, n_exact = round(len(pages) * 0.08), round(len(pages) * 0.04)
        for i, page in enumerate(pages[:n_near]):
            name, fn = VARIANTS[i % len(VARIANTS)]
            host = "docmirror.example.org" if name == "other_template" else f"mirror{i % 3}.{page.source.host}"
            emit(f"https://{host}/{page.url.split('/', 3)[3]}", fn(page, rng), "near_dup", lang, page.url,
                 page.source.package, name)
        for i, page in enumerate(pages[n_near:n_near + n_exact]):
            emit(f"{page.url}?utm_source=copy{i}", page.html, "exact_dup", lang, page.url, page.source.package,
                 "same bytes, another URL")
    for j in make_junk(rng, tocs):
        emit(j["url"], j["html"], "junk", j["lang"], None, "planted", j["detail"], j["content_type"])
    order = list(range(len(records)))
    rng.shuffle(order)
    if out.exists():
        shutil.rmtree(out)
    write_warcs([records[i] for i in order], out / "crawl")
    summary: dict = {}
    for t in truth:
        key = f"{t['kind']}_{t['lang'] or 'none'}"
        summary[key] = summary.get(key, 0) + 1
    (out / "truth.json").write_text(json.dumps({"seed": seed, "summary": summary, "records": truth}, indent=0,
                                               ensure_ascii=False))
    _write_samples(out / "samples.txt", good, records, truth, rng)
    log(f"wrote {len(records)} records to {out}/crawl: {json.dumps(summary)}")
    return summary


def _write_samples(path: Path, good: list[Page], records: list[dict], truth: list[dict],
                   rng: random.Random) -> None:
    lines = []
    for lang in ("en", "zh"):
        pages = [p for p in good if p.source.lang == lang]
        for p in rng.sample(pages, min(25, len(pages))):
            lines.append(f"== GOOD {lang} {p.url} ({p.words} words, {p.han} Han, links {p.link_share:.0%})\n"
                         f"{p.text[:600]}\n")
    for t in truth:
        if t["kind"] == "junk":
            lines.append(f"== JUNK {t['detail']} {t['url']}")
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--install", action="store_true", help="apt-get install missing documentation packages")
    args = ap.parse_args(argv)
    ensure_packages(args.install)
    build(args.out, args.seed, log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    sys.exit(main())
