"""The disk filling up during a publish: a clear error, no partial version, and the next publish
succeeds once space returns. The store lives on a real 2 MiB tmpfs (mounting needs root, as the
CI machine has)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from skycurate.catalog import Catalog
from skycurate.errors import PublishError


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_fails_the_publish_cleanly_and_the_next_one_succeeds(small_disk):
    cat = Catalog(small_disk / "store")
    cat.publish("t/x", pa.table({"x": [1]}))
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1536 * 1024))
    payload = pa.table({"blob": [os.urandom(64 * 1024) for _ in range(16)]})   # 1 MiB, incompressible

    with pytest.raises(PublishError, match=r"publishing t/x failed: the store .* is out of space; nothing was "
                                           r"published \(\[Errno 28\] No space left on device"):
        cat.publish("t/x", payload)
    assert cat.versions("t/x") == ["v0001"]
    store = Path(cat.root, "t", "x")
    assert sorted(p.name for p in store.iterdir()) == ["_claims", "_latest", "v0001"]   # no staging left
    assert [p.name for p in (store / "_claims").iterdir()] == ["v0001"]                 # no number taken

    filler.unlink()
    ref = cat.publish("t/x", payload)
    assert ref.version == "v0002" and cat.verify(ref).ok and cat.open(ref).count_rows() == 16
