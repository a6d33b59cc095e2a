"""Config and Arrow schemas of corpus decontamination (n-gram overlap with benchmarks).

A benchmark is a folder of split files (``train``, ``test``, ``reference``; ``.jsonl``,
``.jsonl.gz`` or ``.parquet``) or one file taken as ``test``. Its items are turned into
text by one field or a template, then every n-gram of the indexed splits is looked for in
the corpus (``stages/leakage/decontaminate.py``).
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, ValidationError, field_validator, model_validator

from skycurate.errors import ConfigError
from skycurate.schemas.config import StrictModel, _format_validation_error, read_yaml

Split = Literal["train", "test", "reference"]
SPLITS: tuple[str, ...] = ("train", "test", "reference")

DECONTAMINATE_STAGE = "decontaminate"

# The verdict columns of stages/accounting.py (schemas never import stages; a test checks they agree).
REJECT_STAGE, REJECT_REASON = "reject_stage", "reject_reason"
VERDICT_FIELDS = (pa.field(REJECT_STAGE, pa.string()), pa.field(REJECT_REASON, pa.string()))

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class BenchmarkSpec(StrictModel):
    """Where a benchmark's items are and how each becomes one text.

    ``text_field`` names the field holding the text (None: ``text``); ``template`` instead
    formats several fields, e.g. ``"{question}\\n{answer}"`` (for decontamination the answer
    belongs in the text: a copied answer is a leak too). ``id_field`` gives item ids; without
    it an item is ``<split>-<row index>``.
    """

    name: str = Field(description="benchmark name, as it appears in every output row")
    path: str = Field(description="folder with train/test/reference files, or one file (taken as test)")
    text_field: str | None = None
    template: str | None = None
    id_field: str | None = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"benchmark name {v!r} must be letters, digits, '_', '-' or '.'")
        return v

    @model_validator(mode="after")
    def _one_text_source(self) -> BenchmarkSpec:
        if self.text_field is not None and self.template is not None:
            raise ValueError("give text_field or template, not both")
        return self


def parse_benchmark_arg(arg: str) -> BenchmarkSpec:
    """``NAME=PATH`` (a CLI ``--benchmark`` value) -> spec with the default text field."""
    name, sep, path = arg.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise ConfigError(f"benchmark {arg!r}: expected NAME=PATH, e.g. gsm8k=data/gsm8k")
    try:
        return BenchmarkSpec(name=name.strip(), path=path.strip())
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, f"benchmark {arg!r}")) from None


def parse_benchmark_specs(data: Any, source: str = "(inline)") -> list[BenchmarkSpec]:
    """A YAML-loaded list of benchmark mappings (or ``{benchmarks: [...]}``) -> specs.

    Relative paths are kept as written; names must be unique.
    """
    if isinstance(data, dict) and set(data) == {"benchmarks"}:
        data = data["benchmarks"]
    if not isinstance(data, list):
        raise ConfigError(f"benchmarks {source}: expected a list of benchmarks, not {type(data).__name__}")
    specs = []
    for i, entry in enumerate(data):
        if isinstance(entry, str):
            specs.append(parse_benchmark_arg(entry))
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"benchmarks {source}: entry {i} must be a mapping or NAME=PATH, "
                              f"not {type(entry).__name__}")
        try:
            specs.append(BenchmarkSpec.model_validate(entry))
        except ValidationError as e:
            raise ConfigError(_format_validation_error(e, f"{source} benchmarks[{i}]")) from None
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ConfigError(f"benchmarks {source}: name {s.name!r} appears twice")
        seen.add(s.name)
    return specs


def load_benchmark_specs(path: str | os.PathLike) -> list[BenchmarkSpec]:
    """Read a YAML file holding a list of benchmarks."""
    return parse_benchmark_specs(read_yaml(path, "benchmarks file"), str(path))


class DecontaminateConfig(StrictModel):
    """How the corpus is checked against benchmark n-grams and what happens to a match.

    Defaults are the GPT-3 / lm-eval janitor recipe (REFERENCE.md, "Leakage"). Benchmark items
    shorter than ``n`` tokens have no ``n``-gram: an item of at least ``min_item_tokens`` tokens
    is indexed whole, as one n-gram of its own length, so it is found wherever all its tokens
    appear in a row; a shorter one is not indexed (``"yes"`` or ``"42"`` would match half the
    web) and is counted in ``NgramIndex.skipped_short``. This is GPT-3's rule (n between 8 and
    13, never below 8). ``min_item_tokens: 13`` indexes full 13-grams only (lm-eval).
    """

    n: int = Field(default=13, ge=1, le=256, description="n-gram length in tokens (words; one Han character each)")
    mode: Literal["gpt3", "drop_document"] = Field(
        default="gpt3", description="gpt3: cut matches out (and drop the document if too dirty); "
                                    "drop_document: drop every document with a match")
    window_chars: int = Field(default=200, ge=0, description="characters removed on each side of a match")
    min_fragment_chars: int = Field(default=200, ge=0, description="fragments shorter than this are dropped")
    max_splits: int = Field(default=10, ge=0, description="a document cut in more places is dropped")
    splits: list[Split] = Field(default_factory=lambda: ["test"], min_length=1,
                                description="benchmark splits whose n-grams are indexed")
    min_item_tokens: int = Field(default=8, ge=1, description="shortest item (in tokens) still indexed, whole")
    rejected_preview_chars: int = Field(default=500, ge=0, description="text kept per rejected document")
    span_preview_chars: int = Field(default=300, ge=0, description="longest_span_text is cut to this length")

    @field_validator("splits")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))


# ---------------------------------------------------------------------------------- Arrow schemas

# One benchmark split as connectors/benchmarks.py loads it.
BENCHMARK_ITEM_SCHEMA = pa.schema([
    pa.field("benchmark", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("text", pa.string()),
])

# Added to every corpus document (next to the verdict columns; ``text`` becomes the cleaned text).
CONTAMINATED_FIELD = pa.field("contaminated", pa.bool_())
LEAK_NGRAMS_FIELD = pa.field("leak_ngrams", pa.int64())              # matching n-gram positions in the document
LEAK_CHARS_REMOVED_FIELD = pa.field("leak_chars_removed", pa.int64())  # original characters not in the output
DECONTAMINATE_FIELDS = (CONTAMINATED_FIELD, LEAK_NGRAMS_FIELD, LEAK_CHARS_REMOVED_FIELD)


def annotated_schema(input_schema: pa.Schema) -> pa.Schema:
    """The input columns (``text`` cleaned in place), then the decontamination and verdict columns."""
    added = {f.name for f in DECONTAMINATE_FIELDS} | {REJECT_STAGE, REJECT_REASON}
    return pa.schema([f for f in input_schema if f.name not in added] + list(DECONTAMINATE_FIELDS)
                     + list(VERDICT_FIELDS))


# One row per (document, benchmark item) that share at least one indexed n-gram.
CONTAMINATION_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string()),
    pa.field("benchmark", pa.string()),
    pa.field("split", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("matched_ngrams", pa.int64()),       # distinct n-grams of the item found in the document
    pa.field("longest_span_tokens", pa.int64()),  # longest run of consecutive matching n-grams, in tokens
    pa.field("longest_span_text", pa.string()),   # that span in the original text, cut to span_preview_chars
])

# Every dropped document: why, how much matched, and the start of its original text.
REJECTED_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field(REJECT_STAGE, pa.string()),
    pa.field(REJECT_REASON, pa.string()),
    LEAK_NGRAMS_FIELD,
    pa.field("text_chars", pa.int64()),
    pa.field("text_preview", pa.string()),
])

# Per benchmark, what summary() returns (one dict per benchmark, in this order).
SUMMARY_KEYS = ("benchmark", "items", "items_contaminated", "pct_items_contaminated", "docs_touched",
                "pct_docs_touched", "docs_rejected", "chars_removed")
