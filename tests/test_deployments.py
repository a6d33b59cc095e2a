"""prefect.yaml names flows that exist, with parameters they accept."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[1]


def test_every_deployment_entrypoint_is_a_flow_accepting_its_parameters():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        path, func = deployment["entrypoint"].split(":")
        assert (ROOT / path).is_file(), deployment["entrypoint"]
        module = importlib.import_module(path.removeprefix("src/").removesuffix(".py").replace("/", "."))
        flow = getattr(module, func)
        assert isinstance(flow, Flow), deployment["name"]
        accepted = inspect.signature(flow.fn).parameters
        assert set(deployment.get("parameters", {})) <= set(accepted), deployment["name"]
        config = deployment.get("parameters", {}).get("config")
        if config is not None:      # a config parameter must be valid for the flow's config model
            model = accepted["config"].default.__class__
            model.model_validate(config)


def test_every_run_command_has_a_deployment_and_schedules_ship_inactive():
    from skycurate.cli import RUN_COMMANDS

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entrypoints = {d["entrypoint"].split(":")[1] for d in spec["deployments"]}
    flows = {target.split(":")[1] for _, target in RUN_COMMANDS.values()}
    assert flows <= entrypoints, flows - entrypoints
    assert all(not s["active"] for d in spec["deployments"] for s in d.get("schedules", []))


def test_every_schedule_parses_as_prefect_reads_it():
    from prefect.client.schemas.schedules import CronSchedule

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    crons = [s for d in spec["deployments"] for s in d.get("schedules", [])]
    assert len(crons) == 3
    for s in crons:
        CronSchedule(cron=s["cron"], timezone=s["timezone"])       # raises on a cron string that does not parse
