"""Model leakage audit flow: score a model on each benchmark's train / test / reference splits.

One dataset task per run: load the benchmarks, score every item with the engine (batched,
length-sorted), publish ``leakage/audit`` (one row per item, the Skywork-13B L / Delta summary
with bootstrap CIs, membership AUROCs and flags in the manifest, the loss-distribution plot next
to it). The cache key holds the model folder's fingerprint, the benchmark files' hashes and the
audit config, so a rerun with nothing changed scores nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow

from skycurate.catalog import Catalog, DatasetRef
from skycurate.catalog.pins import ModelFolderPin, pin_model_folder
from skycurate.connectors.benchmarks import BenchmarkPins, benchmark_parents, pin_benchmarks
from skycurate.errors import SkycurateError
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import current_producer, dataset_task, run_dataset_task
from skycurate.schemas.leakage import BenchmarkSpec
from skycurate.schemas.leakage_audit import REFERENCE, SPLITS, AuditConfig
from skycurate.schemas.leakage_flows import LeakageAuditFlowConfig

NAMESPACE = "leakage"


def _reference_items(catalog: Catalog, ref: DatasetRef) -> list[tuple[str, str]]:
    table = catalog.open(ref).to_table(columns=["item_id", "text"])
    return list(zip(table["item_id"].to_pylist(), table["text"].to_pylist(), strict=True))


@dataset_task()
def audit(store: str, model: ModelFolderPin, model_label: str, benchmarks: list[BenchmarkSpec],
          files: BenchmarkPins, references: dict[str, DatasetRef], cfg: AuditConfig) -> DatasetRef:
    from skycurate.connectors.benchmarks import load_benchmark
    from skycurate.connectors.llm import open_scorer
    from skycurate.reporting import loss_distributions_png
    from skycurate.stages.leakage.membership import score_benchmark, summarize_all

    catalog = Catalog(store)
    scorer = open_scorer(model.path, cfg)
    tables = []
    for spec in benchmarks:
        splits = load_benchmark(spec)
        items = {split: list(zip(t["item_id"].to_pylist(), t["text"].to_pylist(), strict=True))
                 for split, t in splits.items() if split in SPLITS}
        if spec.name in references:
            items[REFERENCE] = _reference_items(catalog, references[spec.name])
        missing = [s for s in SPLITS if s not in items]
        if missing:
            raise SkycurateError(f"benchmark {spec.name}: the audit needs train, test and reference splits; "
                                 f"{spec.path} has no {'/'.join(missing)}"
                                 + (" (build one with `skycurate run leakage-reference`)" if REFERENCE in missing else ""))
        tables.append(score_benchmark(scorer, spec.name, items, cfg, model=model_label))
    table = pa.concat_tables(tables)
    summaries = [s.to_dict() for s in summarize_all(table, cfg)]
    rows = table.select(["benchmark", "split", "loss_mean"]).to_pylist()
    chart = loss_distributions_png(rows, summaries, f"leakage audit: {model_label}")
    parents = [model.parent(f"model:{model_label}"),
               *benchmark_parents(files), *references.values()]
    stats = {"model": model_label, "engine": cfg.engine, "summaries": summaries,
             "truncated": int(sum(table["truncated"].to_pylist())),
             "flagged": [s["benchmark"] for s in summaries
                         if s["flags"]["test_leakage"] or s["flags"]["train_split_training"]]}
    return catalog.publish(f"{NAMESPACE}/audit", table, parents, current_producer(cfg), stats,
                           attachments={"_losses.png": chart})


@flow(name="leakage-audit")
def leakage_audit_flow(store: str | None = None, config: LeakageAuditFlowConfig = LeakageAuditFlowConfig(),
                       force: bool = False) -> dict[str, Any]:
    """Skywork-13B leakage audit: L_train / L_test / L_ref, Delta1 and Delta2 with CIs, Min-K% and friends."""
    cfg = config
    store, catalog = open_flow(store, cfg)
    references = {name: catalog.resolve(ref) for name, ref in cfg.references.items()}
    model = pin_model_folder(cfg.model)
    label = cfg.model_label or Path(cfg.model).resolve().name
    ref = run_dataset_task(audit, store=store, force=force, model=model, model_label=label,
                           benchmarks=cfg.benchmarks, files=pin_benchmarks(cfg.benchmarks),
                           references=references, cfg=cfg.audit)
    manifest = catalog.manifest(ref)
    _attach_artifacts(catalog, ref, manifest.stats["summaries"])
    return {"datasets": {"audit": ref}, "summaries": manifest.stats["summaries"], "funnel": []}


def report_rows(summaries: list[dict]) -> list[dict]:
    """The Table 8 layout of the Skywork-13B report: one row per (model, benchmark)."""
    rows = []
    for s in summaries:
        splits = s["splits"]

        def loss(split: str) -> float | None:
            return (splits.get(split) or {}).get("loss")

        d1, d2 = s.get("delta1") or {}, s.get("delta2") or {}
        auroc = (s.get("auroc") or {}).get("test_vs_reference", {})
        rows.append({
            "model": s["model"], "benchmark": s["benchmark"],
            "L_test": loss("test"), "L_train": loss("train"), "L_ref": loss("reference"),
            "delta1": d1.get("value"), "delta1_ci": (d1.get("ci_low"), d1.get("ci_high")),
            "delta2": d2.get("value"), "delta2_ci": (d2.get("ci_low"), d2.get("ci_high")),
            "auroc_min_k": auroc.get("min_k"), "auroc_loss": auroc.get("loss_mean"),
            "flags": list(s["flags"].get("reasons") or []),
        })
    return rows


def _attach_artifacts(catalog: Catalog, ref: DatasetRef, summaries: list[dict]) -> None:
    import base64

    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    table = [{"model": r["model"], "benchmark": r["benchmark"], "L_test": fmt(r["L_test"]),
              "L_train": fmt(r["L_train"]), "L_ref": fmt(r["L_ref"]), "Delta1": fmt(r["delta1"]),
              "Delta2": fmt(r["delta2"]), "AUROC Min-K% (test vs ref)": fmt(r["auroc_min_k"]),
              "flag": "; ".join(r["flags"]) or "no"} for r in report_rows(summaries)]
    create_table_artifact(key="leakage-audit", table=table,
                          description="Skywork-13B leakage audit: split losses and Deltas (nats/token).")
    png = catalog.attachment(ref, "_losses.png")
    create_markdown_artifact(key="leakage-audit-losses",
                             markdown=f"![losses](data:image/png;base64,{base64.b64encode(png).decode()})",
                             description="Per-item loss distributions of the three splits.")
