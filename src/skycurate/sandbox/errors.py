"""Errors of the sandbox: each one carries a message a user can act on (and a log tail)."""

from __future__ import annotations

from skycurate.errors import SkycurateError


class SandboxError(SkycurateError):
    """The Docker sandbox cannot do what was asked (daemon down, unsupported Python, ...)."""


class BuildError(SandboxError):
    """An image build failed; ``log_tail`` holds the end of the build log."""

    def __init__(self, message: str, log_tail: str = "", log_path: str | None = None):
        super().__init__(message)
        self.log_tail = log_tail
        self.log_path = log_path


class InstallError(BuildError):
    """The repo's install commands failed while its instance image was built."""


class PatchError(SandboxError):
    """A patch does not apply to the image's /testbed.

    ``index`` is the position of the patch in the list given to ``run_tests``, ``files`` the paths
    of the diff that failed (as far as ``git apply`` names them), ``log_tail`` the apply output.
    """

    def __init__(self, message: str, *, index: int, files: list[str], log_tail: str = ""):
        super().__init__(message)
        self.index = index
        self.files = files
        self.log_tail = log_tail
