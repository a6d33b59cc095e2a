"""The catalog on object storage: a real S3-compatible server (moto's) on 127.0.0.1, and a store
without conditional writes, against which the version-claim protocol must still hold."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import threading

import boto3
import fsspec
import pyarrow as pa
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from skycurate.catalog import Catalog
from skycurate.catalog.retention import plan_gc, run_gc, set_tag


def _keys(endpoint: str, store: str) -> list[str]:
    bucket, prefix = store.removeprefix("s3://").split("/", 1)
    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                                               Prefix=prefix)
    return sorted(o["Key"].removeprefix(prefix + "/") for page in pages for o in page.get("Contents", []))


def test_publish_resolve_read_verify_tag_and_lineage_on_s3(s3_server, s3_store):
    cat = Catalog(s3_store)
    raw = cat.publish("web/raw", pa.table({"x": list(range(10))}), max_rows_per_file=4,
                      attachments={"_note.txt": b"hello"})
    clean = cat.publish("web/clean", pa.table({"x": [1, 2]}), parents=[raw])
    assert (raw.version, clean.version) == ("v0001", "v0001")
    assert cat.resolve("web/raw").version == "v0001" and cat.names() == ["web/clean", "web/raw"]
    assert cat.open(raw).to_table().column("x").to_pylist() == list(range(10))
    assert cat.attachment(raw, "_note.txt") == b"hello"
    report = cat.verify(raw)
    assert report.ok and report.files_checked == 3 and report.rows == 10
    assert [p.label for p in cat.lineage(clean).parents] == ["web/raw@v0001"]
    set_tag(cat, "web/raw@v0001", "golden")
    assert cat.resolve("web/raw@golden").version == "v0001"
    assert cat.latest_pointer("web/raw") == "v0001"
    keys = _keys(s3_server, s3_store)   # really in the bucket, and no staging left behind
    assert {"web/raw/v0001/part-00000.parquet", "web/raw/v0001/part-00002.parquet", "web/raw/v0001/_manifest.json",
            "web/raw/v0001/_note.txt", "web/raw/_latest", "web/clean/v0001/_manifest.json"} <= set(keys)
    assert not [k for k in keys if "/_staging/" in k]

    # A flipped byte is caught by verify.
    path = cat.file_paths(raw)[1]
    cat.fs.pipe_file(path, cat.fs.cat_file(path)[:-20] + b"\0" * 20)
    assert not cat.verify(raw).ok


PUBLISH_ONE = textwrap.dedent("""
    import sys, pyarrow as pa
    from skycurate import catalog
    print(catalog.publish("t/x", pa.table({"x": [2]}), store=sys.argv[1]).version)
""")


def test_a_version_published_by_another_process_is_seen_at_once(s3_store):
    """s3fs caches listings per process; the catalog must not answer from a stale one."""
    cat = Catalog(s3_store)
    cat.publish("t/x", pa.table({"x": [1]}))
    assert cat.versions("t/x") == ["v0001"]
    out = subprocess.run([sys.executable, "-c", PUBLISH_ONE, s3_store], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "v0002"
    assert cat.versions("t/x") == ["v0001", "v0002"]
    assert cat.resolve("t/x@latest").version == "v0002"
    assert cat.publish("t/x", pa.table({"x": [3]})).version == "v0003"


def test_a_rival_claim_on_s3_makes_the_publisher_take_the_next_number(s3_store):
    cat = Catalog(s3_store)
    cat.fs.pipe_file(f"{cat.root}/t/x/_claims/v0001.rival-publisher", b"rival")
    ref = cat.publish("t/x", pa.table({"x": [1]}))
    assert ref.version == "v0002" and cat.versions("t/x") == ["v0002"]


def test_a_failed_publish_leaves_a_concurrent_publishers_staging_alone(s3_store, monkeypatch):
    """Listing a folder and then deleting it recursively races with a publisher writing into it:
    here the rival's part lands just after the (simulated) listing of the shared ``_staging``."""
    cat = Catalog(s3_store)
    rival = f"{cat.root}/t/x/_staging/rival/part-00000.parquet"
    real_ls = cat.fs.ls

    def listing_taken_before_the_rival_wrote(path, *args, **kwargs):
        listed = real_ls(path, *args, **kwargs)
        return [p for p in listed if "/rival" not in (p if isinstance(p, str) else p["name"])]

    def failing_writer(folder: str) -> None:
        cat.fs.pipe_file(rival, b"a rival's part")
        raise RuntimeError("boom")

    monkeypatch.setattr(cat.fs, "ls", listing_taken_before_the_rival_wrote)
    with pytest.raises(Exception, match="boom"):
        cat.publish("t/x", failing_writer)
    monkeypatch.undo()
    assert cat.fs.cat_file(rival) == b"a rival's part"


