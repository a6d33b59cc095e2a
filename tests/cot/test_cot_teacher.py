"""The CoT demo's synthetic arithmetic problems, prompts dataset and tiny teacher (samples/cot.py).

Correctness of problems and reference solutions, the prompts JSONL with its flagged bad rows, and a
smoke test that trains a very small teacher for a few seconds and checks what it writes has the
expected shape (accuracy belongs to ``benchmarks/cot_teacher.py``, not here)."""

from __future__ import annotations

import ast
import itertools
import json
import operator
import re

import pytest

from skycurate.samples import cot

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _py_eval(expression: str) -> int:
    """Python's own evaluation of an integer ``+ - *`` expression (no eval())."""
    def ev(node):
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(ast.dump(node))
    return ev(ast.parse(expression, mode="eval").body)


SOLUTION = re.compile(r"^<think>([0-9+*=-]+)</think> The answer is \\boxed\{(\d+)\}\.$")


def test_problems_are_correct_and_solutions_reduce_step_by_step():
    problems = cot.arithmetic_problems(900, seed=3)
    assert len({p.question for p in problems}) == 900
    for p in problems:
        assert p.answer == _py_eval(p.expression) > 0
        m = SOLUTION.match(p.solution)
        assert m, p.solution
        chain = m.group(1).split("=")
        assert chain[0] == cot.compact(p.expression) and chain[-1] == m.group(2) == str(p.answer)
        assert len(chain) == p.steps + 1                                     # one reduction per step
        for before, after in itertools.pairwise(chain):                      # each step is right
            assert _py_eval(before) == _py_eval(after)
            assert after.count("+") + after.count("-") + after.count("*") == \
                before.count("+") + before.count("-") + before.count("*") - 1
        assert cot.extract_boxed(p.solution) == str(p.answer)
        assert max(int(x) for x in re.findall(r"\d+", m.group(1))) <= cot.MAX_VALUE   # every number, every step
        # the question carries the expression's numbers, in order
        assert re.findall(r"\d+", p.question) == re.findall(r"\d+", p.expression)
        if p.answer_type == "math":
            assert p.question == f"What is {cot.compact(p.expression)}?"
        else:
            assert p.answer_type == "numeric" and "How many" in p.question
    levels = [p.level for p in problems]
    assert levels.count("easy") == levels.count("medium") == levels.count("hard") == 300
    assert {p.kind for p in problems} == set(cot.KINDS)
    assert {p.answer_type for p in problems} == {"math", "numeric"}
    # deterministic; kinds and exclusion honoured
    assert [p.question for p in cot.arithmetic_problems(50, seed=3)] == [p.question for p in problems[:50]]
    adds = cot.arithmetic_problems(20, seed=1, kinds=("add",), exclude={problems[0].question})
    assert {p.kind for p in adds} == {"add"} and all(p.steps == 1 for p in adds)
    wide = cot.arithmetic_problems(90, seed=3, max_value=999)
    assert max(p.answer for p in wide) > 99 and all(p.answer == _py_eval(p.expression) > 0 for p in wide)
    with pytest.raises(ValueError, match="unknown problem kinds"):
        cot.arithmetic_problems(3, kinds=("division",))


def test_reduce_steps_follows_precedence():
    assert cot.reduce_steps("23 + 3 * 12") == ["23 + 36", "59"]
    assert cot.reduce_steps("3 * 4 + 5 * 6") == ["12 + 5 * 6", "12 + 30", "42"]
    assert cot.reduce_steps("50 - 20 + 5") == ["30 + 5", "35"]
    assert cot.solution_text("23 + 3 * 12") == "<think>23+3*12=23+36=59</think> The answer is \\boxed{59}."
    assert cot.format_prompt("What is 2+3?") == "Question: What is 2+3?\nAnswer:"
    assert cot.extract_boxed("x \\boxed{1} y \\boxed{ 42 }.") == "42" and cot.extract_boxed("no box") is None


