"""Config and datasets of the CoT distillation flow (``skycurate run distill``).

Input: a prompts dataset (catalog ref, JSONL or Parquet), one row per question:

=================  ========  ===========================================================
column             required  meaning
=================  ========  ===========================================================
id                 yes       unique prompt id (string)
question           yes       the question text (the user turn)
reference_answer   yes       the gold answer (string; numbers are read as text)
answer_type        yes       math | mcq | exact | numeric | code (how the answer is verified)
images             no        list of image bytes or paths (vision-language teachers)
domain, source     no        carried into the outputs
difficulty         no        a given difficulty score in [0, 1] (wins over 1 - pass rate)
s_v, s_t, s_i      no        R1V quality scores in [0, 1]: per-prompt repetition penalty P
lang               no        en | zh (the language-mixing check)
explanation        no        a reference explanation (CSVQA): the judge checks chains against it
=================  ========  ===========================================================

Outputs (namespace ``cot``):

- ``cot/prompts``: the prepared prompts (normalised, deduplicated, decontaminated);
- ``cot/generations``: every sample with its verdict, quality signals and selection decision;
- ``cot/sft``: the selected chains with a ``messages`` column ([{role, content}], TRL /
  LLaMA-Factory / OpenRLHF) plus metadata;
- ``cot/rejected``: one row per prompt that gave no SFT row, with the stage and reason;
- ``cot/quarantine``: prompts with bad input or engine failures, with the error.

Accounting: prompts in = prompts with a selected chain + rejected + quarantined.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from skycurate.schemas.config import FlowConfig, StrictModel
from skycurate.schemas.cot_judge import JudgeConfig
from skycurate.schemas.cot_prompts import PromptFields
from skycurate.schemas.cot_rl import PreferenceConfig, RLPoolConfig
from skycurate.schemas.cot_select import SelectConfig
from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.schemas.engine import EngineConfig
from skycurate.schemas.generation import SamplingParams
from skycurate.schemas.leakage import BenchmarkSpec, DecontaminateConfig
from skycurate.schemas.tokens import TokenizerConfig

NAMESPACE = "cot"
PROMPTS = f"{NAMESPACE}/prompts"
SAMPLES = f"{NAMESPACE}/samples"                        # every teacher sample, before verification
TEMPLATE_REJECTED = f"{NAMESPACE}/template-rejected"    # prompts too long for the teacher's context
GENERATIONS = f"{NAMESPACE}/generations"
SFT = f"{NAMESPACE}/sft"
REJECTED = f"{NAMESPACE}/rejected"
QUARANTINE = f"{NAMESPACE}/quarantine"
PROMPTS_SCORED = f"{NAMESPACE}/prompts-scored"          # prompts with judged s_v/s_t/s_i (judge.scores)
SCORES_QUARANTINE = f"{NAMESPACE}/scores-quarantine"    # prompts whose score reply did not parse
JUDGE_QUARANTINE = f"{NAMESPACE}/judge-quarantine"      # judge replies about samples that decided nothing
RL_POOL = f"{NAMESPACE}/rl_pool"                        # prompts in the pass-rate band, verl + TRL GRPO layout
PREFERENCE = f"{NAMESPACE}/preference"                  # chosen vs rejected chains, TRL DPO layout

REQUIRED_PROMPT_COLUMNS = ("id", "question", "reference_answer", "answer_type")
OPTIONAL_PROMPT_COLUMNS = ("images", "domain", "source", "difficulty", "s_v", "s_t", "s_i", "lang", "explanation")

# ---- stages (reject_stage / quarantine stage values) ----
PREPARE = "prepare"
EXACT_DEDUP = "exact_dedup"
NEAR_DEDUP = "near_dedup"
DECONTAMINATE = "decontaminate"
TEMPLATE = "template"
GENERATE = "generate"
SELECT = "cot_select"

# ---- quarantine reasons (bad input, engine failures) ----
MISSING_ID = "missing_id"
DUPLICATE_ID = "duplicate_id"
MISSING_QUESTION = "missing_question"
MISSING_REFERENCE = "missing_reference"
UNKNOWN_ANSWER_TYPE = "unknown_answer_type"
BAD_IMAGE = "bad_image"
BAD_SCORE = "bad_score"
MALFORMED_RECORD = "malformed_record"
ENGINE_ERROR = "engine_error"
# ---- rejection reasons (policy) ----
TOO_LONG = "too_long"
TEXT_ONLY = "text_only"                          # stage of EMMA's filter (generate.text_only_filter)
SOLVABLE_WITHOUT_IMAGE = "solvable_without_image"
CONTAMINATED = "contaminated"
# exact_duplicate of X / near_duplicate of X come from the dedup stages
IMAGE_TOO_LARGE = "image_too_large"         # quarantine: over images.max_pixels / max_bytes, or a decompression bomb
CONTAMINATED_IMAGE = "contaminated_image"   # rejection: an image is a perceptual near copy of a benchmark image

QWEN2_VL_MAX_PIXELS = 12_845_056             # Qwen2-VL's image processor max_pixels (16384 patches of 28 x 28)
OPENAI_MAX_IMAGE_BYTES = 20 * 1024 * 1024    # the OpenAI API's limit on one image
ENGINE_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")   # what vLLM, transformers and OpenAI-style APIs all take


class ImageCheckConfig(StrictModel):
    """Limits on prompt images: engines refuse or silently downscale what is larger, so it is settled here."""

    max_pixels: int = Field(default=QWEN2_VL_MAX_PIXELS, ge=1,
                            description="width x height above which an image is too large (default: Qwen2-VL's "
                                        "processor max_pixels, 12,845,056)")
    max_bytes: int = Field(default=OPENAI_MAX_IMAGE_BYTES, ge=1,
                           description="encoded size above which an image is too large (default 20 MiB, the "
                                       "OpenAI image limit)")
    too_large: Literal["resize", "reject"] = Field(
        default="resize",
        description="resize: scale down keeping the aspect ratio to fit both limits (PNG, or JPEG quality 95 for "
                    "JPEG sources; never upscaled); reject: quarantine the prompt (image_too_large). Images too "
                    "large to decode safely (decompression bombs) are quarantined either way")
    formats: list[str] = Field(
        default_factory=lambda: list(ENGINE_IMAGE_FORMATS),
        description="formats kept as they are (PIL format names); other formats PIL decodes (BMP, TIFF, ...) "
                    "are re-encoded as PNG, what PIL cannot read is quarantined (bad_image)")

    @model_validator(mode="after")
    def _formats(self) -> ImageCheckConfig:
        self.formats = ["JPEG" if f.strip().upper() == "JPG" else f.strip().upper() for f in self.formats]
        if "PNG" not in self.formats:
            raise ValueError("images.formats must include PNG: other formats are converted to it")
        return self


class PrepareConfig(StrictModel):
    """Prompt preparation: normalise, check images, exact and fuzzy dedup, decontamination (text and images)."""

    exact_dedup: bool = Field(default=True, description="drop questions equal after NFKC, case folding and "
                                                        "whitespace collapsing (the smallest id survives)")
    near_dedup: bool = Field(default=True, description="drop near-duplicate questions (MinHash LSH on character "
                                                       "5-grams, verified); see near_threshold")
    near_threshold: float = Field(
        default=0.8, gt=0, le=1,
        description="estimated Jaccard similarity of character 5-gram sets at which two questions are near "
                    "duplicates (OpenThoughts uses a fuzzy ratio of 95 on whole strings)")
    same_numbers: bool = Field(
        default=True,
        description="near duplicates must also carry the same numbers in the same order: '12+30' and '12+31' are "
                    "different problems however similar the text")
    bands: int = Field(default=20, ge=1, le=256, description="LSH bands (rows 5): candidates from ~0.55 similarity")
    rows: int = Field(default=5, ge=1, le=32)
    decontaminate: DecontaminateConfig = Field(
        default_factory=lambda: DecontaminateConfig(n=8, min_item_tokens=8, mode="drop_document"),
        description="n-gram decontamination of questions against the benchmarks (drop the prompt on a match); a "
                    "question equal to a benchmark item after normalisation is dropped too, however short")
    max_question_chars: int | None = Field(default=None, ge=1,
                                           description="questions longer than this are rejected before tokenising")
    images: ImageCheckConfig = Field(default_factory=ImageCheckConfig,
                                     description="size and format limits on prompt images (resize or reject)")
    image_decontaminate: bool = Field(
        default=True, description="reject prompts with an image that is a perceptual near copy (pHash) of a "
                                  "benchmark image; acts only for benchmarks with an images / image column")
    image_max_hamming: int = Field(
        default=8, ge=0, le=32,
        description="largest Hamming distance between 64-bit pHashes that counts as the same image (re-encoded "
                    "or resized copies differ by a few bits, unrelated pictures by ~32)")


class TemplateConfig(StrictModel):
    """How a question becomes the teacher's prompt.

    ``raw``: ``template.format(question=..., system=...)``; the engine's tokenizer adds its
    special tokens (BOS) when ``add_special_tokens``. ``chat``: the teacher's chat template
    (``tokenizer.apply_chat_template``) over [system?, user: ``user_template``], with the
    special tokens it writes itself; OpenAI-compatible chat endpoints get the messages instead.
    """

    mode: Literal["raw", "chat"] = "raw"
    template: str = Field(default="{question}", description="raw mode: the prompt text; {question}, {system}")
    user_template: str = Field(default="{question}", description="chat mode: the user turn; {question}")
    system: str | None = Field(default=None, description="system prompt (chat mode: a system turn; raw: {system})")
    add_special_tokens: bool = Field(default=True, description="raw mode: let the tokenizer add BOS etc.")
    assistant_prefix: str = Field(default="", description="text the assistant turn starts with in the prompt "
                                                          "(e.g. '<think>\\n'); it is prepended to the SFT answer")

    @model_validator(mode="after")
    def _placeholders(self) -> TemplateConfig:
        if "{question}" not in self.template or "{question}" not in self.user_template:
            raise ValueError("template and user_template must contain {question}")
        return self


class GenerateConfig(StrictModel):
    """Sampling and sharding."""

    samples: int = Field(default=4, ge=1, description="samples per prompt (N; pass rate = correct / N)")
    text_only_filter: bool = Field(
        default=False,
        description="EMMA's filter: before generating, ask the teacher each image prompt without its images "
                    "(N samples); a prompt answered correctly in every sample does not need its images and is "
                    "rejected (text_only: solvable_without_image)")
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_new_tokens=2048, temperature=0.7))
    shard_size: int = Field(default=256, ge=1, description="prompts per shard: the unit of resumable work")
    alpha: float = Field(default=1.0, ge=0, description="R1V penalty strength (with s_v/s_t/s_i columns)")
    beta: float = Field(default=1.0, ge=0)
    gamma: float = Field(default=1.0, ge=0)


class DistillFlowConfig(FlowConfig):
    """``skycurate run distill``: prompts -> verified chains of adaptive length -> ``cot/sft``."""

    prompts: str | None = Field(default=None, description="prompts: a dataset ref (ns/name@version) or JSONL / "
                                                           "JSON / Parquet files (globs allowed)")
    rl_pool: RLPoolConfig = Field(default_factory=RLPoolConfig,
                                  description="cot/rl_pool: prompts whose pass rate lies in the band (R1V2 SSB)")
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig,
                                         description="cot/preference: chosen (verified) vs rejected chains")
    fields: PromptFields = Field(default_factory=PromptFields,
                                 description="where the prompt fields are: the layout (auto-detected: GSM8K, MATH / "
                                             "NuminaMath, MMLU / ARC, letter-option columns, skycurate) and per-field "
                                             "column names")
    benchmarks: list[BenchmarkSpec] = Field(default_factory=list, description="decontaminate prompts against these")
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    template: TemplateConfig = Field(default_factory=TemplateConfig)
    teacher: EngineConfig = Field(default_factory=EngineConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig,
                               description="a judge model for what rules cannot decide: answer equivalence, R1V's "
                                           "s_v/s_t/s_i scores, reasoning against an explanation (off until "
                                           "judge.engine is set)")
    tokens: TokenizerConfig | None = Field(
        default=None, description="count tokens with this tokenizer: cot/sft gets an n_tokens column (the content "
                                  "of its messages) and its manifest the totals (stats.tokens); none = no counting")


# ---- datasets ----

DROPPED_SCHEMA = pa.schema([       # cot/rejected and cot/quarantine: one row per prompt
    pa.field("id", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("detail", pa.string()),
    pa.field("question", pa.string()),
    pa.field("record", pa.string()),   # quarantine: the input row as JSON (images elided)
])

GENERATION_SCHEMA = pa.schema([    # one shard file of the generation journal: one row per sample
    pa.field("prompt_id", pa.string()),
    pa.field("sample_index", pa.int32()),
    pa.field("completion", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("prompt_tokens", pa.int32()),
    pa.field("completion_tokens", pa.int32()),
    pa.field("error", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("repetition_penalty", pa.float64()),
    pa.field("shard", pa.string()),    # the content hash of the shard that generated it
])
