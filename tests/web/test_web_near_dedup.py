"""Near-dedup on Spark: planted clusters (English and Chinese) found, one deterministic survivor each,
incremental runs against a previous index, and connected components checked against union-find."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from skycurate.schemas.web_dedup import MinHashConfig
from skycurate.stages.web.components import connected_components
from skycurate.stages.web.minhash import MINHASH
from skycurate.stages.web.near_dedup import near_dedup

EN_WORDS = (
    "time year people way day man thing woman life child world school state family student group country "
    "problem hand part place case week company system program question work government number night point "
    "home water room mother area money story fact month lot right study book eye job word business issue "
    "side kind head house service friend father power hour game line end member law car city community name "
    "president team minute idea kid body information back parent face level office door health person art "
    "war history party result change morning reason research girl moment air teacher force education river "
    "bridge market garden winter summer station letter music picture window table street village bread "
    "stone forest island engine doctor judge artist farmer soldier library harbour valley mountain report "
    "open close build carry write read speak travel grow choose follow explain remember consider appear "
    "quickly slowly often never always together against between during without within around before after").split()
ZH_WORDS = (
    "时间 问题 工作 发展 社会 国家 经济 政府 学生 老师 学校 城市 农村 历史 文化 科技 市场 企业 公司 技术 "
    "环境 健康 医院 医生 家庭 孩子 父母 朋友 生活 音乐 电影 新闻 天气 河流 山区 海边 铁路 机场 书店 "
    "图书馆 博物馆 公园 花园 森林 农民 工人 作家 画家 记者 法官 士兵 厨师 司机 商店 银行 工厂 大学 "
    "研究 报告 会议 比赛 旅行 计划 方法 结果 原因 影响 变化 速度 质量 价格 数量 能力 机会 资源 能源 "
    "安全 自然 世界 地方 道路 桥梁 窗户 桌子 街道 村庄 面包 石头 岛屿 发动机 上午 下午 晚上 春天 夏天 "
    "秋天 冬天 认为 希望 需要 开始 继续 完成 解决 提高 增加 减少 保护 建设 参加 讨论 准备 选择 注意 "
    "明显 重要 主要 简单 复杂 安静 热闹 美丽 干净 清楚 经常 已经 正在 一起 突然 慢慢 终于 仍然").split()


def en_doc(rng: random.Random, words: int = 160) -> str:
    sentences, left = [], words
    while left > 0:
        n = min(left, rng.randint(8, 18))
        s = " ".join(rng.choice(EN_WORDS) for _ in range(n))
        sentences.append(s[0].upper() + s[1:] + ".")
        left -= n
    return " ".join(sentences)


def zh_doc(rng: random.Random, words: int = 110) -> str:
    sentences, left = [], words
    while left > 0:
        n = min(left, rng.randint(6, 12))
        sentences.append("".join(rng.choice(ZH_WORDS) for _ in range(n)) + rng.choice("，。"))
        left -= n
    return "".join(sentences)


def en_edit(rng: random.Random, text: str, edits: int) -> str:
    words = text.split()
    for _ in range(edits):
        i = rng.randrange(len(words))
        op = rng.choice(["sub", "ins", "del"])
        if op == "sub":
            words[i] = rng.choice(EN_WORDS)
        elif op == "ins":
            words.insert(i, rng.choice(EN_WORDS))
        elif len(words) > 20:
            del words[i]
    return " ".join(words).replace(".", "!", 1) + rng.choice(["", " Share this page.", " (c) 2024 News"])


def zh_edit(rng: random.Random, text: str, edits: int) -> str:
    chars = list(text)
    for _ in range(edits):
        i = rng.randrange(len(chars))
        op = rng.choice(["sub", "ins", "del"])
        if op == "sub":
            chars[i] = rng.choice("的一是了在人有我他这中大来上个国")
        elif op == "ins":
            chars.insert(i, rng.choice("的一是了在人有我他这中大来上个国"))
        else:
            del chars[i]
    return "".join(chars).replace("，", ",", 1) + rng.choice(["", "本文来源：网络", "（完）"])


def planted_corpus(seed: int = 11):
    """(rows, planted clusters as lists of ids, distinct ids, short ids, already-rejected ids)."""
    rng = random.Random(seed)
    rows, clusters, distinct, short, rejected = [], [], [], [], []

    def add(text, lang, **kw):
        doc_id = f"{len(rows) * 7919 % 1000:03d}{lang}{len(rows):03d}"   # ids not in insertion order
        rows.append({"id": doc_id, "text": text, "lang": lang, "url": f"https://example.com/{doc_id}",
                     "reject_stage": kw.get("stage"), "reject_reason": kw.get("reason")})
        return doc_id

    for lang, make, edit, sizes in [("en", en_doc, en_edit, [2, 3, 4, 2]), ("zh", zh_doc, zh_edit, [2, 3, 2, 5])]:
        for size in sizes:
            base = make(rng)
            members = [add(base, lang)] + [add(edit(rng, base, rng.randint(1, 3)), lang) for _ in range(size - 1)]
            clusters.append(members)
        for _ in range(6):
            distinct.append(add(make(rng), lang))
    for text, lang in [("Home", "en"), ("Contact us", "en"), ("About this site", "en"), ("Next page", "en"),
                       ("首页", "zh"), ("联系我们", "zh"), ("关于本站", "zh"), ("", "en"), ("!!! ...", "en")]:
        short.append(add(text, lang))
    # Already rejected upstream: untouched, even when the text duplicates a kept page.
    copy_of = next(r["text"] for r in rows if r["id"] == clusters[0][0])
    rejected.append(add(copy_of, "en", stage="lid", reason="lang_score 0.31 < 0.65"))
    rejected.append(add(zh_doc(rng), "zh", stage="quality", reason="too_short"))
    return rows, clusters, distinct, short, rejected


SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("lang", pa.string()), ("url", pa.string()),
                    ("reject_stage", pa.string()), ("reject_reason", pa.string())])


def with_minhash(spark, rows, cfg, partitions=3):
    df = spark.createDataFrame(pa.Table.from_pylist(rows, SCHEMA).to_pandas()).repartition(partitions)
    return MINHASH.on_spark(df, cfg)


def survivor(rows_by_id, ids):
    return min(ids, key=lambda i: (-len(rows_by_id[i]["text"]), i))


@pytest.fixture(scope="module")
def corpus():
    return planted_corpus()


@pytest.fixture(scope="module")
def first_run(spark, corpus):
    rows = corpus[0]
    res = near_dedup(with_minhash(spark, rows, MinHashConfig()), MinHashConfig())
    out = {r["id"]: r for r in res.annotated.collect()}
    index = res.index.collect()
    return res, out, index


def test_planted_clusters_found_with_one_survivor(corpus, first_run):
    rows, clusters, distinct, short, rejected = corpus
    by_id = {r["id"]: r for r in rows}
    _, out, _ = first_run
    assert len(out) == len(rows)                                 # row count preserved
    for members in clusters:
        keep = survivor(by_id, members)
        assert {out[i]["cluster_id"] for i in members} == {min(members)}
        for i in members:
            if i == keep:
                assert out[i]["reject_reason"] is None, f"survivor {i} of {members} was rejected"
            else:
                assert out[i]["reject_stage"] == "near_dedup"
                assert out[i]["reject_reason"] == f"near_duplicate of {keep}"
    for i in distinct + short:
        assert out[i]["reject_reason"] is None, f"{i} ({by_id[i]['text'][:30]!r}) was rejected"
        assert out[i]["cluster_id"] == i                         # singletons: their own id
    for i in rejected:
        before = (by_id[i]["reject_stage"], by_id[i]["reject_reason"])
        assert (out[i]["reject_stage"], out[i]["reject_reason"]) == before
        assert out[i]["cluster_id"] is None
    assert all(out[i]["url"] == by_id[i]["url"] and out[i]["text"] == by_id[i]["text"] for i in out)


def test_output_columns_and_index(corpus, first_run):
    rows, clusters, distinct, short, rejected = corpus
    res, out, index = first_run
    assert res.annotated.columns == ["id", "text", "lang", "url", "reject_stage", "reject_reason",
                                     "minhash_bands", "minhash_sig", "cluster_id"]
    kept_with_bands = {i for i, r in out.items() if r["reject_reason"] is None and r["minhash_bands"] is not None}
    assert {r["id"] for r in index} == kept_with_bands
    assert len(kept_with_bands) == len(clusters) + len(distinct) + len(short) - 2   # "" and "!!! ..." have no bands
    assert res.index.columns == ["id", "minhash_bands", "minhash_sig"]


def test_result_does_not_depend_on_partitioning(spark, corpus, first_run):
    rows = corpus[0]
    _, out, _ = first_run
    again = near_dedup(with_minhash(spark, list(reversed(rows)), MinHashConfig(), partitions=1), MinHashConfig())
    assert {r["id"]: (r["cluster_id"], r["reject_reason"]) for r in again.annotated.collect()} == {
        i: (r["cluster_id"], r["reject_reason"]) for i, r in out.items()}


def test_incremental_run_rejects_recrawled_pages(spark, corpus, first_run, tmp_path):
    rows, clusters, distinct, _, _ = corpus
    cfg = MinHashConfig()
    # version 1's index, published as Parquet
    first_run[0].index.write.parquet(str(tmp_path / "index_v1"))
    previous = spark.read.parquet(str(tmp_path / "index_v1"))
    by_id = {r["id"]: r for r in rows}
    kept_before = [survivor(by_id, members) for members in clusters]

    rng = random.Random(99)
    new_rows = []

    def add(doc_id, text, lang):
        new_rows.append({"id": doc_id, "text": text, "lang": lang, "url": None, "reject_stage": None,
                         "reject_reason": None})

    add("r1", by_id[kept_before[0]]["text"], "en")                          # re-crawled as is
    add("r2", en_edit(rng, by_id[distinct[0]]["text"], 2), "en")            # re-crawled with edits
    add("r3", zh_edit(rng, by_id[kept_before[5]]["text"], 2), "zh")
    add(distinct[1], by_id[distinct[1]]["text"], "en")                      # same id as a previous page
    fresh_en, fresh_zh = en_doc(rng), zh_doc(rng)
    add("n1", fresh_en, "en")                                               # new pages
    add("n2", fresh_zh, "zh")
    add("n3", en_edit(rng, fresh_en, 1), "en")                              # a new cluster: one survivor
    add("n4", "Sitemap", "en")
    res = near_dedup(with_minhash(spark, new_rows, cfg, partitions=2), cfg, previous_index=previous)
    out = {r["id"]: r for r in res.annotated.collect()}
    assert len(out) == len(new_rows)
    expected_prev = {"r1": kept_before[0], "r2": distinct[0], "r3": kept_before[5], distinct[1]: distinct[1]}
    for new_id, prev_id in expected_prev.items():
        assert out[new_id]["reject_reason"] == f"near_duplicate of {prev_id} (previous version)"
        assert out[new_id]["cluster_id"] == prev_id
    n_keep = survivor({r["id"]: r for r in new_rows}, ["n1", "n3"])
    n_lose = "n3" if n_keep == "n1" else "n1"
    assert out[n_keep]["reject_reason"] is None and out["n2"]["reject_reason"] is None
    assert out["n4"]["reject_reason"] is None
    assert out[n_lose]["reject_reason"] == f"near_duplicate of {n_keep}"
    index = {r["id"]: r for r in res.index.collect()}
    assert set(index) == {n_keep, "n2", "n4"}                                # previous pages are never output
    assert all(len(r["minhash_sig"]) == 150 and len(r["minhash_bands"]) == 25 for r in index.values())


def test_verification_drops_pairs_below_the_threshold(spark):
    rng = random.Random(21)
    shared, a_only, b_only = en_doc(rng, 120), en_doc(rng, 120), en_doc(rng, 120)
    rows = [{"id": "a", "text": shared + " " + a_only, "lang": "en"},
            {"id": "b", "text": shared + " " + b_only, "lang": "en"},            # Jaccard ~ 1/3 with "a"
            {"id": "c", "text": en_edit(rng, shared + " " + a_only, 1), "lang": "en"}]   # ~0.95 with "a"
    cfg = MinHashConfig(bands=40, rows=2, verify_threshold=0.8)
    bands = MINHASH(pa.RecordBatch.from_pylist(rows), cfg).column("minhash_bands").to_pylist()
    assert sum(x == y for x, y in zip(bands[0], bands[1])) > 0                 # an LSH candidate pair ...
    df = spark.createDataFrame(rows, "id string, text string, lang string")
    annotated = near_dedup(MINHASH.on_spark(df, cfg), cfg).annotated
    # an input without verdict columns gets them, after the cluster id
    assert annotated.columns == ["id", "text", "lang", "minhash_bands", "minhash_sig", "cluster_id",
                                 "reject_stage", "reject_reason"]
    out = {r["id"]: r for r in annotated.collect()}
    assert out["b"]["reject_reason"] is None and out["b"]["cluster_id"] == "b"  # ... that verification drops
    assert {out["a"]["cluster_id"], out["c"]["cluster_id"]} == {"a"}
    keep = survivor(out, ["a", "c"])
    lose = "c" if keep == "a" else "a"
    assert out[keep]["reject_reason"] is None
    assert (out[lose]["reject_stage"], out[lose]["reject_reason"]) == ("near_dedup", f"near_duplicate of {keep}")


def union_find(edges):
    parent: dict[str, str] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


@pytest.mark.parametrize("driver_max_edges", [0, 10, 100_000], ids=["distributed", "too_big", "on_driver"])
def test_connected_components_match_union_find(spark, driver_max_edges):
    rng = random.Random(4)
    chain = [f"c{i:03d}" for i in range(40)]
    rng.shuffle(chain)                                   # a long path whose ids are not in path order
    edges = list(zip(chain, chain[1:]))
    for k in range(4):                                   # separate dense-ish components
        nodes = [f"g{k}-{i:02d}" for i in range(8)]
        edges += [(nodes[i], nodes[(i * 3 + 1) % 8]) for i in range(8)] + [(nodes[5], nodes[2])]
    edges += [("x1", "x2"), ("x2", "x1"), ("x2", "x2")]  # both directions and a self-loop
    rng.shuffle(edges)
    df = spark.createDataFrame(edges, "src string, dst string").repartition(3)
    got = {r["node"]: r["component"]
           for r in connected_components(df, driver_max_edges=driver_max_edges).collect()}
    assert got == union_find(edges)
    assert set(got.values()) == {min(chain)} | {f"g{k}-00" for k in range(4)} | {"x1"}


def test_connected_components_of_no_edges(spark):
    df = spark.createDataFrame([], "src string, dst string")
    assert connected_components(df).collect() == []
    assert connected_components(df, driver_max_edges=0).collect() == []


def test_verified_buckets_compare_all_pairs_not_only_the_star(spark):
    """Hand-made signatures (25 bands x 6 rows): m and x agree on 5 of 6 rows of every band and on
    all rows of bands 0-1; a agrees with them on bands 0-1 only. Every bucket holding m or x also
    holds a, the smallest id: a star verifies only a-m and a-x (both fail), comparing all pairs of
    small buckets also verifies m-x (0.85: passes)."""
    rows = 6
    sig_a = list(range(1000, 1150))
    sig_m = [v if k < 12 else 2000 + k for k, v in enumerate(sig_a)]
    sig_x = [v if k < 12 or k % rows != rows - 1 else 3000 + k for k, v in enumerate(sig_m)]

    def bands(sig):
        return [hash(tuple(sig[b * rows:(b + 1) * rows])) for b in range(25)]

    data = [(i, f"text {i}", "en", bands(sig), sig) for i, sig in [("a", sig_a), ("m", sig_m), ("x", sig_x)]]
    df = spark.createDataFrame(data, "id string, text string, lang string, minhash_bands array<bigint>, "
                                     "minhash_sig array<bigint>")
    out = near_dedup(df, MinHashConfig(verify_all_pairs_up_to=50)).annotated
    # (with verify_all_pairs_up_to=1, a star alone, m and x stay apart)
    assert {r["id"]: r["cluster_id"] for r in out.collect()} == {"a": "a", "m": "m", "x": "m"}


def test_bands_from_another_config_are_refused(spark):
    from skycurate.errors import StageContractError

    df = spark.createDataFrame([{"id": "a", "text": "one two three four five six", "lang": "en"}],
                               "id string, text string, lang string")
    with pytest.raises(StageContractError, match="need 25 bands and 150-value signatures, and row 'a' of the input does not"):
        near_dedup(MINHASH.on_spark(df, MinHashConfig(preset="datatrove")), MinHashConfig())
