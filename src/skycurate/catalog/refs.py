"""Dataset names, version labels and references (``web/clean@v0003``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from skycurate.errors import InvalidReference

# ``\Z``, not ``$``: ``$`` also matches before a trailing newline, and these names become folder names.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*\Z")
VERSION_RE = re.compile(r"^v(\d{4,})\Z")
TAG_RE = re.compile(r"^(?!v\d+\Z)[a-z][a-z0-9_.-]{0,63}\Z")   # web/clean@prod (see catalog.retention); not v12
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LATEST = "latest"


def check_name(name: str) -> str:
    """Dataset names are ``namespace/name`` in lower case; they become folder names."""
    if not NAME_RE.match(name or ""):
        raise InvalidReference(
            f"bad dataset name {name!r}: expected 'namespace/name' "
            "(lower-case letters, digits, '_', '-', '.'), e.g. 'web/clean'"
        )
    return name


def version_label(number: int) -> str:
    return f"v{number:04d}"


def version_number(label: str) -> int:
    m = VERSION_RE.match(label)
    if not m:
        raise InvalidReference(f"bad version {label!r}: expected 'vNNNN' (e.g. v0003), 'latest' or a tag")
    return int(m.group(1))


def parse_ref(text: str) -> tuple[str, str]:
    """Split ``ns/name@v0003`` / ``ns/name@latest`` / ``ns/name`` into (name, version-or-latest).

    A bare number after ``@`` (``web/clean@3``) is accepted and normalised to ``v0003``. Spaces around
    the reference are ignored; a control character anywhere (a newline, NUL) is an error.
    """
    if _CONTROL.search(text):
        raise InvalidReference(f"bad dataset reference {text!r}: control characters (newline, NUL...) "
                               "are not allowed")
    name, sep, version = text.strip(" ").partition("@")
    check_name(name)
    if not sep or version in ("", LATEST):
        return name, LATEST
    if version.isascii() and version.isdigit():   # not "²": str.isdigit() takes it, int() does not
        return name, version_label(int(version))
    if TAG_RE.match(version):
        return name, version            # a tag: resolved by the catalog
    version_number(version)
    return name, version


class DatasetRef(BaseModel):
    """A resolved, immutable dataset version in a given store."""

    model_config = ConfigDict(frozen=True)

    store: str
    name: str
    version: str

    @property
    def uri(self) -> str:
        """Folder of the version: what a trainer points a Parquet reader at."""
        return f"{self.store.rstrip('/')}/{self.name}/{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def __str__(self) -> str:
        return self.label
