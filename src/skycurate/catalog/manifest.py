"""The ``_manifest.json`` of a published version (fields fixed by docs/architecture.md)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

MANIFEST_FILE = "_manifest.json"
FORMAT_VERSION = 1
#: the dataset card (``catalog.cards``): the one attachment whose name does not start with ``_``,
#: because Hugging Face ``datasets`` and hubs look for exactly this name
CARD_FILE = "README.md"


class FileEntry(BaseModel):
    path: str  # relative to the version folder
    rows: int
    bytes: int
    sha256: str


class Attachment(BaseModel):
    """A non-data file stored with a version (a chart, a report). Names start with ``_`` so
    Parquet readers pointed at the folder skip them; the one exception is the dataset card
    (``CARD_FILE``), whose name Hugging Face fixes."""

    path: str
    bytes: int
    sha256: str


class Parent(BaseModel):
    """An input of a version: another dataset version, or an external input (``uri``) pinned by
    content (``sha256``) or, where hashing would cost too much, as ``pin`` says (``catalog.pins``)."""

    name: str
    version: str | None = None
    uri: str | None = None
    sha256: str | None = None
    pin: str | None = None

    @property
    def is_dataset(self) -> bool:
        return self.version is not None and self.uri is None


class Producer(BaseModel):
    flow: str | None = None
    flow_run_id: str | None = None
    task: str | None = None
    code_version: str = "unknown"
    config: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    name: str
    version: str
    created_at: str
    num_rows: int
    num_bytes: int
    schema_: dict[str, Any] = Field(alias="schema")
    files: list[FileEntry]
    attachments: list[Attachment] = Field(default_factory=list)
    parents: list[Parent] = Field(default_factory=list)
    producer: Producer = Field(default_factory=Producer)
    stats: dict[str, Any] = Field(default_factory=dict)

    model_config = {"populate_by_name": True}

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        return cls.model_validate_json(text)


def check_attachment_name(name: str) -> str:
    """Attachment names are plain file names starting with ``_``, or the card's ``README.md``."""
    if name != CARD_FILE and (not name.startswith("_") or "/" in name or "\\" in name or name == MANIFEST_FILE):
        raise ValueError(f"attachment name {name!r} must start with '_', have no '/' and not be {MANIFEST_FILE} "
                         f"(or be the card, {CARD_FILE})")
    return name


def _type_json(t: pa.DataType) -> Any:
    """Arrow type as JSON: a string for primitives, nested dicts for list/struct/map."""
    if pa.types.is_struct(t):
        return {"struct": [_field_json(t.field(i)) for i in range(t.num_fields)]}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return {"list": _type_json(t.value_type)}
    if pa.types.is_map(t):
        return {"map": [_type_json(t.key_type), _type_json(t.item_type)]}
    return str(t)


def _field_json(f: pa.Field) -> dict[str, Any]:
    return {"name": f.name, "type": _type_json(f.type), "nullable": f.nullable}


def schema_to_json(schema: pa.Schema) -> dict[str, Any]:
    """Readable, stable JSON for an Arrow schema (pandas/Spark metadata left out)."""
    return {"fields": [_field_json(f) for f in schema]}
