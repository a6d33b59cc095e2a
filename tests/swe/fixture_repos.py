"""Tiny git repositories for SWE mining and validation tests, built with GitPython in a temp dir.

Every scenario is a real bug with a fix commit whose message closes an issue (``fixes #N``), dated
commits (2024, so the default recipe's ``pytest<9`` is already satisfied by the base image's
pytest), an ``origin`` remote naming ``fixtures/<name>`` (so mined ids are ``fixtures__<name>-N``),
and no dependency but pytest unless the scenario needs one. Each builder returns a ``FixtureRepo``
with its path, the fix and base commits, and what validation should conclude:

==============  =====================================================================  ==================
key             scenario                                                               ``outcome``
==============  =====================================================================  ==================
calc            off-by-one in ``add`` fixed; ``test_add`` F2P, two P2P                 valid
nopass          fix is incomplete: the new test fails before and after the patch       no_fail_to_pass
flaky           real F2P + 8 tests that pass at random (p=1/2 each, in every run)     flaky_tests
badinstall      pyproject depends on ``this-package-does-not-exist-skycurate==9.9``   install_failed
hang            after the patch one test waits forever (``while True: sleep``)         timeout
nonutf8         valid fix; a test and the process at exit write non-UTF-8 bytes        valid
oldpytest       tests collect only under pytest < 8 (``pytest.Instance``)              valid
py39            2019 code importing ``collections.Mapping``: runs on Python 3.9 only   valid
py313           ``requires-python >=3.12`` and PEP 695 syntax: runs on Python 3.13     valid
oldhook         conftest hook removed in pytest 8: pytest exits 3 before collecting     valid
==============  =====================================================================  ==================

``write_export(fixtures, path)`` writes the matching issues (title, body, comments dated before and
after the fix) as a PR/issue export (``skycurate.connectors.github_api`` format, issues only, so
mining goes through git history and takes problem statements and hints from the export).

Test ids are pytest node ids as ``-rA`` prints them (``tests/test_calc.py::test_add``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import git

OWNER = "fixtures"

MIT_LICENSE = """MIT License

Copyright (c) 2024 skycurate fixtures

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.
"""

GPL3_LICENSE = """                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
 Everyone is permitted to copy and distribute verbatim copies
 of this license document, but changing it is not allowed.
"""


def at(day: str, hour: int = 12) -> datetime:
    """``"2024-02-01"`` -> that day at ``hour``:00 UTC."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


