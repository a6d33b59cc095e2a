"""Closing keywords and PR numbers in commit messages and PR/issue text.

Split out of ``mining`` because reading GitHub's conventions out of free text (``fixes #12``,
``Merge pull request #N``, ``Title (#N)``, trailers) is its own small job, used both to link a change
to its issues and to clean the problem statement; it reads no repository.
"""

from __future__ import annotations

import re

_KEYWORD = r"(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)"
_CLOSING = re.compile(
    rf"(?<![\w/-]){_KEYWORD}(?:\s*:\s*|\s+)"
    r"(?:(?P<owner>[A-Za-z0-9][\w.-]*)/(?P<name>[\w.-]+)#"
    r"|#"
    r"|https?://github\.com/(?P<uowner>[\w.-]+)/(?P<uname>[\w.-]+)/issues/)"
    r"(?P<num>\d+)\b",
    re.IGNORECASE)
_PR_MERGE = re.compile(r"^Merge pull request #(\d+)\b")
_PR_SQUASH = re.compile(r"\(#(\d+)\)\s*$")
_TRAILER = re.compile(r"^(?:Signed-off-by|Co-authored-by|Reviewed-by|Acked-by|Change-Id|Cc):", re.IGNORECASE)


def parse_closing_refs(text: str | None, repo: str | None = None) -> list[int]:
    """Issue numbers closed by keywords in ``text`` (``fixes #1``, ``Closes: #2``, ``resolved owner/name#3``,
    ``fix https://github.com/owner/name/issues/4``), case-insensitive, in order, without duplicates.
    References to another repository than ``repo`` (``owner/name``) are ignored."""
    if not text:
        return []
    out: list[int] = []
    for m in _CLOSING.finditer(text):
        owner, name = m.group("owner") or m.group("uowner"), m.group("name") or m.group("uname")
        if owner is not None and (repo is None or f"{owner}/{name}".lower() != repo.lower()):
            continue
        n = int(m.group("num"))
        if n not in out:
            out.append(n)
    return out


def pr_number_from_message(message: str) -> int | None:
    """The PR number GitHub puts in merge (``Merge pull request #N``) and squash (``Title (#N)``) subjects."""
    subject = (message or "").splitlines()[0] if message else ""
    m = _PR_MERGE.match(subject) or _PR_SQUASH.search(subject)
    return int(m.group(1)) if m else None


def strip_closing_refs(text: str | None) -> str:
    """``text`` without closing-keyword phrases, lines left empty by them, merge-PR lines and trailers."""
    out = []
    for line in (text or "").splitlines():
        if _PR_MERGE.match(line) or _MERGE_BRANCH.match(line) or _TRAILER.match(line):
            continue
        stripped = _CLOSING.sub("", line)
        if stripped != line:
            stripped = re.sub(r"\(\s*[,;.]?\s*\)|\[\s*[,;.]?\s*\]", "", stripped)
            stripped = re.sub(r"\s+([,.;:])", r"\1", stripped).rstrip(" ,;:-")
            if not re.search(r"\w", stripped):
                continue
        out.append(stripped.rstrip())
    return "\n".join(out).strip()


_MERGE_BRANCH = re.compile(
    r"^Merge (?:pull request #\d+ from (?P<pr_branch>\S+)"
    r"|(?:remote-tracking )?branch '(?P<branch>[^']+)')")
_BRANCH_ISSUE = re.compile(
    r"(?:^|[/_.-])(?:issues?|fix(?:es)?|bug(?:fix)?|gh|closes?|resolves?|hotfix)[-_/#]?(?P<num>\d+)(?=$|[/_.-])"
    r"|^(?P<lead>\d+)(?=[-_])", re.IGNORECASE)


def merged_branch(message: str | None) -> str | None:
    """The branch a merge commit brought in (``Merge pull request #N from owner/branch``,
    ``Merge branch 'name' ...``, ``Merge remote-tracking branch 'origin/name'``), else None."""
    subject = (message or "").splitlines()[0] if message else ""
    m = _MERGE_BRANCH.match(subject)
    if not m:
        return None
    return m.group("pr_branch") or m.group("branch")


def branch_issue_numbers(branch: str | None) -> list[int]:
    """Issue numbers a branch name names by the usual conventions: ``fix-409``, ``issue_12``,
    ``gh-7-typo``, ``bugfix/123``, ``409-fix-spy`` (a leading number of the last path part)."""
    if not branch:
        return []
    last = branch.rsplit("/", 1)[-1]
    out: list[int] = []
    for part in (branch, last):
        for m in _BRANCH_ISSUE.finditer(part):
            if m.group("lead") and part is not last:
                continue
            n = int(m.group("num") or m.group("lead"))
            if n not in out:
                out.append(n)
    return out
