"""Near-duplicate detection quality: skycurate's Spark MinHash LSH vs datasketch MinHashLSH.

No data can be downloaded here, so the labelled set is built from real text found on disk:
English sentences from the docstrings of the installed Python packages, Chinese sentences
from the zh_CN manual pages, the Chinese Vim tutor and Vim's Chinese messages (with a
built-in fallback). Base documents recombine sentences; a share of them come in "template
families" that share a boilerplate block (hard negatives, true Jaccard ~0.2-0.5). Each
cluster is a base document plus variants made by small edits: word (character) insert,
delete and substitute, sentence swap, an appended boilerplate line, punctuation and case
changes. Edits are applied until the variant's true Jaccard with its base reaches a target
drawn uniformly from [--min-jaccard, 1] (default 0.75, above the default preset's 0.72).

Both methods see the same shingles (word 5-grams, Chinese character 5-grams), the same
bands x rows and the same verification rule (datasketch: ``MinHash.jaccard`` of every pair
``MinHashLSH.query`` returns, then union-find); the reference shingler is checked against
skycurate's own shingle sets. ``--configs`` runs several configs on the same corpus (default:
the ``default`` preset and the ``datatrove`` one, 14 x 8 without verification).

Metrics, for English, Chinese and overall:
- pairwise: precision and recall of same-cluster document pairs;
- per document, text-dedup's ``classify_prediction`` (benchmarks/utils.py): a document is a
  TP if its predicted cluster-mates include all its true duplicates, FP if it has predicted
  cluster-mates otherwise, FN if it has true duplicates but no predicted cluster-mate;
- per document, CORE paper style (Gyawali et al. 2020): TP if it has true duplicates and
  any predicted cluster-mate.
The goal (precision >= 0.96, recall >= 0.95) is read on the pairwise and text-dedup rows.

Usage: .venv/bin/python benchmarks/minhash_quality.py [--n 4000] [--quick] [--configs default,datatrove]
"""

from __future__ import annotations

import argparse
import glob
import gzip
import os
import random
import re
import sys
import sysconfig
import time
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pyarrow as pa
import regex

os.environ.setdefault("SKYCURATE_SPARK_MASTER", "local[2]")

# ----------------------------------------------------------------------------- source text

ZH_FALLBACK = [
    "长江是亚洲第一长河，也是世界第三长河。", "它发源于青藏高原的冰川，最后在上海注入东海。",
    "长江流域居住着全国近三分之一的人口。", "三峡大坝是世界上装机容量最大的水电站。",
    "每天用等量的面粉和水喂养酵头，放在室温下。", "大约一周以后，酵头会在几个小时内体积翻倍。",
    "这个函数返回一个新的列表，原来的列表保持不变。", "如果配置文件不存在，程序会使用默认设置。",
    "请在提交之前运行全部测试，确保没有失败的用例。", "数据集的每个版本都写入一个新的目录，发布后不再修改。",
    "城市的公共交通系统在早晚高峰时非常拥挤。", "图书馆周末开放到晚上九点，节假日另行通知。",
    "研究人员在山区发现了一种新的植物。", "这家工厂去年的产量比前年提高了百分之二十。",
    "孩子们在公园里放风筝，老人们在树下下棋。", "会议讨论了明年的预算和人员安排。",
    "天气预报说明天有大雨，出门记得带伞。", "这本书介绍了中国古代的科学技术成就。",
    "医生建议他每天散步半小时，少吃油腻的食物。", "新的铁路线开通以后，两地之间只需要两个小时。",
]
ZH_SUBJECTS = "我们 学生们 这家公司 研究小组 当地政府 许多家庭 年轻的工程师 老师 市场 农民 作者 用户".split()
ZH_TIMES = "今天 去年 最近 每天早上 上个月 在周末 多年来 明年 刚才 每到冬天".split()
ZH_VERBS = "讨论了 完成了 改进了 检查了 记录了 介绍了 发布了 参观了 保护了 选择了 准备了 研究了".split()
ZH_OBJECTS = ("新的计划 河边的公园 城市的交通 学校的图书馆 山区的道路 工厂的设备 海边的村庄 传统的节日 "
              "网站的内容 历史博物馆 农村的学校 火车站附近的市场 一本旧书 软件的文档").split()
