"""SWE candidate mining: closing keywords, patch/test split, limits, dedupe, history and PR mining,
repo filters, bare-clone cache, the GitHub client's protocol handling, and the Spark job."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import git
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import fixture_repos as fr
from fixture_repos import GPL3_LICENSE, MIT_LICENSE, RepoBuilder, at

from skycurate.connectors.git_repos import (
    GitRepo,
    RepoError,
    name_from_url,
    resolve_repo,
)
from skycurate.connectors.github_api import (
    ExportError,
    GitHubClient,
    GitHubError,
    load_export,
)
from skycurate.schemas.swe import (
    CANDIDATE_SCHEMA,
    REJECTED_SCHEMA,
    MiningConfig,
    RepoFilter,
)
from skycurate.stages.swe.closing_refs import (
    parse_closing_refs,
    pr_number_from_message,
    strip_closing_refs,
)
from skycurate.stages.swe.mining import (
    MiningError,
    fetch_github_metadata,
    mine_on_spark,
    mine_repo,
    mine_spec,
)
from skycurate.stages.swe.patch_split import is_test_path, pytest_targets
from skycurate.stages.swe.repo_info import check_repo, detect_license, main_language

CFG = MiningConfig()


def mine(path, cfg=CFG, metadata=None, **kw):
    res = mine_repo(resolve_repo(path), cfg, metadata, **kw)
    assert res.stats["inputs"] == len(res.candidates) + len(res.rejected)   # counts reconcile
    res.candidates_table()   # rows fit the shared schema
    res.rejected_table()
    return res


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    base = tmp_path_factory.mktemp("fixtures")
    fx = fr.build_all(base)
    export = fr.write_export(fx, base / "export.jsonl")
    return fx, export


# ---------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, expected", [
    ("Fix off-by-one in add (fixes #1)", [1]),
    ("closes #12, Resolves #3 and FIXED #12", [12, 3]),
    ("Close #4\nresolved: #5\nFix: #6", [4, 5, 6]),
    ("fixes fixtures/calc#7 and fixes other/repo#8", [7]),
    ("Fixes https://github.com/fixtures/calc/issues/9; fixes https://github.com/x/y/issues/10", [9]),
    ("see #1, refs #2, prefix #3, hotfix #4, unfixed #5, fixes#6, issue-fix #7", []),
    ("", []),
])
def test_closing_keywords(text, expected):
    assert parse_closing_refs(text, "fixtures/calc") == expected


def test_closing_keywords_need_the_repo_for_qualified_refs():
    assert parse_closing_refs("fixes fixtures/calc#7, fixes #8", None) == [8]
    assert parse_closing_refs("FIXES Fixtures/Calc#7", "fixtures/calc") == [7]


def test_strip_closing_refs_keeps_the_subject():
    msg = "Fix off-by-one in add (fixes #1)\n\nThe loop started at 1.\n\nCloses #2\nSigned-off-by: A <a@b>"
    assert strip_closing_refs(msg) == "Fix off-by-one in add\n\nThe loop started at 1."


def test_pr_numbers_from_merge_and_squash_subjects():
    assert pr_number_from_message("Merge pull request #42 from a/b\n\nFix x (fixes #1)") == 42
    assert pr_number_from_message("Fix the parser (#17)\n\nfixes #3") == 17
    assert pr_number_from_message("Fix the parser (fixes #3)") is None


@pytest.mark.parametrize("path, is_test", [
    ("tests/test_calc.py", True), ("test/helpers.py", True), ("pkg/testing/utils.py", True),
    ("e2e/run.sh", True), ("tests/data/input.json", True), ("test_mod.py", True), ("mod_test.py", True),
    ("conftest.py", True), ("pkg/tests.py", True), ("src/pkg/sub/test_x.py", True),
    ("calc/__init__.py", False), ("latest/notes.py", False), ("contest.py", False), ("testsuite/x.py", False),
    ("docs/testing.md", False), ("pkg/attest.py", False),
])
def test_test_file_classification(path, is_test):
    assert is_test_path(path) is is_test


def test_pytest_gets_only_the_test_modules_of_a_change():
    # pyjwt d5ca701dd8: its test patch adds .pem keys under tests/keys, which pytest took for test paths
    files = ["tests/keys/testkey_ec_secp192r1.priv.pem", "tests/test_algorithms.py", "tests/conftest.py",
             "tests/__init__.py", "tests/data/cases.json", "tests/utils.py", "e2e/run.sh"]
    assert pytest_targets(files) == ["tests/test_algorithms.py", "tests/utils.py"]
    assert pytest_targets(["tests/keys/a.pem", "tests/conftest.py"]) == []   # data only: the whole suite


@pytest.mark.parametrize("text, spdx", [
    (MIT_LICENSE, "MIT"),
    (GPL3_LICENSE, "GPL-3.0"),
    ("GNU GENERAL PUBLIC LICENSE\nVersion 2, June 1991\n", "GPL-2.0"),
    ("GNU LESSER GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n...GNU General Public License", "LGPL-3.0"),
    ("Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/", "Apache-2.0"),
    (("Redistribution and use in source and binary forms, with or without modification, are permitted...\n"
      "3. Neither the name of the copyright holder nor the names of its contributors may be used"), "BSD-3-Clause"),
    (("Redistribution and use in source and binary forms, with or without\nmodification, are permitted "
      "provided that the following conditions are met:"), "BSD-2-Clause"),
    ("All rights reserved. Do not copy.", None),
])
def test_detect_license(text, spdx):
    assert detect_license(text) == spdx


def test_main_language_ignores_vendored_files():
    files = ["a.py", "b.py", "node_modules/x.js", "node_modules/y.js", "node_modules/z.js", "web/app.js"]
    assert main_language(files) == "python"
    assert main_language(["README.md"]) is None


# ---------------------------------------------------------------------------------- history mining


def _apply(repo_path: Path, base: str, patches: list[str], dest: Path) -> git.Repo:
    """A clone checked out at ``base`` with ``patches`` applied by ``git apply``."""
    clone = git.Repo.clone_from(str(repo_path), dest)
    clone.git.checkout("-q", base)
    for p in patches:
        subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], input=p.encode(), cwd=dest, check=True)
    return clone


def test_history_mining_of_calc(fixtures, tmp_path):
    fx = fixtures[0]["calc"]
    res = mine(fx.path)
    assert res.stats["commits_scanned"] == 4 and res.stats["inputs"] == 1   # "see #1" and "Add mul" are no inputs
    [c] = res.candidates
    assert c["instance_id"] == "fixtures__calc-1" and c["repo"] == "fixtures/calc"
    assert c["base_commit"] == fx.base_commit == c["environment_setup_commit"] and c["fix_commit"] == fx.fix_commit
    assert c["problem_source"] == "git_history" and c["issue_numbers"] == [1]
    assert c["problem_statement"] == "Fix off-by-one in add\n\nThe loop started at 1, so add() lost one."
    assert c["hints_text"] == ""
    assert c["created_at"] == at("2024-03-01")
    assert c["test_files"] == ["tests/test_calc.py"]
    assert "calc/__init__.py" in c["patch"] and "tests/" not in c["patch"]
    assert "tests/test_calc.py" in c["test_patch"] and "calc/__init__.py" not in c["test_patch"]
    assert c["patch"].endswith("\n") and c["test_patch"].endswith("\n")
    # The two patches on base_commit rebuild the fix commit exactly.
    clone = _apply(fx.path, c["base_commit"], [c["patch"], c["test_patch"]], tmp_path / "wt")
    assert clone.git.diff(c["fix_commit"]) == ""
    # The candidate row is what the schema says.
    table = res.candidates_table()
    assert table.schema == CANDIDATE_SCHEMA and table.num_rows == 1


def test_history_mining_with_issue_texts_and_hints_before_the_fix(fixtures):
    fx, export = fixtures[0]["calc"], fixtures[1]
    res = mine(fx.path, metadata=load_export(export, repo="fixtures/calc"))
    [c] = res.candidates
    assert c["problem_source"] == "export"
    assert c["problem_statement"] == "add() returns a number one too small\nadd(2, 3) returns 4 instead of 5."
    assert c["hints_text"] == "Looks like the loop in add starts at 1."   # the comment after the fix is left out
    assert "Fixed on main" not in c["hints_text"]


def test_every_fixture_is_mined_as_expected(fixtures):
    fx_all, export = fixtures
    for fx in fx_all.values():
        res = mine(fx.path, metadata=load_export(export, repo=fx.name))
        assert [c["instance_id"] for c in res.candidates] == [fx.instance_id], fx.key
        assert res.candidates[0]["base_commit"] == fx.base_commit
        assert res.candidates[0]["fix_commit"] == fx.fix_commit


def test_root_level_test_files_and_version(tmp_path):
    b = RepoBuilder(tmp_path / "flat", "acme/flat")
    base = b.commit("Initial", {"LICENSE": MIT_LICENSE, "mod.py": "__version__ = '2.7.1'\n\ndef f():\n    return 1\n",
                                "test_mod.py": "import mod\n\ndef test_f():\n    assert mod.f() == 1\n"},
                    at("2024-03-01"))
    b.commit("Make f return 2 (resolves #5)", {
        "mod.py": "__version__ = '2.7.1'\n\ndef f():\n    return 2\n",
        "test_mod.py": "import mod\n\ndef test_f():\n    assert mod.f() == 2\n",
        "conftest.py": "# shared fixtures\n",
        "pkg/helper_test.py": "def test_helper():\n    pass\n",
    }, at("2024-03-02"))
    res = mine(tmp_path / "flat")
    [c] = res.candidates
    assert c["instance_id"] == "acme__flat-5"
    assert sorted(c["test_files"]) == ["conftest.py", "pkg/helper_test.py", "test_mod.py"]
    assert "diff --git a/mod.py b/mod.py" in c["patch"] and "test_mod.py" not in c["patch"]
    assert c["base_commit"] == base
    assert c["version"] is None   # mod.py is a top-level module, not a package's __init__ / _version


def test_version_from_pyproject_and_package(tmp_path):
    b = RepoBuilder(tmp_path / "v", "acme/v")
    b.commit("Initial", {"LICENSE": MIT_LICENSE, "pkg/__init__.py": "__version__ = '1.12.0.dev3'\n",
                         "tests/test_a.py": "def test_a():\n    pass\n", "pkg/a.py": "x = 1\n"}, at("2024-03-01"))
    b.commit("Fix a (fixes #1)", {"pkg/a.py": "x = 2\n", "tests/test_a.py": "def test_a():\n    assert 1\n"},
             at("2024-03-02"))
    b.commit("Use pyproject", {"pyproject.toml": '[project]\nname = "pkg"\nversion = "3.4.5"\n'}, at("2024-03-03"))
    b.commit("Fix a again (fixes #2)", {"pkg/a.py": "x = 3\n", "tests/test_a.py": "def test_a():\n    assert 2\n"},
             at("2024-03-04"))
    res = mine(tmp_path / "v")
    versions = {c["instance_id"]: c["version"] for c in res.candidates}
    assert versions == {"acme__v-1": "1.12", "acme__v-2": "3.4"}


def _limits_repo(tmp_path) -> Path:
    b = RepoBuilder(tmp_path / "limits", "acme/limits")
    b.commit("Initial", {"LICENSE": MIT_LICENSE, "a.py": "a = 1\n", "b.py": "b = 1\n", "c.py": "c = 1\n",
                         "tests/test_a.py": "def test_a():\n    pass\n"}, at("2024-03-01"))
    b.commit("Only code (fixes #1)", {"a.py": "a = 2\n"}, at("2024-03-02"))
    b.commit("Only tests (fixes #2)", {"tests/test_a.py": "def test_a():\n    assert True\n"}, at("2024-03-03"))
    b.commit("Only a picture (fixes #3)", {"logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00binary\x00"}, at("2024-03-04"))
    b.commit("Three files (fixes #4)", {"a.py": "a = 3\n", "b.py": "b = 3\n", "c.py": "c = 3\n",
                                        "tests/test_a.py": "def test_a():\n    assert 4\n"}, at("2024-03-05"))
    b.commit("Many tests (fixes #5)", {"a.py": "a = 5\n", "tests/test_b.py": "def test_b():\n    pass\n",
                                       "tests/test_c.py": "def test_c():\n    pass\n"}, at("2024-03-06"))
    b.commit("Big change (fixes #6)", {"a.py": "".join(f"a{i} = {i}\n" for i in range(20)),
                                       "tests/test_a.py": "def test_a():\n    assert 6\n"}, at("2024-03-07"))
    b.commit("Small fix (fixes #7)", {"b.py": "b = 7\n", "tests/test_a.py": "def test_a():\n    assert 7\n"},
             at("2024-03-08"))
    b.commit("No issue here", {"b.py": "b = 8\n", "tests/test_a.py": "def test_a():\n    assert 8\n"},
             at("2024-03-09"))
    return tmp_path / "limits"


def test_limits_and_rejection_reasons(tmp_path):
    path = _limits_repo(tmp_path)
    cfg = MiningConfig(max_files=2, max_test_files=1, max_patch_lines=10)
    res = mine(path, cfg)
    reasons = {r["instance_id"]: r["reason"] for r in res.rejected}
    assert reasons == {"acme__limits-1": "no_test_change", "acme__limits-2": "no_code_change",
                       "acme__limits-3": "binary_only", "acme__limits-4": "too_many_files",
                       "acme__limits-5": "too_many_test_files", "acme__limits-6": "patch_too_large"}
    assert all(r["stage"] == "mine" and r["repo"] == "acme/limits" and r["detail"] for r in res.rejected)
    assert [c["instance_id"] for c in res.candidates] == ["acme__limits-7"]
    assert res.stats == {"commits_scanned": 9, "inputs": 7, "candidates": 1, "rejected": 6}
    # The same history with looser limits: the size rejections become candidates.
    loose = mine(path, MiningConfig())
    assert sorted(c["instance_id"] for c in loose.candidates) == [f"acme__limits-{n}" for n in (4, 5, 6, 7)]
    # Without require_issue every non-root commit is an input (the root commit is rejected as such).
    everything = mine(path, MiningConfig(require_issue=False))
    assert everything.stats["inputs"] == 9
    assert "root_commit" in everything.reason_counts()
    assert any(c["instance_id"].startswith("acme__limits-") and c["issue_numbers"] == [] for c in everything.candidates)


def test_non_utf8_diffs_are_rejected_not_mangled(tmp_path):
    b = RepoBuilder(tmp_path / "latin", "acme/latin")
    b.commit("Initial", {"m.py": b"# -*- coding: latin-1 -*-\nname = 'caf\xe9'\n",
                         "tests/test_m.py": "def test_m():\n    pass\n"}, at("2024-03-01"))
    b.commit("Fix name (fixes #1)", {"m.py": b"# -*- coding: latin-1 -*-\nname = 'Caf\xe9'\n",
                                     "tests/test_m.py": "def test_m():\n    assert 1\n"}, at("2024-03-02"))
    res = mine(tmp_path / "latin")
    assert res.candidates == [] and [r["reason"] for r in res.rejected] == ["non_utf8_diff"]


def _merge_repo(tmp_path) -> Path:
    """A fix on a branch merged with --no-ff (GitHub's 'Merge pull request' message): the merge commit's
    diff against its first parent repeats the fix commit's diff."""
    b = RepoBuilder(tmp_path / "merges", "acme/merges")
    b.commit("Initial", {"LICENSE": MIT_LICENSE, "lib.py": "def f():\n    return 0\n",
                         "tests/test_lib.py": "import lib\n\ndef test_f():\n    assert lib.f() >= 0\n"},
             at("2024-03-01"))
    b.branch("fix-2")
    b.commit("Make f return 1 (fixes #2)", {"lib.py": "def f():\n    return 1\n",
                                            "tests/test_lib.py": "import lib\n\ndef test_f():\n    assert lib.f() == 1\n"},
             at("2024-03-02"))
    b.checkout("main")
    b.commit("Unrelated docs", {"README.md": "docs\n"}, at("2024-03-03"))
    b.merge("fix-2", "Merge pull request #9 from someone/fix-2\n\nMake f return 1 (fixes #2)", at("2024-03-04"))
    return tmp_path / "merges"


def test_merge_commits_are_deduped_by_patch_content(tmp_path):
    path = _merge_repo(tmp_path)
    # First-parent history sees only the merge commit: one candidate, named by the PR number.
    first = mine(path)
    assert [c["instance_id"] for c in first.candidates] == ["acme__merges-9"]
    assert first.candidates[0]["issue_numbers"] == [2]
    # The full history sees the fix commit and the merge commit with the same patch: the merge goes.
    full = mine(path, first_parent=False)
    assert [c["instance_id"] for c in full.candidates] == ["acme__merges-2"]
    assert [(r["instance_id"], r["reason"]) for r in full.rejected] == [("acme__merges-9", "duplicate_patch")]
    assert "acme__merges-2" in full.rejected[0]["detail"]
    assert full.candidates[0]["patch"] == first.candidates[0]["patch"]


def test_an_issue_fixed_twice_gets_unique_ids(tmp_path):
    b = RepoBuilder(tmp_path / "twice", "acme/twice")
    b.commit("Initial", {"LICENSE": MIT_LICENSE, "m.py": "x = 0\n", "tests/test_m.py": "def test_m():\n    pass\n"},
             at("2024-03-01"))
    b.commit("Fix (fixes #1)", {"m.py": "x = 1\n", "tests/test_m.py": "def test_m():\n    assert 1\n"},
             at("2024-03-02"))
    b.commit("Revert 'Fix'", {"m.py": "x = 0\n", "tests/test_m.py": "def test_m():\n    pass\n"}, at("2024-03-03"))
    b.commit("Fix again, same change (fixes #1)", {"m.py": "x = 1\n", "tests/test_m.py": "def test_m():\n    assert 1\n"},
             at("2024-03-04"))
    b.commit("Better fix (fixes #1)", {"m.py": "x = 2\n", "tests/test_m.py": "def test_m():\n    assert 2\n"},
             at("2024-03-05"))
    res = mine(tmp_path / "twice")
    assert [c["instance_id"] for c in res.candidates] == ["acme__twice-1", "acme__twice-1_2"]
    assert [c["created_at"] for c in res.candidates] == [at("2024-03-02"), at("2024-03-05")]
    assert [r["reason"] for r in res.rejected] == ["duplicate_patch"]   # the re-applied identical change


# ---------------------------------------------------------------------------------- PR mining


def _pr_repo(tmp_path):
    b = RepoBuilder(tmp_path / "prs", "acme/prs")
    b.commit("Initial", {"LICENSE": MIT_LICENSE, "lib.py": "def f():\n    return 0\n",
                         "tests/test_lib.py": "import lib\n\ndef test_f():\n    assert lib.f() >= 0\n"},
             at("2024-03-01"))
    b.branch("fix-3")
    pr_commit = b.commit("Return 1", {"lib.py": "def f():\n    return 1\n",
                                      "tests/test_lib.py": "import lib\n\ndef test_f():\n    assert lib.f() == 1\n"},
                         at("2024-03-03"))
    b.checkout("main")
    base = b.commit("Docs", {"README.md": "docs\n"}, at("2024-03-04"))
    merge = b.merge("fix-3", "Merge pull request #10 from someone/fix-3", at("2024-03-06"))
    # A backport of the same change onto a release branch (PR #15): same patch content.
    b.branch("release", "HEAD~1")
    backport = b.commit("[backport] Return 1", {"lib.py": "def f():\n    return 1\n",
                                                "tests/test_lib.py": "import lib\n\ndef test_f():\n    assert lib.f() == 1\n"},
                        at("2024-03-08"))
    b.checkout("main")
    squash = b.commit("Tidy lib (#12)", {"lib.py": "def f():\n    return 1  # one\n",
                                         "tests/test_lib.py": "import lib\n\ndef test_f():\n    assert lib.f() == 1  # one\n"},
                      at("2024-03-09"))
    z = "Z"
    prs = [
        {"type": "pr", "number": 10, "title": "Return 1 from f", "body": "Fixes #3", "merge_commit_sha": merge,
         "base_sha": base, "created_at": "2024-03-05T12:00:00Z", "merged_at": "2024-03-06T12:00:00Z"},
        {"type": "pr", "number": 11, "title": "Abandoned", "body": "fixes #3", "merge_commit_sha": None,
         "created_at": "2024-03-05T13:00:00Z", "merged_at": None},
        {"type": "pr", "number": 12, "title": "Tidy lib", "body": "No issue.", "merge_commit_sha": squash,
         "created_at": "2024-03-09T10:00:00Z", "merged_at": "2024-03-09T12:00:00Z"},
        {"type": "pr", "number": 13, "title": "Other repo", "body": "fixes other/repo#3", "merge_commit_sha": squash,
         "created_at": "2024-03-09T10:00:00Z", "merged_at": "2024-03-09T12:00:00Z"},
        {"type": "pr", "number": 14, "title": "Lost", "body": "closes #3", "merge_commit_sha": "f" * 40,
         "created_at": "2024-03-09T10:00:00Z", "merged_at": "2024-03-09T12:00:00Z"},
        {"type": "pr", "number": 15, "title": "Backport of #10", "body": "", "linked_issues": [3],
         "merge_commit_sha": backport, "created_at": "2024-03-08T10:00:00Z", "merged_at": "2024-03-08T12:00:00Z"},
    ]
    issue = {"type": "issue", "number": 3, "title": "f returns 0", "body": "It should return 1.",
             "created_at": f"2024-03-01T13:00:00{z}",
             "comments": [{"created_at": "2024-03-02T12:00:00Z", "body": "Confirmed on main."},
                          {"created_at": "2024-03-03T18:00:00Z", "body": "Working on it in fix-3."},
                          {"created_at": "2024-03-07T12:00:00Z", "body": "Merged, thanks."}]}
    export = tmp_path / "prs.jsonl"
    export.write_text("".join(json.dumps(r) + "\n" for r in prs + [issue]))
    return tmp_path / "prs", export, {"merge": merge, "base": base, "pr_commit": pr_commit, "backport": backport}


def test_pr_export_mining(tmp_path):
    path, export, shas = _pr_repo(tmp_path)
    meta = load_export(export)
    res = mine(path, metadata=meta)
    [c] = res.candidates
    assert c["instance_id"] == "acme__prs-10" and c["problem_source"] == "export"
    assert c["fix_commit"] == shas["merge"] and c["base_commit"] == shas["base"]   # the merge's first parent
    assert c["problem_statement"] == "f returns 0\nIt should return 1."
    # Only comments from before work on the fix began (its first commit, 2024-03-03 12:00).
    assert c["hints_text"] == "Confirmed on main."
    assert c["created_at"] == datetime(2024, 3, 5, 12, tzinfo=UTC)
    assert c["issue_numbers"] == [3]
    reasons = {r["instance_id"]: r["reason"] for r in res.rejected}
    assert reasons == {"acme__prs-11": "not_merged", "acme__prs-12": "no_issue", "acme__prs-13": "no_issue",
                       "acme__prs-14": "commit_missing", "acme__prs-15": "duplicate_patch"}
    assert res.stats["inputs"] == 6
    # Without require_issue, PR #12 (a squash merge) becomes a candidate with the PR text as problem.
    loose = mine(path, MiningConfig(require_issue=False), metadata=meta)
    ids = {c["instance_id"]: c for c in loose.candidates}
    assert set(ids) == {"acme__prs-10", "acme__prs-12"}
    assert ids["acme__prs-12"]["problem_statement"] == "Tidy lib\n\nNo issue."


def test_load_export_format_and_errors(tmp_path):
    path, export, _ = _pr_repo(tmp_path)
    meta = load_export(export)
    assert [p["number"] for p in meta.prs] == [10, 11, 12, 13, 14, 15] and set(meta.issues) == {3}
    assert meta.prs[0]["created_at"] == datetime(2024, 3, 5, 12, tzinfo=UTC)
    assert meta.issues[3]["comments"][0]["created_at"].tzinfo is not None
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"type": "issue", "repo": "a/b", "number": 1}) + "\n"
                     + json.dumps({"type": "issue", "repo": "c/d", "number": 2}) + "\n"
                     + json.dumps({"type": "issue", "number": 3}) + "\n")
    assert set(load_export(mixed, repo="A/B").issues) == {1, 3}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"type": "pr", "number": 1}) + "\n{not json\n")
    with pytest.raises(ExportError, match=r"bad\.jsonl:2: not JSON"):
        load_export(bad)
    bad.write_text(json.dumps({"type": "pr", "number": "7"}) + "\n")
    with pytest.raises(ExportError, match=r":1: 'number' must be an integer"):
        load_export(bad)
    with pytest.raises(ExportError, match="no such file"):
        load_export(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------------------------- repo filters


def _repo(tmp_path, key, files, name=None):
    b = RepoBuilder(tmp_path / key, name or f"acme/{key}")
    b.commit("Initial", files, at("2024-03-01"))
    b.commit("Fix (fixes #1)", {"m.py": "x = 1\n", "tests/test_m.py": "def test_m():\n    assert 1\n"},
             at("2024-03-02"))
    return tmp_path / key


def test_repo_filters(tmp_path):
    py = {"m.py": "x = 0\n", "tests/test_m.py": "def test_m():\n    pass\n"}
    gpl = _repo(tmp_path, "gpl", {**py, "COPYING": GPL3_LICENSE})
    mit = _repo(tmp_path, "mit", {**py, "LICENSE.txt": MIT_LICENSE})
    nolic = _repo(tmp_path, "nolic", py)
    js = _repo(tmp_path, "js", {**{f"src/f{i}.js": "x\n" for i in range(5)}, "LICENSE": MIT_LICENSE})
    only_mit = MiningConfig(filters=RepoFilter(licenses=["MIT", "Apache-2.0"]))

    res = mine(gpl, only_mit)
    assert res.candidates == []
    assert [(r["stage"], r["reason"], r["instance_id"]) for r in res.rejected] == [("repo", "license", None)]
    assert "GPL-3.0" in res.rejected[0]["detail"]
    assert len(mine(gpl, MiningConfig(filters=RepoFilter(licenses=["GPL-3.0"]))).candidates) == 1
    assert len(mine(gpl).candidates) == 1            # licenses=None: any licence
    assert len(mine(mit, only_mit).candidates) == 1
    assert mine(nolic, only_mit).rejected[0]["detail"].startswith("licence unknown")
    assert mine(js).rejected[0]["reason"] == "language"
    assert len(mine(js, MiningConfig(filters=RepoFilter(languages=["javascript", "python"]))).candidates) == 1

    excluded = MiningConfig(filters=RepoFilter(exclude=["ACME/mit"]))
    assert [r["reason"] for r in mine(mit, excluded).rejected] == ["excluded"]

    b = RepoBuilder(tmp_path / "notests", "acme/notests")
    b.commit("Initial", {"m.py": "x = 0\n", "LICENSE": MIT_LICENSE}, at("2024-03-01"))
    assert [r["reason"] for r in mine(tmp_path / "notests").rejected] == ["no_tests"]
    assert mine(tmp_path / "notests", MiningConfig(filters=RepoFilter(require_tests=False))).rejected == []
    with GitRepo(mit) as repo:
        assert check_repo(repo, "acme/mit", RepoFilter(licenses=["MIT"])) is None


def test_default_exclusion_list_covers_swe_bench(tmp_path):
    path = _repo(tmp_path, "bench", {"m.py": "x = 0\n", "tests/test_m.py": "def test_m():\n    pass\n"})
    res = mine_repo(resolve_repo(path, name="princeton-nlp/SWE-bench"), CFG)
    assert [r["reason"] for r in res.rejected] == ["excluded"]
    res = mine_repo(resolve_repo(path, name="django/django"), CFG)
    assert [r["reason"] for r in res.rejected] == ["excluded"]
    assert "source repository of SWE-bench, SWE-bench Lite, SWE-bench Verified" in res.rejected[0]["detail"]


def test_a_candidate_that_is_a_published_benchmark_instance_is_rejected(fixtures, tmp_path):
    fx = fixtures[0]["calc"]
    live = tmp_path / "swe-bench-live.jsonl"
    live.write_text(json.dumps({"instance_id": "someone__calc-77", "repo": "fixtures/calc",
                                "base_commit": fx.base_commit}) + "\n")
    cfg = MiningConfig(filters=RepoFilter(exclude_instances=[str(live)]))
    res = mine(fx.path, cfg)
    assert res.candidates == []
    [r] = res.rejected
    assert (r["instance_id"], r["reason"]) == ("fixtures__calc-1", "benchmark_overlap")
    assert r["detail"] == "swe-bench-live instance someone__calc-77 (same repository and base commit)"


# ---------------------------------------------------------------------------------- git repos


def test_resolve_local_repos_and_names(tmp_path, fixtures):
    calc = fixtures[0]["calc"]
    h = resolve_repo(calc.path)
    assert (h.name, h.url, h.path) == ("fixtures/calc", None, str(calc.path.resolve()))
    b = RepoBuilder(tmp_path / "my-tool")
    b.commit("x", {"a.py": "x\n"}, at("2024-03-01"))
    assert resolve_repo(tmp_path / "my-tool").name == "local/my-tool"
    assert resolve_repo(tmp_path / "my-tool", name="me/tool").name == "me/tool"
    assert name_from_url("https://github.com/Owner/Repo.git") == "Owner/Repo"
    assert name_from_url("git@github.com:owner/name.git") == "owner/name"
    assert name_from_url("ssh://git@gitlab.example.com/group/sub/proj") == "sub/proj"
    assert name_from_url("file:///srv/git/x") is None
    with pytest.raises(RepoError, match="not a git repository"):
        resolve_repo(tmp_path)
    with pytest.raises(RepoError, match="no such folder"):
        resolve_repo(tmp_path / "nope")


def test_bare_clone_cache_is_reused_and_fetched(tmp_path):
    src = RepoBuilder(tmp_path / "upstream", "acme/upstream")
    first = src.commit("Initial", {"a.py": "a = 1\n"}, at("2024-03-01"))
    cache = tmp_path / "cache"
    url = (tmp_path / "upstream").as_uri()   # file://...

    h1 = resolve_repo(url, cache)
    assert h1.url == url and h1.name == "acme/upstream"   # from the source's origin remote
    assert Path(h1.path).parent == cache.resolve() and git.Repo(h1.path).bare
    with GitRepo(h1.path) as r:
        assert r.head() == first
    marker = Path(h1.path) / "skycurate-marker"
    marker.write_text("kept")
    inode = Path(h1.path).stat().st_ino

    second = src.commit("More", {"a.py": "a = 2\n"}, at("2024-03-02"))
    h2 = resolve_repo(url, cache)
    assert h2.path == h1.path and marker.read_text() == "kept" and Path(h2.path).stat().st_ino == inode  # no re-clone
    with GitRepo(h2.path) as r:
        assert r.head() == second                               # fetched
        assert r.read_file(first, "a.py") == "a = 1\n" and r.read_file(second, "a.py") == "a = 2\n"
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1

    # Offline: the source is gone, the cached clone still resolves.
    import shutil
    shutil.rmtree(tmp_path / "upstream")
    h3 = resolve_repo(url, cache)
    assert h3.path == h1.path


def test_clone_failure_is_one_line(tmp_path):
    url = (tmp_path / "missing-repo").as_uri()
    with pytest.raises(RepoError) as err:
        resolve_repo(url, tmp_path / "cache")
    msg = str(err.value)
    assert msg.startswith(f"cannot clone {url}: ") and "\n" not in msg
    assert not any((tmp_path / "cache").iterdir())   # no half-made clone left behind
    with pytest.raises(RepoError, match="no cache_dir"):
        resolve_repo("https://github.com/acme/x.git", None)


def test_git_repo_reading(fixtures):
    fx = fixtures[0]["calc"]
    with GitRepo(fx.path) as r:
        commits = list(r.iter_commits())
        assert len(commits) == 4 and commits[1].sha == fx.fix_commit and commits[1].parents == (fx.base_commit,)
        assert commits[1].authored_at == at("2024-03-01") and commits[1].message.startswith("Fix off-by-one")
        assert r.commit_date(fx.fix_commit) == at("2024-03-01")
        changes = r.changed_files(fx.base_commit, fx.fix_commit)
        assert [(c.path, c.added, c.deleted, c.binary) for c in changes] == [
            ("calc/__init__.py", 1, 1, False), ("tests/test_calc.py", 4, 0, False)]
        per_file = r.commit_diff(fx.fix_commit)
        assert per_file == r.diff_per_file(fx.base_commit, fx.fix_commit)
        assert set(per_file) == {"calc/__init__.py", "tests/test_calc.py"}
        assert "-    for _ in range(1, b):" in per_file["calc/__init__.py"]
        assert "tests/test_mul.py" not in r.list_files(fx.fix_commit) and "tests/test_mul.py" in r.list_files()
        assert r.read_file(fx.base_commit, "nope.py") is None


# ---------------------------------------------------------------------------------- GitHub client (protocol)


class _FakeGitHub(BaseHTTPRequestHandler):
    """Test double for api.github.com: this checks OUR client's protocol handling (pagination, ETags,
    rate limits), not GitHub itself."""

    state: dict = {}

    def log_message(self, *args):   # quiet
        pass

    def _send(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        st = self.state
        st["log"].append((self.path, self.headers.get("If-None-Match"), self.headers.get("Authorization")))
        url = urlparse(self.path)
        q = parse_qs(url.query)
        base = f"http://127.0.0.1:{self.server.server_port}"
        if url.path == "/repos/acme/calc/pulls":
            page = int(q.get("page", ["1"])[0])
            etag = f'"pulls-{page}"'
            if self.headers.get("If-None-Match") == etag:
                st["not_modified"] += 1
                return self._send(304, headers={"ETag": etag})
            items = st["prs"][(page - 1) * 2: page * 2]
            link = f'<{base}/repos/acme/calc/pulls?state=closed&per_page=2&page={page + 1}>; rel="next"' \
                if page * 2 < len(st["prs"]) else ""
            headers = {"ETag": etag}
            if link:
                headers["Link"] = link + f', <{base}/repos/acme/calc/pulls?page=1>; rel="first"'
            return self._send(200, items, headers)
        if url.path == "/repos/acme/calc/issues/1":
            return self._send(200, {"number": 1, "title": "add is off by one", "body": "add(2, 3) == 4",
                                    "created_at": "2024-02-12T12:00:00Z", "comments": 2})
        if url.path == "/repos/acme/calc/issues/1/comments":
            return self._send(200, [{"created_at": "2024-02-13T12:00:00Z", "body": "The loop starts at 1."},
                                    {"created_at": "2024-03-05T12:00:00Z", "body": "Thanks!"}])
        if url.path == "/repos/acme/calc/issues/2":   # a PR seen through the issues endpoint
            return self._send(200, {"number": 2, "pull_request": {}, "title": "x"})
        if url.path == "/limited":
            st["limited"] += 1
            if st["limited"] == 1:
                return self._send(403, {"message": "API rate limit exceeded"},
                                  {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(st["now"]) + 30)})
            if st["limited"] == 2:
                return self._send(429, {"message": "secondary"}, {"Retry-After": "2"})
            return self._send(200, {"ok": True})
        if url.path == "/limited-long":
            return self._send(403, {"message": "API rate limit exceeded"},
                              {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(st["now"]) + 7200)})
        if url.path == "/forbidden":
            return self._send(403, {"message": "Resource not accessible by integration"})
        if url.path == "/flaky":
            st["flaky"] += 1
            return self._send(502 if st["flaky"] == 1 else 200, {"ok": st["flaky"]})
        return self._send(404, {"message": "Not Found"})


