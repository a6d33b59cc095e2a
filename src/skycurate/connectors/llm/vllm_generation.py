"""vLLM's offline batch generation in vLLM's own interpreter (``.venv-vllm``), as a ``Generator``.

One persistent worker process (``vllm_generate_worker.py``) per ``VllmGenerator``: started on the
first ``generate`` (the model loads once), fed one request per ``generate`` call through JSON
files, shut down by ``close()``. Each call's prompts go to a single ``LLM.generate`` (continuous
batching, prefix caching), ``n`` samples per prompt, prompt ``i`` seeded with ``params.seed + i``
(per-request seeds), so a request gives the same samples whatever ran before it in the worker or
in a fresh one: a shard regenerated after a crash matches an uninterrupted run.

Failures: a worker that cannot start, dies, or whose engine fails while running a request is an
``EngineError`` (one line: the reason or the last line of the worker's log, and the log's path),
never a hang (``request_timeout_s`` bounds a request when set); the worker is then gone and the
next ``generate`` starts a new one. A request the engine refuses (a validation error) gives
``Generation(error=...)`` rows and the worker goes on; so does a single prompt with no room in
``max_model_len``. The worker's stderr (vLLM's logs) goes to ``log_path``.

On CPU the worker turns chunked prefill off (vLLM 0.32 crashes on a seeded prompt prefilled in
chunks); per-prompt seeds then give the same samples whatever the batch around them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from skycurate.connectors.llm import EngineError
from skycurate.connectors.llm.generation import Generation, resolve_images, resolve_penalties
from skycurate.connectors.llm.vllm_process import find_vllm_python
from skycurate.schemas.generation import SamplingParams

WORKER = Path(__file__).with_name("vllm_generate_worker.py")
_NOISE = ("it/s]", "s/it]", "Completed |")   # progress bars are no reason to show


def _log_tail(path: Path, offset: int = 0) -> str:
    """The last meaningful line the worker wrote to its log since ``offset``."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()[-20000:].decode("utf-8", errors="replace")
    except OSError:
        return "no log"
    lines = [line.strip() for line in data.replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line and not any(n in line for n in _NOISE)]
    return lines[-1][:400] if lines else "no output"


