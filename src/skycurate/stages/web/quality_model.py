"""SkyPile-style quality classifier: a fastText model of "would Wikipedia cite this page as a reference?".

Train on pages like those Wikipedia cites (``__label__hq``) against ordinary crawl
(``__label__lq``); score every document with P(hq) into ``quality_score``; keep a threshold
or the top fraction of the corpus (the Spark job turns a fraction into a threshold with a
global quantile, then calls ``quality_threshold_verdicts``).

One normalisation (``normalize_text``) is used at training and at scoring time: NFKC,
lower case, every run of digits as "0", ASCII punctuation split off, and CJK characters
separated by spaces so that fastText, which splits on whitespace, sees Chinese tokens
(single characters; with ``word_ngrams=2`` it also sees character bigrams).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from skycurate.errors import ConfigError, SkycurateError
from skycurate.schemas.web import QUALITY_SCORE_FIELD
from skycurate.schemas.web_annotate import QualityModelConfig
from skycurate.stages.accounting import VERDICT_FIELDS, add_verdicts, below_reason, keep_where_skipped, pending_rows
from skycurate.stages.base import BatchStage, require_columns, with_columns
from skycurate.stages.web.fasttext_models import load_fasttext

STAGE = "quality_classifier"
NORMALIZATION = "nfkc-lower-digits0-punct-cjkchars/v1"  # recorded with the training metrics
DEFAULT_MAX_CHARS = 10_000

_DIGITS = re.compile(r"[0-9]+")
# Runs of CJK ideographs, kana, bopomofo, hangul syllables, CJK punctuation and full-width forms,
# or of ASCII punctuation: each character of a run becomes a token (one match per run, not per
# character: a Chinese page is mostly such characters).
_SPLIT = re.compile(
    r"[\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    r"\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0002fa1f]+|[!-/:-@\[-`{-~]+")


def _spaced(m: re.Match) -> str:
    return " " + " ".join(m.group()) + " "


def normalize_text(text: str | None, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The classifier's view of a document, on one line ('' for null or blank text)."""
    if not text:
        return ""
    text = text[:max_chars]
    if not unicodedata.is_normalized("NFKC", text):  # the check is much cheaper than normalising
        text = unicodedata.normalize("NFKC", text)
    text = text.lower()
    text = _SPLIT.sub(_spaced, _DIGITS.sub("0", text))
    return " ".join(text.split())


# --- training -------------------------------------------------------------------------------

