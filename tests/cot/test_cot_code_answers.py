"""Code answers: the chain's program is run against the prompt's tests in the Docker sandbox
(asserts or stdin/stdout cases), a correct and a wrong program for the same prompt."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.stages.cot.code_answers import CodeTests, extract_code, parse_tests
from skycurate.stages.cot.verify import verify_batch

ASSERTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0"
IO = json.dumps({"inputs": ["2 3\n", "10 -4\n"], "outputs": ["5\n", "6"]})


def chain(code: str, lang: str = "python") -> str:
    return f"<think>I need to add.</think>\nHere is my solution:\n```{lang}\n{code}\n```\n"


def test_the_program_is_the_last_code_block_after_the_thinking():
    text = ("<think>draft:\n```python\ndef add(a, b):\n    return 0\n```\n</think>\n"
            "Final:\n```py\ndef add(a, b):\n    return a + b\n```")
    assert extract_code(text) == "def add(a, b):\n    return a + b"
    assert extract_code("<think>```python\nx = 1\n```</think> no code after") == "x = 1"   # only inside: taken
    assert extract_code("no code at all") is None and extract_code(None) is None


@pytest.mark.parametrize("reference, expected", [
    (ASSERTS, CodeTests("asserts", asserts=ASSERTS)),
    (IO, CodeTests("io", io=(("2 3\n", "5\n"), ("10 -4\n", "6")))),
    (json.dumps([{"input": "1", "output": "1"}]), CodeTests("io", io=(("1", "1"),))),
    ("the answer is 5", None), ("", None), ('{"inputs": [], "outputs": []}', None), ("[1, 2]", None),
])
def test_tests_are_read_from_the_reference(reference, expected):
    assert parse_tests(reference) == expected


@pytest.mark.integration
def test_code_answers_are_verified_by_running_them_in_the_sandbox():
    rows = [
        ("right asserts", chain("def add(a, b):\n    return a + b"), ASSERTS),
        ("wrong asserts", chain("def add(a, b):\n    return a - b"), ASSERTS),
        ("right io", chain("a, b = map(int, input().split())\nprint(a + b)"), IO),
        ("wrong io", chain("a, b = map(int, input().split())\nprint(a * b)"), IO),         # wrong output
        ("loop", chain("def add(a, b):\n    while True:\n        pass"), ASSERTS),            # never ends
        ("net", chain("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n"
                      "def add(a, b):\n    return a + b"), ASSERTS),                          # no network
        ("none", "I would add the numbers.", ASSERTS),                                        # no program
        ("notests", chain("def add(a, b):\n    return a + b"), "add two numbers"),           # nothing to run
    ]
    batch = pa.RecordBatch.from_pylist([{"completion": c, "reference_answer": r, "answer_type": "code"}
                                        for _, c, r in rows])
    out = verify_batch(batch, VerifyConfig(code_timeout_s=3)).to_pylist()
    got = {name: (o["correct"], o["verify_method"], o["verify_error"]) for (name, _, _), o in zip(rows, out)}
    assert got == {
        "right asserts": (True, "sandbox", None), "wrong asserts": (False, "sandbox", None),
        "right io": (True, "sandbox", None), "wrong io": (False, "sandbox", None),
        "loop": (False, "sandbox", "program_timeout"),
        "net": (False, "sandbox", None),
        "none": (False, None, "no_answer_found"),
        "notests": (None, None, "unparseable_tests"),
    }
    assert out[0]["extract_method"] == "code_block" and out[0]["extracted_answer"].startswith("def add")
