"""Docker fixtures of the SWE sandbox tests: one daemon client and one base image per session.

No daemon is a failure with a clear message, never a silent skip.
"""

from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="session")
def docker_client():
    from skycurate.sandbox import SandboxError, client

    try:
        return client()
    except SandboxError as exc:
        message = str(exc)
    pytest.fail(f"{message} -- the sandbox tests need a running Docker daemon", pytrace=False)


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """``skycurate/base:py3.11-<hash>``: built locally on first use (a few minutes), then reused.
    The 3.9 and 3.13 base images are made ready too (the environment search uses them)."""
    from skycurate.sandbox import SUPPORTED_PYTHONS, ensure_base_image

    for python in SUPPORTED_PYTHONS:
        t0 = time.monotonic()
        tag = ensure_base_image(python)
        print(f"\nbase image {tag} ready in {time.monotonic() - t0:.1f}s")
    return ensure_base_image("3.11")
