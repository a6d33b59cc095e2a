"""Install recipes inferred from a repository at a commit (every config style), and precheck reasons."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import fixture_repos as fr
from fixture_repos import RepoBuilder, at

from skycurate.schemas.swe import EnvRecipe
from skycurate.stages.swe.recipe import (
    EDITABLE,
    infer_recipes,
    precheck,
    pytest_requirement,
)


def repo_with(tmp_path, files: dict, when: datetime | None = None, tag: str | None = None) -> tuple[Path, str]:
    b = RepoBuilder(tmp_path / "r", "acme/r")
    sha = b.commit("Initial", {"LICENSE": fr.MIT_LICENSE, **files}, when or at("2024-06-01"))
    if tag:
        b.tag(tag)
    b.close()
    return tmp_path / "r", sha


def by_name(recipes: list[EnvRecipe]) -> dict[str, EnvRecipe]:
    names = [r.name for r in recipes]
    assert len(names) == len(set(names))
    return {r.name: r for r in recipes}


# ---------------------------------------------------------------------------------- config styles


def test_plain_folder_with_requirement_files(tmp_path):
    path, sha = repo_with(tmp_path, {
        "app.py": "import requests\n",
        "requirements.txt": "-r requirements/base.txt\nrequests>=2.0  # http\n--index-url https://pypi.example/simple\n"
                            "six==1.16.0 \\\n    --hash=sha256:abc\n\n# comment\n",
        "requirements/base.txt": "attrs\n",
        "requirements-test.txt": "pytest-mock\n-e .\n-c constraints.txt\n",
        "requirements-docs.txt": "sphinx\n",
        "tests/test_app.py": "def test_a():\n    pass\n",
    })
    recipes = by_name(infer_recipes(str(path), sha))
    plain = recipes["plain"]
    assert plain.install == []                        # no build file: nothing to install
    assert plain.requirements == ["attrs", "requests>=2.0", "six==1.16.0", "pytest-mock", "pytest<9"]
    assert "requirements-files" not in recipes        # identical to plain: listed once
    assert recipes["unpinned"].requirements == ["attrs", "requests>=2.0", "six", "pytest-mock", "pytest<9"]
    assert list(recipes) == ["plain", "unpinned"]
    assert all(precheck(r) is None for r in recipes.values())


def test_empty_plain_folder_gets_pytest_only(tmp_path):
    path, sha = repo_with(tmp_path, {"m.py": "x = 1\n", "test_m.py": "def test_m():\n    pass\n"})
    [r] = infer_recipes(str(path), sha)
    assert (r.name, r.requirements, r.install) == ("plain", ["pytest<9"], [])
    assert r.test_cmd == EnvRecipe().test_cmd


PYPROJECT = """
[build-system]
requires = ["hatchling>=1.18", "hatch-vcs"]
build-backend = "hatchling.build"

[project]
name = "Acme_Lib"
dynamic = ["version"]
requires-python = ">=3.9"
dependencies = ["numpy>=1.24", "typing-extensions; python_version < '3.10'"]

[project.optional-dependencies]
test = ["pytest>=7.4", "acme-lib[fast]"]
dev = ["pre-commit"]
fast = ["orjson"]
docs = ["sphinx"]

[tool.hatch.version]
source = "vcs"

[tool.pytest.ini_options]
addopts = "-ra --cov=acme_lib -n auto"
"""


def test_pyproject_extras_and_hatch_vcs(tmp_path):
    path, sha = repo_with(tmp_path, {"pyproject.toml": PYPROJECT, "src/acme_lib/__init__.py": "",
                                     "tests/test_x.py": "def test_x():\n    pass\n"}, tag="v1.4.0")
    recipes = by_name(infer_recipes(str(path), sha))
    assert list(recipes) == ["declared", "pip-extras"]     # nothing pinned: "unpinned" would be "declared"
    declared = recipes["declared"]
    assert declared.requirements == [
        "numpy>=1.24", "typing-extensions; python_version < '3.10'", "pytest>=7.4", "orjson", "pre-commit",
        "hatchling>=1.18", "hatch-vcs", "editables~=0.3", "pytest<9", "pytest-cov",
        "pytest-xdist"]   # hatchling's editable build needs editables; pytest gets the date's bound
    assert "sphinx" not in declared.requirements                         # docs extra is not a test extra
    assert declared.install == [f"SETUPTOOLS_SCM_PRETEND_VERSION=1.4.0 {EDITABLE}"]
    assert declared.requires_python == ">=3.9" and precheck(declared) is None
    assert recipes["pip-extras"].install == ['SETUPTOOLS_SCM_PRETEND_VERSION=1.4.0 pip install -e ".[test,dev]"']
    assert recipes["pip-extras"].requirements == ["hatchling>=1.18", "hatch-vcs", "editables~=0.3", "pytest<9",
                                                  "pytest-cov", "pytest-xdist"]


HATCH_ENVS = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "envy"
version = "1.0"

[project.optional-dependencies]
yaml = ["pyyaml"]

[tool.hatch.envs.default]
dependencies = ["pytest-mock>=3", "appdirs==1.4.4"]

[tool.hatch.envs.test]
features = ["yaml"]
extra-dependencies = ["freezegun"]

[tool.hatch.envs.docs]
dependencies = ["sphinx"]
"""


