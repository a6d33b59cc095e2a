"""The ``skycurate`` command: run flows and inspect the dataset store.

Every command takes ``--store`` (default ``./store`` or ``$SKYCURATE_STORE``), ``--json`` for
machine-readable output and ``--debug`` for tracebacks. Errors are one line on stderr and a
non-zero exit.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import logging
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from skycurate import __version__
from skycurate.errors import SkycurateError

app = typer.Typer(name="skycurate", help="Curate LLM training data into versioned Parquet datasets.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
run_app = typer.Typer(help="Run a flow.", no_args_is_help=True)
datasets_app = typer.Typer(help="Inspect published datasets.", no_args_is_help=True)
quality_app = typer.Typer(help="Train the fastText quality classifier.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Docker sandbox images for SWE task validation.", no_args_is_help=True)
sample_app = typer.Typer(help="Write built-in sample inputs (for the demo and trying things out).",
                         no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(datasets_app, name="datasets")
app.add_typer(quality_app, name="quality")
app.add_typer(sample_app, name="sample")
app.add_typer(sandbox_app, name="sandbox")

stdout = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

StoreOpt = Annotated[Optional[str], typer.Option(
    "--store", envvar="SKYCURATE_STORE", help="Store root: a path or fsspec URL. [default: ./store]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
DebugOpt = Annotated[bool, typer.Option("--debug", envvar="SKYCURATE_DEBUG", help="Show tracebacks on errors.")]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML config file for the flow.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute every stage even if a cached result exists.")]
RefArg = Annotated[str, typer.Argument(help="ns/name[@vNNNN|@latest]")]


class _NoTracebacks(logging.Filter):
    """Keep Prefect's failure messages but drop their tracebacks (``--debug`` keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


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


@app.callback()
def _main() -> None:
    """Curate LLM training data into versioned Parquet datasets."""


@app.command()
def version() -> None:
    """Print the skycurate version."""
    stdout.print(__version__)


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


# ---- run ---------------------------------------------------------------------------------

# The options every `skycurate run` command has, after the command's own (see ``_flow_command``).
_RUN_OPTIONS = _options(("store", StoreOpt, None), ("config", ConfigOpt, None), ("force", ForceOpt, False),
                        ("as_json", JsonOpt, False), ("debug", DebugOpt, False))
# command name -> ("module:ConfigModel", "module:flow"), for the tests
RUN_COMMANDS: dict[str, tuple[str, str]] = {}


