"""Dataset cards: the ``README.md`` that lets a version folder (or an export of it) be read by
``datasets.load_dataset(folder)`` and uploaded to a Hugging Face hub as it is.

A card is derived from the manifest and nothing else a reader could not check: its YAML header
names the data files (so ``load_dataset`` reads only the Parquet parts, never the manifest or the
attachments next to them), their features (from the Arrow schema), the split's row count (which
``load_dataset`` verifies), the size category and the license; its body tells a person what the
version is, how it was made (funnel, lineage, the redacted config) and how to load it.

This module renders text only; writing a card into a version is ``Catalog.attach`` (see
``catalog.card_files``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import yaml
from pydantic import BaseModel, Field, field_validator

from skycurate.catalog.hf_features import hf_features
from skycurate.catalog.manifest import CARD_FILE, Manifest
from skycurate.redact import redact, redact_obj

if TYPE_CHECKING:
    from skycurate.catalog.store import LineageNode

#: Hugging Face's license id for "terms not known": skycurate cannot know the terms of what it
#: curated (crawled pages, repositories, a teacher model's outputs), so it never guesses one.
DEFAULT_LICENSE = "unknown"
#: the flow-config section (``FlowConfig.card``) that asks for cards at publish time
CONFIG_KEY = "card"
SPLIT = "train"
_LICENSE_RE = re.compile(r"^[a-z0-9][a-z0-9.+_-]{0,63}\Z")
_SIZE_LABELS = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B",
                "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif", ".webp")
_HANDLED_STATS = {"funnel", "by_reason", "rejected_by_reason", "tokens"}


class CardOptions(BaseModel):
    """What a card says that the manifest does not know."""

    license: str | None = Field(default=None, description="Hugging Face license id (cc-by-4.0, apache-2.0, "
                                                           "other, ...); None = the default, 'unknown'")
    tags: list[str] = Field(default_factory=list, description="hub tags, in addition to 'skycurate'")
    pretty_name: str | None = Field(default=None, description="default: '<name> <version>'")

    @field_validator("license")
    @classmethod
    def _license_id(cls, value: str | None) -> str | None:
        if value is not None and not _LICENSE_RE.match(value):
            raise ValueError(f"license {value!r} is not a Hugging Face license id (e.g. cc-by-4.0, apache-2.0, "
                             "mit, other, unknown)")
        return value


class DataLayout(BaseModel):
    """The data files a card describes, relative to the card, and how they are encoded."""

    format: Literal["parquet", "json"] = "parquet"
    files: list[str]
    pattern: str | None = Field(default=None, description="a glob matching exactly ``files``; else they are listed")
    location: str = Field(description="the folder holding card and files, for the loading snippets")
    exported_from: str | None = Field(default=None, description="the version an export was made from")
    notes: list[str] = Field(default_factory=list, description="encoding notes (base64 columns, ...)")
    num_bytes: int | None = Field(default=None, description="bytes of the files; default the manifest's")


def size_category(num_rows: int) -> str:
    """Hugging Face's ``size_categories`` bucket of a row count (``n<1K``, ``1K<n<10K``, ...)."""
    bucket, limit = 0, 1000
    while num_rows >= limit and bucket < len(_SIZE_LABELS) - 1:
        bucket, limit = bucket + 1, limit * 10
    return _SIZE_LABELS[bucket]


def publish_options(producer_config: dict[str, Any]) -> CardOptions | None:
    """The card options a flow config asks for at publish time (``card: {enabled: true, ...}``), else None."""
    section = producer_config.get(CONFIG_KEY) if isinstance(producer_config, dict) else None
    if not isinstance(section, dict) or not section.get("enabled"):
        return None
    return CardOptions(license=section.get("license"), tags=section.get("tags") or [])


