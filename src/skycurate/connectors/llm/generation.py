"""Text generation through one interface with real backends: transformers (CPU/GPU, batched),
vLLM's offline engine in its own interpreter (``vllm_generation.VllmGenerator``) and any
OpenAI-compatible HTTP endpoint (``vllm serve``, hosted APIs).

Callers (the leakage reference builder, CoT distillation) hand over prompts and sampling
parameters and get ``Generation`` records back in prompt order, ``n`` per prompt. An engine
failure for one prompt (after retries) becomes a ``Generation`` with ``error`` set, never an
exception that loses the whole batch: the caller quarantines it with the reason. An engine that
cannot start (or a vLLM worker that dies) is an ``EngineError``.

Common semantics of every backend:

- ``penalties[i]`` is prompt ``i``'s repetition penalty (1 = none); ``None`` means
  ``params.repetition_penalty`` for every prompt.
- ``add_special_tokens``: the tokenizer adds its special tokens (BOS) to the prompt text, as
  transformers, ``LLM.generate`` and ``vllm serve`` completions do by default. Chat endpoints
  render their template (special tokens included) and ignore it.
- ``prompt_tokens``: the prompt's tokens as the engine saw them (BOS included);
  ``completion_tokens``: the tokens generated, the final EOS included (what vLLM and the OpenAI
  ``usage`` count); ``finish_reason``: ``stop`` (EOS or a stop string), ``length``
  (``max_new_tokens`` reached) or ``error``.
- Seeds: the same call (prompts, params, penalties) gives the same samples. transformers seeds
  torch with ``params.seed`` at the start of each call; vLLM and HTTP backends seed prompt ``i``
  with ``params.seed + i``.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from skycurate.connectors.llm import EngineError
from skycurate.redact import redact
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

    def generate(self, prompts: Sequence[str], params: SamplingParams, *, penalties: Sequence[float] | None = None,
                 add_special_tokens: bool = True,
                 images: Sequence[Sequence[bytes]] | None = None) -> list[list[Generation]]:
        """``n`` generations per prompt, in prompt order; ``images[i]``: prompt ``i``'s encoded images."""
        ...

    def close(self) -> None:
        """Release the engine (model memory, worker process, HTTP connections)."""
        ...


def resolve_penalties(prompts: Sequence[str], params: SamplingParams,
                      penalties: Sequence[float] | None) -> list[float]:
    """One repetition penalty per prompt: ``penalties`` or ``params.repetition_penalty``."""
    if penalties is None:
        return [float(params.repetition_penalty)] * len(prompts)
    if len(penalties) != len(prompts):
        raise ValueError(f"{len(penalties)} penalties for {len(prompts)} prompts")
    out = [float(p) for p in penalties]
    bad = [p for p in out if not p > 0]
    if bad:
        raise ValueError(f"repetition penalties must be > 0, got {bad[0]}")
    return out


