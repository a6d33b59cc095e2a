"""Pinned inputs: what a run read from outside the catalog, pinned two ways at once.

A pin is a task parameter (so a changed input changes Prefect's cache key and the stage runs
again) and a lineage ``Parent`` (so ``datasets show`` / ``datasets lineage`` say exactly what was
read). One type per kind of input, each with one ``parent()``:

* ``FilePin``: a file pinned by content (sha256): configs, blocklists, models, benchmark and
  prompt files, patch exports. The hash goes into ``Parent.sha256``.
* ``CrawlFilePin``: a crawl file pinned by size and mtime (hashing a whole crawl would cost a
  full read of it); ``Parent.pin`` says so.
* ``ModelFolderPin``: a model folder pinned by its files' names, sizes and mtimes and the hash
  of its ``config.json`` (hashing multi-GB weights would cost more than the work).
* ``RepoPin``: a git repository pinned by a hash of all its refs.

Catalog inputs (other dataset versions) are ``DatasetRef``s and need no pin.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel

from skycurate.catalog.manifest import Parent
from skycurate.catalog.writers import sha256_file
from skycurate.errors import SkycurateError


class FilePin(BaseModel):
    """A file pinned by content; ``label`` is a stable, machine-independent name when it has one."""

    path: str
    sha256: str
    label: str | None = None

    def parent(self, name: str | None = None) -> Parent:
        return Parent(name=name or self.label or Path(self.path).name, uri=self.path, sha256=self.sha256)


def pin_file(path: str | os.PathLike | None, label: str | None = None) -> FilePin | None:
    """``path`` pinned by its sha256 (None stays None: an optional file not configured)."""
    if path is None:
        return None
    return FilePin(path=str(Path(path).resolve()), sha256=sha256_file(path), label=label)


class CrawlFilePin(BaseModel):
    """An input file of a crawl, pinned by size and mtime; ``kind`` says which reader reads it."""

    path: str
    label: str
    kind: str
    size: int
    mtime_ns: int

    def parent(self) -> Parent:
        return Parent(name=self.label, uri=self.path, pin=f"size={self.size} mtime_ns={self.mtime_ns}")


def pin_crawl_file(path: str, label: str, kind: str) -> CrawlFilePin:
    st = os.stat(path)
    return CrawlFilePin(path=str(Path(path).resolve()), label=label, kind=kind, size=st.st_size,
                        mtime_ns=st.st_mtime_ns)


class ModelFolderPin(BaseModel):
    """A model folder: its files by (name, size, mtime_ns), and the sha256 of ``config.json``."""

    path: str
    files: list[tuple[str, int, int]]
    config_sha256: str | None

    def parent(self, name: str) -> Parent:
        return Parent(name=name, uri=self.path,
                      pin=f"config.json sha256={self.config_sha256}; {len(self.files)} files by size and mtime")


def pin_model_folder(path: str) -> ModelFolderPin:
    folder = Path(path)
    if not folder.is_dir():
        raise SkycurateError(f"model folder not found: {path}")
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    config = folder / "config.json"
    digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None
    return ModelFolderPin(path=str(folder.resolve()), files=files, config_sha256=digest)


class RepoPin(BaseModel):
    """A repository as given (``spec``), its name, and a hash of every ref (None: it could not be read)."""

    spec: str
    name: str
    head: str | None

    def parent(self) -> Parent:
        return Parent(name=f"repo:{self.name}", uri=self.spec, pin=f"refs={self.head}")
