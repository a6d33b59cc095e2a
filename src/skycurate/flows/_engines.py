"""The identity of a model engine, shared by the flows that run models (distill, evaluate)."""

from __future__ import annotations

from typing import Any

from skycurate.catalog.pins import pin_model_folder
from skycurate.schemas.engine import EngineConfig


def engine_identity(teacher: EngineConfig) -> Any:
    """What names a model in cache keys and outputs: a local folder pinned by its files, a served model
    by name and endpoint (credentials redacted)."""
    if teacher.engine == "openai":
        from skycurate.redact import redact

        return redact(f"openai:{teacher.model}@{teacher.base_url}")   # the `teacher` column: no credentials
    return {"engine": teacher.engine, "model": pin_model_folder(teacher.model).model_dump()}
