"""LLM engines: scoring (per-token log-probs for the leakage audit: ``scoring``,
``transformers_scorer``) and text generation (``generation``; vLLM's offline engine in its own
interpreter: ``vllm_generation`` with its worker ``vllm_generate_worker.py``).

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
        import importlib.util

        if importlib.util.find_spec("vllm") is not None:  # vLLM in this interpreter (e.g. a GPU image)
            from skycurate.connectors.llm.scoring import VllmScorer

            return VllmScorer(model_dir, cfg)
        from skycurate.connectors.llm.vllm_process import VllmProcessScorer, find_vllm_python

        python = find_vllm_python(cfg.vllm_python)
        if python is None:
            raise EngineError("vllm is not installed here and no vLLM interpreter was found: set "
                              "audit.vllm_python or $SKYCURATE_VLLM_PYTHON (e.g. .venv-vllm/bin/python, "
                              "made by `make vllm`), or use engine=transformers")
        return VllmProcessScorer(model_dir, cfg, python)
    from skycurate.connectors.llm.transformers_scorer import TransformersScorer

    return TransformersScorer(model_dir, cfg)


__all__ = ["EngineError", "open_scorer"]