@pytest.fixture
def fake_github(fixtures):
    calc = fixtures[0]["calc"]
    prs = [{"number": n, "title": f"PR {n}", "body": "", "merge_commit_sha": None, "base": {"sha": "0" * 40},
            "created_at": "2024-02-20T12:00:00Z", "merged_at": None} for n in (3, 4, 5, 6)]
    prs.insert(0, {"number": 2, "title": "Fix off-by-one in add", "body": "This fixes #1.",
                   "merge_commit_sha": calc.fix_commit, "base": {"sha": calc.base_commit},
                   "created_at": "2024-02-28T12:00:00Z", "merged_at": "2024-03-01T13:00:00Z"})
    _FakeGitHub.state = {"log": [], "prs": prs, "not_modified": 0, "limited": 0, "flaky": 0, "now": float(int(time.time()))}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGitHub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _FakeGitHub.state
    server.shutdown()
    server.server_close()


def test_github_client_paginates_and_reuses_etags(fake_github, tmp_path, monkeypatch):
    url, st = fake_github
    monkeypatch.setenv("SKY_TEST_TOKEN", "tok123")
    cfg = MiningConfig(github_token_env="SKY_TEST_TOKEN")
    with GitHubClient.from_config(cfg, cache_dir=tmp_path / "etags", base_url=url, per_page=2) as gh:
        prs = list(gh.pulls("acme/calc"))
    assert [p["number"] for p in prs] == [2, 3, 4, 5, 6]   # 3 pages followed through Link rel="next"
    assert prs[0]["merge_commit_sha"] and prs[0]["base_sha"] and prs[0]["merged_at"].tzinfo is not None
    pages = [entry for entry in st["log"] if entry[0].startswith("/repos/acme/calc/pulls")]
    assert len(pages) == 3 and all(inm is None for _, inm, _ in pages)
    assert all(auth == "Bearer tok123" for _, _, auth in pages)
    # A second run sends If-None-Match and reuses the stored pages on 304.
    with GitHubClient.from_config(cfg, cache_dir=tmp_path / "etags", base_url=url, per_page=2) as gh:
        again = list(gh.pulls("acme/calc"))
        assert gh.stats["not_modified"] == 3
    assert again == prs and st["not_modified"] == 3
    assert [inm for _, inm, _ in st["log"][3:]] == ['"pulls-1"', '"pulls-2"', '"pulls-3"']


