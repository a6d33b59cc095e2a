"""Pull requests and issues of a repository: the GitHub REST API, or a JSONL export of the same.

Both give a ``RepoMetadata``: PR records and issue records (by number) in the export format below,
so the miner does not care where they came from.

Export format (JSON Lines, optionally ``.gz``; one record per line; unknown keys are ignored):

    {"type": "pr", "repo": "owner/name", "number": 12, "title": "...", "body": "...",
     "merge_commit_sha": "<40 hex>", "base_sha": "<40 hex>",
     "created_at": "2024-02-01T10:00:00Z", "merged_at": "2024-02-02T09:00:00Z",
     "linked_issues": [1]}
    {"type": "issue", "repo": "owner/name", "number": 1, "title": "...", "body": "...",
     "created_at": "2024-01-20T08:00:00Z",
     "comments": [{"created_at": "2024-01-21T08:00:00Z", "body": "..."}]}

``type`` and ``number`` are required. ``repo`` is optional (one export may hold several repos;
``load_export(path, repo=...)`` keeps the records of one, and records without ``repo``).
``merged_at`` null = not merged. ``linked_issues`` is optional: the miner also parses closing keywords
(``fixes #N``) in the title and body. Timestamps are ISO 8601; a timestamp without a zone is UTC.

``GitHubClient`` is a small REST client (httpx): token from an env var, pagination through ``Link``
headers, waits on rate limits (403/429 with ``Retry-After`` or ``X-RateLimit-Reset``, bounded by
``max_wait_s``), retries on 5xx, and conditional requests: every response with an ``ETag`` is kept on
disk and the next identical request sends ``If-None-Match``; a ``304`` reuses the stored body (GitHub
does not count 304s against the rate limit). It knows nothing about mining: which issues to fetch is
the caller's choice.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from skycurate.errors import SkycurateError
from skycurate.localfs import write_atomic

log = logging.getLogger(__name__)

API_URL = "https://api.github.com"


class GitHubError(SkycurateError):
    """The GitHub API refused or failed a request (after the bounded retries and waits)."""


class ExportError(SkycurateError):
    """A PR/issue export that cannot be read."""


@dataclass
class RepoMetadata:
    """PRs (export-format dicts, in the order given) and issues by number, plus where they came from."""

    prs: list[dict] = field(default_factory=list)
    issues: dict[int, dict] = field(default_factory=dict)
    source: str = "export"          # export | github


# ---------------------------------------------------------------------------------- timestamps


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (``Z`` or an offset; naive = UTC), epoch seconds, or a datetime -> aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC)
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


# ---------------------------------------------------------------------------------- export


def _check_record(rec: Any, where: str) -> dict:
    if not isinstance(rec, dict):
        raise ExportError(f"{where}: a record must be a JSON object")
    kind = rec.get("type")
    if kind not in ("pr", "issue"):
        raise ExportError(f"{where}: 'type' must be 'pr' or 'issue', got {kind!r}")
    number = rec.get("number")
    if isinstance(number, bool) or not isinstance(number, int):
        raise ExportError(f"{where}: 'number' must be an integer, got {number!r}")
    out = dict(rec)
    try:
        for key in ("created_at", "merged_at"):
            if key in out:
                out[key] = parse_time(out[key])
        comments = []
        if not isinstance(out.get("comments") or [], list):
            raise ExportError(f"{where}: 'comments' must be a list")
        for c in out.get("comments") or []:
            if not isinstance(c, dict):
                raise ExportError(f"{where}: each comment must be an object")
            comments.append({"created_at": parse_time(c.get("created_at")), "body": c.get("body") or ""})
        out["comments"] = comments
    except (ValueError, OverflowError, OSError) as exc:   # epoch seconds out of range: Overflow/OSError
        raise ExportError(f"{where}: bad timestamp ({exc})") from None
    linked = out.get("linked_issues") or []
    if not isinstance(linked, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in linked):
        raise ExportError(f"{where}: 'linked_issues' must be a list of integers")
    out["linked_issues"] = linked
    out["title"] = out.get("title") or ""
    out["body"] = out.get("body") or ""
    return out


def load_export(path: str | os.PathLike, repo: str | None = None) -> RepoMetadata:
    """Read a PR/issue export (format in the module docstring). With ``repo``, records of other repos
    are skipped. A line that does not parse is an ``ExportError`` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"export {path}: no such file")
    opener = gzip.open if path.name.endswith(".gz") else open
    meta = RepoMetadata(source="export")
    want = repo.lower() if repo else None
    try:
        with opener(path, "rb") as f:
            for line_no, data in enumerate(f, start=1):
                _add_export_line(meta, data, f"{path}:{line_no}", want)
    except (OSError, EOFError) as exc:   # a truncated or corrupt .gz, an unreadable file
        raise ExportError(f"export {path}: cannot read ({exc})") from None
    return meta


