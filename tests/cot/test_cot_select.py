"""CoT selection: the R1V repetition penalty, per-chain quality checks (EN and ZH), adaptive-length
selection per prompt, the accounting, the Spark wrapper and the chart."""

from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from skycurate.errors import ConfigError, StageContractError
from skycurate.schemas.config import validate_config
from skycurate.schemas.cot_select import QualityCheckConfig, SelectConfig
from skycurate.stages.accounting import (
    AccountingError,
    FunnelStep,
    split_verdicts_arrow,
)
from skycurate.stages.cot import quality as Q
from skycurate.stages.cot.select import (
    output_schema,
    prompt_summary,
    prompt_summary_on_spark,
    reason_counts,
    repetition_penalties,
    repetition_penalty,
    select_chains,
    select_on_spark,
    selection_funnel,
)

QC = QualityCheckConfig()

# ---------------------------------------------------------------------------------------- texts

EN_REASONING = """Let me work out the total cost. The store sells pencils at 3 dollars each and notebooks at 5 dollars each.

Maria buys 4 pencils, so the pencils cost $4 \\times 3 = 12$ dollars. She also buys 2 notebooks, which cost $2 \\times 5 = 10$ dollars.

Adding both amounts gives $12 + 10 = 22$. Let me double-check: four pencils at three dollars is twelve, two notebooks at five dollars is ten, and twelve plus ten is twenty-two. That matches."""
EN_CHAIN = f"<think>\n{EN_REASONING}\n</think>\n\nThe total cost is $\\boxed{{22}}$ dollars."

ZH_REASONING = """我们来计算总费用。商店里铅笔每支3元，笔记本每本5元。

小明买了4支铅笔，所以铅笔一共花费 $4 \\times 3 = 12$ 元。他还买了2本笔记本，花费 $2 \\times 5 = 10$ 元。

把两部分加起来得到 $12 + 10 = 22$ 元。再检查一遍：四支铅笔共十二元，两本笔记本共十元，合计二十二元，结果一致。"""
ZH_CHAIN = f"<think>\n{ZH_REASONING}\n</think>\n\n总费用是 $\\boxed{{22}}$ 元。"


def en_chain(extra: str = "") -> str:
    return f"<think>\n{EN_REASONING}{extra}\n</think>\n\nThe total cost is $\\boxed{{22}}$ dollars."


# ---------------------------------------------------------------------------------------- penalty


@pytest.mark.parametrize("scores, abg, expected", [
    ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 1.0),                  # perfect scores: exp(0)
    ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0), 1.6487212707),         # exp(0.5)
    ((0.5, 0.2, 0.8), (1.0, 2.0, 1.0), 1.7771305),            # mean (0.5+0.4+0.8)/4 = 0.425 -> exp(0.575)
    ((0.2, 0.2, 0.2), (0.5, 1.0, 1.0), 1.4918247),            # exp(0.5 * 0.8) = exp(0.4)
    ((0.7, 0.7, 0.7), (2.0, 1.0, 1.0), 1.8221188),            # exp(0.6), below the cap
    ((0.5, 0.5, 0.5), (2.0, 1.0, 1.0), 2.0),                  # exp(1.0) = 2.718 -> capped at 2
    ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 2.0),                  # exp(1.0) -> capped
    ((0.0, 0.0, 0.0), (0.0, 1.0, 1.0), 1.0),                  # alpha 0: no penalty
    ((0.9, 0.0, 0.0), (1.0, 0.0, 0.0), 1.1051709),            # beta = gamma = 0: only S_v counts, exp(0.1)
])
def test_repetition_penalty_hand_computed(scores, abg, expected):
    alpha, beta, gamma = abg
    assert repetition_penalty(*scores, alpha=alpha, beta=beta, gamma=gamma) == pytest.approx(expected, abs=1e-6)


def test_repetition_penalty_cap_and_missing_scores():
    assert repetition_penalty(0.0, 0.0, 0.0, alpha=10.0) == 2.0
    assert math.exp(10.0 * (1 - 0.5)) > 2 and repetition_penalty(0.5, 0.5, 0.5, alpha=10.0) == 2.0
    assert repetition_penalty(None, 0.1, 0.1) == 1.0
    assert repetition_penalty(0.1, float("nan"), 0.1) == 1.0


