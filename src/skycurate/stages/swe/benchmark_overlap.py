"""Instance-level overlap with public SWE benchmarks: a mined candidate that is a benchmark's
instance (same id, same repository and base commit, or same repository and PR number) must not
become training data.

Benchmarks that draw on many repositories and grow monthly (SWE-bench-Live, SWE-rebench,
Multi-SWE-bench) publish their instance lists; ``RepoFilter.exclude_instances`` takes those
files (``NAME=PATH`` or ``PATH``; JSON list, JSONL or Parquet, as downloaded from the dataset
hubs). Field names accepted: ``instance_id``; ``repo`` (``owner/name``) or ``org`` + ``repo``;
``base_commit`` or ``base.sha``; ``pull_number`` or ``number`` (else the ``-N`` of the id).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from skycurate.errors import SkycurateError

_ID_NUMBER = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class KnownInstance:
    benchmark: str
    instance_id: str


@dataclass
class BenchmarkIndex:
    by_id: dict[str, KnownInstance] = field(default_factory=dict)
    by_commit: dict[tuple[str, str], KnownInstance] = field(default_factory=dict)
    by_pr: dict[tuple[str, int], KnownInstance] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_id)

    def match(self, repo: str, base_commit: str, instance_id: str) -> tuple[KnownInstance, str] | None:
        """The benchmark instance a candidate repeats and how it was recognised, or None."""
        repo = repo.lower()
        if instance_id in self.by_id:
            return self.by_id[instance_id], "instance id"
        if (repo, base_commit) in self.by_commit:
            return self.by_commit[(repo, base_commit)], "repository and base commit"
        m = _ID_NUMBER.search(instance_id)
        if m and (repo, int(m.group(1))) in self.by_pr:
            return self.by_pr[(repo, int(m.group(1)))], "repository and PR number"
        return None


def _records(path: str) -> list[dict]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        data = json.loads(text)
        return [r for r in data if isinstance(r, dict)]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _split_spec(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if sep and name and not os.path.exists(spec):
        return name, path
    base = Path(spec).name
    for suffix in (".parquet", ".jsonl", ".json"):
        base = base.removesuffix(suffix)
    return base, spec


def _add(index: BenchmarkIndex, benchmark: str, rec: dict) -> None:
    iid = rec.get("instance_id")
    repo = rec.get("repo") or ""
    if "/" not in repo and rec.get("org"):
        repo = f"{rec['org']}/{repo}"
    base = rec.get("base_commit")
    if not base and isinstance(rec.get("base"), dict):   # Multi-SWE-bench: {"base": {"sha": ...}}
        base = rec["base"].get("sha")
    number = rec.get("pull_number") or rec.get("number")
    if number is None and isinstance(iid, str) and _ID_NUMBER.search(iid):
        number = _ID_NUMBER.search(iid).group(1)
    known = KnownInstance(benchmark, str(iid or f"{repo}#{number}"))
    if iid:
        index.by_id[str(iid)] = known
    if repo and base:
        index.by_commit[(repo.lower(), str(base))] = known
    if repo and number is not None and str(number).isdigit():
        index.by_pr[(repo.lower(), int(number))] = known


@lru_cache(maxsize=8)
def _load(specs: tuple[str, ...], stamps: tuple[float, ...]) -> BenchmarkIndex:
    index = BenchmarkIndex()
    for spec in specs:
        name, path = _split_spec(spec)
        try:
            records = _records(path)
        except (OSError, ValueError, UnicodeError) as e:
            raise SkycurateError(f"benchmark instances {path}: cannot read ({type(e).__name__}: {e})") from None
        if not records:
            raise SkycurateError(f"benchmark instances {path}: no instances in it")
        for rec in records:
            _add(index, name, rec)
    return index


def load_benchmark_instances(specs: list[str] | tuple[str, ...]) -> BenchmarkIndex:
    """The instances of every benchmark file (cached while the files are unchanged)."""
    specs = tuple(specs)
    stamps = []
    for spec in specs:
        path = _split_spec(spec)[1]
        if not os.path.isfile(path):
            raise SkycurateError(f"benchmark instances {path}: no such file")
        stamps.append(os.path.getmtime(path))
    return _load(specs, tuple(stamps))