ZH_TAILS = "，大家都很满意。 ，结果比预期好。 ，还需要进一步改进。 ，引起了广泛关注。 。 ，并写了一份报告。".split()

EN_BOILERPLATE = [
    "Share this article on Twitter and Facebook.", "Copyright 2024 Example Media. All rights reserved.",
    "Subscribe to our newsletter for weekly updates.", "This page was last edited on 3 March 2024.",
    "Click here to read more stories like this one.", "Sign in to leave a comment.",
]
ZH_BOILERPLATE = ["本文来源：网络，如有侵权请联系删除。", "版权所有，未经许可不得转载。", "点击这里阅读更多精彩内容。",
                  "欢迎关注我们的公众号。", "责任编辑：小王", "本页最后更新于二零二四年三月三日。"]
ZH_EDIT_CHARS = (  # common characters: what a substitution or insertion puts in
    "的一是了在人有我他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小"
    "么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知"
    "民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间"
    "新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼"
    "体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或"
    "司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认"
    "算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运"
    "武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取"
    "设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观"
    "争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲布杀微怕母调局根曾准团段终乐切级克精哪官示冷域"
)


def english_sentences(limit: int = 60_000) -> list[str]:
    """Sentences from the docstrings of the installed packages (deterministic order)."""
    site = sysconfig.get_paths()["purelib"]
    doc_re = re.compile(r'"""(.*?)"""', re.S)
    code_like = re.compile(r">>>|::|^\s*[-*]\s|\w+\s*\(.*\)\s*$|[=<>{}\[\]_]", re.M)
    out: dict[str, None] = {}
    for path in sorted(glob.glob(os.path.join(site, "**", "*.py"), recursive=True)):
        try:
            src = open(path, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError):
            continue
        for m in doc_re.finditer(src):
            text = re.sub(r":\w+:`([^`]*)`", r"\1", m.group(1)).replace("``", "")
            for para in re.split(r"\n\s*\n", text):
                if code_like.search(para):
                    continue
                for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(para.split())):
                    w = s.split()
                    if (8 <= len(w) <= 40 and s[0].isupper() and s[-1] in ".!?"
                            and sum(x.strip(".,;:'\"").isalpha() for x in w) >= 0.85 * len(w)):
                        out[s] = None
        if len(out) >= limit:
            break
    return list(out)


def chinese_sentences() -> list[str]:
    """Chinese sentences from zh_CN man pages, the Vim tutor and Vim's messages, plus built-ins."""
    import gettext

    han = re.compile(r"[\u4e00-\u9fff]")
    out: dict[str, None] = {}

    def add(text: str) -> None:
        for s in re.split(r"(?<=[。！？；])|\n", text):
            s = s.strip()
            if len(s) >= 8 and len(han.findall(s)) >= 0.5 * len(s):
                out[s if s[-1] in "。！？；" else s + "。"] = None

    for path in sorted(glob.glob("/usr/share/man/zh_CN/*/*.gz")):
        try:
            text = gzip.open(path, "rt", encoding="utf-8", errors="ignore").read()
        except OSError:
            continue
        text = "\n".join(line for line in text.splitlines() if not line.startswith("."))
        add(re.sub(r"\\[&(]..|\\f[BIRP]|\\-|\\[a-z]", "", text))
    for path in sorted(glob.glob("/usr/share/vim/vim*/tutor/tutor.zh_cn.utf-8")):
        add(open(path, encoding="utf-8", errors="ignore").read())
    for path in sorted(glob.glob("/usr/share/vim/vim*/lang/zh_CN.UTF-8/LC_MESSAGES/vim.mo")):
        with open(path, "rb") as f:
            for v in sorted(gettext.GNUTranslations(f)._catalog.values()):
                if isinstance(v, str):
                    add(v)
    for s in ZH_FALLBACK:
        out[s] = None
    rng = random.Random(5)
    while len(out) < 3000:   # too little on disk: template sentences
        out[rng.choice(ZH_TIMES) + rng.choice(ZH_SUBJECTS) + rng.choice(ZH_VERBS) + rng.choice(ZH_OBJECTS)
            + rng.choice(ZH_TAILS)] = None
    return list(out)


