"""Publishing across processes: concurrent publishers, and a publisher killed mid-write."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from skycurate import catalog
from skycurate.catalog import Catalog
from skycurate.errors import DatasetNotFound

PUBLISHES_PER_PROCESS = 10
PROCESSES = 3


def _publisher(store: str, who: int, start: mp.Barrier) -> None:
    start.wait()
    for i in range(PUBLISHES_PER_PROCESS):
        n = 50 + 10 * who + i  # every publish has its own size, so a torn version would show
        tag = f"p{who}-{i}"
        catalog.publish("web/clean", pa.table({"tag": [tag] * n, "i": list(range(n))}), store=store,
                        max_rows_per_file=17)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_concurrent_publishers_get_distinct_versions_and_no_torn_version(kind, request):
    store = request.getfixturevalue("store" if kind == "local" else "s3_store")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_publisher, args=(store, who, barrier)) for who in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0

    cat = Catalog(store)
    versions = cat.versions("web/clean")
    if kind == "local":   # exclusive creation: no gaps
        assert versions == [f"v{n:04d}" for n in range(1, PROCESSES * PUBLISHES_PER_PROCESS + 1)]
    else:   # claims that met both lose and leave gaps
        assert len(versions) == PROCESSES * PUBLISHES_PER_PROCESS
    seen = []
    for v in versions:
        assert cat.verify(f"web/clean@{v}").ok
        t = cat.open(f"web/clean@{v}").to_table()
        tags = set(t.column("tag").to_pylist())
        assert len(tags) == 1, f"{v} mixes rows of two publishes: {tags}"
        (tag,) = tags
        who, i = int(tag[1]), int(tag.split("-")[1])
        assert t.num_rows == 50 + 10 * who + i == cat.manifest(f"web/clean@{v}").num_rows
        seen.append(tag)
    assert sorted(seen) == sorted(f"p{w}-{i}" for w in range(PROCESSES) for i in range(PUBLISHES_PER_PROCESS))
    assert cat.latest_pointer("web/clean") == versions[-1]


KILLED_PUBLISHER = textwrap.dedent("""
    import os, sys, time
    import pyarrow as pa, pyarrow.parquet as pq
    from skycurate import catalog

    store, marker = sys.argv[1], sys.argv[2]

    def slow_writer(folder_url):
        folder = folder_url.removeprefix("file://")
        pq.write_table(pa.table({"x": list(range(1000))}), os.path.join(folder, "part-a.parquet"))
        open(marker, "w").close()  # tell the test we are mid-publish
        time.sleep(600)

    catalog.publish("web/clean", slow_writer, store=store)
""")


def test_killed_publisher_leaves_no_visible_version_and_next_publish_succeeds(store, tmp_path, python):
    marker = tmp_path / "mid-publish"
    proc = subprocess.Popen([python, "-c", KILLED_PUBLISHER, store, str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "publisher died before reaching the middle of publishing"
            assert time.monotonic() < deadline, "publisher never reached the middle of publishing"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    staging = Path(store, "web", "clean", "_staging")
    assert any(staging.iterdir()), "the killed publisher's staging folder should be what is left"
    assert Catalog(store).versions("web/clean") == []
    with pytest.raises(DatasetNotFound):
        catalog.resolve("web/clean@latest", store=store)

    ref = catalog.publish("web/clean", pa.table({"x": [1, 2, 3]}), store=store)
    assert ref.version == "v0001"
    assert not staging.exists(), "the next publish sweeps the staging of a publisher that died on this host"
    assert catalog.open("web/clean@latest", store=store).count_rows() == 3
    assert catalog.verify(ref).ok
