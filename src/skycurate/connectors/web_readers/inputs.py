"""Input discovery: which files a list of paths, folders and globs names, and what kind each one is.

Split from the readers: finding inputs (extensions, recursive folders, glob roots, stable labels, label
collisions) runs once on the driver, before any file is opened, and has nothing to do with how a file's
bytes are read. The label is what record ids are made from, so it must not depend on the machine.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from skycurate.errors import SkycurateError

log = logging.getLogger(__name__)

Kind = Literal["warc", "html", "jsonl", "parquet"]

# Longest suffix first; matched case-insensitively.
INPUT_SUFFIXES: tuple[tuple[str, Kind], ...] = (
    (".warc.gz", "warc"), (".warc.zst", "warc"), (".warc", "warc"),
    (".jsonl.gz", "jsonl"), (".jsonl.zst", "jsonl"), (".json.gz", "jsonl"), (".jsonl", "jsonl"),
    (".html", "html"), (".htm", "html"),
    (".parquet", "parquet"),
)


@dataclass(frozen=True)
class InputFile:
    path: str    # as found on this machine
    label: str   # stable across machines: path relative to the folder/glob root, or the file name
    kind: Kind
    size: int


@dataclass
class Discovery:
    files: list[InputFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files under folders/globs with an unknown extension


def input_kind(name: str) -> Kind | None:
    """The input kind a file name's extension says, or None."""
    low = name.lower()
    for suffix, kind in INPUT_SUFFIXES:
        if low.endswith(suffix):
            return kind
    return None


def _has_magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def _glob_root(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def _label(path: str, root: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def scan_inputs(patterns: list[str]) -> Discovery:
    """Like ``discover_inputs`` but also returns the files skipped for an unknown extension."""
    if not patterns:
        raise SkycurateError("no input given")
    found: dict[str, InputFile] = {}
    skipped: list[str] = []

    def add(path: str, label: str) -> bool:
        kind = input_kind(path)
        if kind is None:
            skipped.append(path)
            return False
        real = os.path.realpath(path)
        if real not in found:
            try:
                size = os.stat(path).st_size
            except OSError:
                size = 0  # read_input turns the unreadable file into a quarantine row
            found[real] = InputFile(path=path, label=label, kind=kind, size=size)
        return True

    def add_folder(folder: str, root: str) -> int:
        n = 0
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                n += add(str(p), _label(str(p), root))
            elif not p.is_dir():
                skipped.append(str(p))  # broken link, socket...
        return n

    for pattern in patterns:
        if not pattern:
            raise SkycurateError("empty input pattern")
        p = Path(pattern)
        if p.is_dir():
            if not add_folder(pattern, pattern):
                raise SkycurateError(f"input folder {pattern!r} holds no .warc[.gz], .html, .jsonl[.gz|.zst] "
                                     f"or .parquet file")
        elif p.is_file():
            if input_kind(p.name) is None:
                raise SkycurateError(f"input {pattern!r} has an unknown file type (expected "
                                     f"{', '.join(s for s, _ in INPUT_SUFFIXES)})")
            add(pattern, p.name)
        else:
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise SkycurateError(f"input {pattern!r} matches no file")
            root = _glob_root(pattern)
            n = 0
            for m in matches:
                if os.path.isdir(m):
                    n += add_folder(m, root)
                elif os.path.isfile(m):
                    n += add(m, _label(m, root))
            if not n:
                raise SkycurateError(f"input {pattern!r} matches no .warc[.gz], .html, .jsonl[.gz|.zst] "
                                     f"or .parquet file")
    files = sorted(found.values(), key=lambda f: (f.label, f.path))
    for a, b in zip(files, files[1:]):
        if a.label == b.label:
            raise SkycurateError(f"inputs {a.path!r} and {b.path!r} share the label {a.label!r}, so their record "
                                 f"ids would collide; pass their common parent folder instead")
    return Discovery(files=files, skipped=sorted(set(skipped)))


def discover_inputs(patterns: list[str]) -> list[InputFile]:
    """Input files named directly, found under folders (recursively) or matched by globs; sorted by label.

    A pattern that matches no readable input raises ``SkycurateError``. Files with unknown extensions
    inside folders or globs are skipped and logged (``scan_inputs`` returns them).
    """
    found = scan_inputs(patterns)
    if found.skipped:
        log.info("skipped %d file(s) with an unknown extension, e.g. %s", len(found.skipped), found.skipped[0])
    return found.files
