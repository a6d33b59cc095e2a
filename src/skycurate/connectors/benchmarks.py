"""Load benchmark items (train / test / reference splits) as Arrow tables of text.

A benchmark folder holds one or more files per split, named ``<split>.jsonl``,
``<split>.jsonl.gz``, ``<split>.parquet`` or ``<split>-<anything>.<ext>`` (Hugging Face shards
like ``test-00000-of-00001.parquet``); a single file is taken as ``test``. Unlike the corpus
readers, nothing is quarantined here: a benchmark is small and curated, so a bad line is an
error to fix, reported as one line naming the file, the line and the field.
"""

from __future__ import annotations

import gzip
import json
import re
import string
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from skycurate.catalog.manifest import Parent
from skycurate.catalog.pins import FilePin, pin_file
from skycurate.errors import SkycurateError
from skycurate.schemas.leakage import BENCHMARK_ITEM_SCHEMA, SPLITS, BenchmarkSpec

EXTENSIONS = (".jsonl.gz", ".jsonl", ".parquet")
DEFAULT_TEXT_FIELD = "text"


class BenchmarkError(SkycurateError):
    """A benchmark that cannot be loaded: missing, empty, or not in the shape its spec says."""


def _split_files(folder: Path, split: str) -> list[Path]:
    pattern = re.compile(rf"^{split}([-_.][^/]*)?$")
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        ext = next((e for e in EXTENSIONS if p.name.endswith(e)), None)
        if ext and pattern.match(p.name[:-len(ext)]):
            out.append(p)
    return out


def benchmark_files(spec: BenchmarkSpec) -> dict[str, list[Path]]:
    """split -> its files, for the splits the benchmark has."""
    path = Path(spec.path)
    if path.is_file():
        if not path.name.endswith(EXTENSIONS):
            raise BenchmarkError(f"benchmark {spec.name}: {path} is not .jsonl, .jsonl.gz or .parquet")
        return {"test": [path]}
    if not path.is_dir():
        raise BenchmarkError(f"benchmark {spec.name}: {path} does not exist")
    found = {s: files for s in SPLITS if (files := _split_files(path, s))}
    if not found:
        names = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
        raise BenchmarkError(f"benchmark {spec.name}: no train/test/reference .jsonl[.gz]/.parquet file in {path} "
                             f"(it holds {names})")
    return found


def _fields(rec: dict) -> str:
    return ", ".join(map(str, rec)) or "none"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class _Texts:
    """Turns one record into (item id, text) per the spec, with errors naming file and line."""

    def __init__(self, spec: BenchmarkSpec):
        self.spec = spec
        self.keys: list[str] = []
        if spec.template is not None:
            try:
                parsed = list(string.Formatter().parse(spec.template))
            except ValueError as e:
                raise BenchmarkError(f"benchmark {spec.name}: bad template {spec.template!r}: {e}") from None
            for _, key, _, _ in parsed:
                if key is None:
                    continue
                if key == "" or key.isdigit():
                    raise BenchmarkError(f"benchmark {spec.name}: template {spec.template!r} needs named keys "
                                         "like {question}")
                self.keys.append(re.split(r"[.\[]", key, maxsplit=1)[0])
        self.field = spec.text_field or DEFAULT_TEXT_FIELD

    def __call__(self, rec: dict, where: str, split: str, row: int) -> tuple[str, str]:
        name = self.spec.name
        if self.spec.template is not None:
            for key in self.keys:
                if key not in rec:
                    raise BenchmarkError(f"benchmark {name}: template key '{key}' is not a field of {where} "
                                         f"(fields: {_fields(rec)})")
            try:
                text = self.spec.template.format_map({k: "" if v is None else v for k, v in rec.items()})
            except (KeyError, IndexError, AttributeError, ValueError) as e:
                raise BenchmarkError(f"benchmark {name}: template {self.spec.template!r} fails on {where}: {e}") from None
        else:
            if self.field not in rec:
                hint = "" if self.spec.text_field else "; set text_field or template"
                raise BenchmarkError(f"benchmark {name}: no field '{self.field}' in {where} "
                                     f"(fields: {_fields(rec)}){hint}")
            value = rec[self.field]
            if value is None:
                raise BenchmarkError(f"benchmark {name}: field '{self.field}' is null in {where}")
            text = _as_text(value)
        if self.spec.id_field is None:
            return f"{split}-{row}", text
        if self.spec.id_field not in rec or rec[self.spec.id_field] is None:
            raise BenchmarkError(f"benchmark {name}: no id field '{self.spec.id_field}' in {where} "
                                 f"(fields: {_fields(rec)})")
        return _as_text(rec[self.spec.id_field]), text


