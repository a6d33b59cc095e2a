"""HTML extraction engines side by side: resiliparse vs trafilatura, speed and quality, in one run.

Quality: a small labelled set written by hand (EN and ZH articles with known main content, each rendered
in three page layouts full of boilerplate: menus, breadcrumbs, sidebars, tag clouds, comments, cookie
banners, footers). Score = token-level precision / recall / F1 of the extracted text against the known
main content (multiset overlap; tokens are lower-cased latin words/digits and single CJK characters).
With ``--silver DIR`` also on real mdBook pages whose ``<main>`` text is the reference.

Speed: docs/s and MB of HTML/s on one core (one process, one thread; CPU time of the process), for the
full ``extract_html`` path (charset decoding + extraction), over the labelled pages and over any real
pages given with ``--corpus`` (files, folders or globs of .html).

    .venv/bin/python benchmarks/extraction.py
    .venv/bin/python benchmarks/extraction.py --corpus '/usr/share/doc/**/*.html' --silver RBE_DIR --json
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import logging
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass

from skycurate.schemas.web_extract import ExtractConfig
from skycurate.stages.web.extract import extract_html, html_verdict

ENGINES = ("resiliparse", "trafilatura")

# ------------------------------------------------------------------------------------- labelled articles


@dataclass
class Article:
    lang: str
    headline: str
    paragraphs: list[str]
    code: str | None = None         # a <pre> block inside the main content
    bullets: list[str] | None = None  # a <ul> inside the main content


ARTICLES = [
    Article("en", "City library reopens after two-year renovation", [
        "The central library on Harbor Street reopened on Saturday morning after a renovation that took almost "
        "two years and cost the city just over eleven million dollars.",
        "Visitors lined up before the doors opened to see the new reading rooms, which now fill the old "
        "warehouse wing that had been closed to the public since the nineteen seventies.",
        "The head librarian said the building now has three times as many seats for students, a recording "
        "studio that anyone with a library card can book, and a children's floor with its own garden.",
        "Not everyone is pleased. Several residents complained at a council meeting last month that the "
        "renovation removed the old card catalogue cabinets, which many considered part of the town's history.",
        "The library will keep extended opening hours until the end of the summer, closing at ten in the "
        "evening from Monday to Thursday.",
    ]),
    Article("en", "How to make a simple tomato and egg stir fry", [
        "This is the dish I cook when the fridge is almost empty and everyone is hungry. It takes about fifteen "
        "minutes and needs only a handful of ingredients that most kitchens already have.",
        "Start by beating four eggs with a pinch of salt. Cut three ripe tomatoes into wedges, and slice one "
        "spring onion, keeping the white and green parts apart.",
        "Scramble the eggs in hot oil until they are just set, then take them out of the pan. Fry the white "
        "part of the onion for a few seconds, add the tomatoes and let them soften until they release juice.",
        "Return the eggs to the pan, season with a little sugar and soy sauce, and stir gently so the eggs stay "
        "in large soft pieces. Finish with the green onion and serve over rice.",
    ], bullets=["four eggs", "three ripe tomatoes", "one spring onion", "sugar, salt and soy sauce"]),
    Article("en", "Getting started with Python virtual environments", [
        "A virtual environment is a folder that holds its own Python interpreter and its own installed "
        "packages, so that two projects on the same machine can depend on different versions of a library.",
        "Create one with the venv module that ships with Python, then activate it in your shell. While it is "
        "active, the python and pip commands refer to the copies inside the environment.",
        "Keep the environment out of version control. Instead, record the packages your project needs in a "
        "requirements file or in the dependencies section of pyproject.toml, so others can rebuild it.",
        "If something goes wrong, it is usually faster to delete the folder and create a fresh environment "
        "than to repair a broken one by hand.",
    ], code="python -m venv .venv\nsource .venv/bin/activate\npip install requests"),
    Article("en", "Three days on the northern ridge trail", [
        "We started the hike from the village at the end of the valley road, where a small shop sells maps, "
        "bread and the last cold drinks you will see for three days.",
        "The first day climbs steadily through pine forest to a hut beside a lake. The path is well marked, "
        "but the last hour is steep and we were glad to arrive before the afternoon storms.",
        "On the second day the trail follows the ridge above the tree line. The views across both valleys are "
        "spectacular, although there is no water for about six hours, so carry at least two litres each.",
        "The descent on the third day is long and hard on the knees. Walking poles helped a lot, and the bus "
        "back to the station runs only twice a day, so check the timetable before you leave.",
    ]),
    Article("en", "Why leaves change colour in autumn", [
        "Leaves look green for most of the year because they are full of chlorophyll, the pigment plants use "
        "to capture sunlight and turn water and carbon dioxide into sugar.",
        "As days get shorter and nights colder, many trees stop producing chlorophyll and begin to break down "
        "what is left, recovering valuable nitrogen before the leaves fall.",
        "Once the green fades, yellow and orange pigments that were there all along become visible. Red colours "
        "are different: some trees make new red pigments in autumn, especially after sunny days and cool nights.",
        "Scientists still debate why trees spend energy making red pigments just before dropping their leaves. "
        "One idea is that the pigments protect the leaf from strong light while nutrients are withdrawn.",
    ]),
    Article("en", "Review: a commuter bike that gets the basics right", [
        "I rode this bike to work every day for two months, in rain and in one unexpected snowfall, and it "
        "never needed more than a quick wipe and a few drops of chain oil.",
        "The aluminium frame is light enough to carry up the stairs to our flat, and the upright position is "
        "comfortable for short trips, though my back complained after longer weekend rides.",
        "The hub gears shift smoothly even when stopped at traffic lights, which matters more in a city than "
        "having a wide range. The built-in lights run from a dynamo, so there are no batteries to forget.",
        "My main complaint is the saddle, which is too soft and too wide. Replace it, and this is an easy bike "
        "to recommend for anyone who rides a few kilometres a day.",
    ]),
    Article("zh", "市图书馆历时两年翻新后重新开放", [
        "位于海港路的市中心图书馆于周六上午重新开放，此次翻新工程历时近两年，总投资超过一千一百万元。",
        "开馆前，读者已经在门口排起长队，想要参观新建的阅览室。这些阅览室由旧仓库改造而成，该区域自上世纪七十年代起便不再对公众开放。",
        "馆长介绍说，翻新后的图书馆座位数量是原来的三倍，新增了一间持证读者均可预约的录音室，还为儿童专门开辟了带有小花园的楼层。",
        "不过，也有居民表示不满。上个月的议会会议上，几位居民抱怨翻新工程拆除了老式卡片目录柜，他们认为这些柜子是城市历史的一部分。",
        "暑假结束前，图书馆将延长开放时间，周一至周四晚上十点闭馆。",
    ]),
    Article("zh", "家常番茄炒蛋的做法", [
        "冰箱里快空了、全家人又都饿了的时候，我就会做这道菜。整个过程大约十五分钟，用到的材料几乎每家厨房都有。",
        "先把四个鸡蛋打散，加一小撮盐。三个熟透的番茄切成块，一根葱切成葱花，葱白和葱绿分开放。",
        "锅中放油烧热，倒入蛋液炒到刚刚凝固就盛出。用剩下的油把葱白炒香，再放入番茄，翻炒到番茄变软出汁。",
        "把鸡蛋倒回锅中，加少许白糖和生抽调味，轻轻翻拌，让鸡蛋保持大块松软。最后撒上葱绿，浇在米饭上就可以开吃了。",
    ], bullets=["鸡蛋四个", "熟番茄三个", "葱一根", "白糖、盐和生抽"]),
    Article("zh", "Python 虚拟环境入门", [
        "虚拟环境是一个包含独立 Python 解释器和独立第三方库的文件夹，这样同一台机器上的两个项目就可以依赖同一个库的不同版本。",
        "可以使用 Python 自带的 venv 模块创建虚拟环境，然后在终端中激活它。激活之后，python 和 pip 命令都会指向环境内部的副本。",
        "不要把虚拟环境提交到版本控制系统中。应该把项目需要的依赖写进 requirements 文件或者 pyproject.toml 的依赖列表，方便别人重新创建环境。",
        "如果环境出了问题，直接删除文件夹重新创建，通常比手动修复要快得多。",
    ], code="python -m venv .venv\nsource .venv/bin/activate\npip install requests"),
    Article("zh", "黄山三日徒步记", [
        "我们从山谷公路尽头的小村出发，村口的小卖部出售地图、面包，还有接下来三天里能买到的最后一瓶冷饮。",
        "第一天一路穿过松林缓缓爬升，到达湖边的一座小屋。山路标识清楚，但最后一个小时非常陡，好在我们赶在午后雷雨之前到达了。",
        "第二天沿着林线以上的山脊行走，两侧山谷的景色十分壮观。不过大约六个小时都找不到水源，每人至少要带两升水。",
        "第三天的下山路又长又伤膝盖，登山杖帮了大忙。返回车站的班车每天只有两趟，出发前一定要查好时刻表。",
    ]),
    Article("zh", "秋天树叶为什么会变色", [
        "一年中的大部分时间，树叶看起来都是绿色的，因为叶片里充满了叶绿素。植物依靠这种色素吸收阳光，把水和二氧化碳转化为糖分。",
        "随着白天变短、夜晚变冷，许多树木停止合成叶绿素，并开始分解剩余的叶绿素，在落叶之前回收其中宝贵的氮元素。",
        "绿色褪去之后，原本就存在于叶片中的黄色和橙色色素便显露出来。红色则不同，有些树会在秋天重新合成红色色素，尤其是在白天晴朗、夜晚凉爽的时候。",
        "科学家至今仍在争论，树木为什么要在落叶前耗费能量合成红色色素。一种观点认为，这些色素可以在养分回收期间保护叶片免受强光伤害。",
    ]),
    Article("zh", "评测：一辆把基本功做扎实的通勤自行车", [
        "我连续两个月每天骑这辆车上班，经历了雨天，还赶上了一场意外的降雪，它从来只需要简单擦一擦、给链条上几滴油。",
        "铝合金车架足够轻，可以扛上楼梯搬进家门。直立的骑行姿势短途骑行很舒服，不过周末骑得远了，腰背还是会有些酸。",
        "内变速即使在红绿灯前停车时也能顺畅换挡，在城市里这比宽广的齿比范围更实用。车灯由花鼓发电机供电，不用担心忘记换电池。",
        "我最大的不满是车座，又软又宽。换掉车座之后，对于每天骑几公里的人来说，这是一辆很容易推荐的自行车。",
    ]),
]

BOILER = {
    "en": {
        "site": "The Riverside Courier",
        "nav": ["Home", "News", "Local", "Business", "Sport", "Culture", "Food", "Travel", "Science", "Opinion",
                "Podcasts", "Newsletters", "Subscribe", "Sign in"],
        "crumbs": ["Home", "Sections", "Latest stories"],
        "related": ["Council approves new cycle lanes on the east side", "Ten weekend markets worth the early start",
                    "Readers share their favourite winter soups", "School board elects new chair after long vote",
                    "Photo gallery: the harvest festival in pictures", "Weather warning issued for the coast"],
        "tags": ["community", "weekend", "family", "outdoors", "how-to", "reviews", "local news"],
        "cookie": "We use cookies to improve your experience and to show you personalised ads. By continuing "
                  "to browse you agree to our use of cookies. Accept all | Manage settings",
        "newsletter": "Get the best stories in your inbox every morning. Enter your email address and press "
                      "subscribe. You can unsubscribe at any time.",
        "share": ["Share on Facebook", "Share on X", "Email this story", "Print"],
        "comments": ["Great article, thanks for sharing!", "I disagree with the part about the costs, "
                     "it seems far too optimistic to me.", "Does anyone know if this applies outside the city?"],
        "footer": ["About us", "Contact", "Careers", "Advertise with us", "Privacy policy", "Terms of use",
                   "Accessibility"],
        "copyright": "Copyright 2024 The Riverside Courier Media Group. All rights reserved.",
        "comments_title": "Comments (3)", "related_title": "Related stories", "tags_title": "Popular tags",
        "byline": "By Staff Reporter | Updated 12 March 2024, 09:30",
    },
    "zh": {
        "site": "江城日报网",
        "nav": ["首页", "新闻", "本地", "财经", "体育", "文化", "美食", "旅游", "科技", "评论", "视频", "专题",
                "订阅", "登录", "注册"],
        "crumbs": ["首页", "频道", "最新报道"],
        "related": ["东区新建自行车道获议会批准", "十个值得早起的周末集市", "读者分享最爱的冬季汤品",
                    "教育委员会经过漫长投票选出新主席", "图集：丰收节精彩瞬间", "沿海地区发布天气预警"],
        "tags": ["社区", "周末", "家庭", "户外", "教程", "评测", "本地新闻"],
        "cookie": "本网站使用 Cookie 来改善您的浏览体验并向您展示个性化广告。继续浏览即表示您同意我们使用 Cookie。全部接受 | 管理设置",
        "newsletter": "每天早上把最好的文章发送到您的邮箱。输入邮箱地址并点击订阅，您可以随时取消订阅。",
        "share": ["分享到微信", "分享到微博", "复制链接", "打印本文"],
        "comments": ["写得很好，感谢分享！", "关于费用的部分我不太同意，感觉太乐观了。", "请问这个在市外也适用吗？"],
        "footer": ["关于我们", "联系我们", "加入我们", "广告服务", "隐私政策", "使用条款", "网站地图"],
        "copyright": "版权所有 © 2024 江城日报传媒集团 京ICP备12345678号 未经授权禁止转载",
        "comments_title": "网友评论（3）", "related_title": "相关阅读", "tags_title": "热门标签",
        "byline": "来源：本报记者 | 更新时间：2024年3月12日 09:30",
    },
}


def _main_html(a: Article, wrap_p: bool = True) -> str:
    parts = []
    for i, p in enumerate(a.paragraphs):
        parts.append(f"<p>{p}</p>" if wrap_p else f"{p}<br><br>")
        if i == 1 and a.bullets:
            parts.append("<ul>" + "".join(f"<li>{b}</li>" for b in a.bullets) + "</ul>")
        if i == 1 and a.code:
            parts.append(f"<pre><code>{a.code}</code></pre>")
    return "\n".join(parts)


def _links(items: list[str], cls: str = "") -> str:
    return f'<ul class="{cls}">' + "".join(f'<li><a href="/{i}">{t}</a></li>' for i, t in enumerate(items)) + "</ul>"


def render(a: Article, layout: str) -> str:
    """The article inside one of three page layouts: semantic HTML5, div soup, or an old table portal."""
    b = BOILER[a.lang]
    lang = "zh-CN" if a.lang == "zh" else "en"
    head = (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{a.headline} - {b["site"]}'
            f'</title><script>window.dataLayer=[];function track(){{return 1;}}</script>'
            f'<style>body{{font-family:sans-serif}}</style></head>')
    comments = "".join(f'<div class="comment"><span class="user">user{i}</span><p>{c}</p></div>'
                       for i, c in enumerate(b["comments"]))
    if layout == "semantic":
        body = (f'<body><div class="cookie-banner">{b["cookie"]}</div>'
                f'<header><a class="logo" href="/">{b["site"]}</a><nav>{_links(b["nav"], "menu")}</nav></header>'
                f'<nav class="breadcrumb">{" &gt; ".join(b["crumbs"])}</nav>'
                f'<main><article><h1>{a.headline}</h1><div class="byline">{b["byline"]}</div>'
                f'{_main_html(a)}<div class="share">{_links(b["share"])}</div></article>'
                f'<section class="comments"><h3>{b["comments_title"]}</h3>{comments}</section></main>'
                f'<aside><h3>{b["related_title"]}</h3>{_links(b["related"])}<h3>{b["tags_title"]}</h3>'
                f'{_links(b["tags"], "tags")}<div class="newsletter">{b["newsletter"]}</div></aside>'
                f'<footer>{_links(b["footer"])}<p>{b["copyright"]}</p></footer></body></html>')
    elif layout == "divsoup":
        body = (f'<body><div id="top"><div class="logo">{b["site"]}</div>{_links(b["nav"], "menu")}</div>'
                f'<div class="wrapper"><div class="left-col">{_links(b["related"])}</div>'
                f'<div class="content-body"><h2 class="post-title">{a.headline}</h2>'
                f'<div class="meta">{b["byline"]}</div><div class="entry">{_main_html(a, wrap_p=False)}</div>'
                f'<div class="share-box">{" | ".join(b["share"])}</div>'
                f'<div id="comments"><h4>{b["comments_title"]}</h4>{comments}</div></div>'
                f'<div class="right-col"><div class="widget"><h4>{b["tags_title"]}</h4>{_links(b["tags"])}</div>'
                f'<div class="widget">{b["newsletter"]}</div></div></div>'
                f'<div class="bottom">{" | ".join(b["footer"])}<br>{b["copyright"]}</div>'
                f'<div class="cookie">{b["cookie"]}</div></body></html>')
    elif layout == "table":
        body = (f'<body><table width="100%"><tr><td colspan="2" class="nav">{" | ".join(b["nav"])}</td></tr>'
                f'<tr><td width="22%" valign="top">{b["related_title"]}{_links(b["related"])}'
                f'{b["tags_title"]}{_links(b["tags"])}</td><td valign="top"><font size="5"><b>{a.headline}</b>'
                f'</font><br>{b["byline"]}<br>{_main_html(a)}<hr>{b["comments_title"]}{comments}</td></tr>'
                f'<tr><td colspan="2" align="center">{" | ".join(b["footer"])}<br>{b["copyright"]}</td></tr>'
                f'</table></body></html>')
    else:
        raise ValueError(layout)
    return head + body


LAYOUTS = ("semantic", "divsoup", "table")


def truth(a: Article) -> str:
    return "\n".join([a.headline, *a.paragraphs, *(a.bullets or []), *(a.code.splitlines() if a.code else [])])


def labelled_pages() -> list[tuple[str, str, str]]:
    """(name, html, reference text) for every article in every layout."""
    return [(f"{a.lang}/{i}/{layout}", render(a, layout), truth(a))
            for i, a in enumerate(ARTICLES) for layout in LAYOUTS]


# ---------------------------------------------------------------------------------------------- scoring

_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+")


def tokens(text: str) -> collections.Counter:
    return collections.Counter(t.lower() for t in _TOKEN.findall(text or ""))


def intact(extracted: str, reference: str) -> float:
    """Share of reference paragraphs found whole on one line of the output (paragraph breaks kept as lines)."""
    lines = {" ".join(line.split()).lstrip("-\u2022* ") for line in extracted.splitlines()}
    paras = [" ".join(p.split()) for p in reference.splitlines() if p.strip()]
    return sum(p in lines for p in paras) / len(paras) if paras else 0.0


def prf(extracted: str, reference: str) -> tuple[float, float, float]:
    got, want = tokens(extracted), tokens(reference)
    overlap = sum((got & want).values())
    p = overlap / sum(got.values()) if got else 0.0
    r = overlap / sum(want.values()) if want else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def silver_pages(root: str, limit: int) -> list[tuple[str, str, str]]:
    """Real mdBook pages (e.g. Rust By Example, EN and ZH): the text of ``<main>`` is the reference."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    out: dict[str, list[tuple[str, str, str]]] = {"en": [], "zh": []}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.html"), recursive=True)):
        html = open(path, "rb").read().decode("utf-8", "replace")
        tree = HTMLTree.parse(html)
        main = tree.body.query_selector("main") if tree.body else None
        rel = os.path.relpath(path, root)
        first = rel.split(os.sep)[0]
        if main is None or "print.html" in path or (len(first) == 2 and first != "zh"):  # EN root + zh/ only
            continue
        ref = extract_plain_text(main.html, preserve_formatting=True, main_content=False)
        if len(tokens(ref)) < 50:
            continue
        lang = "zh" if first == "zh" else "en"
        if len(out[lang]) < limit // 2:
            out[lang].append((rel, html, ref))
    return out["en"] + out["zh"]


