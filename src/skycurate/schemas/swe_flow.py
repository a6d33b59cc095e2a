"""Configs of the SWE flows: ``skycurate run swe`` and ``skycurate run swe-validate-patches``."""

from __future__ import annotations

from pydantic import Field, field_validator

from skycurate.schemas.config import FlowConfig
from skycurate.schemas.swe import AUTO_PYTHON, PYTHON_RELEASED, MiningConfig, ValidationConfig
from skycurate.schemas.tokens import TokenizerConfig


class SweConfig(FlowConfig):
    """Repositories in, runtime-validated SWE-bench instances out."""

    repos: list[str] = Field(default_factory=list, description="local clones or git URLs")
    prs: str | None = Field(default=None, description="JSONL export of PRs and issues; else the GitHub API "
                                                     "(github: true) or git history alone")
    github: bool = Field(default=False, description="fetch PR/issue metadata from the GitHub REST API")
    python: str = Field(
        default="auto",
        description="Python of the test environments: auto (per repository and commit: requires-python and the "
                    "commit's date pick 3.9, 3.11 or 3.13, the others are fallbacks) or one version for all")

    @field_validator("python")
    @classmethod
    def _known_python(cls, v: str) -> str:
        if v != AUTO_PYTHON and v not in PYTHON_RELEASED:
            raise ValueError(f"python must be auto or one of {', '.join(PYTHON_RELEASED)} (the Pythons the sandbox "
                             f"builds from Debian releases), not {v!r}")
        return v
    mining: MiningConfig = Field(default_factory=MiningConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    tokens: TokenizerConfig | None = Field(
        default=None, description="count tokens with this tokenizer: swe/instances gets an n_tokens column (of "
                                  "problem_statement unless text_column says otherwise) and its manifest the totals "
                                  "(stats.tokens); none = no counting")


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
