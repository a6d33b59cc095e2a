"""The ``skycurate`` command: run flows and inspect the dataset store.

Every command takes ``--store`` (default ``./store`` or ``$SKYCURATE_STORE``), ``--json`` for
machine-readable output and ``--debug`` for tracebacks. Errors are one line on stderr and a
non-zero exit. This module holds the root app, ``version`` and ``main`` (the console script) and
adds the command groups: ``run`` (``cli.run``, its commands in ``cli.run_commands``),
``datasets`` (``cli.datasets``) and ``quality`` / ``sample`` / ``sandbox`` (``cli.tools``); what
they share (consoles, options, error handling, printers) is in ``cli.common``.
"""

from __future__ import annotations

import typer

from skycurate import __version__
from skycurate.cli import run_commands  # noqa: F401 - registers the `skycurate run` commands on run_app
from skycurate.cli.common import stdout
from skycurate.cli.datasets import datasets_app
from skycurate.cli.deploy import deploy_command
from skycurate.cli.rebuild import rebuild_command
from skycurate.cli.serve import serve_command
from skycurate.cli.run import RUN_COMMANDS, run_app
from skycurate.cli.tools import quality_app, sample_app, sandbox_app
from skycurate.redact import install_log_redaction

__all__ = ["RUN_COMMANDS", "app", "main", "version"]

app = typer.Typer(name="skycurate", help="Curate LLM training data into versioned Parquet datasets.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(run_app, name="run")
app.add_typer(datasets_app, name="datasets")
app.add_typer(quality_app, name="quality")
app.add_typer(sample_app, name="sample")
app.add_typer(sandbox_app, name="sandbox")
app.command("rebuild")(rebuild_command)
app.command("deploy")(deploy_command)
app.command("serve")(serve_command)


@app.callback()
def _main() -> None:
    """Curate LLM training data into versioned Parquet datasets."""
    install_log_redaction()


@app.command()
def version() -> None:
    """Print the skycurate version."""
    stdout.print(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
