"""Pre-flight checks: one implementation, the same words from the CLI and from a flow run directly
(as a Prefect deployment runs it)."""

from __future__ import annotations

import importlib
import inspect

import pytest
from typer.testing import CliRunner

from skycurate.catalog import Catalog
from skycurate.cli import RUN_COMMANDS, app
from skycurate.errors import SkycurateError
from skycurate.flows._preflight import preflight
from skycurate.schemas.config import FlowConfig


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def test_every_run_command_names_a_flow_taking_its_config_and_a_preflight_check():
    from prefect import Flow

    assert set(RUN_COMMANDS) == {"hello", "web", "decontaminate", "leakage-audit", "leakage-reference", "distill",
                                 "swe", "swe-validate-patches", "preference", "evaluate", "mix", "tokens"}
    for name, (config_model, flow) in RUN_COMMANDS.items():
        model, flow_obj = _load(config_model), _load(flow)
        assert issubclass(model, FlowConfig) and isinstance(flow_obj, Flow), name
        assert isinstance(inspect.signature(flow_obj.fn).parameters["config"].default, model), name
        assert preflight.dispatch(model) is not preflight.dispatch(object), name


@pytest.mark.parametrize("command,message", [
    ("web", "no input: pass --input (a folder, file or glob) or set inputs in --config"),
    ("decontaminate", "no corpus: pass --corpus NS/NAME[@VERSION] (e.g. web/clean@latest)"),
    ("leakage-audit", "no model: pass --model DIR (a local folder)"),
    ("leakage-reference", "no benchmark: pass --benchmark NAME=PATH"),
    ("distill", "no prompts: pass --prompts (a dataset ref or JSONL/Parquet files)"),
    ("swe", "no repository: pass --repos PATH_OR_URL (repeatable)"),
    ("swe-validate-patches", "pass --instances swe/instances@vN and --patches FILE or --trajectories PATH"),
    ("tokens", "no dataset: pass --dataset NS/NAME[@VERSION] (e.g. web/clean@latest)"),
])
def test_cli_and_flow_fail_with_the_same_line(tmp_path, command, message):
    store = str(tmp_path / "store")
    config_model, flow = RUN_COMMANDS[command]
    with pytest.raises(SkycurateError) as checked:
        preflight(_load(config_model)(), Catalog(store))
    assert str(checked.value) == message
    with pytest.raises(SkycurateError) as in_flow:
        _load(flow).fn(store=store, config=_load(config_model)())
    assert str(in_flow.value) == message
    result = CliRunner().invoke(app, ["run", command, "--store", store])
    assert result.exit_code == 1 and result.stderr.strip() == f"error: {message}"


def test_a_store_is_created_before_the_datasets_a_config_names_are_resolved(tmp_path):
    from skycurate.errors import DatasetNotFound
    from skycurate.schemas.leakage_flows import DecontaminateFlowConfig

    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"text": "a benchmark item with enough words in it"}\n')
    cfg = DecontaminateFlowConfig(corpus="web/clean@latest", benchmarks=[{"name": "b", "path": str(bench)}])
    with pytest.raises(DatasetNotFound, match="unknown dataset 'web/clean'.*the store is empty"):
        preflight(cfg, Catalog(str(tmp_path / "new-store")))
    assert (tmp_path / "new-store").is_dir()
