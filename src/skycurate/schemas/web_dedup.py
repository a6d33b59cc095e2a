"""Config and Arrow fields of web near-dedup: MinHash signatures, LSH bands, clusters.

``MinHashConfig`` is part of a published version's manifest: signatures from different
configs (bands, rows, n-gram sizes, seed) must never be mixed in one index, the same way
datasketch warns about mixing hash schemes (docs/architecture.md, traps).
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from skycurate.schemas.config import StrictModel
from skycurate.schemas.web import CLUSTER_FIELD

# Added by the MinHash stage (stages/web/minhash.py). Null bands: the text has no shingle
# after normalisation (empty, only punctuation): such rows are left to exact dedup.
MINHASH_BANDS_FIELD = pa.field("minhash_bands", pa.list_(pa.int64()))
# The full signature (bands x rows values), only when candidate pairs are verified; else null.
MINHASH_SIG_FIELD = pa.field("minhash_sig", pa.list_(pa.int64()))
MINHASH_FIELDS = (MINHASH_BANDS_FIELD, MINHASH_SIG_FIELD)

# Added by near-dedup (stages/web/near_dedup.py), next to the verdict columns.
NEAR_DEDUP_FIELDS = (CLUSTER_FIELD,)

# The near-dedup index published with a version: the kept documents' bands (and signatures),
# so that the next version is deduplicated against this one without recomputing them.
NEAR_DEDUP_INDEX_SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), MINHASH_BANDS_FIELD,
                                     MINHASH_SIG_FIELD])

NEAR_DEDUP_STAGE = "near_dedup"

# name -> (bands, rows, verify_threshold). Implied LSH threshold (1/b)^(1/r): the Jaccard
# similarity at which a pair becomes a candidate with probability ~1/2.
PRESETS: dict[str, tuple[int, int, float | None]] = {
    # LSH at ~0.585 for recall, then the Jaccard estimated from all 150 values must reach 0.7:
    # near-duplicates at >= 0.75 are found, template pages sharing a boilerplate block
    # (<= ~0.6) are not merged (benchmarks/minhash_quality.py).
    "default": (25, 6, 0.7),
    "datatrove": (14, 8, None),   # datatrove's default, ~0.72, LSH only (no signatures stored)
    "strict": (9, 13, None),      # RedPajama-v2's 128-permutation setting for "0.8", ~0.84
    "loose": (20, 5, 0.6),        # ~0.55 and verified at 0.6: heavier rewrites, more candidates
}
Preset = Literal["default", "datatrove", "strict", "loose"]


def _preset(data: dict) -> tuple[int, int, float | None]:
    return PRESETS.get(data.get("preset", "default"), PRESETS["default"])


class MinHashConfig(StrictModel):
    """MinHash LSH near-duplicate detection for English and Chinese web text.

    ``preset`` fills ``bands``, ``rows`` and ``verify_threshold``; any of them given
    explicitly wins (``verify_threshold: null`` turns verification off). A dumped config
    holds the resolved values, so reloading it from a manifest gives the same result.

    Text is normalised before shingling: NFKC, lower case, punctuation and symbols
    removed, whitespace collapsed. Languages in ``char_ngram_langs`` (Chinese: no spaces
    between words) are shingled by characters with whitespace removed; every other text
    by words, where each Han character of mixed text counts as a word.

    Chinese uses character 5-grams: a Chinese word is ~1.5 characters, so a 5-gram spans
    3-4 words like a word 5-gram in English, one edited character changes 5 shingles just
    as one edited English word does (same edit -> Jaccard curve, so the same bands/rows
    fit both languages), and 5 characters are rare enough that unrelated pages do not
    share shingles through common bigrams such as 的是/我们 (2- and 3-grams do).
    """

    preset: Preset = Field(default="default", description="bands x rows (+ verification): " + ", ".join(
        f"{k} = {b}x{r}" + (f" verified at {v}" if v else "") for k, (b, r, v) in PRESETS.items()))
    bands: int = Field(default_factory=lambda d: _preset(d)[0], ge=1, le=512,
                       description="LSH bands (the preset's if unset)")
    rows: int = Field(default_factory=lambda d: _preset(d)[1], ge=1, le=64,
                      description="rows per band (the preset's if unset)")
    verify_threshold: float | None = Field(
        default_factory=lambda d: _preset(d)[2], gt=0.0, le=1.0,
        description="keep a candidate pair only if the Jaccard similarity estimated from the full signatures "
                    "reaches this (stores the signatures); null = every LSH candidate counts")
    verify_all_pairs_up_to: int = Field(
        default=50, ge=1, le=10_000,
        description="when verifying, LSH buckets of up to this many documents compare all their pairs; larger "
                    "buckets link every member to the bucket's smallest id only")
    word_ngram: int = Field(default=5, ge=1, le=64, description="shingle size in words (non-Chinese text)")
    char_ngram: int = Field(default=5, ge=1, le=64, description="shingle size in characters (Chinese text)")
    char_ngram_langs: list[str] = Field(
        default_factory=lambda: ["zh"], description="values of `lang` shingled by characters (no spaces between words)")
    seed: int = Field(default=42, ge=0, lt=2**63, description="seeds token hashing and the permutations")

    @model_validator(mode="after")
    def _check_size(self) -> "MinHashConfig":
        if self.num_perm > 4096:
            raise ValueError(f"bands x rows = {self.num_perm} permutations; at most 4096")
        return self

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    @property
    def threshold(self) -> float:
        """Implied LSH threshold (1/b)^(1/r)."""
        return implied_threshold(self.bands, self.rows)

    @property
    def stores_signature(self) -> bool:
        return self.verify_threshold is not None


def implied_threshold(bands: int, rows: int) -> float:
    """The similarity where the LSH S-curve 1 - (1 - s^r)^b rises through ~1/2."""
    return (1.0 / bands) ** (1.0 / rows)


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Probability that a pair with this Jaccard similarity shares at least one band."""
    return 1.0 - (1.0 - similarity ** rows) ** bands