# ------------------------------------------------------------------------------------------------- runs

def quality(pages: list[tuple[str, str, str]], engine: str) -> dict:
    cfg = ExtractConfig(engine=engine)
    per_lang: dict[str, list[tuple[float, ...]]] = collections.defaultdict(list)
    worst = []
    for name, html, ref in pages:
        text, _, _ = extract_html(html.encode("utf-8"), "text/html; charset=utf-8", cfg)
        score = (*prf(text, ref), intact(text, ref))
        lang = "zh" if "/zh/" in f"/{name}" else "en"
        per_lang[lang].append(score)
        per_lang["all"].append(score)
        worst.append((score[2], name))
    metrics = ("precision", "recall", "f1", "lines_intact")
    summary = {k: {m: round(statistics.mean(s[i] for s in v), 3) for i, m in enumerate(metrics)}
               for k, v in per_lang.items()}
    summary["worst"] = sorted(worst)[:3]
    return summary


def speed(pages: list[bytes], engine: str, repeat: int) -> dict:
    cfg = ExtractConfig(engine=engine)
    total = sum(map(len, pages)) * repeat
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        for data in pages:
            if html_verdict("text/html", data) is None:
                extract_html(data, "text/html", cfg)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = len(pages) * repeat
    return {"docs": n, "mb": round(total / 1e6, 2), "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "docs_per_s_core": round(n / cpu, 1), "mb_per_s_core": round(total / 1e6 / cpu, 2)}


def corpus_files(patterns: list[str], limit: int) -> list[bytes]:
    paths: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "**", "*.htm*")
        paths.extend(p for p in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(p))
    paths = sorted(set(paths))
    step = max(1, len(paths) // limit) if limit else 1
    return [open(p, "rb").read() for p in paths[::step][:limit or None]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", action="append", default=[], help="real HTML pages for speed (files/folders/globs)")
    ap.add_argument("--corpus-limit", type=int, default=1000, help="at most this many corpus pages (spread evenly)")
    ap.add_argument("--silver", help="an mdBook site (e.g. Rust By Example): <main> text is the reference")
    ap.add_argument("--silver-limit", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=5, help="passes over the labelled pages for the speed figure")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)  # trafilatura logs a line per page it finds hard

    labelled = labelled_pages()
    results: dict = {"labelled_pages": len(labelled), "engines": {}}
    corpus = corpus_files(args.corpus, args.corpus_limit) if args.corpus else []
    silver = []
    if args.silver:
        silver = silver_pages(args.silver, args.silver_limit)
    results["corpus_pages"] = len(corpus)
    results["silver_pages"] = len(silver)
    for engine in ENGINES:
        r: dict = {"quality_labelled": quality(labelled, engine)}
        if silver:
            r["quality_silver"] = quality(silver, engine)
        r["speed_labelled"] = speed([h.encode() for _, h, _ in labelled], engine, args.repeat)
        if corpus:
            r["speed_corpus"] = speed(corpus, engine, 1)
        results["engines"][engine] = r
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    print(f"labelled pages: {len(labelled)}; silver pages: {len(silver)}; corpus pages: {len(corpus)}")
    print(f"{'engine':<12} {'set':<9} {'lang':<4} {'P':>6} {'R':>6} {'F1':>6} {'intact':>7}")
    for engine, r in results["engines"].items():
        for key in ("quality_labelled", "quality_silver"):
            for lang in ("en", "zh", "all"):
                if key in r and lang in r[key]:
                    q = r[key][lang]
                    print(f"{engine:<12} {key[8:]:<9} {lang:<4} {q['precision']:>6.3f} {q['recall']:>6.3f} "
                          f"{q['f1']:>6.3f} "
                          f"{q['lines_intact']:>7.3f}")
    print(f"{'engine':<12} {'set':<9} {'docs':>6} {'MB':>7} {'docs/s/core':>12} {'MB/s/core':>10}")
    for engine, r in results["engines"].items():
        for key in ("speed_labelled", "speed_corpus"):
            if key in r:
                s = r[key]
                print(f"{engine:<12} {key[6:]:<9} {s['docs']:>6} {s['mb']:>7} {s['docs_per_s_core']:>12} "
                      f"{s['mb_per_s_core']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
