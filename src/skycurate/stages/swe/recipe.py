"""Install recipes: how to build a test environment for a repository at a commit, in fallback order.

``infer_recipes(repo_path, commit)`` reads the repository's files at ``commit`` straight from git
(no checkout; ``setup.py`` and ``noxfile.py`` are read with regexes, never executed) and collects:

* runtime dependencies: ``[project.dependencies]``, setup.cfg ``install_requires``, setup.py
  ``install_requires``, Poetry ``[tool.poetry.dependencies]``, ``requirements*.txt`` /
  ``requirements/*.txt`` (with ``-r`` includes; ``*doc*``/``*lint*`` files are skipped);
* test dependencies: extras ``test``/``tests``/``testing``/``dev`` (pyproject, setup.cfg, setup.py
  ``extras_require`` and ``tests_require``), PEP 735 ``[dependency-groups]`` of those names (with
  ``include-group``), test requirement files, ``tox.ini`` ``deps``/``extras`` of test envs,
  ``noxfile.py`` ``session.install(...)`` of test sessions, and ``pip install`` lines of CI workflows;
* pytest plugins the pytest config needs (``addopts`` ``--cov`` -> pytest-cov, ``-n`` -> pytest-xdist,
  ``--timeout`` -> pytest-timeout, ini keys such as ``asyncio_mode`` -> pytest-asyncio, and
  ``required_plugins``), and a pytest that matches the commit's date (``pytest<8`` before 2024-01-27);
* the build backend (``[build-system] requires``; setuptools and wheel for a bare setup.py), needed
  because the project is installed with ``--no-build-isolation``;
* setuptools-scm / hatch-vcs (or pdm's scm) versions: the install command gets
  ``SETUPTOOLS_SCM_PRETEND_VERSION=<nearest tag>`` (``PDM_BUILD_SCM_VERSION`` for pdm), since the image
  has no usable history to compute it from;
* ``requires-python`` (for ``precheck``); ``filterwarnings = error`` adds ``-W ignore::DeprecationWarning``
  to the test command, so deprecations raised by today's libraries do not fail old tests.

Recipes, most complete first: ``declared`` (everything above), ``requirements-files`` (only the
requirement files), ``unpinned`` (``declared`` with upper bounds and pins dropped, for old pins that do
not build on Python 3.11), ``pip-extras`` (pip resolves ``-e .[test]`` itself at install time). A plain
folder of modules (no pyproject/setup.py/setup.cfg) gets ``plain`` and installs nothing. Identical
recipes are listed once.

``precheck(recipe)`` is a cheap, conservative rejection before any image is built.

The work is split by concern: ``requirements`` (one requirement line: parse, merge, unpin, Poetry
specs), ``py_literals`` (literals read out of setup.py/noxfile.py) and ``project_files`` (the
collector that reads a repository's files into what it declares); this module turns that into
recipes and prechecks them.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from packaging.markers import (
    InvalidMarker,
    UndefinedComparison,
    UndefinedEnvironmentName,
)
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from skycurate.connectors.git_repos import GitRepo
from skycurate.schemas.swe import DEFAULT_PYTHON, EnvRecipe
from skycurate.stages.swe.project_files import (
    TEST_EXTRAS,
    _Collector,
    _Declared,
    _Reader,
)
from skycurate.stages.swe.pythons import AUTO, python_order
from skycurate.stages.swe.requirements import _merge, _names, _req, _self_extras, _unpin

BASE_PYTHON = DEFAULT_PYTHON
EDITABLE = "pip install --no-deps --no-build-isolation -e ."
DEPRECATION_IGNORES = " -W ignore::DeprecationWarning -W ignore::PendingDeprecationWarning"

# First day of a pytest major: a commit older than it gets the previous major (pytest < 7 does not run
# on Python 3.11, so 7.x is the floor). The 9.0 date is approximate.
PYTEST_BY_DATE = ((date(2024, 1, 27), "pytest>=7,<8"), (date(2025, 11, 1), "pytest<9"))
# The pytest lines an environment search steps through, newest first (6.2 still runs on 3.9-3.11).
PYTEST_ERAS = ("pytest", "pytest<9", "pytest>=7,<8", "pytest>=6,<7")
_VCS_OR_URL = re.compile(r"^(?:git|hg|svn|bzr)\+|^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


# ---------------------------------------------------------------------------------- recipes


def _group(d: _Declared, name: str, seen: set[str] | None = None) -> list[str]:
    """A PEP 735 dependency group with its ``{include-group = ...}`` entries expanded."""
    seen = seen if seen is not None else set()
    if name in seen:
        return []
    seen.add(name)
    out: list[str] = []
    for item in d.groups.get(name) or []:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("include-group"), str):
            out += _group(d, item["include-group"], seen)
    return out


def _extra(d: _Declared, name: str, seen: set[str] | None = None) -> list[str]:
    """An extra with self-references (``pkg[other]``) expanded."""
    seen = seen if seen is not None else set()
    if name in seen:
        return []
    seen.add(name)
    out = []
    for line in d.extras.get(name) or []:
        selfx = _self_extras(line, d.name)
        if selfx is not None:
            for x in selfx:
                out += _extra(d, x, seen)
        else:
            out.append(line)
    return out


def _drop_self(lines: list[str], project: str | None) -> list[str]:
    return [x for x in lines if _self_extras(x, project) is None]


def pytest_requirement(commit_date: datetime | None) -> str:
    """The pytest line for a commit of that date (today's pytest breaks old tests)."""
    if commit_date is not None:
        day = commit_date.astimezone(UTC).date()
        for first_day, line in PYTEST_BY_DATE:
            if day < first_day:
                return line
    return "pytest"


def _scm_version(repo: GitRepo, commit: str) -> str:
    tag = repo.last_tag(commit)
    if tag:
        try:
            return str(Version(re.sub(r"^[^\d]*", "", tag)))
        except InvalidVersion:
            pass
    return "0.0.0"


def infer_recipes(repo_path: str, commit: str, *, python: str = BASE_PYTHON) -> list[EnvRecipe]:
    """Install recipes for ``repo_path`` at ``commit``, most complete first (see the module docstring)."""
    with GitRepo(repo_path) as repo:
        sha = repo.resolve(commit)
        if sha is None:
            raise ValueError(f"{commit} is not a commit of {repo_path}")
        d = _Collector(_Reader(repo, sha)).collect()
        when = repo.commit_date(sha)
        scm_version = _scm_version(repo, sha) if d.scm else None

    project = d.name
    extras_named = [x for x in TEST_EXTRAS if x in d.extras]
    extras_named += [x for x in d.wanted_extras if x in d.extras and x not in extras_named]
    test_extra_lines = [line for x in extras_named for line in _extra(d, x)]
    group_lines = [line for g in TEST_EXTRAS for line in _group(d, g)]
    runtime = _drop_self(d.runtime, project)
    tests = _drop_self(test_extra_lines + group_lines + d.req_test + d.tool_test, project)
    pytest_line = pytest_requirement(when)

    def tools(lines: list[str]) -> list[str]:
        """Build backend, pytest for the commit's date (a declared pytest gets the date's upper bound
        unless it has one) and the plugins the pytest config needs."""
        extra = list(d.build_requires) if d.has_build_file else []
        declared = [r for r in map(_req, lines) if r is not None and canonicalize_name(r.name) == "pytest"]
        bounded = any(s.operator in ("<", "<=", "==", "~=", "===") for r in declared for s in r.specifier)
        if not declared or (pytest_line != "pytest" and not bounded):
            extra.append(pytest_line)
        have = _names(lines)
        extra += [p for p in d.plugins if canonicalize_name(_req(p).name) not in have]
        return extra

    env = ""
    if scm_version is not None:
        env = (f"PDM_BUILD_SCM_VERSION={scm_version} " if d.scm == "pdm"
               else f"SETUPTOOLS_SCM_PRETEND_VERSION={scm_version} ")
    local_installs = [f"pip install --no-deps --no-build-isolation -e {p}" for p in d.local_paths]
    install = ([env + EDITABLE] if d.has_build_file else []) + local_installs
    test_cmd = EnvRecipe().test_cmd + (DEPRECATION_IGNORES if d.warnings_as_errors else "")

    def recipe(name: str, lines: list[str], install_cmds: list[str] = install) -> EnvRecipe:
        reqs = _merge(lines + tools(lines))
        return EnvRecipe(python=python, requirements=reqs, install=list(install_cmds), test_cmd=test_cmd,
                         name=name, requires_python=d.requires_python)

    declared = d.req_runtime + runtime + tests
    out = [recipe("declared" if d.has_build_file else "plain", declared)]
    if d.req_runtime or d.req_test:
        out.append(recipe("requirements-files", _drop_self(d.req_runtime + d.req_test, project)))
    out.append(recipe("unpinned", [_unpin(x) for x in declared]))
    if d.has_build_file:
        extras = ",".join(extras_named)
        target = f'".[{extras}]"' if extras else "."
        out.append(recipe("pip-extras", [], [f"{env}pip install -e {target}"] + local_installs))

    unique: list[EnvRecipe] = []
    for r in out:
        if not any(r.requirements == u.requirements and r.install == u.install for u in unique):
            unique.append(r)
    return unique


def environments(repo_path: str, commit: str, python: str = AUTO) -> list[EnvRecipe]:
    """Every environment to try for ``repo_path`` at ``commit``, in order: the inferred recipes on
    the first-choice Python, then on each fallback Python (``pythons.python_order``: by the project's
    ``requires-python`` and the commit's date; ``python`` fixes one version instead of ``auto``)."""
    recipes = infer_recipes(repo_path, commit)
    with GitRepo(repo_path) as repo:
        when = repo.commit_date(repo.resolve(commit) or commit)
    order = python_order(recipes[0].requires_python if recipes else None, when, python)
    return [r.model_copy(update={"python": py}) for py in order for r in recipes]


def older_pytest(recipe: EnvRecipe) -> list[EnvRecipe]:
    """``recipe`` again with each pytest era older than the one it was given (``PYTEST_ERAS``), for
    tests that only collect under an older pytest (removed APIs such as ``pytest.Instance``, yield
    tests, nose-style setup). A recipe whose pytest line is the project's own declaration, not an
    era, gets none: the project said which pytest it wants."""
    lines = [r for r in recipe.requirements if r.replace(" ", "") in PYTEST_ERAS]
    if not lines:
        return []
    era = PYTEST_ERAS.index(lines[0].replace(" ", ""))
    rest = [r for r in recipe.requirements if r not in lines]
    base = recipe.name.split("+pytest")[0]
    return [recipe.model_copy(update={"requirements": _merge(rest + [line]), "name": f"{base}+{line}"})
            for line in PYTEST_ERAS[era + 1:]]


# ---------------------------------------------------------------------------------- precheck


def _marker_env(python: str) -> dict[str, str]:
    full = python if python.count(".") >= 2 else f"{python}.0"
    return {"python_version": ".".join(full.split(".")[:2]), "python_full_version": full,
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "platform_machine": "x86_64", "implementation_name": "cpython",
            "platform_python_implementation": "CPython"}


def precheck(recipe: EnvRecipe) -> str | None:
    """A reason (``code: detail``) to reject ``recipe`` before building anything, or None.

    Conservative: only what certainly fails in the offline-built env image: a (valid) ``requires-python``
    that excludes the base Python, requirement lines that are not PEP 508, pip options, editable/VCS/URL or
    local-path requirements, and ``==`` pins that contradict another line for the same package.
    """
    spec = None
    if recipe.requires_python:
        try:
            spec = SpecifierSet(recipe.requires_python.strip().rstrip(","))
        except InvalidSpecifier:
            spec = None   # pip ignores an invalid Requires-Python (with a warning): so do we
        if spec is not None and not spec.contains(recipe.python if recipe.python.count(".") >= 2 else f"{recipe.python}.0",
                             prereleases=True):
            return f"requires_python: {recipe.requires_python} excludes Python {recipe.python}"
    env = _marker_env(recipe.python)
    pins: dict[str, tuple[str, str]] = {}
    specs: dict[str, list[tuple[SpecifierSet, str]]] = {}
    for raw in recipe.requirements:
        line = raw.strip()
        if not line:
            continue
        if line.startswith(("-e ", "--editable")):
            return f"editable_requirement: {line}"
        if line.startswith("-"):
            return f"pip_option: {line}"
        if _VCS_OR_URL.match(line):
            return f"url_requirement: {line}"
        if line.startswith((".", "/", "~")):
            return f"local_requirement: {line}"
        try:
            req = Requirement(line)
        except InvalidRequirement:
            if re.search(r"\.(whl|tar\.gz|zip|tgz)$", line):
                return f"local_requirement: {line}"
            return f"invalid_requirement: {line}"
        if req.url:
            return f"url_requirement: {line}"
        try:
            if req.marker is not None and not req.marker.evaluate(env):
                continue
        except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
            pass   # a marker we cannot evaluate: leave it to pip
        key = canonicalize_name(req.name)
        specs.setdefault(key, []).append((req.specifier, line))
        for s in req.specifier:
            if s.operator in ("==", "===") and "*" not in s.version:
                if key in pins and pins[key][0] != s.version:
                    return f"conflicting_pins: {pins[key][1]} vs {line}"
                pins.setdefault(key, (s.version, line))
    for key, (version, line) in pins.items():
        for spec, other in specs.get(key, []):
            try:
                ok = spec.contains(version, prereleases=True)
            except InvalidVersion:
                ok = True
            if not ok:
                return f"conflicting_pins: {line} vs {other}"
    return None
