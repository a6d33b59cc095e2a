"""The one connection to the Docker daemon, and the mapping of its failures to ``SandboxError``.

Every other sandbox module gets its client from :func:`client` and wraps daemon calls in
:func:`daemon_errors`, so a stopped or vanished daemon is one clear line, never a traceback from
``requests`` or ``urllib3``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import docker
import docker.errors
import requests.exceptions

from skycurate.sandbox.errors import SandboxError

#: Seconds one API call may take (commits and imports of large layers are slow on 2 cores).
API_TIMEOUT_S = 900

_local = threading.local()


def daemon_address() -> str:
    return getattr(_local, "host", None) or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


@contextlib.contextmanager
def use_host(url: str | None) -> Iterator[None]:
    """Talk to the daemon at ``url`` (``unix://``, ``tcp://``, ``ssh://``) in this thread; None = the
    default (``$DOCKER_HOST`` or the local socket). Validation spreads its workers over hosts this way."""
    if url is None:
        yield
        return
    before_host, before_client = getattr(_local, "host", None), getattr(_local, "client", None)
    _local.host, _local.client = url, None
    try:
        yield
    finally:
        cli = getattr(_local, "client", None)
        if cli is not None:
            with contextlib.suppress(Exception):
                cli.close()
        _local.host, _local.client = before_host, before_client


def _not_reachable(exc: BaseException) -> SandboxError:
    return SandboxError(f"Docker daemon not reachable at {daemon_address()}: start dockerd ({_short(exc)})")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def client() -> docker.DockerClient:
    """A docker client for this thread (the SDK's HTTP session is not shared across threads).

    Raises ``SandboxError("Docker daemon not reachable at ...: start dockerd")`` when the daemon
    does not answer a ping.
    """
    cached: docker.DockerClient | None = getattr(_local, "client", None)
    if cached is not None:
        return cached
    try:
        host = getattr(_local, "host", None)
        cli = (docker.DockerClient(base_url=host, timeout=API_TIMEOUT_S, use_ssh_client=host.startswith("ssh://"))
               if host else docker.from_env(timeout=API_TIMEOUT_S))
        cli.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise _not_reachable(exc) from exc
    _local.client = cli
    return cli


def reset_client() -> None:
    """Forget this thread's client (after the daemon restarted)."""
    cli = getattr(_local, "client", None)
    _local.client = None
    if cli is not None:
        with contextlib.suppress(Exception):
            cli.close()


@contextlib.contextmanager
def daemon_errors(what: str = "Docker call") -> Iterator[None]:
    """Map a daemon that went away (connection refused/reset, 5xx) to ``SandboxError``.

    ``docker.errors.NotFound`` and other 4xx API errors pass through: callers handle them.
    """
    try:
        yield
    except docker.errors.APIError as exc:
        if exc.is_server_error():
            raise SandboxError(f"{what} failed in the Docker daemon: {_short(exc)}") from exc
        raise
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
            ConnectionError) as exc:
        reset_client()
        raise SandboxError(
            f"Docker daemon not reachable at {daemon_address()} during {what}: start dockerd "
            f"({_short(exc)})") from exc
    except docker.errors.DockerException as exc:
        if isinstance(exc, (docker.errors.NotFound, docker.errors.ImageNotFound)):
            raise
        raise SandboxError(f"{what} failed: {_short(exc)}") from exc
