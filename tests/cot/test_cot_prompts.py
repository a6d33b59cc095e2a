"""Prompt preparation for CoT distillation (stages/cot/prompts.py): row checks, normalisation,
exact and near dedup with the numbers guard, decontamination, templating, SFT messages."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest

from skycurate.schemas import cot as S
from skycurate.stages.cot import prompts as P


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _batch(rows: list[dict]) -> pa.RecordBatch:
    """pyarrow infers columns from the first row only: give every row every key."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.RecordBatch.from_pylist([{k: r.get(k) for k in keys} for r in rows])


def test_check_batch_quarantines_each_kind_of_bad_row_and_normalises_the_rest(tmp_path):
    (tmp_path / "ok.png").write_bytes(_png())
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    rows = [
        {"id": "a", "question": "  What is  2+3?\r\n\n", "reference_answer": " 5 ", "answer_type": "Math"},
        {"id": "b", "question": "Pick one", "reference_answer": "B", "answer_type": "mcq", "images": ["ok.png"]},
        {"id": "c", "question": "q", "reference_answer": None, "answer_type": "math"},
        {"id": None, "question": "q", "reference_answer": "1", "answer_type": "math"},
        {"id": "e", "question": "   ", "reference_answer": "1", "answer_type": "math"},
        {"id": "f", "question": "q", "reference_answer": "1", "answer_type": "essay"},
        {"id": "g", "question": "q", "reference_answer": "1", "answer_type": "math", "images": ["broken.png"]},
        {"id": "h", "question": "q", "reference_answer": "1", "answer_type": "math", "images": ["missing.png"]},
        {"id": "i", "question": "q", "reference_answer": "1", "answer_type": "math", "s_v": 1.7},
    ]
    batch = _batch(rows)
    out = P.check_batch(batch, base_dir=str(tmp_path)).to_pylist()
    assert [r["quarantine_reason"] for r in out] == [
        None, None, S.MISSING_REFERENCE, S.MISSING_ID, S.MISSING_QUESTION, S.UNKNOWN_ANSWER_TYPE, S.BAD_IMAGE,
        S.BAD_IMAGE, S.BAD_SCORE]
    a, b = out[0], out[1]
    assert a["question"] == "What is  2+3?" and a["reference_answer"] == "5" and a["answer_type"] == "math"
    assert a["dedup_key"] == "what is 2+3?" and a["numbers"] == "2 3" and a["record"] is None
    assert b["images"] == [(tmp_path / "ok.png").read_bytes()]
    assert "does not decode" in out[6]["quarantine_detail"] and "missing.png" in out[7]["quarantine_detail"]
    assert out[2]["record"] and '"id": "c"' in out[2]["record"]       # the bad row is kept, as JSON
    numeric = P.check_batch(pa.RecordBatch.from_pylist([{"id": 7, "question": "q", "reference_answer": 12.0,
                                                         "answer_type": "numeric"}])).to_pylist()[0]
    assert (numeric["id"], numeric["reference_answer"], numeric["quarantine_reason"]) == ("7", "12", None)


def test_render_and_the_sft_messages_column(spark):
    from skycurate.stages.cot.outputs import messages_column

    raw = S.TemplateConfig(template="Question: {question}\nAnswer:")
    assert P.render("What is 2+3?", raw, None) == "Question: What is 2+3?\nAnswer:"
    chat = S.TemplateConfig(mode="chat", system="Think step by step.", user_template="{question}\nBox the answer.",
                            assistant_prefix="<think>\n")
    with pytest.raises(Exception, match="tokenizer"):
        P.render("q", chat, None)
    with pytest.raises(ValueError, match="question"):
        S.TemplateConfig(template="no placeholder")

    def messages(tcfg: S.TemplateConfig, completion: str) -> list[dict]:
        user = P.user_content("What is 2+3?", tcfg) if tcfg.mode == "chat" else "What is 2+3?"
        df = spark.createDataFrame([(user, completion)], "user_content string, completion string")
        return df.select(messages_column(tcfg).alias("m")).toArrow()["m"].to_pylist()[0]

    assert messages(raw, " <think>2+3=5</think> \\boxed{5}") == [
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "<think>2+3=5</think> \\boxed{5}"}]
    msgs = messages(chat, "2+3=5</think> \\boxed{5}")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"] and msgs[0]["content"] == chat.system
    assert msgs[1]["content"] == "What is 2+3?\nBox the answer." and msgs[2]["content"].startswith("<think>\n2+3")


def _prepare(spark, rows, cfg=None, index=None, keys=()):
    df = spark.createDataFrame(pa.Table.from_batches([_batch(rows)]))
    out = P.prepare_on_spark(df, cfg or S.PrepareConfig(), index, list(keys)).toArrow().to_pylist()
    assert len(out) == len(rows)                                      # every input row, once
    return {r["id"]: r for r in out}