def _add_export_line(meta: RepoMetadata, data: bytes, where: str, want: str | None) -> None:
    if not data.strip():
        return
    try:
        line = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExportError(f"{where}: not UTF-8 (byte {exc.start})") from None
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{where}: not JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:   # an int of > 4300 digits; nesting too deep for Python
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(":")[0]
        raise ExportError(f"{where}: not JSON ({reason})") from None
    rec = _check_record(raw, where)
    rec_repo = rec.get("repo")
    if want and rec_repo and str(rec_repo).lower() != want:
        return
    if rec["type"] == "pr":
        meta.prs.append(rec)
    else:
        meta.issues[rec["number"]] = rec


# ---------------------------------------------------------------------------------- client


def _normalize_pr(raw: dict) -> dict:
    return {
        "type": "pr", "number": raw["number"], "title": raw.get("title") or "", "body": raw.get("body") or "",
        "merge_commit_sha": raw.get("merge_commit_sha"), "base_sha": (raw.get("base") or {}).get("sha"),
        "created_at": parse_time(raw.get("created_at")), "merged_at": parse_time(raw.get("merged_at")),
        "linked_issues": [],
    }


def _normalize_issue(raw: dict, comments: list[dict]) -> dict:
    return {
        "type": "issue", "number": raw["number"], "title": raw.get("title") or "", "body": raw.get("body") or "",
        "created_at": parse_time(raw.get("created_at")),
        "comments": [{"created_at": parse_time(c.get("created_at")), "body": c.get("body") or ""} for c in comments],
    }