def test_prompts_jsonl_flags_the_bad_rows(tmp_path):
    train_q = {p.question for p in cot.arithmetic_problems(300, seed=0)}
    summary = cot.write_prompts(tmp_path / "prompts.jsonl", 60, seed=5, exclude=train_q)
    rows = [json.loads(line) for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert summary.rows == len(rows) == 65 and len(summary.good_ids) == 60
    assert summary.bad == {"missing_reference": ["arith-bad-noref"], "too_long": ["arith-bad-long"],
                           "duplicate": ["arith-bad-dup"], "unknown_answer_type": ["arith-bad-type"],
                           "bad_image": ["arith-bad-image"]}
    assert summary.by_level == {"easy": 20, "medium": 20, "hard": 20}
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == 65 and sorted(summary.good_ids + summary.bad_ids) == sorted(by_id)
    for rid in summary.good_ids:
        r = by_id[rid]
        assert set(r) >= {"id", "question", "reference_answer", "answer_type", "domain", "source", "steps"}
        assert r["domain"] == "arithmetic" and r["source"] == "synthetic" and r["answer_type"] in ("math", "numeric")
        assert isinstance(r["reference_answer"], str) and r["reference_answer"].isdigit()
        assert r["steps"] in (1, 2, 3) and r["question"] not in train_q
        if r["answer_type"] == "math":  # recompute the reference from the question
            assert str(_py_eval(r["question"].removeprefix("What is ").removesuffix("?"))) == r["reference_answer"]
    assert by_id["arith-bad-noref"]["reference_answer"] is None and by_id["arith-bad-noref"]["question"]
    long_q = by_id["arith-bad-long"]["question"]
    assert len(long_q) >= 6000 and by_id["arith-bad-long"]["reference_answer"]   # >> 256 tokens of context
    assert by_id["arith-bad-dup"]["question"] == by_id["arith-00000"]["question"]
    assert by_id["arith-bad-type"]["answer_type"] == "essay" and by_id["arith-bad-image"]["images"]
    assert json.loads(json.dumps(summary.to_dict()))["bad"] == summary.bad
    clean = cot.write_prompts(tmp_path / "clean.jsonl", 9, seed=5, bad_rows=False)
    assert clean.bad == {} and clean.rows == 9


def test_smoke_teacher_saves_a_loadable_model_and_writes_the_format(smoke_teacher):
    from transformers import AutoConfig, AutoTokenizer

    out, report = smoke_teacher
    assert report["steps"] == 150 and len(report["losses"]) == 1 and report["seconds"] > 0
    assert (out / "teacher.json").is_file() and (out / "config.json").is_file()
    conf = AutoConfig.from_pretrained(out, local_files_only=True)
    assert conf.model_type == "llama" and conf.head_dim == 32              # vLLM's CPU attention: 32/64/128
    tok_conf = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_conf["tokenizer_class"] == "PreTrainedTokenizerFast" and tok_conf["model_max_length"] == 256
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ids = tok("Question: What is 123+45?\nAnswer:")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    pieces = tok.convert_ids_to_tokens(ids)
    assert [p for p in pieces if any(c.isdigit() for c in p)] == ["1", "2", "3", "4", "5"]  # one digit per token
    chat = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False)
    assert chat == "<s>" + cot.format_prompt("What is 2+3?")

    problems = cot.arithmetic_problems(8, seed=99, kinds=("add",))
    outs = cot.generate(out, [p.prompt for p in problems], max_new_tokens=40, threads=1)
    assert len(outs) == 8 and all(len(o) == 1 for o in outs)
    shaped = [o[0] for o in outs if re.fullmatch(r" <think>[0-9+*=-]+</think> The answer is \\boxed\{\d+\}\.", o[0])]
    assert len(shaped) >= 6, outs                                           # the format, not the arithmetic
    assert all(cot.extract_boxed(t) is not None for t in shaped)
    sampled = cot.generate(out, [p.prompt for p in problems[:2]], n=3, temperature=0.7, max_new_tokens=40, threads=1)
    assert [len(o) for o in sampled] == [3, 3]
    scores = cot.accuracy_by_level(problems, outs)
    assert set(scores) == {"easy", "all"} and scores["all"]["problems"] == 8


def test_training_is_deterministic_given_the_seed(tmp_path):
    cfg = cot.TeacherConfig(hidden=64, layers=1, heads=2, intermediate=64, batch_size=8, threads=1)
    a = cot.train_teacher(tmp_path / "a", n_train=24, epochs=1, seed=4, config=cfg)
    b = cot.train_teacher(tmp_path / "b", n_train=24, epochs=1, seed=4, config=cfg)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert cot.training_questions(a) == {p.question for p in cot.arithmetic_problems(24, seed=4)}
    with pytest.raises(ValueError, match="head_dim"):
        cot.train_teacher(tmp_path / "c", n_train=8, epochs=1, config=cot.TeacherConfig(head_dim=16))


def test_sample_cot_command_trains_a_teacher_once_and_writes_prompts(tmp_path):
    from typer.testing import CliRunner

    from skycurate.cli import app

    def run() -> dict:
        res = CliRunner().invoke(app, ["sample", "cot", "--out", str(tmp_path), "--quick", "--prompts", "6", "--json"],
                                 catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    info = run()
    teacher = tmp_path / "teacher-quick"
    assert info["teacher"] == str(teacher) and (teacher / "teacher.json").is_file() and info["rows"] == 11
    mtime = (teacher / "model.safetensors").stat().st_mtime_ns
    rows = [json.loads(line) for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert not {r["question"] for r in rows} & cot.training_questions(teacher)
    assert run()["teacher"] == str(teacher) and (teacher / "model.safetensors").stat().st_mtime_ns == mtime  # reused


def test_distill_command_rejects_bad_arguments_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from skycurate.cli import app

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "question": "q", "reference_answer": "1", "answer_type": "math"}\n')
    cases = [
        ([], "no prompts"),
        (["--prompts", str(prompts)], "no teacher"),
        (["--prompts", str(prompts), "--model", str(tmp_path / "nope")], "model folder not found"),
        (["--prompts", str(prompts), "--engine", "openai", "--model", "m"], "needs --base-url"),
        (["--prompts", str(prompts), "--engine", "ollama", "--model", "m"], "teacher.engine"),
    ]
    for args, message in cases:
        res = CliRunner().invoke(app, ["run", "distill", *args, "--store", str(tmp_path / "store")])
        assert res.exit_code != 0 and message in res.output, (args, res.output)
        assert "Traceback" not in res.output
