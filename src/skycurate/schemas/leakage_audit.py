"""Config and per-sample dataset of the model leakage audit (Skywork-13B loss method + membership scores).

For one model and one benchmark, every item of the ``train``, ``test`` and ``reference`` splits
(reference = fresh items written in the same style, never published) is scored by the model.
Split loss ``L`` is the micro-average: summed token cross-entropy / total scored tokens (no BOS,
truncated at ``max_tokens``). ``Delta1 = L_test - L_ref`` (low or negative: the test split was
probably trained on); ``Delta2 = L_test - L_train`` (high: the train split was probably trained
on). Per-item membership scores (loss, Min-K% Prob, Min-K%++, zlib ratio) give AUROCs between
splits.

Default thresholds come from the published GSM8K losses (REFERENCE.md, test / train / ref):

==============  =====  =====  =====  ======  ======
model           test   train  ref    Delta1  Delta2
==============  =====  =====  =====  ======  ======
Qwen-14B        1.03   0.42   1.14   -0.11   +0.61
Aquila2-34B     0.78   0.39   1.29   -0.51   +0.39
Skywork-13B     1.01   0.97   1.00   +0.01   +0.04
==============  =====  =====  =====  ======  ======

A clean model sits within a few hundredths of 0 on both (Skywork-13B); the reference set is
written by another author/generator than the test split, so a style gap of a few hundredths of
a nat per token is expected and must not be flagged. ``delta1_max = -0.10`` (about 10% of a
typical ~1.0 nat/token loss) flags Aquila2-34B and, just, Qwen-14B, and leaves Skywork-13B;
``delta2_min = 0.20`` sits between Skywork's +0.04 and the +0.39 / +0.61 of the two models
trained on the train split. A flag also needs the bootstrap CI to exclude 0 on that side
(``require_significant``), so that 20 noisy items never raise one.
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from skycurate.schemas.config import StrictModel

TRAIN, TEST, REFERENCE = "train", "test", "reference"
SPLITS = (TRAIN, TEST, REFERENCE)

# Membership scores stored per sample, with the sign that makes "higher = more likely seen in
# training": a lower loss / zlib ratio and a higher (less negative) Min-K% mean more likely seen.
MEMBERSHIP_SCORES: dict[str, int] = {"loss_mean": -1, "min_k": +1, "min_k_pp": +1, "zlib_ratio": -1}


class AuditConfig(StrictModel):
    """How the audit scores texts and when it raises a flag."""

    engine: Literal["transformers", "vllm"] = Field(
        default="transformers",
        description="scoring backend: transformers (CPU/GPU, full logits, Min-K%++) or vllm (GPU, prompt_logprobs; "
                    "no full logits, so no Min-K%++)")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = cuda when available, else cpu")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="model weights; auto = float32 on cpu, bfloat16 on cuda (float16 if no bf16). "
                                    "Log-softmax is always computed in float32")
    batch_size: int = Field(default=8, ge=1, description="texts per forward pass (texts are sorted by length first)")
    max_tokens: int = Field(
        default=4096, ge=2,
        description="longer texts are truncated to this many input tokens (BOS included when add_bos); counted")
    add_bos: bool = Field(
        default=False,
        description="prepend the tokenizer's BOS token. False (the Skywork-13B method): the first text token has no "
                    "prediction and the loss is over tokens 2..n. True: every text token is predicted")
    min_k: float = Field(default=0.2, gt=0, le=1,
                         description="fraction k of a text's lowest-scoring tokens that Min-K% and Min-K%++ average "
                                     "(at least one token)")
    minkpp: bool = Field(default=True,
                         description="compute Min-K%++ (needs the full next-token distribution: transformers only)")
    keep_token_scores: bool = Field(
        default=False,
        description="also store per-token log-probs (and Min-K%++ z-scores) so Min-K% can be recomputed for another "
                    "k without rescoring")
    bootstrap_samples: int = Field(default=1000, ge=1, description="bootstrap resamples for the loss/Delta CIs")
    confidence: float = Field(default=0.95, gt=0, lt=1, description="two-sided level of the percentile CIs")
    seed: int = Field(default=0, description="seed of the bootstrap (results are reproducible)")
    delta1_max: float = Field(
        default=-0.10,
        description="flag test leakage when Delta1 = L_test - L_ref is below this (nats/token); see module doc")
    delta2_min: float = Field(
        default=0.20,
        description="flag training on the train split when Delta2 = L_test - L_train is above this (nats/token)")
    require_significant: bool = Field(
        default=True,
        description="a flag also needs the bootstrap CI of its Delta to exclude 0 on the flagged side")
    vllm_python: str | None = Field(
        default=None,
        description="interpreter of a separate vLLM virtualenv (vLLM and Prefect cannot share one); default "
                    "$SKYCURATE_VLLM_PYTHON, else .venv-vllm next to the running virtualenv")
    vllm_options: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments for vllm.LLM(...) (engine=vllm only)")


# One row per benchmark item scored by one model. Metrics are null (not NaN) where undefined: a
# text with no scored token (empty after tokenisation, or a single token without BOS), or Min-K%++
# with an engine that has no full logits.
AUDIT_SAMPLE_SCHEMA = pa.schema([
    pa.field("model", pa.string(), nullable=False),        # model identity (folder name or label)
    pa.field("benchmark", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),        # train | test | reference
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("n_tokens", pa.int32(), nullable=False),      # text tokens fed to the model, after truncation (no BOS)
    pa.field("n_tokens_full", pa.int32(), nullable=False), # text tokens before truncation
    pa.field("n_scored", pa.int32(), nullable=False),      # tokens with a prediction: n_tokens - 1 without BOS
    pa.field("truncated", pa.bool_(), nullable=False),
    pa.field("loss_sum", pa.float64()),                    # summed token cross-entropy (nats)
    pa.field("loss_mean", pa.float64()),                   # loss_sum / n_scored
    pa.field("min_k", pa.float64()),                       # Min-K% Prob: mean log-prob of the lowest k% tokens
    pa.field("min_k_pp", pa.float64()),                    # Min-K%++: mean of the lowest k% of (log p - mu) / sigma
    pa.field("zlib_bytes", pa.int32(), nullable=False),    # len(zlib.compress(text.encode("utf-8"))), level 6
    pa.field("zlib_ratio", pa.float64()),                  # loss_mean / zlib_bytes (Carlini et al. 2021)
    pa.field("token_logprobs", pa.list_(pa.float32())),    # only with keep_token_scores
    pa.field("token_zscores", pa.list_(pa.float32())),     # only with keep_token_scores and Min-K%++
])