def test_repetition_penalties_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    v, t, i = rng.random(50), rng.random(50), rng.random(50)
    got = repetition_penalties(v, t, i, alpha=1.5, beta=0.5, gamma=2.0)
    want = [repetition_penalty(a, b, c, alpha=1.5, beta=0.5, gamma=2.0) for a, b, c in zip(v, t, i)]
    assert got == pytest.approx(want)
    assert got.max() <= 2.0 and got.min() >= 1.0
    # None / null -> 1.0, from lists and from Arrow arrays
    assert list(repetition_penalties([0.5, None], [0.5, 0.5], [0.5, 0.5])) == pytest.approx([1.6487213, 1.0])
    arr = repetition_penalties(pa.array([0.0, None]), pa.array([0.0, 1.0]), pa.array([0.0, 1.0]))
    assert list(arr) == [2.0, 1.0]


def test_select_config_defaults_and_validation():
    cfg = SelectConfig()
    assert (cfg.alpha, cfg.beta, cfg.gamma) == (1.0, 1.0, 1.0)
    assert [(b.name, b.min_difficulty, b.max_tokens, b.keep) for b in cfg.buckets] == [
        ("easy", 0.0, 1024, 1), ("medium", 0.34, 2048, 2), ("hard", 0.67, 4096, 3)]
    assert cfg.bucket_for(0.33).name == "easy" and cfg.bucket_for(0.34).name == "medium"
    assert cfg.bucket_for(0.67).name == "hard" and cfg.bucket_for(1.0).name == "hard"
    with pytest.raises(ConfigError, match="sorted"):
        validate_config(SelectConfig, {"buckets": [{"name": "a", "min_difficulty": 0, "max_tokens": 10, "keep": 1},
                                                   {"name": "b", "min_difficulty": 0, "max_tokens": 10, "keep": 1}]})
    with pytest.raises(ConfigError, match="unknown key 'quality.ngram'"):
        validate_config(SelectConfig, {"quality": {"ngram": 3}})
    with pytest.raises(ValidationError, match="answer_pattern"):
        QualityCheckConfig(answer_pattern="(")


# ---------------------------------------------------------------------------------------- quality checks


def test_clean_chains_pass_every_check():
    assert Q.chain_checks(EN_CHAIN, "stop", "en", QC) == []
    assert Q.chain_checks(ZH_CHAIN, "stop", "zh", QC) == []
    assert Q.chain_checks(ZH_CHAIN, "stop", "zh-CN", QC) == []


@pytest.mark.parametrize("finish, truncated", [("length", True), ("stop", False), (None, False), ("error", False)])
def test_truncated(finish, truncated):
    reason = Q.check_truncated(finish, QC)
    assert (reason is not None) == truncated
    if truncated:
        assert Q.reason_code(reason) == "truncated"
    mask = Q.truncated_mask(pa.array([finish], pa.string()), QC)
    assert bool(mask[0]) == truncated


def test_ngram_repetition_hand_computed():
    # n=3 over a b c a b c a b c: n-grams abc bca cab abc bca cab abc -> 4 of 7 seen earlier;
    # positions 3..6 repeat at distance 3: a run of 4 -> 4 + 3 - 1 = 6 tokens after the first copy.
    dup, loop = Q.ngram_repetition(["a", "b", "c", "a", "b", "c", "a", "b", "c"], 3)
    assert dup == pytest.approx(4 / 7) and loop == 6
    dup, loop = Q.ngram_repetition(["one", "two", "three", "four", "five", "six"], 3)
    assert dup == 0.0 and loop == 0
    assert Q.ngram_repetition(["a", "b"], 3) == (None, 0)
    # Han characters are tokens one by one
    assert Q.tokens("等等，Let's see 12") == ["等", "等", "，", "let", "'", "s", "see", "12"]