def _load(target: str) -> Any:
    """``"package.module:attr"`` -> the object (imported when a command runs, not when the CLI starts)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _flow_command(name: str, config_model: str, flow: str, *, report: Callable[[dict, Any], None] | None = None,
                  json_extra: tuple[str, ...] = (), backends: bool = False) -> Callable:
    """Register ``skycurate run NAME``, which runs ``flow`` with a ``config_model`` config.

    The decorated function declares only the command's own options and returns the config
    overrides they make (dotted keys; None = not given). The options every run command has
    (``--store``, ``--config``, ``--force``, ``--json``, ``--debug``) are added to its signature
    here, and the command runs ``_run_command``. ``report(result, cfg)`` prints what the
    command adds to the datasets and funnel tables; ``json_extra`` names result keys added to
    ``--json``; ``backends`` starts Spark and the local Prefect API side by side first.
    """

    def register(options: Callable[..., dict[str, Any]]) -> Callable[..., None]:
        def run(*, store: str | None, config: str | None, force: bool, as_json: bool, debug: bool,
                **values: Any) -> None:
            with _errors(debug):
                _run_command(name, _load(config_model), config, options(**values), flow, store=store, force=force,
                             as_json=as_json, debug=debug, report=report, json_extra=json_extra, backends=backends)

        RUN_COMMANDS[name] = (config_model, flow)
        return _command(run_app, name, options, _RUN_OPTIONS, run)

    return register


def _run_command(flow_name: str, config_model: type, config_path: str | None, overrides: dict[str, Any], flow: str,
                 *, store: str | None, force: bool, as_json: bool, debug: bool,
                 report: Callable[[dict, Any], None] | None, json_extra: tuple[str, ...], backends: bool) -> None:
    """Config file + flag overrides -> pre-flight checks (before Prefect and Spark start) -> the flow -> tables."""
    from skycurate.flows._preflight import preflight
    from skycurate.schemas.config import load_config

    cfg = load_config(config_model, config_path, overrides)
    preflight(cfg, _catalog(store))
    module = flow.partition(":")[0]
    if backends:
        from skycurate.flows._backends import local_backends

        # Spark and the local Prefect API start side by side (Prefect not imported before this).
        started = local_backends(cfg.spark, preload=(module,))
    else:
        started = nullcontext()
    with started:
        _run_flow(flow_name, _load(flow), store=store, config=cfg, force=force, as_json=as_json, debug=debug,
                  report=functools.partial(report, cfg=cfg) if report else None, json_extra=json_extra)


def _run_flow(flow_name: str, flow_fn: Any, *, store: str | None, config: Any, force: bool, as_json: bool,
              debug: bool, report: Any = None, json_extra: tuple[str, ...] = ()) -> None:
    from skycurate.catalog import Catalog

    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, _NoTracebacks)]:
            logger.removeFilter(f)
        if not debug:
            logger.addFilter(_NoTracebacks())
    with err.status(f"running flow [bold]{flow_name}[/bold] (Prefect + Spark)…"):
        result = flow_fn(store=store, config=config, force=force)
    catalog = Catalog(store)
    datasets = {}
    for key, ref in result["datasets"].items():
        m = catalog.manifest(ref)
        datasets[key] = {"ref": ref.label, "uri": ref.uri, "num_rows": m.num_rows, "num_bytes": m.num_bytes}
    if as_json:
        _print_json({"flow": flow_name, "store": catalog.url, "datasets": datasets, "funnel": result["funnel"],
                     **{k: result[k] for k in json_extra if k in result}})
        return
    table = Table(title=f"{flow_name}: published datasets")
    for col in ("dataset", "rows", "size", "path"):
        table.add_column(col, justify="right" if col in ("rows", "size") else "left",
                         overflow="fold" if col == "path" else "ellipsis")
    for d in datasets.values():
        table.add_row(d["ref"], f"{d['num_rows']:,}", _human_bytes(d["num_bytes"]), d["uri"])
    stdout.print(table)
    if result["funnel"]:
        stdout.print(_funnel_table(result["funnel"]))
    if report is not None:
        report(result)
    main = next(iter(d for k, d in datasets.items() if k in ("clean", "main", "sft")), next(iter(datasets.values())))
    stdout.print("Read it (no skycurate needed):")
    stdout.print(f"  python -c \"import pyarrow.dataset as ds; print(ds.dataset('{main['uri']}').to_table())\"")
    stdout.print(f"  DuckDB / Spark SQL: SELECT * FROM '{main['uri']}/*.parquet'")
    stdout.print(f"  skycurate datasets read {main['ref']} --store {catalog.url}")


def _print_rule_ablation(result: dict, cfg: Any = None) -> None:
    """Per language, what each quality rule alone would drop (and what it rejected first)."""
    from skycurate.stages.web.ablation import ablation_rows

    report = result.get("rule_ablation") or {}
    if not report.get("rules"):
        return
    docs = report.get("documents", {})
    table = Table(title="quality rules: documents each rule alone would drop / rejected first")
    table.add_column("rule")
    for lang in ("en", "zh"):
        table.add_column(f"{lang} ({docs.get(lang, 0):,} docs)", justify="right")
    for row in ablation_rows(report):
        table.add_row(*row)
    stdout.print(table)


def _funnel_table(funnel: list[dict]) -> Table:
    table = Table(title="funnel")
    for col in ("stage", "rows in", "kept", "rejected", "quarantined"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in funnel:
        table.add_row(s["stage"], f"{s['rows_in']:,}", f"{s['rows_out']:,}", f"{s.get('rejected', 0):,}",
                      f"{s.get('quarantined', 0):,}")
    return table


@_flow_command("hello", "skycurate.schemas.hello:HelloConfig", "skycurate.flows.hello:hello_flow")
def run_hello(
    source: Annotated[Optional[list[str]], typer.Option(
        "--source", help="JSONL file, folder or glob (repeatable). [default: built-in sample]")] = None,
    min_words: Annotated[Optional[int], typer.Option(help="Drop texts with fewer words (CJK chars count one).")] = None,
) -> dict[str, Any]:
    """Demo flow: JSONL -> Spark length filter -> hello/clean (+ raw, rejected, quarantine)."""
    return {"ingest.sources": source or None, "length_filter.min_words": min_words}


@_flow_command("web", "skycurate.schemas.web_flow:WebConfig", "skycurate.flows.web_corpus:web_flow",
               report=_print_rule_ablation, json_extra=("rule_ablation",), backends=True)
def run_web(
    input: Annotated[Optional[list[str]], typer.Option(
        "--input", "-i", help="WARC/HTML/JSONL/Parquet file, folder or glob (repeatable).")] = None,
    dedup_against: Annotated[Optional[str], typer.Option(
        help="An earlier web/clean version (web/clean@vN) whose pages must not be re-admitted.")] = None,
    quality_model: Annotated[Optional[str], typer.Option(help="fastText quality model (skycurate quality train).")] = None,
    url_blocklist: Annotated[Optional[str], typer.Option(help="File of blocked domains/URL parts, one a line.")] = None,
    keyword_blocklist: Annotated[Optional[str], typer.Option(help="File of blocked keywords, one a line.")] = None,
) -> dict[str, Any]:
    """SkyPile web corpus: extract, language ID, quality and safety filters, boilerplate, dedup, classifier."""
    return {"inputs": input or None, "dedup_against": dedup_against, "quality_model.model_path": quality_model,
            "safety.url_blocklist": url_blocklist, "safety.keyword_blocklist": keyword_blocklist}


BenchmarkOpt = Annotated[Optional[list[str]], typer.Option(
    "--benchmark", "-b", help="NAME=PATH: a folder of train/test/reference files (.jsonl[.gz]/.parquet) or one "
                              "file taken as test (repeatable).")]
BenchmarksFileOpt = Annotated[Optional[str], typer.Option(
    "--benchmarks", help="YAML list of benchmarks (name, path, text_field or template, id_field).")]


def _benchmark_overrides(benchmark: list[str] | None, benchmarks_file: str | None) -> list[dict] | None:
    from skycurate.schemas.leakage import load_benchmark_specs, parse_benchmark_arg

    specs = [parse_benchmark_arg(b) for b in benchmark or []]
    if benchmarks_file:
        specs += load_benchmark_specs(benchmarks_file)
    return [s.model_dump() for s in specs] or None


def _pairs(values: list[str] | None, what: str) -> dict[str, str] | None:
    out = {}
    for v in values or []:
        k, sep, val = v.partition("=")
        if not sep or not k or not val:
            raise SkycurateError(f"{what} {v!r}: expected NAME=VALUE")
        out[k] = val
    return out or None


def _fmt(x: Any, sign: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def _report_contamination(result: dict, cfg: Any) -> None:
    t = Table(title="contamination per benchmark")
    for col in ("benchmark", "items", "contaminated", "% items", "docs touched", "% corpus",
                "docs dropped", "chars removed"):
        t.add_column(col, justify="left" if col == "benchmark" else "right")
    for r in result["summary"]:
        t.add_row(r["benchmark"], f"{r['items']:,}", f"{r['items_contaminated']:,}",
                  f"{r['pct_items_contaminated']:.2f}", f"{r['docs_touched']:,}",
                  f"{r['pct_docs_touched']:.3f}", f"{r['docs_rejected']:,}", f"{r['chars_removed']:,}")
    stdout.print(t)


@_flow_command("decontaminate", "skycurate.schemas.leakage_flows:DecontaminateFlowConfig",
               "skycurate.flows.decontaminate:decontaminate_flow", report=_report_contamination,
               json_extra=("summary",))
def run_decontaminate(
    corpus: Annotated[Optional[str], typer.Option(help="Corpus dataset, e.g. web/clean@latest.")] = None,
    benchmark: BenchmarkOpt = None,
    benchmarks: BenchmarksFileOpt = None,
    mode: Annotated[Optional[str], typer.Option(help="gpt3 (cut 200 chars around matches) or drop_document.")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="n-gram length in words (Han characters count one).")] = None,
    output: Annotated[Optional[str], typer.Option(help="Name of the cleaned corpus dataset.")] = None,
) -> dict[str, Any]:
    """Remove benchmark text from a corpus (n-gram overlap on Spark); list what matched."""
    return {"corpus": corpus, "benchmarks": _benchmark_overrides(benchmark, benchmarks), "output": output,
            "decontaminate.mode": mode, "decontaminate.n": n}


def audit_table(summaries: list[dict]) -> Table:
    from skycurate.flows.leakage_audit import report_rows

    t = Table(title="leakage audit (Skywork-13B Table 8 layout): mean token loss in nats; "
                    "D1 = L_test - L_ref, D2 = L_test - L_train, 95% bootstrap CIs")
    for col in ("model", "benchmark", "L_test", "L_train", "L_ref", "D1", "D1 CI", "D2", "D2 CI", "AUROC", "flag"):
        t.add_column(col, justify="left" if col in ("model", "benchmark", "flag") else "right", no_wrap=True)
    for r in report_rows(summaries):
        flags = [("TEST LEAK" if "test split" in f else "TRAINED ON TRAIN") for f in r["flags"]]
        t.add_row(r["model"], r["benchmark"], _fmt(r["L_test"]), _fmt(r["L_train"]), _fmt(r["L_ref"]),
                  _fmt(r["delta1"], True), f"{_fmt(r['delta1_ci'][0], True)}..{_fmt(r['delta1_ci'][1], True)}",
                  _fmt(r["delta2"], True), f"{_fmt(r['delta2_ci'][0], True)}..{_fmt(r['delta2_ci'][1], True)}",
                  _fmt(r["auroc_min_k"]), "[bold red]" + ", ".join(flags) + "[/]" if flags else "no")
    t.caption = "AUROC: Min-K% Prob separating test from reference items (0.5 = no signal)"
    return t


def _report_audit(result: dict, cfg: Any) -> None:
    stdout.print(audit_table(result["summaries"]))
    for s in result["summaries"]:
        for reason in s["flags"]["reasons"]:
            stdout.print(f"[bold red]flag[/] {s['benchmark']}: {reason}")
    ref = result["datasets"]["audit"]
    stdout.print(f"loss distributions: {ref.uri}/_losses.png")


@_flow_command("leakage-audit", "skycurate.schemas.leakage_flows:LeakageAuditFlowConfig",
               "skycurate.flows.leakage_audit:leakage_audit_flow", report=_report_audit, json_extra=("summaries",))
def run_leakage_audit(
    model: Annotated[Optional[str], typer.Option(help="Local folder of a causal LM (save_pretrained layout).")] = None,
    benchmark: BenchmarkOpt = None,
    benchmarks: BenchmarksFileOpt = None,
    reference: Annotated[Optional[list[str]], typer.Option(
        help="NAME=DATASET: a reference split built by leakage-reference (repeatable).")] = None,
    engine: Annotated[Optional[str], typer.Option(help="transformers or vllm.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Texts per forward pass.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(min=2, help="Truncate texts to this many tokens.")] = None,
) -> dict[str, Any]:
    """Audit a model for benchmark leakage: L_train / L_test / L_ref, Delta1, Delta2, Min-K%."""
    return {"model": model, "benchmarks": _benchmark_overrides(benchmark, benchmarks),
            "references": _pairs(reference, "--reference"), "audit.engine": engine, "audit.device": device,
            "audit.batch_size": batch_size, "audit.max_tokens": max_tokens}


def _report_reference(result: dict, cfg: Any) -> None:
    s = result["stats"]
    stdout.print(f"{s['accepted']} of {s['wanted']} reference items accepted after {s['prompts_sent']} "
                 f"prompts; rejected: {s['rejected_by_reason'] or 'none'}")
    stdout.print(f"use it: skycurate run leakage-audit --benchmark {cfg.benchmark.name}=... "
                 f"--reference {cfg.benchmark.name}={result['datasets']['reference'].label}")


@_flow_command("leakage-reference", "skycurate.schemas.leakage_flows:LeakageReferenceFlowConfig",
               "skycurate.flows.leakage_reference:leakage_reference_flow", report=_report_reference,
               json_extra=("stats",))
def run_leakage_reference(
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", "-b", help="NAME=PATH of the benchmark.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Local model folder (transformers) or served model name.")] = None,
    engine: Annotated[Optional[str], typer.Option(help="transformers or openai (an OpenAI-compatible endpoint).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="Endpoint of the openai engine, e.g. http://127.0.0.1:8000/v1.")] = None,
    samples: Annotated[Optional[int], typer.Option(min=1, help="Reference items wanted.")] = None,
) -> dict[str, Any]:
    """Build a fresh reference split in a benchmark's style (no n-gram overlap with the benchmark)."""
    from skycurate.schemas.leakage import parse_benchmark_arg

    return {"benchmark": parse_benchmark_arg(benchmark).model_dump() if benchmark else None,
            "reference.model": model, "reference.engine": engine, "reference.base_url": base_url,
            "reference.samples": samples}