def _jsonl_records(path: Path, name: str) -> Iterator[tuple[dict, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise BenchmarkError(f"benchmark {name}: {where} is not UTF-8 "
                                         f"(byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BenchmarkError(f"benchmark {name}: {where} is not valid JSON: {e.msg} "
                                         f"(column {e.colno})") from None
                except (ValueError, RecursionError) as e:   # an int of > 4300 digits; nesting too deep
                    reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(":")[0]
                    raise BenchmarkError(f"benchmark {name}: {where} is not valid JSON: {reason}") from None
                if not isinstance(rec, dict):
                    raise BenchmarkError(f"benchmark {name}: {where} is a JSON {type(rec).__name__}, "
                                         "not an object")
                yield rec, where
    except (OSError, EOFError) as e:
        raise BenchmarkError(f"benchmark {name}: cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


def _parquet_records(path: Path, name: str) -> Iterator[tuple[dict, str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise BenchmarkError(f"benchmark {name}: cannot read {path} as Parquet: {str(e).splitlines()[0]}") from None
    for i, rec in enumerate(table.to_pylist()):
        yield rec, f"{path} row {i}"


def _read_split(spec: BenchmarkSpec, split: str, files: list[Path]) -> pa.Table:
    to_text = _Texts(spec)
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, str] = {}
    for path in files:
        before = len(ids)
        records = _parquet_records(path, spec.name) if path.name.endswith(".parquet") else _jsonl_records(path, spec.name)
        for rec, where in records:
            item_id, text = to_text(rec, where, split, len(ids))
            if spec.id_field is not None:
                if item_id in seen:
                    raise BenchmarkError(f"benchmark {spec.name}: item id {item_id!r} of {where} "
                                         f"repeats {seen[item_id]}")
                seen[item_id] = where
            ids.append(item_id)
            texts.append(text)
        if len(ids) == before:
            raise BenchmarkError(f"benchmark {spec.name}: {path} is empty (no records)")
    n = len(ids)
    return pa.table({"benchmark": pa.array([spec.name] * n, pa.string()), "split": pa.array([split] * n, pa.string()),
                     "item_id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string())},
                    schema=BENCHMARK_ITEM_SCHEMA)


def load_benchmark(spec: BenchmarkSpec, splits: Sequence[str] | None = None) -> dict[str, pa.Table]:
    """split -> table (``benchmark, split, item_id, text``) for every split it has, or for ``splits``.

    A split in ``splits`` that the benchmark lacks is an error (decontaminating against a
    test split that is not there must not pass silently).
    """
    return {split: _read_split(spec, split, paths) for split, paths in _selected_files(spec, splits).items()}


def _selected_files(spec: BenchmarkSpec, splits: Sequence[str] | None) -> dict[str, list[Path]]:
    """split -> files for ``splits`` (every split when None); a missing or unknown split is an error."""
    files = benchmark_files(spec)
    if splits is not None:
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise BenchmarkError(f"benchmark {spec.name}: unknown split(s) {', '.join(unknown)} "
                                 f"(splits are {', '.join(SPLITS)})")
        missing = [s for s in splits if s not in files]
        if missing:
            how = ("a single file is taken as the test split" if Path(spec.path).is_file()
                   else f"found {', '.join(files)}")
            raise BenchmarkError(f"benchmark {spec.name}: no {'/'.join(missing)} split in {spec.path} ({how})")
        files = {s: files[s] for s in splits}
    return files


IMAGE_FIELDS = ("images", "image")


def _image_bytes(value: Any, folder: Path, name: str, where: str) -> bytes:
    """One image value: raw bytes, a Hugging Face ``{"bytes", "path"}`` struct, a base64 data URL, or a path
    (relative to the benchmark file's folder)."""
    import base64
    import binascii

    if isinstance(value, dict):
        if isinstance(value.get("bytes"), str):   # a struct written to JSON carries its bytes as base64
            value = {"bytes": f"data:;base64,{value['bytes']}"}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value.startswith("data:"):
        try:
            return base64.b64decode(value.split(",", 1)[1], validate=True)
        except (IndexError, binascii.Error):
            raise BenchmarkError(f"benchmark {name}: a data URL in {where} is not base64") from None
    if isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else folder / value
        try:
            return path.read_bytes()
        except OSError as e:
            raise BenchmarkError(f"benchmark {name}: image {value} of {where} cannot be read: "
                                 f"{e.strerror or e}") from None
    raise BenchmarkError(f"benchmark {name}: an image in {where} is a {type(value).__name__}, not bytes, a path "
                         "or a {bytes, path} struct")


def load_benchmark_images(spec: BenchmarkSpec, splits: Sequence[str] | None = None) -> list[bytes]:
    """The encoded images of the benchmark's items (``images`` or ``image`` field, one image or a list), for
    image decontamination; items without one are skipped, a benchmark without images gives []."""
    out: list[bytes] = []
    for paths in _selected_files(spec, splits).values():
        for path in paths:
            records = (_parquet_records(path, spec.name) if path.name.endswith(".parquet")
                       else _jsonl_records(path, spec.name))
            for rec, where in records:
                field = next((f for f in IMAGE_FIELDS if rec.get(f) is not None), None)
                if field is None:
                    continue
                values = rec[field] if isinstance(rec[field], list) else [rec[field]]
                out.extend(_image_bytes(v, path.parent, spec.name, where) for v in values if v is not None)
    return out


# benchmark -> split -> its files, each pinned by content (cache key and lineage)
BenchmarkPins = dict[str, dict[str, list[FilePin]]]


def pin_benchmarks(specs: Sequence[BenchmarkSpec]) -> BenchmarkPins:
    return {s.name: {split: [pin_file(p) for p in paths] for split, paths in benchmark_files(s).items()}
            for s in specs}


def benchmark_parents(pins: BenchmarkPins) -> list[Parent]:
    return [f.parent(f"benchmark:{bench}/{split}") for bench, splits in pins.items()
            for split, files in splits.items() for f in files]
