"""Benchmark evaluation (``skycurate run evaluate``): models side by side on benchmark test splits, scored by
the distillation verifier, with exact accuracy per model and subject.

Exact figures need answers we choose: the models are served by a small local HTTP endpoint that speaks the
OpenAI chat/completions API (the real OpenAI-compatible client of the engines talks to it) and answers each
question from a table; a tiny random-weight Llama runs through the transformers engine next to it."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from skycurate.catalog import Catalog
from skycurate.cli import app
from skycurate.errors import ConfigError, SkycurateError
from skycurate.flows._preflight import preflight
from skycurate.schemas.config import validate_config
from skycurate.schemas.cot_prompts import PromptFields
from skycurate.schemas.evaluate import EvalFlowConfig
from skycurate.stages.evaluate.items import benchmark_items
from skycurate.stages.evaluate.scoring import accuracy_table

sys.path.insert(0, str(Path(__file__).parent / "leakage"))
import tiny_lm  # noqa: E402

# CSVQA-style: option columns, single and multi-select answers, a subject column; one row without an
# answer and one line that is not JSON (both quarantined)
CSVQA = [
    {"id": "p1", "question": "Unit of force?", "A": "newton", "B": "joule", "C": "watt", "D": "pascal",
     "answer": "A", "subject": "physics"},
    {"id": "p2", "question": "Which are vectors?", "A": "velocity", "B": "mass", "C": "force", "D": "time",
     "answer": "A, C", "subject": "physics"},
    {"id": "c1", "question": "Symbol of sodium?", "A": "S", "B": "Na", "C": "So", "D": "N", "answer": "B",
     "subject": "chemistry"},
    {"id": "c2", "question": "Which are noble gases?", "A": "neon", "B": "oxygen", "C": "argon", "D": "nitrogen",
     "answer": "AC", "subject": "chemistry"},
    {"id": "c3", "question": "A row without its answer", "A": "x", "B": "y", "answer": None, "subject": "chemistry"},
]
# canonical layout, subject in `category`; a4's reference is no number: no rule can decide it (undecided)
ARITH = [
    {"id": "a1", "question": "What is 12+30?", "reference_answer": "42", "answer_type": "numeric", "category": "add"},
    {"id": "a2", "question": "What is 7*6?", "reference_answer": "42", "answer_type": "numeric", "category": "mul"},
    {"id": "a3", "question": "What is 1/3 as a decimal?", "reference_answer": "0.3333333333", "answer_type": "numeric",
     "category": "div"},
    {"id": "a4", "question": "Roughly how many?", "reference_answer": "a few", "answer_type": "numeric",
     "category": "add"},
]
ANSWERS = {
    "ace": {"Unit of force": "\\boxed{A}", "vectors": "\\boxed{A, C}", "sodium": "\\boxed{B}",
            "noble gases": "The answer is A and C. \\boxed{AC}", "12+30": "12+30=42 \\boxed{42}", "7*6": "#### 42",
            "1/3": "\\boxed{0.33333333333}", "Roughly": "\\boxed{3}"},
    # the judge (default equivalence template): a4's free-form reference "a few" against each model's answer
    "judge": {"Candidate answer:\n3": "3 is a few.\nVerdict: [[YES]]",
              "Candidate answer:\n5": "Five might be a few, or not."},
    "rookie": {"Unit of force": "\\boxed{A}", "vectors": "\\boxed{A}", "sodium": "The answer is C",
               "noble gases": "\\boxed{C, A}", "12+30": "\\boxed{41}", "7*6": "It is 42", "1/3": "\\boxed{0.33}",
               "Roughly": "\\boxed{5}"},
}
# (benchmark, model, subject) -> (items, correct, accuracy, undecided, errors)
EXPECTED = {
    ("csvqa", "ace", "all"): (4, 4, 1.0, 0, 0), ("csvqa", "ace", "chemistry"): (2, 2, 1.0, 0, 0),
    ("csvqa", "ace", "physics"): (2, 2, 1.0, 0, 0),
    ("csvqa", "rookie", "all"): (4, 2, 0.5, 0, 0), ("csvqa", "rookie", "chemistry"): (2, 1, 0.5, 0, 0),
    ("csvqa", "rookie", "physics"): (2, 1, 0.5, 0, 0),
    ("arith", "ace", "all"): (4, 3, 0.75, 1, 0), ("arith", "ace", "add"): (2, 1, 0.5, 1, 0),
    ("arith", "ace", "div"): (1, 1, 1.0, 0, 0), ("arith", "ace", "mul"): (1, 1, 1.0, 0, 0),
    ("arith", "rookie", "all"): (4, 1, 0.25, 1, 0), ("arith", "rookie", "add"): (2, 0, 0.0, 1, 0),
    ("arith", "rookie", "div"): (1, 0, 0.0, 0, 0), ("arith", "rookie", "mul"): (1, 1, 1.0, 0, 0),
}


class _Endpoint(BaseHTTPRequestHandler):
    """``/v1/chat/completions`` and ``/v1/completions``: the reply of the answer table whose key the prompt holds."""

    state: dict = {}

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = body["model"]
        chat = self.path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        self.state["requests"][model] = self.state["requests"].get(model, 0) + 1
        if model in self.state["down"]:
            return self._reply(503, {"error": "overloaded"})
        text = next((v for k, v in ANSWERS.get(model, {}).items() if k in prompt), "I do not know.")
        choice = {"index": 0, "finish_reason": "stop", **({"message": {"role": "assistant", "content": text}}
                                                          if chat else {"text": text})}
        self._reply(200, {"choices": [choice], "usage": {"prompt_tokens": len(prompt.split()),
                                                         "completion_tokens": len(text.split())}})

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def endpoint():
    _Endpoint.state = {"requests": {}, "down": set()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", _Endpoint.state
    server.shutdown()
    server.server_close()


def _jsonl(path: Path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(x + "\n" for x in extra_lines))
    return path


@pytest.fixture
def benches(tmp_path) -> list[str]:
    _jsonl(tmp_path / "csvqa" / "test.jsonl", CSVQA, ("{this line is not json",))
    _jsonl(tmp_path / "csvqa" / "train.jsonl", CSVQA[:1])   # only the test split is evaluated
    _jsonl(tmp_path / "arith.jsonl", ARITH)                  # one file: the test split
    return ["--benchmark", f"csvqa={tmp_path / 'csvqa'}", "--benchmark", f"arith={tmp_path / 'arith.jsonl'}"]


def _evaluate(*args: str, as_json: bool = True):
    res = CliRunner().invoke(app, ["run", "evaluate", *args, *(["--json"] if as_json else [])],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout[res.stdout.index("{"):]) if as_json else res.stdout


def _accuracy(out: dict) -> dict[tuple, tuple]:
    return {(r["benchmark"], r["model"], r["subject"]): (r["items"], r["correct"], r["accuracy"], r["undecided"],
                                                         r["errors"]) for r in out["accuracy"]}


@pytest.mark.usefixtures("prefect_harness")
def test_two_models_side_by_side_exact_accuracy_quarantine_chart_and_cached_reruns(endpoint, benches, tmp_path):
    url, state = endpoint
    store = str(tmp_path / "store")
    args = [*benches, "--model", "ace", "--model", "rookie", "--engine", "openai", "--base-url", url, "--chat",
            "--store", store]
    out = _evaluate(*args)
    assert _accuracy(out) == EXPECTED
    assert [r["subject"] for r in out["accuracy"][:3]] == ["all", "chemistry", "physics"]   # 'all' row first
    assert state["requests"] == {"ace": 8, "rookie": 8}
    s = out["stats"]
    assert s["by_benchmark"]["csvqa"] == {"rows": 6, "items": 4, "quarantined": 2, "layout": "letter_options"}
    assert s["by_benchmark"]["arith"] == {"rows": 4, "items": 4, "quarantined": 0, "layout": "skycurate"}
    assert s["quarantine_by_reason"] == {"missing_reference": 1, "malformed_record": 1}
    # per (benchmark, model): rows in = evaluated + quarantined
    assert {f["stage"]: (f["rows_in"], f["rows_out"], f["quarantined"]) for f in out["funnel"]} == {
        "csvqa x ace": (6, 4, 2), "csvqa x rookie": (6, 4, 2), "arith x ace": (4, 4, 0), "arith x rookie": (4, 4, 0)}

    catalog = Catalog(store)
    quarantined = catalog.open("eval/quarantine@latest").to_table().to_pylist()
    assert sorted(((q["benchmark"], q["item_id"], q["reason"]) for q in quarantined), key=str) == [
        ("csvqa", "c3", "missing_reference"), ("csvqa", None, "malformed_record")]
    assert all(q["record"] for q in quarantined)
    items = {(r["model"], r["item_id"]): r for r in catalog.open("eval/items@latest").to_table().to_pylist()}
    assert len(items) == 16 and {r["sample_index"] for r in items.values()} == {0}
    c2 = items[("rookie", "c2")]
    assert (c2["benchmark"], c2["subject"], c2["reference_answer"], c2["extracted_answer"], c2["correct"],
            c2["verify_method"]) == ("csvqa", "chemistry", "AC", "AC", True, "mcq_set")
    assert c2["question"].splitlines() == ["Which are noble gases?", "A. neon", "B. oxygen", "C. argon", "D. nitrogen"]
    assert c2["completion"] == "\\boxed{C, A}" and c2["completion_tokens"] == 2 and c2["prompt_tokens"] > 0
    a4 = items[("ace", "a4")]
    assert a4["correct"] is None and a4["verify_error"] == "unparseable_reference" and a4["error"] is None
    acc_ref = catalog.resolve("eval/accuracy@latest")
    assert catalog.attachment(acc_ref, "_charts.png").startswith(b"\x89PNG")
    assert {p.name for p in catalog.manifest(acc_ref).parents} >= {"eval/items", "eval/quarantine"}

    # the same command again: every task cached, no request; the table is printed
    printed = _evaluate(*args, as_json=False)
    assert state["requests"] == {"ace": 8, "rookie": 8}
    assert "accuracy" in printed and "100.0% (4/4)" in printed and "25.0% (1/4)" in printed
    assert "csvqa: 6 rows (letter_options layout) -> 4 items, 2 quarantined" in printed

    # without the task cache the models' tasks run again, and find every shard journalled
    shutil.rmtree(Path(store) / "_cache")
    again = _evaluate(*args)
    assert state["requests"] == {"ace": 8, "rookie": 8}
    assert _accuracy(again) == EXPECTED
    for name in ("eval/samples-ace", "eval/samples-rookie"):
        shards = catalog.manifest(f"{name}@latest").stats["shards"]
        assert (shards["shards"], shards["reused"], shards["generated"]) == (1, 1, 0)


@pytest.mark.usefixtures("prefect_harness")
def test_answers_that_failed_are_retried_by_the_next_run(endpoint, benches, tmp_path):
    url, state = endpoint
    store = str(tmp_path / "store")
    config = tmp_path / "evaluate.yaml"
    config.write_text(json.dumps({   # YAML: one model per entry, its own name
        "template": {"mode": "chat", "system": "Put the final answer in \\boxed{}."},
        "models": [{"engine": "openai", "model": "ace", "base_url": url, "name": "Ace-1"},
                   {"engine": "openai", "model": "rookie", "base_url": url, "name": "Rookie 2", "retries": 0}]}))
    state["down"].add("rookie")
    out = _evaluate(*benches, "--config", str(config), "--store", store)
    down = _accuracy(out)
    assert down[("csvqa", "Ace-1", "all")] == (4, 4, 1.0, 0, 0)
    assert down[("csvqa", "Rookie 2", "all")] == (4, 0, 0.0, 0, 4) and down[("arith", "Rookie 2", "all")][4] == 4
    assert "eval/samples-rookie-2" in {d["ref"].split("@")[0] for d in out["datasets"].values()}

    state["down"].clear()
    asked = dict(state["requests"])
    out = _evaluate(*benches, "--config", str(config), "--store", store)
    renamed = {(b, "rookie" if m == "Rookie 2" else "ace", s): v for (b, m, s), v in _accuracy(out).items()}
    assert renamed == EXPECTED
    assert state["requests"]["ace"] == asked["ace"]   # not asked again
    assert state["requests"]["rookie"] == asked["rookie"] + 8


@pytest.mark.usefixtures("prefect_harness")
def test_a_local_transformers_model_next_to_a_served_one(endpoint, benches, tmp_path):
    url, state = endpoint
    texts = [r["question"] for r in CSVQA + ARITH] * 3 + ["the answer is A B C D 0 1 2 3 4 5 6 7 8 9"]
    tok = tiny_lm.train_tokenizer(texts, vocab_size=300)
    folder = tiny_lm.build_tiny_lm(tmp_path / "tiny", tok, hidden=64, layers=2, heads=2, max_positions=64)
    config = tmp_path / "evaluate.yaml"
    config.write_text(json.dumps({
        "template": {"mode": "raw", "template": "Q: {question}\nA:"},
        "generate": {"sampling": {"max_new_tokens": 8, "temperature": 0}},
        # a context of 24 tokens: the long option lists do not fit 24 - 8 tokens
        "models": [{"engine": "transformers", "model": str(folder), "device": "cpu", "max_model_len": 24},
                   {"engine": "openai", "model": "ace", "base_url": url, "template": {"mode": "chat"}}]}))
    out = _evaluate(*benches, "--config", str(config), "--store", str(tmp_path / "store"))
    acc = _accuracy(out)
    assert {k: v for k, v in acc.items() if k[1] == "ace"} == {k: v for k, v in EXPECTED.items() if k[1] == "ace"}
    rows = [r for r in Catalog(str(tmp_path / "store")).open("eval/items@latest").to_table().to_pylist()
            if r["model"] == "tiny"]
    assert len(rows) == 8
    too_long = [r for r in rows if r["error"]]
    assert too_long and all(r["error"].startswith("too_long: ") and r["completion"] is None
                            and r["correct"] is False and r["verify_error"] == "no_completion" for r in too_long)
    answered = [r for r in rows if not r["error"]]
    assert answered and all(r["completion_tokens"] > 0 and r["prompt_tokens"] > 0 for r in answered)
    tiny = out["stats"]["by_benchmark"]
    assert acc[("csvqa", "tiny", "all")][0] == tiny["csvqa"]["items"]
    assert sum(acc[(b, "tiny", "all")][4] for b in ("csvqa", "arith")) == len(too_long)


# ---------------------------------------------------------------------------------------- pure parts


def test_benchmark_rows_of_public_layouts_become_items_with_subjects(tmp_path):
    gsm = _jsonl(tmp_path / "gsm.jsonl", [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=7\n#### 7", "domain": "arith"},
        {"question": "Ann has 1,000 coins and gets 234 more. How many?", "answer": "#### 1,234"},
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=7\n#### 7"}])   # same hashed id
    items, dropped, counts = benchmark_items("gsm", [gsm], PromptFields())
    assert counts == {"rows": 3, "items": 2, "quarantined": 1, "layout": "gsm8k"}
    assert items["reference_answer"].to_pylist() == ["7", "1234"]
    assert items["subject"].to_pylist() == ["arith", "all"] and items["answer_type"].to_pylist() == ["numeric"] * 2
    assert items["prompt_id"].to_pylist()[0] == "gsm/" + items["item_id"].to_pylist()[0]
    assert dropped.to_pylist()[0]["reason"] == "duplicate_id"

    from PIL import Image

    Image.new("RGB", (4, 4), "red").save(tmp_path / "red.png")
    vqa = _jsonl(tmp_path / "vqa" / "test.jsonl", [
        {"id": "v1", "question": "Colour?", "A": "red", "B": "blue", "answer": "A", "image": "../red.png"},
        {"id": "v2", "question": "Shape?", "A": "square", "B": "round", "answer": "A", "image": "missing.png"}])
    items, dropped, counts = benchmark_items("vqa", [vqa], PromptFields())
    assert counts["layout"] == "letter_options" and items["item_id"].to_pylist() == ["v1"]
    assert items["images"].to_pylist()[0][0] == (tmp_path / "red.png").read_bytes()
    assert [(d["item_id"], d["reason"]) for d in dropped.to_pylist()] == [("v2", "bad_image")]

    mmlu = _jsonl(tmp_path / "mmlu.jsonl", [{"question": "2+2?", "choices": ["3", "4"], "answer": 1,
                                             "subject": "math", "topic": "sums"}])
    items, _, counts = benchmark_items("mmlu", [mmlu], PromptFields(), subject_field="topic")
    assert counts["layout"] == "mcq" and items.to_pylist()[0]["reference_answer"] == "B"
    assert items["subject"].to_pylist() == ["sums"]


def test_accuracy_counts_undecided_and_failed_samples_against_the_model():
    rows = [("b", "m", "x", "1", 0, True, None), ("b", "m", "x", "1", 1, False, None),
            ("b", "m", "y", "2", 0, None, None), ("b", "m", "y", "2", 1, False, "HTTP 400: refused")]
    items = pa.Table.from_pylist([dict(zip(("benchmark", "model", "subject", "item_id", "sample_index", "correct",
                                            "error"), r)) for r in rows])
    got = accuracy_table(items, ["b", "empty"], ["m"]).to_pylist()
    assert [(r["benchmark"], r["subject"], r["items"], r["n"], r["correct"], r["accuracy"], r["undecided"],
             r["errors"]) for r in got] == [("b", "all", 2, 4, 1, 0.25, 1, 1), ("b", "x", 1, 2, 1, 0.5, 0, 0),
                                            ("b", "y", 1, 2, 0, 0.0, 1, 1), ("empty", "all", 0, 0, 0, None, 0, 0)]


def test_preflight_and_config_errors_are_one_line(tmp_path):
    import skycurate.flows._preflight_evaluate  # noqa: F401 - registers the checks

    bench = _jsonl(tmp_path / "b" / "train.jsonl", ARITH)
    catalog = Catalog(str(tmp_path / "store"))
    cases = [({}, "no benchmark: pass --benchmark NAME=PATH"),
             ({"benchmarks": [{"name": "b", "path": str(bench.parent)}]}, "no model: pass --model"),
             ({"benchmarks": [{"name": "b", "path": str(bench.parent)}], "models": ["/nowhere"]},
              "model folder not found: /nowhere"),
             ({"benchmarks": [{"name": "b", "path": str(bench.parent)}],
               "models": [{"engine": "openai", "model": "m"}]}, "model m: the openai engine needs --base-url"),
             ({"benchmarks": [{"name": "b", "path": str(bench.parent)}],
               "models": [{"engine": "openai", "model": "m", "base_url": "http://x/v1"}]},
              "benchmark b: no test split in"),
             ({"benchmarks": [{"name": "b", "path": str(bench)}], "judge": {"engine": {"model": "/no/judge"}},
               "models": [{"engine": "openai", "model": "m", "base_url": "http://x/v1"}]},
              "judge model folder not found: /no/judge")]
    for data, message in cases:
        with pytest.raises(SkycurateError) as err:
            preflight(EvalFlowConfig.model_validate(data), catalog)
        assert str(err.value).startswith(message), (data, str(err.value))
    with pytest.raises(ConfigError, match="two models are called 'a'"):
        validate_config(EvalFlowConfig, {"models": ["/x/a", "/y/A"]})
    res = CliRunner().invoke(app, ["run", "evaluate", "--engine", "openai", "--store", str(tmp_path / "store")])
    assert res.exit_code == 1 and res.stderr.strip().startswith("error: --engine, --base-url and --device apply")


@pytest.mark.usefixtures("prefect_harness")
def test_the_judge_decides_what_the_rules_cannot(endpoint, benches, tmp_path):
    """a4's reference ("a few") is no number: the judge is asked about each model's answer; a verdict
    decides it (verify_method judge), prose leaves it undecided and lands in eval/judge-quarantine."""
    url, state = endpoint
    store = str(tmp_path / "store")
    out = _evaluate(*benches, "--model", "ace", "--model", "rookie", "--engine", "openai", "--base-url", url,
                    "--judge-model", "judge", "--judge-engine", "openai", "--judge-base-url", url, "--store", store)
    acc = _accuracy(out)
    assert acc[("arith", "ace", "all")] == (4, 4, 1.0, 0, 0) and acc[("arith", "ace", "add")] == (2, 2, 1.0, 0, 0)
    assert acc[("arith", "rookie", "all")] == (4, 1, 0.25, 1, 0)       # unchanged: the judge did not decide
    assert acc[("csvqa", "rookie", "all")] == EXPECTED[("csvqa", "rookie", "all")]   # rules decided: not asked
    assert state["requests"]["judge"] == 2
    assert out["stats"]["judge"] == {"asked": 2, "decided": 1, "quarantined": 1}
    catalog = Catalog(store)
    items = {(r["model"], r["item_id"]): r for r in catalog.open("eval/items@latest").to_table().to_pylist()}
    assert (items[("ace", "a4")]["correct"], items[("ace", "a4")]["verify_method"]) == (True, "judge")
    assert items[("ace", "a4")]["judge_output"].endswith("[[YES]]") and items[("ace", "a1")]["judge_output"] is None
    assert (items[("rookie", "a4")]["correct"], items[("rookie", "a4")]["verify_error"]) == (None, "judge_unparsable")
    quarantine = catalog.open("eval/judge-quarantine@latest").to_table().to_pylist()
    assert [(q["model"], q["benchmark"], q["item_id"], q["reason"]) for q in quarantine] == [
        ("rookie", "arith", "a4", "judge_unparsable")]
    # a rerun with the journal of the judge in place asks it nothing
    shutil.rmtree(Path(store) / "_cache", ignore_errors=True)
    again = _evaluate(*benches, "--model", "ace", "--model", "rookie", "--engine", "openai", "--base-url", url,
                      "--judge-model", "judge", "--judge-engine", "openai", "--judge-base-url", url, "--store", store)
    assert state["requests"]["judge"] == 2 and _accuracy(again) == acc
