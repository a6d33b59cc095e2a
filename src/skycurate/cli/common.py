"""What every ``skycurate`` command group shares: the stdout and stderr consoles, the option
aliases (``--store``, ``--json``, ``--debug``, ``--config``, ``--force``, the dataset ref
argument), ``_errors`` (an exception becomes one line on stderr and exit 1 unless ``--debug``),
the JSON, ``key: value``, byte-size and funnel-table printers, the store's catalog, and
``_options`` + ``_command``, which register a command whose shared options follow its own.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from skycurate.errors import SkycurateError

stdout = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

StoreOpt = Annotated[Optional[str], typer.Option(
    "--store", envvar="SKYCURATE_STORE", help="Store root: a path or fsspec URL. [default: ./store]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
DebugOpt = Annotated[bool, typer.Option("--debug", envvar="SKYCURATE_DEBUG", help="Show tracebacks on errors.")]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML config file for the flow.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute every stage even if a cached result exists.")]
RefArg = Annotated[str, typer.Argument(help="ns/name[@vNNNN|@latest]")]


@contextmanager
def _errors(debug: bool) -> Iterator[None]:
    """Turn exceptions into one line on stderr and exit 1; ``--debug`` re-raises."""
    try:
        yield
    except typer.Exit:
        raise
    except SkycurateError as e:
        if debug:
            raise
        err.print(f"[red]error:[/red] {escape(str(e))}", markup=True)  # the message itself is not markup
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as e:  # noqa: BLE001 - the promise is: no bare traceback without --debug
        if debug:
            raise
        err.print(f"[red]error:[/red] {type(e).__name__}: {escape(str(e))} (rerun with --debug for the traceback)",
                  markup=True)
        raise typer.Exit(1) from None


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _print_info(info: dict[str, Any], as_json: bool) -> None:
    """``key: value`` lines, or one JSON object with ``--json``."""
    if as_json:
        _print_json(info)
        return
    for k, v in info.items():
        stdout.print(f"{k}: {v}")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _funnel_table(funnel: list[dict]) -> Table:
    table = Table(title="funnel")
    for col in ("stage", "rows in", "kept", "rejected", "quarantined"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in funnel:
        table.add_row(s["stage"], f"{s['rows_in']:,}", f"{s['rows_out']:,}", f"{s.get('rejected', 0):,}",
                      f"{s.get('quarantined', 0):,}")
    return table


def _catalog(store: str | None):
    from skycurate.catalog import Catalog

    return Catalog(store)


# ---- commands that share options ---------------------------------------------------------

def _options(*specs: tuple[str, Any, Any]) -> list[inspect.Parameter]:
    """Keyword parameters (name, ``Annotated`` typer option, default) to add to commands."""
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, annotation, default in specs]


def _command(typer_app: typer.Typer, name: str, options: Callable, shared: list[inspect.Parameter],
             run: Callable[..., None]) -> Callable[..., None]:
    """Register ``run`` as command ``name``: its options are ``options``'s parameters, then ``shared``;
    its help is ``options``'s docstring. ``run`` gets them all as keywords."""
    hints = typing.get_type_hints(options, include_extras=True)
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name])
              for p in inspect.signature(options).parameters.values()] + shared

    @functools.wraps(options)
    def command(**values: Any) -> None:
        run(**values)

    command.__signature__ = inspect.Signature(params, return_annotation=None)  # what typer reads
    command.__annotations__ = {p.name: p.annotation for p in params}
    return typer_app.command(name)(command)
