"""One place does the accounting: verdict columns -> kept / rejected, and the funnel.

A filter step writes ``reject_stage`` and ``reject_reason`` (null = keep). ``split_verdicts``
turns that into the kept and rejected sets for Arrow or Spark alike, and ``FunnelStep``
records rows in/out per stage and refuses numbers that do not reconcile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from skycurate.errors import SkycurateError
from skycurate.stages.base import with_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

REJECT_STAGE = "reject_stage"
REJECT_REASON = "reject_reason"
VERDICT_FIELDS = (pa.field(REJECT_STAGE, pa.string()), pa.field(REJECT_REASON, pa.string()))


class AccountingError(SkycurateError):
    """Rows were lost or invented: input != kept + rejected + quarantined."""


class FunnelStep(BaseModel):
    stage: str
    rows_in: int
    rows_out: int
    rejected: int = 0
    quarantined: int = 0
    bytes_in: int | None = None   # text bytes (payload bytes for the read step), when known
    bytes_out: int | None = None

    def model_post_init(self, _context) -> None:
        if self.rows_in != self.rows_out + self.rejected + self.quarantined:
            raise AccountingError(
                f"stage {self.stage}: {self.rows_in} rows in != {self.rows_out} kept + {self.rejected} rejected "
                f"+ {self.quarantined} quarantined")


def split_verdicts_arrow(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept without verdict columns, rejected with them)."""
    keep = pc.is_null(table[REJECT_REASON])
    kept = table.filter(keep).drop_columns([REJECT_STAGE, REJECT_REASON])
    return kept, table.filter(pc.invert(keep))


def split_verdicts(df: "DataFrame") -> tuple["DataFrame", "DataFrame"]:
    """Spark version of ``split_verdicts_arrow``."""
    from pyspark.sql import functions as F

    kept = df.filter(F.col(REJECT_REASON).isNull()).drop(REJECT_STAGE, REJECT_REASON)
    return kept, df.filter(F.col(REJECT_REASON).isNotNull())


# ---- verdict merging for per-record stages: a row already rejected keeps its first verdict ----

def pending_rows(batch: pa.RecordBatch) -> list[bool]:
    """True for rows still in play: no ``reject_reason`` column, or a null one."""
    if REJECT_REASON not in batch.schema.names:
        return [True] * batch.num_rows
    return [r is None for r in batch.column(REJECT_REASON).to_pylist()]


def keep_where_skipped(batch: pa.RecordBatch, name: str, values: list, pending: list[bool], type_: pa.DataType) -> pa.Array:
    """``values`` for pending rows; for skipped rows the existing column's value, else null."""
    if not all(pending):
        old = batch.column(name).to_pylist() if name in batch.schema.names else [None] * batch.num_rows
        values = [v if p else o for v, p, o in zip(values, pending, old)]
    return pa.array(values, type_)


def add_verdicts(batch: pa.RecordBatch, stage: str, reasons: list[str | None]) -> pa.RecordBatch:
    """``batch`` with verdict columns: a row already rejected keeps its first verdict."""
    names = batch.schema.names
    old_stage = batch.column(REJECT_STAGE).to_pylist() if REJECT_STAGE in names else [None] * batch.num_rows
    old_reason = batch.column(REJECT_REASON).to_pylist() if REJECT_REASON in names else [None] * batch.num_rows
    stages, out = [], []
    for s, r, new in zip(old_stage, old_reason, reasons):
        if r is not None:
            stages.append(s)
            out.append(r)
        else:
            stages.append(stage if new is not None else None)
            out.append(new)
    return with_columns(batch, {REJECT_STAGE: pa.array(stages, pa.string()), REJECT_REASON: pa.array(out, pa.string())})


def below_reason(name: str, value: float, threshold: float) -> str:
    """``"lang_score 0.41 < 0.65"``: two decimals, more when two would show ``0.65 < 0.65``."""
    for d in range(2, 7):
        v, t = f"{value:.{d}f}", f"{threshold:.{d}f}"
        if float(v) < float(t) and float(t) == round(threshold, 6):
            break
    return f"{name} {v} < {t}"
