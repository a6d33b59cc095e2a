"""A benchmark's test split as evaluation items: each row, in its own layout, -> one canonical prompt.

The distillation prompt machinery maps and checks the rows (``prompt_layouts.to_canonical`` for
GSM8K, MATH / NuminaMath, MMLU / ARC, letter-option and canonical rows, images included;
``prompts.check_rows`` for missing answers, unknown answer types, images that do not decode), so a
benchmark item reaches a model as the same question text a distillation prompt would. A row that
fails is quarantined with its reason, never dropped; a line that is not JSON is such a row, not a
failed run. Pure Python over the files: a benchmark is thousands of rows, not a corpus.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from skycurate.connectors.benchmarks import BenchmarkError
from skycurate.schemas import cot as S
from skycurate.schemas.cot_prompts import PromptFields
from skycurate.schemas.evaluate import ALL, PROMPT_SCHEMA, QUARANTINE_SCHEMA, SUBJECT_COLUMNS
from skycurate.stages.raw_records import parse_text

LAYOUT_SAMPLE_ROWS = 200   # rows whose fields the layout is detected from (as for distillation prompts)


def split_records(path: Path, benchmark: str) -> list[dict[str, Any]]:
    """The rows of one split file with their own fields; a JSONL line that does not parse, or is not
    UTF-8, becomes one ``_corrupt_record`` row (quarantined as ``malformed_record``)."""
    import pyarrow.parquet as pq

    try:
        if path.name.endswith(".parquet"):
            return pq.read_table(path).to_pylist()
        opener = gzip.open if path.name.endswith(".gz") else open
        rows: list[dict[str, Any]] = []
        with opener(path, "rb") as f:
            for raw in f:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    rows.append({"_corrupt_record": raw.decode("utf-8", "replace")[:4000]})
                    continue
                rows += parse_text(line, False)
        return rows
    except (OSError, EOFError, pa.ArrowException) as e:
        raise BenchmarkError(f"benchmark {benchmark}: cannot read {path}: "
                             f"{getattr(e, 'strerror', None) or str(e).splitlines()[0]}") from None


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and bool(str(value).strip())


def subject_of(row: dict[str, Any], column: str | None = None) -> str:
    """The row's subject: ``column``, else the first present of subject, category, domain, source; else 'all'."""
    for name in (column,) if column else SUBJECT_COLUMNS:
        if _present(row.get(name)):
            return str(row[name]).strip()
    return ALL


def split_layout(records: Sequence[dict[str, Any]], fields: PromptFields, where: str) -> str:
    """The layout of a split from the fields of its first rows (one-line ``ConfigError`` when it cannot be told)."""
    from skycurate.stages.cot.prompt_layouts import detect_layout

    columns: dict[str, None] = {}
    for row in [r for r in records if "_corrupt_record" not in r][:LAYOUT_SAMPLE_ROWS]:
        columns.update(dict.fromkeys(row))
    return detect_layout(columns, fields, where)


def benchmark_items(name: str, files: Sequence[Path], fields: PromptFields,
                    subject_field: str | None = None) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """(items as ``PROMPT_SCHEMA``, quarantined rows as ``QUARANTINE_SCHEMA``, counts) of one benchmark's
    test split. Item ids are the rows' own (``fields.id``, ``id``, ``idx``, ...) or a hash of question and
    answer; a repeated id is quarantined (``duplicate_id``). Relative image paths are read next to the file."""
    from skycurate.stages.cot.prompt_layouts import to_canonical
    from skycurate.stages.cot.prompts import check_rows

    per_file = [(path, split_records(path, name)) for path in files]
    records = [r for _, rows in per_file for r in rows]
    if not records:
        raise BenchmarkError(f"benchmark {name}: its test split ({', '.join(p.name for p in files)}) has no rows")
    layout = split_layout(records, fields, f"{name} ({files[0].name})")
    items: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path, rows in per_file:
        canonical = [r if "_corrupt_record" in r else to_canonical(r, layout, fields) for r in rows]
        checked = check_rows(canonical, str(path.parent)).to_pylist()
        for raw, row in zip(rows, checked, strict=True):
            reason, detail, record = row["quarantine_reason"], row["quarantine_detail"], row["record"]
            if reason is None and row["id"] in seen:
                reason, detail = S.DUPLICATE_ID, "an earlier row has this id"
                record = json.dumps({k: row[k] for k in ("id", "question", "reference_answer")}, ensure_ascii=False)
            if reason is not None:
                dropped.append({"benchmark": name, "item_id": row["id"], "reason": reason, "detail": detail,
                                "record": record})
                continue
            seen.add(row["id"])
            items.append({"prompt_id": f"{name}/{row['id']}", "benchmark": name, "item_id": row["id"],
                          "subject": subject_of(raw, subject_field), "question": row["question"],
                          "reference_answer": row["reference_answer"], "answer_type": row["answer_type"],
                          "images": row["images"]})
    counts = {"rows": len(records), "items": len(items), "quarantined": len(dropped), "layout": layout}
    return (pa.Table.from_pylist(items, PROMPT_SCHEMA), pa.Table.from_pylist(dropped, QUARANTINE_SCHEMA), counts)
