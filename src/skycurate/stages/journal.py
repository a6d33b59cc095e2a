"""The journal of a resumable job: one JSON file per finished unit of work, keyed by a hash of
everything that decides its result.

A killed run leaves the finished units on disk; the rerun reads them back instead of redoing
them (SWE instance validation, candidate patch checks). Each entry is written atomically, so a
reader sees a whole result or none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skycurate.localfs import remove_dead_temporaries, write_atomic


class Journal:
    """``<folder>/<key>.json`` per finished unit; ``get`` answers None for unfinished ones."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_dead_temporaries(self.folder)   # half-written entries of a killed run

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad journal key {key!r}")
        return self.folder / f"{key}.json"

    def get(self, key: str) -> Any | None:
        path = self._path(key)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def put(self, key: str, value: Any) -> None:
        write_atomic(self._path(key), json.dumps(value, default=str))