def test_hatch_environments_give_the_test_dependencies(tmp_path):
    # platformdirs before its PEP 735 groups: the test deps live in hatch envs, and hatchling's
    # editable build needs ``editables`` (pip does not install it under --no-build-isolation)
    path, sha = repo_with(tmp_path, {"pyproject.toml": HATCH_ENVS, "envy.py": "X = 1\n",
                                     "tests/test_e.py": "def test_e():\n    pass\n"})
    declared = by_name(infer_recipes(str(path), sha))["declared"]
    assert declared.requirements == ["pyyaml", "pytest-mock>=3", "appdirs==1.4.4", "freezegun", "hatchling",
                                     "editables~=0.3", "pytest<9"]
    assert "sphinx" not in declared.requirements


def test_setuptools_scm_without_tags_and_pep735_groups(tmp_path):
    path, sha = repo_with(tmp_path, {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=64", "setuptools_scm>=8"]\n'
                          'build-backend = "setuptools.build_meta"\n\n[project]\nname = "grp"\ndynamic = ["version"]\n\n'
                          '[tool.setuptools_scm]\n\n[dependency-groups]\n'
                          'test = ["pytest", "hypothesis>=6", {include-group = "coverage"}]\ncoverage = ["coverage[toml]"]\n'
                          'lint = ["ruff"]\n',
        "grp/__init__.py": "", "tests/test_g.py": "def test_g():\n    pass\n"})
    declared = infer_recipes(str(path), sha)[0]
    # The bare "pytest" of the group is covered by the dated "pytest<9".
    assert declared.requirements == ["hypothesis>=6", "coverage[toml]", "setuptools>=64", "setuptools_scm>=8",
                                     "pytest<9"]
    assert "ruff" not in declared.requirements
    assert declared.install == [f"SETUPTOOLS_SCM_PRETEND_VERSION=0.0.0 {EDITABLE}"]   # no tag to go by


SETUP_CFG = """
[metadata]
name = cfgpkg

[options]
packages = find:
python_requires = >=3.8
install_requires =
    click>=8
    importlib-metadata; python_version<"3.8"
setup_requires = setuptools_scm

[options.extras_require]
testing =
    pytest-timeout
    responses
docs = furo

[tool:pytest]
addopts = --cov cfgpkg --timeout=30 -p pytest_mock
filterwarnings =
    error
    ignore::UserWarning
"""


def test_setup_cfg_and_pytest_plugins(tmp_path):
    path, sha = repo_with(tmp_path, {"setup.cfg": SETUP_CFG, "setup.py": "from setuptools import setup\nsetup()\n",
                                     "cfgpkg/__init__.py": "", "tests/test_c.py": "def test_c():\n    pass\n"},
                          tag="2.0.1")
    declared = infer_recipes(str(path), sha)[0]
    assert declared.name == "declared"
    assert declared.requirements == ["click>=8", 'importlib-metadata; python_version<"3.8"', "pytest-timeout",
                                     "responses", "setuptools>=40.8.0", "wheel", "pytest<9", "pytest-cov",
                                     "pytest-mock"]
    assert declared.install == [f"SETUPTOOLS_SCM_PRETEND_VERSION=2.0.1 {EDITABLE}"]
    assert declared.requires_python == ">=3.8"
    # filterwarnings = error: today's deprecations must not fail old tests.
    assert declared.test_cmd.endswith("-W ignore::DeprecationWarning -W ignore::PendingDeprecationWarning")


SETUP_PY = '''
import os
open(os.path.join(os.path.dirname(__file__), "EXECUTED"), "w").write("setup.py was run")
from setuptools import setup, find_packages

REQUIRES = [
    "requests>=2.20",  # http
    'packaging',
]

setup(
    name="pyonly",
    version="0.9.2",
    packages=find_packages(),
    install_requires=REQUIRES,
    tests_require=["mock>=4"],
    extras_require={
        "testing": ["pytest-benchmark", "freezegun"],
        "docs": ["sphinx"],
    },
    python_requires=">=3.12",
    ext_modules=[],
)
'''