def test_github_client_waits_on_rate_limits_bounded(fake_github):
    url, st = fake_github
    slept = []
    gh = GitHubClient(token="", base_url=url, sleep=slept.append, clock=lambda: st["now"], max_wait_s=120)
    assert gh.get("/limited") == ({"ok": True}, None)
    assert slept == [31.0, 2.0]     # X-RateLimit-Reset - now + 1, then Retry-After
    assert gh.stats["rate_limit_waits"] == 2
    with pytest.raises(GitHubError, match="rate limited for 7201 s"):
        gh.get("/limited-long")
    with pytest.raises(GitHubError, match="403 Resource not accessible"):
        gh.get("/forbidden")
    assert gh.get("/flaky") == ({"ok": 2}, None) and slept[-1] == 1.0   # one retry after a 502
    with pytest.raises(GitHubError, match="404 Not Found"):
        gh.get("/nothing")
    assert all(auth is None for _, _, auth in st["log"])   # no token, no Authorization header
    gh.close()


def test_github_metadata_feeds_pr_mining(fake_github, fixtures):
    url, st = fake_github
    calc = fixtures[0]["calc"]
    with GitHubClient(token="", base_url=url, per_page=2) as gh:
        meta = fetch_github_metadata(gh, "acme/calc")
        assert gh.issue("acme/calc", 2) is None      # a PR, not an issue
    assert meta.source == "github" and set(meta.issues) == {1}
    assert [c["body"] for c in meta.issues[1]["comments"]] == ["The loop starts at 1.", "Thanks!"]
    res = mine_repo(resolve_repo(calc.path, name="acme/calc"), CFG, meta)
    [c] = res.candidates
    assert c["instance_id"] == "acme__calc-2" and c["problem_source"] == "github"
    assert c["base_commit"] == calc.base_commit and c["fix_commit"] == calc.fix_commit
    assert c["problem_statement"] == "add is off by one\nadd(2, 3) == 4"
    assert c["hints_text"] == "The loop starts at 1."
    assert {r["reason"] for r in res.rejected} == {"not_merged"} and len(res.rejected) == 4