@pytest.mark.parametrize("text, lang", [
    (en_chain("\n\nWait, let me recheck the sum once more. " * 30), "en"),   # a loop
    (en_chain("\n\nwait " * 200), "en"),
    ("<think>\n" + ZH_REASONING + "\n\n等等，让我再检查一下这个加法。" * 30 + "\n</think>\n答案是 $\\boxed{22}$。", "zh"),
    ("<think>\n" + ZH_REASONING + "\n\n" + "对" * 300 + "\n</think>\n答案是 $\\boxed{22}$。", "zh"),
])
def test_repetitive_loops(text, lang):
    reason = Q.check_repetitive(text, QC)
    assert reason is not None and reason.startswith("repetitive: a stretch repeats back-to-back")
    assert Q.chain_checks(text, "stop", lang, QC)[0].startswith("repetitive")


def test_repetitive_repeated_line_and_duplicated_ngrams():
    # the same line 7 times, not back-to-back (each followed by a different line)
    lines = "\n".join(f"Step {i}: compute the value of term number {i * 7 + 3}.\nBut wait, maybe I made an error somewhere."
                      for i in range(7))
    reason = Q.check_repetitive(en_chain("\n" + lines), QC)
    assert reason == "repetitive: one line occurs 7 times > 5"
    zh_lines = "\n".join(f"第{i}步：计算第{i * 7 + 3}项的值。\n等一下，也许我在某个地方算错了，需要重新检查。" for i in range(7))
    assert Q.check_repetitive(zh_lines, QC) == "repetitive: one line occurs 7 times > 5"
    # scattered repetition (no loop, no repeated line): sentences reused in a shuffled order
    rng = random.Random(1)
    sents = ["So the area of the triangle is half the base times the height, which we computed in the first part.",
             "Then the perimeter equals the sum of the three sides of this triangle, and each side is known already.",
             "Hence the ratio of the two areas is the square of the similarity ratio between these two triangles."]
    text = " ".join(f"{rng.choice(sents)} Note {i}." for i in range(40))
    only_ngrams = QC.model_copy(update={"max_loop_tokens": None, "max_line_repeats": None})
    reason = Q.check_repetitive(text, only_ngrams)
    assert reason is not None and reason.startswith("repetitive: duplicated 10-gram share")
    dup, _, _, _ = Q.repetition_signals(text, only_ngrams)
    assert dup > 0.5
    # the clean chains are far below the thresholds
    for clean in (EN_CHAIN, ZH_CHAIN):
        dup, loop, line_rep, _ = Q.repetition_signals(clean * 1, QC)
        assert loop < 20 and line_rep <= 1 and (dup is None or dup < 0.2)
        assert Q.check_repetitive(clean, QC) is None


def test_language_mixed_en():
    zh_block = "\n\n我们再用中文检查一下：四支铅笔一共十二元，两本笔记本一共十元，所以总共是二十二元，没有问题。"
    mixed = en_chain(zh_block)
    reason = Q.check_language_mixed(mixed, "en", QC)
    assert reason is not None and reason.startswith("language_mixed: Han/other-script share")
    assert Q.check_language_mixed(EN_CHAIN, "en", QC) is None
    # a short Chinese quote in a long English chain stays under 5%
    assert Q.check_language_mixed(en_chain(" (in Chinese: 总计)"), "en", QC) is None
    # Cyrillic or Hangul is another script too
    assert Q.check_language_mixed(en_chain("\n\n" + "Проверим сумму ещё раз очень внимательно сейчас " * 3), "en", QC)


def test_language_mixed_zh_ignores_math_code_and_latex():
    en_block = ("\n\nLet me verify this in English: four pencils cost twelve dollars, two notebooks cost ten "
                "dollars, so the total is twenty-two dollars, which matches the previous computation exactly.")
    mixed = ZH_CHAIN.replace("\n</think>", en_block + "\n</think>")
    reason = Q.check_language_mixed(mixed, "zh", QC)
    assert reason is not None and reason.startswith("language_mixed: Latin/other-script share")
    # lots of LaTeX, a code block and math function names are not English words
    mathy = ("<think>\n设函数 $f(x) = \\sin x + \\log(x^{2} + 1)$，求导得 \\[ f'(x) = \\cos x + \\frac{2x}{x^2+1} \\]。"
             "用代码验证：\n```python\nimport math\ndef derivative(value):\n    return math.cos(value) + 2 * value / (value ** 2 + 1)\n```\n"
             "当 $x = 0$ 时导数等于一，所以切线斜率为一，切线方程为 $y = x$，因为 sin 0 等于零并且对数项也等于零。"
             "\n</think>\n切线方程是 $\\boxed{y = x}$。")
    assert Q.chain_checks(mathy, "stop", "zh", QC) == []
    sig = Q.script_counts(mathy, frozenset(QC.ignored_words))
    assert sig.latin == 0 and sig.han > 40
    # a zh chain that is wholly English is mixed for a zh prompt ...
    assert Q.check_language_mixed(EN_CHAIN, "zh", QC) is not None
    # ... but without a lang its dominant script decides, so it passes; and other languages are not judged
    assert Q.check_language_mixed(EN_CHAIN, None, QC) is None
    assert Q.check_language_mixed(mixed, None, QC) is not None
    assert Q.check_language_mixed(mixed, "fr", QC) is None


