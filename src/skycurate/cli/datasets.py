"""The ``skycurate datasets`` group: list the datasets in a store, and show, trace the lineage
of, read, verify, describe (a dataset card) and export one version.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.tree import Tree

from skycurate.cli.common import (
    DebugOpt,
    JsonOpt,
    RefArg,
    StoreOpt,
    _catalog,
    _errors,
    _funnel_table,
    _human_bytes,
    _print_json,
    err,
    stdout,
)
from skycurate.errors import SkycurateError

datasets_app = typer.Typer(help="Inspect published datasets.", no_args_is_help=True)


def _resolve(store: str | None, ref: str):
    """The store's catalog and ``ref`` resolved to one version in it."""
    catalog = _catalog(store)
    return catalog, catalog.resolve(ref)


@datasets_app.command("ls")
def datasets_ls(store: StoreOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List datasets with their latest version."""
    with _errors(debug):
        summaries = _catalog(store).summaries()
        if as_json:
            _print_json([s.model_dump() for s in summaries])
            return
        if not summaries:
            stdout.print("no datasets yet")
            return
        table = Table()
        for col in ("dataset", "latest", "versions", "rows", "size", "created"):
            table.add_column(col, justify="right" if col in ("versions", "rows", "size") else "left")
        for s in summaries:
            table.add_row(s.name, s.latest, str(s.versions), f"{s.num_rows:,}", _human_bytes(s.num_bytes),
                          s.created_at[:19].replace("T", " "))
        stdout.print(table)


@datasets_app.command("show")
def datasets_show(ref: RefArg, store: StoreOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Show a version's manifest: rows, files, parents, producer, funnel, schema."""
    with _errors(debug):
        catalog, resolved = _resolve(store, ref)
        m = catalog.manifest(resolved)
        data = m.model_dump(mode="json", by_alias=True)
        if as_json:
            _print_json({**data, "uri": resolved.uri})
            return
        stdout.print(f"[bold]{resolved.label}[/bold]  {m.num_rows:,} rows, {_human_bytes(m.num_bytes)} "
                  f"in {len(m.files)} file(s), created {m.created_at}")
        stdout.print(f"path: {resolved.uri}")
        p = m.producer
        stdout.print(f"producer: flow={p.flow} task={p.task} run={p.flow_run_id} code={p.code_version}")
        for parent in m.parents:
            stdout.print(f"parent: {parent.name}@{parent.version}" if parent.is_dataset else
                         f"parent: {parent.name} ({parent.uri}, {_pinned_by(parent)})")
        if m.stats.get("funnel"):
            stdout.print(_funnel_table(m.stats["funnel"]))
        schema = Table(title="schema")
        schema.add_column("column")
        schema.add_column("type")
        for f in m.schema_["fields"]:
            schema.add_row(f["name"], json.dumps(f["type"]) if not isinstance(f["type"], str) else f["type"])
        stdout.print(schema)


def _pinned_by(parent) -> str:
    """How an external input is pinned: its content hash, else what pins it (size/mtime, refs, ...)."""
    if parent.sha256:
        return f"sha256 {parent.sha256[:12]}…"
    return parent.pin or "not pinned"


@datasets_app.command("lineage")
def datasets_lineage(ref: RefArg, store: StoreOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Show the tree of inputs a version was made from."""
    with _errors(debug):
        node = _catalog(store).lineage(ref)
        if as_json:
            _print_json(node.model_dump())
            return

        def label(n) -> str:
            if n.missing:
                return f"{n.label} [red](missing)[/red]"
            if n.uri:
                return f"{n.name} [dim]{_pinned_by(n)}[/dim]"
            return f"{n.label} [dim]{n.num_rows:,} rows[/dim]"

        def add(tree: Tree, n) -> None:
            for p in n.parents:
                add(tree.add(label(p)), p)

        tree = Tree(label(node))
        add(tree, node)
        stdout.print(tree)


@datasets_app.command("read")
def datasets_read(ref: RefArg,
                  limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="Rows to print.")] = 10,
                  columns: Annotated[Optional[str], typer.Option(help="Comma-separated columns.")] = None,
                  store: StoreOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Print the first rows of a version (``--json``: one JSON object per line)."""
    with _errors(debug):
        dataset = _catalog(store).open(ref)
        cols = [c.strip() for c in columns.split(",")] if columns else None
        if cols:
            unknown = [c for c in cols if c not in dataset.schema.names]
            if unknown:
                raise SkycurateError(f"unknown column(s) {', '.join(unknown)}; columns: {', '.join(dataset.schema.names)}")
        rows = dataset.head(limit, columns=cols).to_pylist()
        if as_json:
            for row in rows:
                sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            return
        table = Table()
        for c in cols or dataset.schema.names:
            table.add_column(c, overflow="fold", max_width=60)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        stdout.print(table)


@datasets_app.command("verify")
def datasets_verify(ref: RefArg, store: StoreOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Re-hash every file and re-count rows against the manifest; exit 1 if anything differs."""
    with _errors(debug):
        catalog, resolved = _resolve(store, ref)
        with Progress(TextColumn("verifying {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True, disable=as_json) as progress:
            task = progress.add_task(resolved.label, total=None)
            report = catalog.verify(resolved, progress=lambda done, total: progress.update(task, completed=done,
                                                                                               total=total))
        if as_json:
            _print_json(report.model_dump())
        elif report.ok:
            stdout.print(f"[green]ok[/green] {report.dataset}: {report.files_checked} file(s), {report.rows:,} rows match")
        else:
            stdout.print(f"[red]FAILED[/red] {report.dataset}:")
            for problem in report.problems:
                stdout.print(f"  - {problem}")
        if not report.ok:
            raise typer.Exit(1)


LicenseOpt = Annotated[Optional[str], typer.Option(
    "--license", help="Hugging Face license id for the card (cc-by-4.0, apache-2.0, other, ...). "
                      "Default: the version's current card, else its config's card.license, else 'unknown'.")]
TagOpt = Annotated[Optional[list[str]], typer.Option("--tag", help="Hub tag for the card (repeat for more).")]


@datasets_app.command("card")
def datasets_card(ref: RefArg, license: LicenseOpt = None, tag: TagOpt = None,
                  out: Annotated[Optional[str], typer.Option(
                      "--out", help="Write the card to this file ('-': stdout) instead of into the version.")] = None,
                  store: StoreOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Write the version's dataset card (README.md, Hugging Face format) into its folder, so that
    `datasets.load_dataset(folder)` reads it and the folder can be uploaded to a hub as it is."""
    from skycurate.catalog.card_files import version_card, write_version_card

    with _errors(debug):
        catalog, resolved = _resolve(store, ref)
        if out == "-":
            sys.stdout.write(version_card(catalog, resolved, license, tag))
            return
        if out:
            Path(out).write_text(version_card(catalog, resolved, license, tag), encoding="utf-8")
            where = out
        else:
            write_version_card(catalog, resolved, license, tag)
            where = f"{resolved.uri}/README.md"
        if as_json:
            _print_json({"dataset": resolved.label, "card": where, "attached": not out})
        else:
            stdout.print(f"wrote the card of {resolved.label} to {where}")


class ExportFormat(str, Enum):
    parquet = "parquet"
    jsonl = "jsonl"


@datasets_app.command("export")
def datasets_export(ref: RefArg, dest: Annotated[str, typer.Argument(help="Destination folder or fsspec URL.")],
                    fmt: Annotated[ExportFormat, typer.Option("--format", help="Shard format.")] = ExportFormat.parquet,
                    shard_size: Annotated[Optional[str], typer.Option(
                        "--shard-size", help="Rows per shard (100000) or a size per shard (256MB, 1GiB). "
                                             "Default: 1000000 rows, as in the store.")] = None,
                    gzip: Annotated[bool, typer.Option("--gzip", help="Compress jsonl shards (.jsonl.gz).")] = False,
                    license: LicenseOpt = None, tag: TagOpt = None,
                    force: Annotated[bool, typer.Option(
                        "--force", help="Replace a previous export in DEST (other files there stay).")] = False,
                    no_verify: Annotated[bool, typer.Option(
                        "--no-verify", help="Skip re-hashing the source version first.")] = False,
                    store: StoreOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Write a version to DEST as Parquet or JSON Lines shards, with its dataset card (README.md), its charts
    and _export.json (every shard's rows and sha256); the source is verified first."""
    from skycurate.catalog.export import ShardSize, export_version, parse_shard_size
    from skycurate.catalog.writers import DEFAULT_MAX_ROWS_PER_FILE

    with _errors(debug):
        catalog, resolved = _resolve(store, ref)
        size = parse_shard_size(shard_size) if shard_size else ShardSize(rows=DEFAULT_MAX_ROWS_PER_FILE)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True, disable=as_json) as progress:
            tasks: dict[str, int] = {}

            def report(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    label = f"verifying {resolved.label}" if phase == "verify" else f"exporting {resolved.label} rows"
                    tasks[phase] = progress.add_task(label, total=total)
                progress.update(tasks[phase], completed=done, total=total)

            result = export_version(catalog, resolved, dest, fmt=fmt.value, shard_size=size, compress=gzip,
                                    force=force, verify=not no_verify, license=license, tags=tag, progress=report)
        if as_json:
            _print_json(result.model_dump())
            return
        stdout.print(f"exported {result.dataset} to {result.dest}: {result.rows:,} rows in {len(result.files)} "
                     f"{result.format} shard(s), {_human_bytes(result.bytes)}, with its card ({result.card})")


@datasets_app.command("tag")
def datasets_tag(ref: RefArg, label: Annotated[str, typer.Argument(help="Tag, e.g. prod.")],
                 store: StoreOpt = None, debug: DebugOpt = False) -> None:
    """Name a version (NAME@vN, or @latest which is pinned now): NAME@LABEL then resolves to it and gc keeps it."""
    from skycurate.catalog.retention import set_tag

    with _errors(debug):
        target = set_tag(_catalog(store), ref, label)
        name = target.split("@")[0]
        stdout.print(f"{name}@{label} -> {target}")


@datasets_app.command("untag")
def datasets_untag(name: Annotated[str, typer.Argument(help="Dataset name, e.g. web/clean.")],
                   label: Annotated[str, typer.Argument(help="Tag to remove.")],
                   store: StoreOpt = None, debug: DebugOpt = False) -> None:
    """Remove a tag (the version stays; gc may collect it later)."""
    from skycurate.catalog.retention import remove_tag

    with _errors(debug):
        remove_tag(_catalog(store), name.split("@")[0], label)
        stdout.print(f"removed {name.split('@')[0]}@{label}")


@datasets_app.command("gc")
def datasets_gc(keep: Annotated[int, typer.Option(min=1, help="Newest versions of each dataset always kept.")] = 3,
                older_than: Annotated[Optional[str], typer.Option(
                    help="Only delete versions older than this (30d, 12h, 2w).")] = None,
                dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go, delete nothing.")] = False,
                intermediates: Annotated[bool, typer.Option(
                    "--intermediates", help="Also drop all but the newest version of the web stage datasets "
                                            "(web/extracted, filtered, deduped, scored), even as parents of kept "
                                            "versions.")] = False,
                store: StoreOpt = None, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Delete old versions nobody needs: never a tagged one, one of the newest --keep, or a parent of a
    version that stays; also leftovers of dead runs (staging, scratch)."""
    from skycurate.catalog.retention import INTERMEDIATE_DATASETS, parse_age, plan_gc, run_gc

    with _errors(debug):
        catalog = _catalog(store)
        plan = plan_gc(catalog, keep=keep, older_than=parse_age(older_than) if older_than else None,
                       intermediates=INTERMEDIATE_DATASETS if intermediates else ())
        freed = 0 if dry_run else run_gc(catalog, plan)
        if as_json:
            _print_json({"dry_run": dry_run, "bytes": plan.bytes, "freed": freed,
                         "versions": [i.__dict__ for i in plan.versions],
                         "leftovers": [i.__dict__ for i in plan.leftovers], "kept": plan.kept})
            return
        table = Table(title=("would delete" if dry_run else "deleted"))
        for col in ("what", "size", "why"):
            table.add_column(col, justify="right" if col == "size" else "left")
        for item in [*plan.versions, *plan.leftovers]:
            table.add_row(item.path, _human_bytes(item.bytes), item.why)
        stdout.print(table if plan.versions or plan.leftovers else "nothing to delete")
        stdout.print(f"{'would free' if dry_run else 'freed'} {_human_bytes(plan.bytes)}; "
                     f"{len(plan.kept)} version(s) kept")
