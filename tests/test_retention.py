"""Tags and garbage collection of the catalog: refs by tag, and a gc that never deletes a tagged
version, one of the newest, or a parent of a version that stays; a killed gc leaves the store clean."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from skycurate.catalog import Catalog
from skycurate.catalog.retention import parse_age, plan_gc, run_gc
from skycurate.cli import app
from skycurate.errors import DatasetNotFound, SkycurateError


def _t(n: int) -> pa.Table:
    return pa.table({"id": list(range(n))})


@pytest.fixture
def filled(tmp_path) -> Catalog:
    """raw v1..v4; clean v1..v3 (clean v1 made from raw v1, v2 and v3 from raw v2); one tag."""
    c = Catalog(str(tmp_path / "store"))
    raw = [c.publish("web/raw", _t(i + 1)) for i in range(4)]
    c.publish("web/clean", _t(1), parents=[raw[0]])
    c.publish("web/clean", _t(2), parents=[raw[1]])
    c.publish("web/clean", _t(3), parents=[raw[1]])
    return c


def test_a_tag_names_a_version_and_resolves_like_one(filled):
    from skycurate.catalog.retention import set_tag, tags

    assert set_tag(filled, "web/raw@v0002", "prod") == "web/raw@v0002"
    assert filled.resolve("web/raw@prod").version == "v0002"
    assert filled.open("web/raw@prod").count_rows() == 2
    assert set_tag(filled, "web/raw@latest", "prod") == "web/raw@v0004"       # moving a tag: @latest pinned now
    assert filled.resolve("web/raw@prod").version == "v0004" and tags(filled, "web/raw") == {"prod": "v0004"}
    with pytest.raises(DatasetNotFound, match="web/raw has no tag 'staging'.*tags: prod"):
        filled.resolve("web/raw@staging")
    with pytest.raises(DatasetNotFound, match="no version v0009"):
        set_tag(filled, "web/raw@v0009", "x")
    for bad in ("latest", "v0003", "Prod", "9lives"):
        with pytest.raises(SkycurateError, match="bad tag"):
            set_tag(filled, "web/raw@v0001", bad)


def test_gc_keeps_tagged_newest_and_parents_of_what_stays(filled):
    from skycurate.catalog.retention import set_tag

    set_tag(filled, "web/raw@v0001", "golden")
    plan = plan_gc(filled, keep=1)
    # raw: v4 newest, v1 tagged, v2 parent of clean v3 (kept); clean: v3 newest -> raw v3 and clean v1, v2 go
    assert [i.path for i in plan.versions] == ["web/clean@v0001", "web/clean@v0002", "web/raw@v0003"]
    assert plan.kept == {"web/clean@v0003": "latest", "web/raw@v0001": "tagged golden",
                         "web/raw@v0002": "parent of web/clean@v0003", "web/raw@v0004": "latest"}
    assert plan.bytes == sum(filled.manifest(p).num_bytes for p in
                             ["web/clean@v0001", "web/clean@v0002", "web/raw@v0003"])
    freed = run_gc(filled, plan)
    assert freed == plan.bytes > 0
    assert filled.versions("web/raw") == ["v0001", "v0002", "v0004"] and filled.versions("web/clean") == ["v0003"]
    for ref in ("web/raw@v0001", "web/raw@v0002", "web/raw@v0004", "web/clean@v0003"):
        assert filled.verify(ref).ok
    assert not Path(filled.root, "web", "raw", "v0003").exists()
    assert plan_gc(filled, keep=1).versions == []                      # nothing more to do


def test_older_than_spares_young_versions_and_dry_run_deletes_nothing(filled, tmp_path):
    assert plan_gc(filled, keep=1, older_than=dt.timedelta(days=30)).versions == []   # all made just now
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=31)
    assert len(plan_gc(filled, keep=1, older_than=dt.timedelta(days=30), now=later).versions) == 4
    res = CliRunner().invoke(app, ["datasets", "gc", "--keep", "1", "--dry-run", "--store", filled.url])
    assert res.exit_code == 0 and "would delete" in res.output and "web/raw@v0003" in res.output
    assert filled.versions("web/raw") == ["v0001", "v0002", "v0003", "v0004"]
    assert parse_age("2w") == dt.timedelta(weeks=2)
    bad = CliRunner().invoke(app, ["datasets", "gc", "--older-than", "soon", "--store", filled.url])
    assert bad.exit_code != 0 and "use a number and a unit, e.g. 30d" in bad.output


def test_a_gc_killed_between_manifest_and_files_is_finished_by_the_next_one(filled):
    folder = Path(filled.root, "web", "raw", "v0001")
    (folder / "_manifest.json").unlink()                    # what a gc killed after its first step leaves
    old = time.time() - 2 * 86400
    os.utime(folder, (old, old))
    assert filled.versions("web/raw") == ["v0002", "v0003", "v0004"]   # invisible at once
    plan = plan_gc(filled, keep=3)
    assert [i.path for i in plan.leftovers] == ["web/raw/v0001"]
    run_gc(filled, plan)
    assert not folder.exists() and all(filled.verify(f"web/raw@{v}").ok for v in filled.versions("web/raw"))


def test_intermediate_stage_datasets_can_go_although_kept_versions_name_them(filled):
    # web/raw plays an intermediate stage here: clean v3 names raw v2, which stays without the option
    assert "web/raw@v0002" in plan_gc(filled, keep=1).kept
    plan = plan_gc(filled, keep=1, intermediates=("web/raw",))
    assert [i.path for i in plan.versions] == ["web/clean@v0001", "web/clean@v0002", "web/raw@v0001",
                                               "web/raw@v0002", "web/raw@v0003"]
    run_gc(filled, plan)
    assert filled.versions("web/raw") == ["v0004"] and filled.verify("web/clean@v0003").ok


def test_work_folders_untouched_for_longer_than_older_than_go_too(filled):
    old_run = Path(filled.root, "_work", "cot", "abc123")
    (old_run / "shards").mkdir(parents=True)
    (old_run / "shards" / "s1.parquet").write_bytes(b"x" * 100)
    young_run = Path(filled.root, "_work", "swe", "def456")
    young_run.mkdir(parents=True)
    (young_run / "results.json").write_text("{}")
    stamp = time.time() - 40 * 86400
    for p in [old_run, old_run / "shards", old_run / "shards" / "s1.parquet"]:
        os.utime(p, (stamp, stamp))
    assert plan_gc(filled, keep=3).leftovers == []                          # only with --older-than
    plan = plan_gc(filled, keep=3, older_than=dt.timedelta(days=30))
    assert [(i.path, i.bytes) for i in plan.leftovers] == [("_work/cot/abc123", 100)]
    run_gc(filled, plan)
    assert not old_run.exists() and young_run.exists()


def test_tag_and_untag_on_the_command_line(filled):
    run = CliRunner().invoke
    assert "web/clean@prod -> web/clean@v0002" in run(app, ["datasets", "tag", "web/clean@v0002", "prod",
                                                             "--store", filled.url]).output
    assert filled.resolve("web/clean@prod").version == "v0002"
    assert run(app, ["datasets", "untag", "web/clean", "prod", "--store", filled.url]).exit_code == 0
    res = run(app, ["datasets", "untag", "web/clean", "prod", "--store", filled.url])
    assert res.exit_code != 0 and "has no tag 'prod'" in res.output


# ---------------------------------------------------------------------------------- rebuild


def test_rebuild_reruns_the_recorded_config_and_refuses_when_inputs_are_gone(tmp_path, prefect_harness, spark):
    """A real manifest: the hello flow on a file; rebuild with --set, then with the file changed,
    then with the parent version collected."""
    import json

    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": "word " * (i + 1)}) + "\n" for i in range(6)))
    store = str(tmp_path / "store")
    run = CliRunner().invoke
    first = run(app, ["run", "hello", "--source", str(src), "--store", store, "--json"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    c = Catalog(store)
    assert c.manifest("hello/clean@v0001").num_rows == 4          # texts of 3+ words

    again = run(app, ["rebuild", "hello/clean@v0001", "--set", "length_filter.min_words=5", "--store", store,
                      "--json"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    m = c.manifest("hello/clean@v0002")
    assert m.num_rows == 2 and m.producer.config["rebuild_of"] == "hello/clean@v0001"
    assert m.producer.config["length_filter"]["min_words"] == 5
    assert m.producer.config["ingest"]["sources"] == [str(src)]  # the recorded inputs, not the defaults

    staged = run(app, ["rebuild", "hello/clean@v0002", "--from-stage", "clean", "--store", store, "--json"],
                 catch_exceptions=False)
    assert staged.exit_code == 0, staged.output
    assert c.versions("hello/raw") == ["v0001", "v0002"]        # ingest came from its cache: no new raw version
    assert c.manifest("hello/clean@v0003").producer.config["rebuild_of"] == "hello/clean@v0002"
    from skycurate.flows._runtime import _FORCING

    assert _FORCING.get() is False                               # later runs in this process use their caches
    bad = run(app, ["rebuild", "hello/clean@v0002", "--from-stage", "dedup", "--store", store])
    assert bad.exit_code != 0 and "the hello flow's stages are ingest, clean" in bad.output

    src.write_text(src.read_text() + json.dumps({"id": "x", "text": "a new line"}) + "\n")
    changed = run(app, ["rebuild", "hello/clean@v0001", "--store", store])
    assert changed.exit_code != 0 and "Traceback" not in changed.output
    assert "cannot rebuild hello/clean@v0001: its inputs are gone" in changed.output
    assert "docs.jsonl (changed since: sha256 differs)" in changed.output.replace("\n", "")

    import shutil

    shutil.rmtree(Path(store, "hello", "raw", "v0001"))     # a parent deleted by hand (gc would have kept it)
    gone = run(app, ["rebuild", "hello/clean@v0001", "--store", store])
    assert gone.exit_code != 0 and "hello/raw@v0001 (no longer in the store)" in gone.output.replace("\n", "")
