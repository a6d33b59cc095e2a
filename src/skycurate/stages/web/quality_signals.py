"""Web quality, annotate then decide: Gopher quality, Gopher repetition, C4 and FineWeb signals
for English and Chinese, and the verdicts from thresholds over them.

``annotate_quality`` computes the ``SIGNAL_FIELDS`` columns, one pass over each document's lines
(plain ``re``, no spaCy/NLTK). ``quality_verdicts`` maps thresholds to ``reject_stage`` /
``reject_reason`` with vectorised Arrow compute, so thresholds can be re-tuned without recomputing.

Words: a Han character is one word; other words are runs of non-space characters trimmed to their
first and last letter/digit, so a token made only of punctuation or symbols ("(", "=", "->", "。")
is not a word. This fixes the Gopher "words with a letter" rule dropping technical pages (datatrove
counts punctuation tokens as words) and makes the same counts work for Chinese, which has no
spaces and where ``str.isalpha`` is true for every Han character. A document uses the Chinese
rules when its ``lang`` is Chinese or most of its text is Han (``QualitySignalsConfig``); that choice
is stored in ``is_zh`` because it also changes the signals (no mean word length, Chinese stop
words, shorter "short lines", character n-grams).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skycurate.schemas.web_quality import (
    SIGNAL_FIELDS,
    SIGNAL_NAMES,
    QualityFilterConfig,
    QualitySignalsConfig,
)
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE, VERDICT_FIELDS
from skycurate.stages.base import BatchStage, with_columns
from skycurate.stages.scripts import HAN, HAN_RE

# One Han character, or a non-space run trimmed to its first and last letter/digit (not Han).
WORD_RE = re.compile(rf"[{HAN}]|[^\W{HAN}](?:[^\s{HAN}]*[^\W{HAN}])?")
# A word (one per line of "\n" + "\n".join(words) + "\n") that starts with a digit or "_" and has
# only digits, "_" and symbols: no letter. Words start with a letter/digit/_, and Han is a letter.
NO_LETTER_RE = re.compile(r"\n[\d_](?:[^\w\n]|[\d_])*(?=\n)")
ELLIPSIS_RE = re.compile(r"\.{3,}|…+|。{3,}")  # a run counts once: '……' is one Chinese ellipsis
PARA_RE = re.compile(r"\n[^\S\n]*\n")
TERMINAL = frozenset('.!?"”。！？；…」』｡')  # C4: . ! ? or an end quote; Chinese: also ；… 」』
CLOSERS = ")）]】’'》"  # stripped before looking for the terminal mark: "(see above.)"
BULLETS = ("•", "‣", "⁃", "◦", "▪", "▫", "●", "○", "■", "□", "◆", "◇", "►", "▶", "➢", "➤", "✓", "✔", "·",
           "- ", "* ", "+ ", "– ")
ELLIPSIS_ENDS = ("...", "…", "。。。")
_WS = " \t\r\n\u3000"
_DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
_WORD_NGRAMS = (2, 3, 4, *_DUP_NGRAMS)
# Chinese: a word is 1.5-1.75 Han characters (jieba segments the Chinese evaluation pages into words of
# 1.75 characters on average; 1.5 is the ratio every Chinese rule here uses), so a rule about word
# n-grams looks at character n-grams 1.5x as long: a 5-character n-gram is a 3-word phrase, and names
# and terms repeat at that length in any good page.
_HAN_NGRAMS = tuple(int(n * 1.5 + 0.5) for n in _WORD_NGRAMS)  # 3, 5, 6, 8, 9, 11, 12, 14, 15
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the rolling n-gram hash


@dataclass(frozen=True)
class _Params:
    zh_langs: frozenset[str]
    zh_min_han_frac: float
    stop_en: frozenset[str]
    stop_zh: tuple[str, ...]
    short_en: int
    short_zh: int
    min_line_words_en: int
    min_line_words_zh: int
    boiler_re: re.Pattern | None
    bad_re: re.Pattern | None
    bad_han: tuple[str, ...]
    max_chars: int

    @classmethod
    def of(cls, cfg: QualitySignalsConfig) -> "_Params":
        phrases = [p.lower() for p in cfg.c4_boilerplate_phrases if p]
        bad = [w.lower() for w in cfg.bad_words if w]
        bad_latin = [w for w in bad if not HAN_RE.search(w)]
        return cls(
            zh_langs=frozenset(x.lower() for x in cfg.zh_langs),
            zh_min_han_frac=cfg.zh_min_han_frac,
            stop_en=frozenset(w.lower() for w in cfg.stopwords_en),
            stop_zh=tuple(dict.fromkeys(cfg.stopwords_zh)),
            short_en=cfg.short_line_chars,
            short_zh=cfg.short_line_chars_zh,
            min_line_words_en=cfg.c4_min_line_words,
            min_line_words_zh=cfg.c4_min_line_words_zh,
            boiler_re=re.compile("|".join(map(re.escape, phrases))) if phrases else None,
            bad_re=(re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, bad_latin)) + r")(?!\w)")
                    if bad_latin else None),
            bad_han=tuple(w for w in bad if HAN_RE.search(w)),
            max_chars=cfg.max_chars,
        )


def _lang_is_zh(lang: str | None, p: _Params) -> bool:
    if not lang:
        return False
    return lang.replace("_", "-").split("-", 1)[0].lower() in p.zh_langs


def _has_ellipsis(text: str) -> bool:
    return "..." in text or "…" in text or "。。。" in text


def _n_sentences(line: str) -> int:
    """Sentence ends in a line that ends in terminal punctuation: '. ', '! ', '? ', 。！？ and the line end.
    (str.count, not a regex: 5x faster. "e.g. " counts; a decimal point does not.)"""
    n = (line.count(". ") + line.count("! ") + line.count("? ")
         + line.count("。") + line.count("！") + line.count("？"))
    if line[-1] in ".!?\"”'’":
        n += 1
    return max(1, n)


def _frac(num: float, den: float) -> float | None:
    return num / den if den else None


def _ngram_fracs(tokens: list[str], lens: list[int], total: int,
                 sizes: tuple[int, ...] = _WORD_NGRAMS) -> tuple[list[float], list[float]]:
    """Gopher's n-gram repetition over words (a Han character is a word), as fractions of word characters.

    ``sizes`` gives the n actually used for the nine rules (top 2, 3, 4; dup 5..10): the word sizes
    for English, longer character n-grams for Chinese (``_HAN_NGRAMS``) so that a rule covers about
    as much text in both languages.

    top n: characters in all occurrences of the most frequent n-gram (the first one to occur, on ties);
    0 when no n-gram repeats. dup n: characters of the words covered by the *second and later*
    occurrences of repeated n-grams (overlaps counted once), as datatrove counts them: the
    implementation FineWeb validated these thresholds with. (Counting the first occurrence too doubled
    the signal for a phrase said twice and dropped 29% of good English documentation pages.)

    N-grams are 64-bit rolling hashes of the token hashes, grouped by a sort (O(L log L), no
    per-position Python). An n-gram can only repeat where the two (n-1)-grams it contains both repeat,
    so each n sorts only those candidate positions, and stops when there are none.
    """
    size = len(tokens)
    top = [0.0] * 3
    dup = [0.0] * len(_DUP_NGRAMS)
    slot = {n: i for i, n in enumerate(sizes)}  # n -> index in top (0..2) + dup (3..8)
    h = np.fromiter(map(hash, tokens), dtype=np.int64, count=size).view(np.uint64)
    word_lens = np.asarray(lens, dtype=np.int64)
    cum = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(word_lens, out=cum[1:])
    key = h
    repeated: np.ndarray | None = None  # per position: the (n-1)-gram starting there repeats
    for n in range(2, max(sizes) + 1):
        if size < n:
            break
        key = key[:-1] * _MIX + h[n - 1:]  # uint64 arithmetic wraps around
        if repeated is None:
            positions = np.arange(key.size)
        else:
            positions = np.flatnonzero(repeated[:-1] & repeated[1:])
            if positions.size < 2:
                break
        order = np.argsort(key[positions], kind="stable")
        ordered = key[positions][order]
        same = ordered[1:] == ordered[:-1]
        if not same.any():
            break
        in_group = np.zeros(ordered.size, dtype=bool)
        in_group[1:] = same
        in_group[:-1] |= same
        sorted_positions = positions[order]
        repeated = np.zeros(key.size, dtype=bool)
        repeated[sorted_positions[in_group]] = True
        if n not in slot:
            continue
        i = slot[n]
        if i < 3:
            starts = np.flatnonzero(np.concatenate(([True], ~same)))
            runs = np.diff(np.append(starts, ordered.size))
            most = int(runs.max())
            pos = int(sorted_positions[starts[runs == most]].min())  # stable sort: run head = first occurrence
            top[i] = min(1.0, most * int(cum[pos + n] - cum[pos]) / total)
        else:
            # Stable sort: within a run of equal n-grams positions ascend, so all but the run head repeat.
            later = np.zeros(ordered.size, dtype=bool)
            later[1:] = same
            firsts = sorted_positions[later]
            edges = np.bincount(firsts, minlength=size + 1) - np.bincount(firsts + n, minlength=size + 1)
            covered = np.cumsum(edges[:size]) > 0
            dup[i - 3] = int(word_lens[covered].sum()) / total
    return top, dup


def _doc_signals(text: str, lang: str | None, p: _Params) -> tuple[Any, ...]:
    """The values of SIGNAL_FIELDS, in order, for one document."""
    n_chars = len(text)
    if n_chars > p.max_chars:
        text = text[:p.max_chars]
    low = text.lower()

    if _lang_is_zh(lang, p):
        is_zh = True
    else:
        nonspace = len(text) - sum(map(text.count, _WS))
        is_zh = nonspace > 0 and len(HAN_RE.findall(text)) / nonspace >= p.zh_min_han_frac
    short_len = p.short_zh if is_zh else p.short_en
    min_line_words = p.min_line_words_zh if is_zh else p.min_line_words_en
    boiler_re = p.boiler_re

    # One pass over the lines.
    tokens: list[str] = []
    seen: set[str] = set()
    n_lines = n_bullet = n_ell = n_term = n_boiler = n_short = n_sent = 0
    dup_lines = dup_line_chars = line_chars = 0
    for raw in low.split("\n"):
        s = raw.strip()
        if not s:
            continue
        n_lines += 1
        size = len(s)
        line_chars += size
        if size <= short_len:
            n_short += 1  # structure (a table cell, a heading, a code line): never a "duplicated line"
        elif s in seen:
            dup_lines += 1
            dup_line_chars += size
        else:
            seen.add(s)
        if s.startswith(BULLETS):
            n_bullet += 1
        if s.endswith(ELLIPSIS_ENDS):
            n_ell += 1
        toks = WORD_RE.findall(s)
        tokens += toks
        last = s[-1]
        term = last in TERMINAL or (last in CLOSERS and s.rstrip(CLOSERS)[-1:] in TERMINAL)
        n_term += term
        if boiler_re is not None and boiler_re.search(s):
            n_boiler += 1
        elif term and len(toks) >= min_line_words:
            n_sent += _n_sentences(s)

    # Paragraphs.
    seen.clear()
    n_paras = dup_paras = dup_para_chars = para_chars = 0
    for raw in PARA_RE.split(low.strip()):
        s = raw.strip()
        if not s:
            continue
        n_paras += 1
        para_chars += len(s)
        if s in seen:
            dup_paras += 1
            dup_para_chars += len(s)
        else:
            seen.add(s)

    # Words.
    n_words = len(tokens)
    lens = list(map(len, tokens))
    total = sum(lens)
    if is_zh:
        mean_len = None
        stopwords = sum(1 for w in p.stop_zh if w in low)
    else:
        mean_len = _frac(total, n_words)
        stopwords = len(p.stop_en.intersection(tokens))
    n_alpha = n_words - len(NO_LETTER_RE.findall("\n" + "\n".join(tokens) + "\n"))
    if total:
        top, dup = _ngram_fracs(tokens, lens, total, _HAN_NGRAMS if is_zh else _WORD_NGRAMS)
    else:
        top, dup = [None] * 3, [None] * len(_DUP_NGRAMS)

    if p.bad_re is None and not p.bad_han:
        bad = None
    else:
        bad = (len(p.bad_re.findall(low)) if p.bad_re is not None else 0) + sum(low.count(w) for w in p.bad_han)

    return (
        n_chars, n_words, n_lines, is_zh,
        mean_len,
        _frac(text.count("#"), n_words),
        _frac(len(ELLIPSIS_RE.findall(text)) if _has_ellipsis(text) else 0, n_words),
        _frac(n_bullet, n_lines),
        _frac(n_ell, n_lines),
        _frac(n_alpha, n_words),
        stopwords,
        _frac(dup_lines, n_lines),
        _frac(dup_paras, n_paras),
        _frac(dup_line_chars, line_chars),
        _frac(dup_para_chars, para_chars),
        *top,
        *dup,
        "lorem ipsum" in low,
        "{" in text,
        bad,
        n_sent,
        _frac(n_term, n_lines),
        _frac(n_boiler, n_lines),
        _frac(n_short, n_lines),
        _frac(text.count("\n"), n_words),
    )


_NULL_ROW = (None,) * len(SIGNAL_FIELDS)


def _already_rejected(batch: pa.RecordBatch) -> list[bool] | None:
    if REJECT_REASON not in batch.schema.names:
        return None
    return pc.is_valid(batch.column(REJECT_REASON)).to_pylist()


def annotate_quality(batch: pa.RecordBatch, cfg: QualitySignalsConfig) -> pa.RecordBatch:
    """``batch`` plus the SIGNAL_FIELDS columns. Rows already rejected get null signals."""
    p = _Params.of(cfg)
    texts = batch.column("text").to_pylist()
    langs = batch.column("lang").to_pylist()
    done = _already_rejected(batch) or [False] * batch.num_rows
    rows = [_NULL_ROW if skip else _doc_signals(t or "", lang, p) for t, lang, skip in zip(texts, langs, done)]
    columns = list(zip(*rows)) if rows else [()] * len(SIGNAL_FIELDS)
    return with_columns(batch, {f.name: pa.array(list(col), f.type) for f, col in zip(SIGNAL_FIELDS, columns)})


# --------------------------------------------------------------------------- verdicts

# (rule name in the reason, signal column, kind, threshold attribute of the family's en/zh block)
# kind: "min" fires when signal < threshold, "max" when signal > threshold, "flag" when the signal is
# true and the attribute is true. A rule whose threshold is None (or absent for a language) is off.
_RULES: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "gopher_quality": (
        ("n_words", "n_words", "min", "min_words"),
        ("n_words", "n_words", "max", "max_words"),
        ("mean_word_length", "gopher_mean_word_len", "min", "min_mean_word_len"),
        ("mean_word_length", "gopher_mean_word_len", "max", "max_mean_word_len"),
        ("hash_word_ratio", "gopher_hash_word_ratio", "max", "max_hash_word_ratio"),
        ("ellipsis_word_ratio", "gopher_ellipsis_word_ratio", "max", "max_ellipsis_word_ratio"),
        ("bullet_line_frac", "gopher_bullet_line_frac", "max", "max_bullet_line_frac"),
        ("ellipsis_line_frac", "gopher_ellipsis_line_frac", "max", "max_ellipsis_line_frac"),
        ("alpha_word_frac", "gopher_alpha_word_frac", "min", "min_alpha_word_frac"),
        ("stopwords", "gopher_stopwords", "min", "min_stopwords"),
    ),
    "gopher_repetition": (
        ("dup_line_frac", "rep_dup_line_frac", "max", "max_dup_line_frac"),
        ("dup_para_frac", "rep_dup_para_frac", "max", "max_dup_para_frac"),
        ("dup_line_char_frac", "rep_dup_line_char_frac", "max", "max_dup_line_char_frac"),
        ("dup_para_char_frac", "rep_dup_para_char_frac", "max", "max_dup_para_char_frac"),
        *((f"top{n}_char_frac", f"rep_top{n}_char_frac", "max", f"max_top{n}_char_frac") for n in (2, 3, 4)),
        *((f"dup{n}_char_frac", f"rep_dup{n}_char_frac", "max", f"max_dup{n}_char_frac") for n in _DUP_NGRAMS),
    ),
    "c4": (
        ("lorem_ipsum", "c4_lorem_ipsum", "flag", "drop_lorem_ipsum"),
        ("curly_bracket", "c4_curly_bracket", "flag", "drop_curly_bracket"),
        ("bad_words", "c4_bad_words", "max", "max_bad_words"),
        ("boilerplate_line_frac", "c4_boilerplate_line_frac", "max", "max_boilerplate_line_frac"),
        ("n_sentences", "c4_n_sentences", "min", "min_sentences"),
        ("terminal_punct_frac", "c4_terminal_punct_frac", "min", "min_terminal_punct_frac"),
    ),
    "fineweb": (
        ("punct_line_frac", "c4_terminal_punct_frac", "min", "min_punct_line_frac"),
        ("short_line_frac", "fineweb_short_line_frac", "max", "max_short_line_frac"),
        ("dup_line_char_frac", "rep_dup_line_char_frac", "max", "max_dup_line_char_frac"),
        ("newline_per_word", "fineweb_newline_per_word", "max", "max_newline_per_word"),
    ),
}
FAMILIES: tuple[str, ...] = tuple(_RULES)


def _fmt(threshold: float | int) -> str:
    return repr(float(threshold)) if isinstance(threshold, float) else str(threshold)


def _as_text(values: pa.Array) -> pa.Array:
    if pa.types.is_floating(values.type):
        values = pc.round(values, 3)
    return values.cast(pa.string())


def _existing(batch: pa.RecordBatch, name: str) -> pa.Array:
    if name in batch.schema.names:
        return batch.column(name).cast(pa.string())
    return pa.nulls(batch.num_rows, pa.string())


RULES_FAILED = "quality_rules_failed"
RULES_FAILED_FIELD = pa.field(RULES_FAILED, pa.list_(pa.string()))


def _failed_lists(names: list[str], hits: list[np.ndarray], entered: np.ndarray) -> pa.Array:
    """Per row, the names of every rule it fails (null for rows rejected before the filter)."""
    n = entered.size
    if not hits:
        matrix = np.zeros((n, 0), dtype=bool)
    else:
        matrix = np.stack(hits, axis=1)
    rows, cols = np.nonzero(matrix)  # row-major: rules in order within each row
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    values = pa.array(np.asarray(names, dtype=object)[cols] if cols.size else [], pa.string())
    mask = pa.array(~entered)
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


def quality_verdicts(batch: pa.RecordBatch, cfg: QualityFilterConfig) -> pa.RecordBatch:
    """Write ``reject_stage``/``reject_reason``: rows already rejected keep their verdict; otherwise the
    first failing rule (families in ``FAMILIES`` order, rules in ``_RULES`` order) decides.

    ``quality_rules_failed`` lists every rule a row fails, not only the first: the rule ablation
    report (how many documents each rule alone would drop) is an aggregation over it.
    """
    stage = _existing(batch, REJECT_STAGE)
    reason = _existing(batch, REJECT_REASON)
    entered = pc.is_null(reason)
    zh = pc.fill_null(batch.column("is_zh"), False)
    variants = ((pc.invert(zh), "en"), (zh, "zh"))
    names: list[str] = []
    hits: list[np.ndarray] = []
    for family, rules in _RULES.items():
        fam_cfg = getattr(cfg, family)
        if not fam_cfg.enabled:
            continue
        for name, signal, kind, attr in rules:
            values = batch.column(signal)
            rule_hit = None
            for mask, variant in variants:
                threshold = getattr(getattr(fam_cfg, variant), attr, None)
                if threshold is None or threshold is False:
                    continue
                if kind == "flag":
                    hit = values
                elif kind == "min":
                    hit = pc.less(values, threshold)
                else:
                    hit = pc.greater(values, threshold)
                alone = pc.and_(pc.and_(mask, pc.fill_null(hit, False)), entered)
                rule_hit = alone if rule_hit is None else pc.or_(rule_hit, alone)
                fire = pc.and_(alone, pc.is_null(reason))
                if not pc.any(fire).as_py():
                    continue
                if kind == "flag":
                    message: Any = pa.scalar(f"{family}: {name}")
                else:
                    op = "<" if kind == "min" else ">"
                    message = pc.binary_join_element_wise(
                        f"{family}: {name} ", _as_text(values), f" {op} {_fmt(threshold)}", "")
                reason = pc.if_else(fire, message, reason)
                stage = pc.if_else(fire, pa.scalar(family), stage)
            if rule_hit is not None:
                names.append(f"{family}: {name}")
                hits.append(rule_hit.to_numpy(zero_copy_only=False))
    failed = _failed_lists(names, hits, entered.to_numpy(zero_copy_only=False))
    return with_columns(batch, {REJECT_STAGE: stage, REJECT_REASON: reason, RULES_FAILED: failed})


QUALITY_SIGNALS = BatchStage(
    name="quality_signals",
    fn=annotate_quality,
    requires=("text", "lang"),
    adds=SIGNAL_FIELDS,
)

QUALITY_FILTER = BatchStage(
    name="quality_filter",
    fn=quality_verdicts,
    requires=SIGNAL_NAMES,
    adds=(*VERDICT_FIELDS, RULES_FAILED_FIELD),
)
