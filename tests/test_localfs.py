"""Atomic local writes and the resume journal built on them."""

from __future__ import annotations

import pytest

from skycurate.localfs import atomic_path, write_atomic
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
