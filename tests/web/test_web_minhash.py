"""MinHash signatures and LSH bands on Arrow batches, in English and Chinese (pure, no Spark)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pyarrow as pa
import pytest

from skycurate.errors import ConfigError
from skycurate.schemas.config import validate_config
from skycurate.schemas.web_dedup import MinHashConfig, candidate_probability, implied_threshold
from skycurate.stages.web.minhash import MINHASH, estimate_jaccard, shingle_hashes, signatures

EN = ("The Yangtze is the longest river in Asia and the third longest in the world. It rises in the "
      "glaciers of the Qinghai-Tibet Plateau and flows for about six thousand three hundred kilometres "
      "before it reaches the East China Sea at Shanghai. The river drains one fifth of the land area of "
      "the country, and its basin is home to nearly one third of the population. For thousands of years "
      "it has carried water for irrigation, goods for trade and people between the provinces of the "
      "interior and the coast. The Three Gorges Dam, finished in two thousand and six, is the largest "
      "power station in the world by installed capacity, and its reservoir stretches for more than six "
      "hundred kilometres upstream.")
EN_EDITED = ("The Yangtze is the longest river in Asia and the third longest in the world. It rises in the "
             "glaciers of the Qinghai-Tibet Plateau and flows for roughly six thousand three hundred kilometres "
             "before it reaches the East China Sea at Shanghai. The river drains one fifth of the land area of "
             "the country, and its basin is home to nearly one third of the population. For thousands of years "
             "it has carried water for irrigation, goods for trade and people between the provinces of the "
             "interior and the coast. The Three Gorges Dam, completed in two thousand and six, is the largest "
             "power station in the world by installed capacity, and its reservoir stretches for more than six "
             "hundred kilometres upstream. Share this page.")
EN_OTHER = ("A sourdough starter is a mixture of flour and water in which wild yeast and lactic acid bacteria "
            "live together. Feed it every day with equal weights of flour and water, keep it at room "
            "temperature, and discard half before each feeding so that it does not grow without limit. After "
            "about a week it should double in size within a few hours of feeding and smell pleasantly sour. "
            "Bakers keep starters for decades, and some claim that theirs came from a famous bakery long ago.")
ZH = ("长江是亚洲第一长河，也是世界第三长河。它发源于青藏高原的冰川，全长约六千三百公里，最后在上海注入东海。"
      "长江流域面积约占全国陆地面积的五分之一，流域内居住着全国近三分之一的人口。几千年来，长江为农田提供灌溉用水，"
      "为商贸运输货物，也把内陆各省和沿海地区连在一起。三峡大坝于二零零六年建成，是世界上装机容量最大的水电站，"
      "其水库向上游延伸六百多公里。")
ZH_EDITED = ("长江是亚洲第一长河，也是世界第三长河。它发源于青藏高原的冰川，全长大约六千三百公里，最后在上海注入东海。"
             "长江流域面积约占全国陆地面积的五分之一，流域内居住着全国将近三分之一的人口。几千年来，长江为农田提供灌溉用水，"
             "为商贸运输货物，也把内陆各省和沿海地区连在一起。三峡大坝于二零零六年建成，是世界上装机容量最大的水电站，"
             "其水库向上游延伸六百多公里。本文来源：网络")
ZH_OTHER = ("酸面团酵头是面粉和水的混合物，里面生活着野生酵母和乳酸菌。每天用等量的面粉和水喂养它，放在室温下，"
            "每次喂养前先倒掉一半，免得它无限制地长大。大约一周以后，它应该在喂养后几个小时内体积翻倍，并散发出"
            "好闻的酸味。有些面包师把酵头养了几十年，还说它来自很久以前的一家名店。")

CFG = MinHashConfig()
LSH_ONLY = MinHashConfig(preset="datatrove")


def batch(texts, langs=None, **extra) -> pa.RecordBatch:
    langs = langs if langs is not None else ["en"] * len(texts)
    return pa.record_batch({"id": [f"d{i:04d}" for i in range(len(texts))], "text": pa.array(texts, pa.string()),
                            "lang": pa.array(langs, pa.string()), **extra})


def bands_of(texts, langs=None, cfg=CFG):
    return MINHASH(batch(texts, langs), cfg).column("minhash_bands").to_pylist()


def shared(a, b) -> int:
    return sum(x == y for x, y in zip(a, b))


def exact_jaccard(texts, langs, cfg=CFG) -> float:
    hashes, counts = shingle_hashes(batch(texts, langs), cfg)
    a, b = np.split(hashes, [counts[0]])[:2]
    return len(np.intersect1d(a, b)) / len(np.union1d(a, b))


def test_identical_texts_have_identical_bands():
    b = bands_of([EN, EN, ZH, ZH], ["en", "en", "zh", "zh"])
    assert b[0] == b[1] and b[2] == b[3]
    assert len(b[0]) == CFG.bands == 25


@pytest.mark.parametrize("a,b", [
    ("Hello, World!  The river is LONG.", "hello world the river is long"),
    ("Ｈｅｌｌｏ　ｗｏｒｌｄ，ｔｈｅ ｒｉｖｅｒ！", "hello world the river"),   # full-width forms (NFKC)
    ("one\ttwo\n\nthree -- four; five", "one two three four five"),
])
def test_case_punctuation_and_whitespace_do_not_matter(a, b):
    x, y = bands_of([a, b])
    assert x == y


def test_chinese_punctuation_and_spaces_do_not_matter():
    x, y = bands_of(["长江是亚洲第一长河，也是世界第三长河。", "长江 是亚洲第一长河 也是世界第三长河!"], ["zh", "zh"])
    assert x == y


@pytest.mark.parametrize("cfg", [CFG, LSH_ONLY], ids=["default", "datatrove"])
@pytest.mark.parametrize("a,b,lang", [(EN, EN_EDITED, "en"), (ZH, ZH_EDITED, "zh")])
def test_near_duplicates_share_a_band(a, b, lang, cfg):
    assert exact_jaccard([a, b], [lang, lang]) > 0.8
    x, y = bands_of([a, b], [lang, lang], cfg)
    assert shared(x, y) >= 1


@pytest.mark.parametrize("texts,langs", [
    ([EN, EN_OTHER], ["en", "en"]),
    ([ZH, ZH_OTHER], ["zh", "zh"]),
    ([EN, ZH], ["en", "zh"]),
])
@pytest.mark.parametrize("cfg", [CFG, LSH_ONLY], ids=["default", "datatrove"])
def test_unrelated_texts_share_no_band(texts, langs, cfg):
    x, y = bands_of(texts, langs, cfg)
    assert shared(x, y) == 0


def test_distinct_short_texts_never_collide():
    words = ["river", "city", "bread", "water", "north", "code", "music", "light", "stone", "paper",
             "green", "tower", "cloud", "salt"]
    rng = random.Random(7)
    texts = set()
    while len(texts) < 200:
        texts.add(" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))))
    texts = sorted(texts)
    b = bands_of(texts)
    assert all(x is not None and len(x) == 25 for x in b)
    seen: dict[tuple[int, int], str] = {}
    for text, bands in zip(texts, b):
        for i, h in enumerate(bands):
            assert (i, h) not in seen, f"{text!r} and {seen[(i, h)]!r} share band {i}"
            seen[(i, h)] = text


def test_a_short_text_is_one_shingle_of_all_its_words():
    _, counts = shingle_hashes(batch(["a b", "a b c", "a b c d e", "a b c d e f", "字", "一二三四五六"],
                                     ["en"] * 4 + ["zh"] * 2), CFG)
    assert counts.tolist() == [1, 1, 1, 2, 1, 2]


@pytest.mark.parametrize("text", ["", None, "  ", "... !!! ---", "，。！？"])
def test_texts_without_tokens_get_null_bands(text):
    out = MINHASH(batch([text, EN], ["en", "en"]), MinHashConfig(verify_threshold=0.8))
    assert out.column("minhash_bands").to_pylist()[0] is None
    assert out.column("minhash_sig").to_pylist()[0] is None
    assert out.column("minhash_bands").to_pylist()[1] is not None


def test_already_rejected_rows_are_not_hashed():
    b = batch([EN, EN], reject_stage=pa.array(["lid", None]), reject_reason=pa.array(["lang", None]))
    bands = MINHASH(b, CFG).column("minhash_bands").to_pylist()
    assert bands[0] is None and bands[1] is not None


def test_batching_does_not_change_signatures():
    texts = [EN, EN_EDITED, EN_OTHER, ZH, ZH_EDITED, ZH_OTHER, "short one", "", None, "单字"]
    langs = ["en"] * 3 + ["zh"] * 3 + ["en", "en", "en", "zh"]
    cfg = MinHashConfig(verify_threshold=0.5)
    whole = MINHASH(batch(texts, langs), cfg)
    one_by_one = [MINHASH(batch([t], [lang]), cfg) for t, lang in zip(texts, langs)]
    for col in ("minhash_bands", "minhash_sig"):
        assert whole.column(col).to_pylist() == [b.column(col).to_pylist()[0] for b in one_by_one]
    # and shuffling the rows only shuffles the results
    order = list(reversed(range(len(texts))))
    shuffled = MINHASH(batch([texts[i] for i in order], [langs[i] for i in order]), cfg)
    assert shuffled.column("minhash_bands").to_pylist() == [whole.column("minhash_bands").to_pylist()[i]
                                                           for i in order]


def test_long_texts_span_permutation_chunks():
    # 100k words: one text crosses many shingle chunks and must still get one minimum per permutation
    rng = random.Random(1)
    long_text = " ".join(f"w{rng.randint(0, 5000)}" for _ in range(100_000))
    cfg = MinHashConfig(verify_threshold=0.5)
    sig, has = signatures(batch([EN, long_text, ZH], ["en", "en", "zh"]), cfg)
    alone, _ = signatures(batch([long_text]), cfg)
    assert has.all() and (sig[1] == alone[0]).all()


def test_signature_estimates_jaccard():
    cfg = MinHashConfig(bands=32, rows=8, verify_threshold=0.5)   # 256 permutations: sd ~0.03
    for a, b, lang in [(EN, EN_EDITED, "en"), (ZH, ZH_EDITED, "zh"), (EN, EN_OTHER, "en")]:
        sig, _ = signatures(batch([a, b], [lang, lang]), cfg)
        assert abs(estimate_jaccard(sig[0], sig[1]) - exact_jaccard([a, b], [lang, lang], cfg)) < 0.1


def test_signature_column_only_when_verifying():
    off = MINHASH(batch([EN]), MinHashConfig(verify_threshold=None))
    on = MINHASH(batch([EN]), MinHashConfig(verify_threshold=0.7))
    assert off.column("minhash_sig").to_pylist() == [None]
    assert len(on.column("minhash_sig").to_pylist()[0]) == 25 * 6
    assert on.column("minhash_bands").to_pylist() == off.column("minhash_bands").to_pylist()


def test_seed_changes_the_hashes():
    assert bands_of([EN]) != bands_of([EN], cfg=MinHashConfig(seed=7))


def test_stage_contract():
    schema = MINHASH.output_schema(pa.schema([("id", pa.string()), ("text", pa.string()), ("lang", pa.string())]))
    assert schema.field("minhash_bands").type == pa.list_(pa.int64())
    assert schema.field("minhash_sig").type == pa.list_(pa.int64())


@pytest.mark.parametrize("bands,rows", [(14, 8), (9, 13), (20, 5), (1, 1), (128, 1)])
def test_implied_threshold(bands, rows):
    cfg = MinHashConfig(bands=bands, rows=rows)
    assert cfg.num_perm == bands * rows
    assert cfg.threshold == pytest.approx((1 / bands) ** (1 / rows))
    # the S-curve rises through the implied threshold (about 0.5 there, for every b and r)
    assert 0.35 < candidate_probability(cfg.threshold, bands, rows) < 0.7 or bands == 1


def test_presets():
    default = MinHashConfig()
    assert (default.bands, default.rows, default.verify_threshold) == (25, 6, 0.7)
    assert default.threshold == pytest.approx(0.585, abs=1e-3)
    datatrove = MinHashConfig(preset="datatrove")
    assert (datatrove.bands, datatrove.rows, datatrove.verify_threshold) == (14, 8, None)
    assert datatrove.threshold == pytest.approx(0.719, abs=1e-3)
    strict = MinHashConfig(preset="strict")
    assert (strict.bands, strict.rows) == (9, 13)
    assert MinHashConfig(preset="loose").threshold < default.threshold < datatrove.threshold < strict.threshold
    assert MinHashConfig(preset="strict", rows=10).bands == 9             # one field overrides, the others stay
    assert MinHashConfig(verify_threshold=None).verify_threshold is None  # explicit null: no verification
    assert implied_threshold(14, 8) == datatrove.threshold


def test_dumped_config_reloads_to_the_same_values():
    for cfg in [MinHashConfig(), MinHashConfig(preset="strict", verify_threshold=0.9),
                MinHashConfig(verify_threshold=None)]:
        again = validate_config(MinHashConfig, cfg.model_dump())
        assert again == cfg


def test_config_refuses_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown key 'band'"):
        validate_config(MinHashConfig, {"band": 4})
    with pytest.raises(ConfigError, match="verify_threshold"):
        validate_config(MinHashConfig, {"verify_threshold": 1.5})
    with pytest.raises(ConfigError, match="preset"):
        validate_config(MinHashConfig, {"preset": "medium"})


def test_no_shared_bands_across_many_unrelated_paragraphs():
    # 60 random-word paragraphs: any shared band between two of them would be a false candidate
    rng = random.Random(3)
    vocab = [f"{a}{b}" for a, b in itertools.product("bcdfghklmnprstvw", "aeiou")]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(30, 120))) for _ in range(60)]
    b = bands_of(texts)
    pairs = [(i, j) for i in range(60) for j in range(i + 1, 60) if shared(b[i], b[j])]
    assert pairs == []


def test_sliced_and_large_string_batches_give_the_same_bands():
    texts, langs = [EN, ZH, None, "short"], ["en", "zh", "en", "en"]
    plain = bands_of(texts, langs)
    large = pa.record_batch({"id": ["a", "b", "c", "d"], "text": pa.array(texts, pa.large_string()),
                             "lang": pa.array(langs, pa.large_string())})
    assert MINHASH(large, CFG).column("minhash_bands").to_pylist() == plain
    sliced = batch([EN_OTHER] + texts, ["en"] + langs).slice(1)      # Arrow batches may be slices
    assert MINHASH(sliced, CFG).column("minhash_bands").to_pylist() == plain
