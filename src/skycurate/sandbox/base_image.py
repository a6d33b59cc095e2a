"""The base image: a Debian rootfs made with debootstrap, imported, plus a venv and user ``sky``.

Split out of ``images`` because building it is its own job (root, debootstrap, a cached rootfs
tarball, the host's Debian mirror) that the env and instance images never look into: they only
call ``ensure_base_image``. See ``images`` for the layers as a whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from skycurate.localfs import atomic_path
from skycurate.sandbox.daemon import client, daemon_errors
from skycurate.sandbox.errors import BuildError, SandboxError
from skycurate.sandbox.image_build import (
    _CA_EXPORTS,
    _COMMIT_CHANGES,
    BASE_REPO,
    BUILD_DIR,
    BUILD_UID,
    BUILD_USER,
    LABEL,
    PATH_ENV,
    ROOTFS_REPO,
    SKY_UID,
    SKY_USER,
    TESTBED,
    VENV,
    _build_lock,
    _build_step,
    _hash,
    _tail,
    cache_dir,
    image_exists,
)
from skycurate.schemas.swe import DEFAULT_PYTHON

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- constants

#: Python versions a base image can be built for: each is the ``python3`` of a Debian release, so
#: nothing is compiled and every image comes from the Debian mirror (no container registry).
SUPPORTED_PYTHONS: dict[str, str] = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}
ROOTFS_PACKAGES = ("python3", "python3-venv", "git", "ca-certificates", "patch")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Pinned tools of the base venv (a recipe's requirements may pin others, e.g. an older pytest).
BASE_PINS = ("pip==25.3", "setuptools==80.9.0", "wheel==0.45.1", "pytest==8.4.2")

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

_BASE_SETUP = f"""\
set -euxo pipefail
{_CA_EXPORTS}
python3 -m venv {VENV}
{VENV}/bin/pip install --no-cache-dir {' '.join(BASE_PINS)}
useradd --create-home --uid {SKY_UID} --user-group --shell /bin/bash {SKY_USER}
useradd --create-home --uid {BUILD_UID} --user-group --shell /bin/bash {BUILD_USER}
chown -R {BUILD_USER}:{BUILD_USER} {VENV}   # later steps install into it as {BUILD_USER}, never as root
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
            if m and "security" not in m.group(1) and m.group(2).startswith(tuple(SUPPORTED_PYTHONS.values())):
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
        f"Python {python} cannot be built locally: base images come from Debian releases "
        f"(debootstrap, no registry here), which ship Python {', '.join(SUPPORTED_PYTHONS)}; "
        f"use one of those (or python: auto)")


def _rootfs_key(suite: str) -> str:
    return _hash("rootfs", suite, "minbase", sorted(ROOTFS_PACKAGES), _DPKG_EXCLUDES, "no-dev-v1")


def base_image_tag(python: str = DEFAULT_PYTHON) -> str:
    ver = _check_python(python)
    suite = SUPPORTED_PYTHONS[ver]
    return f"{BASE_REPO}:py{ver}-{_hash(_rootfs_key(suite), _ROOTFS_CHANGES, _COMMIT_CHANGES, _BASE_SETUP)}"


def _rootfs_tarball(suite: str) -> Path:
    """The debootstrap rootfs of Debian ``suite`` as a tarball, built once and cached on disk."""
    out = cache_dir() / "base" / f"rootfs-{suite}-minbase-{_rootfs_key(suite)}.tar"
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
               suite, str(target), mirror]
        log.info("base image: %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
        if proc.returncode != 0:
            detail = proc.stdout + proc.stderr
            with contextlib.suppress(OSError):
                detail += (target / "debootstrap" / "debootstrap.log").read_text(errors="replace")
            raise BuildError(f"debootstrap {suite} from {mirror} failed (exit {proc.returncode})",
                             _tail(detail))
        _strip_rootfs(target)
        with atomic_path(out) as partial:
            proc = subprocess.run(["tar", "--numeric-owner", "--xattrs", "--exclude=./dev/*", "-C", str(target),
                                   "-cf", str(partial), "."], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise BuildError("packing the rootfs failed", _tail(proc.stderr))
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


def ensure_base_image(python: str = DEFAULT_PYTHON, *, rebuild: bool = False) -> str:
    """Tag of the base image for ``python``, built locally if missing (or if ``rebuild``).

    The debootstrap tarball is cached (``~/.cache/skycurate/base``); delete it to re-bootstrap.
    Raises ``SandboxError`` for a Python version no supported Debian release ships.
    """
    tag = base_image_tag(python)
    if not rebuild and image_exists(tag):
        return tag
    with _build_lock(tag):
        if not rebuild and image_exists(tag):
            return tag
        t0 = time.monotonic()
        suite = SUPPORTED_PYTHONS[_check_python(python)]
        tarball = _rootfs_tarball(suite)
        rootfs_tag = f"{ROOTFS_REPO}:{suite}-{_hash(_rootfs_key(suite), _ROOTFS_CHANGES)}"
        if rebuild or not image_exists(rootfs_tag):
            with daemon_errors("docker import"):
                client().api.import_image_from_file(
                    str(tarball), repository=rootfs_tag.split(":")[0], tag=rootfs_tag.split(":")[1],
                    changes=_ROOTFS_CHANGES)
        _build_step(rootfs_tag, _BASE_SETUP, tag=tag, what="base image",
                    changes=[f"LABEL {LABEL}.kind=base", f"LABEL {LABEL}.python={python}"],
                    log_path=cache_dir() / "logs" / f"base-py{python}.log")
        log.info("base image %s ready in %.1fs", tag, time.monotonic() - t0)
    return tag