class GitHubClient:
    """GitHub REST client with pagination, bounded rate-limit waits and an on-disk ETag cache.

    ``token``: None reads ``$GITHUB_TOKEN`` (or the env var named by ``token_env``); no token is fine
    for public repos at 60 requests/hour. ``sleep``/``clock`` are injectable for tests.
    """

    def __init__(self, token: str | None = None, *, token_env: str = "GITHUB_TOKEN", base_url: str = API_URL,
                 cache_dir: str | os.PathLike | None = None, timeout: float = 30.0, max_wait_s: float = 900.0,
                 max_retries: int = 5, per_page: int = 100, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, transport: httpx.BaseTransport | None = None):
        self.token = token if token is not None else os.environ.get(token_env) or None
        self.base_url = base_url.rstrip("/")
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.max_wait_s = max_wait_s
        self.max_retries = max_retries
        self.per_page = per_page
        self.sleep = sleep
        self.clock = clock
        self.stats = {"requests": 0, "not_modified": 0, "rate_limit_waits": 0, "retries": 0}
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                   "User-Agent": "skycurate-swe-miner"}
        # the token goes per request, only to the API's own origin (see _auth_headers)
        self._http = httpx.Client(headers=headers, timeout=timeout, follow_redirects=True, transport=transport)

    @classmethod
    def from_config(cls, cfg: Any, cache_dir: str | os.PathLike | None = None, **kwargs) -> GitHubClient:
        """From a ``MiningConfig`` (its ``github_token_env``); the ETag cache goes under ``cache_dir``."""
        return cls(token_env=cfg.github_token_env, cache_dir=cache_dir, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- ETag cache

    def _cache_path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        # The token is part of the key: another identity may see other data (private repos).
        key = hashlib.sha256(f"{url}\x00{hashlib.sha256((self.token or '').encode()).hexdigest()}".encode())
        return self.cache_dir / f"{key.hexdigest()}.json"

    def _cache_load(self, url: str) -> dict | None:
        path = self._cache_path(url)
        if path is None or not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _cache_store(self, url: str, etag: str, link: str | None, body: Any) -> None:
        path = self._cache_path(url)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"url": url, "etag": etag, "link": link, "body": body}))

    # ---- requests

    def _rate_limit_wait(self, resp: httpx.Response) -> float | None:
        """Seconds to wait before retrying, or None if the response is not a rate limit."""
        retry_after = resp.headers.get("Retry-After")
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                pass
        if resp.headers.get("X-RateLimit-Remaining") == "0" and resp.headers.get("X-RateLimit-Reset"):
            try:
                return max(0.0, float(resp.headers["X-RateLimit-Reset"]) - self.clock()) + 1.0
            except ValueError:
                pass
        if resp.status_code == 429 or "rate limit" in resp.text.lower():
            return 60.0   # secondary rate limit without headers: GitHub asks for at least a minute
        return None

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    @staticmethod
    def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
        scheme = url.scheme.lower()
        return scheme, url.host.lower(), url.port or {"http": 80, "https": 443}.get(scheme)

    def _auth_headers(self, url: str) -> dict[str, str]:
        """The token only for the API's own scheme, host and port: a ``Link: rel="next"`` may point
        anywhere, and the token must not follow it there (httpx drops it on cross-origin redirects)."""
        if self.token and self._origin(httpx.URL(url)) == self._origin(httpx.URL(self.base_url)):
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    def get(self, path_or_url: str, params: dict | None = None) -> tuple[Any, str | None]:
        """(JSON body, URL of the next page or None) for one GET."""
        url = httpx.URL(self._url(path_or_url))
        url = str(url.copy_merge_params(params) if params else url)
        cached = self._cache_load(url)
        for attempt in range(self.max_retries + 1):
            headers = {"If-None-Match": cached["etag"]} if cached else {}
            headers.update(self._auth_headers(url))
            self.stats["requests"] += 1
            try:
                resp = self._http.get(url, headers=headers)
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise GitHubError(f"GET {url}: {type(exc).__name__}: {exc}") from None
                self.stats["retries"] += 1
                self.sleep(min(2.0 ** attempt, 30.0))
                continue
            if resp.status_code == 304 and cached:
                self.stats["not_modified"] += 1
                return cached["body"], self._next_link(cached.get("link"))
            if resp.status_code in (403, 429):
                wait = self._rate_limit_wait(resp)
                if wait is None:
                    raise GitHubError(f"GET {url}: {resp.status_code} {self._message(resp)}")
                if wait > self.max_wait_s:
                    raise GitHubError(f"GET {url}: rate limited for {wait:.0f} s more than the {self.max_wait_s:.0f} s "
                                      "allowed to wait")
                if attempt >= self.max_retries:
                    break
                log.warning("GitHub rate limit: waiting %.0f s", wait)
                self.stats["rate_limit_waits"] += 1
                self.sleep(wait)
                continue
            if resp.status_code >= 500:
                if attempt >= self.max_retries:
                    break
                self.stats["retries"] += 1
                self.sleep(min(2.0 ** attempt, 30.0))
                continue
            if resp.status_code >= 400:
                raise GitHubError(f"GET {url}: {resp.status_code} {self._message(resp)}")
            try:
                body = resp.json()
            except ValueError:
                raise GitHubError(f"GET {url}: response is not JSON") from None
            link = resp.headers.get("Link")
            if resp.headers.get("ETag"):
                self._cache_store(url, resp.headers["ETag"], link, body)
            return body, self._next_link(link)
        raise GitHubError(f"GET {url}: gave up after {self.max_retries + 1} attempts (last status "
                          f"{resp.status_code})")

    @staticmethod
    def _message(resp: httpx.Response) -> str:
        try:
            return str(resp.json().get("message", "")).splitlines()[0]
        except (ValueError, AttributeError, IndexError):
            return resp.reason_phrase

    @staticmethod
    def _next_link(link: str | None) -> str | None:
        if not link:
            return None
        for part in link.split(","):
            section = part.split(";")
            if len(section) < 2:
                continue
            target = section[0].strip()
            if any(s.strip().replace(" ", "") in ('rel="next"', "rel=next") for s in section[1:]):
                return target[1:-1] if target.startswith("<") and target.endswith(">") else target
        return None

    def paginate(self, path: str, params: dict | None = None, *, max_pages: int | None = None) -> Iterator[Any]:
        """Every item of a list endpoint, following ``Link: rel="next"``."""
        params = {"per_page": self.per_page, **(params or {})}
        url: str | None = path
        pages = 0
        seen: set[str] = set()
        while url is not None:
            seen.add(url)
            body, url = self.get(url, params if pages == 0 else None)
            pages += 1
            if url in seen:
                raise GitHubError(f"GET {path}: pagination loops back to {url}")
            if not isinstance(body, list):
                raise GitHubError(f"GET {path}: expected a list, got {type(body).__name__}")
            yield from body
            if max_pages is not None and pages >= max_pages:
                return

    # ---- endpoints (records in the export format)

    def pulls(self, repo: str, *, state: str = "closed", max_pages: int | None = None) -> Iterator[dict]:
        """PR records of ``owner/name`` (oldest first)."""
        for raw in self.paginate(f"/repos/{repo}/pulls", {"state": state, "sort": "created", "direction": "asc"},
                                 max_pages=max_pages):
            yield _normalize_pr(raw)

    def issue(self, repo: str, number: int, *, comments: bool = True) -> dict | None:
        """An issue record with its comments; None if ``number`` is a PR or does not exist."""
        try:
            raw, _ = self.get(f"/repos/{repo}/issues/{number}")
        except GitHubError as exc:
            if ": 404 " in str(exc) or ": 410 " in str(exc):
                return None
            raise
        if not isinstance(raw, dict) or "pull_request" in raw:
            return None
        items = list(self.paginate(f"/repos/{repo}/issues/{number}/comments")) if comments and raw.get("comments") \
            else []
        return _normalize_issue(raw, items)
