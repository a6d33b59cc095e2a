"""Per-chain quality checks of distilled CoT: annotate (signals), then decide (reason strings).

Each check returns ``None`` (passes) or a reason string ``"<code>: <numbers>"`` whose code is one of
``schemas.cot_select.QUALITY_REASONS`` (``reason_code`` takes it apart). ``annotate_chains`` computes
the signals of a whole table once and derives every row's reasons from them with the same rules,
so a threshold can be re-tuned without recomputing the signals.

- truncated: ``finish_reason`` is one of ``truncated_finish_reasons`` ("length").
- repetitive: the share of token n-grams that already occurred earlier; the longest back-to-back
  repetition (a loop); the most frequent non-trivial line. Tokens are Latin words / digit runs,
  single punctuation marks and single Han characters, so the same rules work for Chinese.
- language_mixed: for an en (zh) chain, the share of Han (Latin-word) units, after math, code and
  LaTeX are removed. A Han character and a Latin word of 2+ letters are one unit each; other
  scripts (kana, Hangul, Cyrillic, Arabic, Thai, ...) are "other" for both.
- bad_format: empty completion; unbalanced ``<think>`` tags; empty reasoning; no final-answer
  marker (``\\boxed{``) after the reasoning.
- overlong_paragraph: a paragraph (blank-line separated, fenced code removed) over N characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skycurate.schemas.cot_select import BAD_FORMAT, LANGUAGE_MIXED, OVERLONG_PARAGRAPH, REPETITIVE, TRUNCATED
from skycurate.schemas.cot_select import QualityCheckConfig
from skycurate.stages.scripts import HAN, HAN_RE

# Repetition tokens: one Han character, a run of other word characters, or one punctuation mark.
TOKEN_RE = re.compile(rf"[{HAN}]|[^\W{HAN}]+|[^\w\s]")
LATIN_WORD_RE = re.compile(r"[A-Za-z\u00C0-\u024F]{2,}")
# Scripts that are neither Latin nor Han: kana, Hangul, Cyrillic, Greek words, Arabic, Hebrew, Thai,
# Devanagari. Kana/Hangul count per character (like Han), alphabetic scripts per word.
OTHER_SCRIPT_RE = re.compile(
    "[\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af]"
    "|[\u0400-\u04ff]{2,}|[\u0600-\u06ff]{2,}|[\u0590-\u05ff]{2,}|[\u0e00-\u0e7f]+|[\u0900-\u097f]+")
# Removed before judging the script mix: code, display and inline math, LaTeX commands, tags.
_MATH_CODE_RE = re.compile(
    r"```.*?(?:```|\Z)"                    # fenced code (an unclosed fence runs to the end)
    r"|`[^`\n]*`"                         # inline code
    r"|\$\$.*?\$\$"                        # display math
    r"|\\\[.*?\\\]|\\\(.*?\\\)"            # \[ ... \]  \( ... \)
    r"|\\begin\{(\w+\*?)\}.*?\\end\{\1\}"  # environments
    r"|(?<!\\)\$[^$\n]+?(?<!\\)\$"         # inline $...$
    r"|\\[A-Za-z]+"                        # a stray LaTeX command
    r"|</?[A-Za-z][\w-]*>",                # tags: <think>, </think>
    re.DOTALL)
_FENCE_RE2 = r"(?s)```.*?(```|$)"          # the same fences, for Arrow's RE2 (vectorised paragraph lengths)
_PARA_SPLIT_RE2 = r"\n[ \t\r\f\v]*\n"
_MIX = np.uint64(0x9E3779B97F4A7C15)       # odd 64-bit multiplier of the rolling n-gram hash


def reason_code(reason: str) -> str:
    """``"repetitive: loop 312 tokens > 100"`` -> ``"repetitive"``."""
    return reason.split(":", 1)[0]


def _fmt(x: float) -> str:
    return f"{x:.2f}"


# --------------------------------------------------------------------------- language


def normalize_lang(lang: str | None) -> str | None:
    """``"zh-CN"`` / ``"zho"`` / ``"cmn_Hans"`` -> ``"zh"``; ``"en_US"`` / ``"eng"`` -> ``"en"``; else None."""
    if not lang:
        return None
    base = re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]
    if base in ("zh", "zho", "chi", "cmn", "yue"):
        return "zh"
    if base in ("en", "eng"):
        return "en"
    return None


def strip_math_code(text: str) -> str:
    """``text`` without code, math and LaTeX (they hold Latin letters in any language)."""
    return _MATH_CODE_RE.sub(" ", text)


@dataclass(frozen=True)
class ScriptCounts:
    han: int     # Han characters
    latin: int   # Latin words of 2+ letters, ignored words excluded
    other: int   # kana/Hangul characters, words of other alphabets


def script_counts(text: str, ignored_words: frozenset[str] = frozenset()) -> ScriptCounts:
    """Letter units of each script in ``text`` with math, code and LaTeX removed."""
    plain = strip_math_code(text)
    latin = sum(1 for w in LATIN_WORD_RE.findall(plain) if w.lower() not in ignored_words)
    return ScriptCounts(han=len(HAN_RE.findall(plain)), latin=latin, other=len(OTHER_SCRIPT_RE.findall(plain)))


def chain_lang(text: str, lang: str | None, cfg: QualityCheckConfig, counts: ScriptCounts | None = None) -> str | None:
    """The language a chain is judged in: its row's lang, else ``cfg.default_lang``, else its dominant script."""
    resolved = normalize_lang(lang) if lang else None
    if resolved is None and not lang and cfg.default_lang:
        resolved = normalize_lang(cfg.default_lang)
    if resolved is None and not lang and not cfg.default_lang:
        c = counts or script_counts(text, frozenset(cfg.ignored_words))
        if c.han + c.latin > 0:
            resolved = "zh" if c.han > c.latin else "en"
    return resolved


