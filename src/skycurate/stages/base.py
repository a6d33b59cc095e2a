"""The per-record stage contract: a pure ``(RecordBatch, config) -> RecordBatch`` that adds declared columns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from skycurate.errors import StageContractError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class BatchStage:
    """A stage that reads ``requires`` columns and adds the ``adds`` fields, row for row.

    Declaring both lets a flow check a chain before Spark starts, and lets ``on_spark``
    give ``mapInArrow`` the exact output schema.
    """

    name: str
    fn: Callable[[pa.RecordBatch, Any], pa.RecordBatch]
    requires: tuple[str, ...]
    adds: tuple[pa.Field, ...]

    def check(self, schema: pa.Schema) -> None:
        _require(schema, self.name, self.requires)

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        self.check(schema)
        added = {f.name for f in self.adds}
        return pa.schema([f for f in schema if f.name not in added] + list(self.adds))

    def __call__(self, batch: pa.RecordBatch, config: Any) -> pa.RecordBatch:
        self.check(batch.schema)
        out = self.fn(batch, config)
        if out.num_rows != batch.num_rows:
            raise StageContractError(f"stage {self.name} changed the row count ({batch.num_rows} -> {out.num_rows})")
        missing = [f.name for f in self.adds if f.name not in out.schema.names]
        if missing:
            raise StageContractError(f"stage {self.name} did not add its declared column(s) {', '.join(missing)}")
        return out

    def on_spark(self, df: "DataFrame", config: Any) -> "DataFrame":
        """Apply the stage to a Spark DataFrame with ``mapInArrow``."""

        from skycurate.spark import arrow_schema, map_batches

        out_schema = self.output_schema(arrow_schema(df))
        return map_batches(df, partial(self, config=config), out_schema)


def _require(schema: pa.Schema, stage: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise StageContractError(
            f"stage {stage} needs column(s) {', '.join(missing)}; input has {', '.join(schema.names)}")


def require_columns(batch: pa.RecordBatch, stage: str, columns: tuple[str, ...]) -> None:
    """The check ``BatchStage`` makes, for the plain functions called directly."""
    _require(batch.schema, stage, columns)


def with_columns(batch: pa.RecordBatch, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    """``batch`` plus (or with replaced) ``columns``."""
    arrays = [batch.column(i) for i in range(batch.num_columns) if batch.schema.names[i] not in columns]
    names = [n for n in batch.schema.names if n not in columns]
    return pa.RecordBatch.from_arrays(arrays + list(columns.values()), names=names + list(columns))


def chain(steps: "list[tuple[BatchStage, Any]]") -> "Callable[[pa.RecordBatch], pa.RecordBatch]":
    """Compose per-record stages into one batch function, so Spark makes one pass for all of them."""
    return partial(_run_chain, tuple(steps))


def _run_chain(steps: tuple, batch: pa.RecordBatch) -> pa.RecordBatch:
    for stage, config in steps:
        batch = stage(batch, config)
    return batch


def chain_on_spark(df: "DataFrame", steps: "list[tuple[BatchStage, Any]]") -> "DataFrame":
    """Apply ``chain(steps)`` with one ``mapInArrow``; the chain's schema is checked before Spark runs."""

    from skycurate.spark import arrow_schema, map_batches

    schema = arrow_schema(df)
    for stage, _ in steps:
        schema = stage.output_schema(schema)
    return map_batches(df, chain(steps), schema)
