"""Configs of the three leakage flows: ``decontaminate``, ``leakage-audit`` and ``leakage-reference``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from skycurate.schemas.config import FlowConfig, StrictModel
from skycurate.schemas.generation import SamplingParams
from skycurate.schemas.leakage import BenchmarkSpec, DecontaminateConfig
from skycurate.schemas.leakage_audit import AuditConfig


class DecontaminateFlowConfig(FlowConfig):
    """``skycurate run decontaminate``: a corpus version minus the benchmarks' n-grams."""

    corpus: str | None = Field(default=None, description="corpus dataset ref, e.g. web/clean@latest")
    benchmarks: list[BenchmarkSpec] = Field(default_factory=list)
    output: str | None = Field(default=None,
                               description="dataset name of the cleaned corpus; default <corpus>-decontaminated")
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)

    def output_name(self, corpus_name: str) -> str:
        return self.output or f"{corpus_name}-decontaminated"


class LeakageAuditFlowConfig(FlowConfig):
    """``skycurate run leakage-audit``: one model's losses on each benchmark's train / test / reference."""

    model: str | None = Field(default=None, description="local folder of a causal LM (save_pretrained layout)")
    model_label: str | None = Field(default=None, description="name shown in the report; default the folder name")
    benchmarks: list[BenchmarkSpec] = Field(default_factory=list)
    references: dict[str, str] = Field(
        default_factory=dict,
        description="benchmark name -> dataset ref of a reference split built by leakage-reference; "
                    "used instead of the benchmark's own reference file")
    audit: AuditConfig = Field(default_factory=AuditConfig)


DEFAULT_REFERENCE_PROMPT = (
    "Here are some examples of problems from a test collection:\n\n{examples}\n\n"
    "Write one new problem in exactly the same style and format, on a different topic and with "
    "different numbers. Do not copy any example.\n\n"
)


class ReferenceConfig(StrictModel):
    """How fresh items in the style of a benchmark are asked for and screened."""

    engine: Literal["transformers", "openai"] = Field(
        default="transformers", description="transformers (local model folder) or openai (any OpenAI-compatible "
                                            "endpoint, e.g. vllm serve)")
    model: str | None = Field(default=None, description="local folder (transformers) or served model name (openai)")
    base_url: str | None = Field(default=None, description="endpoint of the openai engine, e.g. http://127.0.0.1:8000/v1")
    chat: bool = Field(default=False, description="openai engine: use /chat/completions instead of /completions")
    samples: int = Field(default=100, ge=1, description="reference items wanted")
    max_requests: int = Field(default=0, ge=0, description="prompts sent at most; 0 = 4 x samples")
    examples_per_prompt: int = Field(default=3, ge=1, description="benchmark items shown in each prompt")
    from_splits: list[Literal["train", "test"]] = Field(default_factory=lambda: ["test"],
                                                         description="splits the style examples come from")
    prompt_template: str = Field(default=DEFAULT_REFERENCE_PROMPT,
                                 description="with {examples}: the examples, separated by blank lines")
    example_separator: str = "\n\n"
    stop: list[str] = Field(default_factory=lambda: ["\n\n\n"], description="cut a sample at the first of these")
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_new_tokens=256, temperature=0.9))
    overlap_n: int = Field(default=8, ge=1, description="a sample sharing any n-gram of this length with any "
                                                        "benchmark item (any split) is rejected")
    min_chars: int = Field(default=20, ge=0, description="shorter samples are rejected")
    seed: int = 0


class LeakageReferenceFlowConfig(FlowConfig):
    """``skycurate run leakage-reference``: publish a fresh reference split for one benchmark."""

    benchmark: BenchmarkSpec | None = None
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
