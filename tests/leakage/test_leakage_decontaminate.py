"""N-gram decontamination: tokens and spans, the index, GPT-3 cutting, drop mode, and one Spark run."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from skycurate.samples.web import EN_PARAGRAPHS, ZH_PARAGRAPHS
from skycurate.schemas import leakage as schemas
from skycurate.schemas.leakage import (
    CONTAMINATION_SCHEMA,
    DecontaminateConfig,
    annotated_schema,
)
from skycurate.stages import accounting
from skycurate.stages.accounting import split_verdicts_arrow
from skycurate.stages.leakage.decontaminate import (
    build_index,
    cut_spans,
    decontaminate_on_spark,
    rejected_rows,
    rejected_rows_arrow,
    scan_batch,
    scan_table,
    summary,
)
from skycurate.stages.leakage.ngrams import ngram_hashes, tokenize

EN_ITEM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May? Natalia sold 48 / 2 = 24 clips in May")
ZH_ITEM = "小明有五个苹果，他给了小红两个苹果，又从妈妈那里得到了三个苹果。请问小明现在一共有多少个苹果？答案是六个苹果"
UNIT = "abcd "          # filler whose cuts land on known characters


def _bench(*rows: tuple[str, str, str, str]) -> pa.Table:
    b, s, i, t = zip(*rows)
    return pa.table({"benchmark": list(b), "split": list(s), "item_id": list(i), "text": list(t)})


BENCH = _bench(("gsm8k", "test", "g1", EN_ITEM), ("cmath", "test", "c1", ZH_ITEM))


def _docs(*texts: str | None) -> pa.Table:
    return pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": pa.array(list(texts), pa.string())})


def _scan(texts, cfg=None, bench=BENCH):
    cfg = cfg or DecontaminateConfig()
    return scan_table(_docs(*texts), build_index(bench, cfg), cfg)


def _n_tokens(text: str) -> int:
    return int(tokenize([text]).counts[0])


# ============================================================================ tokens and hashes

def test_tokens_carry_spans_into_the_original_text():
    text = "  Don't STOP—the 2023年GDP增长了５％, café!"
    toks = tokenize([text])
    words = [text[s:e] for s, e in zip(toks.start, toks.end)]
    assert words == ["Don't", "STOP", "the", "2023", "年", "GDP", "增", "长", "了", "５", "café"]


@pytest.mark.parametrize("a, b", [
    ("Don't stop the music", "dont   STOP, the music!"),
    ("a well-known fact", "a well known fact"),
    ("stop—the end", "stop — the end"),
    ("ＡＢＣ１２３ café", "abc123 cafe"),
    ("小明有五个苹果", "小 明 有 五 个 苹 果"),
    ("共有3个apple。", "共有 3 个 Apple"),
])
def test_normalisation_makes_light_edits_equal(a, b):
    ta, tb = tokenize([a]), tokenize([b])
    assert ta.hashes.tolist() == tb.hashes.tolist()


def test_different_words_hash_differently_and_hashes_do_not_depend_on_batching():
    toks = tokenize(["the cat sat", "the cat sad"])
    assert toks.hashes[2] != toks.hashes[5]
    texts = [EN_ITEM, ZH_ITEM, None, "", "short one"]
    together = ngram_hashes(tokenize(texts), 5, (2,))
    for i, t in enumerate(texts):
        alone = ngram_hashes(tokenize([t]), 5, (2,))
        for L in (5, 2):
            h, first = together[L]
            toks_all = tokenize(texts)
            mine = h[(first >= toks_all.offsets[i]) & (first < toks_all.offsets[i + 1])]
            assert mine.tolist() == alone[L][0].tolist()


def test_ngrams_never_cross_text_boundaries():
    toks = tokenize(["a b c", "d e", "f g h i"])
    grams = ngram_hashes(toks, 3, (2,))
    assert grams[3][1].tolist() == [0, 5, 6]          # "a b c", "f g h", "g h i"
    assert grams[2][1].tolist() == [0, 1, 3, 5, 6, 7]
    assert grams[3][0][0] != grams[2][0][0]           # the length is part of the hash


# ============================================================================ index

def test_index_is_compact_and_reports_its_size():
    cfg = DecontaminateConfig()
    index = build_index({"gsm8k": {"test": BENCH.slice(0, 1)}, "cmath": {"test": BENCH.slice(1, 1)}}, cfg)
    en, zh = _n_tokens(EN_ITEM), _n_tokens(ZH_ITEM)
    assert index.items["item_id"].to_pylist() == ["g1", "c1"]
    assert index.items["tokens"].to_pylist() == [en, zh]
    assert len(index.keys) == (en - 12) + (zh - 12)   # every 13-gram of both items is distinct
    assert index.keys.dtype == np.uint64 and np.all(np.diff(index.keys.astype(np.float64)) >= 0)
    assert index.nbytes == index.keys.nbytes + index.item.nbytes + index.items.nbytes
    assert index.nbytes < 2_000


def test_only_configured_splits_are_indexed():
    bench = _bench(("b", "test", "t", EN_ITEM), ("b", "train", "tr", ZH_ITEM))
    doc = "intro " * 60 + ZH_ITEM + " outro" * 60
    ann, matches = _scan([doc], bench=bench)
    assert matches.num_rows == 0 and not ann["contaminated"][0].as_py()
    ann, matches = _scan([doc], DecontaminateConfig(splits=["test", "train"]), bench=bench)
    assert matches["item_id"].to_pylist() == ["tr"] and matches["split"].to_pylist() == ["train"]


def test_short_items_are_indexed_whole_above_min_item_tokens():
    nine = "the answer is the smallest prime above forty one"      # 9 tokens
    four = "the answer is seven"
    bench = _bench(("b", "test", "nine", nine), ("b", "test", "four", four))
    cfg = DecontaminateConfig()
    index = build_index(bench, cfg)
    assert index.lengths == (9, 13) and index.skipped_short == {"b": 1}
    doc = "Intro text here. " + nine.upper() + "! More text. The answer is seven."
    _, matches = scan_table(_docs(doc), index, cfg)
    assert matches.to_pylist() == [{"doc_id": "d0", "benchmark": "b", "split": "test", "item_id": "nine",
                                    "matched_ngrams": 1, "longest_span_tokens": 9,
                                    "longest_span_text": nine.upper()}]
    # A word short of the whole item is no match.
    _, matches = scan_table(_docs("the answer is the smallest prime above forty"), index, cfg)
    assert matches.num_rows == 0
    strict = DecontaminateConfig(min_item_tokens=13)
    assert build_index(bench, strict).lengths == (13,) and len(build_index(bench, strict).keys) == 0


def test_ngram_shared_by_two_items_reports_both():
    shared = " ".join(f"w{i}" for i in range(13))
    bench = _bench(("b", "test", "x", "alpha " + shared), ("b", "test", "y", shared + " omega"))
    _, matches = _scan(["lead " * 50 + shared + " tail" * 50], bench=bench)
    assert sorted(matches["item_id"].to_pylist()) == ["x", "y"]
    assert matches["matched_ngrams"].to_pylist() == [1, 1]


# ============================================================================ scanning

def test_verbatim_and_lightly_edited_english_is_found():
    filler = UNIT * 100
    edited = (EN_ITEM.upper().replace(",", "").replace("?", " ?!").replace(" ", "  ")
              .replace("half as many", "half\nas many"))
    words = EN_ITEM.split(" ")
    mid = len(words) // 2
    changed = " ".join(words[:mid] + ["BANANAS"] + words[mid + 1:])
    texts = [filler + EN_ITEM + " " + filler, filler + edited + " " + filler, filler + changed + " " + filler]
    ann, matches = _scan(texts)
    tokens = _n_tokens(EN_ITEM)
    full = tokens - 12
    rows = {r["doc_id"]: r for r in matches.to_pylist()}
    assert set(rows) == {"d0", "d1", "d2"}
    assert rows["d0"]["matched_ngrams"] == full and rows["d0"]["longest_span_tokens"] == tokens
    assert rows["d0"]["longest_span_text"] == EN_ITEM[:300]
    assert rows["d1"]["matched_ngrams"] == full and rows["d1"]["longest_span_tokens"] == tokens
    # The changed word breaks the 13 n-grams that contain it; the longer side survives whole.
    k = _n_tokens(" ".join(words[:mid]))
    assert rows["d2"]["matched_ngrams"] == full - 13
    assert rows["d2"]["longest_span_tokens"] == max(k, tokens - k - 1)
    assert ann["contaminated"].to_pylist() == [True, True, True]
    assert ann["leak_ngrams"].to_pylist() == [full, full, full - 13]
    assert ann["reject_reason"].to_pylist() == [None, None, None]
    for t in ann["text"].to_pylist():
        assert "clips" not in t.lower() and "natalia" not in t.lower()


def test_verbatim_and_lightly_edited_chinese_is_found():
    filler = "长江是亚洲第一长河。" * 40
    spaced = " ".join(ZH_ITEM).replace("，", ", ").replace("五", "５")   # spaces, ASCII comma, 4th token changed
    changed = ZH_ITEM[:25] + "桔" + ZH_ITEM[26:]
    mixed = "据报道2023年GDP增长。" + ZH_ITEM + "Reuters报道"
    ann, matches = _scan([filler + ZH_ITEM + filler, filler + spaced + filler, filler + changed + filler,
                          filler + mixed + filler])
    tokens = _n_tokens(ZH_ITEM)
    rows = {r["doc_id"]: r for r in matches.to_pylist()}
    assert set(rows) == {"d0", "d1", "d2", "d3"}
    assert rows["d0"]["matched_ngrams"] == tokens - 12 and rows["d0"]["longest_span_tokens"] == tokens
    assert rows["d0"]["longest_span_text"] == ZH_ITEM
    assert rows["d1"]["matched_ngrams"] == tokens - 12 - 4      # the n-grams starting at tokens 0..3 hold 五
    assert rows["d1"]["longest_span_tokens"] == tokens - 4
    assert rows["d1"]["longest_span_text"].startswith("个 苹 果 ,  他 给")
    assert rows["d2"]["matched_ngrams"] == tokens - 12 - 13
    assert rows["d3"]["matched_ngrams"] == tokens - 12
    for t in ann["text"].to_pylist():
        assert "苹果" not in t


def test_unrelated_corpus_is_untouched_byte_for_byte():
    rng = random.Random(7)
    texts = ["\n\n".join(rng.sample(EN_PARAGRAPHS if i % 2 else ZH_PARAGRAPHS, 4)) for i in range(40)]
    texts += [None, "", "!!! ...", "apples " * 400]
    docs = _docs(*texts)
    cfg = DecontaminateConfig()
    ann, matches = scan_table(docs, build_index(BENCH, cfg), cfg)
    assert matches.num_rows == 0 and matches.schema == CONTAMINATION_SCHEMA
    assert ann["text"].equals(docs["text"])
    assert ann["contaminated"].to_pylist() == [False] * len(texts)
    assert set(ann["leak_ngrams"].to_pylist()) == {0} and set(ann["leak_chars_removed"].to_pylist()) == {0}
    assert ann["reject_reason"].null_count == len(texts)


# ============================================================================ GPT-3 cutting

def _planted(before: str, after: str, item: str = EN_ITEM.rstrip("?").replace("?", ".")) -> tuple[str, int, int]:
    text = before + item + after
    return text, len(before), len(before) + len(item)


def test_gpt3_cuts_200_chars_around_the_match_and_keeps_long_fragments():
    text, s, e = _planted(UNIT * 100, " " + UNIT * 100)
    ann, _ = _scan([text])
    assert text[s].isalnum() and text[e - 1].isalnum()
    expected = text[:s - 200].strip() + "\n" + text[e + 200:].strip()
    assert ann["text"][0].as_py() == expected
    assert text[s - 201] == " " and text[e + 200] == " "               # cuts fell on whitespace: no snapping
    assert ann["leak_chars_removed"][0].as_py() == len(text) - (len(expected) - 1)
    assert ann["contaminated"][0].as_py() and ann["reject_reason"][0].as_py() is None


def test_gpt3_cut_edges_move_out_to_whitespace_not_into_words():
    text, s, e = _planted(UNIT * 100 + "xy ", " zz" + UNIT * 100)
    assert text[s - 200 - 1:s - 200 + 1] == "cd" and text[e + 200 - 1:e + 200 + 1] == "bc"   # both inside words
    ann, _ = _scan([text])
    assert ann["text"][0].as_py() == text[:s - 203].strip() + "\n" + text[e + 202:].strip()
    for frag in ann["text"][0].as_py().split("\n"):
        assert set(frag.split()) == {"abcd"}


def test_gpt3_drops_short_leftovers_and_rejects_when_nothing_is_left():
    text, _, e = _planted(UNIT * 50, " " + UNIT * 100)           # 250 chars before: 50 left, dropped
    ann, _ = _scan([text])
    assert ann["text"][0].as_py() == text[e + 200:].strip()
    short, _, _ = _planted(UNIT * 30, " " + UNIT * 30)
    ann, _ = _scan([short])
    assert ann["reject_stage"][0].as_py() == "decontaminate"
    assert ann["reject_reason"][0].as_py() == "contaminated:nothing_left"
    assert ann["text"][0].as_py() == short and ann["leak_chars_removed"][0].as_py() == len(short)


def test_gpt3_rejects_documents_split_more_than_max_splits():
    gap = " " + UNIT * 140                                   # 700 chars: cuts do not merge, 300 chars survive
    ten = gap + gap.join([EN_ITEM] * 10) + gap
    eleven = gap + gap.join([EN_ITEM] * 11) + gap
    near = gap + EN_ITEM + " " + UNIT * 60 + EN_ITEM + gap     # 300 chars apart: one merged cut
    ann, matches = _scan([ten, eleven, near])
    assert ann["reject_reason"].to_pylist() == [None, "contaminated:split>10", None]
    assert len(ann["text"][0].as_py().split("\n")) == 11
    assert len(ann["text"][2].as_py().split("\n")) == 2
    assert ann["text"][1].as_py() == eleven
    per_doc = {r["doc_id"]: r for r in matches.to_pylist()}
    assert per_doc["d0"]["matched_ngrams"] == _n_tokens(EN_ITEM) - 12        # distinct n-grams of the item
    assert ann["leak_ngrams"][0].as_py() == 10 * (_n_tokens(EN_ITEM) - 12)  # every matching position
    ann, _ = _scan([ten], DecontaminateConfig(max_splits=2))
    assert ann["reject_reason"][0].as_py() == "contaminated:split>2"


def test_cut_spans_direct():
    cfg = DecontaminateConfig(window_chars=5, min_fragment_chars=3)
    text = "0123456789" * 6                                  # no whitespace: exact cuts
    fragments, cuts = cut_spans(text, [(20, 25), (40, 42)], cfg)
    assert cuts == 2 and fragments == [text[:15], text[30:35], text[47:]]
    fragments, cuts = cut_spans(text, [(20, 25), (33, 36)], cfg)   # windows overlap: merged
    assert cuts == 1 and fragments == [text[:15], text[41:]]


# ============================================================================ drop_document and accounting

def test_drop_document_mode_rejects_any_match_and_keeps_text():
    filler = UNIT * 100
    texts = [filler + EN_ITEM + " " + filler, filler, "前言。" * 100 + ZH_ITEM]
    ann, matches = _scan(texts, DecontaminateConfig(mode="drop_document"))
    assert ann["reject_reason"].to_pylist() == ["contaminated", None, "contaminated"]
    assert ann["text"].to_pylist() == texts
    assert ann["leak_chars_removed"].to_pylist() == [len(texts[0]), 0, len(texts[2])]
    assert sorted(matches["doc_id"].to_pylist()) == ["d0", "d2"]
    kept, rejected = split_verdicts_arrow(ann)
    assert kept.num_rows + rejected.num_rows == len(texts) and kept["id"].to_pylist() == ["d1"]
    rej = rejected_rows_arrow(ann, DecontaminateConfig(rejected_preview_chars=10))
    assert rej.schema == schemas.REJECTED_SCHEMA
    assert rej.to_pylist()[0] == {"id": "d0", "reject_stage": "decontaminate", "reject_reason": "contaminated",
                                  "leak_ngrams": _n_tokens(EN_ITEM) - 12, "text_chars": len(texts[0]),
                                  "text_preview": texts[0][:10]}


def test_schema_keeps_input_columns_and_earlier_verdicts():
    filler = UNIT * 100
    batch = pa.record_batch({
        "id": ["a", "b", "c"], "lang": ["en", "en", "en"],
        "text": [filler + EN_ITEM + filler, filler + EN_ITEM + filler, "x"],
        "reject_stage": [None, "quality", None], "reject_reason": [None, "too short", None]})
    cfg = DecontaminateConfig()
    ann, matches = scan_batch(batch, build_index(BENCH, cfg), cfg)
    assert ann.schema == annotated_schema(batch.schema)
    assert ann.schema.names == ["id", "lang", "text", "contaminated", "leak_ngrams", "leak_chars_removed",
                                "reject_stage", "reject_reason"]
    assert ann.column("reject_reason").to_pylist() == [None, "too short", None]
    assert ann.column("contaminated").to_pylist() == [True, None, False]   # b was not scanned
    assert ann.column("text")[1].as_py() == batch.column("text")[1].as_py()
    assert matches.column("doc_id").to_pylist() == ["a"]
    assert schemas.VERDICT_FIELDS == accounting.VERDICT_FIELDS


def test_empty_batch_and_empty_index():
    cfg = DecontaminateConfig()
    empty = _docs().slice(0, 0)
    ann, matches = scan_table(empty, build_index(BENCH, cfg), cfg)
    assert ann.num_rows == 0 and matches.num_rows == 0 and ann.schema == annotated_schema(empty.schema)
    no_items = build_index(BENCH.slice(0, 0), cfg)
    assert no_items.num_items == 0 and len(no_items.keys) == 0
    docs = _docs(EN_ITEM)
    ann, matches = scan_table(docs, no_items, cfg)
    assert matches.num_rows == 0 and ann["text"].equals(docs["text"])


# ============================================================================ Spark

def _synthetic_items(rng: random.Random) -> tuple[pa.Table, dict[str, str]]:
    """10 English and 10 Chinese items (test) plus 5 train items that are not indexed."""
    en_vocab = sorted({w.strip(".,;:").lower() for p in EN_PARAGRAPHS for w in p.split() if w.isalpha()})
    han = sorted({c for p in ZH_PARAGRAPHS for c in p if "\u4e00" <= c <= "\u9fff"})
    rows, texts = [], {}
    for i in range(10):
        en = f"Question {i}: " + " ".join(rng.choice(en_vocab) for _ in range(30)) + "? Answer: " + str(100 + i)
        zh = f"题目{i}：" + "".join(rng.choice(han) for _ in range(40)) + "？答案是" + str(i)
        rows += [("en_bench", "test", f"e{i}", en), ("zh_bench", "test", f"z{i}", zh)]
        texts[f"e{i}"], texts[f"z{i}"] = en, zh
    for i in range(5):
        rows.append(("en_bench", "train", f"t{i}", " ".join(rng.choice(en_vocab) for _ in range(30))))
    return _bench(*rows), texts


def _edit(text: str, rng: random.Random) -> str:
    """Case, punctuation and whitespace noise plus one replaced token in the middle."""
    if text.isascii() or " " in text:
        words = text.split(" ")
        words[len(words) // 2] = "zzzz"
        return "  ".join(words).upper().replace(":", " -").replace("?", "!!")
    mid = len(text) // 2
    return text[:mid] + "鑫" + text[mid + 1:].replace("：", ": ").replace("？", "?")


def test_spark_job_finds_every_planted_item_and_reconciles(spark):
    rng = random.Random(11)
    bench, item_text = _synthetic_items(rng)
    ids = [k for k in item_text]                                     # 20 test items
    docs, planted, short_docs = [], {}, set()
    for i in range(200):
        lang_en = i % 2 == 0
        pool = EN_PARAGRAPHS if lang_en else ZH_PARAGRAPHS
        k = 3 if lang_en else 9           # >= 600 characters each side of a planted item
        paras = rng.sample(pool, 2 * k)
        doc_id = f"doc{i:03d}"
        if i < 60:
            item = ids[i % 20]             # 40 verbatim, 20 edited; English items in English pages
            text = item_text[item] if i < 40 else _edit(item_text[item], rng)
            if i % 7 == 0:                 # a short page: the item and too little around it
                body = paras[0][:80] + " " + text
                short_docs.add(doc_id)
            else:
                body = "\n\n".join(paras[:k]) + "\n\n" + text + "\n\n" + "\n\n".join(paras[k:])
            planted[doc_id] = item
        else:
            body = "\n\n".join(paras[:4])
        docs.append({"id": doc_id, "url": f"https://example.com/{i}", "text": body})
    table = pa.Table.from_pylist(docs)
    cfg = DecontaminateConfig()
    index = build_index({"en_bench": {"test": bench.filter(pa.compute.equal(bench["benchmark"], "en_bench"))},
                         "zh_bench": {"test": bench.filter(pa.compute.equal(bench["benchmark"], "zh_bench"))}},
                        cfg)
    assert index.num_items == 20          # train items are not indexed by default

    df = spark.createDataFrame(table.to_pandas()).repartition(3)
    annotated_df, matches_df = decontaminate_on_spark(df, index, cfg)
    ann = {r["id"]: r.asDict() for r in annotated_df.collect()}
    matches = [r.asDict() for r in matches_df.collect()]

    # Every planted item is found in its document; no other document is touched.
    assert {(m["doc_id"], m["item_id"]) for m in matches} == set(planted.items())
    assert {d for d, r in ann.items() if r["contaminated"]} == set(planted)
    originals = {d["id"]: d["text"] for d in docs}
    for d, r in ann.items():
        if d not in planted:
            assert r["text"] == originals[d] and r["reject_reason"] is None and r["leak_ngrams"] == 0
        elif r["reject_reason"] is None:
            assert item_text[planted[d]][12:40] not in r["text"]
    assert {d for d, r in ann.items() if r["reject_reason"]} == short_docs
    # Spark gives what the pure function gives.
    local_ann, local_matches = scan_table(table, index, cfg)
    assert {r["id"]: r["text"] for r in local_ann.to_pylist()} == {d: r["text"] for d, r in ann.items()}
    assert len(local_matches) == len(matches)

    # Accounting and the rejected dataset.
    kept = annotated_df.filter("reject_reason IS NULL").count()
    rejected = rejected_rows(annotated_df, cfg)
    assert kept + rejected.count() == table.num_rows == annotated_df.count()
    assert {r["id"] for r in rejected.collect()} == short_docs

    stats = {s["benchmark"]: s for s in summary(matches_df, annotated_df, index)}
    for name, prefix in (("en_bench", "e"), ("zh_bench", "z")):
        mine = {d for d, it in planted.items() if it.startswith(prefix)}
        assert stats[name]["items"] == 10 and stats[name]["items_contaminated"] == 10
        assert stats[name]["pct_items_contaminated"] == 100.0
        assert stats[name]["docs_touched"] == len(mine) == 30
        assert stats[name]["pct_docs_touched"] == pytest.approx(15.0)
        assert stats[name]["docs_rejected"] == len(mine & short_docs)
        assert stats[name]["chars_removed"] == sum(ann[d]["leak_chars_removed"] for d in mine)
    spark.catalog.clearCache()
