"""What a repository declares about its environment, read from its files at one commit.

Split from ``recipe``: ``_Collector`` reads every config style of a repo (pyproject.toml, setup.cfg,
setup.py, requirements files with ``-r`` includes, tox.ini, noxfile.py, CI workflows and the pytest
config) straight from git (no checkout, nothing executed) into a ``_Declared``, which ``recipe``
turns into install recipes.
"""

from __future__ import annotations

import configparser
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from packaging.utils import canonicalize_name

from skycurate.connectors.git_repos import GitRepo
from skycurate.stages.swe.py_literals import (
    _PY_STR,
    _balanced,
    _py_extras,
    _py_list_arg,
    _py_list_assign,
    _strip_py_comments,
)
from skycurate.stages.swe.requirements import (
    _local_path,
    _logical_lines,
    _merge,
    _pip_tokens,
    _poetry_req,
    _poetry_spec,
    _req,
    _self_extras,
    _strip_line,
)

TEST_EXTRAS = ("test", "tests", "testing", "dev")

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
#: Build requirements a backend adds for editable builds (its ``get_requires_for_build_editable``).
_EDITABLE_BUILD_REQUIRES = {"hatchling": ["editables~=0.3"]}
_SCM_BUILD = re.compile(r"^(setuptools[-_]scm|hatch[-_]vcs|setuptools[-_]git[-_]versioning)\b", re.IGNORECASE)


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


def _split(addopts: str) -> list[str]:
    try:
        return shlex.split(addopts.replace("\n", " "))
    except ValueError:
        return addopts.split()


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
        # What the backend asks for at build time (``get_requires_for_build_editable``), which pip
        # never installs under ``--no-build-isolation``: hatchling's ``editables``.
        backend = str(build.get("build-backend") or "")
        extra_build = [x for b, xs in _EDITABLE_BUILD_REQUIRES.items() if backend.startswith(b) for x in xs]
        d.build_requires += [x for x in extra_build if x not in d.build_requires]
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
        # Hatch environments: the default env and the test ones (``hatch-test`` is hatch's own).
        for env_name, env in ((tool.get("hatch") or {}).get("envs") or {}).items():
            if isinstance(env, dict) and (env_name in ("default", "hatch-test") or env_name in TEST_EXTRAS):
                d.tool_test += [x for x in env.get("dependencies") or [] if isinstance(x, str) and _req(x)]
                d.tool_test += [x for x in env.get("extra-dependencies") or [] if isinstance(x, str) and _req(x)]
                d.wanted_extras += [str(x) for x in env.get("features") or [] if isinstance(x, str)]
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
