"""Git repositories for SWE task mining: resolve a spec to a local repository, and read its history.

``resolve_repo(spec, cache_dir)`` takes either a local repository (a work tree or a bare repo) or a
git URL. A URL is cloned **bare** into ``cache_dir`` once (branches and tags only, not GitHub's
``refs/pull/*``) and reused by later runs, which only ``git fetch``; a fetch that fails (offline)
keeps the cached copy and logs a warning. A clone that fails raises ``RepoError`` with one line:
the URL and git's own reason.

``GitRepo`` reads what the miner needs without a checkout: first-parent history of the default
branch (``HEAD``), the files a commit changed against a base (with binary files flagged), the unified
diff of chosen paths, file lists, file contents at a commit, and commit dates (UTC).

The repository name (``owner/name``) comes from the URL, else from a local repository's ``origin``
remote, else from its folder (``local/<folder>``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import git
from git.exc import (
    GitCommandError,
    InvalidGitRepositoryError,
    NoSuchPathError,
    UnsafeOptionError,
    UnsafeProtocolError,
)

from skycurate.catalog.pins import RepoPin
from skycurate.errors import SkycurateError

log = logging.getLogger(__name__)

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCP = re.compile(r"^(?:[\w.-]+@)?[\w.-]+:(?!//)(?P<path>[^\\]+)$")   # git@github.com:owner/name.git
_NAME_PART = re.compile(r"[^\w.-]+")
# Transports git may use for our clones and fetches (``GIT_ALLOW_PROTOCOL``): never ``ext::`` (runs a
# command) nor ``fd::``; also binds submodules and redirects, which a URL check up front cannot see.
_ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
_GIT_ENV = {"GIT_ALLOW_PROTOCOL": _ALLOWED_PROTOCOLS, "GIT_TERMINAL_PROMPT": "0"}
_URL_SCHEMES = frozenset({"file", "git", "http", "https", "ssh", "git+ssh", "ssh+git"})
# Characters no repository URL needs and a shell or git's option parser would read: whitespace and
# control characters (newline, NUL), quotes, shell metacharacters and backslashes.
_URL_BAD_CHARS = re.compile(r"""[\s\x00-\x1f\x7f;|&$`<>'"\\(){}*?!]""")
# Never let a user's or the system's git config (pagers, external diff drivers, signing) change output.
_DIFF_FLAGS = ("--no-color", "--no-ext-diff", "--no-textconv", "--no-renames", "--src-prefix=a/",
               "--dst-prefix=b/")


class RepoError(SkycurateError):
    """A repository that cannot be cloned, fetched or opened."""


@dataclass(frozen=True)
class RepoHandle:
    """A repository ready to read: ``name`` is ``owner/name``; ``path`` a work tree or a bare clone;
    ``url`` the git URL it was cloned from (None for a local repository)."""

    name: str
    path: str
    url: str | None = None

    def open(self) -> GitRepo:
        return GitRepo(self.path)


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parents: tuple[str, ...]
    message: str
    authored_at: datetime   # UTC
    committed_at: datetime  # UTC

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


@dataclass(frozen=True)
class FileChange:
    """One file changed between two commits (renames are split into a delete and an add)."""

    path: str
    added: int      # lines; 0 for binary files
    deleted: int
    binary: bool


# ---------------------------------------------------------------------------------- resolving


def is_git_url(spec: str) -> bool:
    """``https://``, ``ssh://``, ``file://``, ``git://`` ... or scp-like ``git@host:owner/name``."""
    if _URL.match(spec):
        return True
    return bool(_SCP.match(spec)) and not os.path.exists(spec)


def check_repo_spec(spec: str) -> str:
    """Reject a repository spec that could make git run a command or read it as an option.

    Checked before any git process runs, because git treats an argument starting with ``-`` as an
    option (``--upload-pack=touch x``, ``-c core.sshCommand=...``), the ``ext::`` transport (any
    ``<transport>::<address>``) runs a command, an ssh host or user starting with ``-`` becomes an ssh
    option, and a newline or NUL splits a value in git's config and protocol lines. Legitimate forms pass:
    ``https://host/org/repo(.git)``, ``ssh://``, ``git://``, ``file://``, ``git@host:org/repo.git``
    and local paths (which may hold spaces, never control characters). Raises ``RepoError`` (one line).
    """
    if not isinstance(spec, str) or not spec:
        raise RepoError("repository spec is empty")
    shown = repr(spec[:200])
    if re.search(r"[\x00-\x1f\x7f]", spec):
        raise RepoError(f"repository {shown}: control characters (newline, NUL...) are not allowed")
    if spec.startswith("-"):
        raise RepoError(f"repository {shown}: must not start with '-' (git would read it as an option)")
    if "::" in spec.split("/", 1)[0] or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*::", spec):
        raise RepoError(f"repository {shown}: git remote-helper transports ('ext::', 'fd::'...) are not allowed")
    if _URL.match(spec):
        parsed = urlparse(spec)
        if parsed.scheme.lower() not in _URL_SCHEMES:
            raise RepoError(f"repository {shown}: unsupported URL scheme {parsed.scheme!r} "
                            f"(use one of {', '.join(sorted(_URL_SCHEMES))})")
        if _URL_BAD_CHARS.search(unquote(spec)):
            raise RepoError(f"repository {shown}: whitespace, quotes and shell metacharacters are not "
                            "allowed in a repository URL")
        netloc = unquote(parsed.netloc)
        if netloc.startswith("-") or netloc.rpartition("@")[2].startswith("-"):
            raise RepoError(f"repository {shown}: a host or user starting with '-' is not allowed")
    elif _SCP.match(spec) and not os.path.exists(spec):
        if _URL_BAD_CHARS.search(spec):
            raise RepoError(f"repository {shown}: whitespace, quotes and shell metacharacters are not "
                            "allowed in a repository URL")
        if spec.rpartition(":")[0].rpartition("@")[2].startswith("-"):
            raise RepoError(f"repository {shown}: a host starting with '-' is not allowed")
    return spec


def check_rev(rev: str) -> str:
    """A revision (sha, branch, tag, ``a..b``) safe to put on a git command line.

    A revision read from an export or a config (a PR's merge sha, a branch name) that starts with
    ``-`` would be an option to git (``--output=/some/file`` makes ``git log`` write a file); a
    newline, NUL or other control character is never part of a ref name. Raises ``RepoError``.
    """
    if not isinstance(rev, str) or not rev.strip():
        raise RepoError(f"bad revision {rev!r}: empty or not a string")
    if rev.startswith("-") or re.search(r"[\x00-\x20\x7f]", rev):
        raise RepoError(f"bad revision {rev[:200]!r}: must not start with '-' or hold spaces or control "
                        "characters")
    return rev


def _clean(part: str) -> str:
    part = _NAME_PART.sub("-", part).strip("-.")
    return part or "repo"


def _strip_git(name: str) -> str:
    return name.removesuffix(".git")


def name_from_url(url: str) -> str | None:
    """``owner/name`` of a remote URL (the last two path parts), or None for ``file://`` URLs and
    anything with fewer than two path parts."""
    if _URL.match(url):
        parsed = urlparse(url)
        if parsed.scheme == "file":
            return None
        path = unquote(parsed.path)
    else:
        m = _SCP.match(url)
        if not m:
            return None
        path = m.group("path")
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 2:
        return None
    return f"{_clean(parts[-2])}/{_clean(_strip_git(parts[-1]))}"


def _local_name(path: Path) -> str:
    """From the repository's ``origin`` remote when it names a host repo, else ``local/<folder>``."""
    try:
        repo = git.Repo(path)
        try:
            url = repo.remotes.origin.url if "origin" in [r.name for r in repo.remotes] else None
        finally:
            repo.close()
    except (InvalidGitRepositoryError, NoSuchPathError, ValueError, GitCommandError):
        url = None
    if url:
        name = name_from_url(url)
        if name:
            return name
    return f"local/{_clean(_strip_git(path.resolve().name))}"


def spec_name(spec: str | os.PathLike) -> str:
    """The ``owner/name`` a spec resolves to, without cloning: from a URL, else (local paths and
    ``file://`` URLs) from the repository's ``origin`` remote, else ``local/<folder>``."""
    spec = os.fspath(spec)
    if is_git_url(spec):
        name = name_from_url(spec)
        if name is not None:
            return name
        src = Path(unquote(urlparse(spec).path)) if _URL.match(spec) else Path(spec)
    else:
        src = Path(spec).expanduser()
    return _local_name(src) if src.exists() else f"local/{_clean(_strip_git(src.name))}"


def _one_line(exc: Exception) -> str:
    """git's own reason (its last ``fatal:``/``error:`` line), else the exception's first line."""
    text = ""
    if isinstance(exc, GitCommandError):
        text = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode("utf-8", "replace")
    lines = [ln.strip().strip("'").strip() for ln in text.splitlines() if ln.strip().strip("'").strip()]
    for line in reversed(lines):
        if line.startswith(("fatal:", "error:", "ERROR:")):
            return line
    if lines:
        return lines[-1]
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _bare_fetch(path: Path) -> None:
    repo = git.Repo(path)
    try:
        with repo.git.custom_environment(**_GIT_ENV):
            repo.git.fetch("--prune", "--tags", "--force", "origin", "+refs/heads/*:refs/heads/*")
    finally:
        repo.close()


def resolve_repo(spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None, *,
                 name: str | None = None, fetch: bool = True) -> RepoHandle:
    """A local repository as it is, or a git URL as a bare clone in ``cache_dir`` (cloned once,
    then fetched). ``name`` overrides the inferred ``owner/name``.

    A spec that could make git run a command or take it as an option is refused before any git
    process runs (``check_repo_spec``)."""
    spec = check_repo_spec(os.fspath(spec))
    if not is_git_url(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise RepoError(f"repository {spec}: no such folder")
        try:
            git.Repo(path).close()
        except (InvalidGitRepositoryError, NoSuchPathError):
            raise RepoError(f"repository {spec}: not a git repository") from None
        return RepoHandle(name=name or spec_name(path), path=str(path.resolve()), url=None)

    url = spec
    name = name or spec_name(url)
    if cache_dir is None:
        raise RepoError(f"cannot clone {url}: no cache_dir given for bare clones")
    cache = Path(cache_dir).expanduser()
    # Keyed by the URL alone (the name may come from a source that is gone by the next run).
    last = re.split(r"[/:]", url.rstrip("/"))[-1]
    dest = cache / f"{_clean(_strip_git(last))}-{hashlib.sha1(url.encode()).hexdigest()[:12]}.git"

    if dest.exists():
        if fetch:
            try:
                _bare_fetch(dest)
            except (GitCommandError, InvalidGitRepositoryError) as exc:
                log.warning("fetching %s into %s failed (%s); using the cached clone", url, dest, _one_line(exc))
        return RepoHandle(name=name, path=str(dest.resolve()), url=url)

    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        repo = git.Repo.clone_from(url, tmp, bare=True, env=_GIT_ENV)   # clone_from passes "--" before url
        try:
            # A bare clone sets no fetch refspec; later runs fetch branches and tags, never refs/pull/*.
            with repo.config_writer() as cw:
                cw.set_value('remote "origin"', "fetch", "+refs/heads/*:refs/heads/*")
        finally:
            repo.close()
    except (GitCommandError, UnsafeOptionError, UnsafeProtocolError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RepoError(f"cannot clone {url}: {_one_line(exc)}") from None
    try:
        tmp.rename(dest)
    except OSError:
        # Another task cloned the same URL first: use its clone.
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.exists():
            raise
    return RepoHandle(name=name, path=str(dest.resolve()), url=url)


# ---------------------------------------------------------------------------------- reading


def _utc(ts: str | int) -> datetime:
    return datetime.fromtimestamp(int(ts), tz=UTC)


def _literal(paths: Iterable[str]) -> list[str]:
    return [f":(literal){p}" for p in paths]


class GitRepo:
    """Read-only access to one repository's history (work tree or bare), via the git CLI."""

    def __init__(self, path: str | os.PathLike):
        try:
            self.repo = git.Repo(path)
        except (InvalidGitRepositoryError, NoSuchPathError):
            raise RepoError(f"repository {path}: not a git repository") from None
        self.path = str(path)

    def close(self) -> None:
        self.repo.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- commits

    def head(self) -> str | None:
        """The commit the default branch (``HEAD``) points to; None for an empty repository."""
        try:
            return self.repo.git.rev_parse("--verify", "--quiet", "HEAD^{commit}")
        except GitCommandError:
            return None

    def resolve(self, rev: str) -> str | None:
        """Full sha of ``rev``, None if it is not a commit here (or not a safe revision, see ``check_rev``)."""
        try:
            check_rev(rev)
        except RepoError:
            return None
        try:
            return self.repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")
        except GitCommandError:
            return None

    def iter_commits(self, rev: str = "HEAD", *, first_parent: bool = True,
                     max_count: int | None = None) -> Iterator[CommitInfo]:
        """Commits reachable from ``rev``, newest first (first-parent history by default), streamed."""
        if self.resolve(rev) is None:
            return
        args = ["-z", "--format=%H%x1f%P%x1f%at%x1f%ct%x1f%B"]
        if first_parent:
            args.append("--first-parent")
        if max_count is not None:
            args.append(f"--max-count={max_count}")
        proc = self.repo.git.log(*args, rev, "--", as_process=True)
        buf = b""
        done = False
        try:
            while True:
                chunk = proc.stdout.read(1 << 16)
                if not chunk:
                    break
                buf += chunk
                *records, buf = buf.split(b"\x00")
                for rec in records:
                    yield self._parse_log_record(rec)
            if buf.strip():
                yield self._parse_log_record(buf)
            done = True
        finally:
            proc.stdout.close()
            try:
                proc.wait()
            except GitCommandError:
                if done:      # git failed; a consumer that stopped early only cut the pipe
                    raise

    @staticmethod
    def _parse_log_record(rec: bytes) -> CommitInfo:
        sha, parents, at, ct, message = rec.decode("utf-8", "replace").split("\x1f", 4)
        return CommitInfo(sha=sha.strip(), parents=tuple(parents.split()), message=message.rstrip("\n"),
                          authored_at=_utc(at), committed_at=_utc(ct))

    def merged_commits(self, merge: CommitInfo, max_count: int = 200) -> list[CommitInfo]:
        """The commits a merge brought in (reachable from its other parents, not from its first),
        newest first, the merge itself left out."""
        if not merge.is_merge:
            return []
        revs = [check_rev(p) for p in merge.parents]
        out = self.repo.git.log("-z", "--format=%H%x1f%P%x1f%at%x1f%ct%x1f%B", f"--max-count={max_count}",
                                *revs[1:], f"^{revs[0]}", "--", stdout_as_string=False)
        return [self._parse_log_record(rec) for rec in out.split(b"\x00") if rec.strip()]

    def commit_info(self, rev: str) -> CommitInfo:
        out = self.repo.git.log("-1", "--format=%H%x1f%P%x1f%at%x1f%ct%x1f%B", check_rev(rev), "--",
                                stdout_as_string=False)
        return self._parse_log_record(out)

    def commit_date(self, rev: str) -> datetime:
        """Author date of ``rev`` in UTC."""
        return _utc(self.repo.git.log("-1", "--format=%at", check_rev(rev), "--"))

    def first_parent(self, rev: str) -> str | None:
        parents = self.commit_info(rev).parents
        return parents[0] if parents else None

    def authored_dates(self, rev_range: str) -> list[datetime]:
        """Author dates of the commits in ``rev_range`` (``a..b``)."""
        out = self.repo.git.log("--format=%at", check_rev(rev_range), "--")
        return [_utc(x) for x in out.split()]

    def last_tag(self, rev: str) -> str | None:
        """The nearest tag reachable from ``rev`` (``git describe --tags --abbrev=0``)."""
        try:
            return self.repo.git.describe("--tags", "--abbrev=0", check_rev(rev)) or None
        except GitCommandError:
            return None

    # ---- diffs

    def changed_files(self, base: str, rev: str) -> list[FileChange]:
        """Files that differ between ``base`` and ``rev``, in git's order, binary files flagged."""
        out = self.repo.git.diff("--numstat", "-z", *_DIFF_FLAGS, check_rev(base), check_rev(rev), "--",
                                 stdout_as_string=False)
        changes = []
        for rec in out.split(b"\x00"):
            if not rec.strip():
                continue
            added, deleted, path = rec.decode("utf-8", "surrogateescape").split("\t", 2)
            binary = added == "-" or deleted == "-"
            changes.append(FileChange(path=path.lstrip("\n"), added=0 if binary else int(added),
                                      deleted=0 if binary else int(deleted), binary=binary))
        return changes

    def diff_bytes(self, base: str, rev: str, paths: Iterable[str]) -> bytes:
        """Unified diff of ``paths`` between ``base`` and ``rev`` (raw bytes, trailing newline kept)."""
        paths = list(paths)
        if not paths:
            return b""
        return self.repo.git.diff(*_DIFF_FLAGS, check_rev(base), check_rev(rev), "--", *_literal(paths),
                                  stdout_as_string=False, strip_newline_in_stdout=False)

    def diff(self, base: str, rev: str, paths: Iterable[str]) -> str:
        """Unified diff of ``paths`` as text; raises ``UnicodeDecodeError`` if it is not UTF-8."""
        return self.diff_bytes(base, rev, paths).decode("utf-8")

    def diff_per_file(self, base: str, rev: str, paths: Iterable[str] | None = None) -> dict[str, str]:
        """``{path: unified diff}`` for text files (binary files are skipped)."""
        changes = self.changed_files(base, rev)
        wanted = None if paths is None else set(paths)
        out = {}
        for ch in changes:
            if ch.binary or (wanted is not None and ch.path not in wanted):
                continue
            out[ch.path] = self.diff_bytes(base, rev, [ch.path]).decode("utf-8", "replace")
        return out

    def commit_diff(self, rev: str) -> dict[str, str]:
        """``{path: unified diff}`` of ``rev`` against its first parent (text files only; {} for a root commit)."""
        parent = self.first_parent(rev)
        return {} if parent is None else self.diff_per_file(parent, rev)

    # ---- files

    def list_files(self, rev: str = "HEAD") -> list[str]:
        out = self.repo.git.ls_tree("-r", "-z", "--name-only", check_rev(rev), stdout_as_string=False)
        return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\x00") if p]

    def read_bytes(self, rev: str, path: str) -> bytes | None:
        """Content of ``path`` at ``rev``; None if there is no such file."""
        try:
            obj = self.repo.commit(rev).tree / path
        except (KeyError, ValueError, GitCommandError):
            return None
        if obj.type != "blob":
            return None
        return obj.data_stream.read()

    def read_file(self, rev: str, path: str) -> str | None:
        """Text of ``path`` at ``rev`` (undecodable bytes replaced); None if missing or binary."""
        data = self.read_bytes(rev, path)
        if data is None or b"\x00" in data[:8000]:
            return None
        return data.decode("utf-8", "replace")


def _is_repo(path: Path) -> bool:
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


def expand_repo_specs(specs: Iterable[str]) -> list[str]:
    """URLs as they are; a local repository as it is; a glob (``~/src/*``) or a folder that is not
    itself a repository (``~/clones``) -> the repositories directly inside it, sorted. Each
    repository once, in the order first named. A glob or folder holding none raises ``RepoError``
    (saying so beats mining nothing), and so does a hostile spec (``check_repo_spec``)."""
    import glob

    out: list[str] = []
    for spec in specs:
        spec = check_repo_spec(os.fspath(spec))
        if is_git_url(spec):
            found = [spec]
        elif glob.has_magic(spec):
            found = [p for p in sorted(glob.glob(os.path.expanduser(spec))) if _is_repo(Path(p))]
            if not found:
                raise RepoError(f"repositories {spec}: the pattern matches no git repository")
        else:
            path = Path(spec).expanduser()
            if path.is_dir() and not _is_repo(path):
                found = [str(p) for p in sorted(path.iterdir()) if p.is_dir() and _is_repo(p)]
                if not found:
                    raise RepoError(f"repository {spec}: not a git repository, and no folder in it is one")
            else:
                found = [spec]
        out += [f for f in found if f not in out]
    return out


def pin_repos(specs: list[str], cache_dir: str) -> list[RepoPin]:
    """Resolve (clone or fetch) each repository once and pin it by a hash of all its refs; a glob
    or a folder of clones stands for every repository in it (``expand_repo_specs``).

    A repository that cannot be resolved gets ``head=None``: mining records the failure.
    """
    out = []
    for spec in expand_repo_specs(specs):
        try:
            handle = resolve_repo(spec, cache_dir)
        except RepoError:
            out.append(RepoPin(spec=spec, name=spec, head=None))
            continue
        refs = sorted(f"{r.path}={r.commit.hexsha}" for r in git.Repo(handle.path).references
                      if not r.path.startswith("refs/remotes/origin/HEAD"))
        out.append(RepoPin(spec=spec, name=handle.name, head=hashlib.sha256("\n".join(refs).encode()).hexdigest()[:16]))
    return out
