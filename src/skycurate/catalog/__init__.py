"""Versioned Parquet datasets: ``publish``, ``resolve``, ``open``, ``lineage``, ``verify``.

Module-level functions use the store named by ``store=``, else ``SKYCURATE_STORE``,
else ``./store``; a ``DatasetRef`` always carries its own store.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow.dataset as pads

from skycurate.catalog.manifest import FileEntry, Manifest, Parent, Producer
from skycurate.catalog.refs import DatasetRef, parse_ref
from skycurate.catalog.store import Catalog, LineageNode, VerifyReport, default_store, normalize_store

__all__ = [
    "Catalog", "DatasetRef", "FileEntry", "LineageNode", "Manifest", "Parent", "Producer", "VerifyReport",
    "default_store", "lineage", "manifest", "normalize_store", "open", "parse_ref", "publish", "resolve", "verify",
]

StoreArg = str | os.PathLike | None


def _catalog(ref: Any, store: StoreArg) -> Catalog:
    if isinstance(ref, DatasetRef) and store is None:
        return Catalog(ref.store)
    return Catalog(store)


def publish(name: str, data: Any, parents=(), producer: Producer | dict | None = None,
            stats: dict | None = None, *, store: StoreArg = None, **kwargs: Any) -> DatasetRef:
    return Catalog(store).publish(name, data, parents, producer, stats, **kwargs)


def resolve(ref: str | DatasetRef, *, store: StoreArg = None) -> DatasetRef:
    return _catalog(ref, store).resolve(ref)


def open(ref: str | DatasetRef, *, store: StoreArg = None) -> pads.Dataset:  # noqa: A001 - mirrors docs/architecture.md
    return _catalog(ref, store).open(ref)


def manifest(ref: str | DatasetRef, *, store: StoreArg = None) -> Manifest:
    return _catalog(ref, store).manifest(ref)


def lineage(ref: str | DatasetRef, *, store: StoreArg = None) -> LineageNode:
    return _catalog(ref, store).lineage(ref)


def verify(ref: str | DatasetRef, *, store: StoreArg = None) -> VerifyReport:
    return _catalog(ref, store).verify(ref)
