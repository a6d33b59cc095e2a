"""Schemas and configs of SWE task mining (Skywork-SWE): candidates, install recipes, sandbox
limits, validation, and the SWE-bench-compatible instance rows.

Stages pass candidates around as Arrow rows (``CANDIDATE_SCHEMA``); the sandbox takes an
``EnvRecipe`` (what to install) and ``SandboxLimits`` (how a test run is confined); the flow
publishes ``INSTANCE_SCHEMA`` rows to ``swe/instances`` and ``REJECTED_SCHEMA`` rows to
``swe/rejected``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date

import pyarrow as pa
from pydantic import Field

from skycurate.schemas.config import StrictModel
from skycurate.schemas.swe_benchmarks import default_excluded_repos

# ------------------------------------------------------------------------------------ configs


class RepoFilter(StrictModel):
    """Which repositories are mined at all."""

    languages: list[str] = Field(default_factory=lambda: ["python"],
                                 description="main language, guessed from file extensions")
    require_tests: bool = Field(default=True, description="skip repos without any test file")
    licenses: list[str] | None = Field(
        default=None, description="allowed SPDX ids (e.g. [MIT, Apache-2.0, BSD-3-Clause]); None = any licence")
    exclude: list[str] = Field(
        default_factory=default_excluded_repos,
        description="owner/name of repos never mined: by default the source repositories of SWE-bench, Lite and "
                    "Verified and the benchmarks' harness repos (schemas/swe_benchmarks.py), so mined data does "
                    "not leak into them")
    exclude_instances: list[str] = Field(
        default_factory=list,
        description="published benchmark instance files (NAME=PATH or PATH; JSON, JSONL or Parquet with "
                    "instance_id / repo / base_commit / pull_number, as SWE-bench-Live, SWE-rebench and "
                    "Multi-SWE-bench ship them): a candidate matching one of their instances is rejected "
                    "(benchmark_overlap)")


class MiningConfig(StrictModel):
    """Candidate mining: which changes become task candidates."""

    max_files: int = Field(default=10, ge=1, description="changes touching more non-test files are skipped")
    max_test_files: int = Field(default=10, ge=1)
    max_patch_lines: int = Field(default=1000, ge=1)
    require_issue: bool = Field(default=True, description="a change must close an issue by a keyword (fixes #N)")
    cache_dir: str | None = Field(default=None,
                                  description="bare clones of git URLs; default <store>/_cache/git (reused)")
    github_token_env: str = Field(default="GITHUB_TOKEN", description="env var holding a GitHub token, if any")
    filters: RepoFilter = Field(default_factory=RepoFilter)


#: The Pythons test environments can have (the sandbox builds each from one Debian release), with
#: their first release date, which ``stages.swe.pythons`` weighs against a commit's date.
PYTHON_RELEASED = {"3.9": date(2020, 10, 5), "3.11": date(2022, 10, 24), "3.13": date(2024, 10, 7)}
DEFAULT_PYTHON = "3.11"
AUTO_PYTHON = "auto"


class EnvRecipe(StrictModel):
    """How to build an environment for a repo at a commit. Its hash is the env image tag, so
    every instance with the same recipe shares one env image."""

    python: str = Field(default=DEFAULT_PYTHON, description="Python version of the base image (3.9, 3.11, 3.13)")
    system_packages: list[str] = Field(default_factory=list, description="apt packages (build tools etc.)")
    requirements: list[str] = Field(default_factory=list,
                                    description="pip requirement lines installed into the env image")
    install: list[str] = Field(
        default_factory=lambda: ["pip install --no-deps --no-build-isolation -e ."],
        description="shell commands run in the repo at base_commit when the instance image is built")
    test_cmd: str = Field(default="python -m pytest -rA --tb=no -p no:cacheprovider",
                          description="test files are appended")
    name: str = Field(default="default", description="which fallback produced it (for provenance)")
    requires_python: str | None = Field(
        default=None, description="the project's Requires-Python at the commit (precheck rejects a recipe whose "
                                  "python it excludes); not part of the env key")

    def env_key(self) -> str:
        """Content hash of what goes into the env image (not the per-instance install)."""
        payload = {"python": self.python, "system": sorted(self.system_packages),
                   "requirements": sorted(self.requirements)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class SandboxLimits(StrictModel):
    """How a test run in a container is confined."""

    timeout_s: int = Field(default=300, ge=1, description="wall clock; the container is killed after it")
    memory: str = Field(default="2g", description="docker mem_limit")
    cpus: float = Field(default=1.0, gt=0)
    pids: int = Field(default=512, ge=16)
    network: bool = Field(default=False, description="tests run with the network off")
    user: str = Field(default="1000:1000", description="tests run as this non-root user")


class ValidationConfig(StrictModel):
    """Before/after test runs and what counts as a valid instance."""

    post_repeats: int = Field(default=3, ge=1, description="post-patch runs; a test passes only if it passes all")
    workers: int = Field(default=2, ge=1, description="instances validated in parallel (per Docker host)")
    docker_hosts: list[str] = Field(
        default_factory=list,
        description="Docker daemons to spread validation over (unix://, tcp://, ssh://user@host); empty = the "
                    "local daemon or $DOCKER_HOST. Each host builds its own base/env images on first use")
    keep_images: bool = Field(default=False, description="keep instance images after validation")
    max_environments: int = Field(
        default=8, ge=1, description="environments (Python x recipe x pytest era) built per candidate before "
                                     "it is rejected; recipes the precheck rules out do not count")
    limits: SandboxLimits = Field(default_factory=SandboxLimits)


# ------------------------------------------------------------------------------------ Arrow

# A mined change, before any image exists.
CANDIDATE_SCHEMA = pa.schema([
    pa.field("instance_id", pa.string(), nullable=False),       # owner__repo-N (N: PR number, else issue number)
    pa.field("repo", pa.string(), nullable=False),              # owner/name
    pa.field("repo_path", pa.string(), nullable=False),         # local clone (or bare cache) the sandbox reads
    pa.field("base_commit", pa.string(), nullable=False),
    pa.field("fix_commit", pa.string(), nullable=False),        # the gold change's commit (never put in an image)
    pa.field("patch", pa.string(), nullable=False),             # non-test files, unified diff
    pa.field("test_patch", pa.string(), nullable=False),        # test files, unified diff
    pa.field("test_files", pa.list_(pa.string())),              # paths touched by test_patch
    pa.field("problem_statement", pa.string()),
    pa.field("hints_text", pa.string()),
    pa.field("problem_source", pa.string()),                    # github | export | git_history
    pa.field("issue_numbers", pa.list_(pa.int64())),
    pa.field("issue_link", pa.string()),                        # where the link was found: message,
                                                                # merged_commit:<sha>, branch:<name>, pr_text, ...
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
    pa.field("version", pa.string()),
    pa.field("environment_setup_commit", pa.string()),
])

# A runtime-validated instance: the SWE-bench fields plus provenance.
INSTANCE_SCHEMA = pa.schema([
    pa.field("instance_id", pa.string(), nullable=False),
    pa.field("repo", pa.string(), nullable=False),
    pa.field("base_commit", pa.string(), nullable=False),
    pa.field("patch", pa.string(), nullable=False),
    pa.field("test_patch", pa.string(), nullable=False),
    pa.field("problem_statement", pa.string()),
    pa.field("hints_text", pa.string()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
    pa.field("version", pa.string()),
    pa.field("FAIL_TO_PASS", pa.list_(pa.string())),
    pa.field("PASS_TO_PASS", pa.list_(pa.string())),
    pa.field("environment_setup_commit", pa.string()),
    # provenance
    pa.field("problem_source", pa.string()),
    pa.field("issue_numbers", pa.list_(pa.int64())),
    pa.field("issue_link", pa.string()),
    pa.field("repo_path", pa.string()),                         # where the image's checkout came from
    pa.field("test_files", pa.list_(pa.string())),
    pa.field("image_tag", pa.string()),
    pa.field("image_digest", pa.string()),
    pa.field("env_image_tag", pa.string()),
    pa.field("python", pa.string()),                            # Python of the environment that ran (3.9 ...)
    pa.field("install_recipe", pa.string()),                    # EnvRecipe as JSON (the environment that ran)
    pa.field("env_attempts", pa.list_(pa.string())),            # environments tried before it, and why not
    pa.field("runs", pa.string()),                              # JSON: per run, test -> status, duration
    pa.field("flaky_tests", pa.list_(pa.string())),
    pa.field("log_dir", pa.string()),
])

REJECTED_SCHEMA = pa.schema([
    pa.field("instance_id", pa.string()),
    pa.field("repo", pa.string()),
    pa.field("stage", pa.string(), nullable=False),             # clone | mine | recipe | install | build | validate
    pa.field("reason", pa.string(), nullable=False),            # short machine-readable reason
    pa.field("detail", pa.string()),                            # the error / log tail
    pa.field("log_dir", pa.string()),
])


PATCH_RESULT_SCHEMA = pa.schema([     # swe/patch_validations: one row per candidate patch
    pa.field("patch_id", pa.string(), nullable=False),
    pa.field("instance_id", pa.string(), nullable=False),
    pa.field("model", pa.string()),
    pa.field("resolved", pa.bool_(), nullable=False),
    pa.field("reason", pa.string()),                      # why not resolved (null when resolved)
    pa.field("f2p_passed", pa.int64()),
    pa.field("f2p_total", pa.int64()),
    pa.field("p2p_passed", pa.int64()),
    pa.field("p2p_total", pa.int64()),
    pa.field("failing_tests", pa.list_(pa.string())),
    pa.field("log_path", pa.string()),
])

_TOOL_CALL = pa.struct([pa.field("id", pa.string()), pa.field("type", pa.string()),
                        pa.field("function", pa.struct([pa.field("name", pa.string()),
                                                        pa.field("arguments", pa.string())]))])
MESSAGE_TYPE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string()),
                          pa.field("tool_calls", pa.list_(_TOOL_CALL)), pa.field("tool_call_id", pa.string())])

TRAJECTORY_SCHEMA = pa.schema([       # swe/trajectories: resolved agent trajectories, SFT-ready
    pa.field("trajectory_id", pa.string(), nullable=False),   # <instance_id>#<content hash>
    pa.field("instance_id", pa.string(), nullable=False),
    pa.field("format", pa.string()),                          # swe-agent | mini-swe-agent | openhands
    pa.field("source", pa.string()),                          # file (and line) it was read from
    pa.field("model", pa.string()),
    pa.field("exit_status", pa.string()),
    pa.field("messages", pa.list_(MESSAGE_TYPE)),             # role, content, tool_calls, tool_call_id
    pa.field("patch", pa.string()),
    pa.field("turns", pa.int64()),                            # assistant messages
    pa.field("tokens", pa.int64()),                           # counted with --tokenizer, else null
    pa.field("tokens_sent", pa.int64()),                      # as the agent reported them, when it did
    pa.field("tokens_received", pa.int64()),
    pa.field("f2p_total", pa.int64()),
    pa.field("p2p_total", pa.int64()),
])

TRAJECTORY_REJECTED_SCHEMA = pa.schema([
    pa.field("trajectory_id", pa.string()),
    pa.field("instance_id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("reason", pa.string()),    # unrecognised_trajectory, bad_json, unreadable, no_patch,
                                        # duplicate_trajectory, not_resolved:<patch reason>
    pa.field("detail", pa.string()),
])
