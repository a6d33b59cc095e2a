"""Persistent vLLM generation worker, run by ``VllmGenerator`` in vLLM's own interpreter.

vLLM and Prefect cannot share a virtualenv (their fastapi pins conflict), so generation talks to
vLLM through this script: ``python vllm_generate_worker.py``. It imports only the standard library
and vLLM (never skycurate). The model is loaded once; then requests come one per line.

Protocol (one JSON object per line; stdout carries nothing else, vLLM's own output and logs go
to stderr, which the parent sends to a log file):

1. stdin, first line: the engine ``{"model": DIR, "seed": 0, "options": {LLM(...) keyword args}}``.
   stdout answers ``{"ok": true, "ready": true, "vllm": VERSION, "max_model_len": N, "pid": PID}``
   or ``{"ok": false, "error": ONE_LINE}`` (and the worker exits 1).
2. stdin, then: ``{"input": IN.json, "output": OUT.json}`` per request. ``IN.json`` holds
   ``{"prompts": [str], "seeds": [int], "penalties": [float], "add_special_tokens": bool, "n": int,
   "temperature": float, "top_p": float, "max_tokens": int, "stop": [str]}`` and optionally
   ``"images": [[image file path, ...] per prompt]``: a prompt with images goes with ``multi_modal_data``
   (the engine expands each image token of the prompt to the picture's tokens; ``prompt_tokens`` counts them).
   All prompts go to
   one ``LLM.generate`` call (prefix caching on by default); greedy (temperature 0) generates once
   and repeats the answer ``n`` times. ``OUT.json`` is written atomically
   (temporary name, then ``os.replace``): ``{"results": [[{"text", "finish_reason", "prompt_tokens",
   "completion_tokens", "error"}, ...n] per prompt]}``. stdout answers ``{"ok": true, "output": OUT,
   "prompts": N, "seconds": S}``, or ``{"ok": false, "error": ONE_LINE}`` when the request was
   refused (a validation error: the worker goes on), or ``{"ok": false, "fatal": true, "error":
   ONE_LINE}`` when the engine failed while running it (the worker then exits with code 3).
3. ``{"cmd": "shutdown"}``, an empty line or end of input: the engine shuts down, exit 0.

Prompts are tokenised here with the engine's tokenizer (``add_special_tokens`` decides BOS) and
passed as token ids; a prompt with no room for one new token gets ``finish_reason: "error"``.
Every prompt has its own seed (``SamplingParams(seed=...)``): the samples of a request do not
depend on the requests before it, nor on the other prompts of the request. On CPU, chunked
prefill is off by default: vLLM 0.32 crashes ("CPU Generator does not use offset") when a seeded
prompt is prefilled in several steps.
"""

import json
import os
import sys
import time
import traceback


def _protocol_channel():
    """A private duplicate of stdout for the protocol; fd 1 (and ``sys.stdout``) then point to
    stderr, so nothing vLLM, torch or C code prints can corrupt the protocol."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", encoding="utf-8", buffering=1)


def _say(channel, **message) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}"[:600] if text else type(exc).__name__


def _shutdown(llm) -> None:
    """Stop the engine core and join its output thread: else the process may abort at exit (134)."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is None:
        return
    try:
        core.shutdown()
    finally:
        thread = getattr(core, "output_queue_thread", None)
        if thread is not None:
            thread.join(timeout=10)


def _write_atomic(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f)
    os.replace(tmp, path)


class _ImagePrompt(list):
    """A prompt with pictures: its text tokens (for the length checks) plus what ``LLM.generate``
    needs to place the images (``multi_modal_data``: decoded pictures, in order)."""

    def __init__(self, ids: list, paths: list) -> None:
        super().__init__(ids)
        self.paths = paths

    def request(self, tokens_prompt) -> dict:
        from PIL import Image

        pictures = []
        for path in self.paths:
            with Image.open(path) as img:
                pictures.append(img.convert("RGB"))
        return tokens_prompt(prompt_token_ids=list(self), multi_modal_data={"image": pictures})


