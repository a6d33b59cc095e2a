"""The tool groups beside the flows: ``skycurate sandbox`` (build the base Docker image, remove
leftover containers and images, disk usage), ``skycurate quality`` (train the fastText quality
classifier) and ``skycurate sample`` (write the built-in sample inputs; ``_sample_command`` adds
``--json`` and ``--debug`` to each).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from skycurate.cli.common import (
    DebugOpt,
    JsonOpt,
    _command,
    _errors,
    _human_bytes,
    _options,
    _print_info,
    _print_json,
    err,
    stdout,
)

quality_app = typer.Typer(help="Train the fastText quality classifier.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Docker sandbox images for SWE task validation.", no_args_is_help=True)
sample_app = typer.Typer(help="Write built-in sample inputs (for the demo and trying things out).",
                         no_args_is_help=True)


@sandbox_app.command("base-image")
def sandbox_base_image(
    python: Annotated[list[str] | None, typer.Option(
        help="Python version of the image (3.9, 3.11, 3.13; repeatable), or 'all'. Default: 3.11.")] = None,
    rebuild: Annotated[bool, typer.Option(help="Rebuild even if the image exists.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Build base images locally (debootstrap of the Debian release that ships that Python + docker
    import; no registry needed). SWE validation builds the ones it needs on first use anyway."""
    with _errors(debug):
        from skycurate.sandbox.images import SUPPORTED_PYTHONS, ensure_base_image

        wanted = python or ["3.11"]
        versions = list(SUPPORTED_PYTHONS) if "all" in wanted else wanted
        for ver in versions:
            with err.status(f"building the Python {ver} base image (debootstrap, a few minutes the first time)…"):
                tag = ensure_base_image(ver, rebuild=rebuild)
            stdout.print(tag)


