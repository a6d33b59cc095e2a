"""``skycurate deploy``: register the deployments of ``prefect.yaml`` with the Prefect server at
``$PREFECT_API_URL`` (all of them, or the ones named), after checking the server answers.

A thin wrapper over ``prefect deploy`` run from the checkout that holds ``prefect.yaml``, so the
file stays the one place deployments are declared; what it adds is a clear error when the API URL
is unset or the server is down, instead of a prompt or a stack trace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from skycurate.cli.common import DebugOpt, _errors, stdout
from skycurate.errors import SkycurateError


def project_root() -> Path:
    """The checkout holding ``prefect.yaml`` (``$SKYCURATE_HOME`` or the package's source tree)."""
    for root in (os.environ.get("SKYCURATE_HOME"), str(Path(__file__).resolve().parents[3])):
        if root and (Path(root) / "prefect.yaml").is_file():
            return Path(root)
    raise SkycurateError("no prefect.yaml found: set SKYCURATE_HOME to the skycurate checkout")


def require_server() -> str:
    """``$PREFECT_API_URL``, once the server there answers (one clear line otherwise)."""
    import requests

    api = os.environ.get("PREFECT_API_URL")
    if not api:
        raise SkycurateError("PREFECT_API_URL is not set: point it at your Prefect server, e.g. "
                             "http://prefect-host:4200/api")
    try:
        requests.get(f"{api.rstrip('/')}/health", timeout=10).raise_for_status()
    except requests.RequestException as e:
        raise SkycurateError(f"the Prefect server at {api} does not answer: {type(e).__name__}") from None
    return api


def deploy_command(name: Annotated[Optional[list[str]], typer.Option(
                       "--name", help="Deployment to register (repeatable); default: all in prefect.yaml.")] = None,
                   debug: DebugOpt = False) -> None:
    """Register prefect.yaml's deployments with the server at $PREFECT_API_URL (schedules stay inactive)."""
    with _errors(debug):
        api = require_server()
        args = [str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy"]
        args += [x for n in name for x in ("--name", n)] if name else ["--all"]
        done = subprocess.run(args, cwd=project_root(), capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise SkycurateError(f"prefect deploy failed: {' / '.join(tail)}")
        stdout.print(f"registered {', '.join(name) if name else 'every deployment of prefect.yaml'} with {api}")
