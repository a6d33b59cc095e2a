"""Config and datasets of benchmark evaluation (``skycurate run evaluate``).

CSVQA evaluated 15 models on one test split; this flow does the same for any benchmark folder:
every model answers the test split through the engines of CoT distillation (transformers, vLLM
offline, an OpenAI-compatible endpoint) and the distillation verifier scores each answer (boxed
answers, multi-select letter sets, numeric tolerance, Math-Verify; a judge for what it cannot
decide), so an evaluation and a distillation run call "correct" the same thing.

Outputs (namespace ``eval``):

- ``eval/prompts``: the benchmark items as canonical prompts (``prompt_id`` = ``<benchmark>/<item_id>``);
- ``eval/quarantine``: benchmark rows that could not become an item, with the reason and the row;
- ``eval/samples-<model>``: one model's completions (generated in resumable shards, cached);
- ``eval/items``: one row per (benchmark, model, item, sample) with the verdict;
- ``eval/accuracy``: one row per (benchmark, model, subject) plus an ``all`` row per (benchmark,
  model); ``_charts.png`` draws it (grouped bars, model x subject).

Accounting: per benchmark and model, items in = evaluated + quarantined.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from skycurate.schemas.cot_judge import JudgeConfig
from skycurate.schemas.config import FlowConfig
from skycurate.schemas.cot import EngineConfig, GenerateConfig, TemplateConfig
from skycurate.schemas.cot_prompts import PromptFields
from skycurate.schemas.cot_verify import VerifyConfig
from skycurate.schemas.generation import SamplingParams
from skycurate.schemas.leakage import BenchmarkSpec

NAMESPACE = "eval"
PROMPTS = f"{NAMESPACE}/prompts"
QUARANTINE = f"{NAMESPACE}/quarantine"
ITEMS = f"{NAMESPACE}/items"
ACCURACY = f"{NAMESPACE}/accuracy"
JUDGE_QUARANTINE = f"{NAMESPACE}/judge-quarantine"   # judge replies that decided nothing
SAMPLES_PREFIX = f"{NAMESPACE}/samples-"

SPLIT = "test"                  # the split a benchmark is evaluated on
ALL = "all"                     # the subject of items without one, and of the per-(benchmark, model) total row
SUBJECT_COLUMNS = ("subject", "category", "domain", "source")
NO_COMPLETION = "no_completion"   # verify_error of a sample the engine did not answer (see the error column)
TOO_LONG = "too_long"             # error prefix of an item longer than the model's context

_SLUG = re.compile(r"[^a-z0-9_.-]+")


def model_slug(label: str) -> str:
    """A model label as the tail of a dataset name (``eval/samples-<slug>``)."""
    return _SLUG.sub("-", label.lower()).strip("-_.") or "model"


class EvalModel(EngineConfig):
    """One evaluated model: the engine that runs it, the label it has in the tables, and optionally
    its own prompt template (a chat model next to a base model)."""

    name: str | None = Field(default=None, description="label in eval/items, eval/accuracy and the chart; default "
                                                       "the folder's name (transformers, vllm) or the served name")
    template: TemplateConfig | None = Field(default=None, description="this model's template; default the run's")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.engine != "openai" and self.model:
            return Path(self.model).name or self.model
        return self.model or ""

    def engine_config(self) -> EngineConfig:
        """The engine part alone: what the shard journal is keyed on (a new label reuses the shards)."""
        return EngineConfig(**self.model_dump(exclude={"name", "template"}))


class EvalSampling(SamplingParams):
    """Sampling with evaluation's defaults: greedy, long enough for a reasoning chain."""

    max_new_tokens: int = Field(default=2048, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, description="0 = greedy")


class EvalGenerateConfig(GenerateConfig):
    """Generation with evaluation's defaults (one greedy answer per item), kept when only some keys are set."""

    samples: int = Field(default=1, ge=1, description="answers per item (accuracy averages them)")
    sampling: EvalSampling = Field(default_factory=EvalSampling)

    @model_validator(mode="after")
    def _no_distillation_filters(self) -> EvalGenerateConfig:
        if getattr(self, "text_only_filter", False):   # it drops prompts: every benchmark item must be answered
            raise ValueError("text_only_filter is a distillation setting; evaluation answers every item")
        return self


