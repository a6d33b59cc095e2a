"""Configs of the SWE flows: ``skycurate run swe`` and ``skycurate run swe-validate-patches``."""

from __future__ import annotations

from pydantic import Field

from skycurate.schemas.config import FlowConfig
from skycurate.schemas.swe import MiningConfig, ValidationConfig


class SweConfig(FlowConfig):
    """Repositories in, runtime-validated SWE-bench instances out."""

    repos: list[str] = Field(default_factory=list, description="local clones or git URLs")
    prs: str | None = Field(default=None, description="JSONL export of PRs and issues; else the GitHub API "
                                                     "(github: true) or git history alone")
    github: bool = Field(default=False, description="fetch PR/issue metadata from the GitHub REST API")
    python: str = Field(default="3.11", description="Python of the base image")
    mining: MiningConfig = Field(default_factory=MiningConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)


class PatchValidationConfig(FlowConfig):
    """Candidate patches (e.g. agent trajectories) checked against validated instances."""

    instances: str | None = Field(default=None, description="dataset ref, e.g. swe/instances@latest")
    patches: str | None = Field(default=None, description="JSONL: instance_id, patch (or model_patch), "
                                                         "optional model / trajectory id")
    trajectories: list[str] = Field(
        default_factory=list,
        description="agent trajectories (SWE-agent *.traj, mini-SWE-agent *.traj.json, OpenHands output.jsonl): "
                    "files, folders or globs; each final patch is checked and the resolved ones are published "
                    "as swe/trajectories with chat messages")
    tokenizer: str | None = Field(
        default=None, description="local tokenizer folder to count each trajectory's tokens (else only the counts "
                                  "the agent reported)")
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