# ---------------------------------------------------------------------------------- Spark


def test_mine_on_spark_one_task_per_repo(spark, fixtures, tmp_path):
    fx, export = fixtures
    gpl = tmp_path / "gpl"
    b = RepoBuilder(gpl, "acme/gpl")
    b.commit("Initial", {"COPYING": GPL3_LICENSE, "m.py": "x = 0\n", "tests/test_m.py": "def test_m():\n    pass\n"},
             at("2024-03-01"))
    cfg = MiningConfig(filters=RepoFilter(licenses=["MIT"]), cache_dir=str(tmp_path / "cache"))
    specs = [str(fx["calc"].path), {"spec": fx["flaky"].path.as_uri()}, str(gpl),
             (tmp_path / "missing").as_uri()]
    candidates, rejected = mine_on_spark(spark, specs, cfg, export=str(export))
    cands = {r["instance_id"]: r.asDict() for r in candidates.collect()}
    assert set(cands) == {"fixtures__calc-1", "fixtures__flaky-7"}
    assert cands["fixtures__calc-1"]["repo_path"] == str(fx["calc"].path.resolve())
    assert cands["fixtures__flaky-7"]["repo_path"].startswith(str((tmp_path / "cache").resolve()))   # bare clone
    assert cands["fixtures__calc-1"]["hints_text"] == "Looks like the loop in add starts at 1."
    [ts] = candidates.filter("instance_id = 'fixtures__calc-1'").selectExpr("CAST(created_at AS LONG)").first()
    assert ts == int(at("2024-03-01").timestamp())
    rej = sorted((r["repo"], r["stage"], r["reason"]) for r in rejected.collect())
    assert rej == [("acme/gpl", "repo", "license"), ("local/missing", "clone", "clone_failed")]
    assert candidates.columns == CANDIDATE_SCHEMA.names and rejected.columns == REJECTED_SCHEMA.names