class RepoBuilder:
    """A git work tree whose commits carry the dates we give them (author and committer)."""

    def __init__(self, path: str | os.PathLike, name: str | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.repo = git.Repo.init(self.path, initial_branch="main")
        with self.repo.config_writer() as cw:
            cw.set_value("user", "name", "Fixture Author")
            cw.set_value("user", "email", "author@fixtures.invalid")
            cw.set_value("commit", "gpgsign", "false")
            cw.set_value("core", "autocrlf", "false")
        if name:
            self.repo.create_remote("origin", f"https://github.com/{name}.git")

    def _env(self, when: datetime) -> dict[str, str]:
        stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
        return {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_NAME": "Fixture Author",
                "GIT_AUTHOR_EMAIL": "author@fixtures.invalid", "GIT_COMMITTER_NAME": "Fixture Author",
                "GIT_COMMITTER_EMAIL": "author@fixtures.invalid"}

    def write(self, files: dict[str, str | bytes | None]) -> None:
        for rel, content in files.items():
            target = self.path / rel
            if content is None:
                if target.exists():
                    target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")

    def commit(self, message: str, files: dict[str, str | bytes | None], when: datetime) -> str:
        """Write (``None`` deletes) ``files``, commit everything, return the sha."""
        self.write(files)
        self.repo.git.add("-A")
        with self.repo.git.custom_environment(**self._env(when)):
            self.repo.git.commit("-q", "--allow-empty", "-m", message)
        return self.repo.head.commit.hexsha

    def branch(self, name: str, start: str | None = None) -> None:
        self.repo.git.checkout("-q", "-b", name, *([start] if start else []))

    def checkout(self, name: str) -> None:
        self.repo.git.checkout("-q", name)

    def merge(self, branch: str, message: str, when: datetime) -> str:
        """A ``--no-ff`` merge commit of ``branch`` into the current branch."""
        with self.repo.git.custom_environment(**self._env(when)):
            self.repo.git.merge("-q", "--no-ff", "-m", message, branch)
        return self.repo.head.commit.hexsha

    def tag(self, name: str, rev: str = "HEAD") -> None:
        self.repo.create_tag(name, ref=rev)

    def close(self) -> None:
        self.repo.close()


@dataclass
class FixtureRepo:
    key: str                     # calc, nopass, ...
    name: str                    # fixtures/calc
    path: Path
    instance_id: str             # what mining (git history) names the fix: fixtures__calc-1
    issue: int
    base_commit: str
    fix_commit: str
    outcome: str                 # valid | no_fail_to_pass | flaky_tests | install_failed | timeout
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    flaky_tests: list[str] = field(default_factory=list)   # pass at random; never a reliable F2P/P2P
    notes: str = ""
    issues: list[dict] = field(default_factory=list)       # export records (type=issue)

    @property
    def expected(self) -> dict:
        return {"instance_id": self.instance_id, "outcome": self.outcome, "FAIL_TO_PASS": self.fail_to_pass,
                "PASS_TO_PASS": self.pass_to_pass, "flaky_tests": self.flaky_tests}


def _issue(name: str, number: int, title: str, body: str, created: datetime,
           comments: list[tuple[datetime, str]]) -> dict:
    return {"type": "issue", "repo": name, "number": number, "title": title, "body": body,
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "comments": [{"created_at": c.isoformat().replace("+00:00", "Z"), "body": b} for c, b in comments]}


def _start(base_dir: Path, key: str) -> tuple[RepoBuilder, str]:
    name = f"{OWNER}/{key}"
    return RepoBuilder(Path(base_dir) / key, name), name


# ---------------------------------------------------------------------------------- scenarios

CALC_BUGGY = '''"""Integer arithmetic by counting."""


def add(a, b):
    """a + b for a non-negative integer b, counting up from a."""
    result = a
    for _ in range(1, b):
        result += 1
    return result


def sub(a, b):
    return a - b
'''


def build_calc(base_dir: str | os.PathLike) -> FixtureRepo:
    """(1) A real off-by-one: ``add(2, 3) == 4``. The fix changes ``range(1, b)`` to ``range(b)`` and
    adds ``test_add`` (F2P); ``test_sub`` and ``test_add_zero`` pass before and after (P2P)."""
    b, name = _start(Path(base_dir), "calc")
    b.commit("Initial calculator", {
        "LICENSE": MIT_LICENSE, "README.md": "# calc\n",
        "calc/__init__.py": CALC_BUGGY,
        "tests/test_calc.py": "from calc import add, sub\n\n\ndef test_sub():\n    assert sub(5, 3) == 2\n\n\n"
                              "def test_add_zero():\n    assert add(4, 0) == 4\n",
    }, at("2024-02-10"))
    base = b.commit("Document add and sub (see #1)", {"README.md": "# calc\n\n`add(a, b)` and `sub(a, b)`.\n"},
                    at("2024-02-15"))
    fix = b.commit("Fix off-by-one in add (fixes #1)\n\nThe loop started at 1, so add() lost one.", {
        "calc/__init__.py": CALC_BUGGY.replace("range(1, b)", "range(b)"),
        "tests/test_calc.py": "from calc import add, sub\n\n\ndef test_sub():\n    assert sub(5, 3) == 2\n\n\n"
                              "def test_add_zero():\n    assert add(4, 0) == 4\n\n\n"
                              "def test_add():\n    assert add(2, 3) == 5\n",
    }, at("2024-03-01"))
    b.commit("Add mul", {
        "calc/__init__.py": CALC_BUGGY.replace("range(1, b)", "range(b)") + "\n\ndef mul(a, b):\n    return a * b\n",
        "tests/test_mul.py": "from calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n",
    }, at("2024-03-10"))
    b.close()
    return FixtureRepo(
        key="calc", name=name, path=b.path, instance_id="fixtures__calc-1", issue=1, base_commit=base,
        fix_commit=fix, outcome="valid", fail_to_pass=["tests/test_calc.py::test_add"],
        pass_to_pass=["tests/test_calc.py::test_add_zero", "tests/test_calc.py::test_sub"],
        issues=[_issue(name, 1, "add() returns a number one too small", "add(2, 3) returns 4 instead of 5.",
                       at("2024-02-12"), [(at("2024-02-13"), "Looks like the loop in add starts at 1."),
                                          (at("2024-03-05"), "Fixed on main, thanks!")])])


SLUG = '''def slugify(text):
    return text.lower().replace(" ", "-")
'''


def build_nopass(base_dir: str | os.PathLike) -> FixtureRepo:
    """(2) An incomplete fix: it strips ``!`` but the new test also expects ``,`` removed, so the test
    fails before and after the patch: no FAIL_TO_PASS."""
    b, name = _start(Path(base_dir), "nopass")
    base = b.commit("Initial slugify", {
        "LICENSE": MIT_LICENSE, "slug/__init__.py": SLUG,
        "tests/test_slug.py": "from slug import slugify\n\n\ndef test_lowercase():\n"
                              "    assert slugify('Hello World') == 'hello-world'\n",
    }, at("2024-03-01"))
    fix = b.commit("Strip punctuation in slugify (closes #4)", {
        "slug/__init__.py": SLUG.replace('.replace(" ", "-")', '.replace("!", "").replace(" ", "-")'),
        "tests/test_slug.py": "from slug import slugify\n\n\ndef test_lowercase():\n"
                              "    assert slugify('Hello World') == 'hello-world'\n\n\n"
                              "def test_punctuation():\n    assert slugify('Hello, World!') == 'hello-world'\n",
    }, at("2024-03-05"))
    b.close()
    return FixtureRepo(
        key="nopass", name=name, path=b.path, instance_id="fixtures__nopass-4", issue=4, base_commit=base,
        fix_commit=fix, outcome="no_fail_to_pass", fail_to_pass=[],
        pass_to_pass=["tests/test_slug.py::test_lowercase"],
        notes="tests/test_slug.py::test_punctuation fails before and after the gold patch",
        issues=[_issue(name, 4, "slugify keeps punctuation", "slugify('Hello, World!') gives 'hello,-world!'.",
                       at("2024-03-02"), [])])


AVG = '''def mean(xs):
    return sum(xs) / len(xs)
'''


def build_flaky(base_dir: str | os.PathLike) -> FixtureRepo:
    """(3) A real fix (``mean([])`` raised ZeroDivisionError, now 0.0: ``test_mean_empty`` F2P) whose test
    patch also adds ``test_mean_of_random_sample[0..7]``: each passes with probability 1/2 in every run,
    independently. Over 3 post-patch runs one given test differs between runs with probability 3/4, so
    at least one of the 8 is seen flaky with probability 1 - 4**-8 (> 0.99998): validation that rejects
    instances with flaky tests rejects this one (``flaky_tests``). None of them is a reliable F2P/P2P."""
    b, name = _start(Path(base_dir), "flaky")
    base = b.commit("Initial avg", {
        "LICENSE": MIT_LICENSE, "avg/__init__.py": AVG,
        "tests/test_avg.py": "from avg import mean\n\n\ndef test_mean():\n    assert mean([1, 2, 3]) == 2\n",
    }, at("2024-04-01"))
    fix = b.commit("Return 0.0 for the mean of an empty list (fixes #7)", {
        "avg/__init__.py": "def mean(xs):\n    if not xs:\n        return 0.0\n    return sum(xs) / len(xs)\n",
        "tests/test_avg.py": "import random\n\nimport pytest\n\nfrom avg import mean\n\n\ndef test_mean():\n"
                             "    assert mean([1, 2, 3]) == 2\n\n\ndef test_mean_empty():\n    assert mean([]) == 0.0\n\n\n"
                             "@pytest.mark.parametrize('run', range(8))\n"
                             "def test_mean_of_random_sample(run):\n"
                             "    sample = [random.random() for _ in range(3)]\n"
                             "    assert mean(sample) < 0.5\n",
    }, at("2024-04-03"))
    b.close()
    return FixtureRepo(
        key="flaky", name=name, path=b.path, instance_id="fixtures__flaky-7", issue=7, base_commit=base,
        fix_commit=fix, outcome="flaky_tests", fail_to_pass=["tests/test_avg.py::test_mean_empty"],
        pass_to_pass=["tests/test_avg.py::test_mean"],
        flaky_tests=[f"tests/test_avg.py::test_mean_of_random_sample[{i}]" for i in range(8)],
        notes="each test_mean_of_random_sample[i] passes with p=1/2 per run (mean of 3 uniforms < 0.5); "
              "fail_to_pass / pass_to_pass are what the deterministic tests give",
        issues=[_issue(name, 7, "mean([]) crashes", "ZeroDivisionError for an empty list.", at("2024-04-02"), [])])


def build_badinstall(base_dir: str | os.PathLike) -> FixtureRepo:
    """(4) A packaged project whose pyproject declares a dependency that cannot exist: the env image
    (its requirements) does not build. The recipe is valid PEP 508, so ``precheck`` passes it."""
    b, name = _start(Path(base_dir), "badinstall")
    pyproject = ('[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
                 '[project]\nname = "needsdep"\nversion = "0.3.1"\nrequires-python = ">=3.8"\n'
                 'dependencies = ["this-package-does-not-exist-skycurate==9.9"]\n')
    base = b.commit("Initial needsdep", {
        "LICENSE": MIT_LICENSE, "pyproject.toml": pyproject,
        "needsdep/__init__.py": "def double(x):\n    return x * 3\n",
        "tests/test_double.py": "from needsdep import double\n\n\ndef test_zero():\n    assert double(0) == 0\n",
    }, at("2024-05-01"))
    fix = b.commit("Fix double (fixes #2)", {
        "needsdep/__init__.py": "def double(x):\n    return x * 2\n",
        "tests/test_double.py": "from needsdep import double\n\n\ndef test_zero():\n    assert double(0) == 0\n\n\n"
                                "def test_two():\n    assert double(2) == 4\n",
    }, at("2024-05-02"))
    b.close()
    return FixtureRepo(
        key="badinstall", name=name, path=b.path, instance_id="fixtures__badinstall-2", issue=2, base_commit=base,
        fix_commit=fix, outcome="install_failed",
        notes="requirement this-package-does-not-exist-skycurate==9.9 cannot be installed",
        issues=[_issue(name, 2, "double triples", "double(2) == 6", at("2024-05-01", 13), [])])


def build_hang(base_dir: str | os.PathLike) -> FixtureRepo:
    """(5) After the gold patch ``test_never_ready`` loops forever (``wait_until_ready(lambda: False)``);
    before it, the function raises NotImplementedError at once. Only a timeout ends the post-patch run."""
    b, name = _start(Path(base_dir), "hang")
    base = b.commit("Initial waiter", {
        "LICENSE": MIT_LICENSE,
        "waiter/__init__.py": "def wait_until_ready(check, interval=0.01):\n    raise NotImplementedError\n",
        "tests/test_waiter.py": "import waiter\n\n\ndef test_importable():\n    assert waiter\n",
    }, at("2024-06-01"))
    fix = b.commit("Implement wait_until_ready (fixes #3)", {
        "waiter/__init__.py": "import time\n\n\ndef wait_until_ready(check, interval=0.01):\n"
                              "    while not check():\n        time.sleep(interval)\n    return True\n",
        "tests/test_waiter.py": "import waiter\n\n\ndef test_importable():\n    assert waiter\n\n\n"
                                "def test_ready():\n    assert waiter.wait_until_ready(lambda: True)\n\n\n"
                                "def test_never_ready():\n    waiter.wait_until_ready(lambda: False)\n",
    }, at("2024-06-02"))
    b.close()
    return FixtureRepo(
        key="hang", name=name, path=b.path, instance_id="fixtures__hang-3", issue=3, base_commit=base,
        fix_commit=fix, outcome="timeout", notes="tests/test_waiter.py::test_never_ready never returns after the patch",
        issues=[_issue(name, 3, "wait_until_ready is not implemented", "It raises NotImplementedError.",
                       at("2024-06-01", 13), [])])


def build_nonutf8(base_dir: str | os.PathLike) -> FixtureRepo:
    """(6) A valid fix whose tests write bytes that are not UTF-8: a test writes latin-1 to its stdout,
    and the test module writes raw bytes to fds 1 and 2 at interpreter exit (after pytest stops capturing),
    so the log itself holds invalid UTF-8."""
    b, name = _start(Path(base_dir), "nonutf8")
    test = ("import atexit\nimport os\nimport sys\n\nfrom greet import greet\n\n"
            "atexit.register(lambda: (os.write(1, b'caf\\xe9 \\xff\\xfe\\n'), os.write(2, b'\\x80\\x81 stderr\\n')))\n\n\n"
            "def test_greet_name():\n    sys.stdout.buffer.write(b'na\\xefve \\xff\\n')\n"
            "    assert 'Ada' in greet('Ada')\n")
    base = b.commit("Initial greet", {
        "LICENSE": MIT_LICENSE, "greet/__init__.py": "def greet(name):\n    return 'Hello ' + name\n",
        "tests/test_greet.py": test,
    }, at("2024-07-01"))
    fix = b.commit("Put a comma after Hello (fixes #6)", {
        "greet/__init__.py": "def greet(name):\n    return 'Hello, ' + name\n",
        "tests/test_greet.py": test + "\n\ndef test_greet_comma():\n    assert greet('Ada') == 'Hello, Ada'\n",
    }, at("2024-07-02"))
    b.close()
    return FixtureRepo(
        key="nonutf8", name=name, path=b.path, instance_id="fixtures__nonutf8-6", issue=6, base_commit=base,
        fix_commit=fix, outcome="valid", fail_to_pass=["tests/test_greet.py::test_greet_comma"],
        pass_to_pass=["tests/test_greet.py::test_greet_name"],
        notes="the test log contains the bytes \\xe9 \\xff \\xfe \\x80 \\x81",
        issues=[_issue(name, 6, "No comma in the greeting", "greet('Ada') gives 'Hello Ada'.", at("2024-07-01", 13),
                       [(at("2024-07-01", 14), "Should be 'Hello, Ada'.")])])


OLD_PYTEST = ("import pytest\n\nfrom clamp import clamp\n\n"
              "# a helper of the pytest 7 era: pytest.Instance is gone in pytest 8, so the module no longer imports\n"
              "COLLECTOR = pytest.Instance\n\n\n"
              "def test_low():\n    assert clamp(-1, 0, 5) == 0\n")


def build_oldpytest(base_dir: str | os.PathLike) -> FixtureRepo:
    """(7) Tests that only collect under an older pytest: the test module touches ``pytest.Instance``
    (removed in pytest 8). The fix is recent, so the first environment gets today's pytest and the
    module fails to import even with the gold patch; the validation must fall back to pytest 7."""
    b, name = _start(Path(base_dir), "oldpytest")
    base = b.commit("Initial clamp", {
        "LICENSE": MIT_LICENSE, "clamp/__init__.py": "def clamp(x, lo, hi):\n    return max(lo, x)\n",
        "tests/test_clamp.py": OLD_PYTEST,
    }, at("2026-02-01"))
    fix = b.commit("Clamp the upper bound too (fixes #8)", {
        "clamp/__init__.py": "def clamp(x, lo, hi):\n    return min(hi, max(lo, x))\n",
        "tests/test_clamp.py": OLD_PYTEST + "\n\ndef test_high():\n    assert clamp(9, 0, 5) == 5\n",
    }, at("2026-02-02"))
    b.close()
    return FixtureRepo(
        key="oldpytest", name=name, path=b.path, instance_id="fixtures__oldpytest-8", issue=8, base_commit=base,
        fix_commit=fix, outcome="valid", fail_to_pass=["tests/test_clamp.py::test_high"],
        pass_to_pass=["tests/test_clamp.py::test_low"],
        notes="collects only under pytest < 8: the environment search must find pytest 7",
        issues=[_issue(name, 8, "clamp ignores the upper bound", "clamp(9, 0, 5) gives 9.", at("2026-02-01", 13),
                       [])])


# Imports ``collections.Mapping``, removed in Python 3.10: the module only imports on 3.9.
PY39_ONLY = ("from collections import Mapping\n\n\n"
             "def flatten(d, prefix=''):\n"
             "    out = {}\n"
             "    for k, v in d.items():\n"
             "        if isinstance(v, Mapping):\n"
             "            out.update(flatten(v, prefix + k + '.'))\n"
             "        else:\n"
             "            out[k] = v\n"
             "    return out\n")


def build_py39(base_dir: str | os.PathLike) -> FixtureRepo:
    """(8) 2019 code that only runs on Python 3.9 (``collections.Mapping`` is gone in 3.10): the
    commit's date makes 3.9 the first choice, and the instance records it."""
    b, name = _start(Path(base_dir), "py39")
    test = "from flat import flatten\n\n\ndef test_flat():\n    assert flatten({'a': 1}) == {'a': 1}\n"
    base = b.commit("Initial flat", {
        "LICENSE": MIT_LICENSE, "flat/__init__.py": PY39_ONLY, "tests/test_flat.py": test,
    }, at("2019-05-01"))
    fix = b.commit("Keep the prefix of nested keys (fixes #9)", {
        "flat/__init__.py": PY39_ONLY.replace("out[k] = v", "out[prefix + k] = v"),
        "tests/test_flat.py": test + "\n\ndef test_nested():\n    assert flatten({'a': {'b': 2}}) == {'a.b': 2}\n",
    }, at("2019-05-02"))
    b.close()
    return FixtureRepo(
        key="py39", name=name, path=b.path, instance_id="fixtures__py39-9", issue=9, base_commit=base,
        fix_commit=fix, outcome="valid", fail_to_pass=["tests/test_flat.py::test_nested"],
        pass_to_pass=["tests/test_flat.py::test_flat"], notes="imports collections.Mapping: Python 3.9 only",
        issues=[_issue(name, 9, "nested keys lose their prefix", "flatten({'a': {'b': 2}}) gives {'b': 2}",
                       at("2019-05-01", 13), [])])


def build_py313(base_dir: str | os.PathLike) -> FixtureRepo:
    """(9) A project that requires Python >= 3.12 and uses its syntax (``type`` aliases, PEP 695):
    ``requires-python`` rules out 3.9 and 3.11, so it runs on 3.13."""
    b, name = _start(Path(base_dir), "py313")
    pyproject = ('[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
                 '[project]\nname = "pairs"\nversion = "1.0"\nrequires-python = ">=3.12"\n')
    code = "type Pair[T] = tuple[T, T]\n\n\ndef swap[T](p: Pair[T]) -> Pair[T]:\n    return (p[0], p[1])\n"
    test = "from pairs import swap\n\n\ndef test_same():\n    assert swap((1, 1)) == (1, 1)\n"
    base = b.commit("Initial pairs", {
        "LICENSE": MIT_LICENSE, "pyproject.toml": pyproject, "pairs/__init__.py": code, "tests/test_pairs.py": test,
    }, at("2025-06-01"))
    fix = b.commit("swap swaps (fixes #10)", {
        "pairs/__init__.py": code.replace("(p[0], p[1])", "(p[1], p[0])"),
        "tests/test_pairs.py": test + "\n\ndef test_swap():\n    assert swap((1, 2)) == (2, 1)\n",
    }, at("2025-06-02"))
    b.close()
    return FixtureRepo(
        key="py313", name=name, path=b.path, instance_id="fixtures__py313-10", issue=10, base_commit=base,
        fix_commit=fix, outcome="valid", fail_to_pass=["tests/test_pairs.py::test_swap"],
        pass_to_pass=["tests/test_pairs.py::test_same"], notes="requires-python >=3.12 and PEP 695 syntax",
        issues=[_issue(name, 10, "swap does not swap", "swap((1, 2)) gives (1, 2)", at("2025-06-01", 13), [])])


def build_oldhook(base_dir: str | os.PathLike) -> FixtureRepo:
    """(10) pytest cannot even start: the conftest implements ``pytest_cmdline_preparse``, a hook
    removed in pytest 8, so today's pytest stops with an internal error (exit 3) before collecting
    anything. That is the environment's fault: the search must fall back to pytest 7."""
    b, name = _start(Path(base_dir), "oldhook")
    conftest = "def pytest_cmdline_preparse(config, args):\n    pass\n"
    test = "from half import half\n\n\ndef test_even():\n    assert half(4) == 2\n"
    base = b.commit("Initial half", {
        "LICENSE": MIT_LICENSE, "half/__init__.py": "def half(x):\n    return x // 2\n",
        "conftest.py": conftest, "tests/test_half.py": test,
    }, at("2026-02-01"))
    fix = b.commit("half of an odd number is a float (fixes #11)", {
        "half/__init__.py": "def half(x):\n    return x / 2\n",
        "tests/test_half.py": test + "\n\ndef test_odd():\n    assert half(3) == 1.5\n",
    }, at("2026-02-02"))
    b.close()
    return FixtureRepo(
        key="oldhook", name=name, path=b.path, instance_id="fixtures__oldhook-11", issue=11, base_commit=base,
        fix_commit=fix, outcome="valid", fail_to_pass=["tests/test_half.py::test_odd"],
        pass_to_pass=["tests/test_half.py::test_even"],
        notes="conftest hook removed in pytest 8: pytest exits 3 before collecting; pytest 7 runs it",
        issues=[_issue(name, 11, "half(3) is 1", "half(3) should be 1.5", at("2026-02-01", 13), [])])


BUILDERS = {"calc": build_calc, "nopass": build_nopass, "flaky": build_flaky, "badinstall": build_badinstall,
            "hang": build_hang, "nonutf8": build_nonutf8, "oldpytest": build_oldpytest, "py39": build_py39,
            "py313": build_py313, "oldhook": build_oldhook}


def build_all(base_dir: str | os.PathLike, keys: list[str] | None = None) -> dict[str, FixtureRepo]:
    """The scenarios named by ``keys`` (all by default), each in ``base_dir/<key>``."""
    return {k: BUILDERS[k](base_dir) for k in (keys or list(BUILDERS))}


def write_export(fixtures: list[FixtureRepo] | dict[str, FixtureRepo], path: str | os.PathLike) -> Path:
    """The fixtures' issues as one JSONL export (records carry ``repo``)."""
    items = list(fixtures.values()) if isinstance(fixtures, dict) else list(fixtures)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for fx in items:
            for rec in fx.issues:
                f.write(json.dumps(rec) + "\n")
    return path
