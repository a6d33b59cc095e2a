"""Pure parsers of test logs: pytest's ``-rA`` short summary (and ``-v`` progress lines), and
JUnit XML (``--junitxml``). No Docker here; unit tests feed them hand-written logs.

Statuses are pytest's words: PASSED, FAILED, ERROR, SKIPPED, XFAIL, XPASS. When a test is
reported twice (a pass, then an error in teardown), the worse status wins.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

PASSED, FAILED, ERROR, SKIPPED, XFAIL, XPASS = "PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS"
STATUSES = (PASSED, FAILED, ERROR, SKIPPED, XFAIL, XPASS)
# Higher = worse; a later report of a test replaces an earlier one only if it is not better.
_RANK = {PASSED: 0, SKIPPED: 1, XFAIL: 2, XPASS: 3, FAILED: 4, ERROR: 5}

START_MARKER = ">>>>> Start Test Output"
END_MARKER = ">>>>> End Test Output"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_SUMMARY = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (.+)$")
_SKIP_LOC = re.compile(r"^SKIPPED \[\d+\] (?P<loc>.+?:\d+)(?:: .*)?$")
_VERBOSE = re.compile(
    r"^(?P<id>\S.*?) (?P<st>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)(?: \(.*\))?\s+\[\s*\d+%\]\s*$")
_XDIST = re.compile(r"^\[gw\d+\] \[\s*\d+%\] (?P<st>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (?P<id>.+)$")


def _record(out: dict[str, str], test_id: str, status: str) -> None:
    old = out.get(test_id)
    if old is None or _RANK[status] >= _RANK[old]:
        out[test_id] = status


def _looks_like_test(test_id: str) -> bool:
    """A pytest node id (``path::name``) or a module (collection errors), not unittest's
    ``FAILED (failures=1)``."""
    return "::" in test_id or bool(re.search(r"\.py$", test_id))


def split_nodeid(rest: str) -> str:
    """The node id at the start of a summary line's remainder.

    ``tests/t.py::test_a - AssertionError`` -> ``tests/t.py::test_a``;
    ``tests/t.py::test_p[a - b] - msg`` -> ``tests/t.py::test_p[a - b]`` (parameters may hold
    spaces, dashes and brackets: the id ends at the first ``]`` followed by the end or a space).
    """
    rest = rest.rstrip()
    space = rest.find(" ")
    bracket = rest.find("[")
    if bracket != -1 and (space == -1 or bracket < space):
        i = bracket
        while True:
            j = rest.find("]", i + 1)
            if j == -1:
                break
            if j + 1 == len(rest) or rest[j + 1] == " ":
                return rest[:j + 1]
            i = j
        cut = rest.find(" - ", bracket)
        return rest if cut == -1 else rest[:cut]
    return rest if space == -1 else rest[:space]


def extract_test_output(log: str) -> str:
    """The part of a sandbox log between the start and end markers (all of it if absent)."""
    start = log.find(START_MARKER)
    if start == -1:
        return log
    end = log.find(END_MARKER, start)
    body = log[start + len(START_MARKER):] if end == -1 else log[start + len(START_MARKER):end]
    return body.lstrip("\n")


def parse_pytest_log(log: str) -> dict[str, str]:
    """``{test id: status}`` from a pytest log (``-rA`` summary lines, plus ``-v`` / xdist
    progress lines, so a run killed before its summary still yields the tests that finished).

    ``SKIPPED [1] tests/t.py:12: reason`` lines carry no node id; they are keyed by their
    location (``tests/t.py:12``).
    """
    out: dict[str, str] = {}
    for raw in log.splitlines():
        line = _ANSI.sub("", raw).rstrip("\r").rstrip()
        if not line:
            continue
        if line.startswith("SKIPPED ["):
            m = _SKIP_LOC.match(line)
            if m:
                _record(out, m.group("loc"), SKIPPED)
            continue
        m = _SUMMARY.match(line)
        if m:
            test_id = split_nodeid(m.group(2))
            if _looks_like_test(test_id):
                _record(out, test_id, m.group(1))
            continue
        m = _XDIST.match(line)
        if m:
            test_id = split_nodeid(m.group("id"))
            if _looks_like_test(test_id):
                _record(out, test_id, m.group("st"))
            continue
        m = _VERBOSE.match(line)
        if m and _looks_like_test(m.group("id")):
            _record(out, m.group("id"), m.group("st"))
    return out


def parse_junit_xml(xml_text: str | bytes, test_files: Iterable[str] | None = None) -> dict[str, str]:
    """``{test id: status}`` from pytest's ``--junitxml`` output, ids in pytest's node-id form.

    With ``junit_family=xunit1`` the ``file`` attribute gives the path; otherwise the dotted
    ``classname`` is mapped back to a path, using ``test_files`` when given (``tests.test_x.TestC``
    -> ``tests/test_x.py::TestC``), else by taking the first capitalised part as the class.
    """
    raw = xml_text.encode() if isinstance(xml_text, str) else xml_text
    if b"<!DOCTYPE" in raw[:4096] or b"<!ENTITY" in raw:
        raise ValueError("JUnit XML with a DTD or entities is not accepted")
    root = ET.fromstring(raw)
    files = {f.replace("\\", "/") for f in (test_files or ())}
    out: dict[str, str] = {}
    for case in root.iter("testcase"):
        test_id = _junit_nodeid(case.get("classname") or "", case.get("name") or "", case.get("file"), files)
        status = PASSED
        for child in case:
            if child.tag == "failure":
                status = FAILED if _RANK[FAILED] > _RANK[status] else status
            elif child.tag == "error":
                status = ERROR
            elif child.tag == "skipped":
                kind = XFAIL if (child.get("type") or "") == "pytest.xfail" else SKIPPED
                status = kind if _RANK[kind] > _RANK[status] else status
        _record(out, test_id, status)
    return out


def _junit_nodeid(classname: str, name: str, file: str | None, files: set[str]) -> str:
    if not classname:                      # collection error: name is the dotted module
        return name.replace(".", "/") + ".py" if name and "/" not in name else name
    parts = classname.split(".")
    if file:
        file = file.replace("\\", "/")
        module = file[:-3].replace("/", ".") if file.endswith(".py") else file
        rest = classname[len(module):].lstrip(".") if classname.startswith(module) else ""
        return "::".join([file, *(rest.split(".") if rest else []), name])
    k = None
    if files:
        for i in range(len(parts), 0, -1):
            if "/".join(parts[:i]) + ".py" in files:
                k = i
                break
    if k is None:
        k = next((i for i, p in enumerate(parts) if p[:1].isupper()), len(parts))
        k = max(k, 1)
    return "::".join(["/".join(parts[:k]) + ".py", *parts[k:], name])


def summarize(statuses: dict[str, str]) -> dict[str, int]:
    """Counts per status."""
    out = {s: 0 for s in STATUSES}
    for st in statuses.values():
        out[st] = out.get(st, 0) + 1
    return out