def test_setup_py_is_read_never_run(tmp_path):
    path, sha = repo_with(tmp_path, {"setup.py": SETUP_PY, "pyonly/__init__.py": "",
                                     "tests/test_p.py": "def test_p():\n    pass\n"})
    declared = infer_recipes(str(path), sha)[0]
    assert not (path / "EXECUTED").exists()
    assert declared.requirements == ["requests>=2.20", "packaging", "pytest-benchmark", "freezegun", "mock>=4",
                                     "setuptools>=40.8.0", "wheel", "pytest<9"]
    assert declared.install == [EDITABLE]
    assert precheck(declared) == "requires_python: >=3.12 excludes Python 3.11"


TOX_INI = """
[tox]
envlist = py38, py311, lint

[testenv]
deps =
    -r{toxinidir}/requirements-ci.txt
    pytest-randomly
    django32: Django>=3.2,<3.3
    {[base]deps}
extras = test
commands = pytest {posargs}

[testenv:lint]
deps = flake8

[pytest]
addopts = --reruns 2
"""

NOXFILE = '''
import nox

TEST_DEPS = ["pytest-asyncio", "trustme"]


@nox.session
def tests(session):
    session.install("-e", ".[test]")
    session.install("pyfakefs", *TEST_DEPS)
    session.run("pytest")


@nox.session
def lint(session):
    session.install("black", "mypy")
    session.run("black", ".")
'''

WORKFLOW = """
jobs:
  test:
    steps:
      - run: python -m pip install --upgrade pip setuptools
      - run: |
          pip install -e ".[test]" "tomli; python_version < '3.11'" ${{ matrix.extra }}
          pip install -r requirements-ci.txt
"""


def test_tox_nox_and_ci_test_deps(tmp_path):
    path, sha = repo_with(tmp_path, {
        "pyproject.toml": '[project]\nname = "toxy"\nversion = "1.0"\n[project.optional-dependencies]\ntest = ["attrs"]\n',
        "tox.ini": TOX_INI, "noxfile.py": NOXFILE, ".github/workflows/ci.yml": WORKFLOW,
        "requirements-ci.txt": "coverage\n", "toxy/__init__.py": "", "tests/test_t.py": "def test_t():\n    pass\n"})
    recipes = by_name(infer_recipes(str(path), sha))
    declared = recipes["declared"]
    # test extra, test requirement file, tox [testenv] deps (-r expanded, factor lines and substitutions
    # left out), nox test session installs (with *TEST_DEPS), CI pip installs; pytest plugins from [pytest].
    assert declared.requirements == [
        "attrs", "coverage", "pytest-randomly", "pyfakefs", "pytest-asyncio", "trustme",
        "tomli; python_version < '3.11'", "setuptools>=40.8.0", "wheel", "pytest<9", "pytest-rerunfailures"]
    for absent in ("flake8", "black", "mypy", "Django>=3.2,<3.3", "pip", "matrix.extra"):
        assert absent not in declared.requirements
    # The requirement files alone are a fallback of their own.
    assert recipes["requirements-files"].requirements == ["coverage", "setuptools>=40.8.0", "wheel", "pytest<9",
                                                          "pytest-rerunfailures"]
    assert recipes["pip-extras"].install == ['pip install -e ".[test]"']


def test_poetry_dependencies(tmp_path):
    path, sha = repo_with(tmp_path, {
        "pyproject.toml": '[build-system]\nrequires = ["poetry-core>=1.0"]\nbuild-backend = "poetry.core.masonry.api"\n'
                          '[tool.poetry]\nname = "poe"\nversion = "0.1.0"\n[tool.poetry.dependencies]\n'
                          'python = "^3.8"\nrequests = "^2.28"\nattrs = "~21.4"\nlocal = {path = "../local"}\n'
                          '[tool.poetry.group.test.dependencies]\npytest-mock = "*"\n',
        "poe/__init__.py": "", "tests/test_p.py": "def test_p():\n    pass\n"})
    declared = infer_recipes(str(path), sha)[0]
    assert declared.requirements == ["requests>=2.28,<3.0", "attrs>=21.4,<21.5", "pytest-mock", "poetry-core>=1.0",
                                     "pytest<9"]
    assert declared.requires_python == ">=3.8,<4.0" and precheck(declared) is None


