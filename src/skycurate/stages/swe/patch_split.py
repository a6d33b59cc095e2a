"""Patch split: a change's text files into the code patch and the test patch, with its limits.

Split out of ``mining`` because deciding what is a test file (SWE-bench's path convention) and
checking a diff against ``MiningConfig``'s limits is the one place mining looks inside a change;
the repo filters use ``is_test_path`` too. See ``mining`` (step 3) for the rules.
"""

from __future__ import annotations

from skycurate.connectors.git_repos import GitRepo
from skycurate.schemas.swe import MiningConfig

TEST_DIRS = frozenset({"test", "tests", "testing", "e2e"})


def is_test_path(path: str) -> bool:
    """SWE-bench's convention, per path component: under ``test/``, ``tests/``, ``testing/`` or ``e2e/``,
    or a file named ``test_*.py``, ``*_test.py``, ``test.py``, ``tests.py`` or ``conftest.py``
    (also at the repository root)."""
    parts = path.replace("\\", "/").split("/")
    if any(p in TEST_DIRS for p in parts[:-1]):
        return True
    base = parts[-1]
    return (base.endswith(".py") and (base.startswith("test_") or base.endswith("_test.py"))) \
        or base in ("test.py", "tests.py", "conftest.py")


def pytest_targets(test_files: list[str]) -> list[str]:
    """What to hand pytest of a change's test files: its Python modules, not the data files
    (``.pem``, ``.json``, fixtures) nor ``conftest.py``/``__init__.py``, which pytest loads on its own
    and would refuse or mis-collect as arguments (SWE-bench drops non-test extensions likewise).
    A change that touches only such files gets ``[]``: run the whole suite."""
    out = []
    for path in test_files:
        base = path.replace("\\", "/").rsplit("/", 1)[-1]
        if base.endswith(".py") and base not in ("conftest.py", "__init__.py"):
            out.append(path)
    return out


def _split_change(repo: GitRepo, base: str, fix: str, cfg: MiningConfig) -> tuple[tuple[str, str, list[str]] | None, str, str]:
    """((patch, test_patch, test_files), '', '') or (None, reason, detail)."""
    changes = repo.changed_files(base, fix)
    if not changes:
        return None, "empty_diff", f"{base[:12]}..{fix[:12]} changes nothing"
    text = [c for c in changes if not c.binary]
    if not text:
        return None, "binary_only", f"{len(changes)} binary file(s) only"
    for c in changes:
        try:
            c.path.encode("utf-8")
        except UnicodeEncodeError:
            return None, "non_utf8_path", f"a file name is not UTF-8: {c.path.encode('utf-8', 'replace')!r}"
    tests = [c for c in text if is_test_path(c.path)]
    code = [c for c in text if not is_test_path(c.path)]
    if not tests:
        return None, "no_test_change", f"{len(code)} non-test file(s), no test file"
    if not code:
        return None, "no_code_change", f"{len(tests)} test file(s), no non-test file"
    if len(code) > cfg.max_files:
        return None, "too_many_files", f"{len(code)} non-test files > max_files {cfg.max_files}"
    if len(tests) > cfg.max_test_files:
        return None, "too_many_test_files", f"{len(tests)} test files > max_test_files {cfg.max_test_files}"
    lines = sum(c.added + c.deleted for c in code)
    if lines > cfg.max_patch_lines:
        return None, "patch_too_large", f"{lines} changed lines > max_patch_lines {cfg.max_patch_lines}"
    try:
        patch = repo.diff(base, fix, [c.path for c in code])
        test_patch = repo.diff(base, fix, [c.path for c in tests])
    except UnicodeDecodeError as exc:
        return None, "non_utf8_diff", f"diff is not UTF-8 ({exc.reason} at byte {exc.start})"
    return (patch, test_patch, [c.path for c in tests]), "", ""
