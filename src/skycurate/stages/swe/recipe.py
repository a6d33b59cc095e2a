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
"""

from __future__ import annotations

import configparser
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import PurePosixPath
from typing import Any

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
from skycurate.schemas.swe import EnvRecipe

BASE_PYTHON = "3.11"
EDITABLE = "pip install --no-deps --no-build-isolation -e ."
TEST_EXTRAS = ("test", "tests", "testing", "dev")
DEPRECATION_IGNORES = " -W ignore::DeprecationWarning -W ignore::PendingDeprecationWarning"

# First day of a pytest major: a commit older than it gets the previous major (pytest < 7 does not run
# on Python 3.11, so 7.x is the floor). The 9.0 date is approximate.
PYTEST_BY_DATE = ((date(2024, 1, 27), "pytest>=7,<8"), (date(2025, 11, 1), "pytest<9"))

# pytest command-line options (in addopts) and ini keys -> the plugin that defines them.
_OPTION_PLUGINS = (
    ("--cov", "pytest-cov"), ("--no-cov", "pytest-cov"),
    ("--numprocesses", "pytest-xdist"), ("--dist", "pytest-xdist"), ("--maxprocesses", "pytest-xdist"),
    ("--tx", "pytest-xdist"), ("--looponfail", "pytest-xdist"),
    ("--timeout", "pytest-timeout"), ("--reruns", "pytest-rerunfailures"), ("--only-rerun", "pytest-rerunfailures"),
    ("--benchmark", "pytest-benchmark"), ("--mypy", "pytest-mypy"), ("--flake8", "pytest-flake8"),
    ("--black", "pytest-black"), ("--isort", "pytest-isort"), ("--pylint", "pytest-pylint"),
    ("--pycodestyle", "pytest-pycodestyle"), ("--ruff", "pytest-ruff"), ("--doctest-plus", "pytest-doctestplus"),
    ("--doctest-rst", "pytest-doctestplus"), ("--remote-data", "pytest-remotedata"), ("--html", "pytest-html"),
    ("--self-contained-html", "pytest-html"), ("--json-report", "pytest-json-report"),
    ("--randomly", "pytest-randomly"), ("--hypothesis", "hypothesis"), ("--mpl", "pytest-mpl"),
    ("--ds", "pytest-django"), ("--dc", "pytest-django"), ("--reuse-db", "pytest-django"),
    ("--create-db", "pytest-django"), ("--nomigrations", "pytest-django"), ("--asyncio-mode", "pytest-asyncio"),
    ("--instafail", "pytest-instafail"), ("--forked", "pytest-forked"), ("--snapshot-update", "syrupy"),
    ("--pep8", "pytest-pep8"), ("--flakes", "pytest-flakes"), ("--env", "pytest-env"),
)
_INI_PLUGINS = {
    "asyncio_mode": "pytest-asyncio", "asyncio_default_fixture_loop_scope": "pytest-asyncio",
    "timeout": "pytest-timeout", "timeout_method": "pytest-timeout", "timeout_func_only": "pytest-timeout",
    "django_settings_module": "pytest-django", "django_find_project": "pytest-django", "env": "pytest-env",
    "mock_use_standalone_module": "pytest-mock", "flake8-ignore": "pytest-flake8",
    "flake8-max-line-length": "pytest-flake8", "qt_api": "pytest-qt", "looponfailroots": "pytest-xdist",
    "rsyncdirs": "pytest-xdist", "doctest_plus": "pytest-doctestplus", "remote_data_strict": "pytest-remotedata",
    "mpl-baseline-path": "pytest-mpl", "trio_mode": "pytest-trio", "bdd_features_base_dir": "pytest-bdd",
    "reruns": "pytest-rerunfailures", "randomly_seed": "pytest-randomly",
}
_P_MODULES = {"xdist": "pytest-xdist", "pytest_cov": "pytest-cov", "pytest_mock": "pytest-mock",
              "pytest_asyncio": "pytest-asyncio", "asyncio": "pytest-asyncio", "randomly": "pytest-randomly",
              "pytest_randomly": "pytest-randomly", "pytest_timeout": "pytest-timeout", "timeout": "pytest-timeout",
              "pytest_django": "pytest-django", "anyio": "anyio", "trio": "pytest-trio",
              "pytest_benchmark": "pytest-benchmark", "rerunfailures": "pytest-rerunfailures",
              "pytest_rerunfailures": "pytest-rerunfailures", "hypothesis": "hypothesis",
              "pytest_env": "pytest-env", "syrupy": "syrupy"}
_SKIP_REQ_FILES = re.compile(r"doc|lint|typing|mypy|style|format|release|publish|benchmark", re.IGNORECASE)
_TEST_REQ_FILES = re.compile(r"test|dev|ci\b|ci[-_.]", re.IGNORECASE)
_NON_TEST_ENVS = re.compile(r"doc|lint|flake|mypy|type|style|format|black|isort|pre-?commit|pkg|build|release|"
                            r"clean|report|bandit|pylint|ruff|spell|manifest|publish|bump|changelog|dev\b",
                            re.IGNORECASE)
_PIP_INSTALL = re.compile(r"(?:^|[\s;&|(])(?:python3?\s+-m\s+)?(?:uv\s+)?pip3?\s+install\s+(?P<args>[^\n#]*)")
_SCM_BUILD = re.compile(r"^(setuptools[-_]scm|hatch[-_]vcs|setuptools[-_]git[-_]versioning)\b", re.IGNORECASE)
_VCS_OR_URL = re.compile(r"^(?:git|hg|svn|bzr)\+|^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_PY_STR = re.compile(r"""(?P<q>['"])(?P<s>(?:\\.|(?!(?P=q)).)*)(?P=q)""")


# ---------------------------------------------------------------------------------- requirement lines


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


# ---------------------------------------------------------------------------------- what a repo declares


@dataclass
class _Declared:
    name: str | None = None                       # canonical project name
    has_build_file: bool = False
    build_requires: list[str] = field(default_factory=list)
    runtime: list[str] = field(default_factory=list)
    extras: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, list[Any]] = field(default_factory=dict)
    wanted_extras: list[str] = field(default_factory=list)   # named by tox/nox/CI (.[x])
    req_runtime: list[str] = field(default_factory=list)     # requirement files
    req_test: list[str] = field(default_factory=list)
    tool_test: list[str] = field(default_factory=list)       # tox / nox / CI / tests_require
    local_paths: list[str] = field(default_factory=list)     # -e ./subpackage
    plugins: list[str] = field(default_factory=list)
    scm: str | None = None                                    # setuptools-scm | pdm
    requires_python: str | None = None
    warnings_as_errors: bool = False


class _Reader:
    def __init__(self, repo: GitRepo, commit: str):
        self.repo, self.commit = repo, commit
        self.files = repo.list_files(commit)
        self.file_set = set(self.files)
        self._cache: dict[str, str | None] = {}

    def text(self, path: str) -> str | None:
        if path not in self._cache:
            self._cache[path] = self.repo.read_file(self.commit, path) if path in self.file_set else None
        return self._cache[path]


def _ini(text: str | None) -> configparser.ConfigParser | None:
    if not text:
        return None
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str  # keep key case (DJANGO_SETTINGS_MODULE)
    try:
        cp.read_string(text)
    except configparser.Error:
        return None
    return cp


def _ini_list(value: str | None) -> list[str]:
    """A multi-line (or ``;``/``,``-free) ini value -> non-empty, comment-free lines."""
    out = []
    for line in (value or "").splitlines():
        line = _strip_line(line)
        if line:
            out.append(line)
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


class _Collector:
    """Reads every config style of one repo at one commit into a ``_Declared``."""

    def __init__(self, reader: _Reader):
        self.r = reader
        self.d = _Declared()

    # ---- generic requirement lines (from any source)

    def _add(self, target: list[str], lines: list[str], base_dir: str = "", seen: set[str] | None = None) -> None:
        seen = seen if seen is not None else set()
        tokens = list(lines)
        i = 0
        while i < len(tokens):
            line = _strip_line(tokens[i])
            i += 1
            if not line:
                continue
            parts = line.split(None, 1)
            if parts[0] in ("-r", "--requirement") or re.match(r"^(-r|--requirement=)\S", parts[0]):
                path = parts[1] if len(parts) > 1 else re.sub(r"^(-r|--requirement=)", "", parts[0])
                self._include(target, path.strip(), base_dir, seen)
                continue
            if parts[0] in ("-c", "--constraint") or parts[0].startswith(("-c", "--constraint=")):
                continue   # constraints are not requirements
            extras = _self_extras(line, self.d.name)
            if extras is not None:
                self.d.wanted_extras.extend(x for x in extras if x not in self.d.wanted_extras)
                continue
            local = _local_path(line)
            if local is not None:
                if local not in self.d.local_paths:
                    self.d.local_paths.append(local)
                continue
            if parts[0] in ("-e", "--editable"):
                target.append(line)      # an editable VCS requirement: kept, precheck flags it
                continue
            if line.startswith("-"):
                continue                 # --index-url, --pre, -U ...: pip options
            if "{" in line or "$" in line:
                continue                 # tox/CI substitutions we cannot resolve
            target.append(line)

    def _include(self, target: list[str], path: str, base_dir: str, seen: set[str]) -> None:
        path = path.replace("{toxinidir}/", "").strip("'\"")
        full = str(PurePosixPath(base_dir, path)) if base_dir else path
        full = _normpath(full)
        if full in seen:
            return
        seen.add(full)
        text = self.r.text(full)
        if text is None:
            return
        parent = str(PurePosixPath(full).parent)
        self._add(target, _logical_lines(text), "" if parent == "." else parent, seen)

    # ---- sources

    def collect(self) -> _Declared:
        r, d = self.r, self.d
        d.has_build_file = "setup.py" in r.file_set
        self.pyproject()
        self.setup_cfg()
        self.setup_py()
        if d.has_build_file and not d.build_requires:
            d.build_requires = ["setuptools>=40.8.0", "wheel"]   # pip's default backend
        self.requirement_files()
        self.tox()
        self.nox()
        self.ci()
        self.pytest_config()
        return d

    def pyproject(self) -> None:
        text = self.r.text("pyproject.toml")
        if not text:
            return
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return
        d = self.d
        project = data.get("project") or {}
        tool = data.get("tool") or {}
        if project or data.get("build-system") or "poetry" in tool:
            d.has_build_file = True
        if isinstance(project.get("name"), str):
            d.name = canonicalize_name(project["name"])
        poetry = tool.get("poetry") or {}
        if d.name is None and isinstance(poetry.get("name"), str):
            d.name = canonicalize_name(poetry["name"])
        build = data.get("build-system") or {}
        d.build_requires = [x for x in build.get("requires") or [] if isinstance(x, str)]
        d.runtime += [x for x in project.get("dependencies") or [] if isinstance(x, str)]
        for extra, reqs in (project.get("optional-dependencies") or {}).items():
            d.extras.setdefault(str(extra), []).extend(x for x in reqs or [] if isinstance(x, str))
        for group, reqs in (data.get("dependency-groups") or {}).items():
            d.groups[str(group)] = list(reqs or [])
        if isinstance(project.get("requires-python"), str):
            d.requires_python = project["requires-python"]
        # Poetry: its own constraint syntax, converted for the common cases.
        deps = poetry.get("dependencies") or {}
        if isinstance(deps, dict):
            if isinstance(deps.get("python"), str) and d.requires_python is None:
                d.requires_python = _poetry_spec(deps["python"])
            d.runtime += [x for x in (_poetry_req(k, v) for k, v in deps.items() if k.lower() != "python") if x]
        poetry_test = dict(poetry.get("dev-dependencies") or {})
        for gname, g in (poetry.get("group") or {}).items():
            if gname in TEST_EXTRAS and isinstance(g, dict):
                poetry_test.update(g.get("dependencies") or {})
        d.tool_test += [x for x in (_poetry_req(k, v) for k, v in poetry_test.items()) if x]
        # scm versions
        build_names = [re.split(r"[\s\[<>=!~;]", x, maxsplit=1)[0] for x in d.build_requires]
        if "setuptools_scm" in tool or "setuptools-scm" in tool or any(_SCM_BUILD.match(b) for b in build_names) \
                or ((tool.get("hatch") or {}).get("version") or {}).get("source") == "vcs":
            d.scm = "setuptools-scm"
        elif ((tool.get("pdm") or {}).get("version") or {}).get("source") == "scm":
            d.scm = "pdm"
        tox = (tool.get("tox") or {}).get("legacy_tox_ini")
        if isinstance(tox, str):
            self._tox_text(tox)

    def setup_cfg(self) -> None:
        cp = _ini(self.r.text("setup.cfg"))
        if cp is None:
            return
        d = self.d
        if cp.has_section("metadata") or cp.has_section("options"):
            d.has_build_file = True
        if d.name is None and cp.has_option("metadata", "name"):
            d.name = canonicalize_name(cp.get("metadata", "name").strip())
        if cp.has_section("options"):
            d.runtime += [x for x in _ini_list(cp.get("options", "install_requires", fallback="")) if _req(x)]
            if d.requires_python is None and cp.get("options", "python_requires", fallback=""):
                d.requires_python = cp.get("options", "python_requires").strip()
            d.tool_test += [x for x in _ini_list(cp.get("options", "tests_require", fallback="")) if _req(x)]
            if re.search(r"setuptools[-_]scm", cp.get("options", "setup_requires", fallback=""), re.IGNORECASE):
                d.scm = d.scm or "setuptools-scm"
        if cp.has_section("options.extras_require"):
            for extra in cp.options("options.extras_require"):
                d.extras.setdefault(extra, []).extend(_ini_list(cp.get("options.extras_require", extra)))

    def setup_py(self) -> None:
        text = self.r.text("setup.py")
        if not text:
            return
        d = self.d
        code = _strip_py_comments(text)
        call = re.search(r"\bsetup\s*\(", code)
        setup_args = (_balanced(code, call.end() - 1) if call else None) or code
        if d.name is None:
            m = re.search(r"""\bname\s*=\s*["']([\w.-]+)["']""", setup_args)
            if m:
                d.name = canonicalize_name(m.group(1))
        d.runtime += _py_list_arg(code, "install_requires")
        d.tool_test += _py_list_arg(code, "tests_require")
        for extra, reqs in _py_extras(code).items():
            d.extras.setdefault(extra, []).extend(reqs)
        m = re.search(r"""\bpython_requires\s*=\s*["']([^"']+)["']""", code)
        if m and d.requires_python is None:
            d.requires_python = m.group(1)
        if re.search(r"\buse_scm_version\s*=", code) or re.search(r"setuptools[-_]scm", code):
            d.scm = d.scm or "setuptools-scm"

    def requirement_files(self) -> None:
        files = self.r.files
        txt = set(files)
        picked = []
        for f in sorted(files):
            p = PurePosixPath(f)
            name = p.name.lower()
            parent = str(p.parent)
            if parent == "." and "requirements" in name and name.endswith((".txt", ".in")) or parent.lower() in ("requirements", "reqs", "requirements.d") and name.endswith((".txt", ".in")) or parent.lower() in ("test", "tests", "testing") and name.startswith("requirements") \
                    and name.endswith(".txt"):
                pass
            else:
                continue
            if name.endswith(".in") and f[:-3] + ".txt" in txt:
                continue   # a pip-compile input next to its lock file
            if _SKIP_REQ_FILES.search(name):
                continue
            picked.append(f)
        for f in picked:
            p = PurePosixPath(f)
            is_test = bool(_TEST_REQ_FILES.search(p.name)) or p.parent.name.lower() in ("test", "tests", "testing")
            target = self.d.req_test if is_test else self.d.req_runtime
            self._include(target, f, "", set())

    def _tox_text(self, text: str) -> None:
        cp = _ini(text)
        if cp is None:
            return
        for section in cp.sections():
            if not (section == "testenv" or section.startswith("testenv:")):
                continue
            env = section.split(":", 1)[1] if ":" in section else ""
            if env and _NON_TEST_ENVS.search(env):
                continue
            deps = [ln for ln in _ini_list(cp.get(section, "deps", fallback=""))
                    if not re.match(r"^[\w.,!-]+\s*:\s", ln)]   # factor-conditional lines: one env only
            self._add(self.d.tool_test, deps)
            for extra in re.split(r"[\s,]+", cp.get(section, "extras", fallback="")):
                if extra and "{" not in extra and extra not in self.d.wanted_extras:
                    self.d.wanted_extras.append(extra)

    def tox(self) -> None:
        text = self.r.text("tox.ini")
        if text:
            self._tox_text(text)

    def nox(self) -> None:
        text = self.r.text("noxfile.py")
        if not text:
            return
        code = _strip_py_comments(text)
        # Each session function; keep those that run tests.
        blocks = re.split(r"(?m)^(?=@nox\.session|def\s)", code)
        for block in blocks:
            m = re.search(r"def\s+(\w+)\s*\(", block)
            if not m:
                continue
            if not ("test" in m.group(1).lower() or "pytest" in block):
                continue
            for call in re.finditer(r"session\.install\(", block):
                args = _balanced(block, call.end() - 1)
                if args is None:
                    continue
                tokens = [s.group("s") for s in _PY_STR.finditer(args)]
                for star in re.findall(r"\*\s*([A-Za-z_]\w*)", args):
                    tokens += _py_list_assign(code, star)
                self._add(self.d.tool_test, _pip_tokens(tokens))

    def ci(self) -> None:
        for f in self.r.files:
            if not (f.startswith(".github/workflows/") and f.endswith((".yml", ".yaml"))):
                continue
            text = self.r.text(f) or ""
            for m in _PIP_INSTALL.finditer(text):
                # CI expressions and shell variables cannot be resolved here: drop them.
                args = re.sub(r"\$\{\{.*?\}\}|\$\{[^}]*\}|\$\w+", " ", m.group("args")).strip()
                try:
                    tokens = shlex.split(args)
                except ValueError:
                    continue
                lines = [t for t in _pip_tokens(tokens)
                         if t.startswith(("-r", "-e", ".")) or (_req(t) is not None and
                                                                 canonicalize_name(_req(t).name) not in ("pip",))]
                self._add(self.d.tool_test, lines)

    def pytest_config(self) -> None:
        """The config pytest itself would use (pytest.ini, pyproject, tox.ini, setup.cfg; first wins)."""
        opts: dict[str, Any] | None = None
        for path, section in (("pytest.ini", "pytest"), (".pytest.ini", "pytest"), ("pyproject.toml", None),
                              ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
            text = self.r.text(path)
            if not text:
                continue
            if section is None:
                try:
                    tool = tomllib.loads(text).get("tool") or {}
                except tomllib.TOMLDecodeError:
                    continue
                pytest_tool = tool.get("pytest") or {}
                if isinstance(pytest_tool.get("ini_options"), dict):
                    opts = dict(pytest_tool["ini_options"])
                elif pytest_tool:
                    opts = {k: v for k, v in pytest_tool.items() if not isinstance(v, dict)}
                else:
                    continue
                break
            cp = _ini(text)
            if cp is not None and cp.has_section(section):
                opts = {k: cp.get(section, k) for k in cp.options(section)}
                break
        if not opts:
            return
        plugins: list[str] = []
        addopts = opts.get("addopts", "")
        tokens = addopts if isinstance(addopts, list) else _split(str(addopts))
        for i, tok in enumerate(tokens):
            tok = str(tok)
            if tok == "-n" or re.match(r"^-n(\d+|auto|logical)$", tok):
                plugins.append("pytest-xdist")
            elif tok == "-p" and i + 1 < len(tokens) or tok.startswith("-p") and len(tok) > 2:
                mod = str(tokens[i + 1]) if tok == "-p" else tok[2:]
                if not mod.startswith("no:") and mod in _P_MODULES:
                    plugins.append(_P_MODULES[mod])
            elif tok.startswith("--"):
                opt = tok.split("=", 1)[0]
                for prefix, plugin in _OPTION_PLUGINS:
                    if opt == prefix or opt.startswith(prefix + "-") or (prefix in ("--benchmark", "--randomly",
                                                                                    "--hypothesis") and opt.startswith(prefix)):
                        plugins.append(plugin)
                        break
        for key in opts:
            plugin = _INI_PLUGINS.get(key) or _INI_PLUGINS.get(key.lower())
            if plugin:
                plugins.append(plugin)
        required = opts.get("required_plugins")
        if required:
            items = required if isinstance(required, list) else str(required).split()
            plugins += [str(x) for x in items if _req(str(x))]
        filters = opts.get("filterwarnings")
        lines = filters if isinstance(filters, list) else str(filters or "").splitlines()
        self.d.warnings_as_errors = any(str(x).strip() == "error" for x in lines)
        self.d.plugins = _merge(plugins)


# ---------------------------------------------------------------------------------- small parsers


def _normpath(path: str) -> str:
    parts: list[str] = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    return "/".join(parts)


def _logical_lines(text: str) -> list[str]:
    """Requirements-file lines with ``\\`` continuations joined."""
    return text.replace("\\\r\n", " ").replace("\\\n", " ").splitlines()


def _split(addopts: str) -> list[str]:
    try:
        return shlex.split(addopts.replace("\n", " "))
    except ValueError:
        return addopts.split()


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
