"""Requirement lines: parse, merge, unpin, and convert the other syntaxes that hold them.

Split from ``recipe`` so that the rules for one requirement line (PEP 508 parsing, requirements-file
comments and pip options, ``pip install`` arguments, references to the project itself or a local
folder, Poetry's ``^``/``~`` constraints) are apart from reading a repository's files
(``project_files``) and from building the recipes (``recipe``).
"""

from __future__ import annotations

import re
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name


def _req(line: str) -> Requirement | None:
    try:
        return Requirement(line)
    except InvalidRequirement:
        return None


def _strip_line(line: str) -> str:
    """A requirements-file line without its comment and trailing pip options (``--hash=...``)."""
    line = re.sub(r"(^|\s)#.*$", "", line).strip()
    line = re.split(r"\s+--(?:hash|install-option|global-option|config-settings)\b", line)[0].strip()
    return line


def _logical_lines(text: str) -> list[str]:
    """Requirements-file lines with ``\\`` continuations joined."""
    return text.replace("\\\r\n", " ").replace("\\\n", " ").splitlines()


def _merge(lines: list[str]) -> list[str]:
    """Lines in first-seen order without exact duplicates; a bare ``name`` is dropped when the same
    package has a line with a version, extras, marker or URL."""
    out: list[str] = []
    bare_at: dict[str, int] = {}
    specific: set[str] = set()
    for raw in lines:
        line = raw.strip()
        if not line or line in out:
            continue
        req = _req(line)
        if req is None:
            out.append(line)
            continue
        key = canonicalize_name(req.name)
        is_bare = not (req.specifier or req.extras or req.marker or req.url)
        if is_bare:
            if key in specific or key in bare_at:
                continue
            bare_at[key] = len(out)
            out.append(line)
        else:
            specific.add(key)
            if key in bare_at:
                out[bare_at.pop(key)] = ""
            out.append(line)
    return [x for x in out if x]


def _names(lines: list[str]) -> set[str]:
    return {canonicalize_name(r.name) for r in map(_req, lines) if r is not None}


def _unpin(line: str) -> str:
    """``name[extras]>=1.2,<2 ; marker`` -> ``name[extras]>=1.2 ; marker`` (pins and upper bounds dropped)."""
    req = _req(line)
    if req is None or req.url:
        return line
    lower = [s for s in req.specifier if s.operator in (">=", ">", "!=")]
    if len(lower) == len(req.specifier):
        return line
    out = req.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "")
    out += ",".join(sorted(str(s) for s in lower))
    if req.marker:
        out += f" ; {req.marker}"
    return out


def _self_extras(line: str, project: str | None) -> list[str] | None:
    """The extras of a requirement on the project itself (``.[test]``, ``-e .[a,b]``, ``pkg[test]``), else None."""
    s = line.strip()
    if s.startswith(("-e ", "--editable ")):
        s = s.split(None, 1)[1].strip()
    s = s.strip("'\"")
    m = re.match(r"^\.(?:/)?(?:\[(?P<x>[^\]]*)\])?$", s)
    if m:
        return [x.strip() for x in (m.group("x") or "").split(",") if x.strip()]
    req = _req(s)
    if req is not None and project and canonicalize_name(req.name) == project and not req.url:
        return sorted(req.extras)
    return None


def _local_path(line: str) -> str | None:
    """A local directory requirement other than the project root (``-e ./sub``, ``./sub``), else None."""
    s = line.strip()
    if s.startswith(("-e ", "--editable ")):
        s = s.split(None, 1)[1].strip()
    s = s.strip("'\"")
    if re.match(r"^\.\.?/[\w./-]+$", s) and s.rstrip("/") not in (".", "./"):
        return s.rstrip("/")
    return None


def _pip_tokens(tokens: list[str]) -> list[str]:
    """``pip install`` arguments -> requirement-file style lines (``-r f``, ``-e x`` kept as pairs)."""
    out: list[str] = []
    it = iter(tokens)
    for tok in it:
        tok = tok.strip()
        if tok in ("-r", "--requirement", "-e", "--editable", "-c", "--constraint"):
            nxt = next(it, None)
            if nxt:
                out.append(f"{tok} {nxt}")
        elif tok in ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--target", "-t",
                     "--prefix", "--root", "--python"):
            next(it, None)
        elif tok.startswith("-"):
            continue
        elif tok:
            out.append(tok)
    return out


def _poetry_spec(value: str) -> str | None:
    """Poetry constraint -> PEP 440 specifier (``^1.2`` -> ``>=1.2,<2.0``, ``~1.2`` -> ``>=1.2,<1.3``)."""
    parts = []
    for item in (x.strip() for x in value.split(",")):
        if not item or item == "*":
            continue
        m = re.match(r"^([\^~])\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", item)
        if m:
            major, minor, patch = int(m.group(2)), m.group(3), m.group(4)
            lo = item[1:].strip()
            if m.group(1) == "^":
                if major > 0 or minor is None:
                    hi = f"{major + 1}.0"
                elif int(minor) > 0 or patch is None:
                    hi = f"0.{int(minor) + 1}"
                else:
                    hi = f"0.0.{int(patch) + 1}"
            else:
                hi = f"{major}.{int(minor) + 1}" if minor is not None else f"{major + 1}.0"
            parts += [f">={lo}", f"<{hi}"]
        elif re.match(r"^\d", item):
            parts.append(f"=={item}")
        else:
            parts.append(item.replace(" ", ""))
    spec = ",".join(parts)
    try:
        SpecifierSet(spec)
    except InvalidSpecifier:
        return None
    return spec


def _poetry_req(name: str, value: Any) -> str | None:
    if isinstance(value, str):
        spec = _poetry_spec(value)
        return None if spec is None else f"{name}{spec}"
    if isinstance(value, dict):
        if value.get("path") or value.get("git") or value.get("url") or value.get("optional"):
            return None
        spec = _poetry_spec(str(value.get("version", "*")))
        if spec is None:
            return None
        extras = value.get("extras") or []
        return f"{name}{'[' + ','.join(extras) + ']' if extras else ''}{spec}"
    return None