def test_a_failure_of_the_run_is_not_written_off_as_the_repos_rejection(fixtures, tmp_path, monkeypatch):
    """The repository's own problems stay rejections; a refused token, a rate limit given up on, a bad
    export or a bug raise one line naming the repository instead of becoming a ``mine_error`` row."""
    from skycurate.stages.swe import mining

    calc = str(fixtures[0]["calc"].path)
    not_git = tmp_path / "plain"
    not_git.mkdir()
    [rej] = mine_spec(str(not_git), "acme/plain", None, CFG, None).rejected
    assert (rej["stage"], rej["reason"]) == ("clone", "clone_failed")

    def github_says(message):
        def fail(*args, **kwargs):
            raise GitHubError(message)
        return fail

    monkeypatch.setattr(mining, "fetch_github_metadata", github_says("GET https://api.github.com/x: 404 Not Found"))
    monkeypatch.setattr(mining.GitHubClient, "from_config", lambda *a, **k: GitHubClient(token=""))
    [rej] = mine_spec(calc, "acme/calc", None, CFG, None, github=True).rejected
    assert (rej["stage"], rej["reason"]) == ("clone", "github_not_found")
    for message in ("GET https://api.github.com/x: 401 Bad credentials",
                    "GET https://api.github.com/x: rate limited for 7201 s more than the 900 s allowed to wait"):
        monkeypatch.setattr(mining, "fetch_github_metadata", github_says(message))
        with pytest.raises(MiningError, match=r"^mining acme/calc failed: GitHubError: GET .*: (401|rate limited)"):
            mine_spec(calc, "acme/calc", None, CFG, None, github=True)

    def bug(*args, **kwargs):
        raise KeyError("base_sha")

    monkeypatch.setattr(mining, "mine_repo", bug)
    with pytest.raises(MiningError, match=r"^mining acme/calc failed: KeyError: 'base_sha'$"):
        mine_spec(calc, "acme/calc", None, CFG, None)