@pytest.mark.parametrize("text, expected", [
    (EN_CHAIN, None),
    (ZH_CHAIN, None),
    ("", "empty completion"),
    ("   \n", "empty completion"),
    (EN_REASONING + "\n</think>\nThe answer is \\boxed{22}.", None),            # <think> was in the prompt
    (EN_CHAIN.replace("\\boxed{22}", "22"), "no final answer"),
    (ZH_CHAIN.replace("$\\boxed{22}$", "二十二"), "no final answer"),
    ("<think>the answer is \\boxed{22}</think>\nSo it is 22.", "no final answer"),  # boxed only in the reasoning
    ("<think>\n  \n</think>\nThe answer is \\boxed{22}.", "empty reasoning"),
    ("<think></think>答案是 \\boxed{22}", "empty reasoning"),
    (EN_CHAIN + "\n</think>", "unbalanced think tags"),
    ("<think>" + EN_CHAIN, "unbalanced think tags"),
    ("<think>我们计算十二加十等于二十二。答案是 \\boxed{22}", "unbalanced think tags"),
    ("</think> x <think> \\boxed{1}", "unbalanced think tags"),
    ("The answer is \\boxed{22}.", "no reasoning part"),
])
def test_bad_format(text, expected):
    reason = Q.check_format(text, QC)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith("bad_format: ") and expected in reason


def test_bad_format_options():
    no_open = EN_REASONING + "\n</think>\nThe answer is \\boxed{22}."
    assert "unbalanced" in Q.check_format(no_open, QC.model_copy(update={"allow_implicit_open": False}))
    plain = "The answer is \\boxed{22}."
    assert Q.check_format(plain, QC.model_copy(update={"require_think": False})) is None
    cfg = QC.model_copy(update={"answer_pattern": r"(?m)^Answer:\s*\S"})
    assert Q.check_format(EN_CHAIN, cfg) is not None
    assert Q.check_format("<think>12 + 10 = 22</think>\nAnswer: 22", cfg) is None


def test_overlong_paragraph():
    sentence = "The next term is obtained by adding the two previous terms together, as before. "
    long_para = sentence * 45                                    # ~3,600 characters in one paragraph
    assert len(long_para) > 3000
    reason = Q.check_overlong_paragraph(en_chain("\n\n" + long_para), "en", QC)
    assert reason is not None and reason.startswith("overlong_paragraph: a paragraph of")
    split = "\n\n".join(sentence * 9 for _ in range(5))         # the same text in 5 paragraphs
    assert Q.check_overlong_paragraph(en_chain("\n\n" + split), "en", QC) is None
    # a long fenced code block is not a paragraph
    code = "```python\n" + "x = x + 1  # step\n" * 300 + "```"
    assert Q.check_overlong_paragraph(en_chain("\n\n" + code), "en", QC) is None
    # Chinese: 1,500-character limit
    zh_para = "下一项等于前两项之和，我们继续这样计算并记录每一步的结果。" * 60   # 1,740 characters
    assert Q.check_overlong_paragraph("<think>" + zh_para + "</think>\\boxed{1}", "zh", QC) is not None
    assert Q.check_overlong_paragraph("<think>" + zh_para[:1400] + "</think>\\boxed{1}", "zh", QC) is None
    lengths = Q.max_paragraph_chars(pa.array(["a\n\nbbb\n  \ncc", "", None, "一二三"]))
    assert lengths.to_pylist() == [3, 0, 0, 3]


