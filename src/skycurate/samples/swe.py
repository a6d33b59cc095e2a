"""A small built-in git repository for the SWE mining demo (``skycurate sample swe``).

``textkit``: four dated commits on ``main`` with two issue-closing fixes, each changing code and a
test, plus an issues export (problem statements and a hint comment):

- #1 ``wrap()`` drops the last word (an off-by-one): a real fix; ``test_wrap_keeps_last_word`` fails
  before and passes after (FAIL_TO_PASS), the other tests pass throughout (PASS_TO_PASS).
- #2 ``title()`` should keep small words lower case: the commit claims a fix but the new test still
  fails after it, so validation rejects it (``no_fail_to_pass``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

WRAP_BUGGY = '''"""Small text helpers."""


def wrap(text, width):
    """Greedy word wrap: lines of at most ``width`` characters."""
    words = text.split()
    lines, line = [], ""
    for word in words[:-1]:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def title(text):
    return " ".join(w.capitalize() for w in text.split())
'''

TESTS_BASE = '''from textkit import title, wrap


def test_wrap_empty():
    assert wrap("", 10) == []


def test_title_basic():
    assert title("hello world") == "Hello World"
'''


@dataclass
class SampleRepo:
    path: Path
    issues: Path
    instances: int = 2


def _at(day: str) -> str:
    return datetime.fromisoformat(day).replace(hour=12, tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


def write_sample_repo(out: str | os.PathLike) -> SampleRepo:
    """Create ``out/textkit`` (a git repository) and ``out/issues.jsonl``; replaces what is there."""
    import shutil

    import git

    root = Path(out)
    path = root / "textkit"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Sample Author")
        cw.set_value("user", "email", "author@sample.invalid")
        cw.set_value("commit", "gpgsign", "false")
    repo.create_remote("origin", "https://github.com/sample/textkit.git")

    def commit(message: str, files: dict[str, str], day: str) -> None:
        for rel, content in files.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(content, encoding="utf-8")
        repo.git.add("-A")
        env = {"GIT_AUTHOR_DATE": _at(day), "GIT_COMMITTER_DATE": _at(day)}
        with repo.git.custom_environment(**env):
            repo.git.commit("-q", "-m", message)

    commit("Initial textkit", {"LICENSE": "MIT License\n\nPermission is hereby granted, free of charge, to any "
                                          "person obtaining a copy of this software...\n",
                               "textkit/__init__.py": WRAP_BUGGY, "tests/test_textkit.py": TESTS_BASE},
           "2024-03-01")
    fixed = WRAP_BUGGY.replace("for word in words[:-1]:", "for word in words:")
    commit("Keep the last word in wrap (fixes #1)", {
        "textkit/__init__.py": fixed,
        "tests/test_textkit.py": TESTS_BASE + '''

def test_wrap_keeps_last_word():
    assert wrap("the quick brown fox", 10) == ["the quick", "brown fox"]
'''}, "2024-03-05")
    commit("Lower-case small words in title (closes #2)", {
        "textkit/__init__.py": fixed.replace(
            'return " ".join(w.capitalize() for w in text.split())',
            'return " ".join(w if w in ("a", "of") else w.capitalize() for w in text.split())'),
        "tests/test_textkit.py": TESTS_BASE + '''

def test_wrap_keeps_last_word():
    assert wrap("the quick brown fox", 10) == ["the quick", "brown fox"]


def test_title_small_words():
    assert title("war and peace") == "War and Peace"
'''}, "2024-03-09")
    repo.close()
    issues = root / "issues.jsonl"
    records = [
        {"type": "issue", "repo": "sample/textkit", "number": 1, "title": "wrap() loses the last word",
         "body": "`wrap('the quick brown fox', 10)` returns `['the quick', 'brown']`: 'fox' is gone.",
         "created_at": "2024-03-02T09:00:00Z",
         "comments": [{"created_at": "2024-03-03T10:00:00Z", "body": "The loop skips words[-1]."}]},
        {"type": "issue", "repo": "sample/textkit", "number": 2, "title": "title() capitalises 'and'",
         "body": "Small words such as 'and' should stay lower case.", "created_at": "2024-03-06T09:00:00Z",
         "comments": []},
    ]
    issues.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return SampleRepo(path=path, issues=issues)