class VllmGenerator:
    """``LLM.generate`` of the model in ``model_dir`` in a persistent worker of ``python``.

    ``python``: the interpreter with vLLM; default this one when it can import vLLM, else
    ``find_vllm_python()`` (``$SKYCURATE_VLLM_PYTHON`` or ``.venv-vllm``). ``options``: more
    ``LLM(...)`` keyword arguments (they win over the named ones). ``seed``: the engine's seed;
    samples are seeded per prompt anyway. ``log_path``: the worker's log (default a temporary
    file, removed by a clean ``close()``).
    """

    def __init__(self, model_dir: str | os.PathLike, *, python: str | None = None, options: dict | None = None,
                 seed: int = 0, log_path: str | os.PathLike | None = None, max_model_len: int | None = None,
                 dtype: str | None = None, gpu_memory_utilization: float | None = None,
                 tensor_parallel_size: int | None = None, request_timeout_s: float | None = None,
                 start_timeout_s: float | None = None) -> None:
        path = Path(model_dir)
        if not path.is_dir():
            raise EngineError(f"model folder not found: {path}")
        self.path = path.resolve()
        self.name = f"vllm:{path.name}"
        if python is None:
            python = sys.executable if importlib.util.find_spec("vllm") is not None else find_vllm_python()
            if python is None:
                raise EngineError("vllm is not installed here and no vLLM interpreter was found: set "
                                  "$SKYCURATE_VLLM_PYTHON (e.g. .venv-vllm/bin/python, made by `make vllm`), "
                                  "or use engine=transformers")
        self.python = str(python)
        named = {"max_model_len": max_model_len, "dtype": dtype, "gpu_memory_utilization": gpu_memory_utilization,
                 "tensor_parallel_size": tensor_parallel_size}
        self.options: dict[str, Any] = {k: v for k, v in named.items() if v is not None} | dict(options or {})
        self.seed = seed
        self.request_timeout_s, self.start_timeout_s = request_timeout_s, start_timeout_s
        self._own_log = log_path is None
        self.log_path: Path | None = Path(log_path) if log_path is not None else None
        self.info: dict[str, Any] = {}        # the worker's ready message (vllm version, max_model_len, pid)
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._log_file = None
        self._log_offset = 0
        self._tmp: str | None = None
        self._count = 0
        self._failed = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ worker lifecycle

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        self._tmp = self._tmp or tempfile.mkdtemp(prefix="skycurate-vllm-gen-")
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"skycurate-vllm-{self.path.name}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - open while the worker lives
        self._log_offset = self._log_file.tell()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PYTHONUNBUFFERED"] = "1"
        try:
            proc = subprocess.Popen([self.python, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=self._log_file, env=env, text=True, encoding="utf-8", errors="replace",
                                    bufsize=1)
        except OSError as e:
            self._log_file.close()
            self._log_file = None
            if self._own_log:
                self.log_path.unlink(missing_ok=True)
                self.log_path = None
            raise EngineError(f"vllm worker ({self.python}) did not start: {e.strerror or e}") from None
        self._proc = proc
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(proc, self._lines), daemon=True,
                                        name=f"vllm-worker-{proc.pid}")
        self._reader.start()
        self._send({"model": str(self.path), "seed": self.seed, "options": self.options}, "the engine start")
        msg = self._receive(self.start_timeout_s, "the engine start")
        if not msg.get("ok"):
            self._discard()
            raise EngineError(f"vllm worker ({self.python}) could not start the engine for {self.path.name}: "
                              f"{msg.get('error') or 'no reason given'} (log: {self.log_path})")
        self.info = msg

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.put(line)
        except (OSError, ValueError):
            pass
        lines.put(None)

    def _send(self, message: dict, what: str) -> None:
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
            self._proc.stdin.flush()  # type: ignore[union-attr]
        except (OSError, ValueError):
            raise self._died(what) from None

    def _receive(self, timeout_s: float | None, what: str) -> dict:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                line = self._lines.get(timeout=wait)
            except queue.Empty:
                if self._proc is None or self._proc.poll() is not None:
                    raise self._died(what) from None
                if deadline is not None and time.monotonic() >= deadline:
                    self._discard()
                    raise EngineError(f"vllm worker ({self.python}) gave no answer to {what} in {timeout_s:g} s "
                                      f"on {self.path.name}; stopped it (log: {self.log_path})") from None
                continue
            if line is None:
                raise self._died(what)
            line = line.strip()
            if not line:
                continue
            try:
                return json.loads(line)
            except ValueError:
                continue   # not the protocol: nothing else should be on stdout, but never trust it

    def _died(self, what: str) -> EngineError:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self._discard()
        tail = _log_tail(self.log_path, self._log_offset) if self.log_path else "no log"
        return EngineError(f"vllm worker ({self.python}) died during {what} on {self.path.name} "
                           f"(exit {code}): {tail} (log: {self.log_path})")

    def _discard(self) -> None:
        """Kill the worker (after a failure); the next ``generate`` starts a new one. The log stays."""
        self._failed = True
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()  # type: ignore[union-attr]
                except (OSError, ValueError):
                    pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        """Shut the worker down cleanly (the engine releases its memory) and remove the request files."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                try:
                    proc.stdin.write(json.dumps({"cmd": "shutdown"}) + "\n")  # type: ignore[union-attr]
                    proc.stdin.close()  # type: ignore[union-attr]
                except (OSError, ValueError):
                    pass
                try:
                    code = proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait()
                if code != 0:
                    self._failed = True
                if proc.stdout is not None:
                    proc.stdout.close()
            if self._reader is not None:
                self._reader.join(timeout=5)
                self._reader = None
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
            if self._own_log and not self._failed and self.log_path is not None:
                self.log_path.unlink(missing_ok=True)
                self.log_path = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # a fallback for callers that forget close(); never raise from a finaliser
        with contextlib.suppress(Exception):
            if getattr(self, "_proc", None) is not None or getattr(self, "_tmp", None) is not None:
                self.close()

    # ------------------------------------------------------------------ generation

    def _image_file(self, data: bytes, written: list[Path]) -> str:
        import hashlib
        import tempfile

        self._tmp = self._tmp or tempfile.mkdtemp(prefix="skycurate-vllm-gen-")
        path = Path(self._tmp, f"image-{hashlib.sha256(data).hexdigest()[:24]}")  # type: ignore[arg-type]
        if path not in written:
            path.write_bytes(data)
            written.append(path)
        return str(path)

    def generate(self, prompts: Sequence[str], params: SamplingParams, *, penalties: Sequence[float] | None = None,
                 add_special_tokens: bool = True,
                 images: Sequence[Sequence[bytes]] | None = None) -> list[list[Generation]]:
        """All prompts in one ``LLM.generate``; prompt ``i`` seeded with ``params.seed + i``, with its
        ``images[i]`` as ``multi_modal_data`` (written to files the worker reads)."""
        pens = resolve_penalties(prompts, params, penalties)
        pics = resolve_images(prompts, images)
        if not prompts:
            return []
        job = {"prompts": list(prompts), "seeds": [params.seed + i for i in range(len(prompts))], "penalties": pens,
               "add_special_tokens": add_special_tokens, "n": params.n, "temperature": params.temperature,
               "top_p": params.top_p, "max_tokens": params.max_new_tokens, "stop": list(params.stop)}
        written: list[Path] = []
        if any(pics):
            job["images"] = [[self._image_file(b, written) for b in row] for row in pics]
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    raise self._died("the wait between requests")
                self._start()
            self._count += 1
            src = Path(self._tmp, f"request-{self._count:06d}.json")  # type: ignore[arg-type]
            dst = Path(self._tmp, f"result-{self._count:06d}.json")  # type: ignore[arg-type]
            src.write_text(json.dumps(job), encoding="utf-8")
            try:
                what = f"a request of {len(prompts)} prompts"
                self._send({"input": str(src), "output": str(dst)}, what)
                msg = self._receive(self.request_timeout_s, what)
                if not msg.get("ok") and msg.get("fatal"):
                    self._discard()
                    raise EngineError(f"vllm engine failed on {what} with {self.path.name}: {msg.get('error')} "
                                      f"(log: {self.log_path})")
                if not msg.get("ok"):
                    error = f"vllm: {msg.get('error') or 'request failed'}"
                    return [[Generation(text="", finish_reason="error", error=error) for _ in range(params.n)]
                            for _ in prompts]
                results = json.loads(dst.read_text(encoding="utf-8"))["results"]
            finally:
                src.unlink(missing_ok=True)
                dst.unlink(missing_ok=True)
                for f in written:
                    f.unlink(missing_ok=True)
        if len(results) != len(prompts):
            raise EngineError(f"vllm worker answered {len(results)} results for {len(prompts)} prompts")
        return [[Generation(text=r["text"], finish_reason=r["finish_reason"], prompt_tokens=r["prompt_tokens"],
                            completion_tokens=r["completion_tokens"], error=r.get("error")) for r in rows]
                for rows in results]