def _report_distill(result: dict, cfg: Any) -> None:
    s = result["stats"]
    stdout.print(f"{s['prompts_with_chain']:,} of {s['prompts_in']:,} prompts gave a verified chain "
                 f"({s['samples_selected']:,} chains selected of {s['samples']:,} samples); "
                 f"{s['rejected']:,} rejected, {s['quarantined']:,} quarantined")
    stdout.print(f"tokens: {s['prompt_tokens']:,} prompt + {s['completion_tokens']:,} completion; shards: "
                 f"{s['shards']['generated']} generated, {s['shards']['reused']} reused")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["by_reason"].items(), key=lambda kv: -kv[1]))
    stdout.print(f"why prompts gave no chain: {reasons or 'none'}")
    stdout.print("train on it: datasets.load_dataset('parquet', data_files='<cot/sft uri>/*.parquet') "
                 "-> the 'messages' column")


@_flow_command("distill", "skycurate.schemas.cot:DistillFlowConfig", "skycurate.flows.cot_distill:distill_flow",
               report=_report_distill, json_extra=("stats",))
def run_distill(
    prompts: Annotated[Optional[str], typer.Option(
        help="Prompts: a dataset ref (cot/prompts@latest) or JSONL / Parquet files (globs allowed).")] = None,
    engine: Annotated[Optional[str], typer.Option(help="vllm, openai (an OpenAI-compatible endpoint) or transformers.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Teacher: local model folder, or the served model name (openai).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="Endpoint of the openai engine, e.g. http://127.0.0.1:8000/v1.")] = None,
    samples: Annotated[Optional[int], typer.Option(min=1, help="Samples per prompt (pass rate = correct / N).")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="Longest chain, in tokens.")] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, help="Sampling temperature (0 = greedy).")] = None,
    template: Annotated[Optional[str], typer.Option(
        help="Raw prompt template with {question}, e.g. 'Question: {question}\\nAnswer:'.")] = None,
    chat: Annotated[Optional[bool], typer.Option("--chat/--raw", help="Use the teacher's chat template.")] = None,
    shard_size: Annotated[Optional[int], typer.Option(min=1, help="Prompts per resumable shard.")] = None,
    benchmark: BenchmarkOpt = None,
    benchmarks: BenchmarksFileOpt = None,
) -> dict[str, Any]:
    """CoT distillation: prompts -> teacher samples -> verified chains of adaptive length -> cot/sft."""
    return {"prompts": prompts, "benchmarks": _benchmark_overrides(benchmark, benchmarks),
            "teacher.engine": engine, "teacher.model": model, "teacher.base_url": base_url,
            "generate.samples": samples, "generate.sampling.max_new_tokens": max_new_tokens,
            "generate.sampling.temperature": temperature, "generate.shard_size": shard_size,
            "template.template": template.replace("\\n", "\n") if template else None,
            "template.mode": None if chat is None else ("chat" if chat else "raw")}


