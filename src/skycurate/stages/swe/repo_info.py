"""What mining reads off a repository at one revision: main language, licence, version.

Split out of ``mining`` because these look at the repository's files, not at its changes: the repo
filters (``check_repo``: exclusion list, language, test files, licence) run once per repository
before any change is mined, and ``detect_version`` labels each candidate's base commit.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from collections import Counter
from collections.abc import Iterable

from skycurate.connectors.git_repos import GitRepo
from skycurate.schemas.swe import RepoFilter
from skycurate.schemas.swe_benchmarks import benchmarks_of
from skycurate.stages.swe.patch_split import is_test_path

# ---------------------------------------------------------------------------------- repo filters

_EXT_LANG = {
    ".py": "python", ".pyi": "python", ".pyx": "python",
    ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".go": "go", ".rs": "rust", ".java": "java",
    ".kt": "kotlin", ".scala": "scala", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
    ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".cs": "csharp", ".rb": "ruby", ".php": "php",
    ".swift": "swift", ".m": "objective-c", ".jl": "julia", ".r": "r", ".lua": "lua", ".ex": "elixir",
    ".exs": "elixir", ".erl": "erlang", ".hs": "haskell", ".clj": "clojure", ".dart": "dart",
}
_VENDORED = frozenset({"node_modules", "vendor", "third_party", "thirdparty", "site-packages", "_vendor",
                       "dist", "build", ".git"})


def main_language(paths: Iterable[str]) -> str | None:
    """The language with the most source files (vendored folders and minified JS left out)."""
    counts: Counter[str] = Counter()
    for p in paths:
        parts = p.split("/")
        if any(x in _VENDORED for x in parts[:-1]) or p.endswith(".min.js"):
            continue
        dot = parts[-1].rfind(".")
        lang = _EXT_LANG.get(parts[-1][dot:].lower()) if dot > 0 else None
        if lang:
            counts[lang] += 1
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


_LICENSE_FILE = re.compile(r"^(?:un)?(?:licen[cs]e|copying)(?:[.-].*)?$", re.IGNORECASE)


def detect_license(text: str | None) -> str | None:
    """SPDX id of a licence text by its key phrases: MIT, Apache-2.0, BSD-2/3-Clause, GPL-2.0/3.0,
    LGPL-2.1/3.0, AGPL-3.0, MPL-2.0, ISC, Unlicense; None if none is recognised."""
    if not text:
        return None
    t = " ".join(text.lower().split())
    head = t[:600]
    if "gnu affero general public license" in head:
        return "AGPL-3.0"
    if "gnu lesser general public license" in head or "gnu library general public license" in head:
        return "LGPL-3.0" if "version 3" in head else "LGPL-2.1"
    if "gnu general public license" in head:
        if "version 3" in head:
            return "GPL-3.0"
        if "version 2" in head:
            return "GPL-2.0"
    if "apache license" in head and "version 2.0" in head:
        return "Apache-2.0"
    if "mozilla public license" in head and "2.0" in head:
        return "MPL-2.0"
    if "permission is hereby granted, free of charge" in t:
        return "MIT"
    if "redistribution and use in source and binary forms" in t:
        if "neither the name" in t or "names of its contributors" in t or "name of the copyright holder" in t:
            return "BSD-3-Clause"
        return "BSD-2-Clause"
    if "permission to use, copy, modify, and/or distribute this software" in t \
            or "permission to use, copy, modify, and distribute this software for any purpose" in t:
        return "ISC"
    if "this is free and unencumbered software released into the public domain" in t:
        return "Unlicense"
    return None


def repo_license(repo: GitRepo, rev: str = "HEAD", files: list[str] | None = None) -> str | None:
    """Licence of the repo at ``rev``: the first recognised LICENSE*/LICENCE*/COPYING* file at its root."""
    files = repo.list_files(rev) if files is None else files
    candidates = sorted((f for f in files if "/" not in f and _LICENSE_FILE.match(f)),
                        key=lambda f: (not f.lower().startswith("licen"), f))
    for f in candidates:
        lic = detect_license(repo.read_file(rev, f))
        if lic:
            return lic
    return None


def check_repo(repo: GitRepo, name: str, filters: RepoFilter, rev: str = "HEAD") -> tuple[str, str] | None:
    """(reason, detail) if the repo is filtered out, else None. Reasons: ``excluded``, ``language``,
    ``no_tests``, ``license``."""
    if name.lower() in {e.lower() for e in filters.exclude}:
        benchmarks = benchmarks_of(name)
        if benchmarks:
            return "excluded", (f"{name} is a source repository of {', '.join(benchmarks)}: never mined, so "
                                "mined data cannot leak into them")
        return "excluded", f"{name} is on the exclusion list"
    files = repo.list_files(rev)
    if filters.languages:
        lang = main_language(files)
        allowed = [x.lower() for x in filters.languages]
        if lang not in allowed:
            return "language", f"main language {lang or 'unknown'} not in {allowed}"
    if filters.require_tests and not any(is_test_path(f) for f in files):
        return "no_tests", "no test file at HEAD"
    if filters.licenses is not None:
        lic = repo_license(repo, rev, files)
        allowed_lic = {x.lower() for x in filters.licenses}
        if lic is None or lic.lower() not in allowed_lic:
            return "license", f"licence {lic or 'unknown'} not in {sorted(filters.licenses)}"
    return None


# ---------------------------------------------------------------------------------- version

_VERSION_FILES = ("__init__.py", "_version.py", "version.py", "__about__.py", "__version__.py")
_DUNDER_VERSION = re.compile(r"""^__version__\s*(?::\s*str\s*)?=\s*["']([^"']+)["']""", re.MULTILINE)
_SETUP_VERSION = re.compile(r"""\bversion\s*=\s*["'](\d[^"']*)["']""")
_MAJOR_MINOR = re.compile(r"^v?(\d+)(?:\.(\d+))?")


def _major_minor(version: str | None) -> str | None:
    m = _MAJOR_MINOR.match((version or "").strip())
    if not m:
        return None
    return f"{m.group(1)}.{m.group(2) or '0'}"


def detect_version(repo: GitRepo, rev: str) -> str | None:
    """``major.minor`` of the project at ``rev`` (SWE-bench's ``version``), found cheaply: a literal version
    in pyproject.toml / setup.cfg / setup.py, a ``__version__`` in a package's ``__init__``/``_version``
    module, else the nearest tag; None if none."""
    text = repo.read_file(rev, "pyproject.toml")
    if text:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            data = {}
        project = data.get("project") or {}
        if isinstance(project.get("version"), str) and "version" not in (project.get("dynamic") or []):
            return _major_minor(project["version"])
        poetry = ((data.get("tool") or {}).get("poetry") or {}).get("version")
        if isinstance(poetry, str) and _major_minor(poetry) and poetry not in ("0.0.0", "0.0.0.dev0"):
            return _major_minor(poetry)
    text = repo.read_file(rev, "setup.cfg")
    if text:
        cp = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            cp.read_string(text)
            v = cp.get("metadata", "version", fallback=None)
        except configparser.Error:
            v = None
        if v and _major_minor(v):
            return _major_minor(v)
    text = repo.read_file(rev, "setup.py")
    if text:
        m = _SETUP_VERSION.search(text)
        if m:
            return _major_minor(m.group(1))
    files = [f for f in repo.list_files(rev)
             if f.count("/") <= 2 and f.rsplit("/", 1)[-1] in _VERSION_FILES and not is_test_path(f)]
    for f in sorted(files, key=lambda p: (p.count("/"), p))[:12]:
        m = _DUNDER_VERSION.search(repo.read_file(rev, f) or "")
        if m and _major_minor(m.group(1)):
            return _major_minor(m.group(1))
    return _major_minor(repo.last_tag(rev))
