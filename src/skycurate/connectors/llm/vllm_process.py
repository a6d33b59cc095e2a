"""The vLLM scoring backend in vLLM's own interpreter (a separate virtualenv).

Texts are tokenised here with the model folder's tokenizer (the same ``fit_tokens`` rule as every
backend), the ids go to ``vllm_worker.py`` run by ``vllm_python``, and the per-token log-probs come
back. One worker process per ``score`` call: the engine starts in seconds on CPU with
``VLLM_ENABLE_V1_MULTIPROCESSING=0``, and nothing of vLLM lives in the flow's process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from skycurate.connectors.llm import EngineError
from skycurate.connectors.llm.scoring import TokenScores, check_model_dir, fit_tokens, unscored

if TYPE_CHECKING:
    from skycurate.schemas.leakage_audit import AuditConfig

VLLM_PYTHON_ENV = "SKYCURATE_VLLM_PYTHON"
WORKER = Path(__file__).with_name("vllm_worker.py")


def find_vllm_python(configured: str | None = None) -> str | None:
    """The interpreter with vLLM: the config, ``$SKYCURATE_VLLM_PYTHON``, or ``.venv-vllm`` next to the
    running virtualenv (what ``make vllm`` creates)."""
    for candidate in (configured, os.environ.get(VLLM_PYTHON_ENV),
                      str(Path(sys.prefix).parent / ".venv-vllm" / "bin" / "python")):
        if candidate and (shutil.which(candidate) or Path(candidate).is_file()):
            return candidate
    return None


class VllmProcessScorer:
    """``prompt_logprobs`` scoring by vLLM in another interpreter; no full logits (no Min-K%++)."""

    has_full_logits = False

    def __init__(self, model_dir: str | os.PathLike, cfg: "AuditConfig", python: str) -> None:
        from transformers import AutoTokenizer

        path = check_model_dir(model_dir)
        self.cfg, self.python, self.path = cfg, python, path.resolve()
        self.model_name = path.name
        try:
            self._tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as e:  # noqa: BLE001
            raise EngineError(f"cannot load the tokenizer in {path}: {type(e).__name__}") from None
        self._bos = self._tok.bos_token_id if cfg.add_bos else None
        if cfg.add_bos and self._bos is None:
            raise EngineError(f"cannot load model from {path}: add_bos is set but the tokenizer has no BOS token")

    def score(self, texts: Sequence[str]) -> list[TokenScores]:
        out: list[TokenScores | None] = [None] * len(texts)
        prompts, where = [], []
        for i, text in enumerate(texts):
            full = self._tok(text or "", add_special_tokens=False)["input_ids"]
            ids, n, truncated = fit_tokens(full, self._bos, self.cfg.max_tokens)
            if len(ids) < 2:
                out[i] = unscored(n, len(full), truncated, with_moments=False)
                continue
            prompts.append(ids)
            where.append((i, n, len(full), truncated))
        if prompts:
            logprobs = self._run(prompts)
            for lps, (i, n, n_full, truncated) in zip(logprobs, where, strict=True):
                out[i] = TokenScores(np.asarray(lps, dtype=np.float32), n, n_full, truncated)
        return out  # type: ignore[return-value]

    def _run(self, prompts: list[list[int]]) -> list[list[float]]:
        dtype = {"auto": "auto", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}[self.cfg.dtype]
        req = {"model": str(self.path), "prompts": prompts, "max_model_len": max(len(p) for p in prompts) + 1,
               "seed": self.cfg.seed, "dtype": dtype, "options": self.cfg.vllm_options}
        with tempfile.TemporaryDirectory(prefix="skycurate-vllm-") as tmp:
            rq, rs = Path(tmp, "request.json"), Path(tmp, "response.json")
            rq.write_text(json.dumps(req))
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
            try:
                proc = subprocess.run([self.python, str(WORKER), str(rq), str(rs)], capture_output=True, text=True,
                                      env=env, errors="replace")
            except OSError as e:
                raise EngineError(f"vllm worker ({self.python}) did not start: {e.strerror or e}") from None
            if proc.returncode != 0 or not rs.exists():
                tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()][-1:]
                raise EngineError(f"vllm worker ({self.python}) failed on {self.path.name} (exit "
                                  f"{proc.returncode}): {tail[0][:300] if tail else 'no output'}")
            return json.loads(rs.read_text())["logprobs"]

    def close(self) -> None:
        """Nothing to release: each ``score`` call runs and ends its own worker."""