def test_chain_checks_lists_every_failure_in_order():
    text = "<think>" + ("wait " * 200) + "</think> so 22"
    reasons = Q.chain_checks(text, "length", "en", QC)
    assert [Q.reason_code(r) for r in reasons] == ["truncated", "bad_format", "repetitive"]


# ---------------------------------------------------------------------------------------- selection


def sample(pid, idx, tokens, correct=True, completion=None, finish="stop", **extra):
    text = completion if completion is not None else en_chain(f" (variant {idx})")
    return {"prompt_id": pid, "sample_index": idx, "completion": text, "completion_tokens": tokens,
            "finish_reason": finish, "correct": correct, **extra}


def verdicts(out: pa.Table) -> dict:
    return {(r["prompt_id"], r["sample_index"]): r["reject_reason"] for r in out.to_pylist()}


def build_corpus() -> list[dict]:
    rows = []
    # easy: 4 of 5 correct (pass 0.8, difficulty 0.2): keep only the shortest correct chain within 1,024 tokens;
    # samples 1 and 3 tie at 300 tokens -> sample_index decides
    rows += [sample("easy", 0, 800), sample("easy", 1, 300), sample("easy", 2, 1500), sample("easy", 3, 300),
             sample("easy", 4, 200, correct=False)]
    # hard: 1 of 5 correct (pass 0.2, difficulty 0.8): its 3,000-token chain fits the 4,096 budget
    rows += [sample("hard", i, 900, correct=False) for i in range(4)] + [sample("hard", 4, 3000)]
    # medium: 4 of 8 correct; the truncated, repetitive and mixed ones are dropped, the clean one kept
    rows += [sample("medium", 0, 2000, finish="length"),
             sample("medium", 1, 600, completion=en_chain("\n\nWait, let me recheck the sum once more. " * 30)),
             sample("medium", 2, 700, completion=en_chain("\n\n我们再用中文检查一下：四支铅笔一共十二元，两本笔记本一共十元，所以总共是二十二元。"),
                    lang="en"),
             sample("medium", 3, 1800)]
    rows += [sample("medium", i, 500, correct=False) for i in range(4, 8)]
    # no correct sample at all (one verification failed)
    rows += [sample("none", 0, 400, correct=False), sample("none", 1, 400, correct=None), sample("none", 2, 400, correct=False)]
    # correct only when truncated -> no clean sample; correct only over budget -> all over budget
    rows += [sample("dirty", 0, 400, correct=False), sample("dirty", 1, 9000, finish="length")]
    rows += [sample("long", 0, 400, correct=False), sample("long", 1, 5000)]
    # Chinese hard prompt with two clean correct chains and a mixed one: keeps both clean ones (keep 3)
    zh = lambda i: ZH_CHAIN.replace("结果一致", f"结果一致（第{i}次）")
    zh_mixed = ZH_CHAIN.replace("\n</think>", "\n\nLet me verify this in English: four pencils cost twelve dollars, "
                                "two notebooks cost ten dollars, so the total is twenty-two dollars, which matches.\n</think>")
    rows += [sample("zh", 0, 2500, completion=zh(0), lang="zh"), sample("zh", 1, 1200, completion=zh(1), lang="zh"),
             sample("zh", 2, 900, completion=zh_mixed, lang="zh")]
    rows += [sample("zh", i, 700, correct=False, completion=zh(i), lang="zh") for i in range(3, 10)]
    for r in rows:
        r.setdefault("lang", "zh" if r["prompt_id"] == "zh" else "en")
    return rows


@pytest.fixture(scope="module")
def corpus() -> pa.Table:
    return pa.Table.from_pylist(build_corpus())


@pytest.fixture(scope="module")
def selected(corpus) -> pa.Table:
    return select_chains(corpus, SelectConfig())