def read_documents(path: str | os.PathLike) -> tuple[list[str], int]:
    """(documents, lines skipped) of a .txt[.gz] (one document a line) or .jsonl[.gz] (field ``text``) file."""
    p = Path(path)
    name = p.name.lower().removesuffix(".gz")
    if not name.endswith((".txt", ".jsonl")):
        raise SkycurateError(f"training file {path}: expected .txt, .jsonl or .jsonl.gz")
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    docs, skipped = [], 0
    try:
        with opener(p, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                if name.endswith(".txt"):
                    docs.append(line.strip())
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SkycurateError(f"training file {path}, line {line_no}: invalid JSON ({e.msg})") from None
                text = obj.get("text") if isinstance(obj, dict) else None
                if isinstance(text, str) and text.strip():
                    docs.append(text)
                else:
                    skipped += 1
    except FileNotFoundError:
        raise SkycurateError(f"training file {path} not found") from None
    except UnicodeDecodeError as e:
        raise SkycurateError(f"training file {path} is not UTF-8 (byte {e.start})") from None
    except (OSError, EOFError) as e:
        raise SkycurateError(f"cannot read training file {path}: {getattr(e, 'strerror', None) or e}") from None
    return docs, skipped


def _split(n: int, valid_fraction: float, rng: random.Random) -> tuple[list[int], list[int]]:
    idx = list(range(n))
    rng.shuffle(idx)
    n_valid = round(n * valid_fraction) if valid_fraction > 0 else 0
    if valid_fraction > 0 and n >= 2:
        n_valid = min(max(n_valid, 1), n - 1)
    return idx[n_valid:], idx[:n_valid]


def auroc(scores: list[float], labels: list[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties averaged); None without both classes."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    _, first, counts = np.unique(s[order], return_index=True, return_counts=True)
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based average rank
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(scores: list[float], labels: list[bool], threshold: float = 0.5) -> dict[str, Any]:
    """Precision, recall, F1 and accuracy of ``score >= threshold`` for the positive class, and AUROC."""
    pred = [s >= threshold for s in scores]
    tp = sum(p and y for p, y in zip(pred, labels))
    fp = sum(p and not y for p, y in zip(pred, labels))
    fn = sum(not p and y for p, y in zip(pred, labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "threshold": threshold, "n": len(labels), "positives": sum(labels),
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": sum(p == y for p, y in zip(pred, labels)) / len(labels) if labels else 0.0,
        "auroc": auroc(scores, labels),
    }




def _train_in_subprocess(train_path: str, out: str, params: dict[str, Any], quantize: bool) -> str | None:
    """Train in a fresh Python process; returns fastText's error message, if any.

    fastText 0.9.2 initialises only the first tenth of its input matrix when ``thread`` < 10 and
    leaves the rest as whatever ``malloc`` returns. In a fresh process that memory comes zeroed
    from the kernel; in a long-lived one (a second training, a process that ran Spark) it is
    reused garbage, giving "Encountered NaN." or a different model with the same seed. A fresh
    interpreter (not multiprocessing, which would re-import the caller's ``__main__``) per
    training makes results correct and reproducible.
    """
    import subprocess
    import sys

    job = json.dumps({"train_path": train_path, "out": out, "params": params, "quantize": quantize})
    done = subprocess.run([sys.executable, "-m", "skycurate.stages.web.fasttext_train"], input=job,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SkycurateError(f"fastText training process failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["error"]


def train_quality_model(
    positive: list[str | os.PathLike],
    negative: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    epochs: int = 25,
    lr: float = 0.5,
    word_ngrams: int = 2,
    dim: int = 64,
    seed: int = 0,
    valid_fraction: float = 0.1,
    min_count: int = 1,
    bucket: int = 1_000_000,
    threads: int = 1,
    quantize: bool = False,
    max_chars: int = DEFAULT_MAX_CHARS,
    positive_label: str = "hq",
    negative_label: str = "lq",
) -> dict[str, Any]:
    """Train the fastText quality classifier, save it to ``out`` and return its held-out metrics.

    ``positive``: pages like those Wikipedia cites as references; ``negative``: ordinary crawl.
    Blank documents are skipped and exact duplicates (after normalisation) kept once, so the
    held-out set does not repeat training lines. A stratified ``valid_fraction`` of each class
    (chosen by ``seed``) is held out and scored at threshold 0.5 and by AUROC;
    ``threads=1`` makes training reproducible (fastText's parallel SGD is not). ``bucket`` x
    ``dim`` x 4 bytes is the size of the n-gram table (256 MB at the defaults);
    ``quantize`` retrains into a much smaller product-quantised model (save as .ftz).
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise SkycurateError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    started = time.perf_counter()
    classes = {}
    skipped = duplicates = 0
    for label, paths in ((positive_label, positive), (negative_label, negative)):
        docs = []
        for path in paths:
            d, s = read_documents(path)
            docs.extend(d)
            skipped += s
        norm = [normalize_text(d, max_chars) for d in docs]
        skipped += sum(1 for n in norm if not n)
        unique = list(dict.fromkeys(n for n in norm if n))  # a copy in both splits would inflate the metrics
        duplicates += sum(1 for n in norm if n) - len(unique)
        norm = unique
        if not norm:
            which = "positive" if label == positive_label else "negative"
            raise SkycurateError(f"no {which} ({label}) training documents in {', '.join(map(str, paths)) or '(no files)'}")
        classes[label] = norm

    rng = random.Random(seed)
    train_lines, valid = [], []
    for label, docs in classes.items():
        tr, va = _split(len(docs), valid_fraction, rng)
        train_lines.extend(f"__label__{label} {docs[i]}" for i in tr)
        valid.extend((docs[i], label == positive_label) for i in va)
    rng.shuffle(train_lines)

    import fasttext

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="skycurate-quality-") as tmp:
        train_path = os.path.join(tmp, "train.txt")
        with open(train_path, "w", encoding="utf-8") as f:
            f.write("\n".join(train_lines) + "\n")
        params = {"epoch": epochs, "lr": lr, "wordNgrams": word_ngrams, "dim": dim, "seed": seed,
                  "minCount": min_count, "bucket": bucket, "thread": threads}
        error = _train_in_subprocess(train_path, str(out), params, quantize)
        if error is not None:
            raise SkycurateError(f"fastText training failed: {error} (try a lower lr than {lr})")
    model = fasttext.load_model(str(out))

    metrics = None
    if valid:
        scores = predict_positive(model, [d for d, _ in valid], positive_label)
        metrics = classification_metrics(scores, [y for _, y in valid])
    return {
        "model_path": str(out),
        "labels": [f"__label__{positive_label}", f"__label__{negative_label}"],
        "train": {label: sum(1 for line in train_lines if line.startswith(f"__label__{label} ")) for label in classes},
        "valid": {positive_label: sum(y for _, y in valid), negative_label: sum(not y for _, y in valid)},
        "skipped": skipped,
        "duplicates": duplicates,
        "metrics": metrics,
        "params": {"epochs": epochs, "lr": lr, "word_ngrams": word_ngrams, "dim": dim, "seed": seed,
                   "valid_fraction": valid_fraction, "min_count": min_count, "bucket": bucket, "threads": threads,
                   "quantize": quantize, "max_chars": max_chars},
        "normalization": NORMALIZATION,
        "seconds": round(time.perf_counter() - started, 3),
    }


# --- scoring --------------------------------------------------------------------------------

def predict_positive(model: Any, lines: list[str], positive_label: str) -> list[float]:
    """P(positive label) for normalised, non-empty lines, in one batched predict call."""
    if not lines:
        return []
    want = f"__label__{positive_label}"
    labels, probs = model.predict(lines, k=-1)
    out = []
    for labs, ps in zip(labels, probs):
        p = next((float(x) for lab, x in zip(labs, ps) if lab == want), 0.0)
        out.append(min(1.0, max(0.0, p)))
    return out


def quality_model(cfg: QualityModelConfig) -> Any:
    if not cfg.enabled:
        raise ConfigError("quality_model.model_path is not set: the quality classifier stage is disabled")
    model = load_fasttext(cfg.model_path)
    labels = model.get_labels()
    if f"__label__{cfg.positive_label}" not in labels:
        raise ConfigError(f"quality model {cfg.model_path} has labels {', '.join(labels)}; "
                          f"expected __label__{cfg.positive_label}")
    return model


def score_texts(texts: list[str | None], cfg: QualityModelConfig) -> list[float]:
    """P(hq) per text; 0.0 for null or blank text."""
    lines = [normalize_text(t, cfg.max_chars) for t in texts]
    todo = [i for i, line in enumerate(lines) if line]
    scores = [0.0] * len(lines)
    if todo:
        for i, s in zip(todo, predict_positive(quality_model(cfg), [lines[i] for i in todo], cfg.positive_label)):
            scores[i] = s
    return scores


def score_batch(batch: pa.RecordBatch, cfg: QualityModelConfig) -> pa.RecordBatch:
    """Add ``quality_score`` = P(__label__hq). Rows already rejected are not scored (null)."""
    require_columns(batch, "quality_score", ("text",))
    pending = pending_rows(batch)
    texts = batch.column("text").to_pylist()
    scores = score_texts([t if p else None for t, p in zip(texts, pending)], cfg)
    return with_columns(batch, {"quality_score": keep_where_skipped(batch, "quality_score", scores, pending, pa.float64())})


def quality_threshold_verdicts(batch: pa.RecordBatch, threshold: float) -> pa.RecordBatch:
    """Keep ``quality_score >= threshold``; reject_stage "quality_classifier", reason "quality_score 0.12 < 0.50".

    A pending row without a score (should not happen) is rejected as "quality_score missing".
    """
    require_columns(batch, STAGE, ("quality_score",))
    pending = pending_rows(batch)
    reasons = []
    for s, p in zip(batch.column("quality_score").to_pylist(), pending):
        if not p or (s is not None and s >= threshold):
            reasons.append(None)
        else:
            reasons.append("quality_score missing" if s is None else below_reason("quality_score", s, threshold))
    return add_verdicts(batch, STAGE, reasons)


QUALITY_SCORE = BatchStage(name="quality_score", fn=score_batch, requires=("text",), adds=(QUALITY_SCORE_FIELD,))
# Its config is the threshold (a float): a fixed one, or the global quantile for ``top_fraction``.
QUALITY_FILTER = BatchStage(name=STAGE, fn=quality_threshold_verdicts, requires=("quality_score",), adds=VERDICT_FIELDS)
