"""Configs load from YAML into strict pydantic models with one-line errors."""

from __future__ import annotations

import pytest

from skycurate.errors import ConfigError
from skycurate.schemas.config import load_config
from skycurate.schemas.hello import HelloConfig


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("length_filter:\n  min_words: 5\nspark:\n  master: local[1]\n  conf:\n    spark.executor.memory: 1g\n")
    cfg = load_config(HelloConfig, path, {"length_filter.min_words": 7, "ingest.sources": None})
    assert cfg.length_filter.min_words == 7  # a CLI flag wins over the file
    assert cfg.spark.master == "local[1]" and cfg.spark.conf == {"spark.executor.memory": "1g"}
    assert load_config(HelloConfig, None).length_filter.min_words == 3


@pytest.mark.parametrize("text,message", [
    ("min_words: 5\n", "unknown key 'min_words'"),
    ("spark:\n  mastr: x\n", "unknown key 'spark.mastr'"),
    ("length_filter:\n  min_words: lots\n", "'length_filter.min_words': Input should be a valid integer"),
    ("length_filter:\n  min_words: -1\n", "'length_filter.min_words': Input should be greater than or equal to 0"),
    ("- a\n- b\n", "must be a mapping"),
    ("a: [\n", "is not valid YAML"),
])
def test_bad_configs_give_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(HelloConfig, path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(HelloConfig, tmp_path / "nope.yaml")
