"""``skycurate serve``: serve the deployments of ``prefect.yaml`` from this one process, for small
installations: schedules and runs started from the UI or API execute here, with no work pool and
no worker. Each deployment keeps its parameters (``{{ $VAR }}`` filled from the environment) and
its schedules, which stay inactive until turned on.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Optional

import typer
import yaml

from skycurate.cli.common import DebugOpt, _errors, stdout
from skycurate.cli.deploy import project_root
from skycurate.errors import SkycurateError

_ENV = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")


def _fill(value: Any) -> Any:
    """``{{ $VAR }}`` in deployment parameters -> the variable's value (as ``prefect deploy`` does)."""
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v) for v in value]
    return value


def runner_deployments(names: list[str] | None) -> list[Any]:
    """``prefect.yaml``'s deployments (or the named ones) as Prefect runner deployments."""
    import importlib

    from prefect.schedules import Cron

    spec = yaml.safe_load((project_root() / "prefect.yaml").read_text())
    chosen = [d for d in spec["deployments"] if not names or d["name"] in names]
    unknown = sorted(set(names or []) - {d["name"] for d in chosen})
    if unknown:
        known = ", ".join(d["name"] for d in spec["deployments"])
        raise SkycurateError(f"no deployment {', '.join(unknown)} in prefect.yaml (deployments: {known})")
    out = []
    for d in chosen:
        path, func = d["entrypoint"].split(":")
        module = importlib.import_module(path.removeprefix("src/").removesuffix(".py").replace("/", "."))
        schedules = [Cron(s["cron"], timezone=s.get("timezone"), active=bool(s.get("active", False)))
                     for s in d.get("schedules", [])]
        out.append(getattr(module, func).to_deployment(name=d["name"], parameters=_fill(d.get("parameters", {})),
                                                       schedules=schedules or None,
                                                       description=d.get("description")))
    return out


def serve_command(name: Annotated[Optional[list[str]], typer.Option(
                      "--name", help="Deployment to serve (repeatable); default: all in prefect.yaml.")] = None,
                  debug: DebugOpt = False) -> None:
    """Serve prefect.yaml's deployments from this process (no work pool or worker); Ctrl-C stops."""
    from prefect import serve

    from skycurate.cli.deploy import require_server

    with _errors(debug):
        api = require_server()
        deployments = runner_deployments(name)
        stdout.print(f"serving {', '.join(d.name for d in deployments)} for {api} (Ctrl-C stops)")
    serve(*deployments)
