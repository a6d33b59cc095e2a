"""The Math-Verify worker-process pool: symbolic comparisons run out of process, with a timeout each.

Split from ``verify`` because process management (pipes, timeouts, replacing a stuck worker, the
per-process pool and its lock) is a concern of its own. Math-Verify can hang on adversarial input
(sympy), so it runs in worker processes (``MathVerifyPool``) with a timeout per comparison: a
worker that runs past it is killed and replaced, the pair gets ``timeout``, and the rest of the
batch goes on. All the Math-Verify comparisons of a batch are handed to the pool in one call, which
deals them out to the warm workers in chunks.

Workers are plain ``python -c`` child processes started with ``subprocess`` (not ``fork``, not
``multiprocessing`` spawn, so a caller's ``__main__`` is never re-imported and a script without a
``__main__`` guard still works), talking over ``multiprocessing.connection`` pipes; they boot by
importing ``_worker_main`` from this module (``_WORKER_BOOT``). They stay up between batches, exit
when the parent goes away, and are stopped at exit or by ``shutdown_pool``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path

from skycurate.errors import SkycurateError
from skycurate.schemas.cot_verify import (
    TIMEOUT,
    UNPARSEABLE_ANSWER,
    UNPARSEABLE_REFERENCE,
    VERIFIER_ERROR,
    VerifyConfig,
)
from skycurate.stages.cot.answers import _clean

__all__ = ["MathVerifyPool", "shutdown_pool"]


def _mv_compare(reference: str, answer: str) -> tuple:
    """Runs in a worker: ("ok", bool) or (unparseable_reference,) / (unparseable_answer,)."""
    from math_verify import parse, verify

    def wrap(s: str) -> str:
        s = _clean(s.replace("\\$", ""))
        return s if "$" in s or "\\[" in s or "\\(" in s else f"${s}$"

    # parse() falls back to the raw string when sympy cannot read it: that is "unparseable" here
    # (equal strings were already decided without Math-Verify).
    gold = parse(wrap(reference), parsing_timeout=None)
    if all(isinstance(x, str) for x in gold):
        return (UNPARSEABLE_REFERENCE,)
    pred = parse(wrap(answer), parsing_timeout=None)
    if all(isinstance(x, str) for x in pred):
        return (UNPARSEABLE_ANSWER,)
    return ("ok", bool(verify(gold, pred, timeout_seconds=None)))


def _limit_memory(extra_mb: int) -> None:
    try:
        import resource

        with open("/proc/self/status", encoding="ascii") as f:
            vm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = vm_kb * 1024 + extra_mb * 2**20
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, StopIteration, ValueError):
        pass  # not Linux: no limit


def _worker_main(read_fd: int, write_fd: int, max_memory_mb: int) -> None:
    """A worker process: answer chunks of (key, reference, answer) with (key, result), one at a time."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    parent = os.getppid()

    def watchdog() -> None:  # the parent died (killed task, crash): leave with it
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled": we time out
    _mv_compare("1", "1")  # import sympy and the LaTeX parser before the first timed comparison
    if max_memory_mb:
        _limit_memory(max_memory_mb)
    outbox.send(("ready", os.getpid()))
    while True:
        try:
            chunk = inbox.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for key, reference, answer in chunk:
            try:
                result = _mv_compare(reference, answer)
            except Exception as e:  # noqa: BLE001 - MemoryError, RecursionError, sympy's own errors
                result = (VERIFIER_ERROR, type(e).__name__)
            outbox.send((key, result))


_WORKER_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
                "from skycurate.stages.cot.math_pool import _worker_main; "
                "_worker_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))")
_START_TIMEOUT_S = 120.0   # a worker not ready after this long is a broken environment
_MAX_START_FAILURES = 3
_CHUNK_MAX = 16            # comparisons handed to a worker at once


def _import_root() -> str:
    return str(Path(__file__).resolve().parents[3])  # .../src, the folder holding skycurate/


class _Worker:
    def __init__(self, max_memory_mb: int | None):
        child_r, parent_w = os.pipe()
        parent_r, child_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOT, json.dumps([_import_root()]), str(child_r), str(child_w),
                 str(max_memory_mb or 0)],
                pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL)  # the caller's stdout may carry data (--json): never write to it
        except BaseException:
            os.close(parent_r)
            os.close(parent_w)
            raise
        finally:
            os.close(child_r)
            os.close(child_w)
        self.to_child = Connection(parent_w, readable=False)
        self.from_child = Connection(parent_r, writable=False)
        self.ready = False
        self.born = time.monotonic()
        self.since = 0.0                 # when the comparison at the head of ``items`` started
        self.items: deque[int] = deque()  # keys sent and not answered, in the order they run

    def stop(self, grace_s: float = 0.0) -> None:
        """Wait up to ``grace_s`` for it to exit (after it was sent None), then kill it."""
        if grace_s > 0:
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.to_child.close()
        self.from_child.close()