def card_header(text: str) -> dict[str, Any]:
    """The YAML header of a card (between the leading ``---`` lines); {} when it has none."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---\n", 3)
    if end < 0:
        return {}
    return yaml.safe_load(text[4:end + 1]) or {}


def render_card(manifest: Manifest, schema: pa.Schema, layout: DataLayout, options: CardOptions | None = None,
                lineage: Sequence[LineageNode] = ()) -> str:
    """The card of ``manifest``'s data as laid out in ``layout`` (``schema``: the files' Arrow schema)."""
    options = options or CardOptions()
    header = _header(manifest, schema, layout, options)
    body = [_intro(manifest, layout, options), _funnel(manifest.stats), _reasons(manifest.stats),
            _tokens(manifest.stats.get("tokens")), _other_stats(manifest.stats), _lineage(lineage),
            _schema(schema, layout), _figures(manifest, layout), _config(manifest), _how_to_load(layout)]
    text = yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=1000)
    return "---\n" + text + "---\n\n" + "\n".join(part for part in body if part)


def _header(manifest: Manifest, schema: pa.Schema, layout: DataLayout, options: CardOptions) -> dict[str, Any]:
    num_bytes = layout.num_bytes if layout.num_bytes is not None else manifest.num_bytes
    info: dict[str, Any] = {}
    features = hf_features(schema)
    if features is not None:
        info["features"] = features
    info["splits"] = [{"name": SPLIT, "num_bytes": num_bytes, "num_examples": manifest.num_rows}]
    info["download_size"] = num_bytes
    tags = ["skycurate", *(t for t in options.tags if t != "skycurate")]
    return {
        "pretty_name": options.pretty_name or f"{manifest.name} {manifest.version}",
        "license": options.license or DEFAULT_LICENSE,
        "tags": tags,
        "size_categories": [size_category(manifest.num_rows)],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": SPLIT, "path": layout.pattern or list(layout.files)}]}],
        "dataset_info": info,
    }


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _cell(value)


def _fence(text: str, lang: str = "") -> str:
    """A fenced block that the text itself cannot close."""
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def _intro(manifest: Manifest, layout: DataLayout, options: CardOptions) -> str:
    p = manifest.producer
    label = f"{manifest.name}@{manifest.version}"
    kind = "Parquet" if layout.format == "parquet" else "JSON Lines"
    made = f"flow `{p.flow}`" if p.flow else "no flow (published directly)"
    if p.task:
        made += f", task `{p.task}`"
    if p.flow_run_id:
        made += f", run `{p.flow_run_id}`"
    num_bytes = layout.num_bytes if layout.num_bytes is not None else manifest.num_bytes
    rows = [("dataset", f"`{manifest.name}`"), ("version", f"`{manifest.version}`"),
            ("created", manifest.created_at), ("produced by", made), ("code version", f"`{p.code_version}`"),
            ("rows", f"{manifest.num_rows:,}"), ("bytes", f"{num_bytes:,} ({kind})"),
            ("files", f"{len(layout.files)} ({', '.join(f'`{f}`' for f in _shown(layout))})"),
            ("license", options.license or DEFAULT_LICENSE)]
    if layout.exported_from:
        rows.append(("exported from", f"`{layout.exported_from}`"))
    title = options.pretty_name or f"{manifest.name} {manifest.version}"
    export = f" This folder holds an export of it as {kind}." if layout.exported_from else ""
    out = [f"# {title}\n",
           f"Version `{manifest.version}` of the dataset `{manifest.name}`, an immutable, versioned Parquet "
           f"dataset published by skycurate.{export} This card is generated from the version's manifest.\n",
           _table(["", ""], rows)]
    if not options.license or options.license == DEFAULT_LICENSE:
        out.append("No license was chosen for this version: skycurate does not know the terms of the sources it "
                   "curated. Set one with `skycurate datasets card " + label + " --license ID` or the flow "
                   "config's `card.license`.\n")
    out += [f"- {note}\n" for note in layout.notes]
    return "\n".join(out)


def _shown(layout: DataLayout, limit: int = 3) -> list[str]:
    if layout.pattern:
        return [layout.pattern]
    return layout.files[:limit] + (["..."] if len(layout.files) > limit else [])


def _funnel(stats: dict[str, Any]) -> str:
    funnel = stats.get("funnel")
    if not isinstance(funnel, list) or not funnel:
        return ""
    rows = [(s.get("stage", "?"), _number(s.get("rows_in", "")), _number(s.get("rows_out", "")),
             _number(s.get("rejected", 0)), _number(s.get("quarantined", 0))) for s in funnel if isinstance(s, dict)]
    return "## Funnel\n\nRows into and out of each stage that made this version (`input = kept + rejected + " \
           "quarantined` holds at every stage).\n\n" + _table(["stage", "rows in", "kept", "rejected",
                                                              "quarantined"], rows)


def _reasons(stats: dict[str, Any]) -> str:
    reasons = stats.get("by_reason") or stats.get("rejected_by_reason")
    if not isinstance(reasons, dict) or not reasons:
        return ""
    rows = sorted(reasons.items(), key=lambda kv: (-kv[1] if isinstance(kv[1], (int, float)) else 0, kv[0]))
    return "## Rows removed, by reason\n\n" + _table(["stage:reason", "rows"], [(k, _number(v)) for k, v in rows])


def _tokens(tokens: Any) -> str:
    if tokens is None or isinstance(tokens, bool):
        return ""
    if isinstance(tokens, (int, float)):
        return f"## Tokens\n\n{_number(tokens)} tokens.\n"
    if not isinstance(tokens, dict):
        return ""
    out = [f"## Tokens\n\n{_number(tokens.get('tokens', '?'))} tokens"
           + (f" in {_number(tokens['rows'])} rows" if "rows" in tokens else "")
           + (f", counted with `{tokens['tokenizer']}`" if tokens.get("tokenizer") else "") + ".\n"]
    for key, value in tokens.items():
        if key.startswith("by_") and isinstance(value, dict) and value:
            out.append(_breakdown(key.removeprefix("by_"), value))
    return "\n".join(out)


def _breakdown(what: str, values: dict[str, Any]) -> str:
    """A table of ``{key: number}`` or ``{key: {col: number}}``."""
    if all(isinstance(v, dict) for v in values.values()):
        cols = list(dict.fromkeys(c for v in values.values() for c in v))
        return _table([what, *cols], [(k, *(_number(v.get(c, "")) for c in cols)) for k, v in values.items()])
    return _table([what, "tokens"], [(k, _number(v)) for k, v in values.items()])


def _other_stats(stats: dict[str, Any]) -> str:
    rest = {k: v for k, v in stats.items() if k not in _HANDLED_STATS}
    if not rest:
        return ""
    scalars = [(k, _number(v)) for k, v in rest.items() if isinstance(v, (str, int, float, bool)) or v is None]
    nested = {k: v for k, v in rest.items() if not (isinstance(v, (str, int, float, bool)) or v is None)}
    out = ["## Other statistics\n"]
    if scalars:
        out.append(_table(["statistic", "value"], scalars))
    if nested:
        out.append("<details><summary>" + ", ".join(nested) + "</summary>\n\n"
                   + _fence(json.dumps(nested, indent=2, ensure_ascii=False, default=str), "json") + "\n</details>\n")
    return "\n".join(out)


def _lineage(nodes: Sequence[LineageNode]) -> str:
    if not nodes:
        return ""
    lines: list[str] = []

    def add(node: LineageNode, depth: int) -> None:
        pad = "  " * depth
        if node.missing:
            lines.append(f"{pad}- `{node.label}` (missing from the store)")
        elif node.uri:
            pinned = f"sha256 `{node.sha256[:16]}…`" if node.sha256 else (node.pin or "not pinned")
            lines.append(f"{pad}- `{redact(node.name)}`: `{redact(node.uri)}` ({pinned})")
        else:
            rows = f", {node.num_rows:,} rows" if node.num_rows is not None else ""
            lines.append(f"{pad}- `{node.label}`{rows}")
        for parent in node.parents:
            add(parent, depth + 1)

    for node in nodes:
        add(node, 0)
    return "## Lineage\n\nThe inputs this version was made from, and theirs (dataset versions of the same " \
           "store, or external files pinned by content).\n\n" + "\n".join(lines) + "\n"


def _schema(schema: pa.Schema, layout: DataLayout) -> str:
    rows = [(f"`{f.name}`", f"`{f.type}`", "yes" if f.nullable else "no") for f in schema]
    what = "Arrow schema of the Parquet files" if layout.format == "parquet" else \
        "Arrow types `pyarrow.json` and `datasets` read the JSON values as"
    return f"## Schema\n\n{what}.\n\n" + _table(["column", "type", "nullable"], rows)


def _figures(manifest: Manifest, layout: DataLayout) -> str:
    attached = [a.path for a in manifest.attachments if a.path != CARD_FILE]
    if not attached:
        return ""
    images = [p for p in attached if p.lower().endswith(_IMAGE_SUFFIXES)]
    others = [p for p in attached if p not in images]
    out = ["## Figures and attachments\n"]
    out += [f"![{p}]({p})\n" for p in images]
    if others:
        out.append("".join(f"- [{p}]({p})\n" for p in others))
    if layout.format == "parquet" and not layout.exported_from:
        out.append("Every file of this folder is listed with its sha256 in `_manifest.json`; "
                   f"`skycurate datasets verify {manifest.name}@{manifest.version}` re-checks them.\n")
    return "\n".join(out)


def _config(manifest: Manifest) -> str:
    config = redact_obj(manifest.producer.config)   # already redacted at publish; redacting is idempotent
    if not config:
        return ""
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000)
    return "## Config\n\nThe full config of the run that produced this version, as recorded in its manifest " \
           "(credentials masked).\n\n<details><summary>config</summary>\n\n" + _fence(text, "yaml") + \
           "\n</details>\n"


def _how_to_load(layout: DataLayout) -> str:
    loc = redact(layout.location)
    glob_ = f"{loc}/{layout.pattern}" if layout.pattern else f"{loc}/{layout.files[0]}"
    hf = f'from datasets import load_dataset\n\nds = load_dataset("{loc}", split="{SPLIT}")  # reads this card\n'
    if layout.format == "parquet":
        snippets = [
            ("Hugging Face `datasets`", "python", hf),
            ("pyarrow", "python", "import pyarrow.dataset as pads\n\n"
                                  f'table = pads.dataset("{loc}", format="parquet", exclude_invalid_files=True)'
                                  ".to_table()\n"),
            ("DuckDB", "sql", f"SELECT * FROM read_parquet('{glob_}');\n"),
            ("Spark", "python", f'df = spark.read.parquet("{glob_}")\n'),
        ]
        caveat = (f"Point Parquet readers at the `{layout.pattern or 'part files'}` (as above) rather than the bare "
                  "folder: readers skip `_manifest.json` and the other `_` files, but not this `README.md`, which "
                  "`pyarrow.parquet.read_table(folder)` and `spark.read.parquet(folder)` fail on.\n")
    else:
        snippets = [
            ("Hugging Face `datasets`", "python", hf),
            ("pandas", "python", "import glob\nimport pandas as pd\n\n"
                                 f'files = sorted(glob.glob("{glob_}"))\n'
                                 "df = pd.concat(pd.read_json(f, lines=True) for f in files)\n"),
            ("DuckDB", "sql", f"SELECT * FROM read_json_auto('{glob_}');\n"),
            ("Spark", "python", f'df = spark.read.json("{glob_}")\n'),
        ]
        caveat = ""
    out = ["## How to load\n"]
    for title, lang, code in snippets:
        out.append(f"{title}:\n\n" + _fence(code, lang))
    if caveat:
        out.append(caveat)
    return "\n".join(out)