@_flow_command("swe", "skycurate.schemas.swe_flow:SweConfig", "skycurate.flows.swe_mining:swe_flow")
def run_swe(
    repos: Annotated[Optional[list[str]], typer.Option(
        "--repos", "-r", help="Local clone or git URL (repeatable).")] = None,
    prs: Annotated[Optional[str], typer.Option(help="JSONL export of PRs and issues (see README).")] = None,
    github: Annotated[Optional[bool], typer.Option(
        "--github/--no-github", help="Fetch PRs and issues from the GitHub REST API ($GITHUB_TOKEN).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Instances validated in parallel.")] = None,
    keep_images: Annotated[Optional[bool], typer.Option(
        "--keep-images/--remove-images", help="Keep instance images after validation.")] = None,
    timeout: Annotated[Optional[int], typer.Option(min=1, help="Seconds a test run may take.")] = None,
) -> dict[str, Any]:
    """SWE task mining: git repos -> issue-fixing changes with tests -> Docker-validated instances."""
    return {"repos": repos or None, "prs": prs, "github": github, "validation.workers": workers,
            "validation.keep_images": keep_images, "validation.limits.timeout_s": timeout}


@_flow_command("swe-validate-patches", "skycurate.schemas.swe_flow:PatchValidationConfig",
               "skycurate.flows.swe_patches:swe_validate_patches_flow")
