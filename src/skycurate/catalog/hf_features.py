"""Arrow schema -> the ``dataset_info.features`` list of a Hugging Face dataset card.

``datasets.load_dataset`` casts what it reads to the features a card declares, so they must be
exactly what ``datasets`` itself derives from the Parquet schema. When ``datasets`` is installed its
own conversion is used; otherwise (it is only a test dependency of skycurate) a mirror of it for the
types skycurate publishes, kept equal to the original by tests/test_cards.py.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

_PLAIN = {"null": "null", "bool": "bool", "halffloat": "float16", "float": "float32", "double": "float64",
          "string": "string", "large_string": "large_string", "string_view": "string_view", "binary": "binary",
          "large_binary": "large_binary", "binary_view": "binary_view", "date32[day]": "date32",
          "date64[ms]": "date64"}


def hf_features(schema: pa.Schema) -> list[dict[str, Any]] | None:
    """The card's feature list for ``schema``; None when a column has no Hugging Face equivalent
    (e.g. an Arrow map), in which case the card leaves features out and readers infer them."""
    try:
        import datasets
    except ImportError:
        return _mirror(schema)
    try:
        return datasets.Features.from_arrow_schema(schema)._to_yaml_list()
    except (ValueError, TypeError, NotImplementedError):
        return None


def _mirror(schema: pa.Schema) -> list[dict[str, Any]] | None:
    try:
        return [{"name": f.name, **_feature(f.type)} for f in schema]
    except ValueError:
        return None


def _feature(t: pa.DataType) -> dict[str, Any]:
    if pa.types.is_struct(t):
        return {"struct": [{"name": t.field(i).name, **_feature(t.field(i).type)} for i in range(t.num_fields)]}
    if pa.types.is_fixed_size_list(t):
        return {**_list("list", t.value_type), "length": t.list_size}
    if pa.types.is_list(t):
        return _list("list", t.value_type)
    if pa.types.is_large_list(t):
        return _list("large_list", t.value_type)
    return {"dtype": _dtype(t)}


def _list(kind: str, value_type: pa.DataType) -> dict[str, Any]:
    inner = _feature(value_type)
    if list(inner) == ["dtype"]:
        return {kind: inner["dtype"]}
    if list(inner) == ["struct"]:
        return {kind: inner["struct"]}
    return {kind: inner}


def _dtype(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return _dtype(t.value_type)
    if pa.types.is_integer(t) or str(t) in _PLAIN:
        return _PLAIN.get(str(t), str(t))
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}, tz={t.tz}]" if t.tz else f"timestamp[{t.unit}]"
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return str(t)
    if pa.types.is_decimal(t) and t.bit_width in (128, 256):
        return f"decimal{t.bit_width}({t.precision}, {t.scale})"
    if pa.types.is_fixed_size_binary(t):
        return f"fixed_size_binary[{t.byte_width}]"
    raise ValueError(f"Arrow type {t} has no Hugging Face feature")