@sandbox_app.command("cleanup")
def sandbox_cleanup(
    run: Annotated[str | None, typer.Option(
        "--run", help="Only what this run made (its id is logged when validation starts). "
                      "Default: what runs whose process has ended on this host left behind.")] = None,
    include_kept: Annotated[bool, typer.Option(help="Also instance images kept with --keep-images.")] = False,
    all_images: Annotated[bool, typer.Option("--all", help="Also remove env and base images.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Remove leftover skycurate containers and instance images: never those of a run still going
    (its process is alive, or on another host) unless named with --run."""
    with _errors(debug):
        from functools import partial

        from skycurate.sandbox import image_build, images
        from skycurate.sandbox import run as sandbox_run

        select = partial(image_build.cleanup_selects, run=run, include_kept=include_kept)
        containers = sandbox_run.cleanup_containers(select)
        removed = images.cleanup(select=select)
        if all_images:
            removed += images.cleanup(prefix="skycurate/env", select=select)
            removed += images.cleanup(prefix="skycurate/base", select=select)
        stdout.print(f"removed {containers} container(s) and {len(removed)} image(s)")


@sandbox_app.command("du")
def sandbox_du(as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Disk used by skycurate images: shared layers vs what each image adds."""
    with _errors(debug):
        from skycurate.sandbox.images import disk_usage

        du = disk_usage()
        if as_json:
            import dataclasses

            _print_json(dataclasses.asdict(du))
            return
        t = Table(title="skycurate images")
        for col in ("image", "kind", "size", "unique"):
            t.add_column(col, justify="left" if col in ("image", "kind") else "right")
        for im in du.images:
            t.add_row(im.tag, im.kind, _human_bytes(im.size_bytes), _human_bytes(im.unique_bytes))
        stdout.print(t)


@quality_app.command("train")
def quality_train(
    positive: Annotated[list[str], typer.Option(help="Reference-quality texts: .txt (one per line) or .jsonl[.gz].")],
    negative: Annotated[list[str], typer.Option(help="Ordinary crawl texts, same formats.")],
    out: Annotated[str, typer.Option(help="Where to write the fastText model.")],
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the data (fastText's tutorial value).")] = 25,
    lr: Annotated[float, typer.Option(min=0.0, help="Learning rate; lower it if training reports NaN.")] = 0.5,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train the SkyPile-style quality classifier (would Wikipedia cite this page?)."""
    with _errors(debug):
        from skycurate.stages.web.quality_model import train_quality_model

        with err.status("training the fastText quality classifier…"):
            metrics = train_quality_model(positive, negative, out, epochs=epochs, lr=lr)
        if as_json:
            _print_json({"model": out, **metrics})
            return
        out_table = Table(title=f"quality model -> {out} (held-out metrics)")
        out_table.add_column("metric")
        out_table.add_column("value", justify="right")
        for k, v in metrics.items():
            out_table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
        stdout.print(out_table)

# The options every `skycurate sample` command has, after the command's own.
_OUTPUT_OPTIONS = _options(("as_json", JsonOpt, False), ("debug", DebugOpt, False))


def _sample_command(name: str) -> Callable:
    """Register ``skycurate sample NAME``: the decorated function writes the sample and returns what
    to print (``key: value`` lines, or JSON); ``--json`` and ``--debug`` are added here."""

    def register(write: Callable[..., dict[str, Any]]) -> Callable[..., None]:
        def run(*, as_json: bool, debug: bool, **values: Any) -> None:
            with _errors(debug):
                _print_info(write(**values), as_json)

        return _command(sample_app, name, write, _OUTPUT_OPTIONS, run)

    return register


@_sample_command("web")
def sample_web(
    out: Annotated[str, typer.Option("--out", help="Folder to write the sample crawl into.")] = "sample",
) -> dict[str, Any]:
    """Write a small crawl (WARC.gz, HTML, JSONL.zst; EN+ZH; boilerplate, duplicates, spam, broken records)."""
    from skycurate.samples.web import write_sample_crawl

    sample = write_sample_crawl(out)
    return {"inputs": str(sample.inputs), "records": sample.records, "broken": sample.broken,
            "quality_positive": str(sample.positives), "quality_negative": str(sample.negatives),
            "url_blocklist": str(sample.url_blocklist), "keyword_blocklist": str(sample.keyword_blocklist)}


@_sample_command("swe")
def sample_swe(
    out: Annotated[str, typer.Option("--out", help="Folder to write the sample repository into.")] = "sample/swe",
) -> dict[str, Any]:
    """Write a small git repository with two issue-closing fixes (one valid, one not) and its issues export."""
    from skycurate.samples.swe import write_sample_repo

    sample = write_sample_repo(out)
    return {"repo": str(sample.path), "prs": str(sample.issues)}


@_sample_command("cot")
def sample_cot(
    out: Annotated[str, typer.Option("--out", help="Folder for the teacher model and the prompts.")] = "sample/cot",
    prompts: Annotated[int, typer.Option(min=1, help="Good prompts to write (5 bad rows follow).")] = 300,
    quick: Annotated[bool, typer.Option("--quick", help="A much weaker teacher trained in seconds (tests).")] = False,
) -> dict[str, Any]:
    """Train a tiny arithmetic teacher on CPU (~2-3 min; reused when present) and write a prompts JSONL for it."""
    from skycurate.samples import cot

    folder = Path(out) / ("teacher-quick" if quick else "teacher")
    if not (folder / "teacher.json").is_file():
        cfg = (cot.TeacherConfig(hidden=64, layers=2, heads=2, intermediate=128, batch_size=16, lr=4e-3)
               if quick else cot.TeacherConfig())
        with err.status("training the arithmetic teacher on CPU (one thread)…"):
            cot.train_teacher(folder, n_train=2400 if quick else 38400, config=cfg,
                              kinds=("add",) if quick else cot.DEFAULT_KINDS)
    summary = cot.write_prompts(Path(out) / "prompts.jsonl", prompts, seed=11,
                                kinds=("add",) if quick else cot.DEFAULT_KINDS,
                                exclude=cot.training_questions(folder))
    return {"teacher": str(folder), "prompts": str(summary.path), "rows": summary.rows,
            "bad": summary.bad, "by_level": summary.by_level, "template": cot.PROMPT_TEMPLATE}
