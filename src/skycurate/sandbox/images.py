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

This module builds the env and instance images and does the housekeeping (removal, cleanup, disk
usage). The base image is built in ``base_image``; the names, paths and the build step all layers
share are in ``image_build``; the names callers import from here are re-exported (``__all__``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors

from skycurate.sandbox.base_image import (
    SUPPORTED_PYTHONS,
    base_image_tag,
    ensure_base_image,
)
from skycurate.sandbox.daemon import client, daemon_errors
from skycurate.sandbox.errors import BuildError, InstallError, SandboxError
from skycurate.sandbox.image_build import (
    _CA_EXPORTS,
    BASE_REPO,
    BUILD_DIR,
    BUILD_TIMEOUT_S,
    ENV_REPO,
    HOST_CA_BUNDLE,
    INSTANCE_REPO,
    KEEP_LABEL,
    LABEL,
    ROOTFS_REPO,
    BUILD_UID,
    BUILD_USER,
    SKY_UID,
    TESTBED,
    BuildConfinement,
    _build_lock,
    _build_step,
    _get_image,
    _hash,
    failure_cause,
    _tail,
    cache_dir,
    cleanup_selects,
    image_exists,
)
from skycurate.schemas.swe import EnvRecipe

__all__ = [
    "HOST_CA_BUNDLE", "LABEL", "SKY_UID", "SUPPORTED_PYTHONS", "TESTBED", "DiskUsage", "ImageInfo",
    "ImageUsage", "base_image_tag", "build_env_image", "build_instance_image", "cache_dir", "cleanup",
    "dir_size", "disk_usage", "ensure_base_image", "env_image_tag", "image_exists", "instance_image_tag",
    "prepare_checkout", "remove_image",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- constants

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
  # packages from the registry run their own code (sdists): as {BUILD_USER}, not root
  runuser -u {BUILD_USER} -- env HOME=/home/{BUILD_USER} pip install --no-cache-dir -r {BUILD_DIR}/requirements.txt
fi
rm -rf /root/.cache /tmp/* {BUILD_DIR}
"""

# The instance build: the repo was put into /testbed before this runs. The repository's own
# install (its setup.py, build backend) runs as {BUILD_USER}: no capabilities, no way back to root;
# then /testbed goes to {SKY_USER}, who runs the tests.
_INSTANCE_SETUP = f"""\
set -uo pipefail
{_CA_EXPORTS}
chown -R {BUILD_UID}:{BUILD_UID} {TESTBED}
cd {TESTBED}
echo '>>>>> Install'
if ! runuser -u {BUILD_USER} -- env HOME=/home/{BUILD_USER} bash -ex {BUILD_DIR}/install.sh; then
  echo '>>>>> Install failed'
  exit 86
fi
echo '>>>>> Install done'
set -e
chown -R {SKY_UID}:{SKY_UID} {TESTBED}
chmod 755 {TESTBED}
rm -rf /root/.cache /tmp/* /home/{BUILD_USER}/.cache {BUILD_DIR}
"""
_INSTALL_FAILED = 86

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
    try:
        base = ensure_base_image(recipe.python)
    except BuildError as exc:   # not this recipe's fault: no candidate may be rejected over it
        raise SandboxError(f"base image for Python {recipe.python}: {exc}") from exc
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
        raise BuildError(f"git {args[0]} failed: {failure_cause(proc.stderr) or proc.returncode}",
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
                         timeout_s: int = BUILD_TIMEOUT_S, keep: bool = False) -> ImageInfo:
    """The instance image: env + the repo at ``base_commit`` in /testbed + ``install_cmds`` (run as
    root in /testbed at build time, network on; /testbed is then owned by ``sky``).

    Reused when its tag (a hash of env image, base_commit and install commands) exists. ``keep``:
    the image is meant to outlive the run (``--keep-images``), so ``sandbox cleanup`` leaves it
    alone unless told otherwise. Raises ``InstallError`` when an install command fails,
    ``BuildError`` for anything else.
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
                                     f"LABEL {LABEL}.checkout_bytes={checkout_bytes}",
                                     *([f"LABEL {KEEP_LABEL}=1"] if keep else [])],
                            log_path=log_path, timeout_s=timeout_s,
                            error_for_exit={_INSTALL_FAILED: InstallError},
                            confinement=instance_confinement(install_cmds))
        info = _instance_info(tag, env_img, built=True, build_s=time.monotonic() - t0)
        assert info is not None
        return info


def install_needs_network(install_cmds: Sequence[str]) -> bool:
    """Whether an install downloads: a ``pip install`` that resolves dependencies (no
    ``--no-deps``). The inferred recipes install the project with ``--no-deps
    --no-build-isolation`` (everything else is in the env image), so they build offline."""
    return any(re.search(r"\bpip3?\s+install\b", cmd) and "--no-deps" not in cmd for cmd in install_cmds)


def instance_confinement(install_cmds: Sequence[str]) -> BuildConfinement:
    """The instance step: root only to hand /testbed to ``sky`` and switch to it; the network only
    when the install must download (``install_needs_network``)."""
    return BuildConfinement(network=install_needs_network(install_cmds), caps=("CHOWN", "SETUID", "SETGID",
                                                                                "DAC_OVERRIDE", "FOWNER"))


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


def _skycurate_tags(select: Callable[[Mapping[str, str]], bool] | None = None) -> list[str]:
    with daemon_errors("image list"):
        images = client().images.list(filters={"label": f"{LABEL}=1"})
    return sorted(t for img in images if select is None or select(img.labels or {}) for t in img.tags)


def cleanup(prefix: str = INSTANCE_REPO, keep: Iterable[str] = (), *,
            select: Callable[[Mapping[str, str]], bool] | None = cleanup_selects,
            prune_dangling: bool = True) -> list[str]:
    """Remove skycurate images whose tag (``repo:tag``) starts with ``prefix``, except ``keep`` and
    those ``select`` (by their labels) leaves out; then untagged skycurate layers left by replaced
    builds. Returns the removed tags.

    ``select`` defaults to ``cleanup_selects``: only images of processes that have ended, never a
    kept one, so another run's images stay. None: every image with the prefix."""
    keep = set(keep)
    removed = []
    for tag in _skycurate_tags(select):
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

