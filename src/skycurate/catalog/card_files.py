"""Cards of versions in a store: render one for a published (or staged) version and attach it.

The options a card is written with come, first to last, from: what the caller passes (``--license``),
the card the version already has (so regenerating it keeps the license someone chose), the
``card`` section of the config that produced it, and the defaults (license ``unknown``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import ValidationError

from skycurate.catalog.cards import CONFIG_KEY, CardOptions, DataLayout, card_header, publish_options, render_card
from skycurate.catalog.manifest import CARD_FILE, Attachment, Manifest
from skycurate.catalog.refs import DatasetRef
from skycurate.errors import SkycurateError

if TYPE_CHECKING:
    from skycurate.catalog.store import Catalog

PART_PATTERN = "part-*.parquet"
_PART = re.compile(r"^part-\d{5,}\.parquet\Z")


def version_layout(manifest: Manifest, location: str) -> DataLayout:
    """A version folder's layout: its Parquet parts, by the ``part-*.parquet`` glob when that names exactly them."""
    files = [f.path for f in manifest.files]
    pattern = PART_PATTERN if all(_PART.match(f) for f in files) else None
    return DataLayout(format="parquet", files=files, pattern=pattern, location=location)


def card_options(catalog: Catalog, ref: DatasetRef, manifest: Manifest, license: str | None = None,
                 tags: list[str] | None = None) -> CardOptions:
    """The options to (re)write ``ref``'s card with (see the module docstring for the order)."""
    existing: dict[str, Any] = {}
    if CARD_FILE in {a.path for a in manifest.attachments}:
        existing = card_header(catalog.attachment(ref, CARD_FILE).decode("utf-8", "replace"))
    section = manifest.producer.config.get(CONFIG_KEY)
    configured = section if isinstance(section, dict) else {}
    old_tags = [t for t in existing.get("tags") or configured.get("tags") or [] if t != "skycurate"]
    try:
        return CardOptions(license=license or existing.get("license") or configured.get("license"),
                           tags=list(tags) if tags else old_tags, pretty_name=existing.get("pretty_name"))
    except ValidationError as e:
        raise SkycurateError(e.errors()[0]["msg"].removeprefix("Value error, ")) from None


def version_card(catalog: Catalog, ref: str | DatasetRef, license: str | None = None,
                 tags: list[str] | None = None) -> str:
    """The card of a published version."""
    ref = catalog.resolve(ref)
    manifest = catalog.manifest(ref)
    options = card_options(catalog, ref, manifest, license, tags)
    return render_card(manifest, catalog.arrow_schema(ref), version_layout(manifest, ref.uri), options,
                       catalog.parent_nodes(manifest.parents))


def write_version_card(catalog: Catalog, ref: str | DatasetRef, license: str | None = None,
                       tags: list[str] | None = None) -> Attachment:
    """Render ``ref``'s card and attach it as ``README.md`` (replacing an older card)."""
    ref = catalog.resolve(ref)
    return catalog.attach(ref, CARD_FILE, version_card(catalog, ref, license, tags).encode(), replace=True)


def render_staged_card(catalog: Catalog, manifest: Manifest, schema: pa.Schema, options: CardOptions) -> str:
    """The card of a version being published (its manifest built, not yet committed)."""
    location = DatasetRef(store=catalog.url, name=manifest.name, version=manifest.version).uri
    return render_card(manifest, schema, version_layout(manifest, location), options,
                       catalog.parent_nodes(manifest.parents))


def ensure_card(catalog: Catalog, ref: DatasetRef, flow_config: dict[str, Any] | None) -> bool:
    """Attach a card to ``ref`` if ``flow_config`` asks for cards and it has none yet; whether it did.

    Publishing writes cards itself; this covers a version a cached task returned, published by an
    earlier run before cards were turned on."""
    options = publish_options(flow_config or {})
    if options is None or CARD_FILE in {a.path for a in catalog.manifest(ref).attachments}:
        return False
    write_version_card(catalog, ref, options.license, options.tags)
    return True
