"""Config models shared by every flow, and loading them from YAML with clear errors."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from skycurate.errors import ConfigError

SPARK_MASTER_ENV = "SKYCURATE_SPARK_MASTER"

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a config must never be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class SparkConfig(StrictModel):
    """How to reach Spark. ``master`` None means ``$SKYCURATE_SPARK_MASTER``, else ``local[*]``."""

    master: str | None = None
    app_name: str = "skycurate"
    driver_memory: str = "2g"
    arrow_batch_rows: int = Field(
        default=1000, ge=1,
        description="spark.sql.execution.arrow.maxRecordsPerBatch: rows per batch handed to Python stages; "
                    "Spark's 10,000 holds tens of MB of page text per batch per task")
    shuffle_partitions: int | None = Field(
        default=None, description="spark.sql.shuffle.partitions; None = 2 x cores in local mode, Spark's default otherwise")
    local_jit: Literal["quick", "full"] = Field(
        default="quick",
        description="local masters only (executors share the driver JVM): 'quick' compiles with C1 only "
                    "(-XX:TieredStopAtLevel=1), which on 2 cores made 3k-20k page web runs 15-25% faster, "
                    "because C2 compiler threads compete with the Python workers for the cores and a short run "
                    "never earns back their work; 'full' is the JVM's default tiered compilation, for long "
                    "local runs. An -XX:TieredStopAtLevel in spark.driver.extraJavaOptions wins over both")
    ui: bool = False
    log_level: str = "WARN"
    conf: dict[str, str] = Field(default_factory=dict, description="any other spark.* settings")

    def resolved_master(self) -> str:
        return self.master or os.environ.get(SPARK_MASTER_ENV) or "local[*]"


class CardConfig(StrictModel):
    """Dataset cards at publish time (``catalog.cards``): a ``README.md`` in every version the run
    publishes, so each version folder loads with ``datasets.load_dataset(folder)`` and can go to a hub.

    Off by default: a folder with a ``README.md`` is no longer a bare Parquet folder for readers that
    do not filter by extension (``pyarrow.parquet.read_table(folder)``). The catalog reads this section
    from the producer config recorded with each version, which is how every flow honours it.
    """

    enabled: bool = False
    license: str | None = Field(default=None, description="Hugging Face license id (cc-by-4.0, apache-2.0, other, "
                                                          "...); None writes 'unknown'")
    tags: list[str] = Field(default_factory=list, description="hub tags, besides 'skycurate'")

    @field_validator("license")
    @classmethod
    def _license_id(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-z0-9][a-z0-9.+_-]{0,63}\Z", value):
            raise ValueError(f"{value!r} is not a Hugging Face license id (e.g. cc-by-4.0, apache-2.0, mit, other)")
        return value


class FlowConfig(StrictModel):
    """Fields every flow config has."""

    spark: SparkConfig = Field(default_factory=SparkConfig)
    card: CardConfig = Field(default_factory=CardConfig, description="write a dataset card into every version "
                                                                      "the run publishes")
    rebuild_of: str | None = Field(
        default=None, description="set by `skycurate rebuild`: the version this run rebuilds (recorded in every "
                                  "output's producer config)")


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        what = f"unknown key '{where}'"
    elif first["type"] == "missing":
        what = f"missing key '{where}'"
    else:
        what = f"'{where}': {first['msg'].removeprefix('Value error, ')}"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"config {source}: {what}{more}"


def validate_config(model: type[M], data: dict[str, Any] | None, source: str = "(inline)") -> M:
    try:
        return model.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def read_yaml(path: str | os.PathLike, what: str) -> Any:
    """Parsed YAML of ``path``; unreadable or invalid files are one-line ``ConfigError``s naming ``what``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(e).splitlines()[0]}") from None


def load_config(model: type[M], path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> M:
    """Read a YAML file into ``model``; ``overrides`` (from CLI flags) win over the file."""
    data: dict[str, Any] = {}
    source = "(defaults)"
    if path is not None:
        source = str(path)
        loaded = read_yaml(path, "config")
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of keys, not {type(loaded).__name__}")
        data = loaded or {}
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    return validate_config(model, data, source)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        data = data.setdefault(p, {})
    data[leaf] = value
