"""Literal values read out of Python source without running it (``setup.py``, ``noxfile.py``).

Split from ``project_files`` because these are plain text scanners (string literals, balanced
brackets, ``name = [...]`` assignments, ``arg=[...]`` keyword arguments, ``extras_require``), not
knowledge of any config file; the collector uses them on ``setup.py`` and ``noxfile.py``.
"""

from __future__ import annotations

import re

from skycurate.stages.swe.requirements import _req

_PY_STR = re.compile(r"""(?P<q>['"])(?P<s>(?:\\.|(?!(?P=q)).)*)(?P=q)""")


def _strip_py_comments(code: str) -> str:
    return re.sub(r"(?m)^\s*#.*$", "", code)


def _balanced(text: str, start: int) -> str | None:
    """The text inside the bracket at ``start`` up to its match (string literals skipped)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            m = _PY_STR.match(text, i)
            if m:
                i = m.end()
                continue
        if ch in pairs:
            stack.append(pairs[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
            if not stack:
                return text[start + 1:i]
        i += 1
    return None


def _strings(text: str) -> list[str]:
    return [m.group("s") for m in _PY_STR.finditer(text)]


def _py_list_assign(code: str, name: str) -> list[str]:
    m = re.search(rf"(?m)^\s*{re.escape(name)}\s*(?::[^=\n]*)?=\s*([\[(])", code)
    if not m:
        return []
    body = _balanced(code, m.start(1))
    return _strings(body) if body is not None else []


def _py_list_arg(code: str, arg: str) -> list[str]:
    """String items of ``arg=[...]`` (or ``arg=NAME`` with ``NAME = [...]`` in the same file)."""
    out: list[str] = []
    for m in re.finditer(rf"\b{arg}\s*=\s*", code):
        rest = code[m.end():]
        if rest[:1] in "[(":
            body = _balanced(code, m.end())
            if body is not None:
                out += _strings(body)
        else:
            name = re.match(r"[A-Za-z_]\w*", rest)
            if name:
                out += _py_list_assign(code, name.group(0))
    return [x for x in out if _req(x) is not None and not re.search(r"\.(txt|in|cfg|py|toml)$", x)]


def _py_extras(code: str) -> dict[str, list[str]]:
    """``extras_require={'test': [...], ...}`` (or a dict assigned to a name) -> {extra: lines}."""
    body = None
    m = re.search(r"\bextras_require\s*=\s*", code)
    if m:
        rest = code[m.end():]
        if rest[:1] == "{":
            body = _balanced(code, m.end())
        else:
            name = re.match(r"[A-Za-z_]\w*", rest)
            if name:
                a = re.search(rf"(?m)^\s*{re.escape(name.group(0))}\s*(?::[^=\n]*)?=\s*\{{", code)
                if a:
                    body = _balanced(code, a.end() - 1)
    out: dict[str, list[str]] = {}
    if not body:
        return out
    for km in re.finditer(r"""(?P<q>['"])(?P<k>[\w.-]+)(?P=q)\s*:\s*([\[(])""", body):
        items = _balanced(body, km.start(3))
        if items is not None:
            out[km.group("k")] = [x for x in _strings(items) if _req(x) is not None]
    return out