def test_recipes_read_the_commit_not_the_work_tree(tmp_path):
    b = RepoBuilder(tmp_path / "r", "acme/r")
    old = b.commit("Initial", {"requirements.txt": "attrs\n", "m.py": "", "test_m.py": ""}, at("2024-06-01"))
    new = b.commit("More deps", {"requirements.txt": "attrs\nrich\n"}, at("2024-06-02"))
    (tmp_path / "r" / "requirements.txt").write_text("uncommitted-package\n")
    assert infer_recipes(str(tmp_path / "r"), old)[0].requirements == ["attrs", "pytest<9"]
    assert infer_recipes(str(tmp_path / "r"), new)[0].requirements == ["attrs", "rich", "pytest<9"]
    with pytest.raises(ValueError, match="not a commit"):
        infer_recipes(str(tmp_path / "r"), "0" * 40)


def test_pytest_follows_the_commit_date(tmp_path):
    assert pytest_requirement(datetime(2021, 5, 1, tzinfo=UTC)) == "pytest>=7,<8"
    assert pytest_requirement(datetime(2024, 6, 1, tzinfo=UTC)) == "pytest<9"
    assert pytest_requirement(datetime(2026, 6, 1, tzinfo=UTC)) == "pytest"
    # An old repo that declares an unbounded pytest still gets the date's bound; a bounded one is left alone.
    path, sha = repo_with(tmp_path, {"requirements-dev.txt": "pytest>=4\n", "m.py": "", "test_m.py": ""},
                          when=at("2021-05-01"))
    assert infer_recipes(str(path), sha)[0].requirements == ["pytest>=4", "pytest>=7,<8"]
    b = RepoBuilder(tmp_path / "r2")
    sha2 = b.commit("x", {"requirements-dev.txt": "pytest==6.2.5\n", "m.py": ""}, at("2021-05-01"))
    assert infer_recipes(str(tmp_path / "r2"), sha2)[0].requirements == ["pytest==6.2.5"]


def test_badinstall_fixture_passes_precheck(tmp_path):
    fx = fr.build_badinstall(tmp_path)
    declared = infer_recipes(str(fx.path), fx.base_commit)[0]
    assert declared.requirements[0] == "this-package-does-not-exist-skycurate==9.9"
    assert precheck(declared) is None        # valid PEP 508: only building the env image can tell


def test_local_and_vcs_requirements(tmp_path):
    path, sha = repo_with(tmp_path, {
        "setup.py": "from setuptools import setup\nsetup(name='mono')\n",
        "requirements-dev.txt": "-e ./plugins/extra\n-e git+https://github.com/acme/dep.git#egg=dep\n",
        "mono/__init__.py": "", "tests/test_m.py": ""})
    declared = infer_recipes(str(path), sha)[0]
    assert declared.install == [EDITABLE, "pip install --no-deps --no-build-isolation -e ./plugins/extra"]
    assert precheck(declared) == "editable_requirement: -e git+https://github.com/acme/dep.git#egg=dep"


# ---------------------------------------------------------------------------------- precheck


@pytest.mark.parametrize("requirements, requires_python, reason", [
    (["requests>=2", "numpy==1.26.4; python_version >= '3.9'"], ">=3.8", None),
    (["numpy==1.21.0; python_version < '3.10'", "numpy==1.26.4; python_version >= '3.10'"], None, None),
    (["requests>=2"], ">=3.12", "requires_python: >=3.12 excludes Python 3.11"),
    ([], "<3.10,>=3.6", "requires_python: <3.10,>=3.6 excludes Python 3.11"),
    ([], ">=3.6,<4", None),
    ([], "~=3.11.0", None),
    ([], ">=3.x", None),   # pip ignores an invalid Requires-Python
    (["requests>=2", "numpy (>=1.0"], None, "invalid_requirement: numpy (>=1.0"),
    (["dep @ https://example.com/dep-1.0.tar.gz"], None, "url_requirement: dep @ https://example.com/dep-1.0.tar.gz"),
    (["git+https://github.com/acme/dep.git"], None, "url_requirement: git+https://github.com/acme/dep.git"),
    (["./vendor/dep"], None, "local_requirement: ./vendor/dep"),
    (["--extra-index-url https://x"], None, "pip_option: --extra-index-url https://x"),
    (["-e git+https://github.com/a/b#egg=b"], None, "editable_requirement: -e git+https://github.com/a/b#egg=b"),
    (["six==1.15.0", "six==1.16.0"], None, "conflicting_pins: six==1.15.0 vs six==1.16.0"),
    (["Django==3.2.1", "django>=4"], None, "conflicting_pins: Django==3.2.1 vs django>=4"),
    (["attrs==23.1.0", "attrs>=22", "attrs<24"], None, None),
])
def test_precheck(requirements, requires_python, reason):
    recipe = EnvRecipe(requirements=requirements, requires_python=requires_python)
    assert precheck(recipe) == reason