def other_script_frac(counts: ScriptCounts, lang: str | None, min_units: int = 1) -> float | None:
    """Share of units not in ``lang``'s script (en: Latin, zh: Han); None for other languages or short texts."""
    total = counts.han + counts.latin + counts.other
    if lang not in ("en", "zh") or total < min_units or total == 0:
        return None
    other = counts.han + counts.other if lang == "en" else counts.latin + counts.other
    return other / total


def _mixed_reason(frac: float | None, lang: str | None, cfg: QualityCheckConfig) -> str | None:
    limit = cfg.max_other_script_frac_en if lang == "en" else cfg.max_other_script_frac_zh
    if frac is None or limit is None or frac <= limit:
        return None
    other = "Han/other-script" if lang == "en" else "Latin/other-script"
    return f"{LANGUAGE_MIXED}: {other} share {_fmt(frac)} > {_fmt(limit)} for {lang}"


def check_language_mixed(text: str, lang: str | None, cfg: QualityCheckConfig) -> str | None:
    """language_mixed when the chain has too much of the other script for its (prompt) language."""
    counts = script_counts(text, frozenset(cfg.ignored_words))
    resolved = chain_lang(text, lang, cfg, counts)
    return _mixed_reason(other_script_frac(counts, resolved, cfg.min_script_units), resolved, cfg)


# --------------------------------------------------------------------------- repetition


def tokens(text: str) -> list[str]:
    """Repetition tokens of ``text`` (lower-cased)."""
    return TOKEN_RE.findall(text.lower())


def ngram_repetition(toks: list[str], n: int) -> tuple[float | None, int]:
    """(share of n-gram positions whose n-gram occurred earlier, longest back-to-back repetition in tokens).

    The repetition: a run of consecutive positions whose n-gram last occurred the same distance d
    earlier is a stretch repeating itself with period d ('a b a b a b', a sentence looping); its
    length in tokens after the first copy is the run length + n - 1. n-grams are 64-bit rolling
    hashes of the tokens' hashes (only equality matters, so per-process str hashing is fine).
    """
    size = len(toks) - n + 1
    if size <= 0:
        return None, 0
    h = np.fromiter(map(hash, toks), dtype=np.int64, count=len(toks)).view(np.uint64)
    key = h[:size].copy()
    for j in range(1, n):
        key = key * _MIX + h[j:j + size]  # uint64 arithmetic wraps around
    order = np.argsort(key, kind="stable")           # equal keys stay in position order
    ordered = key[order]
    same_as_prev = np.zeros(size, dtype=bool)
    same_as_prev[1:] = ordered[1:] == ordered[:-1]
    dup_frac = float(same_as_prev.sum()) / size
    if not same_as_prev.any():
        return dup_frac, 0
    dist = np.zeros(size, dtype=np.int64)             # per position: distance to the previous occurrence
    dist[order[same_as_prev]] = order[same_as_prev] - order[np.flatnonzero(same_as_prev) - 1]
    # longest run of equal, non-zero distances
    change = np.ones(size, dtype=bool)
    change[1:] = dist[1:] != dist[:-1]
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, size))
    lengths = lengths[dist[starts] > 0]
    loop = int(lengths.max()) + n - 1 if lengths.size else 0
    return dup_frac, loop