def run_swe_validate_patches(
    instances: Annotated[Optional[str], typer.Option(help="Validated instances, e.g. swe/instances@latest.")] = None,
    patches: Annotated[Optional[str], typer.Option(
        help="JSONL of candidate patches: instance_id, patch (or model_patch), optional model / id.")] = None,
    trajectories: Annotated[Optional[list[str]], typer.Option(
        help="Agent trajectories: SWE-agent .traj, mini-SWE-agent .traj.json or OpenHands output.jsonl; file, "
             "folder or glob (repeatable).")] = None,
    tokenizer: Annotated[Optional[str], typer.Option(
        help="Local tokenizer folder to count the tokens of each trajectory.")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Patches checked in parallel.")] = None,
) -> dict[str, Any]:
    """Check candidate patches and agent trajectories: resolved only if every F2P and P2P test passes;
    resolved trajectories become SFT data (swe/trajectories)."""
    return {"instances": instances, "patches": patches, "trajectories": trajectories or None,
            "tokenizer": tokenizer, "validation.workers": workers}


@sandbox_app.command("base-image")
def sandbox_base_image(
    python: Annotated[str, typer.Option(help="Python version of the image.")] = "3.11",
    rebuild: Annotated[bool, typer.Option(help="Rebuild even if the image exists.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Build the base image locally (debootstrap + docker import; no registry needed)."""
    with _errors(debug):
        from skycurate.sandbox.images import ensure_base_image

        with err.status(f"building the Python {python} base image (debootstrap, a few minutes the first time)…"):
            tag = ensure_base_image(python, rebuild=rebuild)
        stdout.print(tag)


@sandbox_app.command("cleanup")
def sandbox_cleanup(
    all_images: Annotated[bool, typer.Option("--all", help="Also remove env and base images.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Remove leftover skycurate containers and instance images."""
    with _errors(debug):
        from skycurate.sandbox import images, run

        containers = run.cleanup_containers()
        removed = images.cleanup()
        if all_images:
            removed += images.cleanup(prefix="skycurate/env") + images.cleanup(prefix="skycurate/base")
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


# ---- datasets ----------------------------------------------------------------------------

def _catalog(store: str | None):
    from skycurate.catalog import Catalog

    return Catalog(store)


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
        catalog = _catalog(store)
        resolved = catalog.resolve(ref)
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
        catalog = _catalog(store)
        resolved = catalog.resolve(ref)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