class MathVerifyPool:
    """``workers`` long-lived Math-Verify processes; ``compare`` runs a batch of (reference, answer)
    pairs with a timeout per pair. A worker past its timeout is killed and replaced; the pair gets
    ``("timeout",)`` and the others of its chunk go back to the queue."""

    def __init__(self, workers: int = 2, max_memory_mb: int | None = 2048):
        self.size = workers
        self.max_memory_mb = max_memory_mb
        self.pid = os.getpid()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    @property
    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def compare(self, pairs: Sequence[tuple[str, str]], timeout_s: float) -> list[tuple]:
        """One result per pair, in order: ("ok", bool), ("unparseable_reference",),
        ("unparseable_answer",), ("timeout",) or ("verifier_error", why)."""
        if not pairs:
            return []
        with self._lock:
            try:
                return self._run(list(pairs), timeout_s)
            except BaseException:
                self.close()  # a half-done run leaves workers busy: start clean next time
                raise

    def close(self) -> None:
        """Stop the workers: idle ones are asked to exit (all at once), busy ones are killed."""
        workers, self._workers = self._workers, []
        asked = []
        for w in workers:
            idle = w.ready and not w.items and w.proc.poll() is None
            if idle:
                try:
                    w.to_child.send(None)
                except OSError:
                    idle = False
            asked.append(idle)
        for w, idle in zip(workers, asked, strict=True):
            w.stop(grace_s=1.0 if idle else 0.0)

    def _replace(self, w: _Worker) -> None:
        w.stop()
        self._workers[self._workers.index(w)] = _Worker(self.max_memory_mb)

    def _run(self, pairs: list[tuple[str, str]], timeout_s: float) -> list[tuple]:
        results: list[tuple | None] = [None] * len(pairs)
        pending: deque[int] = deque(range(len(pairs)))
        remaining = len(pairs)
        start_failures = 0
        while len(self._workers) < self.size:
            self._workers.append(_Worker(self.max_memory_mb))

        def lost(w: _Worker, why: tuple) -> None:
            nonlocal remaining, start_failures
            if w.items:
                results[w.items.popleft()] = why
                remaining -= 1
                pending.extendleft(reversed(w.items))
                w.items.clear()
            elif not w.ready:
                start_failures += 1
                if start_failures >= _MAX_START_FAILURES:
                    raise SkycurateError(
                        f"math-verify worker processes fail to start ({sys.executable}); is math-verify "
                        f"(with its antlr4 extra) installed in this environment?")
            self._replace(w)

        while remaining:
            now = time.monotonic()
            for w in self._workers:  # hand out work to idle workers
                if not pending:
                    break
                if w.ready and not w.items:
                    k = max(1, min(_CHUNK_MAX, -(-len(pending) // self.size), len(pending)))
                    keys = [pending.popleft() for _ in range(k)]
                    w.items.extend(keys)
                    w.since = now
                    try:
                        w.to_child.send([(key, *pairs[key]) for key in keys])
                    except OSError:
                        pass  # it died; its pipe reports EOF below
            deadlines = [w.since + timeout_s if w.items else w.born + _START_TIMEOUT_S
                         for w in self._workers if w.items or not w.ready]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            by_conn = {id(w.from_child): w for w in self._workers}
            for conn in wait([w.from_child for w in self._workers], wait_s):
                w = by_conn[id(conn)]
                try:
                    while conn.poll():
                        msg = conn.recv()
                        if msg[0] == "ready":
                            w.ready = True
                            start_failures = 0
                            continue
                        key, result = msg
                        if not w.items or w.items[0] != key:  # cannot happen: results come in order
                            raise RuntimeError(f"math-verify worker answered {key}, expected {list(w.items)[:1]}")
                        w.items.popleft()
                        results[key] = result
                        remaining -= 1
                        w.since = time.monotonic()
                except (EOFError, OSError):
                    lost(w, (VERIFIER_ERROR, "worker died"))
            now = time.monotonic()
            for w in list(self._workers):
                if w.items and now - w.since >= timeout_s and not w.from_child.poll():
                    lost(w, (TIMEOUT,))
                elif not w.ready and not w.items and now - w.born >= _START_TIMEOUT_S:
                    lost(w, (VERIFIER_ERROR, "worker did not start"))
        return results  # type: ignore[return-value]


_POOL: MathVerifyPool | None = None
_POOL_LOCK = threading.Lock()


def _get_pool(cfg: VerifyConfig) -> MathVerifyPool:
    global _POOL
    with _POOL_LOCK:
        pool = _POOL
        if pool is not None and pool.pid != os.getpid():
            pool = _POOL = None  # inherited through fork: the parent's workers, not ours to use or stop
        if pool is not None and (pool.size, pool.max_memory_mb) != (cfg.workers, cfg.worker_max_memory_mb):
            pool.close()
            pool = _POOL = None
        if pool is None:
            pool = _POOL = MathVerifyPool(cfg.workers, cfg.worker_max_memory_mb)
        return pool


def shutdown_pool() -> None:
    """Stop this process's Math-Verify workers (they are started again when needed)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


atexit.register(shutdown_pool)