def max_line_repeats(text: str, min_chars: int) -> int:
    """Occurrences of the most frequent line of at least ``min_chars`` characters (stripped); 0 if none."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        s = line.strip()
        if len(s) >= min_chars:
            counts[s] = counts.get(s, 0) + 1
    return max(counts.values(), default=0)


def _repetitive_reason(dup: float | None, n_ngrams: int, loop: int, lines: int, cfg: QualityCheckConfig) -> str | None:
    if cfg.max_loop_tokens is not None and loop > cfg.max_loop_tokens:
        return f"{REPETITIVE}: a stretch repeats back-to-back for {loop} tokens > {cfg.max_loop_tokens}"
    if cfg.max_line_repeats is not None and lines > cfg.max_line_repeats:
        return f"{REPETITIVE}: one line occurs {lines} times > {cfg.max_line_repeats}"
    if (cfg.max_dup_ngram_frac is not None and dup is not None and n_ngrams >= cfg.min_ngrams
            and dup > cfg.max_dup_ngram_frac):
        return f"{REPETITIVE}: duplicated {cfg.ngram_n}-gram share {_fmt(dup)} > {_fmt(cfg.max_dup_ngram_frac)}"
    return None


def repetition_signals(text: str, cfg: QualityCheckConfig) -> tuple[float | None, int, int, int]:
    """(dup n-gram share or None below ``min_ngrams``, loop tokens, max line repeats, number of n-grams)."""
    toks = tokens(text)
    dup, loop = ngram_repetition(toks, cfg.ngram_n)
    n_ngrams = max(0, len(toks) - cfg.ngram_n + 1)
    if n_ngrams < cfg.min_ngrams:
        dup = None
    return dup, loop, max_line_repeats(text, cfg.min_line_chars), n_ngrams


def check_repetitive(text: str, cfg: QualityCheckConfig) -> str | None:
    """repetitive: a loop, a line repeated too often, or too many duplicated n-grams."""
    dup, loop, lines, n_ngrams = repetition_signals(text, cfg)
    return _repetitive_reason(dup, n_ngrams, loop, lines, cfg)


# --------------------------------------------------------------------------- format


def check_format(text: str, cfg: QualityCheckConfig) -> str | None:
    """bad_format: empty, unbalanced think tags, empty reasoning, or no final-answer marker."""
    if not text.strip():
        return f"{BAD_FORMAT}: empty completion"
    o, c = cfg.think_open, cfg.think_close
    opens, closes = text.count(o), text.count(c)
    if opens > 1 or closes > 1:
        return f"{BAD_FORMAT}: unbalanced think tags ({opens} {o}, {closes} {c})"
    if opens == 1 and (closes == 0 or text.index(c) < text.index(o)):
        return f"{BAD_FORMAT}: unbalanced think tags ({o} without a following {c})"
    if opens == 0 and closes == 1 and not cfg.allow_implicit_open:
        return f"{BAD_FORMAT}: unbalanced think tags ({c} without {o})"
    if closes == 0 and cfg.require_think:
        return f"{BAD_FORMAT}: no reasoning part (no {c})"
    if closes == 1:
        reasoning = text[text.index(o) + len(o) if opens else 0:text.index(c)]
        if len(reasoning.strip()) < max(1, cfg.min_reasoning_chars):
            return f"{BAD_FORMAT}: empty reasoning"
        answer = text[text.index(c) + len(c):]
    else:
        answer = text
    if cfg.answer_pattern is not None and not re.search(cfg.answer_pattern, answer):
        return f"{BAD_FORMAT}: no final answer matching {cfg.answer_pattern!r}" + (" after the reasoning" if closes else "")
    return None


# --------------------------------------------------------------------------- paragraphs, truncation


def max_paragraph_chars(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Characters of each text's longest paragraph (blank-line separated, fenced code removed); vectorised."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.fill_null(texts.cast(pa.string()), "")
    plain = pc.replace_substring_regex(texts, _FENCE_RE2, "\n\n")
    paras = pc.split_pattern_regex(plain, _PARA_SPLIT_RE2)
    lengths = pc.utf8_length(pc.utf8_trim_whitespace(pc.list_flatten(paras)))
    parents = pc.list_parent_indices(paras)
    grouped = pa.table({"row": parents, "len": lengths}).group_by("row").aggregate([("len", "max")])
    out = np.zeros(len(texts), dtype=np.int64)
    out[grouped["row"].to_numpy()] = grouped["len_max"].to_numpy()
    return pa.array(out, pa.int32())


def _paragraph_limit(lang: str | None, cfg: QualityCheckConfig) -> int | None:
    if lang == "zh" and cfg.max_paragraph_chars_zh is not None:
        return cfg.max_paragraph_chars_zh
    return cfg.max_paragraph_chars


def _paragraph_reason(longest: int, lang: str | None, cfg: QualityCheckConfig) -> str | None:
    limit = _paragraph_limit(lang, cfg)
    if limit is None or longest <= limit:
        return None
    return f"{OVERLONG_PARAGRAPH}: a paragraph of {longest} chars > {limit}"


def check_overlong_paragraph(text: str, lang: str | None, cfg: QualityCheckConfig) -> str | None:
    """overlong_paragraph: a paragraph longer than the (zh or other) limit."""
    resolved = chain_lang(text, lang, cfg)
    return _paragraph_reason(int(max_paragraph_chars(pa.array([text], pa.string()))[0].as_py()), resolved, cfg)


def check_truncated(finish_reason: str | None, cfg: QualityCheckConfig) -> str | None:
    """truncated: the engine stopped at max_tokens."""
    if finish_reason is not None and finish_reason in cfg.truncated_finish_reasons:
        return f"{TRUNCATED}: finish_reason {finish_reason!r}"
    return None


def truncated_mask(finish_reasons: pa.Array | pa.ChunkedArray, cfg: QualityCheckConfig) -> np.ndarray:
    """Vectorised ``check_truncated``: a bool per row."""
    if not cfg.truncated_finish_reasons:
        return np.zeros(len(finish_reasons), dtype=bool)
    hit = pc.is_in(finish_reasons.cast(pa.string()), value_set=pa.array(cfg.truncated_finish_reasons, pa.string()))
    return np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)


# --------------------------------------------------------------------------- all checks


def chain_checks(text: str | None, finish_reason: str | None, lang: str | None, cfg: QualityCheckConfig) -> list[str]:
    """Every failed check's reason, in check order: truncated, bad_format, repetitive, language_mixed,
    overlong_paragraph."""
    text = text or ""
    checks = [check_truncated(finish_reason, cfg), check_format(text, cfg), check_repetitive(text, cfg),
              check_language_mixed(text, lang, cfg), check_overlong_paragraph(text, lang, cfg)]
    return [r for r in checks if r is not None]


@dataclass
class ChainAnnotations:
    """Signals of each row (columns of ``schemas.cot_select.SIGNAL_FIELDS``) and its reasons."""

    columns: dict[str, pa.Array]
    reasons: list[list[str]]   # per row, every failed check's reason string, in check order


def annotate_chains(completions: pa.Array | pa.ChunkedArray, finish_reasons: pa.Array | pa.ChunkedArray,
                    langs: list[str | None] | None, cfg: QualityCheckConfig) -> ChainAnnotations:
    """Signals and reasons of every chain; truncation and paragraph lengths vectorised, the rest per text."""
    n = len(completions)
    texts = [t or "" for t in completions.to_pylist()]
    langs = langs if langs is not None else [None] * n
    finish = finish_reasons.cast(pa.string()).to_pylist()
    truncated = truncated_mask(finish_reasons, cfg)
    longest = max_paragraph_chars(completions).to_pylist()
    ignored = frozenset(cfg.ignored_words)
    dups, loops, lines, mixes, reasons = [], [], [], [], []
    for i, text in enumerate(texts):
        dup, loop, line_rep, n_ngrams = repetition_signals(text, cfg)
        counts = script_counts(text, ignored)
        lang = chain_lang(text, langs[i], cfg, counts)
        mix = other_script_frac(counts, lang, cfg.min_script_units)
        row = [check_truncated(finish[i], cfg) if truncated[i] else None,
               check_format(text, cfg),
               _repetitive_reason(dup, n_ngrams, loop, line_rep, cfg),
               _mixed_reason(mix, lang, cfg),
               _paragraph_reason(longest[i], lang, cfg)]
        dups.append(dup)
        loops.append(loop)
        lines.append(line_rep)
        mixes.append(mix)
        reasons.append([r for r in row if r is not None])
    columns = {
        "dup_ngram_frac": pa.array(dups, pa.float64()),
        "loop_tokens": pa.array(loops, pa.int32()),
        "max_line_repeats": pa.array(lines, pa.int32()),
        "other_script_frac": pa.array(mixes, pa.float64()),
        "max_paragraph_chars": pa.array(longest, pa.int32()),
        "quality_issues": pa.array([[reason_code(r) for r in rs] for rs in reasons], pa.list_(pa.string())),
    }
    return ChainAnnotations(columns=columns, reasons=reasons)