def test_a_failure_in_a_spark_task_stops_the_job_with_one_line(spark, fixtures, tmp_path):
    """A ``MiningError`` in a Spark task reaches the driver as itself, not as a Java stack trace."""
    fx, export = fixtures
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "pr", "number": "one"}\n')
    specs = [str(fx["calc"].path), {"spec": str(fx["flaky"].path), "name": "acme/flaky", "export": str(bad)}]
    with pytest.raises(MiningError) as err:
        mine_on_spark(spark, specs, MiningConfig(cache_dir=str(tmp_path / "cache")), export=str(export))
    assert str(err.value).startswith("mining acme/flaky failed: ExportError: ")
    assert "\n" not in str(err.value) and "'number' must be an integer" in str(err.value)


# ---------------------------------------------------------------------------------- fixture expectations


def _run_pytest(cwd: Path, files: list[str], timeout: float) -> tuple[dict[str, str], bytes] | None:
    """{test id: PASSED|FAILED|ERROR} from ``-rA`` and the raw log, or None on a timeout."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-rA", "--tb=no", "-p", "no:cacheprovider", *files],
                              cwd=cwd, capture_output=True, timeout=timeout,
                              env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    except subprocess.TimeoutExpired:
        return None
    log = proc.stdout + proc.stderr
    status = {}
    for line in log.decode("utf-8", "replace").splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2 and parts[0] in ("PASSED", "FAILED", "ERROR"):
            status[parts[1].split(" - ")[0].strip()] = parts[0]
    return status, log


@pytest.mark.parametrize("key", ["calc", "nopass", "flaky", "hang", "nonutf8"])
def test_fixture_expectations_hold_under_plain_pytest(fixtures, tmp_path, key):
    """What each fixture promises the validation tests, checked without a sandbox: the mined patches on
    base_commit give the expected FAIL_TO_PASS / PASS_TO_PASS (or hang, or print non-UTF-8 bytes)."""
    fx = fixtures[0][key]
    [c] = mine(fx.path).candidates
    wt = tmp_path / "wt"
    _apply(fx.path, c["base_commit"], [c["test_patch"]], wt)
    before = _run_pytest(wt, c["test_files"], timeout=60)
    assert before is not None
    subprocess.run(["git", "apply", "-"], input=c["patch"].encode(), cwd=wt, check=True)
    after = _run_pytest(wt, c["test_files"], timeout=60 if key != "hang" else 3)
    if fx.outcome == "timeout":
        assert after is None and before[0]["tests/test_waiter.py::test_never_ready"] == "FAILED"
        return
    (pre, _), (post, log) = before, after
    f2p = sorted(t for t in post if post[t] == "PASSED" and pre.get(t) != "PASSED" and t not in fx.flaky_tests)
    p2p = sorted(t for t in post if post[t] == "PASSED" and pre.get(t) == "PASSED" and t not in fx.flaky_tests)
    assert f2p == fx.fail_to_pass and p2p == fx.pass_to_pass
    assert set(fx.flaky_tests) <= set(post)
    if fx.outcome == "no_fail_to_pass":
        assert post["tests/test_slug.py::test_punctuation"] == "FAILED" == pre["tests/test_slug.py::test_punctuation"]
    if key == "nonutf8":
        with pytest.raises(UnicodeDecodeError):
            log.decode("utf-8")


# ---------------------------------------------------------------------------------- merges


def _branch_merge_repo(tmp_path, branch: str, branch_message: str, merge_message: str):
    b = RepoBuilder(tmp_path / "lib", "acme/lib")
    b.commit("Initial", {"lib.py": "def f():\n    return 0\n", "tests/test_lib.py": "def test_zero():\n    pass\n"},
             at("2024-03-01"))
    b.branch(branch)
    b.commit(branch_message, {"lib.py": "def f():\n    return 1\n",
                              "tests/test_lib.py": "from lib import f\n\n\ndef test_f():\n    assert f() == 1\n"},
             at("2024-03-02"))
    b.commit("Tidy up", {"README": "lib\n"}, at("2024-03-03"))
    b.checkout("main")
    b.commit("Unrelated docs", {"docs.txt": "docs\n"}, at("2024-03-03", 13))
    merge = b.merge(branch, merge_message, at("2024-03-04"))
    return tmp_path / "lib", merge


def test_a_merge_is_linked_to_the_issue_a_commit_on_its_branch_closes(tmp_path):
    path, merge = _branch_merge_repo(tmp_path, "spy", "Make f return one\n\nFixes #409.",
                              "Merge pull request #412 from user/spy")
    [c] = mine(path).candidates
    assert (c["instance_id"], c["fix_commit"], c["issue_numbers"]) == ("acme__lib-412", merge, [409])
    assert c["issue_link"].startswith("merged_commit:")
    assert c["problem_statement"] == "Make f return one"          # the merged commit's text, keyword stripped
    assert "lib.py" in c["patch"] and "docs.txt" not in c["patch"]   # diffed against the first parent


def test_a_merge_is_linked_by_its_branch_name_when_no_commit_names_the_issue(tmp_path):
    path, _ = _branch_merge_repo(tmp_path, "fix-77-return-one", "Make f return one", "Merge branch 'fix-77-return-one'")
    [c] = mine(path).candidates
    assert (c["issue_numbers"], c["issue_link"]) == ([77], "branch:fix-77-return-one")
    assert c["problem_statement"] == "Make f return one"
    assert c["instance_id"] == "acme__lib-77"


def test_a_merge_that_names_no_issue_anywhere_is_no_candidate(tmp_path):
    path, _ = _branch_merge_repo(tmp_path, "feature", "Make f return one", "Merge branch 'feature'")
    res = mine(path)
    assert res.candidates == [] and res.stats["inputs"] == 0