def resolve_images(prompts: Sequence[str], images: Sequence[Sequence[bytes]] | None) -> list[list[bytes]]:
    """One (possibly empty) list of encoded images per prompt."""
    if images is None:
        return [[] for _ in prompts]
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} image lists for {len(prompts)} prompts")
    return [list(x or ()) for x in images]


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
        self.processor = None      # a vision-language model's processor: images go through it
        try:
            if (path / "preprocessor_config.json").is_file() or (path / "processor_config.json").is_file():
                from transformers import AutoModelForImageTextToText, AutoProcessor

                self.processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
                self.tok = self.processor.tokenizer
                model_cls = AutoModelForImageTextToText
            else:
                self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
                model_cls = AutoModelForCausalLM
            self.model = model_cls.from_pretrained(str(path), local_files_only=True).to(self.device).eval()
        except Exception as e:  # noqa: BLE001 - one line for the user, whatever failed
            raise EngineError(f"cannot load the model in {path}: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token or self.tok.unk_token

    def _encode(self, texts: list[str], images: list[list[bytes]], add_special_tokens: bool) -> Any:
        """Token ids (and pixel values) of one batch: a vision-language model's processor places
        each prompt's images at its image tokens, in order."""
        if not any(images):
            return self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens)
        if self.processor is None:
            raise EngineError("prompts with images need a vision-language model (a folder with its processor)")
        from skycurate.connectors.llm.images import to_rgb

        flat = [to_rgb(b) for pics in images for b in pics]
        return self.processor(text=texts, images=flat, return_tensors="pt", padding=True,
                              add_special_tokens=add_special_tokens)

    def generate(self, prompts: Sequence[str], params: SamplingParams, *, penalties: Sequence[float] | None = None,
                 add_special_tokens: bool = True,
                 images: Sequence[Sequence[bytes]] | None = None) -> list[list[Generation]]:
        """Prompts with the same penalty share batches (``repetition_penalty`` is per ``generate``
        call); within a penalty, longest first. ``torch.manual_seed(params.seed)`` at the start:
        the same call gives the same samples. ``images[i]``: prompt ``i``'s encoded images."""
        import torch

        pens = resolve_penalties(prompts, params, penalties)
        pics = resolve_images(prompts, images)
        out: list[list[Generation]] = [[] for _ in prompts]
        groups: dict[float, list[int]] = {}
        for i, pen in enumerate(pens):
            groups.setdefault(pen, []).append(i)
        torch.manual_seed(params.seed)
        sample = params.temperature > 0
        # greedy decoding gives one answer: generate it once and repeat it n times
        n_gen = params.n if sample else 1
        kw = ({"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
              if sample else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
        eos = self.tok.eos_token_id
        for pen in sorted(groups):
            order = sorted(groups[pen], key=lambda i: len(prompts[i]), reverse=True)
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self._encode([prompts[i] for i in idx], [pics[i] for i in idx],
                                   add_special_tokens).to(self.device)
                with torch.inference_mode():
                    gen = self.model.generate(
                        **enc, max_new_tokens=params.max_new_tokens, num_return_sequences=n_gen,
                        repetition_penalty=pen if pen != 1.0 else None,
                        pad_token_id=self.tok.pad_token_id, eos_token_id=eos, **kw)
                width = enc["input_ids"].shape[1]
                for j, i in enumerate(idx):
                    n_prompt = int(enc["attention_mask"][j].sum())
                    for k in range(params.n):
                        ids = gen[j * n_gen + (k if sample else 0), width:].tolist()
                        ended = eos is not None and eos in ids
                        if ended:
                            ids = ids[:ids.index(eos)]
                        elif self.tok.pad_token_id is not None and self.tok.pad_token_id != eos:
                            ids = [t for t in ids if t != self.tok.pad_token_id]
                        text = self.tok.decode(ids, skip_special_tokens=True)
                        text, stopped = _cut_at_stop(text, params.stop)
                        reason = ("stop" if ended or stopped
                                  else ("length" if len(ids) >= params.max_new_tokens else "stop"))
                        out[i].append(Generation(text=text, finish_reason=reason, prompt_tokens=n_prompt,
                                                 completion_tokens=len(ids) + int(ended)))
        return out

    def close(self) -> None:
        """Drop the model (and the CUDA cache)."""
        model = self.__dict__.pop("model", None)
        if model is not None and self.device.startswith("cuda"):
            import torch

            del model
            torch.cuda.empty_cache()


def _check_key_transport(base_url: str, key: str | None) -> None:
    """A key (``api_key``, ``$OPENAI_API_KEY`` or a password in ``base_url``; vLLM's "EMPTY" is
    none) goes over plain http only to this machine: anyone on the path to another host could read it."""
    url = urlsplit(base_url)
    if url.scheme.lower() != "http" or not ((key and key != "EMPTY") or url.password):
        return
    host = (url.hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise EngineError(f"refusing to send an API key over plain http to {host or redact(base_url)!r}: use an https "
                          "base_url, or leave the key unset (api_key, $OPENAI_API_KEY) for an endpoint without one")


class OpenAIGenerator:
    """An OpenAI-compatible ``/v1/completions`` (or ``/v1/chat/completions``) endpoint.

    Requests run with bounded concurrency; 429, 5xx, timeouts and connection errors are retried
    with exponential backoff; a prompt that still fails gets ``Generation(error=...)``.
    """

    RETRY_STATUS: ClassVar[frozenset[int]] = frozenset({408, 409, 429, 500, 502, 503, 504})

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, chat: bool = False,
                 concurrency: int = 8, timeout_s: float = 120.0, retries: int = 4, backoff_s: float = 1.0,
                 system: str | None = None) -> None:
        import httpx

        self.name = f"openai:{model}@{redact(base_url)}"
        self.model, self.chat, self.system = model, chat, system
        self.concurrency, self.retries, self.backoff_s = concurrency, retries, backoff_s
        key = api_key or os.environ.get("OPENAI_API_KEY")
        _check_key_transport(base_url, key)
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                   headers={"Authorization": f"Bearer {key or 'EMPTY'}"})

    def _request(self, prompt: str, params: SamplingParams, seed: int, penalty: float,
                 add_special_tokens: bool, images: Sequence[bytes] = ()) -> dict:
        import httpx

        from skycurate.connectors.llm.images import chat_content

        # greedy decoding has one answer (vLLM refuses n > 1 then): ask once, repeat it n times
        body = {"model": self.model, "n": params.n if params.temperature > 0 else 1, "max_tokens": params.max_new_tokens,
                "temperature": params.temperature, "top_p": params.top_p, "seed": seed}
        if params.stop:
            body["stop"] = params.stop
        if penalty != 1.0:
            body["repetition_penalty"] = penalty        # a vLLM extra parameter
        if self.chat:
            system = [{"role": "system", "content": self.system}] if self.system else []
            path, body["messages"] = "/chat/completions", [*system, {"role": "user",
                                                                     "content": chat_content(prompt, list(images))}]
        elif images:
            raise EngineError("prompts with images need a chat endpoint: set template.mode to chat")
        else:
            path, body["prompt"] = "/completions", prompt
            if not add_special_tokens:
                body["add_special_tokens"] = False      # a vLLM extra parameter (its default is True)
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

    def _one(self, prompt: str, params: SamplingParams, seed: int, penalty: float,
             add_special_tokens: bool, images: Sequence[bytes] = ()) -> list[Generation]:
        try:
            data = self._request(prompt, params, seed, penalty, add_special_tokens, images)
        except EngineError as e:
            return [Generation(text="", finish_reason="error", error=str(e)) for _ in range(params.n)]
        usage = data.get("usage") or {}
        asked = params.n if params.temperature > 0 else 1
        gens = []
        for choice in sorted(data.get("choices", []), key=lambda c: c.get("index", 0)):
            text = (choice.get("message") or {}).get("content") if self.chat else choice.get("text", "")
            gens.append(Generation(text=text or "", finish_reason=choice.get("finish_reason") or "stop",
                                   prompt_tokens=usage.get("prompt_tokens", 0),
                                   completion_tokens=usage.get("completion_tokens", 0) // asked))
        if gens and asked == 1 and params.n > 1:
            gens = [Generation(**vars(gens[0])) for _ in range(params.n)]
        return gens or [Generation(text="", finish_reason="error", error="no choices in the response")
                        for _ in range(params.n)]

    def generate(self, prompts: Sequence[str], params: SamplingParams, *, penalties: Sequence[float] | None = None,
                 add_special_tokens: bool = True,
                 images: Sequence[Sequence[bytes]] | None = None) -> list[list[Generation]]:
        """Prompt ``i`` is sent with seed ``params.seed + i`` and its ``images[i]`` (data URLs before
        the text of a chat turn); ``completion_tokens`` is the response's ``usage`` divided by ``n``
        (endpoints count all choices together)."""
        pens = resolve_penalties(prompts, params, penalties)
        pics = resolve_images(prompts, images)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda i: self._one(prompts[i], params, params.seed + i, pens[i], add_special_tokens,
                                                     pics[i]), range(len(prompts))))

    def close(self) -> None:
        self.client.close()


def open_generator(engine: str, model: str, *, base_url: str | None = None, device: str = "auto",
                   batch_size: int = 8, chat: bool = False, api_key: str | None = None, system: str | None = None,
                   concurrency: int = 8, timeout_s: float = 120.0, retries: int = 4,
                   vllm_python: str | None = None, options: dict | None = None, seed: int = 0,
                   log_path: str | os.PathLike | None = None, request_timeout_s: float | None = None) -> Generator:
    """``engine`` is ``transformers`` or ``vllm`` (``model`` = local folder; ``vllm_python``,
    ``options``, ``seed``, ``log_path``, ``request_timeout_s`` go to
    :class:`~.vllm_generation.VllmGenerator`) or ``openai`` (``model`` = served name at ``base_url``;
    ``chat``, ``system``, ``api_key``, ``concurrency``, ``timeout_s``, ``retries``)."""
    if engine == "transformers":
        return TransformersGenerator(model, device=device, batch_size=batch_size)
    if engine == "openai":
        if not base_url:
            raise EngineError("the openai engine needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return OpenAIGenerator(base_url, model, api_key=api_key, chat=chat, system=system, concurrency=concurrency,
                               timeout_s=timeout_s, retries=retries)
    if engine == "vllm":
        from skycurate.connectors.llm.vllm_generation import VllmGenerator

        return VllmGenerator(model, python=vllm_python, options=options, seed=seed, log_path=log_path,
                             request_timeout_s=request_timeout_s)
    raise EngineError(f"unknown engine {engine!r}: use transformers, vllm or openai")
