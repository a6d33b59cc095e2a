"""Failpoints for the fault-injection tests: ``SKYCURATE_KILL_AT=<point>[#n]`` kills the run with
SIGKILL the n-th time (default: first) the code reaches ``point``.

Crash safety is tested the way databases test it (FoundationDB's simulation, TiKV's fail-rs): a
kill at a named line is deterministic where a timer racing the work is not. The kill takes the
whole process group when the run leads one (the CLI started in its own session: its Spark JVM and
Prefect server die with it, as with ``kill -9 -PGID``). Unset, a point costs one environment lookup.

Points: ``task:<dataset task>`` (a stage is about to run), ``publish:<dataset>:written`` (its files
are staged, no number claimed), ``publish:<dataset>:claimed`` (a number is claimed, nothing
visible). Kills mid-validation and mid-generation need no point: the tests kill when the journal
shows finished work and a container or engine is busy.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "SKYCURATE_KILL_AT"
_hits: dict[str, int] = {}


def point(name: str) -> None:
    target = os.environ.get(KILL_AT_ENV)
    if not target:
        return
    wanted, _, nth = target.partition("#")
    if wanted != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        if os.getpgid(0) == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
