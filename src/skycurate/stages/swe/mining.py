"""Candidate mining: which changes of a repository become SWE task candidates.

Per repository (``mine_repo``), pure apart from reading the repository:

1. **Repo filters** (``check_repo``, at ``HEAD``): the exclusion list, the main language (file
   extension counts), at least one test file, the licence (LICENSE/COPYING text) against the
   allow-list. A repo that fails is one rejection with stage ``repo``.
2. **Changes**. With PR metadata (GitHub or an export): every PR record is an input; a merged PR
   linked to an issue (``linked_issues``, or a closing keyword in its title/body) is a candidate with
   ``fix_commit`` = its merge commit and ``base_commit`` = the merge commit's first parent. (GitHub's
   ``base.sha`` is not used as the base: it is the base branch tip when the PR was last updated, and
   if the branch moved on, ``base.sha..merge`` holds other people's changes; the first parent gives
   exactly the PR's change for merge and squash merges.) Without PRs: first-parent commits of the
   default branch whose message closes an issue (with ``require_issue``; otherwise every commit) are the
   inputs, ``base_commit`` = the first parent, ``problem_source`` = ``git_history``; commits that
   reference no issue are only counted (``stats['commits_scanned']``).
3. **Patch split**: text files under a test folder (a path component ``test``, ``tests``, ``testing``
   or ``e2e``) or named ``test_*.py`` / ``*_test.py`` / ``test.py`` / ``tests.py`` / ``conftest.py``
   go to ``test_patch``, the rest to ``patch``; both must be non-empty. Binary files are left out.
   Limits: ``max_files`` non-test files, ``max_test_files`` test files, ``max_patch_lines`` changed
   lines (added + deleted) of the non-test patch.
4. **Dedupe** by the content hash of (patch, test_patch): a merge commit or forward-port that repeats
   an earlier change is rejected ``duplicate_patch`` (the earliest is kept; on a tie, a non-merge commit).
5. **Ids**: ``owner__name-N`` with N the PR number (from metadata, or a ``Merge pull request #N`` /
   ``... (#N)`` commit subject), else the first closed issue, else the commit's short sha; an id used
   twice gets ``_2``, ``_3``... in ``created_at`` order.

Problem statement: the linked issues' title and body when known (``problem_source`` = the metadata's
source, ``github`` or ``export``), else the PR title/body or commit message without its closing
keywords. ``hints_text``: the linked issues' comments created before the fix (the earliest of the PR's
creation, its first commit and the fix commit), never after.

Every input ends as a candidate or a rejection: ``stats['inputs'] == candidates + rejected``. A
repository that cannot be cloned or read, or that GitHub does not know, is one rejection; any other
failure (a refused token, a rate limit given up on, a bug) stops the run with a ``MiningError``.

This module mines (steps 2, 4, 5) and runs the Spark job (``mine_on_spark``); closing keywords are
read in ``closing_refs``, the repo filters and version in ``repo_info``, the patch split in
``patch_split``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

import pyarrow as pa

from skycurate.connectors.git_repos import (
    CommitInfo,
    GitRepo,
    RepoError,
    RepoHandle,
    resolve_repo,
    spec_name,
)
from skycurate.connectors.github_api import GitHubClient, GitHubError, RepoMetadata, load_export
from skycurate.errors import SkycurateError
from skycurate.redact import redact
from skycurate.schemas.swe import (
    CANDIDATE_SCHEMA,
    REJECTED_SCHEMA,
    MiningConfig,
)
from skycurate.stages.swe.benchmark_overlap import BenchmarkIndex, load_benchmark_instances
from skycurate.stages.swe.closing_refs import (
    branch_issue_numbers,
    merged_branch,
    parse_closing_refs,
    pr_number_from_message,
    strip_closing_refs,
)
from skycurate.stages.swe.patch_split import _split_change
from skycurate.stages.swe.repo_info import check_repo, detect_version

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGE_CLONE = "clone"
STAGE_REPO = "repo"
STAGE_MINE = "mine"

# ---------------------------------------------------------------------------------- mining


@dataclass
class MineResult:
    """Candidates (``CANDIDATE_SCHEMA`` dicts) and rejections (``REJECTED_SCHEMA`` dicts) of one repo."""

    repo: str
    candidates: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {"commits_scanned": 0, "inputs": 0})

    def reject(self, instance_id: str | None, stage: str, reason: str, detail: str | None = None) -> None:
        self.rejected.append({"instance_id": instance_id, "repo": self.repo, "stage": stage, "reason": reason,
                              "detail": redact(detail) if detail else detail, "log_dir": None})

    def candidates_table(self) -> pa.Table:
        return pa.Table.from_pylist(self.candidates, schema=CANDIDATE_SCHEMA)

    def rejected_table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rejected, schema=REJECTED_SCHEMA)

    def reason_counts(self) -> dict[str, int]:
        return dict(Counter(r["reason"] for r in self.rejected))


@dataclass
class _Change:
    """A change that passed the file checks, before dedupe and ids."""

    key: str                # id before uniqueness suffixes
    base: str
    fix: str
    is_merge: bool
    patch: str
    test_patch: str
    test_files: list[str]
    problem: str
    hints: str
    source: str
    issues: list[int]
    created_at: datetime
    order: int
    link: str | None = None  # where the issue link was found (see ``linked_issues``)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(f"{self.patch}\x00{self.test_patch}".encode()).hexdigest()


def id_prefix(repo: str) -> str:
    """``owner/name`` -> ``owner__name``."""
    return repo.replace("/", "__", 1)

def _issue_text(metadata: RepoMetadata | None, numbers: list[int]) -> str:
    if metadata is None:
        return ""
    parts = []
    for n in numbers:
        issue = metadata.issues.get(n)
        if issue:
            parts.append("\n".join(x for x in (issue.get("title", "").strip(), issue.get("body", "").strip()) if x))
    return "\n\n".join(p for p in parts if p)


def _hints(metadata: RepoMetadata | None, numbers: list[int], before: datetime) -> str:
    """Comments of the linked issues created strictly before ``before`` (undated comments are left out)."""
    if metadata is None:
        return ""
    comments = []
    for n in numbers:
        for c in (metadata.issues.get(n) or {}).get("comments") or []:
            created = c.get("created_at")
            if created is not None and created < before and (c.get("body") or "").strip():
                comments.append((created, c["body"].strip()))
    comments.sort(key=lambda x: x[0])
    return "\n\n".join(body for _, body in comments)


def _mine_prs(repo: GitRepo, name: str, cfg: MiningConfig, metadata: RepoMetadata, res: MineResult) -> list[_Change]:
    prefix = id_prefix(name)
    out = []
    for order, pr in enumerate(metadata.prs):
        res.stats["inputs"] += 1
        number = pr["number"]
        iid = f"{prefix}-{number}"
        if not pr.get("merged_at") or not pr.get("merge_commit_sha"):
            res.reject(iid, STAGE_MINE, "not_merged", f"PR #{number} was not merged")
            continue
        linked = [n for n in pr.get("linked_issues") or [] if n != number]
        from_text = [n for n in parse_closing_refs(f"{pr.get('title', '')}\n{pr.get('body', '')}", name) if n != number]
        issues = list(dict.fromkeys(linked + from_text))
        link = "pr_linked_issues" if linked else "pr_text" if from_text else None
        fix = repo.resolve(pr["merge_commit_sha"])
        info = repo.commit_info(fix) if fix is not None else None
        if not issues and info is not None:   # the PR text names none: its commits or branch may
            issues, link, _ = linked_issues(repo, info, name)
            issues = [n for n in issues if n != number]
        if cfg.require_issue and not issues:
            res.reject(iid, STAGE_MINE, "no_issue", f"PR #{number} closes no issue")
            continue
        if fix is None:
            res.reject(iid, STAGE_MINE, "commit_missing", f"merge commit {pr['merge_commit_sha']} not in the repository")
            continue
        if not info.parents:
            res.reject(iid, STAGE_MINE, "root_commit", f"merge commit {fix[:12]} has no parent")
            continue
        base = info.parents[0]
        split, reason, detail = _split_change(repo, base, fix, cfg)
        if split is None:
            res.reject(iid, STAGE_MINE, reason, f"PR #{number} ({fix[:12]}): {detail}")
            continue
        created = pr.get("created_at") or info.authored_at
        fix_dates = [d for d in (pr.get("created_at"), info.authored_at) if d is not None]
        if info.is_merge:   # the PR's own commits: the first one is where work on the fix began
            fix_dates += repo.authored_dates(f"{base}..{info.parents[1]}")
        problem = _issue_text(metadata, issues) or strip_closing_refs(f"{pr.get('title', '')}\n\n{pr.get('body', '')}")
        if not problem:
            res.reject(iid, STAGE_MINE, "no_problem_statement", f"PR #{number}: no issue text and no PR text")
            continue
        out.append(_Change(key=iid, base=base, fix=fix, is_merge=info.is_merge, patch=split[0], test_patch=split[1],
                           test_files=split[2], problem=problem, hints=_hints(metadata, issues, min(fix_dates)),
                           source=metadata.source, issues=issues, created_at=created, order=order, link=link))
    return out


def linked_issues(repo: GitRepo, c: CommitInfo, name: str) -> tuple[list[int], str | None, str]:
    """The issues a change closes, where the link was found, and the text that named them.

    In order: a closing keyword in the change's own message (``message``); for a merge whose
    message names none, closing keywords in the commits it brought in
    (``merged_commit:<sha>``, the first that named one), then an issue number in the merged
    branch's name (``branch:<name>``, e.g. ``fix-409``; the text is then the branch's first commit
    message)."""
    issues = parse_closing_refs(c.message, name)
    if issues or not c.is_merge:
        return issues, "message" if issues else None, c.message
    found, link, texts = [], None, []
    merged = repo.merged_commits(c)
    for m in merged:
        refs = parse_closing_refs(m.message, name)
        if refs:
            found += [n for n in refs if n not in found]
            link = link or f"merged_commit:{m.sha[:12]}"
            texts.append(m.message)
    if found:
        return found, link, "\n\n".join(texts)
    branch = merged_branch(c.message)
    found = branch_issue_numbers(branch)
    # no commit names the issue: the branch's first commit says what the work was
    return found, f"branch:{branch}" if found else None, merged[-1].message if merged else c.message


def _mine_history(repo: GitRepo, name: str, cfg: MiningConfig, metadata: RepoMetadata | None, res: MineResult,
                  first_parent: bool) -> list[_Change]:
    prefix = id_prefix(name)
    out = []
    for order, c in enumerate(repo.iter_commits("HEAD", first_parent=first_parent)):
        res.stats["commits_scanned"] += 1
        issues, link, link_text = linked_issues(repo, c, name)
        if cfg.require_issue and not issues:
            continue
        res.stats["inputs"] += 1
        pr = pr_number_from_message(c.message)
        n = pr if pr is not None else (issues[0] if issues else None)
        iid = f"{prefix}-{n}" if n is not None else f"{prefix}-{c.sha[:10]}"
        if not c.parents:
            res.reject(iid, STAGE_MINE, "root_commit", f"commit {c.sha[:12]} has no parent")
            continue
        base = c.parents[0]
        split, reason, detail = _split_change(repo, base, c.sha, cfg)
        if split is None:
            res.reject(iid, STAGE_MINE, reason, f"commit {c.sha[:12]}: {detail}")
            continue
        problem = _issue_text(metadata, issues)
        source = metadata.source if problem and metadata is not None else "git_history"
        if not problem:
            problem = strip_closing_refs(c.message) or strip_closing_refs(link_text)
        if not problem:
            res.reject(iid, STAGE_MINE, "no_problem_statement", f"commit {c.sha[:12]}: empty message")
            continue
        out.append(_Change(key=iid, base=base, fix=c.sha, is_merge=c.is_merge, patch=split[0], test_patch=split[1],
                           test_files=split[2], problem=problem, hints=_hints(metadata, issues, c.authored_at),
                           source=source, issues=issues, created_at=c.authored_at, order=order, link=link))
    return out


def _finish(repo: GitRepo, name: str, repo_path: str, changes: list[_Change], res: MineResult,
            known: BenchmarkIndex | None = None) -> None:
    """Dedupe by content, make ids unique, drop benchmark instances, look up versions, emit rows."""
    groups: dict[str, list[_Change]] = {}
    for ch in changes:
        groups.setdefault(ch.content_hash, []).append(ch)
    kept, dupes = [], []
    for group in groups.values():
        group.sort(key=lambda ch: (ch.created_at, ch.is_merge, ch.order))
        kept.append(group[0])
        dupes.extend((d, group[0]) for d in group[1:])

    kept.sort(key=lambda ch: (ch.created_at, ch.order))
    used: Counter[str] = Counter()
    ids: dict[int, str] = {}
    for ch in kept:
        used[ch.key] += 1
        ids[id(ch)] = ch.key if used[ch.key] == 1 else f"{ch.key}_{used[ch.key]}"
    for dup, orig in dupes:
        res.reject(dup.key, STAGE_MINE, "duplicate_patch",
                   f"commit {dup.fix[:12]} repeats the patch of {ids[id(orig)]} ({orig.fix[:12]})")
    if known:
        for ch in list(kept):
            hit = known.match(name, ch.base, ids[id(ch)])
            if hit is not None:
                kept.remove(ch)
                res.reject(ids[id(ch)], STAGE_MINE, "benchmark_overlap",
                           f"{hit[0].benchmark} instance {hit[0].instance_id} (same {hit[1]})")

    versions: dict[str, str | None] = {}
    for ch in kept:
        if ch.base not in versions:
            try:
                versions[ch.base] = detect_version(repo, ch.base)
            except Exception as exc:   # a version is a nicety; never lose a candidate over it
                log.debug("version lookup at %s failed: %s", ch.base, exc)
                versions[ch.base] = None
        res.candidates.append({
            "instance_id": ids[id(ch)], "repo": name, "repo_path": repo_path, "base_commit": ch.base,
            "fix_commit": ch.fix, "patch": ch.patch, "test_patch": ch.test_patch, "test_files": ch.test_files,
            "problem_statement": ch.problem, "hints_text": ch.hints, "problem_source": ch.source,
            "issue_numbers": ch.issues, "issue_link": ch.link, "created_at": ch.created_at,
            "version": versions[ch.base],
            "environment_setup_commit": ch.base,
        })


def mine_repo(handle: RepoHandle, cfg: MiningConfig, metadata: RepoMetadata | None = None, *,
              first_parent: bool = True, check_filters: bool = True) -> MineResult:
    """Candidates and rejections of one repository (see the module docstring).

    ``metadata`` with PR records mines PRs; without PRs (None, or issues only) the git history is mined
    and the issues, if given, supply problem statements and hints.
    """
    res = MineResult(repo=handle.name)
    with GitRepo(handle.path) as repo:
        if repo.head() is None:
            res.stats["inputs"] += 1
            res.reject(None, STAGE_REPO, "empty_repo", f"{handle.name} has no commits")
            return res
        if check_filters:
            verdict = check_repo(repo, handle.name, cfg.filters)
            if verdict is not None:
                res.stats["inputs"] += 1
                res.reject(None, STAGE_REPO, verdict[0], verdict[1])
                return res
        if metadata is not None and metadata.prs:
            changes = _mine_prs(repo, handle.name, cfg, metadata, res)
        else:
            changes = _mine_history(repo, handle.name, cfg, metadata, res, first_parent)
        known = load_benchmark_instances(cfg.filters.exclude_instances) if cfg.filters.exclude_instances else None
        _finish(repo, handle.name, handle.path, changes, res, known)
    res.stats["candidates"] = len(res.candidates)
    res.stats["rejected"] = len(res.rejected)
    return res


def fetch_github_metadata(client: GitHubClient, repo: str, *, max_pages: int | None = None) -> RepoMetadata:
    """Closed PRs of ``owner/name`` and the issues their merged ones close (with comments)."""
    prs = list(client.pulls(repo, state="closed", max_pages=max_pages))
    wanted: list[int] = []
    for pr in prs:
        if pr.get("merged_at"):
            for n in parse_closing_refs(f"{pr['title']}\n{pr['body']}", repo):
                if n not in wanted and n != pr["number"]:
                    wanted.append(n)
    issues = {}
    for n in wanted:
        issue = client.issue(repo, n)
        if issue is not None:
            issues[n] = issue
    return RepoMetadata(prs=prs, issues=issues, source="github")


# ---------------------------------------------------------------------------------- Spark job

# One output per repo task: candidate columns (nullable) + rejection columns + which one a row is
# (``candidate``, ``rejected``, or ``error``: a ``MiningError`` message the driver raises).
MINED_SCHEMA = pa.schema(
    [f.with_nullable(True) for f in CANDIDATE_SCHEMA]
    + [f.with_nullable(True) for f in REJECTED_SCHEMA if f.name not in CANDIDATE_SCHEMA.names]
    + [pa.field("kind", pa.string())])


def _spec_rows(repo_specs: Iterable[str | dict]) -> list[tuple[str, str | None, str | None]]:
    rows = []
    for s in repo_specs:
        if isinstance(s, dict):
            unknown = set(s) - {"spec", "name", "export"}
            if "spec" not in s or unknown:
                raise SkycurateError(f"repo spec {s!r}: expected keys spec[, name, export]")
            rows.append((str(s["spec"]), s.get("name"), s.get("export")))
        else:
            rows.append((str(s), None, None))
    return rows


def _rows_to_batch(result: MineResult) -> pa.RecordBatch:
    rows = ([{**c, "kind": "candidate"} for c in result.candidates]
            + [{**r, "kind": "rejected"} for r in result.rejected])
    return pa.RecordBatch.from_pylist(rows, schema=MINED_SCHEMA)


class MiningError(SkycurateError):
    """Mining a repository failed for a reason that is not the repository's own: a token GitHub
    refuses, a rate limit the run gave up waiting on, an unreadable export, a bug. Writing the repo
    off as one rejection would publish a dataset silently missing it, so the run stops instead."""


#: GitHub answers these for a repository that does not exist (or that the token may not see),
#: is gone, or is blocked: a fact about that repository, not about the run.
_REPO_GONE = (": 404 ", ": 410 ", ": 451 ")


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:500]}"


def _repo_failure(name: str, exc: Exception) -> MineResult:
    """What an exception while mining ``name`` means: the repository's own problem (unreadable,
    not on GitHub) is one rejection; anything else raises ``MiningError`` naming the repository."""
    if isinstance(exc, RepoError):
        stage, reason = STAGE_REPO, "repo_unreadable"
    elif isinstance(exc, GitHubError) and any(code in str(exc) for code in _REPO_GONE):
        stage, reason = STAGE_CLONE, "github_not_found"
    else:
        raise MiningError(f"mining {name} failed: {_first_line(exc)}") from exc
    log.warning("mining %s: %s", name, exc)
    res = MineResult(repo=name)
    res.stats["inputs"] += 1
    res.reject(None, stage, reason, _first_line(exc))
    return res


def mine_spec(spec: str, name: str | None, export: str | None, cfg: MiningConfig, cache_dir: str | None,
              shared_export: str | None = None, github: bool = False, first_parent: bool = True,
              fetch: bool = True) -> MineResult:
    """Resolve one repo spec, get its metadata, mine it. A repository that cannot be cloned or read,
    or that GitHub does not know, is one rejection; any other failure raises ``MiningError``.

    ``fetch=False``: a cached bare clone is used as it is (the caller fetched it already)."""
    try:
        handle = resolve_repo(spec, cache_dir, name=name, fetch=fetch)
    except RepoError as exc:
        res = MineResult(repo=name or spec_name(spec))
        res.stats["inputs"] += 1
        res.reject(None, STAGE_CLONE, "clone_failed", str(exc))
        return res
    try:
        metadata = None
        if export:
            metadata = load_export(export, repo=handle.name)
        elif shared_export:
            metadata = load_export(shared_export, repo=handle.name)
        elif github and not handle.name.startswith("local/"):
            from pathlib import Path

            etags = str(Path(cache_dir) / "_github") if cache_dir else None
            with GitHubClient.from_config(cfg, cache_dir=etags) as client:
                metadata = fetch_github_metadata(client, handle.name)
        return mine_repo(handle, cfg, metadata, first_parent=first_parent)
    except Exception as exc:  # noqa: BLE001 - sorted into the repo's problem or the run's
        return _repo_failure(handle.name, exc)


def _mine_batch(batch: pa.RecordBatch, cfg: MiningConfig, cache_dir: str | None, shared_export: str | None,
                github: bool, first_parent: bool, fetch: bool = True) -> Iterator[pa.RecordBatch]:
    for row in batch.to_pylist():
        try:
            result = mine_spec(row["spec"], row["name"], row["export"], cfg, cache_dir, shared_export, github,
                               first_parent, fetch)
        except MiningError as exc:
            # Raised here it would reach the driver as a page of Java stack trace: the driver raises it
            yield pa.RecordBatch.from_pylist([{"repo": row["name"] or row["spec"], "detail": str(exc),
                                               "kind": "error"}], schema=MINED_SCHEMA)
            continue
        try:
            out = _rows_to_batch(result)
        except (pa.ArrowException, UnicodeError) as exc:   # a row Arrow cannot hold: the repo is one rejection
            failed = MineResult(repo=result.repo)
            failed.reject(None, STAGE_MINE, "mine_error", f"{type(exc).__name__}: {str(exc)[:500]}")
            out = _rows_to_batch(failed)
        yield out


def mine_on_spark(spark: SparkSession, repo_specs: Iterable[str | dict], cfg: MiningConfig, *,
                  cache_dir: str | None = None, export: str | None = None, github: bool = False,
                  first_parent: bool = True, scratch: str | None = None,
                  fetch: bool = True) -> tuple[DataFrame, DataFrame]:
    """(candidates in ``CANDIDATE_SCHEMA``, rejections in ``REJECTED_SCHEMA``): one Spark task per repo.

    ``repo_specs``: local paths or git URLs, or dicts ``{"spec", "name"?, "export"?}`` (a per-repo
    export). ``export``: one export for all repos (records filtered by their ``repo``). ``github``:
    fetch PRs/issues from the GitHub API for repos without an export. ``cache_dir``: bare clones
    (default ``cfg.cache_dir``). Mining runs once: its small output is written to ``scratch`` (a Spark
    URL the caller owns) or, without one, kept with ``localCheckpoint``.
    """
    from pyspark.sql import functions as F

    from skycurate.spark import flat_map_batches

    rows = _spec_rows(repo_specs)
    cache_dir = cache_dir or cfg.cache_dir
    if not rows:
        from skycurate.spark import spark_schema

        empty_c = spark.createDataFrame([], spark_schema(CANDIDATE_SCHEMA))
        return empty_c, spark.createDataFrame([], spark_schema(REJECTED_SCHEMA))
    rdd = spark.sparkContext.parallelize(rows, numSlices=len(rows))   # exactly one repo per task
    specs = spark.createDataFrame(rdd, "spec string, name string, export string")
    mined = flat_map_batches(specs, partial(_mine_batch, cfg=cfg, cache_dir=cache_dir, shared_export=export,
                                            github=github, first_parent=first_parent, fetch=fetch), MINED_SCHEMA)
    if scratch:
        mined.write.mode("overwrite").parquet(scratch)
        mined = spark.read.parquet(scratch)
    else:
        mined = mined.localCheckpoint(eager=True)
    errors = [r["detail"] for r in mined.filter(F.col("kind") == "error").select("detail").collect()]
    if errors:
        more = f" (and {len(errors) - 1} more repositories)" if len(errors) > 1 else ""
        raise MiningError(f"{errors[0]}{more}")
    candidates = mined.filter(F.col("kind") == "candidate").select(*CANDIDATE_SCHEMA.names)
    rejected = mined.filter(F.col("kind") == "rejected").select(*REJECTED_SCHEMA.names)
    return candidates, rejected
