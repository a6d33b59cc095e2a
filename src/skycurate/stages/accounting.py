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