class EvalFlowConfig(FlowConfig):
    """``skycurate run evaluate``: models x benchmark test splits -> verified answers -> accuracy tables."""

    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=list, description="benchmarks to evaluate on (their test split); text_field and template "
                                          "are not used here (fields says where question and answer are), "
                                          "id_field names the item id column")
    models: list[EvalModel] = Field(default_factory=list, description="the models, side by side")
    fields: PromptFields = Field(default_factory=PromptFields,
                                 description="where question, answer, options and images are (layout detected "
                                             "per benchmark: GSM8K, MATH, MMLU / ARC, letter options, skycurate)")
    benchmark_fields: dict[str, PromptFields] = Field(default_factory=dict,
                                                      description="per benchmark name: fields that differ")
    subject_field: str | None = Field(
        default=None, description="column of an item's subject/category; default the first present of subject, "
                                  "category, domain, source; items without one count only in the 'all' row")
    template: TemplateConfig = Field(default_factory=TemplateConfig)
    generate: EvalGenerateConfig = Field(default_factory=EvalGenerateConfig,
                                     description="sampling (default greedy, temperature 0), samples per item "
                                                 "(default 1) and shard size")
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig,
                               description="a judge model for answers the rules leave undecided (free-form "
                                           "references); off until judge.engine is set")

    @field_validator("models", mode="before")
    @classmethod
    def _model_strings(cls, v: object) -> object:
        """``models: [DIR, ...]``: a plain string is a model with the default engine."""
        return [{"model": m} if isinstance(m, str) else m for m in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _unique_names(self) -> EvalFlowConfig:
        benches = [b.name for b in self.benchmarks]
        if len(set(benches)) != len(benches):
            raise ValueError(f"benchmark names repeat: {', '.join(benches)}")
        labels = [m.label for m in self.models]
        if not all(labels):
            raise ValueError(f"models[{labels.index('')}] names no model")
        slugs = [model_slug(x) for x in labels]
        clash = next((x for x, s in zip(labels, slugs, strict=True) if slugs.count(s) > 1), None)
        if clash is not None:
            raise ValueError(f"two models are called {clash!r} (names are compared in lower case); give each "
                             "its own name (models[i].name in the config)")
        unknown = sorted(set(self.benchmark_fields) - set(benches))
        if unknown:
            raise ValueError(f"benchmark_fields names unknown benchmark(s): {', '.join(unknown)}")
        return self

    def fields_for(self, spec: BenchmarkSpec) -> PromptFields:
        """The fields of one benchmark: its own entry, else the run's; its id_field as the id column."""
        fields = self.benchmark_fields.get(spec.name, self.fields)
        if fields.id is None and spec.id_field is not None:
            fields = fields.model_copy(update={"id": spec.id_field})
        return fields


# ---- datasets ----

PROMPT_SCHEMA = pa.schema([        # eval/prompts: one row per benchmark item evaluated
    pa.field("prompt_id", pa.string()),       # <benchmark>/<item_id>: unique across the run's benchmarks
    pa.field("benchmark", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("subject", pa.string()),
    pa.field("question", pa.string()),        # as the model gets it (mcq options appended as 'A. ...' lines)
    pa.field("reference_answer", pa.string()),
    pa.field("answer_type", pa.string()),
    pa.field("images", pa.list_(pa.binary())),
])

QUARANTINE_SCHEMA = pa.schema([    # eval/quarantine: one row per benchmark row that is not an item
    pa.field("benchmark", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("reason", pa.string()),          # missing_reference, unknown_answer_type, duplicate_id, ...
    pa.field("detail", pa.string()),
    pa.field("record", pa.string()),          # the row as JSON (images elided)
])

ITEM_SCHEMA = pa.schema([          # eval/items: one row per (benchmark, model, item, sample)
    pa.field("benchmark", pa.string()),
    pa.field("model", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("sample_index", pa.int32()),
    pa.field("subject", pa.string()),
    pa.field("question", pa.string()),
    pa.field("reference_answer", pa.string()),
    pa.field("answer_type", pa.string()),
    pa.field("completion", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("extracted_answer", pa.string()),
    pa.field("extract_method", pa.string()),
    pa.field("correct", pa.bool_()),          # null: undecided (no rule could decide, no judge did)
    pa.field("verify_method", pa.string()),
    pa.field("verify_error", pa.string()),
    pa.field("prompt_tokens", pa.int32()),
    pa.field("completion_tokens", pa.int32()),
    pa.field("error", pa.string()),           # the engine's error, or too_long: ... (scored as not correct)
    pa.field("judge_output", pa.string()),    # the judge's reply, when it was asked (verify_method judge)
])

ACCURACY_SCHEMA = pa.schema([       # eval/accuracy
    pa.field("benchmark", pa.string()),
    pa.field("model", pa.string()),
    pa.field("subject", pa.string()),         # 'all': every item of the benchmark
    pa.field("items", pa.int64()),
    pa.field("n", pa.int64()),                # samples scored (items x samples per item)
    pa.field("correct", pa.int64()),
    pa.field("accuracy", pa.float64()),       # correct / n: undecided and failed samples count as not correct
    pa.field("undecided", pa.int64()),
    pa.field("errors", pa.int64()),
])
