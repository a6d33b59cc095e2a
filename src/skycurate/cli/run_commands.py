"""The ``skycurate run`` commands, one per flow (hello, web, decontaminate, leakage-audit,
leakage-reference, distill, swe, swe-validate-patches): each declares its own options and turns
them into config overrides, and some add a report printed after the datasets and funnel tables
(quality-rule ablation, contamination, leakage audit, reference split, distillation stats). They
are registered on ``run_app`` (``cli.run``) when this module is imported.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from skycurate.cli.common import stdout
from skycurate.cli.run import _flow_command
from skycurate.errors import SkycurateError


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


def _report_web(result: dict, cfg: Any = None) -> None:
    _print_rule_ablation(result, cfg)
    _print_tokens(result.get("tokens"))


def _print_tokens(tokens: dict | None) -> None:
    """Total tokens and their split by language and source, when the run counted them."""
    if not tokens:
        return
    stdout.print(f"tokens: {tokens['tokens']:,} in {tokens['rows']:,} rows ({tokens['tokenizer']})")
    for key, values in tokens.items():
        if key.startswith("by_") and values:
            stdout.print(f"  {key.removeprefix('by_')}: " + ", ".join(f"{k} {v:,}" for k, v in values.items()))


TokenizerOpt = Annotated[Optional[str], typer.Option(
    "--tokenizer", help="Count tokens (n_tokens column, totals in the manifest) with this tokenizer: a folder with "
                        "tokenizer.json, a tokenizer.json file or tiktoken:<encoding>.")]


@_flow_command("hello", "skycurate.schemas.hello:HelloConfig", "skycurate.flows.hello:hello_flow")
def run_hello(
    source: Annotated[Optional[list[str]], typer.Option(
        "--source", help="JSONL file, folder or glob (repeatable). [default: built-in sample]")] = None,
    min_words: Annotated[Optional[int], typer.Option(help="Drop texts with fewer words (CJK chars count one).")] = None,
) -> dict[str, Any]:
    """Demo flow: JSONL -> Spark length filter -> hello/clean (+ raw, rejected, quarantine)."""
    return {"ingest.sources": source or None, "length_filter.min_words": min_words}


@_flow_command("web", "skycurate.schemas.web_flow:WebConfig", "skycurate.flows.web_corpus:web_flow",
               report=_report_web, json_extra=("rule_ablation", "tokens"), backends=True)
def run_web(
    input: Annotated[Optional[list[str]], typer.Option(
        "--input", "-i", help="WARC/HTML/JSONL/Parquet file, folder or glob (repeatable).")] = None,
    dedup_against: Annotated[Optional[str], typer.Option(
        help="An earlier web/clean version (web/clean@vN) whose pages must not be re-admitted.")] = None,
    quality_model: Annotated[Optional[str], typer.Option(help="fastText quality model (skycurate quality train).")] = None,
    url_blocklist: Annotated[Optional[str], typer.Option(help="File of blocked domains/URL parts, one a line.")] = None,
    keyword_blocklist: Annotated[Optional[str], typer.Option(help="File of blocked keywords, one a line.")] = None,
    benchmark: Annotated[Optional[list[str]], typer.Option(
        help="NAME=PATH: decontaminate the new web/clean against this benchmark in the same run (repeatable).")
    ] = None,
    tokenizer: TokenizerOpt = None,
) -> dict[str, Any]:
    """SkyPile web corpus: extract, language ID, quality and safety filters, boilerplate, dedup, classifier."""
    return {"inputs": input or None, "dedup_against": dedup_against, "quality_model.model_path": quality_model,
            "safety.url_blocklist": url_blocklist, "safety.keyword_blocklist": keyword_blocklist,
            "benchmarks": _benchmark_overrides(benchmark, None), "tokens.tokenizer": tokenizer}


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


def _report_preference(result: dict, cfg: Any) -> None:
    for name, v in result["stats"]["by_source"].items():
        stdout.print(f"{name}: {v['records']} records -> {v['pairs']} pairs, {v['rejected']} rejected")
    stdout.print(f"why rejected: {result['stats']['by_reason'] or 'none'}")


@_flow_command("preference", "skycurate.schemas.pref_flow:PrefFlowConfig",
               "skycurate.flows.pref_ingest:preference_flow", report=_report_preference, json_extra=("stats",))
def run_preference(
    source: Annotated[Optional[list[str]], typer.Option(
        help="NAME=PATH: a preference set (JSONL/JSON/Parquet files or a dataset ref; TRL, HH-RLHF, UltraFeedback "
             "or ultrafeedback_binarized layout, detected); repeatable, earlier sources win duplicates.")] = None,
    benchmark: BenchmarkOpt = None,
    benchmarks: BenchmarksFileOpt = None,
) -> dict[str, Any]:
    """Preference sets -> pref/pairs: one TRL DPO layout, ties and duplicates dropped, prompts decontaminated."""
    pairs = _pairs(source, "--source")
    return {"sources": [{"name": k, "path": v} for k, v in pairs.items()] if pairs else None,
            "benchmarks": _benchmark_overrides(benchmark, benchmarks)}


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
    if "judge" in s:
        j = s["judge"]
        stdout.print(f"judge: {j['asked']:,} questions asked, {j['quarantined']:,} replies decided nothing "
                     "(cot/judge-quarantine)")
    _print_tokens(s.get("tokens"))
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
    judge_model: Annotated[Optional[str], typer.Option(
        help="Judge for what rules cannot decide: local model folder, or the served model name (openai).")] = None,
    judge_engine: Annotated[Optional[str], typer.Option(
        help="Engine of the judge: vllm, openai or transformers.")] = None,
    judge_base_url: Annotated[Optional[str], typer.Option(help="Endpoint of an openai judge.")] = None,
    judge_scores: Annotated[Optional[bool], typer.Option(
        "--judge-scores/--no-judge-scores", help="Let the judge score s_v/s_t/s_i of prompts that lack them.")] = None,
    tokenizer: TokenizerOpt = None,
) -> dict[str, Any]:
    """CoT distillation: prompts -> teacher samples -> verified chains of adaptive length -> cot/sft."""
    return {"prompts": prompts, "benchmarks": _benchmark_overrides(benchmark, benchmarks),
            "teacher.engine": engine, "teacher.model": model, "teacher.base_url": base_url,
            "generate.samples": samples, "generate.sampling.max_new_tokens": max_new_tokens,
            "generate.sampling.temperature": temperature, "generate.shard_size": shard_size,
            "template.template": template.replace("\\n", "\n") if template else None,
            "template.mode": None if chat is None else ("chat" if chat else "raw"),
            "judge.engine.model": judge_model, "judge.engine.engine": judge_engine,
            "judge.engine.base_url": judge_base_url, "judge.scores": judge_scores, "tokens.tokenizer": tokenizer}


def _report_tokens(result: dict, cfg: Any) -> None:
    _print_tokens(result["stats"])


@_flow_command("tokens", "skycurate.schemas.tokens_flow:TokensFlowConfig", "skycurate.flows.tokens:tokens_flow",
               report=_report_tokens, json_extra=("stats",), backends=True)
def run_tokens(
    dataset: Annotated[Optional[str], typer.Option(help="The dataset version counted, e.g. web/clean@v0003.")] = None,
    tokenizer: TokenizerOpt = None,
    text_column: Annotated[Optional[str], typer.Option(
        help="The column counted (default: text, messages, problem_statement, question or prompt).")] = None,
    add_special_tokens: Annotated[Optional[bool], typer.Option(
        "--add-special-tokens/--no-special-tokens", help="Count the BOS/EOS the tokenizer adds to each text.")] = None,
    output: Annotated[Optional[str], typer.Option(help="Name of the counted copy (default: <dataset>-tokens).")] = None,
) -> dict[str, Any]:
    """Token counts: a dataset version -> <name>-tokens (its rows with n_tokens), totals by language and source."""
    import skycurate.flows._preflight_tokens  # noqa: F401 - its checks run before Prefect and Spark start

    return {"dataset": dataset, "output": output, "tokens.tokenizer": tokenizer, "tokens.text_column": text_column,
            "tokens.add_special_tokens": add_special_tokens}


def _report_evaluate(result: dict, cfg: Any) -> None:
    """The accuracy table (benchmark x subject rows, one column per model), what was quarantined, the chart."""
    from skycurate.reporting.evaluate import accuracy_pivot

    models, cells = accuracy_pivot(result["accuracy"])
    t = Table(title="accuracy: correct / samples (undecided and failed answers count as wrong)")
    for col in ("benchmark", "subject", "items", *models):
        t.add_column(col, justify="left" if col in ("benchmark", "subject") else "right", no_wrap=True)
    for bench, subject, by_model in cells:
        items = max(r["items"] for r in by_model.values())
        t.add_row(bench, f"[bold]{subject}[/]" if subject == "all" else subject, f"{items:,}",
                  *(f"{r['accuracy']:.1%} ({r['correct']}/{r['n']})" if r["accuracy"] is not None else "-"
                    for r in (by_model.get(m) or {"accuracy": None} for m in models)))
    stdout.print(t)
    s = result["stats"]
    for bench, c in s["by_benchmark"].items():
        stdout.print(f"{bench}: {c['rows']:,} rows ({c['layout']} layout) -> {c['items']:,} items, "
                     f"{c['quarantined']:,} quarantined")
    if s["quarantined"]:
        stdout.print(f"why quarantined: {', '.join(f'{k} {v}' for k, v in s['quarantine_by_reason'].items())}")
    for r in result["accuracy"]:
        if r["subject"] == "all" and (r["undecided"] or r["errors"]):
            stdout.print(f"{r['benchmark']} x {r['model']}: {r['undecided']} undecided, {r['errors']} failed")
    if s.get("judge"):
        j = s["judge"]
        stdout.print(f"judge: {j['asked']:,} undecided answers asked, {j['decided']:,} decided, "
                     f"{j['quarantined']:,} replies unparsable (eval/judge-quarantine)")
    stdout.print(f"chart: {result['datasets']['accuracy'].uri}/_charts.png")


@_flow_command("evaluate", "skycurate.schemas.evaluate:EvalFlowConfig", "skycurate.flows.evaluate:evaluate_flow",
               report=_report_evaluate, json_extra=("stats", "accuracy"))
def run_evaluate(
    benchmark: BenchmarkOpt = None,
    benchmarks: BenchmarksFileOpt = None,
    model: Annotated[Optional[list[str]], typer.Option(
        help="A model to evaluate (repeatable): local folder, or the served name with --engine openai.")] = None,
    engine: Annotated[Optional[str], typer.Option(
        help="Engine of every --model: transformers, vllm or openai (an OpenAI-compatible endpoint).")] = None,
    base_url: Annotated[Optional[str], typer.Option(
        help="Endpoint of the openai engine, e.g. http://127.0.0.1:8000/v1.")] = None,
    device: Annotated[Optional[str], typer.Option(help="transformers: auto, cpu or cuda.")] = None,
    samples: Annotated[Optional[int], typer.Option(min=1, help="Answers per item (accuracy averages them).")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="Longest answer, in tokens.")] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, help="Sampling temperature (0 = greedy).")] = None,
    template: Annotated[Optional[str], typer.Option(
        help="Raw prompt template with {question}, e.g. 'Question: {question}\\nAnswer:'.")] = None,
    chat: Annotated[Optional[bool], typer.Option("--chat/--raw", help="Use each model's chat template.")] = None,
    system: Annotated[Optional[str], typer.Option(
        help="System prompt, e.g. 'Put the final answer in \\boxed{}.'")] = None,
    subject_field: Annotated[Optional[str], typer.Option(
        help="Column of the subject (default: subject, category, domain or source).")] = None,
    shard_size: Annotated[Optional[int], typer.Option(min=1, help="Items per resumable shard.")] = None,
    judge_model: Annotated[Optional[str], typer.Option(
        help="Judge for answers the rules leave undecided: local folder, or served name (openai).")] = None,
    judge_engine: Annotated[Optional[str], typer.Option(
        help="Engine of the judge: vllm, openai or transformers.")] = None,
    judge_base_url: Annotated[Optional[str], typer.Option(help="Endpoint of an openai judge.")] = None,
) -> dict[str, Any]:
    """Benchmark evaluation: each model answers the test splits; verified answers -> accuracy per model and subject."""
    import skycurate.flows._preflight_evaluate  # noqa: F401 - its checks run before Prefect starts

    if (engine or base_url or device) and not model:
        raise SkycurateError("--engine, --base-url and --device apply to --model; pass --model too "
                             "(or set models in --config)")
    models = [{k: v for k, v in {"model": m, "engine": engine, "base_url": base_url, "device": device}.items()
               if v is not None} for m in model or []]
    return {"benchmarks": _benchmark_overrides(benchmark, benchmarks), "models": models or None,
            "subject_field": subject_field, "generate.samples": samples,
            "generate.sampling.max_new_tokens": max_new_tokens, "generate.sampling.temperature": temperature,
            "generate.shard_size": shard_size, "template.template": template.replace("\\n", "\n") if template else None,
            "template.mode": None if chat is None else ("chat" if chat else "raw"), "template.system": system,
            "judge.engine.model": judge_model, "judge.engine.engine": judge_engine,
            "judge.engine.base_url": judge_base_url}


def _report_swe(result: dict, cfg: Any) -> None:
    _print_tokens(result.get("tokens"))


@_flow_command("swe", "skycurate.schemas.swe_flow:SweConfig", "skycurate.flows.swe_mining:swe_flow",
               report=_report_swe, json_extra=("tokens",))
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
    python: Annotated[Optional[str], typer.Option(
        help="Python of the test environments: auto (per repository and commit date) or 3.9, 3.11, 3.13.")] = None,
    tokenizer: TokenizerOpt = None,
) -> dict[str, Any]:
    """SWE task mining: git repos -> issue-fixing changes with tests -> Docker-validated instances."""
    return {"repos": repos or None, "prs": prs, "github": github, "validation.workers": workers,
            "validation.keep_images": keep_images, "validation.limits.timeout_s": timeout, "python": python,
            "tokens.tokenizer": tokenizer}


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


def _report_mix(result: dict, cfg: Any) -> None:
    s = result["stats"]
    t = Table(title=f"train/{cfg.name}: {s['tokens']:,} tokens, {s['rows']:,} rows (seed {s['seed']})")
    for col in ("source", "held", "planned", "achieved", "share planned", "share achieved", "epochs"):
        t.add_column(col, justify="left" if col == "source" else "right", no_wrap=True)
    for name, p in s["sources"].items():
        t.add_row(name, f"{p['available_tokens']:,}", f"{p['target_tokens']:,}", f"{p['achieved_tokens']:,}",
                  f"{p['share_planned']:.1%}", f"{p['share_achieved']:.1%}", f"{p['epochs_achieved']:.2f}")
    stdout.print(t)
    stdout.print(f"chart: {result['datasets']['mixture'].uri}/_mix.png")


@_flow_command("mix", "skycurate.schemas.mix:MixFlowConfig", "skycurate.flows.mix:mix_flow", report=_report_mix,
               json_extra=("stats",))
def run_mix(
    name: Annotated[Optional[str], typer.Option(help="The mixture: published as train/NAME.")] = None,
    total_tokens: Annotated[Optional[int], typer.Option(min=1, help="The mixture's size in tokens.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the shuffle and of partial epochs.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option(
        help="Tokenizer folder, tokenizer.json or tiktoken:<encoding> for sources without n_tokens.")] = None,
    shard_rows: Annotated[Optional[int], typer.Option(min=1, help="Rows per Parquet shard.")] = None,
) -> dict[str, Any]:
    """Training mixture: catalog datasets with token shares or budgets, capped upsampling -> train/NAME."""
    import skycurate.flows._preflight_mix  # noqa: F401 - its checks run before Prefect starts

    return {"name": name, "total_tokens": total_tokens, "seed": seed, "shard_rows": shard_rows,
            "tokenizer.tokenizer": tokenizer}
