"""Docker sandboxes: layered images, confined test runs, log parsing, cleanup.

The only code that talks to the Docker daemon (nothing else may import the docker SDK).

Images (all built locally; no registry is needed)::

    skycurate/base:py3.11-<hash>          debootstrap bookworm + venv /opt/venv (pytest), user sky
    skycurate/env:<EnvRecipe.env_key()>    + apt packages + pip requirements (shared by a recipe)
    skycurate/instance:<id>-<hash>         + repo at base_commit in /testbed + install commands

Typical use::

    from skycurate import sandbox

    env = sandbox.build_env_image(recipe)
    img = sandbox.build_instance_image(env, repo_path, base_commit, recipe.install, instance_id)
    pre = sandbox.run_tests(img.tag, patches=[test_patch], test_cmd=recipe.test_cmd,
                            test_files=test_files, limits=limits, log_path=".../pre.log")
    post = sandbox.run_tests(img.tag, patches=[test_patch, patch], ...)
    pre.statuses  # {"tests/test_x.py::test_a": "FAILED", ...}

Errors: ``SandboxError`` (daemon down, unsupported Python), ``BuildError`` / ``InstallError``
(with ``log_tail``), ``PatchError`` (with ``index`` and ``files``).
"""

from skycurate.sandbox.daemon import client, daemon_errors
from skycurate.sandbox.errors import BuildError, InstallError, PatchError, SandboxError
from skycurate.sandbox.images import (
    SUPPORTED_PYTHONS,
    DiskUsage,
    ImageInfo,
    ImageUsage,
    base_image_tag,
    build_env_image,
    build_instance_image,
    cleanup,
    disk_usage,
    ensure_base_image,
    env_image_tag,
    image_exists,
    instance_image_tag,
    prepare_checkout,
    remove_image,
)
from skycurate.sandbox.logs import parse_junit_xml, parse_pytest_log
from skycurate.sandbox.run import (
    DEFAULT_TEST_CMD,
    RunResult,
    cleanup_containers,
    list_containers,
    run_tests,
)

__all__ = [
    "DEFAULT_TEST_CMD", "SUPPORTED_PYTHONS", "BuildError", "DiskUsage", "ImageInfo", "ImageUsage",
    "InstallError", "PatchError", "RunResult", "SandboxError", "base_image_tag", "build_env_image",
    "build_instance_image", "cleanup", "cleanup_containers", "client", "daemon_errors", "disk_usage",
    "ensure_base_image", "env_image_tag", "image_exists", "instance_image_tag", "list_containers",
    "parse_junit_xml", "parse_pytest_log", "prepare_checkout", "remove_image", "run_tests",
]
