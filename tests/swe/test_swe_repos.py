"""Naming and listing repositories to mine: names from ``origin``, folders of clones and globs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fixture_repos import RepoBuilder, at

from skycurate.connectors.git_repos import RepoError, expand_repo_specs, pin_repos, resolve_repo


def _clone(path: Path, name: str | None) -> Path:
    RepoBuilder(path, name).commit("init", {"a.py": "x = 1\n"}, at("2024-03-01"))
    return path


def test_a_local_clone_is_named_after_its_origin_remote(tmp_path):
    six = _clone(tmp_path / "six", "benjaminp/six")
    assert resolve_repo(six).name == "benjaminp/six"
    assert resolve_repo(_clone(tmp_path / "scratch", None)).name == "local/scratch"


def test_a_folder_of_clones_and_a_glob_stand_for_every_repository_in_them(tmp_path):
    clones = tmp_path / "clones"
    a, b = _clone(clones / "a", "owner/a"), _clone(clones / "b", "owner/b")
    (clones / "notes").mkdir()                                   # not a repository: skipped
    assert expand_repo_specs([str(clones)]) == [str(a), str(b)]
    assert expand_repo_specs([str(clones / "*")]) == [str(a), str(b)]
    # each once, in the order first named; a repository and a URL pass through
    url = "https://github.com/owner/c.git"
    assert expand_repo_specs([str(b), str(clones), url]) == [str(b), str(a), url]
    assert expand_repo_specs([str(a)]) == [str(a)]
    pins = pin_repos([str(clones)], str(tmp_path / "cache"))
    assert [p.name for p in pins] == ["owner/a", "owner/b"] and all(p.head for p in pins)


def test_a_folder_or_glob_without_repositories_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepoError, match="no folder in it is one"):
        expand_repo_specs([str(tmp_path / "empty")])
    with pytest.raises(RepoError, match="matches no git repository"):
        expand_repo_specs([str(tmp_path / "empty" / "*")])
