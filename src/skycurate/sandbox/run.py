"""Confined test runs: patches applied and tests run in one throw-away container.

A run = create a container of the instance image (network off, memory/CPU/pids limits, non-root
user, no new privileges, all capabilities dropped, tmpfs /tmp, labelled ``skycurate=1`` plus its
run and owning process, ``image_build.run_labels``), copy the patches and a script into it, start
it, wait at most ``limits.timeout_s`` (then kill), read its log as UTF-8 with replacement, parse the
statuses, remove the container (always: also on errors, timeouts and Ctrl-C).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shlex
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
import requests.exceptions
from docker.types import LogConfig

from skycurate.sandbox.daemon import client, daemon_errors
from skycurate.sandbox.errors import PatchError, SandboxError
from skycurate.sandbox.image_build import cleanup_selects, run_labels
from skycurate.sandbox.images import HOST_CA_BUNDLE, LABEL, SKY_UID, TESTBED
from skycurate.sandbox.logs import END_MARKER, START_MARKER, extract_test_output, parse_junit_xml, parse_pytest_log
from skycurate.schemas.swe import SandboxLimits

log = logging.getLogger(__name__)

DEFAULT_TEST_CMD = "python -m pytest -rA --tb=no -p no:cacheprovider"
RUN_DIR = "/skycurate"                     # script, patches, junit.xml (container layer, uid 1000)
TMPFS_SIZE = "1g"                          # /tmp is a tmpfs (charged to the memory limit)
LOG_MAX_SIZE, LOG_MAX_FILES = "64m", "2"   # a test printing forever cannot fill the disk
PATCH_FAILED_MARKER = ">>>>> Patch Apply Failed:"
_PATCH_EXIT = 97

_SCRIPT = """\
#!/bin/bash
exec 2>&1
cd {testbed} || exit 90
apply_patch() {{
  if git apply --verbose --whitespace=nowarn "$1"; then return 0; fi
  echo ">>>>> git apply failed for $1; trying patch --fuzz"
  if patch --batch --forward --fuzz=5 -p1 --dry-run -i "$1"; then
    patch --batch --forward --fuzz=5 -p1 -i "$1"
    return $?
  fi
  return 1
}}
for p in {run_dir}/patches/*.diff; do
  [ -e "$p" ] || continue
  echo ">>>>> Applying patch $p"
  if ! apply_patch "$p"; then echo "{failed} $p"; exit {patch_exit}; fi
  echo ">>>>> Applied patch $p"
done
echo "{start}"
{test_cmd}
rc=$?
echo "{end} (exit $rc)"
exit $rc
"""


@dataclass
class RunResult:
    exit_code: int | None          # None when the run was killed at the timeout
    timed_out: bool
    log_text: str
    statuses: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0        # container start to exit
    oom_killed: bool = False
    log_path: str | None = None

    @property
    def test_output(self) -> str:
        return extract_test_output(self.log_text)


def _tar(files: Mapping[str, bytes], uid: int) -> bytes:
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = sorted({"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime, info.uid, info.gid = tarfile.DIRTYPE, 0o755, now, uid, uid
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, now, uid, uid
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _uid(user: str) -> int:
    head = user.split(":")[0]
    return int(head) if head.isdigit() else SKY_UID


def build_command(test_cmd: str, test_files: Sequence[str], junit: bool = False) -> str:
    cmd = test_cmd.strip()
    if test_files:
        cmd += " " + " ".join(shlex.quote(f) for f in test_files)
    if junit:
        cmd += f" --junitxml={RUN_DIR}/junit.xml -o junit_family=xunit1"
    return cmd


def _diff_files(patch: str) -> list[str]:
    files = []
    for line in patch.splitlines():
        m = re.match(r"^diff --git a/(\S+) b/(\S+)", line)
        if m:
            files.append(m.group(2))
        elif line.startswith("+++ ") and not files:
            path = line[4:].split("\t")[0].strip()
            if path != "/dev/null":
                files.append(path.removeprefix("b/"))
    return list(dict.fromkeys(files))


def _failed_files(apply_log: str) -> list[str]:
    files = []
    for pattern in (r"error: patch failed: (.+?):\d+",
                    (r"error: (.+?): (?:No such file or directory|does not exist in index|"
                     r"already exists in working directory|patch does not apply)"),
                    r"can't find file to patch at input line \d+.*?\n.*?\+\+\+ (?:b/)?(\S+)"):
        files += re.findall(pattern, apply_log, flags=re.DOTALL if "can't" in pattern else 0)
    return list(dict.fromkeys(f.strip() for f in files))


def run_tests(image: str, *, patches: Sequence[str] = (), test_cmd: str = DEFAULT_TEST_CMD,
              test_files: Sequence[str] = (), limits: SandboxLimits | None = None,
              log_path: str | os.PathLike | None = None, junit: bool = False,
              env: Mapping[str, str] | None = None, labels: Mapping[str, str] | None = None) -> RunResult:
    """Apply ``patches`` (unified diffs, in order: ``git apply``, else ``patch -p1 --fuzz``) to
    /testbed in a fresh container of ``image`` and run ``test_cmd`` + ``test_files`` there.

    Raises ``PatchError`` when a patch applies neither way (the log is still written). A run that
    exceeds ``limits.timeout_s`` is killed and returned with ``timed_out=True``. With ``junit``
    pytest also writes JUnit XML, whose statuses are merged into ``statuses``.
    """
    limits = limits or SandboxLimits()
    files: dict[str, bytes] = {}
    kept = [p for p in patches if p and p.strip()]
    for i, patch in enumerate(kept):
        text = patch if patch.endswith("\n") else patch + "\n"
        files[f"{RUN_DIR.strip('/')}/patches/{i:03d}.diff"] = text.encode("utf-8", errors="surrogateescape")
    script = _SCRIPT.format(testbed=TESTBED, run_dir=RUN_DIR, failed=PATCH_FAILED_MARKER,
                            patch_exit=_PATCH_EXIT, start=START_MARKER, end=END_MARKER,
                            test_cmd=build_command(test_cmd, test_files, junit))
    files[f"{RUN_DIR.strip('/')}/run.sh"] = script.encode()
    files.setdefault(f"{RUN_DIR.strip('/')}/patches/.keep", b"")

    # Nothing that changes how tests behave (no COLUMNS, PYTHONDONTWRITEBYTECODE, ...).
    environment = {"LANG": "C.UTF-8"}
    volumes = {}
    if limits.network and os.path.exists(HOST_CA_BUNDLE):
        # Containers on the default bridge reach PyPI only through the host's CA bundle.
        volumes[HOST_CA_BUNDLE] = {"bind": HOST_CA_BUNDLE, "mode": "ro"}
        environment.update(PIP_CERT=HOST_CA_BUNDLE, REQUESTS_CA_BUNDLE=HOST_CA_BUNDLE,
                           SSL_CERT_FILE=HOST_CA_BUNDLE)
    environment.update(env or {})
    done = _run_container(image, files, ["bash", f"{RUN_DIR}/run.sh"], limits, environment, volumes,
                          {f"{LABEL}.role": "test", **(labels or {})},
                          f"{RUN_DIR}/junit.xml" if junit else None)
    raw, junit_xml, exit_code, timed_out, oom, duration = (done.raw, done.file, done.exit_code, done.timed_out,
                                                            done.oom, done.duration_s)

    text = raw.decode("utf-8", errors="replace")
    if timed_out:
        text += f"\n>>>>> Timed out after {limits.timeout_s}s: container killed\n"
        exit_code = None
    if oom:
        text += "\n>>>>> Out of memory: the container was killed by the OOM killer\n"
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        Path(log_path).write_text(text, encoding="utf-8")

    if exit_code == _PATCH_EXIT and PATCH_FAILED_MARKER in text and START_MARKER not in text:
        m = re.search(re.escape(PATCH_FAILED_MARKER) + r" \S+/(\d+)\.diff", text)
        index = int(m.group(1)) if m else -1
        apply_log = text.split(f">>>>> Applying patch {RUN_DIR}/patches/{index:03d}.diff", 1)[-1]
        failed = _failed_files(apply_log) or (_diff_files(kept[index]) if 0 <= index < len(kept) else [])
        # index into the caller's list (empty patches were skipped)
        caller_index = [i for i, p in enumerate(patches) if p and p.strip()][index] if index >= 0 else index
        raise PatchError(f"patch {caller_index} does not apply to {image}: "
                         f"{', '.join(failed) or 'see log'}", index=caller_index, files=failed,
                         log_tail="\n".join(apply_log.strip().splitlines()[-30:]))

    statuses = parse_pytest_log(extract_test_output(text))
    if junit_xml:
        try:
            for test_id, status in parse_junit_xml(junit_xml, test_files).items():
                statuses.setdefault(test_id, status)
        except (ValueError, SyntaxError) as exc:   # ET.ParseError is a SyntaxError
            log.warning("unreadable junit xml from %s: %s", image, exc)
    return RunResult(exit_code=exit_code, timed_out=timed_out, log_text=text, statuses=statuses,
                     duration_s=duration, oom_killed=oom, log_path=str(log_path) if log_path else None)


@dataclass
class _Finished:
    raw: bytes
    file: bytes
    exit_code: int | None
    timed_out: bool
    oom: bool
    duration_s: float


def _run_container(image: str, files: Mapping[str, bytes], command: list[str], limits: SandboxLimits,
                   environment: Mapping[str, str], volumes: Mapping[str, dict], labels: Mapping[str, str],
                   read_back: str | None = None) -> _Finished:
    """One confined container of ``image`` (limits, no capabilities, network as ``limits`` says,
    ``/tmp`` a tmpfs) with ``files`` copied in, running ``command``; killed at the timeout and
    always removed. ``read_back``: a file to fetch from it before removal."""
    uid = _uid(limits.user)
    cli = client()
    container = None
    timed_out, exit_code, duration, oom, raw, extra = False, None, 0.0, False, b"", b""
    try:
        with daemon_errors("sandbox run"):
            try:
                container = cli.containers.create(
                    image, command=command, user=limits.user, working_dir=TESTBED,
                    network_mode="bridge" if limits.network else "none",
                    mem_limit=limits.memory, memswap_limit=limits.memory,
                    nano_cpus=int(limits.cpus * 1e9), pids_limit=limits.pids,
                    security_opt=["no-new-privileges"], cap_drop=["ALL"], init=True,
                    tmpfs={"/tmp": f"rw,exec,nosuid,size={TMPFS_SIZE},mode=1777"},
                    environment=dict(environment), volumes=dict(volumes) or None,
                    labels={LABEL: "1", **run_labels(), **labels},
                    log_config=LogConfig(type="json-file", config={"max-size": LOG_MAX_SIZE,
                                                                   "max-file": LOG_MAX_FILES}),
                    name=f"skycurate-run-{os.urandom(5).hex()}", detach=True)
            except docker.errors.ImageNotFound as exc:
                raise SandboxError(f"image {image} does not exist: build it first") from exc
            container.put_archive("/", _tar(files, uid))
            t0 = time.monotonic()
            container.start()
            try:
                exit_code = int(container.wait(timeout=limits.timeout_s)["StatusCode"])
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                # docker-py reports the wait's timeout as either; before the timeout it is the daemon
                # connection that broke: no verdict on the tests (``daemon_errors`` makes it a SandboxError)
                if time.monotonic() - t0 < limits.timeout_s:
                    raise
                container.reload()
                if container.status in ("running", "paused", "restarting", "created"):
                    timed_out = True
                    with contextlib.suppress(docker.errors.APIError):
                        container.kill()
                    with contextlib.suppress(requests.exceptions.RequestException):
                        container.wait(timeout=30)
                else:
                    exit_code = int(container.attrs["State"].get("ExitCode", -1))
            duration = time.monotonic() - t0
            container.reload()
            oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
            raw = container.logs(stdout=True, stderr=True)
            if read_back and not timed_out:
                extra = _read_file(container, read_back)
    finally:
        if container is not None:
            _remove(container)
    return _Finished(raw, extra, exit_code, timed_out, oom, duration)


def run_program(image: str, files: Mapping[str, bytes], command: list[str], limits: SandboxLimits | None = None,
                labels: Mapping[str, str] | None = None) -> RunResult:
    """Run ``command`` in a fresh confined container of ``image`` with ``files`` (absolute paths ->
    bytes, owned by the run user): for code that is not a repository's test suite (e.g. a model's
    program checked against a prompt's tests). No statuses are parsed; the log is the output."""
    limits = limits or SandboxLimits()
    done = _run_container(image, {k.lstrip("/"): v for k, v in files.items()}, command, limits,
                          {"LANG": "C.UTF-8"}, {}, {f"{LABEL}.role": "program", **(labels or {})})
    text = done.raw.decode("utf-8", errors="replace")
    if done.timed_out:
        text += f"\n>>>>> Timed out after {limits.timeout_s}s: container killed\n"
    return RunResult(exit_code=None if done.timed_out else done.exit_code, timed_out=done.timed_out, log_text=text,
                     duration_s=done.duration_s, oom_killed=done.oom)


def _read_file(container, path: str) -> bytes:
    try:
        stream, _stat = container.get_archive(path)
        data = b"".join(stream)
    except docker.errors.NotFound:
        return b""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            fh = tar.extractfile(member)
            if fh is not None:
                return fh.read()
    return b""


def _remove(container) -> None:
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except Exception as exc:  # noqa: BLE001 - never mask the run's own error; cleanup_containers() retries
        log.warning("could not remove container %s: %s", getattr(container, "short_id", "?"), exc)


def list_containers(extra_labels: Mapping[str, str] | None = None) -> list[str]:
    """Ids of containers labelled ``skycurate=1`` (and ``extra_labels``), running or not."""
    filters = [f"{LABEL}=1", *(f"{k}={v}" for k, v in (extra_labels or {}).items())]
    with daemon_errors("container list"):
        return [c.id for c in client().containers.list(all=True, filters={"label": filters})]


def cleanup_containers(select: Callable[[Mapping[str, str]], bool] = cleanup_selects) -> int:
    """Force-remove the containers labelled ``skycurate=1`` that ``select`` picks by their labels.
    Returns how many were removed. The default, ``cleanup_selects``, picks those whose owning
    process has ended (left by a killed run), never a live run's build or test."""
    with daemon_errors("container list"):
        found = client().containers.list(all=True, filters={"label": f"{LABEL}=1"})
    n = 0
    for container in found:
        if not select(container.labels or {}):
            continue
        with daemon_errors("container remove"):
            try:
                client().api.remove_container(container.id, force=True, v=True)
                n += 1
            except docker.errors.NotFound:
                pass
    return n