class EngineFailure(Exception):
    """The engine failed while running a request: its state is unknown, the worker must end."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(_one_line(cause))


def _generate(llm, tokenizer, max_model_len: int, job: dict, sampling_params, tokens_prompt) -> list:
    prompts = job["prompts"]
    n = int(job.get("n", 1))
    greedy = float(job["temperature"]) == 0.0
    n_gen = 1 if greedy else n        # vLLM refuses n > 1 when greedy: one answer, repeated n times
    seeds, penalties = job["seeds"], job["penalties"]
    if not len(seeds) == len(penalties) == len(prompts):
        raise ValueError("prompts, seeds and penalties differ in length")
    add = bool(job.get("add_special_tokens", True))
    images = job.get("images") or [[] for _ in prompts]
    results: list = [None] * len(prompts)
    todo, params = [], []
    for i, text in enumerate(prompts):
        ids = list(tokenizer.encode(text, add_special_tokens=add))
        if images[i]:   # the engine expands each image token of the ids to the picture's tokens
            ids = _ImagePrompt(ids, images[i])
        problem = None
        if not ids:
            problem = "empty prompt (no tokens)"
        elif len(ids) >= max_model_len:
            problem = f"prompt of {len(ids)} tokens leaves no room in max_model_len {max_model_len}"
        if problem:
            results[i] = [{"text": "", "finish_reason": "error", "prompt_tokens": len(ids), "completion_tokens": 0,
                           "error": problem} for _ in range(n)]
            continue
        todo.append((i, ids))
        params.append(sampling_params(n=n_gen, temperature=float(job["temperature"]), top_p=float(job["top_p"]),
                                      max_tokens=int(job["max_tokens"]), stop=list(job.get("stop") or []) or None,
                                      seed=int(seeds[i]), repetition_penalty=float(penalties[i])))
    try:
        requests = [ids.request(tokens_prompt) if isinstance(ids, _ImagePrompt)
                    else tokens_prompt(prompt_token_ids=ids) for _, ids in todo]
        outputs = llm.generate(requests, params, use_tqdm=False) if todo else []
    except ValueError:
        raise              # the request was refused (vLLM's validation errors); vLLM aborted what it added
    except Exception as e:
        raise EngineFailure(e) from e
    for (i, ids), res in zip(todo, outputs):
        rows = []
        for c in sorted(res.outputs, key=lambda c: c.index):
            reason = c.finish_reason if c.finish_reason in ("stop", "length") else None
            rows.append({"text": c.text, "finish_reason": reason or "error",
                         "prompt_tokens": len(res.prompt_token_ids or ids),
                         "completion_tokens": len(c.token_ids),
                         "error": None if reason else f"finish_reason {c.finish_reason!r}"})
        results[i] = rows * n if greedy else rows
    return results


def main() -> int:
    channel = _protocol_channel()
    line = sys.stdin.readline()
    try:
        cfg = json.loads(line)
        import vllm
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.platforms import current_platform

        options = {"seed": int(cfg.get("seed", 0)), "enable_prefix_caching": True}
        if current_platform.is_cpu():
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")   # starts in ~2 s instead of ~12 s
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")           # GiB; else a NUMA check refuses
            # A seeded request whose prompt is prefilled in chunks crashes on CPU (vLLM 0.32 rewinds the
            # request's generator with set_offset, which CPU generators lack): whole-prompt prefills.
            options["enable_chunked_prefill"] = False
        options.update(cfg.get("options") or {})
        llm = LLM(model=cfg["model"], **options)
    except BaseException as e:  # noqa: BLE001 - the parent gets one line, the log the traceback
        traceback.print_exc()
        _say(channel, ok=False, error=_one_line(e))
        return 1
    try:
        tokenizer = llm.get_tokenizer()
        max_model_len = int(llm.llm_engine.model_config.max_model_len)
        _say(channel, ok=True, ready=True, vllm=vllm.__version__, max_model_len=max_model_len, pid=os.getpid())
        while True:
            line = sys.stdin.readline()
            if not line.strip():
                break
            t0 = time.perf_counter()
            try:
                req = json.loads(line)
                if req.get("cmd") == "shutdown":
                    break
                with open(req["input"], encoding="utf-8") as f:
                    job = json.load(f)
                results = _generate(llm, tokenizer, max_model_len, job, SamplingParams, TokensPrompt)
                _write_atomic(req["output"], {"results": results})
                _say(channel, ok=True, output=req["output"], prompts=len(results),
                     seconds=round(time.perf_counter() - t0, 3))
            except EngineFailure as e:
                traceback.print_exc()
                _say(channel, ok=False, fatal=True, error=str(e))
                sys.stderr.flush()
                os._exit(3)    # no engine shutdown: it may hang on a broken engine
            except Exception as e:  # noqa: BLE001 - this request was refused, the engine goes on
                traceback.print_exc()
                _say(channel, ok=False, error=_one_line(e))
    finally:
        _shutdown(llm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