def test_easy_prompt_keeps_only_its_shortest_correct_chain(selected):
    v = verdicts(selected)
    assert [k for k, r in v.items() if k[0] == "easy" and r is None] == [("easy", 1)]
    assert (v[("easy", 0)], v[("easy", 2)], v[("easy", 3)], v[("easy", 4)]) == (
        "not_shortest", "over_budget", "not_shortest", "incorrect")
    row = next(r for r in selected.to_pylist() if r["prompt_id"] == "easy")
    assert (row["pass_rate"], row["bucket"], row["token_budget"]) == (0.8, "easy", 1024)
    assert row["difficulty"] == pytest.approx(0.2)
    details = {r["sample_index"]: r["reject_detail"] for r in selected.to_pylist() if r["prompt_id"] == "easy"}
    assert details[2] == "1500 completion tokens > 1024, the budget of bucket easy"


def test_hard_prompt_keeps_a_longer_chain_within_its_bigger_budget(selected):
    v = verdicts(selected)
    assert v[("hard", 4)] is None
    rows = [r for r in selected.to_pylist() if r["prompt_id"] == "hard"]
    assert {r["bucket"] for r in rows} == {"hard"} and rows[0]["token_budget"] == 4096
    assert rows[0]["difficulty"] == pytest.approx(0.8)
    # the same 3,000-token chain would have been over an easy prompt's budget
    assert 3000 > SelectConfig().buckets[0].max_tokens
    # zh hard prompt: 2 clean correct chains (keep up to 3) both kept, the mixed one dropped
    assert (v[("zh", 0)], v[("zh", 1)], v[("zh", 2)]) == (None, None, "language_mixed")


def test_bad_chains_are_dropped_with_reasons(selected):
    v = verdicts(selected)
    assert (v[("medium", 0)], v[("medium", 1)], v[("medium", 2)], v[("medium", 3)]) == (
        "truncated", "repetitive", "language_mixed", None)
    rows = {r["sample_index"]: r for r in selected.to_pylist() if r["prompt_id"] == "medium"}
    assert rows[3]["bucket"] == "medium" and rows[3]["pass_rate"] == 0.5
    assert rows[1]["quality_issues"] == ["repetitive"] and rows[1]["loop_tokens"] > 100
    assert rows[2]["other_script_frac"] > 0.05 and rows[3]["quality_issues"] == []
    assert all(rows[i]["reject_stage"] == "cot_select" for i in (0, 1, 2)) and rows[3]["reject_stage"] is None
    # signals are computed for incorrect chains too (annotate, then decide)
    assert rows[5]["quality_issues"] == [] and rows[5]["reject_reason"] == "incorrect"


def test_prompts_without_a_selected_chain_have_a_reason(selected):
    summary = {r["prompt_id"]: r for r in prompt_summary(selected).to_pylist()}
    assert list(summary) == sorted(summary)
    assert summary["none"]["reject_reason"] == "no_correct_sample"
    assert (summary["none"]["n_unverified"], summary["none"]["pass_rate"], summary["none"]["n_selected"]) == (1, 0.0, 0)
    assert summary["dirty"]["reject_reason"] == "no_clean_sample"
    assert summary["long"]["reject_reason"] == "all_over_budget"
    assert all(summary[p]["reject_reason"] is None for p in ("easy", "hard", "medium", "zh"))
    assert (summary["easy"]["n_selected"], summary["easy"]["selected_tokens"]) == (1, 300)
    assert (summary["zh"]["n_selected"], summary["zh"]["selected_tokens"]) == (2, 3700)
    v = verdicts(selected)
    assert (v[("none", 0)], v[("none", 1)], v[("none", 2)]) == ("incorrect", "unverified", "incorrect")
    assert reason_counts(prompt_summary(selected)) == {"no_correct_sample": 1, "no_clean_sample": 1, "all_over_budget": 1}


def test_counts_reconcile(corpus, selected):
    assert selected.num_rows == corpus.num_rows
    sel = selected["selected"].to_pylist()
    assert all((r is None) == s for r, s in zip(selected["reject_reason"].to_pylist(), sel))
    samples, prompts = selection_funnel(selected)
    assert (samples.rows_in, samples.rows_out, samples.rejected) == (corpus.num_rows, 5, corpus.num_rows - 5)
    assert (prompts.rows_in, prompts.rows_out, prompts.rejected) == (7, 4, 3)
    kept, rejected = split_verdicts_arrow(selected)
    assert kept.num_rows == 5 and rejected.num_rows == corpus.num_rows - 5
    assert sum(reason_counts(selected).values()) == rejected.num_rows
    with pytest.raises(AccountingError):
        FunnelStep(stage="cot_select", rows_in=samples.rows_in, rows_out=samples.rows_out, rejected=samples.rejected - 1)


