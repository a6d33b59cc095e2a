"""Config of ``skycurate run tokens``: count any published dataset under the trainer's tokenizer.

The output is a new dataset (``<ns>/<name>-tokens`` by default) with the same rows plus
``n_tokens``, so the counted source version stays as it was published (versions are immutable).
"""

from __future__ import annotations

from pydantic import Field

from skycurate.schemas.config import FlowConfig
from skycurate.schemas.tokens import TokenizerConfig


class TokensFlowConfig(FlowConfig):
    """``skycurate run tokens --dataset NS/NAME@vN --tokenizer PATH``."""

    dataset: str | None = Field(default=None, description="the dataset version counted, e.g. web/clean@v0003 (a "
                                                           "tag or @latest is resolved when the run starts)")
    tokens: TokenizerConfig | None = Field(default=None, description="the tokenizer and the column counted")
    output: str | None = Field(default=None, description="dataset name of the counted copy; default <dataset>-tokens")
    by: list[str] = Field(default_factory=lambda: ["lang", "source"],
                          description="columns the manifest totals tokens by, where the dataset has them")

    def output_name(self, dataset_name: str) -> str:
        return self.output or f"{dataset_name}-tokens"
