"""Rule ablation report: every rule's drops alone and first, per language, from the filter's output."""

from __future__ import annotations

import pyarrow as pa

from skycurate.schemas.web_quality import QualityFilterConfig, QualitySignalsConfig
from skycurate.stages.web.ablation import ablation_rows, rule_ablation
from skycurate.stages.web.quality_signals import QUALITY_FILTER, QUALITY_SIGNALS

EN_SHORT = "Welcome to our site. Click here to continue."
EN_OK = ("The Yangtze is the longest river in Asia and the third longest in the world. It rises in the glaciers "
         "of the Tibetan Plateau and flows east for more than six thousand kilometres before it reaches the sea. "
         "For centuries the river has been a highway for trade, and the cities along its banks grew rich with it.")
ZH_NAV = "\n".join(["首页", "新闻中心", "公司新闻", "行业动态", "产品展示", "工业设备", "家用电器", "电子元件", "联系我们"])


def test_ablation_counts_every_failing_rule_per_language(spark):
    rows = [(EN_SHORT, "en", None, None), (EN_OK, "en", None, None), (EN_SHORT, "en", None, None),
            (ZH_NAV, "zh", None, None), ("Bonjour tout le monde", "fr", "lid", "lid: lang fr not in [zh, en]")]
    batch = pa.record_batch({"text": [r[0] for r in rows], "lang": [r[1] for r in rows],
                             "reject_stage": pa.array([r[2] for r in rows], pa.string()),
                             "reject_reason": pa.array([r[3] for r in rows], pa.string())})
    judged = QUALITY_FILTER(QUALITY_SIGNALS(batch, QualitySignalsConfig()), QualityFilterConfig())
    df = spark.createDataFrame(judged.to_pandas()[["lang", "reject_stage", "reject_reason", "quality_rules_failed"]])
    report = rule_ablation(df)
    assert report["documents"] == {"en": 3, "zh": 1}  # the French page never reached the rules
    by_rule = {r["rule"]: (r["alone"], r["first"]) for r in report["rules"]}
    assert by_rule == {
        "gopher_quality: n_words": ({"en": 2, "zh": 1}, {"en": 2, "zh": 1}),
        "gopher_quality: stopwords": ({"en": 2}, {}),  # 联系我们 holds two stop words (我, 我们)
        "c4: n_sentences": ({"zh": 1}, {}),
        "fineweb: punct_line_frac": ({"zh": 1}, {}),
        "fineweb: short_line_frac": ({"zh": 1}, {}),
        "fineweb: newline_per_word": ({"zh": 1}, {}),
    }
    assert [r["rule"] for r in report["rules"]][:2] == ["gopher_quality: n_words", "gopher_quality: stopwords"]
    assert ablation_rows(report)[0] == ["gopher_quality: n_words", "2 (66.7%) / 2", "1 (100.0%) / 1"]
    assert ablation_rows(report)[1] == ["gopher_quality: stopwords", "2 (66.7%) / 0", "0 (0.0%) / 0"]
