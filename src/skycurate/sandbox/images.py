"""Layered images, all built locally: base -> env -> instance.

``skycurate/base:py3.11-<hash>``
    Debian bookworm (``debootstrap --variant=minbase``, imported with ``docker import``; the
    rootfs tarball is cached under ``~/.cache/skycurate/base``) + git, patch, ca-certificates and a
    venv ``/opt/venv`` with pinned pip, setuptools, wheel and pytest; a non-root user ``sky``
    (uid 1000), ``WORKDIR /testbed``, ``USER sky``. The hash covers every build script, so a change
    to any of them gives a new tag.
``skycurate/env:<EnvRecipe.env_key()>``
    base + the recipe's apt packages and pip requirements. Shared by every instance with the same
    recipe (one layer).
``skycurate/instance:<instance id>-<hash>``
    env + the repo at ``base_commit`` in ``/testbed`` (history up to base_commit only: no remote,
    no later commits, tags or reflog) + the recipe's install commands. One layer.

Layers above the rootfs are made by running a build container and committing it (``docker
commit``), not by a Dockerfile: builds need the network, and containers here reach PyPI only
through the host's CA bundle. The bundle is copied into the build container next to the build
script and deleted before the commit, so no image carries it.
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
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
import requests.exceptions

from skycurate.sandbox.daemon import client, daemon_errors
from skycurate.sandbox.errors import BuildError, InstallError, SandboxError
from skycurate.schemas.swe import EnvRecipe

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- constants

SUITE = "bookworm"
#: Python versions a base image can be built for (Debian bookworm's python3; nothing is compiled).
SUPPORTED_PYTHONS: dict[str, str] = {"3.11": SUITE}
ROOTFS_PACKAGES = ("python3", "python3-venv", "git", "ca-certificates", "patch")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Pinned tools of the base venv (a recipe's requirements may pin others, e.g. an older pytest).
BASE_PINS = ("pip==25.3", "setuptools==80.9.0", "wheel==0.45.1", "pytest==8.4.2")
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SKY_USER = "sky"
SKY_UID = 1000
VENV = "/opt/venv"
TESTBED = "/testbed"
BUILD_DIR = "/skycurate-build"          # build script + CA bundle; deleted before each commit
LABEL = "skycurate"                     # every image and container: skycurate=1
PATH_ENV = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BASE_REPO = "skycurate/base"
ROOTFS_REPO = "skycurate/rootfs"
ENV_REPO = "skycurate/env"
INSTANCE_REPO = "skycurate/instance"

#: Seconds a build step may run before its container is killed.
BUILD_TIMEOUT_S = 1800

# Config of the imported rootfs (and so of every image above it).
_ROOTFS_CHANGES = [
    f"ENV PATH={PATH_ENV}",
    f"ENV VIRTUAL_ENV={VENV}",
    "ENV LANG=C.UTF-8",
    "ENV PIP_DISABLE_PIP_VERSION_CHECK=1",
    "ENV PIP_NO_CACHE_DIR=1",
    "ENV DEBIAN_FRONTEND=noninteractive",
    f"LABEL {LABEL}=1",
    'CMD ["/bin/bash"]',
]
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

_BASE_SETUP = f"""\
set -euxo pipefail
{_CA_EXPORTS}
python3 -m venv {VENV}
{VENV}/bin/pip install --no-cache-dir {' '.join(BASE_PINS)}
useradd --create-home --uid {SKY_UID} --user-group --shell /bin/bash {SKY_USER}
mkdir -p {TESTBED}
chown {SKY_USER}:{SKY_USER} {TESTBED}
git config --system --add safe.directory '*'
git config --system user.name {SKY_USER}
git config --system user.email {SKY_USER}@localhost
git config --system init.defaultBranch main
git config --system advice.detachedHead false
echo 'export PATH={VENV}/bin:$PATH' > /etc/profile.d/skycurate-venv.sh
rm -rf /root/.cache /tmp/* {BUILD_DIR}
"""

_ENV_SETUP = f"""\
set -euxo pipefail
{_CA_EXPORTS}
if [ -s {BUILD_DIR}/apt.txt ]; then
  apt-get update
  xargs -a {BUILD_DIR}/apt.txt apt-get install -y --no-install-recommends
  apt-get clean
  rm -rf /var/lib/apt/lists/*
fi
if [ -s {BUILD_DIR}/requirements.txt ]; then
  pip install --no-cache-dir -r {BUILD_DIR}/requirements.txt
fi
rm -rf /root/.cache /tmp/* {BUILD_DIR}
"""

# The instance build: the repo was put into /testbed before this runs.
_INSTANCE_SETUP = f"""\
set -uo pipefail
{_CA_EXPORTS}
cd {TESTBED}
echo '>>>>> Install'
if ! bash -ex {BUILD_DIR}/install.sh; then
  echo '>>>>> Install failed'
  exit 86
fi
echo '>>>>> Install done'
set -e
chown -R {SKY_UID}:{SKY_UID} {TESTBED}
chmod 755 {TESTBED}
rm -rf /root/.cache /tmp/* {BUILD_DIR}
"""
_INSTALL_FAILED = 86

# Docs, man pages and translations are left out of the rootfs and of every later apt install
# (about 55 MB of the 270 MB rootfs); licences stay.
_DPKG_EXCLUDES = """\
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
"""

# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ImageInfo:
    """An instance image. ``digest`` is the image id (content hash of its config; images built
    here have no registry digest). ``extra_bytes_over_env`` = its size minus its env image's size
    (the one layer it adds); ``checkout_bytes`` = size of the checkout put into /testbed."""

    tag: str
    digest: str
    size_bytes: int
    extra_bytes_over_env: int
    checkout_bytes: int = 0
    env_tag: str = ""
    built: bool = True          # False when an existing image was reused
    build_s: float = 0.0


@dataclass(frozen=True)
class ImageUsage:
    tag: str
    kind: str                   # rootfs | base | env | instance | other
    size_bytes: int             # with all parent layers
    shared_bytes: int           # layers shared with other images
    unique_bytes: int           # freed when this image alone is removed


@dataclass
class DiskUsage:
    images: list[ImageUsage] = field(default_factory=list)
    total_bytes: int = 0            # all skycurate images, every layer counted once
    rootfs_cache_bytes: int = 0     # cached debootstrap tarballs
    containers: int = 0             # containers labelled skycurate=1 (leftovers, or runs in flight)
    container_bytes: int = 0


# ---------------------------------------------------------------------------------- helpers


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
                error_for_exit: dict[int, type[BuildError]] | None = None) -> str:
    """Run ``script`` as root in a container of ``from_image`` (network on, host CA bundle at
    ``BUILD_DIR/ca.crt``) and commit the result as ``tag``. The container is always removed."""
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
                    working_dir="/", labels={LABEL: "1"},   # container labels end up in the image
                    name=f"skycurate-build-{os.urandom(4).hex()}", detach=True)
            except docker.errors.ImageNotFound as exc:
                raise BuildError(f"{what}: image {from_image} does not exist") from exc
            container.put_archive("/", _tar_files(payload))
            for path, data in put:
                container.put_archive(path, data)
            container.start()
            timed_out = False
            try:
                status = container.wait(timeout=timeout_s)["StatusCode"]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
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
                raise cls(f"{what} failed (exit {status}): {_last_line(text)}", _tail(text),
                          str(log_path) if log_path else None)
            container.commit(repository=tag.split(":")[0], tag=tag.split(":")[1],
                             changes=[*_COMMIT_CHANGES, *changes])
    finally:
        if container is not None:
            _remove_container(container)
    log.info("%s: built %s in %.1fs", what, tag, time.monotonic() - t0)
    return tag


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and not line.startswith(("+ ", ">>>>>")):
            return line[:300]
    return ""


def _remove_container(container) -> None:
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except Exception as exc:  # noqa: BLE001 - never mask the real error; cleanup_containers() catches it later
        log.warning("could not remove container %s: %s", getattr(container, "short_id", "?"), exc)


# ---------------------------------------------------------------------------------- base


def debian_mirror() -> str:
    """The host's Debian mirror (apt sources), ``SKYCURATE_DEBIAN_MIRROR``, or deb.debian.org."""
    env = os.environ.get("SKYCURATE_DEBIAN_MIRROR")
    if env:
        return env
    candidates: list[Path] = [Path("/etc/apt/sources.list")]
    src_d = Path("/etc/apt/sources.list.d")
    if src_d.is_dir():
        candidates += sorted(p for p in src_d.iterdir() if p.suffix in (".list", ".sources"))
    for path in candidates:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and "security" not in m.group(1) and m.group(2).startswith(SUITE):
                return m.group(1).rstrip("/")
            m = re.match(r"^URIs:\s*(\S+)", line)
            if m and "security" not in m.group(1) and "/debian" in m.group(1):
                return m.group(1).rstrip("/")
    return DEFAULT_MIRROR


def _check_python(python: str) -> str:
    for ver in SUPPORTED_PYTHONS:
        if python == ver or python.startswith(ver + "."):
            return ver
    raise SandboxError(
        f"Python {python} cannot be built locally: base images come from Debian {SUITE} "
        f"(debootstrap, no registry here), which ships only Python {', '.join(SUPPORTED_PYTHONS)}; "
        f"use python: {next(iter(SUPPORTED_PYTHONS))} in the recipe")


def _rootfs_key() -> str:
    return _hash("rootfs", SUITE, "minbase", sorted(ROOTFS_PACKAGES), _DPKG_EXCLUDES, "no-dev-v1")


def base_image_tag(python: str = "3.11") -> str:
    ver = _check_python(python)
    return f"{BASE_REPO}:py{ver}-{_hash(_rootfs_key(), _ROOTFS_CHANGES, _COMMIT_CHANGES, _BASE_SETUP)}"


def _rootfs_tarball() -> Path:
    """The debootstrap rootfs as a tarball, built once and cached on disk."""
    out = cache_dir() / "base" / f"rootfs-{SUITE}-minbase-{_rootfs_key()}.tar"
    if out.exists():
        return out
    if os.geteuid() != 0:
        raise SandboxError(f"building the base image needs root (debootstrap); run once as root or "
                           f"put a rootfs tarball at {out}")
    if shutil.which("debootstrap") is None:
        raise SandboxError("building the base image needs debootstrap: apt-get install debootstrap")
    out.parent.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix="debootstrap-") as tmp:
        target = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}",
               SUITE, str(target), mirror]
        log.info("base image: %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
        if proc.returncode != 0:
            detail = proc.stdout + proc.stderr
            with contextlib.suppress(OSError):
                detail += (target / "debootstrap" / "debootstrap.log").read_text(errors="replace")
            raise BuildError(f"debootstrap {SUITE} from {mirror} failed (exit {proc.returncode})",
                             _tail(detail))
        _strip_rootfs(target)
        partial = out.with_suffix(".tar.partial")
        proc = subprocess.run(["tar", "--numeric-owner", "--xattrs", "--exclude=./dev/*", "-C", str(target),
                               "-cf", str(partial), "."], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BuildError("packing the rootfs failed", _tail(proc.stderr))
        os.replace(partial, out)
    log.info("base image: debootstrap + tar in %.1fs -> %s", time.monotonic() - t0, out)
    return out


def _strip_rootfs(target: Path) -> None:
    """Drop apt caches, docs, man pages and translations; keep licences. Later apt installs skip
    the same paths (``/etc/dpkg/dpkg.cfg.d/skycurate-excludes``)."""
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (target / junk).glob("*"):
            if p.is_file():
                p.unlink()
    for sub in ("usr/share/man", "usr/share/info", "usr/share/locale"):
        for p in (target / sub).glob("*"):
            if p.name == "locale.alias":
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    doc = target / "usr/share/doc"
    if doc.is_dir():
        for pkg in doc.iterdir():
            if pkg.is_dir() and not pkg.is_symlink():
                for p in pkg.iterdir():
                    if p.name == "copyright":
                        continue
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
    cfg = target / "etc/dpkg/dpkg.cfg.d"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "skycurate-excludes").write_text(_DPKG_EXCLUDES)


def ensure_base_image(python: str = "3.11", *, rebuild: bool = False) -> str:
    """Tag of the base image for ``python``, built locally if missing (or if ``rebuild``).

    The debootstrap tarball is cached (``~/.cache/skycurate/base``); delete it to re-bootstrap.
    Raises ``SandboxError`` for a Python version Debian bookworm does not ship.
    """
    tag = base_image_tag(python)
    if not rebuild and image_exists(tag):
        return tag
    with _build_lock(tag):
        if not rebuild and image_exists(tag):
            return tag
        t0 = time.monotonic()
        tarball = _rootfs_tarball()
        rootfs_tag = f"{ROOTFS_REPO}:{SUITE}-{_hash(_rootfs_key(), _ROOTFS_CHANGES)}"
        if rebuild or not image_exists(rootfs_tag):
            with daemon_errors("docker import"):
                client().api.import_image_from_file(
                    str(tarball), repository=rootfs_tag.split(":")[0], tag=rootfs_tag.split(":")[1],
                    changes=_ROOTFS_CHANGES)
        _build_step(rootfs_tag, _BASE_SETUP, tag=tag, what="base image",
                    changes=[f"LABEL {LABEL}.kind=base", f"LABEL {LABEL}.python={python}"],
                    log_path=cache_dir() / "logs" / "base.log")
        log.info("base image %s ready in %.1fs", tag, time.monotonic() - t0)
    return tag


# ---------------------------------------------------------------------------------- env


def env_image_tag(recipe: EnvRecipe) -> str:
    return f"{ENV_REPO}:{recipe.env_key()}"


def build_env_image(recipe: EnvRecipe, *, rebuild: bool = False,
                    log_path: str | os.PathLike | None = None,
                    timeout_s: int = BUILD_TIMEOUT_S) -> str:
    """The env image of ``recipe`` (``skycurate/env:<env_key>``), built once and shared.

    An existing env image is reused unless it was built on another base image (the base was
    rebuilt, or its build scripts changed). Raises ``BuildError`` with the build log's tail.
    """
    base = ensure_base_image(recipe.python)
    base_img = _get_image(base)
    base_id = base_img.id if base_img is not None else ""
    tag = env_image_tag(recipe)
    img = None if rebuild else _get_image(tag)
    if img is not None and (img.labels or {}).get(f"{LABEL}.base_id") == base_id:
        return tag
    with _build_lock(tag):
        img = None if rebuild else _get_image(tag)
        if img is not None and (img.labels or {}).get(f"{LABEL}.base_id") == base_id:
            return tag
        files = {"apt.txt": "\n".join(recipe.system_packages) + ("\n" if recipe.system_packages else ""),
                 "requirements.txt": "\n".join(recipe.requirements) + ("\n" if recipe.requirements else "")}
        _build_step(base, _ENV_SETUP, tag=tag, what=f"env image {tag}", files=files,
                    changes=[f"LABEL {LABEL}.kind=env", f"LABEL {LABEL}.base={base}",
                             f"LABEL {LABEL}.base_id={base_id}",
                             f"LABEL {LABEL}.env_key={recipe.env_key()}"],
                    log_path=log_path, timeout_s=timeout_s)
    return tag


# ---------------------------------------------------------------------------------- instance


def _git(*args: str, cwd: str | os.PathLike | None = None) -> str:
    # safe.directory: the source repo may belong to another user (a shared cache).
    proc = subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, capture_output=True, text=True,
                          errors="replace", check=False,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"})
    if proc.returncode != 0:
        raise BuildError(f"git {args[0]} failed: {_last_line(proc.stderr) or proc.returncode}",
                         _tail(proc.stderr))
    return proc.stdout


def prepare_checkout(repo_path: str | os.PathLike, base_commit: str, dest: str | os.PathLike) -> int:
    """A fresh repo at ``dest`` holding only ``base_commit`` and its history.

    The objects of ``base_commit``'s history are fetched into a new repo (nothing else is copied:
    no remote, no branches, no reflog, no later commit); tags that point into that history are
    kept (setuptools-scm and ``git describe`` need them), later tags are not. HEAD is detached at
    ``base_commit`` and the work tree checked out. ``repo_path`` may be a bare clone. Submodules
    and Git LFS objects are not fetched. Returns the checkout's size in bytes (with ``.git``).
    """
    src = str(Path(repo_path).resolve())
    dest = Path(dest)
    sha = _git("rev-parse", "--verify", f"{base_commit}^{{commit}}", cwd=src).strip()
    tags = [t for t in _git("tag", "--merged", sha, cwd=src).splitlines() if t.strip()]
    _git("init", "-q", str(dest))
    upload = "git -c safe.directory=* -c uploadpack.allowAnySHA1InWant=true upload-pack"
    _git("fetch", "-q", "--no-tags", "--no-write-fetch-head", f"--upload-pack={upload}", src, sha, cwd=dest)
    for i in range(0, len(tags), 200):
        refspecs = [f"refs/tags/{t}:refs/tags/{t}" for t in tags[i:i + 200]]
        _git("fetch", "-q", "--no-tags", "--no-write-fetch-head", f"--upload-pack={upload}", src,
             *refspecs, cwd=dest)
    _git("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", sha, cwd=dest)
    _git("reflog", "expire", "--expire=now", "--all", cwd=dest)
    for name in ("FETCH_HEAD", "ORIG_HEAD", "logs"):
        p = dest / ".git" / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    # No gc needed: the fetch brought exactly the objects reachable from base_commit and the kept
    # tags, so nothing later exists to prune.
    os.chmod(dest, 0o755)
    return dir_size(dest)


def dir_size(path: str | os.PathLike) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def instance_image_tag(env_tag: str, base_commit: str, install_cmds: Sequence[str], instance_id: str,
                       env_image_id: str = "") -> str:
    slug = re.sub(r"[^a-z0-9_.-]+", "-", instance_id.lower()).strip(".-")[:100] or "instance"
    h = _hash(env_tag, env_image_id, base_commit, list(install_cmds), _INSTANCE_SETUP)
    return f"{INSTANCE_REPO}:{slug}-{h}"


def build_instance_image(env_tag: str, repo_path: str | os.PathLike, base_commit: str,
                         install_cmds: Sequence[str], instance_id: str, *, rebuild: bool = False,
                         log_path: str | os.PathLike | None = None,
                         timeout_s: int = BUILD_TIMEOUT_S) -> ImageInfo:
    """The instance image: env + the repo at ``base_commit`` in /testbed + ``install_cmds`` (run as
    root in /testbed at build time, network on; /testbed is then owned by ``sky``).

    Reused when its tag (a hash of env image, base_commit and install commands) exists. Raises
    ``InstallError`` when an install command fails, ``BuildError`` for anything else.
    """
    env_img = _get_image(env_tag)
    if env_img is None:
        raise BuildError(f"env image {env_tag} does not exist: build_env_image() first")
    tag = instance_image_tag(env_tag, base_commit, install_cmds, instance_id, env_img.id)
    if not rebuild and (info := _instance_info(tag, env_img)) is not None:
        return info
    with _build_lock(tag):
        if not rebuild and (info := _instance_info(tag, env_img)) is not None:
            return info
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="skycurate-ctx-") as tmp:
            checkout = Path(tmp) / "testbed"
            checkout_bytes = prepare_checkout(repo_path, base_commit, checkout)
            archive = Path(tmp) / "testbed.tar"
            with tarfile.open(archive, "w") as tar:
                tar.add(checkout, arcname=".")
            install = "\n".join(install_cmds) + "\n"
            with open(archive, "rb") as fh:
                _build_step(env_tag, _INSTANCE_SETUP, tag=tag, what=f"instance image {instance_id}",
                            files={"install.sh": install}, put=[(TESTBED, fh)],
                            changes=[f"LABEL {LABEL}.kind=instance",
                                     f"LABEL {LABEL}.instance_id={_label_value(instance_id)}",
                                     f"LABEL {LABEL}.base_commit={base_commit}",
                                     f"LABEL {LABEL}.env={env_tag}",
                                     f"LABEL {LABEL}.checkout_bytes={checkout_bytes}"],
                            log_path=log_path, timeout_s=timeout_s,
                            error_for_exit={_INSTALL_FAILED: InstallError})
        info = _instance_info(tag, env_img, built=True, build_s=time.monotonic() - t0)
        assert info is not None
        return info


def _label_value(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:/@+-]", "_", value)[:200]


def _instance_info(tag: str, env_img, *, built: bool = False, build_s: float = 0.0) -> ImageInfo | None:
    img = _get_image(tag)
    if img is None:
        return None
    labels = img.labels or {}
    size = int(img.attrs.get("Size") or 0)
    return ImageInfo(tag=tag, digest=img.id, size_bytes=size,
                     extra_bytes_over_env=size - int(env_img.attrs.get("Size") or 0),
                     checkout_bytes=int(labels.get(f"{LABEL}.checkout_bytes", 0) or 0),
                     env_tag=labels.get(f"{LABEL}.env", ""), built=built, build_s=build_s)


# ---------------------------------------------------------------------------------- housekeeping


def remove_image(tag: str) -> bool:
    """Remove one image tag (layers shared with other images stay). False if it did not exist."""
    with daemon_errors("image remove"):
        try:
            client().images.remove(tag, noprune=False)
            return True
        except docker.errors.ImageNotFound:
            return False


def _skycurate_tags() -> list[str]:
    with daemon_errors("image list"):
        images = client().images.list(filters={"label": f"{LABEL}=1"})
    return sorted(t for img in images for t in img.tags)


def cleanup(prefix: str = INSTANCE_REPO, keep: Iterable[str] = (), *, prune_dangling: bool = True) -> list[str]:
    """Remove skycurate images whose tag (``repo:tag``) starts with ``prefix``, except ``keep``;
    then untagged skycurate layers left by replaced builds. Returns the removed tags."""
    keep = set(keep)
    removed = []
    for tag in _skycurate_tags():
        if tag.startswith(prefix) and tag not in keep:
            with daemon_errors("image remove"):
                try:
                    client().images.remove(tag, noprune=False)
                    removed.append(tag)
                except docker.errors.ImageNotFound:
                    pass
                except docker.errors.APIError as exc:       # in use by a running container
                    log.warning("cannot remove %s: %s", tag, exc)
    if prune_dangling:
        with daemon_errors("image prune"), contextlib.suppress(docker.errors.APIError):
            client().images.prune(filters={"dangling": True, "label": f"{LABEL}=1"})
    return removed


def _kind(tag: str) -> str:
    for kind, repo in (("rootfs", ROOTFS_REPO), ("base", BASE_REPO), ("env", ENV_REPO),
                       ("instance", INSTANCE_REPO)):
        if tag.startswith(repo + ":"):
            return kind
    return "other"


def disk_usage() -> DiskUsage:
    """Bytes of every skycurate image (unique vs shared layers), leftover containers, and the
    cached rootfs tarballs."""
    with daemon_errors("disk usage"):
        df = client().df()
    out = DiskUsage()
    for img in df.get("Images") or []:
        tags = [t for t in (img.get("RepoTags") or []) if t.startswith("skycurate/")]
        if not tags and (img.get("Labels") or {}).get(LABEL) != "1":
            continue
        size = int(img.get("Size") or 0)
        shared = max(int(img.get("SharedSize") or 0), 0)
        tag = tags[0] if tags else img.get("Id", "")
        out.images.append(ImageUsage(tag=tag, kind=_kind(tag), size_bytes=size, shared_bytes=shared,
                                     unique_bytes=size - shared))
    layers: dict[str, int] = {}
    for img in df.get("Images") or []:
        if any(t.startswith("skycurate/") for t in (img.get("RepoTags") or [])) or \
                (img.get("Labels") or {}).get(LABEL) == "1":
            with daemon_errors("image history"), contextlib.suppress(docker.errors.APIError):
                for entry in client().api.history(img["Id"]):
                    if entry.get("Id") and entry["Id"] != "<missing>":
                        layers[entry["Id"]] = int(entry.get("Size") or 0)
    out.total_bytes = sum(layers.values())
    for c in df.get("Containers") or []:
        if (c.get("Labels") or {}).get(LABEL) == "1":
            out.containers += 1
            out.container_bytes += int(c.get("SizeRw") or 0)
    base_cache = cache_dir() / "base"
    if base_cache.is_dir():
        out.rootfs_cache_bytes = sum(p.stat().st_size for p in base_cache.glob("*.tar"))
    return out

