"""SWE task mining flow (Skywork-SWE): repositories -> candidates (Spark, one task per repo) ->
runtime-validated instances (Docker, N parallel workers) -> ``swe/instances`` + ``swe/rejected``.

Tasks: ``mine`` publishes ``swe/candidates`` (and the mining rejections); ``validate`` builds
images, runs the tests before and after the gold patch and publishes ``swe/instances`` and
``swe/rejected`` (every dropped repo or candidate with its stage and reason) with the funnel
repos -> candidates -> installable -> validated. Validation journals each finished instance in
``<store>/_work/swe/<candidates version>/``, so a killed run resumes without redoing them (``--force``
redoes them too).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pyarrow as pa
from prefect import flow

from skycurate.catalog import Catalog, DatasetRef
from skycurate.catalog.pins import FilePin, RepoPin, pin_file
from skycurate.connectors.git_repos import pin_repos
from skycurate.flows._preflight import open_flow
from skycurate.flows._runtime import (
    DOCKER_SLOTS,
    attach_run_report,
    current_producer,
    dataset_task,
    run_dataset_task,
    slots,
)
from skycurate.schemas.config import SparkConfig
from skycurate.schemas.swe import INSTANCE_SCHEMA, REJECTED_SCHEMA, MiningConfig, ValidationConfig
from skycurate.schemas.swe_flow import SweConfig
from skycurate.schemas.tokens import TokenizerConfig
from skycurate.stages.accounting import FunnelStep

NAMESPACE = "swe"
log = logging.getLogger(__name__)


@dataset_task()
def mine(store: str, repos: list[RepoPin], prs: FilePin | None, github: bool,
         cfg: MiningConfig, cache_dir: str, spark: SparkConfig) -> dict[str, DatasetRef]:
    from skycurate.spark import get_spark
    from skycurate.stages.swe.mining import mine_on_spark

    catalog, session = Catalog(store), get_spark(spark)
    parents = [r.parent() for r in repos] + ([prs.parent("prs")] if prs else [])
    with catalog.scratch("swe-mine") as scratch:
        candidates, rejected = mine_on_spark(session, [r.spec for r in repos], cfg, cache_dir=cache_dir, export=prs.path if prs else None,
                                             github=github, scratch=scratch,
                                             fetch=False)  # pin_repos fetched every clone just before
        with catalog.all_or_nothing():
            rej_ref = catalog.publish(f"{NAMESPACE}/mine_rejected", rejected, parents, current_producer(cfg))
            cand_ref = catalog.publish(f"{NAMESPACE}/candidates", candidates, [*parents, rej_ref],
                                       current_producer(cfg), {"repos": len(repos)})
    return {"candidates": cand_ref, "mine_rejected": rej_ref}


def _ts(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


@dataset_task()
def validate(store: str, candidates: DatasetRef, mine_rejected: DatasetRef, n_repos: int, python: str,
             cfg: ValidationConfig, force: bool = False, tokens: TokenizerConfig | None = None,
             tokenizer: FilePin | None = None) -> dict[str, DatasetRef]:
    from skycurate.reporting import funnel_chart_png
    from skycurate.stages.swe.validate import validate_all, validation_funnel

    catalog = Catalog(store)
    rows = catalog.open(candidates).to_table().to_pylist()
    work = catalog.work_dir(NAMESPACE, f"{candidates.name.replace('/', '_')}-{candidates.version}")

    def progress(n: int, total: int, out: dict) -> None:
        row = out["row"]
        what = "VALID" if out["kind"] == "instance" else f"rejected ({row['stage']}: {row['reason']})"
        log.info("[%d/%d] %s %s in %.0fs", n, total, row["instance_id"], what, out.get("seconds", 0))

    with slots(DOCKER_SLOTS, cfg.workers * max(1, len(cfg.docker_hosts))):
        outcomes = validate_all(rows, cfg, work, python, progress, force=force)
    instances = [o["row"] for o in outcomes if o["kind"] == "instance"]
    for r in instances:
        r["created_at"] = _ts(r.get("created_at"))
    mined_rej = catalog.open(mine_rejected).to_table().to_pylist()
    rejected = mined_rej + [o["row"] for o in outcomes if o["kind"] == "rejected"]
    repos_rejected = len({r["repo"] for r in mined_rej if r["stage"] in ("repo", "clone") and r["instance_id"] is None})
    steps = validation_funnel(n_repos, repos_rejected, len(rows), outcomes)
    producer = current_producer(cfg)
    by_reason: dict[str, int] = {}
    for r in rejected:
        by_reason[f"{r['stage']}:{r['reason']}"] = by_reason.get(f"{r['stage']}:{r['reason']}", 0) + 1
    with catalog.all_or_nothing():
        rej_ref = catalog.publish(f"{NAMESPACE}/rejected", pa.Table.from_pylist(rejected, REJECTED_SCHEMA),
                                  [candidates, mine_rejected], producer, {"by_reason": by_reason})
        extra = [o.get("image_bytes") for o in outcomes if o["kind"] == "instance" and o.get("image_bytes") is not None]

        def stats(n: int) -> dict[str, Any]:
            # every candidate is an instance or a rejected row: a lost or invented one stops the publish
            FunnelStep(stage="swe", rows_in=len(rows), rows_out=n,
                       rejected=sum(1 for o in outcomes if o["kind"] == "rejected"))
            return {"funnel": steps, "candidates": len(rows), "validated": n, "rejected_by_reason": by_reason,
                    "flaky": {o["row"]["instance_id"]: o.get("flaky") for o in outcomes if o.get("flaky")},
                    "instance_image_extra_bytes": extra, "work": str(work)}

        chart = funnel_chart_png(steps, "SWE task mining funnel")
        table, counted = pa.Table.from_pylist(instances, INSTANCE_SCHEMA), {}
        if tokens is not None:   # n_tokens of each instance (problem_statement by default), totals per repo
            from skycurate.stages.tokens import count_table, token_stats, tokenizer_identity

            table = count_table(table, tokens, f"{NAMESPACE}/instances")
            counted = {"tokens": {**token_stats(table, tokens, ("lang", "source", "repo")),
                                  **tokenizer_identity(tokens, tokenizer)}}
        inst_ref = catalog.publish(f"{NAMESPACE}/instances", table,
                                   [candidates, rej_ref, *([tokenizer.parent()] if tokenizer else [])], producer,
                                   lambda n: {**stats(n), **counted}, attachments={"_funnel.png": chart})
    return {"instances": inst_ref, "rejected": rej_ref, "candidates": candidates}


@flow(name="swe")
def swe_flow(store: str | None = None, config: SweConfig = SweConfig(), force: bool = False) -> dict[str, Any]:
    """Git repositories -> SWE-bench instances validated by running their tests in Docker."""
    from skycurate.stages.tokens import checked_pin

    cfg = config
    store, catalog = open_flow(store, cfg)
    tokenizer = checked_pin(cfg.tokens)
    cache_dir = cfg.mining.cache_dir or str(catalog.cache_dir("git"))
    repos = pin_repos(cfg.repos, cache_dir)
    common = {"store": store, "force": force}
    mined = run_dataset_task(mine, **common, repos=repos, prs=pin_file(cfg.prs),
                             github=cfg.github, cfg=cfg.mining, cache_dir=cache_dir, spark=cfg.spark)
    final = run_dataset_task(validate, **common, candidates=mined["candidates"], mine_rejected=mined["mine_rejected"],
                             n_repos=len(repos), python=cfg.python, cfg=cfg.validation, tokens=cfg.tokens,
                             tokenizer=tokenizer)
    steps = attach_run_report("swe", catalog, final["instances"], chart="_funnel.png")
    return {"datasets": {"instances": final["instances"], "rejected": final["rejected"],
                         "candidates": final["candidates"]}, "funnel": steps,
            "tokens": catalog.manifest(final["instances"]).stats.get("tokens")}

