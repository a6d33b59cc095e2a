"""Code answers: a chain's program, run against the prompt's tests in the Docker sandbox.

R1V2 reports LiveCodeBench; code prompts need a verdict that only running the program gives. The
reference answer of a ``code`` prompt holds its tests, in one of the layouts public sets use:

* Python statements run after the program (MBPP / HumanEval style): ``assert add(2, 3) == 5``;
* stdin/stdout cases (APPS / LiveCodeBench / CodeContests style), as JSON: ``{"inputs": [...],
  "outputs": [...]}`` or ``[{"input": ..., "output": ...}, ...]``; outputs compare line by line
  with trailing whitespace ignored.

The program is the last fenced code block of the chain (after ``</think>`` when there is one).
All programs of a batch run in ONE container of the base image (network off, memory/pids/CPU
limits, non-root, a wall-clock limit for the whole container) through a small harness that runs
each case in its own subprocess with ``code_timeout_s``: a container per sample would cost more than
most programs take. The harness prints one JSON line of results between markers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from skycurate.schemas.cot_verify import PROGRAM_TIMEOUT, UNPARSEABLE_TESTS, VERIFIER_ERROR, VerifyConfig

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_BEGIN, _END = ">>>>> skycurate code results", "<<<<< skycurate code results"
RUN_DIR = "/skycurate"

__all__ = ["PROGRAM_TIMEOUT", "UNPARSEABLE_TESTS", "CodeTests", "CodeVerdict", "check_programs", "extract_code",
           "parse_tests"]

_HARNESS = r'''
import json, os, subprocess, sys
cases = json.load(open(sys.argv[1]))
results = []
for n, case in enumerate(cases):
    d = f"/tmp/case{n}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/solution.py", "w") as f:
        f.write(case["code"] + ("\n\n" + case["asserts"] if case["kind"] == "asserts" else ""))
    runs = [(None, None)] if case["kind"] == "asserts" else case["io"]
    ok, why = True, None
    for stdin, expected in runs:
        try:
            p = subprocess.run([sys.executable, "solution.py"], cwd=d, input=(stdin or "").encode(),
                               capture_output=True, timeout=case["timeout"])
        except subprocess.TimeoutExpired:
            ok, why = False, "timeout"
            break
        if p.returncode != 0:
            ok, why = False, "exit %d: %s" % (p.returncode, p.stderr.decode("utf-8", "replace")[-300:])
            break
        if expected is not None:
            got = [x.rstrip() for x in p.stdout.decode("utf-8", "replace").rstrip().splitlines()]
            want = [x.rstrip() for x in str(expected).rstrip().splitlines()]
            if got != want:
                ok, why = False, "wrong output"
                break
    results.append({"ok": ok, "why": why})
print(">>>>> skycurate code results")
print(json.dumps(results))
print("<<<<< skycurate code results")
'''


@dataclass(frozen=True)
class CodeTests:
    kind: str                                    # "asserts" | "io"
    asserts: str = ""
    io: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CodeVerdict:
    correct: bool | None
    error: str | None
    detail: str | None = None


def extract_code(completion: str | None) -> str | None:
    """The program of a chain: its last fenced code block (after ``</think>`` when it has one)."""
    if not completion:
        return None
    text = completion.rsplit("</think>", 1)[-1] if "</think>" in completion else completion
    blocks = _FENCE.findall(text) or _FENCE.findall(completion)
    return blocks[-1][1].strip("\n") if blocks else None


def parse_tests(reference: str | None) -> CodeTests | None:
    """The tests a ``code`` prompt's reference holds (see the module docstring), or None."""
    if not reference or not reference.strip():
        return None
    text = reference.strip()
    if text[0] in "[{":
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if data is not None:
            return _io_tests(data)
    return CodeTests("asserts", asserts=text) if "assert" in text else None


def _io_tests(data: Any) -> CodeTests | None:
    """stdin/stdout cases from ``{"inputs", "outputs"}`` or a list of ``{"input", "output"}``."""
    if isinstance(data, dict) and isinstance(data.get("inputs"), list) and isinstance(data.get("outputs"), list):
        pairs = list(zip(data["inputs"], data["outputs"], strict=False))
    elif isinstance(data, list) and all(isinstance(x, dict) and "input" in x and "output" in x for x in data):
        pairs = [(x["input"], x["output"]) for x in data]
    else:
        return None
    if not pairs:
        return None
    return CodeTests("io", io=tuple((str(i), str(o)) for i, o in pairs))


def check_programs(programs: list[tuple[str, CodeTests]], cfg: VerifyConfig) -> list[CodeVerdict]:
    """Run every (program, tests) in one sandbox container; a verdict each, in order. A program
    that fails, prints the wrong output or runs past ``cfg.code_timeout_s`` is wrong; Docker
    being unreachable raises ``SandboxError`` (the run stops, the samples are not at fault)."""
    if not programs:
        return []
    from skycurate.sandbox.images import ensure_base_image
    from skycurate.sandbox.run import run_program
    from skycurate.schemas.swe import SandboxLimits

    cases = [{"code": code, "kind": t.kind, "asserts": t.asserts, "io": [list(p) for p in t.io],
              "timeout": cfg.code_timeout_s} for code, t in programs]
    per_case = cfg.code_timeout_s * max(1, max(len(t.io) for _, t in programs))
    limits = SandboxLimits(timeout_s=int(30 + per_case * len(programs)), memory=cfg.code_memory, cpus=1.0,
                           pids=256, network=False)
    files = {f"{RUN_DIR}/harness.py": _HARNESS.encode(), f"{RUN_DIR}/cases.json": json.dumps(cases).encode()}
    result = run_program(ensure_base_image(cfg.code_python), files,
                         ["python", f"{RUN_DIR}/harness.py", f"{RUN_DIR}/cases.json"], limits)
    text = result.log_text
    if _BEGIN in text and _END in text:
        rows = json.loads(text.split(_BEGIN, 1)[1].split(_END, 1)[0])
        return [CodeVerdict(bool(r["ok"]), None if r["ok"] else (PROGRAM_TIMEOUT if r["why"] == "timeout" else None),
                            r["why"]) for r in rows]
    why = "out of memory" if result.oom_killed else "timed out" if result.timed_out else text.strip()[-300:]
    return [CodeVerdict(None, VERIFIER_ERROR, f"the code sandbox gave no results: {why}")] * len(programs)
