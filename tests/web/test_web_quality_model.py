"""The SkyPile-style quality classifier: train a tiny fastText model, score, and apply a threshold."""

from __future__ import annotations

import gzip
import json
import random

import pyarrow as pa
import pytest

from skycurate.errors import ConfigError, SkycurateError
from skycurate.schemas.config import validate_config
from skycurate.schemas.web import QUALITY_SCORE_FIELD
from skycurate.schemas.web_annotate import QualityModelConfig
from skycurate.stages.web.quality_model import (QUALITY_FILTER, QUALITY_SCORE, auroc, normalize_text,
                                                quality_threshold_verdicts, score_batch, train_quality_model)

# --- synthetic corpora: pages Wikipedia would cite vs. ordinary crawl spam -------------------

_EN_SUBJECTS = ["The Yangtze River", "The Royal Society", "Marie Curie", "The Treaty of Westphalia", "Photosynthesis",
                "The Great Wall", "Quantum electrodynamics", "The Ming dynasty", "Plate tectonics", "The Silk Road"]
_EN_FACTS = ["was first described in {y} by researchers at the University of {c}",
             "is discussed in detail in a peer-reviewed study published in {y}",
             "has been the subject of archival research since {y}",
             "according to the national statistics office, changed markedly after {y}",
             "is documented in the proceedings of the {c} Historical Society ({y})"]
_EN_TAILS = ["The findings were later confirmed by independent measurements.",
             "Primary sources include official records and contemporary correspondence.",
             "Subsequent editions of the report revised the estimates.",
             "The museum holds the original manuscripts in its collection."]
_CITIES = ["Cambridge", "Leiden", "Heidelberg", "Kyoto", "Bologna", "Uppsala"]
_ZH_SUBJECTS = ["长江流域", "敦煌石窟", "光合作用", "明代科举制度", "青藏高原", "丝绸之路", "量子力学", "黄河水利工程"]
_ZH_FACTS = ["的研究最早见于{y}年出版的学术专著", "在{y}年的国家统计年鉴中有详细记载", "由中国科学院研究人员于{y}年系统考察",
             "相关档案资料现藏于国家图书馆，整理工作始于{y}年"]
_ZH_TAILS = ["研究结果经过同行评审并在期刊上发表。", "该报告引用了大量原始文献和实地调查数据。", "后续研究对上述结论进行了修订和补充。"]

_SPAM_EN = ["BUY CHEAP {p} NOW", "click here!!!", "best price guaranteed", "free shipping", "limited offer",
            "WIN a {p} today", "hot deal", "100% free", "sign up now", "lol", "omg", "visit our shop"]
_SPAM_ZH = ["点击领取{p}", "限时免费！！！", "加微信领红包", "爆款特价", "全网最低价", "立即下载", "包邮秒杀", "扫码关注"]
_PRODUCTS = ["iphone", "watches", "casino chips", "pills", "bags", "手机", "优惠券", "会员"]


def _reference(rng: random.Random) -> str:
    if rng.random() < 0.5:
        facts = [f"{rng.choice(_EN_SUBJECTS)} {rng.choice(_EN_FACTS).format(y=rng.randint(1700, 2020), c=rng.choice(_CITIES))}."
                 for _ in range(2)]
        return " ".join(facts + [rng.choice(_EN_TAILS)])
    facts = [f"{rng.choice(_ZH_SUBJECTS)}{rng.choice(_ZH_FACTS).format(y=rng.randint(1700, 2020))}。" for _ in range(2)]
    return "".join(facts + [rng.choice(_ZH_TAILS)])


