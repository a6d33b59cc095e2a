"""Text generation through one interface with real backends: transformers (CPU/GPU, batched) and
any OpenAI-compatible HTTP endpoint (``vllm serve``, hosted APIs).

Callers (the leakage reference builder, CoT distillation) hand over prompts and sampling
parameters and get ``Generation`` records back in prompt order, ``n`` per prompt. An engine
failure for one prompt (after retries) becomes a ``Generation`` with ``error`` set, never an
exception that loses the whole batch: the caller quarantines it with the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from skycurate.connectors.llm import EngineError
from skycurate.schemas.generation import SamplingParams


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" | "length" | "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


class Generator(Protocol):
    name: str

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Generation]]:
        """``n`` generations per prompt, in prompt order."""
        ...


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TransformersGenerator:
    """``model.generate`` over batches of prompts, left-padded and sorted by length (less padding)."""

    def __init__(self, model_dir: str | os.PathLike, *, device: str = "auto", batch_size: int = 8) -> None:
        from pathlib import Path

        path = Path(model_dir)
        if not path.is_dir():
            raise EngineError(f"model folder not found: {path}")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = f"transformers:{path.name}"
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.batch_size = batch_size
        try:
            self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).to(self.device).eval()
        except Exception as e:  # noqa: BLE001 - one line for the user, whatever failed
            raise EngineError(f"cannot load the model in {path}: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token or self.tok.unk_token

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Generation]]:
        import torch

        out: list[list[Generation]] = [[] for _ in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
        torch.manual_seed(params.seed)
        eos = self.tok.eos_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = self.tok([prompts[i] for i in idx], return_tensors="pt", padding=True,
                           add_special_tokens=False).to(self.device)
            sample = params.temperature > 0
            with torch.inference_mode():
                gen = self.model.generate(
                    **enc, max_new_tokens=params.max_new_tokens, do_sample=sample,
                    temperature=params.temperature if sample else None, top_p=params.top_p if sample else None,
                    num_return_sequences=params.n, pad_token_id=self.tok.pad_token_id, eos_token_id=eos)
            width = enc["input_ids"].shape[1]
            for j, i in enumerate(idx):
                n_prompt = int(enc["attention_mask"][j].sum())
                for k in range(params.n):
                    ids = gen[j * params.n + k, width:].tolist()
                    ended = eos is not None and eos in ids
                    if ended:
                        ids = ids[:ids.index(eos)]
                    else:
                        ids = [t for t in ids if t != self.tok.pad_token_id] if self.tok.pad_token_id != eos else ids
                    text = self.tok.decode(ids, skip_special_tokens=True)
                    text, stopped = _cut_at_stop(text, params.stop)
                    reason = "stop" if ended or stopped else ("length" if len(ids) >= params.max_new_tokens else "stop")
                    out[i].append(Generation(text=text, finish_reason=reason, prompt_tokens=n_prompt,
                                             completion_tokens=len(ids)))
        return out


class OpenAIGenerator:
    """An OpenAI-compatible ``/v1/completions`` (or ``/v1/chat/completions``) endpoint.

    Requests run with bounded concurrency; 429, 5xx, timeouts and connection errors are retried
    with exponential backoff; a prompt that still fails gets ``Generation(error=...)``.
    """

    RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, chat: bool = False,
                 concurrency: int = 8, timeout_s: float = 120.0, retries: int = 4, backoff_s: float = 1.0) -> None:
        import httpx

        self.name = f"openai:{model}@{base_url}"
        self.model, self.chat = model, chat
        self.concurrency, self.retries, self.backoff_s = concurrency, retries, backoff_s
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                   headers={"Authorization": f"Bearer {key}"})

    def _request(self, prompt: str, params: SamplingParams, seed: int) -> dict:
        import httpx

        body = {"model": self.model, "n": params.n, "max_tokens": params.max_new_tokens,
                "temperature": params.temperature, "top_p": params.top_p, "seed": seed}
        if params.stop:
            body["stop"] = params.stop
        if self.chat:
            path, body["messages"] = "/chat/completions", [{"role": "user", "content": prompt}]
        else:
            path, body["prompt"] = "/completions", prompt
        last = ""
        for attempt in range(self.retries + 1):
            try:
                resp = self.client.post(path, json=body)
                if resp.status_code == 200:
                    return resp.json()
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code not in self.RETRY_STATUS:
                    break
            except (httpx.TimeoutException, httpx.TransportError) as e:
                last = f"{type(e).__name__}: {e}"
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2 ** attempt)
        raise EngineError(last or "request failed")

    def _one(self, prompt: str, params: SamplingParams, seed: int) -> list[Generation]:
        try:
            data = self._request(prompt, params, seed)
        except EngineError as e:
            return [Generation(text="", finish_reason="error", error=str(e))] * params.n
        usage = data.get("usage") or {}
        gens = []
        for choice in data.get("choices", []):
            text = choice["message"]["content"] if self.chat else choice.get("text", "")
            gens.append(Generation(text=text or "", finish_reason=choice.get("finish_reason") or "stop",
                                   prompt_tokens=usage.get("prompt_tokens", 0),
                                   completion_tokens=usage.get("completion_tokens", 0) // max(1, params.n)))
        return gens or [Generation(text="", finish_reason="error", error="no choices in the response")]

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Generation]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda ip: self._one(ip[1], params, params.seed + ip[0]), enumerate(prompts)))


def open_generator(engine: str, model: str, *, base_url: str | None = None, device: str = "auto",
                   batch_size: int = 8) -> Generator:
    """``engine`` is ``transformers`` (``model`` = local folder) or ``openai`` (``model`` = served name)."""
    if engine == "transformers":
        return TransformersGenerator(model, device=device, batch_size=batch_size)
    if engine == "openai":
        if not base_url:
            raise EngineError("the openai engine needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return OpenAIGenerator(base_url, model)
    if engine == "vllm":
        raise EngineError("the vllm generation backend is not available yet; serve the model with "
                          "`vllm serve` and use --engine openai --base-url ...")
    raise EngineError(f"unknown engine {engine!r}: use transformers or openai")
