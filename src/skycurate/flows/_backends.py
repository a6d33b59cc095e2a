"""Start what a flow run needs -- Spark and Prefect's local API -- side by side, before the run.

Left to themselves they start one after the other when first needed: Prefect's client imports
its whole server (seconds) just to spawn the ephemeral API as a uvicorn subprocess and wait for
it, then the first task starts the Spark JVM. Here the API subprocess is spawned first (it is
the same server, same SQLite database under ``PREFECT_HOME``, started the same way Prefect
starts its ephemeral API), the JVM boots while it does, and Prefect is imported in the
meantime with ``PREFECT_API_URL`` pointing at it, so nothing in the process starts a second one.

Import this module before Prefect: it does not import Prefect itself until the block runs.
With ``PREFECT_API_URL`` already set nothing is started but Spark.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

from skycurate.errors import SkycurateError
from skycurate.schemas.config import SparkConfig

log = logging.getLogger(__name__)

API_ENV = "PREFECT_API_URL"
UI_ENV = "PREFECT_UI_URL"
STARTUP_TIMEOUT_S = 120.0  # a first run on a new PREFECT_HOME creates the database (migrations)
_ADDRESS_IN_USE = 3  # uvicorn's exit code when the port is taken


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn_api(port: int) -> subprocess.Popen:
    """Prefect's ephemeral API, launched as Prefect launches it (UI off, ephemeral services)."""
    prefect_dir = Path(find_spec("prefect").origin).parent
    env = {k: v for k, v in os.environ.items() if k != API_ENV}
    env.update({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"})
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "error", "--lifespan", "on"],
        env=env, stdin=subprocess.DEVNULL)


class _LocalApi:
    def __init__(self) -> None:
        self.port = _free_port()
        self.process = _spawn_api(self.port)
        self.started = time.monotonic()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        while time.monotonic() - self.started < timeout_s:
            code = self.process.poll()
            if code == _ADDRESS_IN_USE:  # lost the port to another process: take another one
                self.port = _free_port()
                self.process = _spawn_api(self.port)
                continue
            if code is not None:
                raise SkycurateError(f"the local Prefect API exited with code {code} while starting "
                                     f"(PREFECT_HOME={os.environ.get('PREFECT_HOME', '~/.prefect')})")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        log.info("local Prefect API ready at %s in %.1f s", self.url,
                                 time.monotonic() - self.started)
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise SkycurateError(f"the local Prefect API did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _import_in_background(modules: tuple[str, ...]) -> threading.Thread:
    import importlib

    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the caller's own import reports it
                return

    thread = threading.Thread(target=run, name="skycurate-imports", daemon=True)
    thread.start()
    return thread


@contextmanager
def local_backends(spark: SparkConfig | None = None, preload: tuple[str, ...] = ()) -> Iterator[None]:
    """Run the block with Spark started and a Prefect API to talk to.

    Without ``PREFECT_API_URL`` a local API is spawned first and stopped when the block ends;
    the block sees ``PREFECT_API_URL`` set to it. ``preload`` names modules (the flow's) to
    import while the JVM and the API start. Flow-run heartbeats are off for a local API: they
    let a long-lived server detect crashed runs, and stopping the heartbeat thread costs up to
    two seconds per run.
    """
    api = None
    ui_env_set = False
    if not os.environ.get(API_ENV) and "prefect" not in sys.modules:
        api = _LocalApi()
        os.environ[API_ENV] = api.url
        if UI_ENV not in os.environ:  # the local API serves no UI: no "View at" links to it
            os.environ[UI_ENV], ui_env_set = "", True
    try:
        imports = _import_in_background(("prefect", *preload))
        from skycurate.spark import get_spark

        get_spark(spark)  # here, not in a thread: Spark's Ctrl-C handler needs the main thread
        imports.join()
        if api is not None:
            api.wait_ready()
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        if api is not None:
            with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                yield
        else:
            yield
    finally:
        if api is not None:
            _drain_prefect()  # logs and events still queued go out before their API stops
            os.environ.pop(API_ENV, None)
            if ui_env_set:
                os.environ.pop(UI_ENV, None)
            api.stop()


def _drain_prefect(timeout_s: float = 5.0) -> None:
    if "prefect" not in sys.modules:
        return
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout_s)
        EventsWorker.drain_all(timeout=timeout_s)
    except Exception as e:  # noqa: BLE001 - losing a log line must not fail a finished run
        log.debug("draining Prefect's log and event workers failed: %s", e)
