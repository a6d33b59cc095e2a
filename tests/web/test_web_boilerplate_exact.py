"""Distribution (boilerplate) filtering and exact dedup on Spark, with hand-written EN/ZH cases."""

from __future__ import annotations

import pyarrow as pa
import pytest

from skycurate.schemas.web import BoilerplateConfig
from skycurate.stages.web.boilerplate import line_hash, normalize_line, remove_boilerplate
from skycurate.stages.web.exact_dedup import TEXT_HASH, exact_dedup, normalized_text_hash

NAV_EN = "Home | About | Contact"
NAV_ZH = "首页 | 关于我们 | 联系我们"
FOOTER = "© 2024 Example Media. All rights reserved."


def test_line_normalisation_merges_templates_that_differ_in_case_space_and_numbers():
    assert normalize_line("  © 2023   Example Media ") == normalize_line("© 2024 example media")
    assert line_hash("Home | About") == line_hash("home |  about")
    assert line_hash("   ") is None
    assert normalize_line("第3页", digits=False) != normalize_line("第4页", digits=False)


def _docs(spark, rows):
    table = pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows],
                      "text_bytes": [len(r[1].encode()) for r in rows]})
    return spark.createDataFrame(table.to_pandas())


def test_recurring_lines_are_removed_everywhere_and_short_leftovers_dropped(spark):
    body_en = "Rivers carry sediment to the sea and build deltas over thousands of years. " * 2
    body_zh = "长江流域的湿地为许多候鸟提供了越冬的栖息地，也调节着洪水。" * 3
    own_en = ["granite", "willow", "harbour", "lantern", "meadow", "copper"]
    own_zh = ["春", "夏", "秋", "冬", "晨", "夜"]
    rows = []
    for i in range(6):
        # The footer years differ, but numbers are normalised, so it is one template line.
        rows.append((f"en{i}", f"{NAV_EN}\n{body_en}\nThe {own_en[i]} page adds its own detail.\n"
                               f"© 202{i} Example Media. All rights reserved."))
        rows.append((f"zh{i}", f"{NAV_ZH}\n{body_zh}\n{own_zh[i]}天的段落有自己的内容。\n{FOOTER}"))
    rows.append(("nav-only", f"{NAV_EN}\n{FOOTER}\nok"))
    cfg = BoilerplateConfig(max_doc_frequency=5, min_chars_after=10)
    out = {r.id: r for r in remove_boilerplate(_docs(spark, rows), cfg).collect()}

    assert len(out) == len(rows)
    for i in range(6):
        assert NAV_EN not in out[f"en{i}"].text and "All rights reserved" not in out[f"en{i}"].text
        assert f"The {own_en[i]} page adds" in out[f"en{i}"].text  # the page's own line stays
        assert body_en.strip() not in out[f"en{i}"].text  # a body line shared by 6 > 5 documents goes too
        assert NAV_ZH not in out[f"zh{i}"].text and f"{own_zh[i]}天的段落" in out[f"zh{i}"].text
        assert out[f"en{i}"].reject_reason is None and out[f"zh{i}"].reject_reason is None
        assert out[f"en{i}"].boilerplate_bytes > 0
    assert out["nav-only"].reject_stage == "boilerplate"
    assert out["nav-only"].reject_reason.startswith("boilerplate: 2 chars left < 10")


def test_lines_below_the_document_frequency_stay(spark):
    rows = [(f"d{i}", f"Shared intro line.\nUnique body number {'abcdefghij'[i]} with enough text to keep.")
            for i in range(4)]
    out = remove_boilerplate(_docs(spark, rows), BoilerplateConfig(max_doc_frequency=4, min_chars_after=10)).collect()
    assert all("Shared intro line." in r.text and r.boilerplate_lines == 0 for r in out)


@pytest.mark.parametrize("a,b,same", [
    ("Hello, World!", "hello world", True),
    ("长江是亚洲第一长河。", "长江是亚洲第一长河", True),
    ("Ｆｕｌｌ width", "full width", True),
    ("hello world", "hello word", False),
    ("", "", None),
])
def test_normalized_text_hash(a, b, same):
    ha, hb = normalized_text_hash(a), normalized_text_hash(b)
    if same is None:
        assert ha is None and hb is None
    else:
        assert (ha == hb) is same


def test_exact_dedup_keeps_the_smallest_id_and_respects_a_previous_version(spark):
    texts = {"b": "Same text, here.", "a": "same text here", "c": "Different text.", "d": "", "e": "",
             "f": "Seen last week!"}
    table = pa.table({"id": list(texts), "text": list(texts.values())})
    hashed = TEXT_HASH(table.to_batches()[0], None)
    df = spark.createDataFrame(pa.Table.from_batches([hashed]).to_pandas())
    previous = spark.createDataFrame([("old1", normalized_text_hash("seen last week"))], "id string, text_hash long")
    out = {r.id: r for r in exact_dedup(df, previous).collect()}
    assert out["a"].reject_reason is None
    assert out["b"].reject_reason == "exact_duplicate of a" and out["b"].reject_stage == "exact_dedup"
    assert out["c"].reject_reason is None
    assert out["d"].reject_reason is None and out["e"].reject_reason is None  # empty texts are not duplicates
    assert out["f"].reject_reason == "exact_duplicate of old1 (previous version)"
