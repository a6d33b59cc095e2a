"""The hello flow on real Prefect (test harness) and real Spark: publishing, funnel, caching, --force."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from skycurate import catalog
from skycurate.catalog import Catalog
from skycurate.schemas.hello import HelloConfig

pytestmark = pytest.mark.usefixtures("prefect_harness", "spark")


def run(store: str, **kwargs) -> tuple[dict, dict[str, str]]:
    """Run the flow; return its result and the final state name of each task."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from skycurate.flows.hello import hello_flow

    state = hello_flow(store=store, return_state=True, **kwargs)
    assert state.is_completed(), state.message
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    states = {t.name.rsplit("-", 1)[0]: t.state.name for t in task_runs}
    return state.result(), states | {"_flow_run_id": str(flow_run_id)}


def test_hello_flow_publishes_lineage_reconciled_funnel_and_artifact(store):
    result, states = run(store)
    assert states["ingest"] == states["clean"] == "Completed"
    refs = result["datasets"]
    assert {k: r.label for k, r in refs.items()} == {
        "raw": "hello/raw@v0001", "quarantine": "hello/quarantine@v0001",
        "clean": "hello/clean@v0001", "rejected": "hello/rejected@v0001"}

    # input = kept + rejected + quarantined, from the published data itself
    sample_lines = sum(1 for line in Path(catalog.lineage(refs["raw"]).parents[0].uri).read_text().splitlines()
                       if line.strip())
    rows = {k: catalog.open(r).count_rows() for k, r in refs.items()}
    assert sample_lines == rows["clean"] + rows["rejected"] + rows["quarantine"]
    assert rows["raw"] == rows["clean"] + rows["rejected"]
    counts = ("stage", "rows_in", "rows_out", "rejected", "quarantined")
    assert [{k: step[k] for k in counts} for step in result["funnel"]] == [
        {"stage": "ingest", "rows_in": sample_lines, "rows_out": rows["raw"], "rejected": 0,
         "quarantined": rows["quarantine"]},
        {"stage": "length_filter", "rows_in": rows["raw"], "rows_out": rows["clean"], "rejected": rows["rejected"],
         "quarantined": 0},
    ]
    rejected = catalog.open(refs["rejected"]).to_table()
    assert set(rejected.column("reject_stage").to_pylist()) == {"length_filter"}
    assert all(r.startswith("too_short") for r in rejected.column("reject_reason").to_pylist())

    clean = catalog.manifest(refs["clean"])
    assert [p.name for p in catalog.lineage(refs["clean"]).parents] == ["hello/raw"]
    assert clean.producer.flow == "hello" and clean.producer.task == "clean"
    assert clean.producer.flow_run_id == states["_flow_run_id"]
    assert clean.producer.config == HelloConfig().model_dump(mode="json")  # the full flow config
    assert clean.producer.code_version.startswith("0.1.0+")

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["hello-funnel"])))
    mine = [a for a in artifacts if str(a.flow_run_id) == states["_flow_run_id"]]
    assert len(mine) == 1 and mine[0].type == "table"
    table = json.loads(mine[0].data) if isinstance(mine[0].data, str) else mine[0].data
    assert [row["stage"] for row in table] == ["ingest", "length_filter"]
    assert table[1]["rows_out"] == rows["clean"]


def test_unchanged_inputs_are_cached_and_force_recomputes(store):
    first, _ = run(store)
    second, states = run(store)
    assert states["ingest"] == states["clean"] == "Cached"
    assert second["datasets"] == first["datasets"]
    assert Catalog(store).versions("hello/clean") == ["v0001"]

    forced, states = run(store, force=True)
    assert states["ingest"] == states["clean"] == "Completed"
    assert {r.version for r in forced["datasets"].values()} == {"v0002"}

    # A config change re-runs only the stage it affects (the input is still cached).
    changed, states = run(store, config=HelloConfig(length_filter={"min_words": 16}))
    assert (states["ingest"], states["clean"]) == ("Cached", "Completed")
    assert changed["datasets"]["clean"].version == "v0003"
    assert catalog.open(changed["datasets"]["clean"]).count_rows() < catalog.open(forced["datasets"]["clean"]).count_rows()


def test_changed_source_reruns_ingest_and_missing_outputs_are_recomputed(store, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "one two three four"}\n')
    cfg = HelloConfig(ingest={"sources": [str(source)]})
    run(store, config=cfg)

    source.write_text('{"text": "one two three four"}\n{"text": "five six seven eight"}\n')
    result, states = run(store, config=cfg)
    assert states["ingest"] == "Completed"
    assert catalog.open(result["datasets"]["clean"]).count_rows() == 2

    # Someone deleted a published dataset: its cache entry must not be trusted.
    shutil.rmtree(Path(store, "hello", "clean"))
    result, states = run(store, config=cfg)
    assert catalog.resolve("hello/clean@latest", store=store) == result["datasets"]["clean"]
    assert catalog.open(result["datasets"]["clean"]).count_rows() == 2


def test_a_lost_row_fails_the_check_and_publishes_neither_clean_nor_rejected(store, monkeypatch):
    """The reconciliation check runs inside the publish block: counts that do not add up leave
    hello/clean and hello/rejected unpublished (no version, no staged files, no claims)."""
    from skycurate.flows.hello import hello_flow
    from skycurate.stages import hello as hello_stage

    real_clean = hello_stage.clean

    def lossy(df, cfg):
        kept, rejected = real_clean(df, cfg)
        return kept.limit(1), rejected          # loses kept rows between the stage and the publish

    monkeypatch.setattr(hello_stage, "clean", lossy)
    state = hello_flow(store=store, return_state=True)
    assert state.is_failed() and "AccountingError" in state.message and "1 kept" in state.message
    assert "stage clean: " in state.message                  # the failed run's message names the stage
    published = set(Catalog(store).names())
    assert {"hello/raw", "hello/quarantine"} <= published
    assert not published & {"hello/clean", "hello/rejected"}
    for name in ("hello/clean", "hello/rejected"):
        assert not Path(store, name).exists()