def test_env_key_ignores_install_and_requires_python():
    a = EnvRecipe(requirements=["b", "a"], install=["x"], requires_python=">=3.8")
    b = EnvRecipe(requirements=["a", "b"], install=["y"])
    assert a.env_key() == b.env_key()
    assert a.env_key() != EnvRecipe(requirements=["a"]).env_key()


def test_older_pytest_eras_follow_the_one_a_recipe_was_given():
    from skycurate.stages.swe.recipe import older_pytest

    r = EnvRecipe(name="declared", requirements=["attrs>=21", "pytest"], install=[EDITABLE])
    assert [(o.name, o.requirements) for o in older_pytest(r)] == [
        ("declared+pytest<9", ["attrs>=21", "pytest<9"]), ("declared+pytest>=7,<8", ["attrs>=21", "pytest>=7,<8"]),
        ("declared+pytest>=6,<7", ["attrs>=21", "pytest>=6,<7"])]
    assert older_pytest(older_pytest(r)[-1]) == []                      # 6.2 is the floor
    # an era's own eras keep the recipe's name: declared+pytest>=7,<8, not declared+pytest<9+pytest>=7,<8
    assert [o.name for o in older_pytest(older_pytest(r)[0])] == ["declared+pytest>=7,<8", "declared+pytest>=6,<7"]
    assert older_pytest(r.model_copy(update={"requirements": ["pytest==6.2.5"]})) == []   # the project's own pin


# ---------------------------------------------------------------------------------- Pythons


@pytest.mark.parametrize("requires_python, day, order", [
    (None, "2019-05-01", ["3.9", "3.11", "3.13"]),       # older than every Python we have: the oldest
    (None, "2023-03-01", ["3.9", "3.11", "3.13"]),       # 3.11 out for less than six months
    (None, "2023-06-01", ["3.11", "3.9", "3.13"]),       # nearest first, older before newer at equal distance
    (None, "2026-01-01", ["3.11", "3.9", "3.13"]),       # 3.13 is never preferred by date alone
    (">=3.12", "2025-01-01", ["3.13"]),
    (">=3.10", "2021-01-01", ["3.11", "3.13"]),          # the project excludes 3.9 although its date says 3.9
    (">=3.7,<3.10", "2024-09-01", ["3.9"]),
    ("<3.8", "2018-01-01", ["3.11"]),                    # nothing allowed: the default, for precheck to reject
    ("not a specifier", "2019-01-01", ["3.9", "3.11", "3.13"]),   # pip ignores an invalid one: so do we
])
def test_python_order_follows_requires_python_and_the_commit_date(requires_python, day, order):
    from skycurate.stages.swe.pythons import python_order

    assert python_order(requires_python, at(day)) == order
    assert python_order(requires_python, at(day), "3.13") == ["3.13"]          # a fixed setting is the only one


def test_the_pythons_are_the_ones_the_sandbox_builds():
    from skycurate.sandbox.base_image import SUPPORTED_PYTHONS
    from skycurate.schemas.swe import PYTHON_RELEASED
    from skycurate.schemas.swe_flow import SweConfig

    assert set(SUPPORTED_PYTHONS) == set(PYTHON_RELEASED)
    assert SweConfig().python == "auto"
    with pytest.raises(ValueError, match="python must be auto or one of 3.9, 3.11, 3.13"):
        SweConfig(python="3.10")


def test_environments_list_every_recipe_per_python_in_order(tmp_path):
    from skycurate.stages.swe.recipe import environments

    path, sha = repo_with(tmp_path, {"pyproject.toml": PYPROJECT, "src/acme_lib/__init__.py": "",
                                     "tests/test_x.py": "def test_x():\n    pass\n"}, when=at("2021-03-01"),
                          tag="v1.0.0")
    envs = environments(str(path), sha)      # requires-python >=3.9, a 2021 commit: 3.9 first
    assert [(e.python, e.name) for e in envs] == [("3.9", "declared"), ("3.9", "pip-extras"),
                                                  ("3.11", "declared"), ("3.11", "pip-extras"),
                                                  ("3.13", "declared"), ("3.13", "pip-extras")]
    assert [(e.python, e.name) for e in environments(str(path), sha, "3.11")] == [("3.11", "declared"),
                                                                                 ("3.11", "pip-extras")]