def test_prepare_dedups_exactly_and_nearly_but_never_across_different_numbers(spark):
    base = "A farmer has 12 cows and buys 30 more cows at the market on Monday. How many cows does he have now?"
    rows = [
        {"id": "p1", "question": base, "reference_answer": "42", "answer_type": "numeric"},
        {"id": "p0", "question": base.upper(), "reference_answer": "42", "answer_type": "numeric"},   # exact (case)
        {"id": "p2", "question": base.replace("on Monday", "on Tuesday"), "reference_answer": "42",
         "answer_type": "numeric"},                                                                 # near, same numbers
        {"id": "p3", "question": base.replace("30", "31"), "reference_answer": "43", "answer_type": "numeric"},
        {"id": "p4", "question": "What is 7*6?", "reference_answer": "42", "answer_type": "math"},
        {"id": "p4", "question": "What is 7*7?", "reference_answer": "49", "answer_type": "math"},     # id reused
    ]
    out = _prepare(spark, rows)
    assert out["p1"]["reject_reason"] == "exact_duplicate of p0"      # smallest id survives exact dedup
    # near dedup keeps the longest question of a cluster ("Tuesday" is longer than "Monday")
    assert out["p2"]["reject_reason"] is None
    assert out["p0"]["reject_stage"] == S.NEAR_DEDUP and out["p0"]["reject_reason"] == "near_duplicate of p2"
    assert out["p3"]["reject_reason"] is None                          # one number differs: another problem
    raw = P.prepare_on_spark(spark.createDataFrame(pa.Table.from_batches([_batch(rows)])), S.PrepareConfig(), None, []) \
        .toArrow().to_pylist()
    p4 = sorted((r["question"], r["quarantine_reason"]) for r in raw if r["id"] == "p4")
    assert p4 == [("What is 7*6?", None), ("What is 7*7?", S.DUPLICATE_ID)]
    # the numbers guard off: the changed number is a near duplicate too
    loose = _prepare(spark, rows[:4], S.PrepareConfig(same_numbers=False))
    assert loose["p3"]["reject_stage"] == S.NEAR_DEDUP


def test_prepare_drops_questions_found_in_a_benchmark(spark):
    from skycurate.stages.leakage.decontaminate import build_index

    bench_q = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
    bench = {"test": pa.table({"benchmark": ["gsm8k"], "split": ["test"], "item_id": ["t1"], "text": [bench_q]})}
    cfg = S.PrepareConfig()
    index = build_index([bench], cfg.decontaminate)
    rows = [
        {"id": "long", "question": "Hello! " + bench_q + " How many clips did she sell?", "reference_answer": "72",
         "answer_type": "numeric"},
        {"id": "short", "question": "what is 2 + 2?", "reference_answer": "4", "answer_type": "math"},
        {"id": "clean", "question": "A shop sold 14 pens on Monday and 9 on Tuesday. How many in all?",
         "reference_answer": "23", "answer_type": "numeric"},
    ]
    out = _prepare(spark, rows, cfg, index, keys=[P.dedup_key("What is 2 + 2?")])
    assert out["long"]["reject_stage"] == S.DECONTAMINATE and out["long"]["reject_reason"].startswith(S.CONTAMINATED)
    assert out["short"]["reject_reason"] == f"{S.CONTAMINATED}: equals a benchmark item"   # shorter than an n-gram
    assert out["clean"]["reject_reason"] is None


def test_prompt_rows_penalty_context_and_chat_endpoint_text(smoke_teacher):
    """The distill task's templating step: R1V penalty per prompt from s_v/s_t/s_i, prompts over the
    context rejected with the numbers, and the user turn alone for OpenAI chat endpoints."""
    import math

    from transformers import AutoTokenizer


    teacher, _ = smoke_teacher
    tok = AutoTokenizer.from_pretrained(teacher)
    table = pa.table({"id": ["a", "b", "long"], "question": ["What is 2+3?", "What is 4+4?", "word " * 400],
                      "s_v": [1.0, 0.2, None], "s_t": [1.0, 0.5, None], "s_i": [1.0, 0.2, None]})
    raw = S.TemplateConfig(template="Question: {question}\nAnswer:")
    gen = S.GenerateConfig(sampling={"max_new_tokens": 40})
    items, too_long, extra = P.generation_items(table, raw, S.EngineConfig(model=str(teacher)), gen, tok)
    assert [i.id for i in items] == ["a", "b"] and items[0].text == "Question: What is 2+3?\nAnswer:"
    assert items[0].penalty == 1.0                                         # all scores 1: no penalty
    assert items[1].penalty == pytest.approx(min(2.0, math.exp(1 - 0.3)))  # R1V: P = min(2, e^(1 - mean))
    assert too_long[0]["id"] == "long" and too_long[0]["reason"] == S.TOO_LONG
    assert "+ 40 new tokens > context 256" in too_long[0]["detail"]
    assert extra["prompt_tokens_counted"].to_pylist()[0] == len(tok(items[0].text)["input_ids"])   # BOS counted
    chat = S.TemplateConfig(mode="chat", user_template="{question} Box it.")
    items, _, _ = P.generation_items(table.slice(0, 1), chat, S.EngineConfig(engine="openai", model="t", base_url="http://x"),
                               gen, None)
    assert items[0].text == "What is 2+3? Box it."                         # the server applies its chat template
    local, _, _ = P.generation_items(table.slice(0, 1), chat, S.EngineConfig(model=str(teacher)), gen, tok)
    assert local[0].text == "<s>Question: What is 2+3? Box it.\nAnswer:"   # the teacher's own chat template
