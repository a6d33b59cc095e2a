"""Atomic local writes and the resume journal built on them."""

from __future__ import annotations

import pytest

from skycurate.localfs import atomic_path, fsync_tree, remove_dead_temporaries, write_atomic
from skycurate.stages.journal import Journal


def test_write_atomic_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.json"
    write_atomic(target, "old")
    write_atomic(target, b"new bytes")
    assert target.read_bytes() == b"new bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "shard.parquet"
    target.write_text("finished")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "finished"
    assert [p.name for p in tmp_path.iterdir()] == ["shard.parquet"]


def test_the_journal_answers_finished_units_only_and_survives_a_new_instance(tmp_path):
    j = Journal(tmp_path / "results")
    assert j.get("k1") is None
    j.put("k1", {"kind": "instance", "row": {"id": "a"}})
    assert Journal(tmp_path / "results").get("k1") == {"kind": "instance", "row": {"id": "a"}}
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["k1.json"]
    for bad in ("", "../x", ".hidden"):
        with pytest.raises(ValueError):
            j.put(bad, {})


def test_a_killed_writers_temporaries_are_swept_and_live_ones_kept(tmp_path):
    """What ``atomic_path`` leaves when its process is SIGKILLed mid-write goes on the next open of
    the journal (or the next generation run); a live process's temporary stays."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "k1.json").write_text("{}")
    (folder / f".k2.json.tmp-{dead.pid}-0123abcd").write_text("{half")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (folder / f".k3.json.tmp-{live.pid}-4567ef01").write_text("{busy")
        (folder / ".notes.tmp-x").write_text("not ours")
        assert remove_dead_temporaries(folder) == 1
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["k1.json", f".k3.json.tmp-{live.pid}-4567ef01", ".notes.tmp-x"])
        (folder / f".k4.json.tmp-{dead.pid}-89abcdef").write_text("{half")
        Journal(folder)
        assert not (folder / f".k4.json.tmp-{dead.pid}-89abcdef").exists()
    finally:
        live.kill()
        live.wait()


def test_fsync_tree_flushes_a_staged_tree(tmp_path, monkeypatch):
    import os

    from skycurate import localfs

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "part-0.parquet").write_bytes(b"x")
    (tmp_path / "a" / "m.json").write_text("{}")
    flushed = []
    monkeypatch.setattr(localfs, "_fsync_path", lambda p: flushed.append(os.path.relpath(p, tmp_path)))
    fsync_tree(tmp_path / "a")
    assert sorted(flushed) == ["a", "a/b", "a/b/part-0.parquet", "a/m.json"]
