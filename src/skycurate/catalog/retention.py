"""Tags and retention: names for versions people depend on, and deleting what nobody needs.

A tag is a file ``<store>/<ns>/<name>/_tags/<label>`` holding a version label (written atomically),
so ``web/clean@prod`` resolves like ``@v0003`` and moving a tag is one write. ``plan_gc`` decides
what a garbage collection may delete and ``run_gc`` deletes it:

* a version goes only when it is not among the newest ``keep`` of its dataset, is older than
  ``older_than`` (when given), is not tagged, and is not a parent (directly or through other kept
  versions, across datasets) of a version that stays;
* leftovers of dead runs go too: ``_staging`` and ``_scratch`` entries older than a day, and
  version folders without a manifest (a remote commit that died halfway) older than a day.

Deleting a version removes its manifest first (one file: the version is invisible from then on),
then its files; a gc killed midway leaves invisible folders that the next gc removes, and every
version that stays readable and verifiable.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skycurate.catalog.refs import LATEST, TAG_RE, VERSION_RE, check_name, version_number
from skycurate.errors import SkycurateError

if TYPE_CHECKING:
    from skycurate.catalog.store import Catalog

TAGS_DIR = "_tags"
#: Stage datasets a flow keeps only so a later run can resume from them (``gc --intermediates``
#: deletes all but their newest version even when a kept final version names them as parents).
INTERMEDIATE_DATASETS = ("web/extracted", "web/filtered", "web/deduped", "web/scored")
LEFTOVER_AGE = dt.timedelta(days=1)


def check_tag(label: str) -> str:
    """A tag label: lower-case, starts with a letter, not ``latest`` and not a version label."""
    if label == LATEST or VERSION_RE.match(label) or not TAG_RE.match(label):
        raise SkycurateError(f"bad tag {label!r}: use lower-case letters, digits, '.', '_' or '-', starting with a "
                             "letter (not 'latest', not a version like v0003)")
    return label


def tag_path(catalog: Catalog, name: str, label: str) -> str:
    return catalog._path(name, TAGS_DIR, label)


def set_tag(catalog: Catalog, ref: str, label: str) -> str:
    """Point ``label`` at the version ``ref`` names (resolved now: ``@latest`` is pinned); returns it."""
    check_tag(label)
    target = catalog.resolve(ref)
    catalog.fs.makedirs(catalog._path(target.name, TAGS_DIR), exist_ok=True)
    catalog._write_atomic(tag_path(catalog, target.name, label), (target.version + "\n").encode())
    return f"{target.name}@{target.version}"


def remove_tag(catalog: Catalog, name: str, label: str) -> None:
    check_name(name)
    path = tag_path(catalog, name, check_tag(label))
    if not catalog.fs.exists(path):
        raise SkycurateError(f"{name} has no tag {label!r} (tags: {', '.join(sorted(tags(catalog, name))) or 'none'})")
    catalog.fs.rm(path)


def tags(catalog: Catalog, name: str) -> dict[str, str]:
    """``{label: version}`` of ``name``."""
    folder = catalog._path(name, TAGS_DIR)
    try:
        paths = catalog.fs.ls(folder, detail=False)
    except FileNotFoundError:
        return {}
    return {posixpath.basename(p): catalog.fs.cat_file(p).decode().strip() for p in paths}


def tag_version(catalog: Catalog, name: str, label: str) -> str | None:
    """The version ``label`` points at, or None when there is no such tag."""
    try:
        return catalog.fs.cat_file(tag_path(catalog, name, label)).decode().strip()
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------------------------ gc


@dataclass
class GcItem:
    path: str
    bytes: int
    why: str


@dataclass
class GcPlan:
    versions: list[GcItem] = field(default_factory=list)       # name@version, its size, why it may go
    leftovers: list[GcItem] = field(default_factory=list)      # staging/scratch/orphan folders
    kept: dict[str, str] = field(default_factory=dict)          # name@version -> why it stays (for --dry-run)

    @property
    def bytes(self) -> int:
        return sum(i.bytes for i in self.versions) + sum(i.bytes for i in self.leftovers)


def _age(created_at: str, now: dt.datetime) -> dt.timedelta:
    return now - dt.datetime.fromisoformat(created_at.replace("Z", "+00:00"))


def _size(catalog: Catalog, path: str) -> int:
    try:
        return int(catalog.fs.du(path, total=True))
    except (FileNotFoundError, OSError):
        return 0


def plan_gc(catalog: Catalog, keep: int = 3, older_than: dt.timedelta | None = None,
            now: dt.datetime | None = None, intermediates: tuple[str, ...] = ()) -> GcPlan:
    """What a gc with these settings deletes (see the module docstring); deletes nothing.
    ``intermediates``: datasets of which only the newest (and tagged) versions stay, parents or not."""
    if keep < 1:
        raise SkycurateError("--keep must be at least 1: the newest version of a dataset is never deleted")
    now = now or dt.datetime.now(dt.timezone.utc)
    plan = GcPlan()
    manifests = {}
    for name in catalog.names():
        for version in catalog.versions(name):
            manifests[(name, version)] = catalog.manifest(f"{name}@{version}")
    stays: dict[tuple[str, str], str] = {}
    for name in {n for n, _ in manifests}:
        versions = catalog.versions(name)
        tagged = {v: t for t, v in tags(catalog, name).items()}
        for i, version in enumerate(versions):
            if i >= len(versions) - keep:
                stays[(name, version)] = "latest" if i == len(versions) - 1 else f"among the newest {keep}"
            elif version in tagged:
                stays[(name, version)] = f"tagged {tagged[version]}"
            elif older_than is not None and _age(manifests[(name, version)].created_at, now) < older_than:
                stays[(name, version)] = f"younger than {older_than}"
    for name in intermediates:   # only the newest and tagged versions of a stage dataset
        versions = catalog.versions(name) if name in {n for n, _ in manifests} else []
        tagged = {v for v in tags(catalog, name).values()}
        for version in versions[:-1]:
            if version not in tagged:
                stays.pop((name, version), None)
    todo = list(stays)
    while todo:   # parents of what stays stay, across datasets
        key = todo.pop()
        for p in manifests[key].parents:
            pkey = (p.name, p.version)
            if p.version and pkey in manifests and pkey not in stays and p.name not in intermediates:
                stays[pkey] = f"parent of {key[0]}@{key[1]}"
                todo.append(pkey)
    plan.kept = {f"{n}@{v}": why for (n, v), why in sorted(stays.items())}
    for (name, version), m in sorted(manifests.items(), key=lambda kv: (kv[0][0], version_number(kv[0][1]))):
        if (name, version) not in stays:
            why = f"not among the newest {keep}, not tagged, no kept version depends on it"
            plan.versions.append(GcItem(f"{name}@{version}", m.num_bytes, why))
    plan.leftovers = _leftovers(catalog, now) + _stale_work(catalog, now, older_than)
    return plan


def _leftovers(catalog: Catalog, now: dt.datetime) -> list[GcItem]:
    """Staging and scratch entries of runs that died more than a day ago; manifest-less version folders."""
    out = []
    cutoff = now - LEFTOVER_AGE
    fs = catalog.fs

    def stamp(info: dict) -> dt.datetime | None:
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
        if mtime is None:
            return None
        t = mtime if isinstance(mtime, dt.datetime) else dt.datetime.fromtimestamp(float(mtime), dt.timezone.utc)
        return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)

    def old(path: str) -> bool:
        """Untouched for a day; on object stores, whose folders have no time, by their newest file."""
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return False
        if (t := stamp(info)) is not None:
            return t < cutoff
        if info.get("type") != "directory":
            return False
        times = [t for f in fs.find(path, detail=True).values() if (t := stamp(f)) is not None]
        return bool(times) and max(times) < cutoff

    scratch = catalog._path(catalog.SCRATCH_DIR)
    for p in _ls(catalog, scratch):
        if old(p):
            out.append(GcItem(posixpath.relpath(p, catalog.root), _size(catalog, p), "scratch of a dead run"))
    for ns in _ls(catalog, catalog.root):
        if posixpath.basename(ns).startswith("_"):
            continue
        for base in _ls(catalog, ns):
            for p in _ls(catalog, posixpath.join(base, "_staging")):
                if old(p):
                    out.append(GcItem(posixpath.relpath(p, catalog.root), _size(catalog, p), "staging of a dead run"))
            for p in _ls(catalog, base):
                v = posixpath.basename(p)
                if VERSION_RE.match(v) and not fs.exists(posixpath.join(p, "_manifest.json")) and old(p):
                    out.append(GcItem(posixpath.relpath(p, catalog.root), _size(catalog, p),
                                      "version folder without a manifest (a commit or gc that died)"))
    return out


def _stale_work(catalog: Catalog, now: dt.datetime, older_than: dt.timedelta | None) -> list[GcItem]:
    """Work folders (resume journals, logs: ``_work/<ns>/<run key>``) untouched for ``older_than``:
    the runs they could resume are that old. Only with ``--older-than``; local stores only."""
    if older_than is None or not catalog.is_local:
        return []
    out = []
    for ns in _ls(catalog, catalog._path(catalog.WORK_DIR)):
        for run in _ls(catalog, ns):
            newest = max((p.stat().st_mtime for p in Path(run).rglob("*")), default=Path(run).stat().st_mtime)
            if dt.datetime.fromtimestamp(newest, dt.timezone.utc) < now - older_than:
                out.append(GcItem(posixpath.relpath(run, catalog.root), _size(catalog, run),
                                  f"work folder of a run untouched for {older_than.days}d"))
    return out


def _ls(catalog: Catalog, folder: str) -> list[str]:
    try:
        return [p for p in catalog.fs.ls(folder, detail=False) if catalog.fs.isdir(p)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def run_gc(catalog: Catalog, plan: GcPlan) -> int:
    """Delete what ``plan`` lists: each version's manifest first (it disappears at once), then its
    folder; then the leftovers. Returns the bytes freed."""
    for item in plan.versions:
        name, version = item.path.split("@")
        folder = catalog._path(name, version)
        catalog.fs.rm(posixpath.join(folder, "_manifest.json"))
        catalog.fs.rm(folder, recursive=True)
    for item in plan.leftovers:
        catalog.fs.rm(catalog._path(item.path), recursive=True)
    return plan.bytes


def parse_age(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``2w`` -> a timedelta (one clear error otherwise)."""
    m = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", text or "")
    if not m:
        raise SkycurateError(f"--older-than {text!r}: use a number and a unit, e.g. 30d, 12h or 2w")
    n, unit = int(m.group(1)), m.group(2)
    return {"h": dt.timedelta(hours=n), "d": dt.timedelta(days=n), "w": dt.timedelta(weeks=n)}[unit]
