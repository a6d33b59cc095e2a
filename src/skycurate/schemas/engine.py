"""The engine that runs a model (teacher, judge, evaluated model): transformers, vLLM offline or an
OpenAI-compatible endpoint, with the settings each needs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from skycurate.schemas.config import StrictModel

__all__ = ["EngineConfig"]


class EngineConfig(StrictModel):
    """The teacher and the engine that runs it."""

    engine: Literal["transformers", "vllm", "openai"] = "transformers"
    model: str | None = Field(default=None, description="local model folder (transformers, vllm) or the served "
                                                        "model name (openai)")
    base_url: str | None = Field(default=None, description="openai: e.g. http://127.0.0.1:8000/v1")
    tokenizer: str | None = Field(default=None, description="local tokenizer folder for templating and the "
                                                            "context check; default the model folder")
    max_model_len: int | None = Field(default=None, ge=1, description="context length; default the model "
                                                                      "config's max_position_embeddings")
    device: str = Field(default="auto", description="transformers: auto, cpu or cuda")
    batch_size: int = Field(default=16, ge=1, description="transformers: prompts per forward batch")
    vllm_python: str | None = Field(default=None, description="vllm: interpreter with vLLM (else "
                                                              "$SKYCURATE_VLLM_PYTHON or .venv-vllm)")
    vllm_options: dict = Field(default_factory=dict, description="vllm: extra LLM(...) options, e.g. "
                                                                 "tensor_parallel_size, gpu_memory_utilization")
    request_timeout_s: float | None = Field(
        default=None, gt=0, description="vllm: longest one shard may take before the worker is killed (an "
                                        "EngineError; finished shards stay journalled); None = no limit")
    concurrency: int = Field(default=8, ge=1, description="openai: requests in flight")
    timeout_s: float = Field(default=120.0, gt=0, description="openai: per request")
    retries: int = Field(default=4, ge=0, description="openai: retries with exponential backoff")
