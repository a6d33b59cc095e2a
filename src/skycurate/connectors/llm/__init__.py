"""LLM engines: scoring (per-token log-probs for the leakage audit: ``scoring``,
``transformers_scorer``) and text generation (``generation``).

Backends are imported lazily so that importing this package never imports torch or vLLM.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from skycurate.errors import SkycurateError

if TYPE_CHECKING:
    from skycurate.connectors.llm.scoring import TokenScorer
    from skycurate.schemas.leakage_audit import AuditConfig


class EngineError(SkycurateError):
    """An LLM engine that cannot start or load its model (one line: what and why)."""


def open_scorer(model_dir: str | os.PathLike, cfg: AuditConfig) -> TokenScorer:
    """The scorer for ``cfg.engine`` over the model in the local folder ``model_dir``."""
    if cfg.engine == "vllm":
        from skycurate.connectors.llm.scoring import VllmScorer

        return VllmScorer(model_dir, cfg)
    from skycurate.connectors.llm.transformers_scorer import TransformersScorer

    return TransformersScorer(model_dir, cfg)


__all__ = ["EngineError", "open_scorer"]
