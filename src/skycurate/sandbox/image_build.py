"""The machinery every image layer shares: names, paths, labels, and the build step.

Split out of ``images`` so that the base image (``base_image``) and the env and instance images
(``images``) build the same way without importing each other. A build step runs a script as root
in a container of the layer below (the host CA bundle next to the script), confined like a test
run (``BuildConfinement``: limits, capabilities, network only where a step downloads), and commits
the container as the new layer (``docker commit``, not a Dockerfile); see ``images`` for why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import requests.exceptions

from skycurate.sandbox.daemon import client, daemon_errors
from skycurate.sandbox.errors import BuildError

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- constants

HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SKY_USER = "sky"                        # runs the tests: /testbed is its, the venv is read-only to it
SKY_UID = 1000
BUILD_USER = "builder"                  # runs installs (registry packages, the repo's setup): owns the venv
BUILD_UID = 1001
VENV = "/opt/venv"
TESTBED = "/testbed"
BUILD_DIR = "/skycurate-build"          # build script + CA bundle; deleted before each commit
LABEL = "skycurate"                     # every image and container: skycurate=1
RUN_LABEL = f"{LABEL}.run"              # the run that made a container or image (``run_id()``)
OWNER_LABEL = f"{LABEL}.owner"          # ``<host>:<pid>`` of the process that made it
KEEP_LABEL = f"{LABEL}.keep"            # ``1``: an instance image kept on purpose (``--keep-images``)
PATH_ENV = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BASE_REPO = "skycurate/base"
ROOTFS_REPO = "skycurate/rootfs"
ENV_REPO = "skycurate/env"
INSTANCE_REPO = "skycurate/instance"

#: Seconds a build step may run before its container is killed.
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class BuildConfinement:
    """How a build container is confined. A build runs code from outside (apt and PyPI packages,
    a repository's own ``setup.py``), so it gets limits like a test run: memory, CPUs, pids,
    no-new-privileges, every capability dropped except the few that root needs to install
    packages, and the network only when the step must download."""

    network: bool = True
    memory: str = "4g"
    cpus: float = 2.0
    pids: int = 2048
    #: what apt/dpkg and useradd need as root; a step that runs only as ``sky`` needs none of them
    caps: tuple[str, ...] = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID")


#: the base and env steps: root with package-manager capabilities, network for the registries
REGISTRY_STEP = BuildConfinement()

# Re-applied at every commit (a build container runs as root in / with its own command).
_COMMIT_CHANGES = [f"USER {SKY_USER}", f"WORKDIR {TESTBED}", 'CMD ["/bin/bash"]']

# Exports for the network steps of a build script: the host CA bundle, copied in next to it
# (empty when the host has none: then the image's own bundle is used).
_CA_EXPORTS = f"""\
if [ -s {BUILD_DIR}/ca.crt ]; then
  export PIP_CERT={BUILD_DIR}/ca.crt REQUESTS_CA_BUNDLE={BUILD_DIR}/ca.crt SSL_CERT_FILE={BUILD_DIR}/ca.crt
  export GIT_SSL_CAINFO={BUILD_DIR}/ca.crt CURL_CA_BUNDLE={BUILD_DIR}/ca.crt
fi
"""


# ---------------------------------------------------------------------------------- helpers


_RUN_IDS: dict[int, str] = {}


def run_id() -> str:
    """This process's run id (``$SKYCURATE_RUN_ID``, else random per process): ``skycurate sandbox
    cleanup --run ID`` removes what one run left without touching other runs."""
    return os.environ.get("SKYCURATE_RUN_ID") or _RUN_IDS.setdefault(os.getpid(), uuid.uuid4().hex[:12])


def run_labels() -> dict[str, str]:
    """The labels that tie a container (and the image committed from it) to this run and process."""
    return {RUN_LABEL: run_id(), OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"}


def owner_gone(labels: Mapping[str, str]) -> bool:
    """Whether the process that made a container or image has ended, so nothing uses it any more.
    A process on another host cannot be checked: it counts as alive. Without an owner label (made
    before owners were recorded) there is no process to wait for."""
    owner = labels.get(OWNER_LABEL)
    if not owner:
        return True
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:   # alive, another user's
        return False
    return False


def cleanup_selects(labels: Mapping[str, str], run: str | None = None, include_kept: bool = False) -> bool:
    """The one rule of ``sandbox cleanup``: never a kept image unless ``include_kept``; with ``run``
    only what that run made, else only what a process that has ended made."""
    if labels.get(KEEP_LABEL) == "1" and not include_kept:
        return False
    return labels.get(RUN_LABEL) == run if run is not None else owner_gone(labels)


def cache_dir() -> Path:
    root = os.environ.get("SKYCURATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "skycurate")
    return Path(root)


def _hash(*parts: object, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:n]


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def _build_lock(name: str) -> Iterator[None]:
    """One builder per image tag, across threads and processes."""
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault(name, threading.Lock())
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".lock")
    with tlock, open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _get_image(tag: str):
    with daemon_errors("image inspect"):
        try:
            return client().images.get(tag)
        except docker.errors.ImageNotFound:
            return None


def image_exists(tag: str) -> bool:
    return _get_image(tag) is not None


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tar_files(files: dict[str, bytes | str], mode: int = 0o644) -> bytes:
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = set()
        for name in files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(raw), mode, now
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def _host_ca() -> bytes:
    try:
        return Path(os.environ.get("SKYCURATE_CA_BUNDLE") or HOST_CA_BUNDLE).read_bytes()
    except OSError:
        return b""


def _build_step(from_image: str, script: str, *, tag: str, what: str,
                files: dict[str, bytes | str] | None = None,
                put: Sequence[tuple[str, object]] = (),
                changes: Sequence[str] = (), timeout_s: int = BUILD_TIMEOUT_S,
                log_path: str | os.PathLike | None = None,
                error_for_exit: dict[int, type[BuildError]] | None = None,
                confinement: BuildConfinement = REGISTRY_STEP) -> str:
    """Run ``script`` as root in a container of ``from_image`` (host CA bundle at
    ``BUILD_DIR/ca.crt``), confined by ``confinement``, and commit the result as ``tag``. The
    container is always removed."""
    cli = client()
    payload = {f"{BUILD_DIR.strip('/')}/build.sh": script,
               f"{BUILD_DIR.strip('/')}/ca.crt": _host_ca()}
    for name, data in (files or {}).items():
        payload[f"{BUILD_DIR.strip('/')}/{name}"] = data
    container = None
    t0 = time.monotonic()
    text = ""
    try:
        with daemon_errors(what):
            try:
                container = cli.containers.create(
                    from_image, command=["bash", f"{BUILD_DIR}/build.sh"], user="0:0",
                    working_dir="/", labels={LABEL: "1", **run_labels()},   # they end up in the image
                    name=f"skycurate-build-{os.urandom(4).hex()}", detach=True,
                    network_mode="bridge" if confinement.network else "none",
                    mem_limit=confinement.memory, memswap_limit=confinement.memory,
                    nano_cpus=int(confinement.cpus * 1e9), pids_limit=confinement.pids,
                    security_opt=["no-new-privileges"], cap_drop=["ALL"], cap_add=list(confinement.caps))
            except docker.errors.ImageNotFound as exc:
                raise BuildError(f"{what}: image {from_image} does not exist") from exc
            container.put_archive("/", _tar_files(payload))
            for path, data in put:
                container.put_archive(path, data)
            container.start()
            timed_out, started = False, time.monotonic()
            try:
                status = container.wait(timeout=timeout_s)["StatusCode"]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                if time.monotonic() - started < timeout_s:
                    raise   # the daemon connection broke, the build did not time out: a SandboxError
                timed_out, status = True, -1
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
            text = container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")
            if log_path:
                Path(log_path).parent.mkdir(parents=True, exist_ok=True)
                Path(log_path).write_text(text, encoding="utf-8")
            if timed_out:
                raise BuildError(f"{what}: timed out after {timeout_s}s", _tail(text),
                                 str(log_path) if log_path else None)
            if status != 0:
                cls = (error_for_exit or {}).get(status, BuildError)
                raise cls(f"{what} failed (exit {status}): {failure_cause(text)}", _tail(text),
                          str(log_path) if log_path else None)
            container.commit(repository=tag.split(":")[0], tag=tag.split(":")[1],
                             changes=[*_COMMIT_CHANGES, *changes])
    finally:
        if container is not None:
            _remove_container(container)
    log.info("%s: built %s in %.1fs", what, tag, time.monotonic() - t0)
    return tag


# pip's closing lines ("hint: See above for details.", "note: This error originates from a
# subprocess") say nothing; the cause is the last exception or ERROR line above them.
_CAUSES = (re.compile(r"^[\w.]*(?:Error|Exception|Failed): \S"),                 # a Python exception
           re.compile(r"^(?:ERROR: (?!Failed building)|error: (?!subprocess-exited))"))  # pip / the shell
_NOISE = ("+ ", ">>>>>", "hint:", "note:", "╰─>", "×")


def failure_cause(text: str) -> str:
    """The line that says why a build step failed: the last exception of the log tail, else its
    last ``ERROR:`` line, else its last meaningful line."""
    lines = [x.strip() for x in text.splitlines()[-200:]]
    for cause in _CAUSES:
        for line in reversed(lines):
            if cause.match(line):
                return line[:300]
    for line in reversed(lines):
        if line and not line.startswith(_NOISE):
            return line[:300]
    return ""


def _remove_container(container) -> None:
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except Exception as exc:  # noqa: BLE001 - never mask the real error; cleanup_containers() catches it later
        log.warning("could not remove container %s: %s", getattr(container, "short_id", "?"), exc)