def test_selection_is_deterministic_under_row_order(corpus, selected):
    perm = list(range(corpus.num_rows))
    random.Random(7).shuffle(perm)
    shuffled = select_chains(corpus.take(perm), SelectConfig())
    assert shuffled["prompt_id"].to_pylist() == corpus.take(perm)["prompt_id"].to_pylist()  # input order kept
    assert verdicts(shuffled) == verdicts(selected)
    assert select_chains(corpus, SelectConfig()).equals(selected)


def test_given_difficulty_score_and_keep_per_bucket():
    rows = [sample("p", i, 100 * (i + 1), difficulty_score=0.9) for i in range(5)]  # all correct but hard
    out = select_chains(pa.Table.from_pylist(rows), SelectConfig())
    assert out["bucket"].to_pylist() == ["hard"] * 5 and out["pass_rate"][0].as_py() == 1.0
    assert out["selected"].to_pylist() == [True, True, True, False, False]
    assert out["reject_detail"][3].as_py() == "rank 4 by length; bucket hard keeps 3"
    # without the score the same prompt is easy: one chain
    easy = select_chains(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "difficulty_score"} for r in rows]),
                         SelectConfig())
    assert easy["selected"].to_pylist() == [True, False, False, False, False]
    # a null score falls back to the pass rate
    nulls = select_chains(pa.Table.from_pylist([dict(r, difficulty_score=None) for r in rows]), SelectConfig())
    assert nulls["bucket"].to_pylist() == ["easy"] * 5


def test_penalty_column_and_contract():
    rows = [sample("p", 0, 100, s_v=0.5, s_t=0.5, s_i=0.5), sample("p", 1, 100, s_v=None, s_t=0.5, s_i=0.5)]
    out = select_chains(pa.Table.from_pylist(rows), SelectConfig())
    assert out["repetition_penalty"].to_pylist() == pytest.approx([1.6487213, 1.0])
    assert "repetition_penalty" not in select_chains(pa.Table.from_pylist([sample("p", 0, 100)]), SelectConfig()).schema.names
    with pytest.raises(StageContractError, match="correct"):
        select_chains(pa.Table.from_pylist([{k: v for k, v in sample("p", 0, 1).items() if k != "correct"}]), SelectConfig())
    # re-running on its own output replaces the columns instead of duplicating them
    again = select_chains(out, SelectConfig())
    assert again.schema == out.schema and again.equals(out)


# ---------------------------------------------------------------------------------------- Spark, chart


def test_spark_wrapper_matches_pure_function(spark, corpus, selected):
    df = spark.createDataFrame(corpus.to_pandas())
    out_df = select_on_spark(df, SelectConfig())
    got = pa.Table.from_pandas(out_df.toPandas(), preserve_index=False)
    key = lambda r: (r["prompt_id"], r["sample_index"])
    cols = [c for c in selected.schema.names]
    want_rows = sorted(selected.to_pylist(), key=key)
    got_rows = sorted([{c: r[c] for c in cols} for r in got.to_pylist()], key=key)
    assert len(got_rows) == len(want_rows)
    for g, w in zip(got_rows, want_rows):
        for c in cols:
            if isinstance(w[c], float):
                assert g[c] == pytest.approx(w[c], nan_ok=True), c
            elif c == "quality_issues":
                assert list(g[c]) == w[c]
            else:
                assert g[c] == w[c], (key(w), c)
    summary = pa.Table.from_pandas(prompt_summary_on_spark(out_df).toPandas(), preserve_index=False)
    assert sorted(summary.to_pylist(), key=lambda r: r["prompt_id"]) == prompt_summary(selected).to_pylist()
    assert [f.name for f in out_df.schema.fields] == output_schema(pa.Table.from_pandas(corpus.to_pandas()).schema).names


def test_chart_is_png(selected):
    from skycurate.reporting.cot import cot_charts_png

    png = cot_charts_png(selected, "CoT selection (test)")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert cot_charts_png(selected.to_pylist()[:5], "rows")[:4] == b"\x89PNG"
