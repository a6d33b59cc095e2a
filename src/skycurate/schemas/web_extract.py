"""Config models of the web readers (``connectors/web_readers/``) and HTML extraction (``stages/web/extract.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from skycurate.schemas.config import StrictModel

MB = 1024 * 1024


class ReaderConfig(StrictModel):
    """How input files become ``RAW_DOC_SCHEMA`` batches.

    JSONL and Parquet records carry either raw HTML or already-extracted text: the reader takes
    ``html_field`` when the record has a non-null value there, else ``text_field``.
    """

    batch_size: int = Field(default=256, ge=1, description="rows per Arrow batch")
    max_batch_bytes: int = Field(
        default=64 * MB, ge=1,
        description="also flush a batch once its payloads reach this many bytes (bounds memory with large pages)")
    max_payload_bytes: int = Field(
        default=5 * MB, ge=1,
        description="records with a bigger payload become quarantine rows 'too_large: N bytes > cap'")
    jsonl_html_field: str = "html"
    jsonl_text_field: str = "text"
    jsonl_url_field: str = "url"
    parquet_html_column: str = "html"
    parquet_text_column: str = "text"
    parquet_url_column: str = "url"


Engine = Literal["resiliparse", "trafilatura"]


class ExtractConfig(StrictModel):
    """HTML -> main-content text. The default engine is the one ``benchmarks/extraction.py`` measured best
    (docs/extraction.md): resiliparse is 13-22x faster than trafilatura per core at the same token F1 on our
    hand-labelled EN/ZH pages, and keeps paragraphs as lines far more often."""

    engine: Engine = "resiliparse"
    main_content: bool = Field(default=True, description="drop navigation, headers, footers and other boilerplate")
    min_text_chars: int = Field(
        default=1, ge=0, description="rows whose text (stripped) is shorter are rejected 'empty: N chars < min'")
    keep_title: bool = Field(
        default=False,
        description="also put the page <title> as the first line of text (unless the text already starts with it); "
                    "the title column is filled either way")