def _spam(rng: random.Random) -> str:
    pool = _SPAM_EN if rng.random() < 0.5 else _SPAM_ZH
    return " ".join(rng.choice(pool).format(p=rng.choice(_PRODUCTS)) for _ in range(rng.randint(3, 7)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("quality")
    rng = random.Random(7)
    pos_txt, pos_jsonl, neg_txt = d / "ref.txt", d / "ref.jsonl.gz", d / "crawl.txt"
    refs = [_reference(rng) for _ in range(100)]
    pos_txt.write_text("\n".join(refs + [refs[0].upper()]) + "\n", encoding="utf-8")  # a duplicate once normalised
    with gzip.open(pos_jsonl, "wt", encoding="utf-8") as f:
        for _ in range(100):
            f.write(json.dumps({"text": _reference(rng), "url": "https://example.org"}, ensure_ascii=False) + "\n")
        f.write(json.dumps({"url": "no text field"}) + "\n")
    neg_txt.write_text("\n".join(_spam(rng) for _ in range(200)) + "\n", encoding="utf-8")
    out = d / "model" / "quality.bin"
    result = train_quality_model([pos_txt, pos_jsonl], [neg_txt], out, epochs=20, lr=0.5, word_ngrams=2, dim=16,
                                 seed=1, bucket=20_000, valid_fraction=0.2)
    return result, QualityModelConfig(model_path=str(out), threshold=0.5)


def test_training_reports_held_out_metrics_well_above_chance(trained):
    result, _ = trained
    assert result["skipped"] == 1  # the JSON line without text
    assert result["duplicates"] >= 1  # the upper-cased copy, and any chance repeats
    kept = {k: result["train"][k] + result["valid"][k] for k in ("hq", "lq")}
    assert sum(kept.values()) + result["duplicates"] == 401
    assert result["valid"] == {k: round(v * 0.2) for k, v in kept.items()}
    m = result["metrics"]
    assert m["n"] == sum(result["valid"].values()) and m["positives"] == result["valid"]["hq"]
    assert m["auroc"] > 0.95 and m["f1"] > 0.9 and m["precision"] > 0.9 and m["recall"] > 0.9
    assert result["labels"] == ["__label__hq", "__label__lq"]


def test_scores_separate_fresh_examples(trained):
    _, cfg = trained
    rng = random.Random(12345)
    pos, neg = [_reference(rng) for _ in range(30)], [_spam(rng) for _ in range(30)]
    out = QUALITY_SCORE(pa.record_batch({"text": pa.array(pos + neg + [None, ""], pa.string())}), cfg)
    scores = out.column("quality_score").to_pylist()
    assert out.schema.field("quality_score") == QUALITY_SCORE_FIELD
    assert scores[-2:] == [0.0, 0.0]  # null and empty text
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert auroc(scores[:60], [True] * 30 + [False] * 30) > 0.95
    assert sum(scores[:30]) / 30 > 0.8 > 0.2 > sum(scores[30:60]) / 30


def test_training_is_reproducible_in_one_process(tmp_path):
    """Same inputs and seed, same model, even when the second run reuses the first one's freed memory."""
    rng = random.Random(3)
    pos, neg = tmp_path / "p.txt", tmp_path / "n.txt"
    pos.write_text("\n".join(_reference(rng) for _ in range(60)), encoding="utf-8")
    neg.write_text("\n".join(_spam(rng) for _ in range(60)), encoding="utf-8")
    kw = dict(epochs=10, lr=0.2, word_ngrams=2, dim=8, seed=5, bucket=20_000)
    results = [train_quality_model([pos], [neg], tmp_path / f"{name}.bin", **kw) for name in "abc"]
    assert results[0]["metrics"] == results[1]["metrics"] == results[2]["metrics"]
    probe = pa.record_batch({"text": [_reference(rng) for _ in range(5)] + [_spam(rng) for _ in range(5)]})
    scores = [score_batch(probe, QualityModelConfig(model_path=r["model_path"])).column("quality_score").to_pylist()
              for r in results]
    assert scores[0] == scores[1] == scores[2]


def test_quantized_model_scores_too(tmp_path):
    rng = random.Random(4)
    pos, neg = tmp_path / "p.txt", tmp_path / "n.txt"
    pos.write_text("\n".join(_reference(rng) for _ in range(80)), encoding="utf-8")
    neg.write_text("\n".join(_spam(rng) for _ in range(80)), encoding="utf-8")
    result = train_quality_model([pos], [neg], tmp_path / "q.ftz", epochs=10, lr=0.2, dim=8, bucket=20_000,
                                 quantize=True, valid_fraction=0.25)
    assert result["metrics"]["auroc"] > 0.9
    cfg = QualityModelConfig(model_path=str(tmp_path / "q.ftz"))
    scores = score_batch(pa.record_batch({"text": [_reference(rng), _spam(rng)]}), cfg).column("quality_score")
    assert scores[0].as_py() > scores[1].as_py()


def test_empty_or_bad_inputs_are_clear_errors(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("a reference page\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(SkycurateError, match=r"no negative \(lq\) training documents in .*empty\.txt"):
        train_quality_model([good], [empty], tmp_path / "m.bin")
    with pytest.raises(SkycurateError, match="no positive"):
        train_quality_model([], [good], tmp_path / "m.bin")
    with pytest.raises(SkycurateError, match="missing.txt not found"):
        train_quality_model([tmp_path / "missing.txt"], [good], tmp_path / "m.bin")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n', encoding="utf-8")
    with pytest.raises(SkycurateError, match="bad.jsonl, line 2: invalid JSON"):
        train_quality_model([bad], [good], tmp_path / "m.bin")
    with pytest.raises(SkycurateError, match="training failed: Encountered NaN.*lower lr"):
        train_quality_model([good], [good], tmp_path / "m.bin", lr=1e6, valid_fraction=0)
    with pytest.raises(SkycurateError, match="expected .txt, .jsonl"):
        train_quality_model([tmp_path / "x.csv"], [good], tmp_path / "m.bin")


def test_normalization_tokenizes_chinese_and_is_shared():
    assert normalize_text("长江，全长6300公里\nThe Yangtze, 2024!") == "长 江 , 全 长 0 公 里 the yangtze , 0 !"
    assert normalize_text("ＡＢＣ　１２３") == "abc 0"  # full-width forms folded by NFKC
    assert normalize_text(None) == "" and normalize_text(" \n ") == ""
    assert normalize_text("abcdef", max_chars=3) == "abc"


THRESHOLD_CASES = [
    # score, already rejected?, expected reason
    (0.12, False, "quality_score 0.12 < 0.50"),
    (0.4999, False, "quality_score 0.4999 < 0.5000"),
    (0.5, False, None),
    (0.97, False, None),
    (None, False, "quality_score missing"),
    (None, True, "lang fr not in [zh, en]"),
]


@pytest.mark.parametrize("score,rejected,reason", THRESHOLD_CASES)
def test_threshold_verdicts(score, rejected, reason):
    batch = pa.record_batch({
        "quality_score": pa.array([score], pa.float64()),
        "reject_stage": pa.array(["lid" if rejected else None], pa.string()),
        "reject_reason": pa.array(["lang fr not in [zh, en]" if rejected else None], pa.string())})
    row = QUALITY_FILTER(batch, 0.5).to_pylist()[0]
    assert row["reject_reason"] == reason
    assert row["reject_stage"] == (("lid" if rejected else "quality_classifier") if reason else None)


def test_already_rejected_rows_are_not_scored(trained):
    _, cfg = trained
    batch = pa.record_batch({"text": ["BUY CHEAP pills NOW", "BUY CHEAP pills NOW"],
                             "reject_stage": pa.array(["safety", None], pa.string()),
                             "reject_reason": pa.array(["blocked_keywords: 1 >= 1", None], pa.string())})
    rows = quality_threshold_verdicts(score_batch(batch, cfg), 0.5).to_pylist()
    assert rows[0]["quality_score"] is None and rows[0]["reject_reason"] == "blocked_keywords: 1 >= 1"
    assert rows[1]["quality_score"] < 0.5 and rows[1]["reject_stage"] == "quality_classifier"


def test_config_rules(trained, tmp_path):
    assert QualityModelConfig().enabled is False
    with pytest.raises(ConfigError, match="not both"):
        validate_config(QualityModelConfig, {"model_path": "m.bin", "threshold": 0.5, "top_fraction": 0.3})
    with pytest.raises(ConfigError, match="top_fraction"):
        validate_config(QualityModelConfig, {"top_fraction": 0.0})
    assert validate_config(QualityModelConfig, {"positive_label": "__label__good"}).positive_label == "good"
    with pytest.raises(ConfigError, match="disabled"):
        score_batch(pa.record_batch({"text": ["x"]}), QualityModelConfig())
    _, cfg = trained
    with pytest.raises(ConfigError, match="expected __label__good"):
        score_batch(pa.record_batch({"text": ["x"]}), cfg.model_copy(update={"positive_label": "good"}))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="does not load"):
        score_batch(pa.record_batch({"text": ["x"]}), QualityModelConfig(model_path=str(junk)))


def test_auroc_handles_ties_and_one_class():
    assert auroc([0.1, 0.9], [False, True]) == 1.0
    assert auroc([0.5, 0.5], [False, True]) == 0.5
    assert auroc([0.2, 0.3], [True, True]) is None
