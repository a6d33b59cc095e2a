"""transformers scoring backend: per-token log-probs (and vocabulary moments) on CPU or GPU.

Texts are tokenised without special tokens (BOS only when ``add_bos``), truncated to
``max_tokens`` input tokens (also capped by the model's ``max_position_embeddings``), sorted by
length (longest first) so each batch pads little, right-padded with an attention mask (so
position ids of real tokens are unchanged), and scored under ``torch.inference_mode``. Results
come back in the caller's order.

Memory: the ``[batch, seq, vocab]`` logits tensor is never built. The decoder's last hidden
states are gathered at the scored positions only and pushed through the LM head in chunks of
at most ``logit_chunk_bytes`` of float32 logits, where log-softmax, the actual token's log-prob
and the moments (mu, sigma) are computed. Models whose head does more than a linear layer
(logit soft-capping, logit scale) take the plain ``model(...).logits`` path instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from skycurate.connectors.llm import EngineError
from skycurate.connectors.llm.scoring import (
    TokenScores,
    check_model_dir,
    first_line,
    fit_tokens,
    unscored,
)

if TYPE_CHECKING:
    import torch

    from skycurate.schemas.leakage_audit import AuditConfig

# Log-probs below this have p == 0 in float32; clamping keeps 0 * (-inf) out of the moments.
_LOGP_FLOOR = -1e4


class TransformersScorer:
    """Scores texts with a causal LM loaded from a local folder (``local_files_only``: never downloads).

    ``sort_by_length=False`` keeps the caller's order inside batches (only for benchmarks: it
    pads more and gives the same scores).
    """

    has_full_logits = True

    def __init__(self, model_dir: str | os.PathLike, cfg: AuditConfig, *, sort_by_length: bool = True,
                 logit_chunk_bytes: int = 64 * 2**20) -> None:
        path = check_model_dir(model_dir)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.model_name = path.name
        self.sort_by_length = sort_by_length
        self.logit_chunk_bytes = logit_chunk_bytes
        self.compute_moments = cfg.minkpp
        self.device = _resolve_device(cfg.device, torch)
        dtype = _resolve_dtype(cfg.dtype, self.device, torch)
        try:
            self._tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - whatever the cause, the user gets one line
            raise EngineError(f"cannot load tokenizer from {path}: {first_line(e)}") from None
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype)
            self._model = model.to(self.device).eval()
        except Exception as e:  # noqa: BLE001
            raise EngineError(f"cannot load model from {path}: {first_line(e)}") from None
        mcfg = self._model.config
        limit = getattr(mcfg, "max_position_embeddings", None)
        self.max_tokens = min(cfg.max_tokens, limit) if isinstance(limit, int) and limit > 1 else cfg.max_tokens
        self._bos = None
        if cfg.add_bos:
            self._bos = self._tok.bos_token_id
            if self._bos is None:
                raise EngineError(f"cannot load model from {path}: add_bos is set but the tokenizer has no BOS token")
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else self._tok.eos_token_id
        self._pad = int(pad) if pad is not None else 0
        self._head = self._model.get_output_embeddings()
        plain_head = isinstance(self._head, torch.nn.Linear) and not getattr(mcfg, "final_logit_softcapping", None) \
            and getattr(mcfg, "logit_scale", None) in (None, 1.0)
        self._chunked = plain_head and self._model.base_model is not self._model

    # ------------------------------------------------------------------ public

    def score(self, texts: Sequence[str]) -> list[TokenScores]:
        """Scores of each text, in the order given."""
        texts = list(texts)
        if not texts:
            return []
        full_ids = self._tok(texts, add_special_tokens=False, verbose=False)["input_ids"]
        prepared = [fit_tokens(ids, self._bos, self.max_tokens) for ids in full_ids]
        out: list[TokenScores | None] = [None] * len(texts)
        todo = []
        for i, (ids, n, truncated) in enumerate(prepared):
            if len(ids) < 2:   # nothing to predict: empty text, or a single token without BOS
                out[i] = unscored(n, len(full_ids[i]), truncated, self.compute_moments)
            else:
                todo.append(i)
        if self.sort_by_length:
            todo.sort(key=lambda i: -len(prepared[i][0]))
        import torch

        oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
        bs = self.cfg.batch_size
        for lo in range(0, len(todo), bs):
            batch = todo[lo:lo + bs]
            try:
                scored = self._score_batch([prepared[i][0] for i in batch])
            except oom:
                width = len(prepared[batch[0]][0]) if self.sort_by_length else max(len(prepared[i][0]) for i in batch)
                raise EngineError(f"out of {self.device} memory scoring {len(batch)} texts of up to {width} tokens "
                                  f"with {self.model_name}; lower batch_size or max_tokens") from None
            for i, (lp, mu, sigma) in zip(batch, scored, strict=True):
                _, n, truncated = prepared[i]
                out[i] = TokenScores(lp, n, len(full_ids[i]), truncated, mu, sigma)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Drop the model (and free GPU memory)."""
        import torch

        self._model = None  # type: ignore[assignment]
        self._head = None
        if self.device == "cuda":
            torch.cuda.empty_cache()

    def __enter__(self) -> TransformersScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _score_batch(self, batch: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
        import torch

        lengths = torch.tensor([len(ids) for ids in batch])
        width = int(lengths.max())
        input_ids = torch.full((len(batch), width), self._pad, dtype=torch.long)
        for b, ids in enumerate(batch):
            input_ids[b, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention = (torch.arange(width)[None, :] < lengths[:, None]).long()
        # position t predicts token t + 1; row b has lengths[b] - 1 predictions
        predicted = (torch.arange(width - 1)[None, :] < (lengths - 1)[:, None])
        targets = input_ids[:, 1:][predicted].to(self.device)
        input_ids, attention, predicted = (t.to(self.device) for t in (input_ids, attention, predicted))
        with torch.inference_mode():
            if self._chunked:
                hidden = self._model.base_model(input_ids=input_ids, attention_mask=attention,
                                                use_cache=False).last_hidden_state
                rows = hidden[:, :-1][predicted]            # [N, hidden]
                project = self._head
            else:
                logits = self._model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits
                rows = logits[:, :-1][predicted]            # [N, vocab]
                project = None
            lp, mu, sigma = self._token_stats(rows, targets, project)
        counts = (lengths - 1).tolist()
        lp_parts = np.split(lp, np.cumsum(counts)[:-1])
        if mu is None:
            return [(p, None, None) for p in lp_parts]
        mu_parts = np.split(mu, np.cumsum(counts)[:-1])
        sigma_parts = np.split(sigma, np.cumsum(counts)[:-1])
        return list(zip(lp_parts, mu_parts, sigma_parts, strict=True))

    def _token_stats(self, rows: torch.Tensor, targets: torch.Tensor, project: torch.nn.Module | None):
        """Log-prob of each target, and mu/sigma of log p over the vocabulary, chunk by chunk in float32."""
        import torch

        vocab = self._head.out_features if project is not None else rows.shape[-1]
        step = max(1, self.logit_chunk_bytes // (4 * vocab))
        lps, mus, sigmas = [], [], []
        for lo in range(0, rows.shape[0], step):
            x = rows[lo:lo + step]
            logits = (project(x) if project is not None else x).float()
            logp = torch.log_softmax(logits, dim=-1)
            lps.append(logp.gather(1, targets[lo:lo + step, None])[:, 0])
            if self.compute_moments:
                logp = logp.clamp_min(_LOGP_FLOOR)
                p = logp.exp()
                mu = (p * logp).sum(-1)
                var = (p * (logp - mu[:, None]).square()).sum(-1)
                mus.append(mu)
                sigmas.append(var.clamp_min(0).sqrt())
        lp = torch.cat(lps).cpu().numpy().astype(np.float32, copy=False)
        if not self.compute_moments:
            return lp, None, None
        return (lp, torch.cat(mus).cpu().numpy().astype(np.float32, copy=False),
                torch.cat(sigmas).cpu().numpy().astype(np.float32, copy=False))


def _resolve_device(device: str, torch) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError("device cuda requested but torch sees no GPU (use device: cpu or auto)")
    return device


def _resolve_dtype(dtype: str, device: str, torch):
    if dtype == "auto":
        if device == "cpu":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, dtype)
