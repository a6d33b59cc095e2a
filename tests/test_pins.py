"""Pinned inputs: one type per kind, each recorded in lineage the same way (``Parent`` fields)."""

from __future__ import annotations

import hashlib
import os

import pytest

from skycurate.catalog.pins import pin_crawl_file, pin_file, pin_model_folder
from skycurate.errors import SkycurateError


def test_a_file_is_pinned_by_content_and_its_parent_carries_the_hash(tmp_path):
    f = tmp_path / "blocklist.txt"
    f.write_text("spam.example\n")
    pin = pin_file(f)
    assert pin.sha256 == hashlib.sha256(b"spam.example\n").hexdigest()
    parent = pin.parent("url_blocklist")
    assert (parent.name, parent.uri, parent.sha256, parent.pin) == ("url_blocklist", str(f.resolve()), pin.sha256, None)
    assert pin_file(f, label="lists/block").parent().name == "lists/block"
    assert pin_file(None) is None
    f.write_text("other.example\n")
    assert pin_file(f).sha256 != pin.sha256  # a changed file changes the cache key


def test_a_crawl_file_is_pinned_by_size_and_mtime(tmp_path):
    f = tmp_path / "crawl.warc.gz"
    f.write_bytes(b"x" * 123)
    os.utime(f, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    pin = pin_crawl_file(str(f), "crawl.warc.gz", "warc")
    parent = pin.parent()
    assert (parent.uri, parent.sha256) == (str(f.resolve()), None)
    assert parent.pin == "size=123 mtime_ns=1700000000000000000"


def test_a_model_folder_is_pinned_by_its_files_and_config_hash(tmp_path):
    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "model.safetensors").write_bytes(b"0" * 10)
    pin = pin_model_folder(str(tmp_path))
    assert [name for name, _, _ in pin.files] == ["config.json", "model.safetensors"]
    assert pin.config_sha256 == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert pin.parent("model:tiny").pin == f"config.json sha256={pin.config_sha256}; 2 files by size and mtime"
    with pytest.raises(SkycurateError, match="model folder not found"):
        pin_model_folder(str(tmp_path / "missing"))


def test_no_flow_imports_another_flow():
    import ast
    from pathlib import Path

    import skycurate.flows

    folder = Path(skycurate.flows.__file__).parent
    flows = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("skycurate.flows."):
                assert node.module.split(".")[2] not in flows, f"{path.name} imports {node.module}"