def test_gc_on_s3_deletes_old_versions_and_keeps_the_rest_readable(s3_server, s3_store):
    cat = Catalog(s3_store)
    refs = [cat.publish("t/x", pa.table({"x": [i] * (i + 1)})) for i in range(4)]
    plan = plan_gc(cat, keep=2)
    assert [v.path for v in plan.versions] == ["t/x@v0001", "t/x@v0002"]
    run_gc(cat, plan)
    assert cat.versions("t/x") == ["v0003", "v0004"]
    assert all(cat.verify(r).ok for r in refs[2:])
    assert not [k for k in _keys(s3_server, s3_store) if k.startswith(("t/x/v0001/", "t/x/v0002/"))]

    # A dead run's staging (prefixes have no time on S3: judged by their newest object).
    dead = f"{cat.root}/t/x/_staging/20261201T000000Z-1-deadbeef"
    cat.fs.pipe_file(f"{dead}/part-00000.parquet", b"partial")
    assert plan_gc(cat, keep=2).leftovers == []
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    plan = plan_gc(cat, keep=2, now=later)
    assert [(i.path, i.why) for i in plan.leftovers] == [("t/x/_staging/20261201T000000Z-1-deadbeef",
                                                          "staging of a dead run")]
    run_gc(cat, plan)
    assert not cat.fs.exists(f"{dead}/part-00000.parquet") and cat.versions("t/x") == ["v0003", "v0004"]


class NoConditionalWritesFileSystem(MemoryFileSystem):
    """An in-memory fsspec store that, like several object stores, ignores exclusive creation ("xb")."""

    protocol = "noxmem"
    store: dict = {}
    pseudo_dirs = [""]

    def _open(self, path, mode="rb", **kwargs):
        return super()._open(path, mode.replace("x", "w"), **kwargs)


fsspec.register_implementation("noxmem", NoConditionalWritesFileSystem, clobber=True)


def test_two_publishers_that_claim_at_the_same_moment_never_share_a_version():
    """Both write a claim for v0001 before either looks: on a store without conditional writes
    an exclusive create would let both win and move their parts into one folder (a torn version)."""
    cat_a, cat_b = Catalog("noxmem://race"), Catalog("noxmem://race")
    met = threading.Barrier(2, timeout=30)
    assert cat_a.fs is cat_b.fs   # one fsspec instance per URL: the hooks below see both publishers
    real_pipe, real_open, real_ls = cat_a.fs.pipe_file, cat_a.fs.open, cat_a.fs.ls
    done: set[tuple[str, str]] = set()

    def meet(path, step):   # each publisher, once: after looking at the claims, after writing its claim
        key = (threading.current_thread().name, step)
        if key not in done and (step == "looked" or "/_claims/v0001" in path):
            done.add(key)
            met.wait()

    def ls(path, *args, **kwargs):
        out = real_ls(path, *args, **kwargs)
        if path.rstrip("/").endswith("/_claims"):
            meet(path, "looked")
        return out

    def pipe_file(path, *args, **kwargs):
        out = real_pipe(path, *args, **kwargs)
        meet(path, "claimed")
        return out

    class _Open:   # the old protocol claims with open(..., "xb")
        def __init__(self, path, mode, *args, **kwargs):
            self.path, self.f = path, real_open(path, mode, *args, **kwargs)

        def __enter__(self):
            return self.f.__enter__()

        def __exit__(self, *exc):
            out = self.f.__exit__(*exc)
            meet(self.path, "claimed")
            return out

    cat_a.fs.pipe_file, cat_a.fs.ls = pipe_file, ls
    cat_a.fs.open = lambda path, mode="rb", *a, **k: _Open(path, mode, *a, **k) if "_claims" in path \
        else real_open(path, mode, *a, **k)
    errors: list[BaseException] = []

    def publish(who: int) -> None:
        try:
            cat = cat_a if who == 0 else cat_b
            cat.publish("t/x", pa.table({"who": [who] * (10 + who)}), max_rows_per_file=3)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=publish, args=(w,), name=f"publisher-{w}") for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    versions = cat_a.versions("t/x")
    assert len(versions) == 2 and "v0001" not in versions   # both lost the number they met on
    for v in versions:
        table = cat_a.open(f"t/x@{v}").to_table()
        assert cat_a.verify(f"t/x@{v}").ok
        assert len(set(table.column("who").to_pylist())) == 1 and table.num_rows == 10 + table["who"][0].as_py()
