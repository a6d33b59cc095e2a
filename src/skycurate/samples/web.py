"""A small built-in crawl for the demo and the tests: mixed English and Chinese pages with site
boilerplate, exact and near duplicates, spam, PII, blocklisted sites and a few broken records.

Generated (deterministically, from a seed) rather than shipped, so the repository stays small and
tests can ask for exactly the cases they need. ``write_sample_crawl`` returns what it planted,
so tests can check the pipeline found it.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

EN_PARAGRAPHS = [
    "The Yangtze is the longest river in Asia and the third longest in the world. It flows for more than six thousand kilometres from the glaciers of the Tibetan Plateau to the East China Sea, and its basin is home to roughly a third of the population of China.",
    "Tea was first cultivated in the southwest of China, and for centuries it travelled along caravan routes to Tibet, Central Asia and eventually Europe. The way the leaves are processed after picking decides whether they become green, oolong or black tea.",
    "A suspension bridge carries its deck on vertical hangers attached to main cables, which are anchored at each end of the bridge. Because the cables work in tension, the design can span far greater distances than an arch or a beam of the same weight.",
    "Photosynthesis converts light energy into chemical energy stored in sugars. In plants it takes place in the chloroplasts, where chlorophyll absorbs mostly blue and red light and reflects green, which is why leaves look green to us.",
    "The printing press spread quickly across Europe in the second half of the fifteenth century. Within fifty years, presses in more than two hundred cities had produced millions of books, and the price of a book fell to a fraction of that of a handwritten copy.",
    "Volcanic islands form where magma rises through the ocean crust. Hawaii sits above a hotspot in the middle of the Pacific plate, and as the plate moves slowly to the northwest, a chain of older and more eroded islands is left behind.",
    "Bread rises because yeast ferments sugars in the dough and releases carbon dioxide. Kneading develops gluten, a network of proteins that traps the gas, so that the loaf expands in the oven instead of collapsing.",
    "The human heart pumps about five litres of blood per minute at rest. Valves between its four chambers keep the blood moving in one direction, and the rhythm is set by a small cluster of cells known as the sinoatrial node.",
    "Honeybees communicate the direction and distance of food with a waggle dance. The angle of the dance relative to vertical on the comb matches the angle between the sun and the flowers, and the length of the waggle tells how far to fly.",
    "Glaciers carve U shaped valleys as they grind slowly downhill, carrying rocks that scrape the bedrock beneath them. When the climate warms and the ice retreats, it leaves behind lakes, moraines and boulders far from where they started.",
    "Compilers translate source code into machine instructions in several passes. A parser builds a syntax tree, later passes check types and optimise the program, and the final pass allocates registers and emits code for the target processor.",
    "The Great Wall was built and rebuilt over many dynasties, and most of what visitors see today dates from the Ming period. It was less a single wall than a system of walls, watchtowers, garrisons and signal stations across northern China.",
    "Coral reefs grow where warm, clear and shallow water lets sunlight reach the algae living inside coral tissue. The algae supply most of the coral's food, and when the water becomes too warm the coral expels them and turns white.",
    "Railway gauges differ between countries for historical reasons, which is why trains crossing some borders must change their wheel sets. The standard gauge of one thousand four hundred and thirty five millimetres is used on about half of the world's lines.",
    "A lunar eclipse happens when the Earth passes directly between the Sun and the Moon. The Moon often turns a deep red colour, because the only sunlight reaching it has been bent and filtered through the atmosphere of the Earth.",
    "Paper money was first used widely in China during the Song dynasty, when merchants found strings of copper coins too heavy to carry over long distances. The government later took over the printing of notes to control the supply.",
    "Migratory birds navigate using the position of the sun, the pattern of the stars and the magnetic field of the Earth. Young birds of some species make their first long journey alone and still reach wintering grounds they have never seen.",
    "Concrete gains strength slowly as cement reacts with water, a process that continues for weeks after it is poured. Builders keep fresh concrete damp while it cures, because drying too fast leaves it weaker and full of small cracks.",
]

ZH_PARAGRAPHS = [
    "长江是亚洲第一长河，也是世界第三长河。它发源于青藏高原的冰川，向东流经十一个省级行政区，最后注入东海，流域内生活着全国约三分之一的人口。",
    "茶最早在中国西南地区被人工栽培，后来沿着茶马古道和丝绸之路传到西藏、中亚，最终到达欧洲。采摘之后的加工方式决定了茶叶成为绿茶、乌龙茶还是红茶。",
    "悬索桥依靠主缆和吊索承受桥面的重量，主缆的两端牢牢锚固在岸边。由于主缆只承受拉力，这种结构可以跨越比拱桥或梁桥大得多的距离。",
    "光合作用把光能转化为储存在糖类中的化学能。在植物体内，这个过程发生在叶绿体中，叶绿素主要吸收蓝光和红光而反射绿光，所以叶子看起来是绿色的。",
    "活字印刷术在宋代由毕昇发明，他用胶泥刻字，排版之后可以反复使用。这项技术大大降低了印书的成本，让更多的人有机会读到书籍。",
    "火山岛是岩浆穿过海洋地壳喷发堆积而成的。夏威夷位于太平洋板块中部的热点之上，随着板块缓慢地向西北移动，身后留下了一串越来越古老的岛屿。",
    "面包之所以能够发酵膨胀，是因为酵母分解面团中的糖分并释放二氧化碳。揉面可以形成面筋网络，把气体包裹在里面，使面包在烤箱中长高而不塌陷。",
    "人的心脏在安静状态下每分钟大约泵出五升血液。四个腔室之间的瓣膜保证血液只向一个方向流动，而心跳的节律由窦房结中的一小群细胞控制。",
    "蜜蜂通过摇摆舞告诉同伴食物的方向和距离。舞蹈在蜂巢上相对竖直方向的角度，对应着太阳与花丛之间的夹角，摇摆的时间越长，表示飞行的距离越远。",
    "冰川在缓慢向下移动的过程中不断磨蚀谷底，塑造出宽阔的U形谷。气候变暖、冰川退缩之后，会留下湖泊、冰碛和远离原地的巨大漂砾。",
    "编译器分几个阶段把源代码翻译成机器指令。语法分析器先构建语法树，随后的阶段进行类型检查和优化，最后一个阶段分配寄存器并生成目标处理器的代码。",
    "万里长城经过许多朝代的修建和重建，今天游客看到的大部分城墙建于明代。它不是一道单独的墙，而是由城墙、敌楼、关隘和烽火台组成的防御体系。",
    "珊瑚礁生长在温暖、清澈而且较浅的海水中，阳光可以照到生活在珊瑚组织里的藻类。藻类为珊瑚提供大部分养分，海水过热时珊瑚会排出藻类而变白。",
    "北宋时期，四川的商人发现铁钱太重，不便于长途携带，于是出现了交子，这是世界上最早的纸币之一。后来官府接管了交子的发行，以控制货币的数量。",
    "月食发生在地球运行到太阳和月亮之间的时候。月亮常常会变成暗红色，因为唯一能照到它的阳光经过了地球大气层的折射和过滤。",
    "候鸟依靠太阳的位置、星空的图案和地球磁场来辨别方向。有些种类的幼鸟第一次迁徙时独自飞行，仍然能够到达它们从未见过的越冬地。",
    "混凝土在浇筑之后的几个星期里，随着水泥与水的反应不断变得坚固。施工人员会让新浇的混凝土保持湿润，因为干得太快会让它强度降低并出现细小的裂缝。",
    "大运河北起北京，南到杭州，全长一千七百多公里，是世界上最长的人工运河。它连接了海河、黄河、淮河、长江和钱塘江五大水系，曾经是南粮北运的主要通道。",
]

SITES = {
    "en": [("www.riverwiki.example", "River Wiki"), ("science-notes.example.org", "Science Notes")],
    "zh": [("baike.example.cn", "百科知识"), ("www.kepu.example.com.cn", "科普中国")],
}
NAV = {
    "en": ["Home | About | Contact | Privacy policy", "Sign in to save your reading list",
           "Related articles", "© 2024 {site}. All rights reserved.", "Share this page on social media"],
    "zh": ["首页 | 关于我们 | 联系我们 | 隐私政策", "登录后可以收藏文章", "相关文章推荐",
           "© 2024 {site} 版权所有", "扫描二维码关注我们的公众号"],
}
SPAM_KEYWORDS = ["casino bonus", "replica watches"]
BLOCKED_DOMAIN = "spam-casino.example"


@dataclass
class SampleCrawl:
    """What was written and what was planted in it."""

    root: Path
    inputs: Path
    positives: Path
    negatives: Path
    url_blocklist: Path
    keyword_blocklist: Path
    exact_duplicates: dict[str, list[str]] = field(default_factory=dict)   # url -> urls of copies
    near_duplicates: dict[str, list[str]] = field(default_factory=dict)
    records: int = 0             # input documents written (readable or not)
    broken: int = 0              # records written broken on purpose


def _page(title: str, paragraphs: list[str], lang: str, site: str, extra: str = "") -> str:
    nav = NAV.get(lang, NAV["en"])
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title></head>'
            f'<body><nav><a href="/">{nav[0]}</a></nav><div class="login">{nav[1]}</div>'
            f"<main><article><h1>{title}</h1>\n{body}\n{extra}<p>{nav[4]}</p></article></main>"
            f"<aside><h3>{nav[2]}</h3><ul><li><a href='/a'>{nav[2]} 1</a></li></ul></aside>"
            f"<footer><p>{nav[3].format(site=site)}</p><p>{nav[4]}</p></footer></body></html>")


def _edit(text: str, rng: random.Random, lang: str) -> str:
    """A small edit that keeps the document a near-duplicate."""
    if lang == "zh":
        pos = rng.randrange(len(text) // 2, len(text) - 2)
        return text[:pos] + "据报道，" + text[pos:]
    words = text.split(" ")
    pos = rng.randrange(1, len(words) - 1)
    words[pos] = rng.choice(["remarkable", "ancient", "famous", "narrow"])
    return " ".join(words)


def _warc(records: list[tuple[str, bytes, str]]) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for url, payload, ctype in records:
        headers = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(payload),
                                                      http_headers=headers))
    return buf.getvalue()


def write_sample_crawl(out: str | Path, seed: int = 7) -> SampleCrawl:
    rng = random.Random(seed)
    root = Path(out)
    inputs = root / "crawl"
    (inputs / "pages").mkdir(parents=True, exist_ok=True)
    sample = SampleCrawl(root=root, inputs=inputs, positives=root / "quality" / "positive.jsonl",
                         negatives=root / "quality" / "negative.jsonl",
                         url_blocklist=root / "blocklists" / "domains.txt",
                         keyword_blocklist=root / "blocklists" / "keywords.txt")

    warc_records: list[tuple[str, bytes, str]] = []
    pages: list[tuple[str, str, str]] = []  # (url, html, lang)
    for lang, paragraphs in (("en", EN_PARAGRAPHS), ("zh", ZH_PARAGRAPHS)):
        for i in range(14):
            site, site_name = SITES[lang][i % 2]
            # Rotate through the paragraphs so no real paragraph recurs as often as boilerplate does.
            chosen = [paragraphs[(i + k * 5) % len(paragraphs)] for k in range(3)]
            title = chosen[0][:8] if lang == "zh" else " ".join(chosen[0].split()[:4])
            url = f"https://{site}/article/{lang}-{i}"
            pages.append((url, _page(title, chosen, lang, site_name), lang))
            if i < 3:  # exact copies under another URL (mirrors, tracking parameters)
                copy = f"{url}?utm_source=feed"
                pages.append((copy, _page(title, chosen, lang, site_name), lang))
                sample.exact_duplicates[url] = [copy]
            elif i < 6:  # near duplicates: one small edit in each copy
                copies = []
                for k in range(2 if i % 2 else 1):
                    near = f"https://mirror{k}.{site}/{lang}-{i}"
                    edited = [chosen[0], _edit(chosen[1], rng, lang), chosen[2]]
                    pages.append((near, _page(title, edited, lang, site_name), lang))
                    copies.append(near)
                sample.near_duplicates[url] = copies

    # Spam and low quality.
    pages.append(("https://shop.example/deals", _page("Deals", [
        " ".join(["Buy now!"] * 40), "casino bonus casino bonus replica watches cheap cheap cheap"] * 2, "en",
        "Shop"), "en"))
    pages.append((f"https://{BLOCKED_DOMAIN}/win", _page("Win big", [EN_PARAGRAPHS[0], EN_PARAGRAPHS[1]], "en",
                                                          "Casino"), "en"))
    pages.append(("https://lorem.example/page", _page("Lorem", ["Lorem ipsum dolor sit amet, consectetur "
                                                                "adipiscing elit. " * 8], "en", "Lorem"), "en"))
    pages.append(("https://fr.example/article", _page("Le Rhône", [
        "Le Rhône prend sa source dans le glacier du Rhône, dans les Alpes suisses, et se jette dans la mer "
        "Méditerranée après avoir traversé le lac Léman et la ville de Lyon. Son débit est l'un des plus "
        "importants de tous les fleuves qui se jettent dans cette mer."] * 2, "fr", "Fleuves"), "fr"))
    bullets = "".join(f"<li>• Top {k} product deal of the week, limited offer</li>" for k in range(40))
    pages.append(("https://deals.example.org/list", _page("Top deals", [], "en", "Deals", extra=f"<ul>{bullets}</ul>"),
                  "en"))
    pages.append(("https://baike.example.cn/repeat", _page("重复", [
        "点击这里领取优惠券，今天下单立减五十元，数量有限先到先得。"] * 12, "zh", "百科知识"), "zh"))
    contact = (EN_PARAGRAPHS[7] + " For questions write to editor@riverwiki.example or call +1 415 555 0134. "
               "Our mirror server is at 192.168.10.25.")
    pages.append(("https://www.riverwiki.example/contact-heart", _page("Heart", [contact, EN_PARAGRAPHS[8]], "en",
                                                                       "River Wiki"), "en"))
    pages.append(("https://baike.example.cn/lianxi", _page("联系", [
        ZH_PARAGRAPHS[7] + "如有疑问请拨打13812345678或发送邮件至service@baike.example.cn。", ZH_PARAGRAPHS[8]],
        "zh", "百科知识"), "zh"))
    pages.append(("https://www.riverwiki.example/empty", "<html><head><title>Empty</title></head><body>"
                                                          "<nav>Home</nav></body></html>", "en"))

    for url, html, _ in pages:
        warc_records.append((url, html.encode("utf-8"), "text/html; charset=utf-8"))
    warc_records.append(("https://science-notes.example.org/paper.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
                         "application/pdf"))
    half = len(warc_records) // 2
    (inputs / "crawl-00000.warc.gz").write_bytes(_warc(warc_records[:half]))
    (inputs / "crawl-00001.warc.gz").write_bytes(_warc(warc_records[half:]))
    sample.records += len(warc_records)

    # A truncated WARC: two good records, then the stream is cut.
    tail = [(f"https://science-notes.example.org/late-{k}",
             _page("Late", [EN_PARAGRAPHS[10 + k], EN_PARAGRAPHS[13 + k]], "en", "Science Notes").encode(),
             "text/html") for k in range(4)]
    whole = _warc(tail)
    first_two = len(_warc(tail[:2]))
    # Cut 60 bytes into the third record: records 3 and 4 are lost, reported as one quarantine row.
    (inputs / "crawl-00002-truncated.warc.gz").write_bytes(whole[: first_two + 60])
    sample.records += 3  # two readable records + one quarantine row for the cut-off rest
    sample.broken += 1

    # Loose HTML files, one of them GBK-encoded with the charset only in <meta>.
    gbk_page = _page("大运河", [ZH_PARAGRAPHS[17], ZH_PARAGRAPHS[16]], "zh", "科普中国").replace(
        'charset="utf-8"', 'charset="gbk"')
    (inputs / "pages" / "grand-canal.html").write_bytes(gbk_page.replace("©", "(c)").encode("gbk"))
    (inputs / "pages" / "eclipse.html").write_text(_page("Eclipse", [EN_PARAGRAPHS[14], EN_PARAGRAPHS[16]], "en",
                                                         "Science Notes"), encoding="utf-8")
    sample.records += 2

    # JSONL (zstd) with html records, text records and broken lines.
    import zstandard

    lines = [
        json.dumps({"url": "https://science-notes.example.org/railways",
                    "html": _page("Railways", [EN_PARAGRAPHS[13], EN_PARAGRAPHS[17]], "en", "Science Notes")}),
        json.dumps({"url": "https://baike.example.cn/yueshi", "text": ZH_PARAGRAPHS[14] + "\n" + ZH_PARAGRAPHS[15]
                    + "\n" + ZH_PARAGRAPHS[10]}, ensure_ascii=False),
        '{"url": "https://broken.example/1", "html": "<p>cut off',
        json.dumps({"url": "https://broken.example/2", "html": 42}),
    ]
    payload = ("\n".join(lines) + "\n").encode("utf-8") + b'{"url": "https://broken.example/3", "text": "\xff\xfe"}\n'
    (inputs / "feed.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(payload))
    sample.records += 5
    sample.broken += 3

    # Quality-classifier training data: reference-style paragraphs vs random-crawl junk.
    (root / "quality").mkdir(exist_ok=True)
    positives = [p for p in EN_PARAGRAPHS + ZH_PARAGRAPHS]
    positives += [a + " " + b for a, b in zip(EN_PARAGRAPHS, EN_PARAGRAPHS[1:])]
    positives += [a + b for a, b in zip(ZH_PARAGRAPHS, ZH_PARAGRAPHS[1:])]
    junk_words = ["click", "here", "free", "download", "login", "best", "price", "cheap", "sale", "now", "win",
                  "免费", "下载", "点击", "登录", "优惠", "抽奖", "最低价", "包邮", "注册", "立即"]
    negatives = [" ".join(rng.choice(junk_words) for _ in range(rng.randint(6, 30))) for _ in range(len(positives))]
    sample.positives.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in positives),
                                encoding="utf-8")
    sample.negatives.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in negatives),
                                encoding="utf-8")

    (root / "blocklists").mkdir(exist_ok=True)
    sample.url_blocklist.write_text(f"# domains never to keep\n{BLOCKED_DOMAIN}\n")
    sample.keyword_blocklist.write_text("# spam keywords\n" + "\n".join(SPAM_KEYWORDS) + "\n")
    return sample