# ----------------------------------------------------------------------------- reference shingling

_PUNCT = regex.compile(r"[\p{P}\p{S}]+")
_HAN = regex.compile(r"(\p{Han})")
_PUNCT_SPACE = regex.compile(r"[\p{P}\p{S}\s]+")


def py_shingles(text: str, lang: str, word_n: int = 5, char_n: int = 5) -> set[str]:
    """Pure-Python shingling with the same normalisation as skycurate (used by datasketch and the truth)."""
    t = unicodedata.normalize("NFKC", text).lower()
    if lang == "zh":
        chars = _PUNCT_SPACE.sub("", t)
        if not chars:
            return set()
        if len(chars) < char_n:
            return {chars}
        return {chars[i:i + char_n] for i in range(len(chars) - char_n + 1)}
    words = _HAN.sub(r" \1 ", _PUNCT.sub(" ", t)).split()
    if not words:
        return set()
    if len(words) < word_n:
        return {" ".join(words)}
    return {" ".join(words[i:i + word_n]) for i in range(len(words) - word_n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


# ----------------------------------------------------------------------------- the labelled set


@dataclass
class Doc:
    id: str
    text: str
    lang: str
    cluster: int          # documents of one cluster are near-duplicates of each other
    jaccard: float        # true Jaccard with the cluster's base document (1.0 for the base)


def _edit_ops(rng: random.Random, vocab: list[str], n_ops: int) -> list[tuple]:
    kinds = ["sub", "ins", "del"] * 6 + ["swap", "swap", "punct", "punct", "case", "boiler"]
    return [(rng.choice(kinds), rng.random(), rng.random(), rng.choice(vocab)) for _ in range(n_ops)]


def _apply(sentences: list[str], ops: list[tuple], lang: str) -> str:
    sents = list(sentences)
    boiler = ZH_BOILERPLATE if lang == "zh" else EN_BOILERPLATE
    tail: list[str] = []
    for kind, r1, r2, word in ops:
        i = int(r1 * len(sents))
        if kind == "swap":
            if len(sents) > 1:
                i = min(i, len(sents) - 2)
                sents[i], sents[i + 1] = sents[i + 1], sents[i]
        elif kind == "boiler":
            if not tail:                                  # one appended line at most
                tail.append(boiler[int(r2 * len(boiler))])
        elif kind == "punct":
            sents[i] = sents[i].replace("，", ",").replace("。", ".") if lang == "zh" else (
                sents[i].replace(",", " -", 1).rstrip(".") + "!")
        elif kind == "case":
            sents[i] = sents[i].upper() if lang != "zh" else sents[i].replace("。", "！")
        elif lang == "zh":
            chars = list(sents[i])
            k = int(r2 * len(chars))
            if kind == "sub":
                chars[k] = word[0]
            elif kind == "ins":
                chars.insert(k, word[0])
            elif len(chars) > 4:
                del chars[k]
            sents[i] = "".join(chars)
        else:
            words = sents[i].split()
            k = int(r2 * len(words))
            if kind == "sub":
                words[k] = word
            elif kind == "ins":
                words.insert(k, word)
            elif len(words) > 3:
                del words[k]
            sents[i] = " ".join(words)
    sep = "" if lang == "zh" else " "
    return sep.join(sents + tail)


def _variant(rng: random.Random, base_sents: list[str], base_sh: set, lang: str, min_j: float,
             vocab: list[str]) -> tuple[str, float]:
    """A variant of the base whose true Jaccard with it is about a target drawn from [min_j, 1]."""
    target = rng.uniform(min_j, 1.0)
    size = sum(len(s) for s in base_sents) // (2 if lang == "zh" else 6)
    ops = _edit_ops(rng, vocab, max(4, size // 8))
    lo, hi = 0, len(ops)         # largest prefix of ops that keeps J >= target (J falls as ops are added)
    best = (" " if lang != "zh" else "").join(base_sents), 1.0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        text = _apply(base_sents, ops[:mid], lang)
        j = jaccard(py_shingles(text, lang), base_sh)
        if j >= target:
            lo, best = mid, (text, j)
        else:
            hi = mid - 1
    if lo == 0:   # even one op is too much: at least change punctuation (no shingle changes)
        best = _apply(base_sents, [("punct", rng.random(), 0.0, "")], lang), best[1]
        best = best[0], jaccard(py_shingles(best[0], lang), base_sh)
    return best


def build_corpus(n: int, seed: int = 0, min_jaccard: float = 0.75) -> tuple[list[Doc], list[float]]:
    """About ``n`` documents, half English, half Chinese, in clusters of near-duplicates.

    Also returns the true Jaccard of every pair of template-family bases (the hard negatives).
    """
    rng = random.Random(seed)
    pools = {"en": english_sentences(), "zh": chinese_sentences()}
    vocab = {"en": sorted({w.strip(".,;:!?").lower() for s in pools["en"][:5000] for w in s.split()} - {""}),
             "zh": list(ZH_EDIT_CHARS)}
    docs: list[Doc] = []
    negatives: list[float] = []
    cluster = 0
    for lang in ("en", "zh"):
        pool, made = pools[lang], 0
        sep = " " if lang == "en" else ""
        while made < n // 2:
            if rng.random() < 0.15:
                # A template family: pages sharing a boilerplate block (true Jaccard ~0.3-0.6 between
                # them), different content; not duplicates of each other.
                unique = rng.randint(6, 15)
                t = rng.uniform(0.3, 0.6)
                boiler = rng.sample(pool, max(1, round(2 * unique * t / (1 - t))))
                cut = rng.randint(0, len(boiler))
                bases = [boiler[:cut] + rng.sample(pool, unique) + boiler[cut:] for _ in range(rng.randint(3, 5))]
                sh = [py_shingles(sep.join(b), lang) for b in bases]
                negatives += [jaccard(a, b) for a, b in combinations(sh, 2)]
            else:
                k = rng.randint(3, 6) if rng.random() < 0.1 else rng.randint(10, 40)   # some short pages
                bases = [rng.sample(pool, k)]
            for base_sents in bases:
                base_sh = py_shingles(sep.join(base_sents), lang)
                size = 1 if rng.random() < 0.45 else rng.choice([2, 2, 2, 3, 3, 4, 5, 6, 8])
                docs.append(Doc("", sep.join(base_sents), lang, cluster, 1.0))
                for _ in range(size - 1):
                    text, j = _variant(rng, base_sents, base_sh, lang, min_jaccard, vocab[lang])
                    docs.append(Doc("", text, lang, cluster, j))
                made += size
                cluster += 1
    # ids must not reveal the clusters through their order
    order = list(range(len(docs)))
    rng.shuffle(order)
    return [Doc(f"{d.lang}-{i:06d}", d.text, d.lang, d.cluster, d.jaccard) for i, d in zip(order, docs)], negatives


# ----------------------------------------------------------------------------- metrics


def _pairs(groups: dict) -> set[tuple[str, str]]:
    return {p for members in groups.values() if len(members) > 1 for p in combinations(sorted(members), 2)}


def scores(docs: list[Doc], predicted: dict[str, str]) -> dict[str, tuple[float, float]]:
    """{metric: (precision, recall)} for ``predicted`` (id -> cluster label) against the truth."""
    truth_groups, pred_groups = defaultdict(set), defaultdict(set)
    for d in docs:
        truth_groups[d.cluster].add(d.id)
        pred_groups[predicted.get(d.id, d.id)].add(d.id)
    t_pairs, p_pairs = _pairs(truth_groups), _pairs(pred_groups)
    hit = len(t_pairs & p_pairs)
    out = {"pairwise": (hit / len(p_pairs) if p_pairs else 1.0, hit / len(t_pairs) if t_pairs else 1.0)}
    counts = {"text-dedup": defaultdict(int), "CORE": defaultdict(int)}
    for d in docs:
        dups = truth_groups[d.cluster] - {d.id}
        preds = pred_groups[predicted.get(d.id, d.id)] - {d.id}
        if not preds:
            label = "TN" if not dups else "FN"
            counts["text-dedup"][label] += 1
            counts["CORE"][label] += 1
        else:
            counts["text-dedup"]["TP" if dups and dups <= preds else "FP"] += 1
            counts["CORE"]["TP" if dups & preds else "FP"] += 1
    for name, c in counts.items():
        out[name] = (c["TP"] / max(c["TP"] + c["FP"], 1), c["TP"] / max(c["TP"] + c["FN"], 1))
    return out


# ----------------------------------------------------------------------------- the two methods


def run_skycurate(docs: list[Doc], cfg) -> tuple[dict[str, str], float]:
    from skycurate.schemas.config import SparkConfig
    from skycurate.spark import get_spark
    from skycurate.stages.web.minhash import MINHASH
    from skycurate.stages.web.near_dedup import near_dedup

    spark = get_spark(SparkConfig())
    table = pa.table({"id": [d.id for d in docs], "text": [d.text for d in docs], "lang": [d.lang for d in docs]})
    df = spark.createDataFrame(table.to_pandas()).repartition(4)
    t0 = time.perf_counter()
    res = near_dedup(MINHASH.on_spark(df, cfg), cfg)
    clusters = {r["id"]: r["cluster_id"] for r in res.annotated.select("id", "cluster_id").collect()}
    return clusters, time.perf_counter() - t0


def run_datasketch(docs: list[Doc], shingles: list[set[str]], cfg) -> tuple[dict[str, str], float]:
    """datasketch MinHash.bulk + MinHashLSH(params=(bands, rows)), the same verification rule, union-find."""
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    sigs = MinHash.bulk([[s.encode("utf-8") for s in sh] for sh in shingles], num_perm=cfg.num_perm, seed=1)
    lsh = MinHashLSH(num_perm=cfg.num_perm, params=(cfg.bands, cfg.rows))
    keep = [i for i, sh in enumerate(shingles) if sh]   # like skycurate: no shingle, no candidate
    for i in keep:
        lsh.insert(i, sigs[i])
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in keep:
        for j in lsh.query(sigs[i]):
            if j == i or (cfg.verify_threshold is not None and sigs[i].jaccard(sigs[j]) < cfg.verify_threshold):
                continue
            a, b = find(docs[i].id), find(docs[j].id)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {d.id: find(d.id) for d in docs}, time.perf_counter() - t0


def check_shingles(docs: list[Doc], shingles: list[set[str]], cfg, sample: int = 300) -> int:
    """How many of a sample of documents have the same number of shingles in both implementations."""
    from skycurate.stages.web.minhash import shingle_hashes

    idx = list(range(min(sample, len(docs))))
    batch = pa.record_batch({"id": [docs[i].id for i in idx], "text": [docs[i].text for i in idx],
                             "lang": [docs[i].lang for i in idx]})
    _, counts = shingle_hashes(batch, cfg)
    # skycurate counts shingle positions; the reference counts distinct shingles
    hashes, _ = shingle_hashes(batch, cfg)
    offs = np.concatenate([[0], np.cumsum(counts)])
    same = sum(len(np.unique(hashes[offs[k]:offs[k + 1]])) == len(shingles[i]) for k, i in enumerate(idx))
    return same


def _config(spec: str):
    """``default`` or ``default:verify=none`` or ``bands=20,rows=6,verify=0.7``."""
    from skycurate.schemas.web_dedup import MinHashConfig

    preset, _, rest = spec.partition(":") if ":" in spec or "=" not in spec else ("default", "", spec)
    kw: dict = {"preset": preset or "default"}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        key = {"verify": "verify_threshold"}.get(key, key)
        kw[key] = None if value.lower() == "none" else (float(value) if "." in value else int(value))
    return spec, MinHashConfig(**kw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="documents (half English, half Chinese)")
    ap.add_argument("--quick", action="store_true", help="600 documents")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-jaccard", type=float, default=0.75, help="lowest true Jaccard of a variant with its base")
    ap.add_argument("--configs", default="default,datatrove",
                    help="comma-separated presets; ';' separates configs with overrides, e.g. "
                         "'default;datatrove;bands=16,rows=7,verify=none'")
    args = ap.parse_args(argv)
    n = 600 if args.quick else args.n
    specs = args.configs.split(";") if ";" in args.configs else args.configs.split(",")
    configs = [_config(s) for s in specs]

    t0 = time.perf_counter()
    docs, negatives = build_corpus(n, args.seed, args.min_jaccard)
    word_n, char_n = configs[0][1].word_ngram, configs[0][1].char_ngram
    shingles = [py_shingles(d.text, d.lang, word_n, char_n) for d in docs]
    js = np.array([d.jaccard for d in docs if d.jaccard < 1.0])
    negs = np.array(negatives)
    sizes: dict[int, int] = defaultdict(int)
    for d in docs:
        sizes[d.cluster] += 1
    print(f"corpus: {len(docs)} docs ({sum(d.lang == 'en' for d in docs)} en, {sum(d.lang == 'zh' for d in docs)} zh), "
          f"{sum(s > 1 for s in sizes.values())} duplicate clusters holding {sum(s for s in sizes.values() if s > 1)} "
          f"docs, built in {time.perf_counter() - t0:.1f} s")
    print(f"  duplicates: true Jaccard of a variant with its base: min {js.min():.3f}, p10 {np.quantile(js, 0.1):.3f}, "
          f"median {np.median(js):.3f}")
    print(f"  hard negatives: {len(negs)} template-family pairs, true Jaccard median {np.median(negs):.3f}, "
          f"p90 {np.quantile(negs, 0.9):.3f}, max {negs.max():.3f}")
    same = check_shingles(docs, shingles, configs[0][1])
    print(f"  skycurate's shingle sets and the reference shingler's agree on {same}/{min(300, len(docs))} sampled docs")
    print("precision/recall: pair = same-cluster pairs; t-d = text-dedup per document (all true duplicates in the "
          "predicted cluster); CORE = per document (any)")

    for spec, cfg in configs:
        verify = f", verified at {cfg.verify_threshold}" if cfg.verify_threshold is not None else ", no verification"
        print(f"\n== {spec}: {cfg.bands} bands x {cfg.rows} rows = {cfg.num_perm} permutations, implied threshold "
              f"{cfg.threshold:.3f}{verify}; word {cfg.word_ngram}-grams, Chinese character {cfg.char_ngram}-grams")
        runs = [("skycurate (Spark)", *run_skycurate(docs, cfg)),
                ("datasketch MinHashLSH", *run_datasketch(docs, shingles, cfg))]
        header = (f"{'method':<24} {'lang':<4} {'pair P':>7} {'pair R':>7} {'t-d P':>7} {'t-d R':>7} "
                  f"{'CORE P':>7} {'CORE R':>7} {'secs':>6}")
        print(header)
        print("-" * len(header))
        for name, pred, secs in runs:
            for lang in ("en", "zh", "all"):
                sub = [d for d in docs if lang == "all" or d.lang == lang]
                sc = scores(sub, pred)
                row = " ".join(f"{sc[m][k]:7.4f}" for m in ("pairwise", "text-dedup", "CORE") for k in (0, 1))
                print(f"{name:<24} {lang:<4} {row} " + (f"{secs:6.1f}" if lang == "all" else ""))
        # recall by true Jaccard: share of variants in the same predicted cluster as their base
        base_of = {d.cluster: d.id for d in docs if d.jaccard == 1.0}
        edges = [e for e in [args.min_jaccard, 0.8, 0.85, 0.9, 0.95] if e >= args.min_jaccard] + [1.0001]
        print(f"{'variant with its base, by J':<29}" + "".join(f"{f'[{lo:.2f},{min(hi, 1):.2f})':>14}"
                                                         for lo, hi in zip(edges, edges[1:])))
        for name, pred, _ in runs:
            cells = []
            for lo, hi in zip(edges, edges[1:]):
                vs = [d for d in docs if lo <= d.jaccard < hi and d.jaccard < 1.0]
                found = sum(pred.get(d.id, d.id) == pred.get(base_of[d.cluster], base_of[d.cluster]) for d in vs)
                cells.append(f"{found / len(vs):.3f} ({len(vs)})" if vs else "-")
            print(f"{name:<29}" + "".join(f"{c:>14}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
