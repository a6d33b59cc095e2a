"""The versioned dataset store: publish, resolve, open, lineage, verify.

Layout (docs/architecture.md)::

    <store>/<ns>/<name>/v0001/part-00000.parquet ...
    <store>/<ns>/<name>/v0001/_manifest.json
    <store>/<ns>/<name>/_latest            # text: v0001

Publishing protocol, chosen so that a crash never leaves a visible partial version
and two publishers never share a version number:

1. files are written into ``_staging/<token>/`` (invisible to readers);
2. a version number is *claimed*: locally by creating ``_claims/vNNNN`` with ``O_EXCL``; on other
   stores, which may not honour exclusive creation, by writing ``_claims/vNNNN.<token>`` and then
   listing: the claim wins only if it is the only one for that number (with read-after-write
   consistent listing, as S3 and its peers give, two claims cannot both see themselves alone).
   A loser leaves its claim in place (a gap) and tries the next number;
3. local stores: the manifest goes into the staging folder, which is renamed to
   ``vNNNN`` in one atomic ``rename``; other fsspec stores: files are moved into
   ``vNNNN/`` and the manifest is written last, so it is the commit point;
4. ``_latest`` is rewritten (atomically) until it names the highest visible version.

A version is visible when ``vNNNN/_manifest.json`` exists. A crash before step 3 leaves
only a staging folder (swept after a day) and perhaps a claim, i.e. a gap in numbering.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import logging
import os
import posixpath
import random
import time
import re
import contextlib
import shutil
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import fsspec
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, Field

from skycurate.catalog.manifest import (CARD_FILE, MANIFEST_FILE, Attachment, Manifest, Parent, Producer,
                                        check_attachment_name, schema_to_json)
from skycurate.catalog.refs import LATEST, VERSION_RE, DatasetRef, check_name, parse_ref, version_label, version_number
from skycurate.catalog.writers import (DEFAULT_MAX_ROWS_PER_FILE, count_rows, describe_file, hash_file, read_schema,
                                       spark_reaches, spark_url, write_into)
from skycurate import faults
from skycurate.errors import DatasetNotFound, PublishError, SkycurateError, StoreError
from skycurate.localfs import fsync_folder, fsync_tree, write_atomic
from skycurate.redact import redact_obj

if TYPE_CHECKING:
    from skycurate.catalog.cards import CardOptions

log = logging.getLogger(__name__)

STORE_ENV = "SKYCURATE_STORE"
DEFAULT_STORE = "./store"
LATEST_FILE = "_latest"
STAGING_DIR = "_staging"
CLAIMS_DIR = "_claims"
STAGING_MAX_AGE = dt.timedelta(days=1)
_VERSION_DIR = re.compile(r"^v\d{4,}$")


def default_store() -> str:
    return os.environ.get(STORE_ENV) or DEFAULT_STORE


def normalize_store(store: str | os.PathLike | None) -> str:
    """Absolute local path, or the URL as given (``memory://x``, ``s3://bucket/prefix``)."""
    text = os.fspath(store) if store is not None else default_store()
    if "://" in text or "::" in text:
        return text.rstrip("/")
    return os.path.abspath(os.path.expanduser(text))


class VerifyReport(BaseModel):
    dataset: str
    ok: bool
    files_checked: int
    rows: int
    problems: list[str] = Field(default_factory=list)


class LineageNode(BaseModel):
    """One input in a lineage tree: a dataset version, or an external file pinned by hash."""

    name: str
    version: str | None = None
    uri: str | None = None
    sha256: str | None = None
    pin: str | None = None
    num_rows: int | None = None
    missing: bool = False
    parents: list["LineageNode"] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


class DatasetSummary(BaseModel):
    name: str
    latest: str
    versions: int
    num_rows: int
    num_bytes: int
    created_at: str


def _now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _coerce_parent(catalog: "Catalog", parent: Any) -> Parent:
    if isinstance(parent, Parent):
        return parent
    if isinstance(parent, DatasetRef):
        return Parent(name=parent.name, version=parent.version)
    if isinstance(parent, str):
        ref = catalog.resolve(parent)
        return Parent(name=ref.name, version=ref.version)
    if isinstance(parent, dict):
        return Parent.model_validate(parent)
    raise PublishError(f"bad parent {parent!r}: pass a DatasetRef, 'ns/name@vNNNN' or a Parent")


def _without_secrets(parent: Parent) -> Parent:
    """A parent as recorded: credentials out of its name, URI and pin (a manifest lives forever and
    is read by anyone who can read the data); its version and sha256 are kept as they are."""
    return parent.model_copy(update=redact_obj({"name": parent.name, "uri": parent.uri, "pin": parent.pin}))



class _Staged(NamedTuple):
    """A version written and claimed in an ``all_or_nothing`` block, not yet visible."""

    base: str
    staging: str
    version: str
    manifest: Manifest

class Catalog:
    """A store of versioned Parquet datasets at a local path or any fsspec URL."""

    def __init__(self, store: str | os.PathLike | None = None):
        self.url = normalize_store(store)
        try:
            self.fs, self.root = url_to_fs(self.url)
        except (ValueError, ImportError) as e:
            raise StoreError(f"cannot open store {self.url}: {e}") from None
        self.root = self.root.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self._pending: dict[tuple[str, str], _Staged] | None = None  # inside ``all_or_nothing``

    def __repr__(self) -> str:
        return f"Catalog({self.url!r})"

    # ---- paths ---------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _ref(self, name: str, version: str) -> DatasetRef:
        return DatasetRef(store=self.url, name=name, version=version)

    def file_paths(self, ref: str | DatasetRef) -> list[str]:
        """Paths (within this store's filesystem) of the version's Parquet files, in manifest order."""
        ref = self.resolve(ref)
        return [self._path(ref.name, ref.version, f.path) for f in self.manifest(ref).files]

    def attachment(self, ref: str | DatasetRef, name: str) -> bytes:
        """The bytes of a file attached to a published version (e.g. its ``_funnel.png``)."""
        ref = self.resolve(ref)
        if name not in {a.path for a in self.manifest(ref).attachments}:
            raise DatasetNotFound(f"{ref.label} has no attachment {name!r}")
        return self.fs.cat_file(self._path(ref.name, ref.version, name))

    WORK_DIR, CACHE_DIR = "_work", "_cache"

    def work_dir(self, *parts: str) -> Path:
        """A local folder for a job's resumable journal (finished shards, results, logs).

        Journals are plain local files that are appended to one by one, which object stores do
        badly; so for a local store they live inside it (``<store>/_work/...``, deleted with it),
        and for a remote store under ``$SKYCURATE_WORK_DIR`` (default ``~/.cache/skycurate/work``)
        in a folder named after the store. A rerun on the same machine resumes from it.
        """
        return self._local_dir(self.WORK_DIR, "SKYCURATE_WORK_DIR", parts)

    def cache_dir(self, *parts: str) -> Path:
        """Like ``work_dir`` for caches that outlive one run (e.g. git clones): ``<store>/_cache/...``
        locally, ``$SKYCURATE_CACHE_DIR`` (default ``~/.cache/skycurate/cache``) for remote stores."""
        return self._local_dir(self.CACHE_DIR, "SKYCURATE_CACHE_DIR", parts)

    def _local_dir(self, kind: str, env: str, parts: tuple[str, ...]) -> Path:
        for p in parts:
            if not p or p in (".", "..") or "/" in p or "\\" in p:
                raise ValueError(f"bad {kind} folder part {p!r}")
        if self.is_local:
            return Path(self.root, kind, *parts)
        home = os.environ.get(env) or os.path.join(os.path.expanduser("~"), ".cache", "skycurate", kind.strip("_"))
        store_key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        return Path(home, store_key, *parts)

    # ---- reading -------------------------------------------------------------------------
    def _check_readable(self) -> None:
        try:
            ok = self.fs.isdir(self.root)
        except Exception as e:  # noqa: BLE001 - any backend error means "cannot read"
            raise StoreError(f"cannot read store {self.url}: {e}") from None
        if not ok:
            raise StoreError(f"store {self.url} does not exist or is not a folder "
                             f"(set --store or {STORE_ENV})")

    def versions(self, name: str) -> list[str]:
        """Visible versions of ``name``, oldest first."""
        check_name(name)
        base = self._path(name)
        self._forget_listings(base)
        try:
            manifests = self.fs.glob(posixpath.join(base, "v*", MANIFEST_FILE))
        except FileNotFoundError:
            return []
        except Exception as e:  # noqa: BLE001
            raise StoreError(f"cannot list {self.url}/{name}: {e}") from None
        found = {posixpath.basename(posixpath.dirname(p)) for p in manifests}
        return sorted((v for v in found if _VERSION_DIR.match(v)), key=version_number)

    def names(self) -> list[str]:
        """Every dataset name with at least one visible version."""
        self._check_readable()
        self._forget_listings()
        pattern = posixpath.join(self.root, "*", "*", "v*", MANIFEST_FILE)
        names = set()
        for p in self.fs.glob(pattern):
            rel = posixpath.relpath(p, self.root).split("/")
            if len(rel) == 4 and _VERSION_DIR.match(rel[2]):
                names.add(f"{rel[0]}/{rel[1]}")
        return sorted(names)

    def resolve(self, ref: str | DatasetRef) -> DatasetRef:
        """``ns/name@latest`` / ``ns/name@v0003`` / ``ns/name`` -> a concrete DatasetRef."""
        if isinstance(ref, DatasetRef):
            if ref.store != self.url:
                return Catalog(ref.store).resolve(ref)
            name, version = ref.name, ref.version
        else:
            name, version = parse_ref(ref)
        if version == LATEST:
            versions = self.versions(name)
            if not versions:
                raise DatasetNotFound(self._not_found_message(name))
            return self._ref(name, versions[-1])
        if not VERSION_RE.match(version):   # a tag
            from skycurate.catalog.retention import tag_version, tags

            tagged = tag_version(self, name, version)
            if tagged is None:
                known = ", ".join(sorted(tags(self, name))) or "none"
                if not self.versions(name):
                    raise DatasetNotFound(self._not_found_message(name))
                raise DatasetNotFound(f"{name} has no tag {version!r} in {self.url} (tags: {known})")
            version = tagged
        if not self.fs.exists(self._path(name, version, MANIFEST_FILE)):
            versions = self.versions(name)
            if not versions:
                raise DatasetNotFound(self._not_found_message(name))
            raise DatasetNotFound(f"{name} has no version {version} in {self.url} "
                                  f"(versions: {', '.join(versions)})")
        return self._ref(name, version)

    def _not_found_message(self, name: str) -> str:
        self._check_readable()
        known = self.names()
        hint = f" (known: {', '.join(known[:10])}{', ...' if len(known) > 10 else ''})" if known else \
            " (the store is empty)"
        return f"unknown dataset {name!r} in store {self.url}{hint}"

    def exists(self, ref: str | DatasetRef) -> bool:
        try:
            self.resolve(ref)
            return True
        except DatasetNotFound:
            return False

    def manifest(self, ref: str | DatasetRef) -> Manifest:
        if self._pending and isinstance(ref, DatasetRef) and (ref.name, ref.version) in self._pending:
            return self._pending[(ref.name, ref.version)].manifest  # staged in this all_or_nothing block
        ref = self.resolve(ref)
        return _read_manifest(self.fs, self._path(ref.name, ref.version, MANIFEST_FILE))

    def open(self, ref: str | DatasetRef) -> pads.Dataset:
        """A ``pyarrow.dataset.Dataset`` over exactly the files listed in the manifest."""
        paths = self.file_paths(ref)
        filesystem = pafs.LocalFileSystem() if self.is_local else \
            pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        return pads.dataset(paths, format="parquet", filesystem=filesystem)

    def lineage(self, ref: str | DatasetRef) -> LineageNode:
        """The tree of inputs of a version, walking manifests' ``parents`` recursively."""
        ref = self.resolve(ref)
        return self._lineage(ref.name, ref.version, seen=set())

    def _lineage(self, name: str, version: str, seen: set[str]) -> LineageNode:
        label = f"{name}@{version}"
        try:
            m = self.manifest(self._ref(name, version))
        except DatasetNotFound:
            return LineageNode(name=name, version=version, missing=True)
        node = LineageNode(name=name, version=version, num_rows=m.num_rows)
        if label in seen:  # a diamond: show the node once with its inputs, then as a leaf
            return node
        seen.add(label)
        node.parents = self.parent_nodes(m.parents, seen)
        return node

    def parent_nodes(self, parents: Iterable[Parent], seen: set[str] | None = None) -> list[LineageNode]:
        """The lineage trees of ``parents`` (dataset versions walked recursively, external inputs as leaves)."""
        seen = set() if seen is None else seen
        return [self._lineage(p.name, p.version, seen) if p.is_dataset else
                LineageNode(name=p.name, version=p.version, uri=p.uri, sha256=p.sha256, pin=p.pin) for p in parents]

    def arrow_schema(self, ref: str | DatasetRef) -> pa.Schema:
        """The Arrow schema of a version, from its first Parquet file's footer."""
        return read_schema(self.fs, self.file_paths(ref)[0])

    def verify(self, ref: str | DatasetRef,
               progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Re-hash every file and re-count rows against the manifest."""
        ref = self.resolve(ref)
        m = self.manifest(ref)
        folder = self._path(ref.name, ref.version)
        problems: list[str] = []
        total_rows = 0
        for i, entry in enumerate(m.files):
            path = posixpath.join(folder, entry.path)
            if not self.fs.exists(path):
                problems.append(f"{entry.path}: missing")
            else:
                sha256, size = hash_file(self.fs, path)
                if sha256 != entry.sha256:
                    problems.append(f"{entry.path}: sha256 {sha256[:12]}... != manifest {entry.sha256[:12]}...")
                if size != entry.bytes:
                    problems.append(f"{entry.path}: {size} bytes != manifest {entry.bytes}")
                try:
                    rows = count_rows(self.fs, path)
                except Exception as e:  # noqa: BLE001 - a corrupt file must be reported, not raised
                    problems.append(f"{entry.path}: unreadable Parquet footer ({type(e).__name__}: {e})")
                else:
                    total_rows += rows
                    if rows != entry.rows:
                        problems.append(f"{entry.path}: {rows} rows != manifest {entry.rows}")
            if progress:
                progress(i + 1, len(m.files))
        for att in m.attachments:
            path = posixpath.join(folder, att.path)
            if not self.fs.exists(path):
                problems.append(f"{att.path}: missing")
            elif hash_file(self.fs, path)[0] != att.sha256:
                problems.append(f"{att.path}: sha256 differs from the manifest")
        listed = {f.path for f in m.files}
        for p in self.fs.find(folder):
            rel = posixpath.relpath(p, folder)
            if rel.endswith(".parquet") and rel not in listed:
                problems.append(f"{rel}: not in the manifest")
        if not problems and total_rows != m.num_rows:
            problems.append(f"files hold {total_rows} rows, manifest says {m.num_rows}")
        return VerifyReport(dataset=ref.label, ok=not problems, files_checked=len(m.files),
                            rows=total_rows, problems=problems)

    def summaries(self) -> list[DatasetSummary]:
        out = []
        for name in self.names():
            versions = self.versions(name)
            m = self.manifest(self._ref(name, versions[-1]))
            out.append(DatasetSummary(name=name, latest=versions[-1], versions=len(versions),
                                      num_rows=m.num_rows, num_bytes=m.num_bytes, created_at=m.created_at))
        return out

    # ---- publishing ----------------------------------------------------------------------
    def ensure_writable(self) -> None:
        """Create the store root if needed; a clear error now beats one mid-flow."""
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except Exception as e:  # noqa: BLE001
            raise StoreError(f"cannot write to store {self.url}: {e}") from None

    SCRATCH_DIR = "_scratch"

    @contextlib.contextmanager
    def scratch(self, purpose: str) -> Iterator[str]:
        """A private folder under ``<store>/_scratch`` for a job's intermediate Parquet, as a Spark URL.

        Lets a job write one pass once and publish several datasets from it without caching the
        pass in executor memory; the folder is removed on exit, and it is never a dataset.
        """
        check_name(f"scratch/{purpose}")
        folder = f"{purpose}-{_owner_suffix()}"
        if not self._spark_reaches_store():  # on the driver's disk, under the work folder
            local = self.work_dir("scratch", folder)
            local.mkdir(parents=True)
            for other in local.parent.iterdir():
                if _owner_dead(other.name):
                    shutil.rmtree(other, ignore_errors=True)
            try:
                yield "file://" + str(local)
            finally:
                shutil.rmtree(local, ignore_errors=True)
            return
        path = self._path(self.SCRATCH_DIR, folder)
        self._sweep_dead_owners(self._path(self.SCRATCH_DIR))
        self._makedirs(path)
        try:
            yield spark_url(self.fs, path)
        finally:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
            self._remove_if_empty(self._path(self.SCRATCH_DIR))

    def _spark_reaches_store(self) -> bool:
        if self.is_local:
            return True
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        return spark is not None and spark_reaches(spark, self.fs)

    def local_files(self, ref: str | DatasetRef) -> list[str]:
        """Local paths of a version's Parquet files, for readers that cannot reach the store (Spark without
        an object-store connector): the files themselves for a local store, else copies checked against
        the manifest's sha256 in the cache folder, named by content so reruns and versions share them."""
        ref = self.resolve(ref)
        if self.is_local:
            return self.file_paths(ref)
        paths = []
        for entry in self.manifest(ref).files:
            dest = self.cache_dir("files", entry.sha256[:2]) / f"{entry.sha256}.parquet"
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
                try:
                    self.fs.get_file(self._path(ref.name, ref.version, entry.path), str(tmp))
                    if hash_file(LocalFileSystem(), str(tmp))[0] != entry.sha256:
                        raise StoreError(f"{ref.label}/{entry.path} differs from its manifest's sha256 "
                                         f"(run `skycurate datasets verify {ref.label}`)")
                    os.replace(tmp, dest)
                finally:
                    tmp.unlink(missing_ok=True)
            paths.append(str(dest))
        return paths

    def publish(self, name: str, data: Any, parents: Iterable[Any] = (), producer: Producer | dict | None = None,
                stats: dict[str, Any] | Callable[[int], dict[str, Any]] | None = None, *, schema: pa.Schema | None = None,
                max_rows_per_file: int = DEFAULT_MAX_ROWS_PER_FILE,
                attachments: dict[str, bytes] | None = None, card: CardOptions | bool | None = None) -> DatasetRef:
        """Write ``data`` as a new immutable version of ``name`` and return its reference.

        ``stats`` may be a callable given the number of rows written: it runs before the
        commit, so counts can go into the manifest without a second pass over the data,
        and an exception from it (e.g. counts that do not reconcile) publishes nothing.
        ``attachments`` (name -> bytes, names starting with ``_``) are stored next to the
        manifest and checked by ``verify``, e.g. a funnel chart.
        ``card`` adds a dataset card (``README.md``, ``catalog.cards``) to the version: True or
        ``CardOptions`` for one, False for none; None (the default) follows the producer config's
        ``card`` section (``card: {enabled: true}`` in a flow config), so every flow can ask for cards.
        """
        check_name(name)
        parent_list = [_without_secrets(_coerce_parent(self, p)) for p in parents]
        producer = Producer.model_validate(producer) if isinstance(producer, dict) else (producer or Producer())
        producer = producer.model_copy(update={"config": redact_obj(producer.config)})  # no credentials recorded
        base = self._path(name)
        token = f"{_now_utc():%Y%m%dT%H%M%SZ}-{_owner_suffix()}"
        staging = posixpath.join(base, STAGING_DIR, token)
        try:
            self._makedirs(staging)
        except Exception as e:  # noqa: BLE001
            raise StoreError(f"cannot write to store {self.url}: {e}") from None
        self._sweep_staging(base)
        deferred = committed = False
        try:
            write_into(self.fs, staging, data, schema=schema, max_rows_per_file=max_rows_per_file)
            parts = sorted(p for p in self.fs.ls(staging, detail=False) if p.endswith(".parquet"))
            files = [describe_file(self.fs, p, posixpath.basename(p)) for p in parts]
            arrow_schema = read_schema(self.fs, parts[0])
            attached = []
            for att_name, payload in (attachments or {}).items():
                try:
                    check_attachment_name(att_name)
                except ValueError as e:
                    raise PublishError(str(e)) from None
                self.fs.pipe_file(posixpath.join(staging, att_name), payload)
                attached.append(Attachment(path=att_name, bytes=len(payload),
                                           sha256=hashlib.sha256(payload).hexdigest()))
            num_rows = sum(f.rows for f in files)
            stats_dict = redact_obj(stats(num_rows) if callable(stats) else (stats or {}))
            faults.point(f"publish:{name}:written")
            number = self._claim_version(base, token)
            faults.point(f"publish:{name}:claimed")
            version = version_label(number)
            manifest = Manifest(
                name=name, version=version, created_at=_now_utc().isoformat(timespec="microseconds"),
                num_rows=num_rows, num_bytes=sum(f.bytes for f in files),
                schema=schema_to_json(arrow_schema), files=files, attachments=attached, parents=parent_list,
                producer=producer, stats=stats_dict,
            )
            manifest = self._with_card(staging, manifest, arrow_schema, card)
            staged = _Staged(base, staging, version, manifest)
            if self._pending is not None:  # committed when the all_or_nothing block ends cleanly
                self._pending[(name, version)] = staged
                deferred = True
                return self._ref(name, version)
            self._commit_staged(name, staged)
            committed = True
        except SkycurateError:
            raise
        except Exception as e:
            raise PublishError(_publish_failure(name, self.url, e)) from e
        finally:
            if not deferred and not committed:
                self._drop_staging(staging)
                self._remove_if_empty(base)  # a failed first publish leaves no empty dataset folder
        return self._ref(name, version)

    @contextlib.contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """Publish the block's versions together: none becomes visible unless the block ends cleanly.

        Each ``publish`` in the block writes its files and claims its number (so its reference
        can already be a parent of the next one, and ``manifest`` answers for it), but commits
        only when the block exits without an exception. A reconciliation check that fails after
        the first publish (e.g. in the last one's ``stats``) then leaves no dataset behind:
        the staged files and claims are removed. Blocks do not nest.
        """
        if self._pending is not None:
            raise PublishError("all_or_nothing blocks do not nest")
        self._pending = {}
        try:
            yield
        except BaseException:
            pending, self._pending = self._pending, None
            for staged in pending.values():
                self._discard(staged)
            raise
        pending, self._pending = self._pending, None
        for (name, _), staged in pending.items():
            self._commit_staged(name, staged)

    def _with_card(self, staging: str, manifest: Manifest, schema: pa.Schema,
                   card: CardOptions | bool | None) -> Manifest:
        """``manifest`` with a card written into the staging folder, when one is asked for.

        A card is documentation: one that cannot be rendered is logged and left out (``skycurate
        datasets card`` writes it later), never a reason to lose the data of a publish."""
        if card is None or card is True:
            from skycurate.catalog.cards import CardOptions, publish_options

            options = publish_options(manifest.producer.config) if card is None else CardOptions()
        else:
            options = card or None
        if options is None or CARD_FILE in {a.path for a in manifest.attachments}:
            return manifest
        from skycurate.catalog.card_files import render_staged_card

        try:
            payload = render_staged_card(self, manifest, schema, options).encode()
        except Exception as e:  # noqa: BLE001 - see the docstring
            log.warning("%s@%s: no dataset card (%s: %s); write one with `skycurate datasets card`",
                        manifest.name, manifest.version, type(e).__name__, e)
            return manifest
        self.fs.pipe_file(posixpath.join(staging, CARD_FILE), payload)
        card_entry = Attachment(path=CARD_FILE, bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
        return manifest.model_copy(update={"attachments": [*manifest.attachments, card_entry]})

    def attach(self, ref: str | DatasetRef, name: str, payload: bytes, *, replace: bool = False) -> Attachment:
        """Add a file to a published version after the fact: a dataset card, a report made later.

        The version's data never changes: its files, rows, schema, parents, producer and stats stay as
        they are; only the manifest's ``attachments`` list gains the entry (with its sha256, so ``verify``
        checks it like any other file). ``replace`` rewrites an attachment of that name (a regenerated
        card); without it an existing one is an error. The file is written (atomically) before the
        manifest names it, so a crash leaves at most an unlisted file, never a listed missing one; two
        processes attaching to one version at once each re-read the manifest after writing it and add
        their entry again if the other's write dropped it (as ``_latest`` is kept right).
        """
        ref = self.resolve(ref)
        try:
            check_attachment_name(name)
        except ValueError as e:
            raise PublishError(str(e)) from None
        entry = Attachment(path=name, bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
        if not replace and name in {a.path for a in self.manifest(ref).attachments}:
            raise PublishError(f"{ref.label} already has an attachment {name!r}")
        folder = self._path(ref.name, ref.version)
        self._write_atomic(posixpath.join(folder, name), payload)
        for _ in range(20):
            m = self.manifest(ref)
            if entry in m.attachments:
                return entry
            kept = [a for a in m.attachments if a.path != name]
            updated = m.model_copy(update={"attachments": [*kept, entry]})
            self._write_atomic(posixpath.join(folder, MANIFEST_FILE), updated.to_json().encode())
        raise PublishError(f"could not record attachment {name!r} in the manifest of {ref.label}: "
                           "other writers kept replacing it")

    def _commit_staged(self, name: str, staged: "_Staged") -> None:
        """Make a staged version visible, drop its staging folder and move ``_latest``."""
        try:
            self._commit(staged.base, staged.staging, staged.version, staged.manifest)
        except SkycurateError:
            raise
        except Exception as e:
            raise PublishError(_publish_failure(name, self.url, e)) from e
        finally:
            self._drop_staging(staged.staging)
        self._update_latest(name)

    def _drop_staging(self, staging: str) -> None:
        if self.fs.exists(staging):
            self.fs.rm(staging, recursive=True)
        self._remove_if_empty(posixpath.dirname(staging))

    def _discard(self, staged: "_Staged") -> None:
        """Remove a staged version and release its claimed number."""
        self._drop_staging(staged.staging)
        claim = self._claim_path(posixpath.join(staged.base, CLAIMS_DIR), staged.version,
                                 posixpath.basename(staged.staging))
        if self.fs.exists(claim):
            self.fs.rm(claim)
        self._remove_if_empty(posixpath.dirname(claim))
        self._remove_if_empty(staged.base)  # a first version that never was leaves no folder

    def _claim_version(self, base: str, token: str) -> int:
        claims = posixpath.join(base, CLAIMS_DIR)
        self.fs.makedirs(claims, exist_ok=True)
        taken = [version_number(n.split(".", 1)[0]) for n in self._claim_names(claims)
                 if _VERSION_DIR.match(n.split(".", 1)[0])]
        taken += [version_number(v) for v in self.versions(self._name_of(base))]
        number = max(taken, default=0) + 1
        for attempt in range(1000):
            if self._try_claim(claims, version_label(number), token):
                return number
            number += 1
            if not self.is_local:  # two claims that met will both lose: jitter so the next round differs
                time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 10)))
        raise PublishError(f"could not claim a version number under {claims} after 1000 tries")

    def _claim_names(self, claims: str) -> list[str]:
        self._forget_listings(claims)
        try:
            return [posixpath.basename(p) for p in self.fs.ls(claims, detail=False)]
        except FileNotFoundError:
            return []

    def _try_claim(self, claims: str, version: str, token: str) -> bool:
        """Claim ``version`` for the publisher ``token``; False if another publisher has it."""
        if self.is_local:
            try:
                with self.fs.open(posixpath.join(claims, version), "xb") as f:
                    f.write(token.encode())
                return True
            except FileExistsError:
                return False
        self.fs.pipe_file(self._claim_path(claims, version, token), token.encode())
        rivals = [n for n in self._claim_names(claims) if n.split(".", 1)[0] == version and n != f"{version}.{token}"]
        return not rivals and not self.fs.exists(posixpath.join(posixpath.dirname(claims), version, MANIFEST_FILE))

    def _claim_path(self, claims: str, version: str, token: str) -> str:
        return posixpath.join(claims, version if self.is_local else f"{version}.{token}")

    def _forget_listings(self, path: str | None = None) -> None:
        """Drop fsspec's cached listings: another process may have published since we looked."""
        if not self.is_local:
            self.fs.invalidate_cache(path)

    def _name_of(self, base: str) -> str:
        return posixpath.relpath(base, self.root)

    def _commit(self, base: str, staging: str, version: str, manifest: Manifest) -> None:
        final = posixpath.join(base, version)
        if self.is_local:
            self.fs.pipe_file(posixpath.join(staging, MANIFEST_FILE), manifest.to_json().encode())
            fsync_tree(staging)        # on disk before it becomes visible: a power loss leaves all or nothing
            os.rename(staging, final)  # atomic; fails if ``final`` exists and is not empty
            fsync_folder(base)
            return
        for f in [*manifest.files, *manifest.attachments]:
            self.fs.mv(posixpath.join(staging, f.path), posixpath.join(final, f.path))
        self.fs.pipe_file(posixpath.join(final, MANIFEST_FILE), manifest.to_json().encode())

    def _update_latest(self, name: str) -> None:
        """Point ``_latest`` at the highest visible version; re-check so a racing writer cannot win with an older one."""
        path = self._path(name, LATEST_FILE)
        for _ in range(20):
            best = self.versions(name)[-1]
            self._write_atomic(path, (best + "\n").encode())
            if self.versions(name)[-1] == best:
                return

    def _write_atomic(self, path: str, payload: bytes) -> None:
        if self.is_local:
            write_atomic(path, payload)
        else:
            self.fs.pipe_file(path, payload)  # a single put is atomic on object stores

    def _makedirs(self, path: str, attempts: int = 5) -> None:
        """``makedirs`` that survives a concurrent publisher removing a shared parent.

        Another publisher that finishes removes ``_staging``/``_scratch`` when it looks empty
        (``_remove_if_empty``); that can happen between our creating the parent and our
        creating the child inside it. The child then fails with ENOENT: create both again.
        """
        for attempt in range(attempts):
            try:
                self.fs.makedirs(path, exist_ok=True)
                return
            except FileNotFoundError:
                if attempt == attempts - 1:
                    raise

    def _remove_if_empty(self, folder: str) -> None:
        """Remove a local folder left empty; object stores have no folders to remove.

        Only ``rmdir`` is atomic about emptiness: listing and then deleting recursively (the
        only way on other fsspec stores) can wipe what a concurrent publisher wrote in between.
        """
        if not self.is_local:
            return
        try:
            os.rmdir(folder)  # fails harmlessly if a concurrent publisher is staging there
        except OSError:
            pass

    def _sweep_staging(self, base: str) -> None:
        """Remove staging folders of publishers that are gone: dead processes of this host at once,
        any other after a day (a process elsewhere cannot be asked whether it still runs)."""
        cutoff = _now_utc() - STAGING_MAX_AGE
        for p in self._sweep_dead_owners(posixpath.join(base, STAGING_DIR)):
            stamp = posixpath.basename(p).split("-", 1)[0]
            try:
                started = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
            except ValueError:
                continue
            if started < cutoff:
                self.fs.rm(p, recursive=True)

    def _sweep_dead_owners(self, folder: str) -> list[str]:
        """Remove the entries of ``folder`` whose owning process (``_owner_suffix``) has died; the rest."""
        try:
            entries = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        alive = []
        for p in entries:
            if _owner_dead(posixpath.basename(p)):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(p, recursive=True)
            else:
                alive.append(p)
        return alive

    def latest_pointer(self, name: str) -> str | None:
        """The text of ``_latest`` (for external readers); ``resolve`` lists versions instead."""
        try:
            return self.fs.cat_file(self._path(name, LATEST_FILE)).decode().strip()
        except FileNotFoundError:
            return None


def _publish_failure(name: str, store: str, e: Exception) -> str:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"publishing {name} failed: the store {store} is out of space; nothing was published ({e})"
    return f"publishing {name} failed: {type(e).__name__}: {e}"


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _owner_suffix() -> str:
    """``<pid>-<random>-<host>``: names a staging or scratch folder after the process that owns it."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}-{_HOST}"


def _owner_dead(name: str) -> bool:
    """Whether ``name`` (ending in ``_owner_suffix()``) belongs to a process of this host that has exited.

    That is how a rerun after a kill finds the staging and scratch of the run it replaces without
    waiting a day. A reused pid only delays that to the age rule."""
    parts = name.rsplit("-", 3)
    if len(parts) != 4 or parts[3] != _HOST or not parts[1].isdigit() or int(parts[1]) == os.getpid():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _read_manifest(fs: fsspec.AbstractFileSystem, path: str) -> Manifest:
    try:
        return Manifest.from_json(fs.cat_file(path))
    except FileNotFoundError:
        raise DatasetNotFound(f"no manifest at {path}") from None
