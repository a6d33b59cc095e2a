"""Verification of distilled CoT chains: extract each chain's final answer, compare it with the reference.

``verify_batch`` is the pure per-record stage (``VERIFY`` wraps it for ``mapInArrow``): it reads
``completion``, ``reference_answer`` and ``answer_type`` and adds ``extracted_answer``,
``extract_method``, ``correct``, ``verify_method`` and ``verify_error`` (see
``skycurate.schemas.cot_verify``).

Extraction (``extract_answer``), in order, first in the text outside ``<think>...</think>`` and only
then inside it (``VerifyConfig.think``): ``<answer>...</answer>``, ``\\boxed{...}``/``\\fbox{...}``
(nested braces; the last one by default), GSM8K ``#### 42``, an answer phrase ("the final answer
is", "答案是", ...), for mcq "选 A 和 C"/"choose (B)"; then the fallbacks: for mcq a last line made
only of option letters, for numeric and math the last number of the text. mcq answers are
normalised to sorted unique letters ("C, A" -> "AC"); numeric answers to the text of one number.

Comparison (``is_equivalent``): exact strings, numbers within a tolerance, sets of letters, and for
``math`` Math-Verify (``verify(parse(gold), parse(answer))``, the gold first). Strings that are equal
or plain numbers on both sides are decided here; everything else goes to Math-Verify, which can hang
on adversarial input (sympy), so it runs in worker processes (``MathVerifyPool``) with a timeout per
comparison: a worker that runs past it is killed and replaced, the row gets ``verify_error``
``timeout``, and the rest of the batch goes on. All the Math-Verify comparisons of a batch are
handed to the pool in one call (deduplicated: N samples of one question often agree), which deals
them out to the warm workers in chunks.

Workers are plain ``python -c`` child processes started with ``subprocess`` (not ``fork``, not
``multiprocessing`` spawn, so a caller's ``__main__`` is never re-imported and a script without a
``__main__`` guard still works), talking over ``multiprocessing.connection`` pipes. They stay up
between batches, exit when the parent goes away, and are stopped at exit or by ``shutdown_pool``.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from skycurate.errors import SkycurateError
from skycurate.schemas.cot_verify import (
    ANSWER_TYPE,
    ANSWER_TYPES,
    COMPLETION,
    MISSING_REFERENCE,
    NO_ANSWER_FOUND,
    REFERENCE_ANSWER,
    REQUIRED_COLUMNS,
    STAGE,
    TIMEOUT,
    UNKNOWN_ANSWER_TYPE,
    UNPARSEABLE_ANSWER,
    UNPARSEABLE_REFERENCE,
    VERIFIER_ERROR,
    VERIFY_FIELDS,
    VerifyConfig,
)
from skycurate.stages.base import BatchStage, require_columns, with_columns

__all__ = [
    "VERIFY", "MathVerifyPool", "Verdict", "compare_answers", "extract_answer", "is_equivalent",
    "shutdown_pool", "verify_batch",
]

_DEFAULT_CFG = VerifyConfig()

# =========================================================================== text helpers

_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)  # an unclosed block runs to the end
_THINK_TAG = re.compile(r"</?think>", re.IGNORECASE)
_CLOSE_THINK = "</think>"


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    last = deque(pattern.finditer(text), maxlen=1)
    return last[0] if last else None


def _regions(text: str, cfg: VerifyConfig) -> list[tuple[str, str]]:
    """(text to search, method suffix), in the order they are searched."""
    if cfg.think == "whole_text" or "think>" not in text.lower():
        return [(_THINK_TAG.sub("\n", text), "")]
    outside = _THINK_BLOCK.sub("\n", text)
    stray = outside.lower().rfind(_CLOSE_THINK)  # "...reasoning</think> answer": <think> was in the prompt
    if stray >= 0:
        outside = outside[stray + len(_CLOSE_THINK):]
    regions = [(outside, "")]
    if cfg.think == "prefer_outside":
        regions.append((_THINK_TAG.sub("\n", text), "_in_think"))
    return regions


_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"), ("`", "`"))
_TRAIL_CHARS = " \t\r\n.。,，;；:：!！"
_TRAIL_TOKENS = ("\\qquad", "\\quad", "\\.", "\\,", "\\;", "\\!")


def _rstrip_punct(s: str) -> str:
    """Trailing whitespace, punctuation and LaTeX spacing (a loop, not a regex: linear on long runs)."""
    while True:
        for tok in _TRAIL_TOKENS:
            if s.endswith(tok):
                s = s[:-len(tok)]
                break
        t = s.rstrip(_TRAIL_CHARS)
        if len(t) < len(s) and t.endswith("\\"):  # "5\;." : the backslash went with its punctuation
            t = t[:-1]
        if t == s:
            return t
        s = t


_LATEX_WORD = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|textit|rm|bf)\s*\{([^{}]*)\}$")


def _clean(s: str) -> str:
    """Strip what surrounds an answer: whitespace, $...$, \\(...\\), **bold**, trailing punctuation."""
    prev = None
    s = s.strip()
    while s != prev:
        prev = s
        s = _rstrip_punct(s).strip()
        for a, b in _WRAPPERS:
            if len(s) >= len(a) + len(b) and s.startswith(a) and s.endswith(b):
                s = s[len(a):len(s) - len(b)].strip()
        if s.startswith(("**", "$")):
            s = s.lstrip("*$").strip()
        if s.endswith("**") or (s.endswith("$") and not s.endswith("\\$")):
            s = s.rstrip("*$").strip()
    return s


# ---------------------------------------------------------------- \boxed{...}

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{|\\boxed[ \t]+([^\s${}\\]+)")
_BRACE = re.compile(r"\\.|[{}]", re.DOTALL)


def _closing_braces(text: str) -> dict[int, int]:
    """Position of each '{' -> position of its '}' (escaped \\{ \\} skipped; unclosed ones absent)."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for b in _BRACE.finditer(text):
        tok = b.group()
        if tok == "{":
            stack.append(b.start())
        elif tok == "}" and stack:
            pairs[stack.pop()] = b.start()
    return pairs


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """Every top-level \\boxed{...}/\\fbox{...} as (start, end, content); an unclosed one is skipped.
    One pass over the braces, so a chain with thousands of unclosed boxes stays linear."""
    out: list[tuple[int, int, str]] = []
    if "\\boxed" not in text and "\\fbox" not in text:
        return out
    closing: dict[int, int] | None = None
    pos = 0
    while True:
        m = _BOX_START.search(text, pos)
        if m is None:
            return out
        if m.group(1) is not None:  # "\boxed 5"
            out.append((m.start(), m.end(), m.group(1)))
            pos = m.end()
            continue
        if closing is None:
            closing = _closing_braces(text)
        end = closing.get(m.end() - 1, -1)
        if end < 0:
            pos = m.end()
            continue
        content = text[m.end():end].strip()
        if content:
            out.append((m.start(), end + 1, content))
        pos = end + 1


def _unbox(s: str) -> str:
    """``\\boxed{\\boxed{x}}`` -> ``x``."""
    while True:
        spans = _boxed_spans(s)
        if len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(s.rstrip()):
            s = spans[0][2]
        else:
            return s


# ---------------------------------------------------------------- answer phrases

_LEAD = re.compile(r"^(?:[\s*:：=]|\$(?=\s)|is\b|are\b|was\b|would be\b|will be\b|should be\b|equals?\b"
                   r"|应该是|应为|就是|则是|是|为|為)+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"。|；|\.(?=\s|$)|\n")
_GSM8K = re.compile(r"####[ \t]*([^\n]+)")
_CHOICE = re.compile(r"(?:\b(?:choose|select)\b|选(?!项)择?)[ \t]*[:：]?[ \t]*", re.IGNORECASE)


@lru_cache(maxsize=32)
def _phrase_re(phrases: tuple[str, ...]) -> re.Pattern:
    alts = "|".join(re.escape(p) for p in sorted(set(phrases), key=len, reverse=True))
    # whole words only; a Latin phrase may take a plural "s" ("correct options are A, C")
    return re.compile(rf"(?<![A-Za-z])(?:{alts})(?:(?<=[A-Za-z])s)?(?![A-Za-z])", re.IGNORECASE)


def _after_phrase(text: str, phrases: tuple[str, ...], boxed: str) -> str | None:
    last = _last_match(_phrase_re(phrases), text)
    if last is None:
        return None
    line, _, after = text[last.end():].partition("\n")
    line = _LEAD.sub("", line)
    if not _clean(line):  # "**Final Answer**\n\n42"
        for nxt in after.split("\n")[:4]:
            if nxt.strip():
                line = _LEAD.sub("", nxt)
                break
    spans = _boxed_spans(line)
    if spans:
        return _unbox(spans[-1 if boxed == "last" else 0][2])
    end = _SENTENCE_END.search(line)
    ans = _clean(line[:end.start()] if end else line)
    return ans or None


# ---------------------------------------------------------------- mcq letters

_LETTER_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textit|rm|bf)\s*\{([^{}]*)\}")
_LETTER_NOISE = re.compile(r"\$|\*\*|\\[()\[\]]|['\"`]")
_LETTER_PREFIX = re.compile(
    r"^(?:(?:the\s+)?(?:correct\s+|final\s+)?(?:options?|choices?|answers?)\s*(?:is|are)?|选项|选择|应选|选|答案)"
    r"\s*[:：]?\s*", re.IGNORECASE)
# A token is bare letters ("AC") or letters in brackets ("(A)"); tokens need a separator between them
# (none between two bracketed ones), so a run of letters splits one way only: no backtracking blow-up.
_TOKEN = r"(?:[\(（\[【][ \t]*[A-Z]+[ \t]*[\)）\]】]|[A-Z]+)"
_SEP = (r"(?:[ \t]*(?:,|，|、|;|；|/|&|\+|\band\b|和|及|与|以及)[ \t]*|[ \t]+"
        r"|(?<=[\)）\]】])(?=[\(（\[【]))")
_LETTER_SET = re.compile(rf"{_TOKEN}(?:{_SEP}{_TOKEN})*(?![A-Za-z0-9])")
_SINGLE_LOWER = re.compile(r"[\(（]?([a-z])[\)）]?")


def _letters(raw: str | None, valid: str, whole: bool = False) -> str | None:
    """Option letters at the start of ``raw`` ("B. 3.5 m/s" -> "B", "(A)(C)" -> "AC", "选 A 和 C" -> "AC"),
    sorted and unique; None when it does not start with a set of ``valid`` letters. ``whole``: the
    letters must be all of ``raw``."""
    if not raw:
        return None
    s = raw
    for _ in range(3):
        s = _LETTER_WRAP.sub(r"\1", s)
    s = _LETTER_NOISE.sub("", s).strip()
    s = _LETTER_PREFIX.sub("", s).strip()
    m = _LETTER_SET.match(s)
    if m is None or (whole and _clean(s[m.end():])):
        low = _SINGLE_LOWER.fullmatch(_clean(s))
        if low is None or low.group(1).upper() not in valid:
            return None
        return low.group(1).upper()
    letters = set(re.findall(r"[A-Z]", m.group()))
    if not letters or not letters <= set(valid):
        return None
    return "".join(sorted(letters))


# ---------------------------------------------------------------- numbers

_NUM = re.compile(
    r"(?<![A-Za-z0-9_.])(?P<sign>[-+])?"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?!\d)"
    r"(?:[eE](?P<exp>[-+]?\d+))?"
    r"(?:[ \t]*/[ \t]*(?P<den>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d.]))?"
    r"(?P<pct>[ \t]*%)?")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([-+]?[\d.,]+)\s*\}\s*\{\s*([\d.,]+)\s*\}|\\[dt]?frac(\d)(\d)")
_SCI = re.compile(r"(\d)\s*(?:\\times|\\cdot|×|\*)\s*10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?")
_POW10 = re.compile(r"(?<![\d.])10\s*\^\s*\{\s*([-+]?\d+)\s*\}|(?<![\d.])10\s*\^\s*([-+]?\d+)")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|textrm|mbox|operatorname)\s*\{([^{}]*)\}")
_LATEX_SPACE = re.compile(r"\\[,!;: ]|\\left|\\right|\^\s*\{?\\circ\}?|°")
# The number is part of an expression, not the answer itself: "\sqrt{2}", "2^{10}", "2\pi", "5!", "3 + 4".
# (Units stay fine: "5 \text{ m}^2", "12 \Omega", "3 cm".)
_MATH_CMDS = r"\\(?:pi|sqrt|[dt]?frac|cdot|times|div|log|ln|exp|sin|cos|tan|cot|sec|csc|infty|binom)(?![A-Za-z])"
_EXPR_BEFORE = re.compile(rf"(?:[{{^_]|{_MATH_CMDS})\s*$")
_EXPR_AFTER = re.compile(rf"\s*(?:[\^_!*+/{{]|{_MATH_CMDS})")


class _Num(NamedTuple):
    value: float
    percent: bool


def _numeric_text(s: str) -> str:
    """LaTeX and Unicode number forms -> plain text: \\frac{3}{4} -> 3/4, 3\\times10^{8} -> 3e8, 50\\% -> 50%."""
    s = unicodedata.normalize("NFKC", s).replace("\u2212", "-")
    s = s.replace("{,}", ",").replace("\\%", "%").replace("\\$", " ").replace("$", " ")
    s = _TEXT_CMD.sub(r" \1 ", s)
    s = _LATEX_SPACE.sub("", s)
    s = _FRAC.sub(lambda m: f"{m.group(1) or m.group(3)}/{m.group(2) or m.group(4)}", s)
    s = _SCI.sub(r"\1e\2", s)
    return _POW10.sub(lambda m: f"1e{m.group(1) or m.group(2)}", s)


def _num_value(m: re.Match) -> _Num | None:
    text = m.group("int").replace(",", "")
    if m.group("exp"):
        text += "e" + m.group("exp")
    value = float(text)  # a huge exponent gives inf, never an error
    if m.group("den"):
        den = float(m.group("den").replace(",", ""))
        if den == 0:
            return None
        value /= den
    if m.group("sign") == "-":
        value = -value
    return _Num(value, m.group("pct") is not None)


def _read_number(raw: str | None) -> tuple[_Num, str] | None:
    """The number ``raw`` states: the first number after its last '=' ("x = 12 cm" -> 12); None when it
    has no number or that number is part of an expression (``\\sqrt{2}``, ``2^{10}``, ``2\\pi``)."""
    if not raw:
        return None
    s = _numeric_text(raw)
    s = s.rsplit("=", 1)[-1]
    m = _NUM.search(s)
    if m is None or _EXPR_BEFORE.search(s, 0, m.start()) or _EXPR_AFTER.match(s, m.end()):
        return None
    value = _num_value(m)
    return None if value is None else (value, m.group().replace(" ", "").replace("\t", ""))


def _plain_number(s: str) -> _Num | None:
    """``s`` is a plain number and nothing else ("1,000", "-3/4", "2.5e-3", "50%"), no LaTeX."""
    s = unicodedata.normalize("NFKC", s).replace("\u2212", "-").replace("\\%", "%").replace("\\$", "")
    s = _clean(s)
    m = _NUM.fullmatch(s)
    return _num_value(m) if m else None


def _last_number(text: str) -> str | None:
    last = _last_match(_NUM, _numeric_text(text))
    return None if last is None else last.group().replace(" ", "").replace("\t", "")


def _numbers_equal(a: _Num, b: _Num, cfg: VerifyConfig) -> bool:
    def close(x: float, y: float) -> bool:
        return x == y or math.isclose(x, y, rel_tol=cfg.rel_tol, abs_tol=cfg.abs_tol)

    if a.percent == b.percent:
        return close(a.value, b.value)
    pct, other = (a, b) if a.percent else (b, a)
    candidates = {"fraction": (pct.value / 100,), "ignore": (pct.value,),
                  "either": (pct.value / 100, pct.value)}[cfg.percent]
    return any(close(c, other.value) for c in candidates)


# =========================================================================== extraction


def _check_type(answer_type: str) -> str:
    t = (answer_type or "").strip().lower()
    if t not in ANSWER_TYPES:
        raise ValueError(f"answer_type must be one of {', '.join(ANSWER_TYPES)}, not {answer_type!r}")
    return t


_MAX_CHOICES = 20     # "选 ..." occurrences tried, from the last
_LETTERS_SPAN = 200   # characters after "选" that may hold the letters


def _marked(text: str, atype: str, cfg: VerifyConfig, nested: bool = False) -> Iterator[tuple[str, str]]:
    """(method, raw answer) of every marked answer in ``text``, strongest first."""
    if not nested:
        tag = _answer_tag(text)
        if tag:
            inner = next(_marked(tag, atype, cfg, nested=True), None)
            yield "answer_tag", inner[1] if inner else tag
    spans = _boxed_spans(text)
    if spans:
        i = len(spans) - 1 if cfg.boxed == "last" else 0
        content = _unbox(spans[i][2])
        if atype == "mcq":  # "\boxed{A} and \boxed{C}": every box on the chosen one's line
            lo = text.rfind("\n", 0, spans[i][0]) + 1
            hi = text.find("\n", spans[i][1])
            hi = len(text) if hi < 0 else hi
            same_line = [_letters(_unbox(c), cfg.mcq_letters) for s, e, c in spans if lo <= s and e <= hi]
            if len(same_line) > 1 and all(same_line):
                content = "".join(same_line)
        yield "boxed", content
    gsm = _last_match(_GSM8K, text)
    if gsm is not None:
        yield "gsm8k", gsm.group(1)
    phrase = _after_phrase(text, tuple(cfg.answer_phrases), cfg.boxed)
    if phrase:
        yield "phrase", phrase
    if atype == "mcq":
        for m in reversed(list(_CHOICE.finditer(text))[-_MAX_CHOICES:]):
            end = text.find("\n", m.end(), m.end() + _LETTERS_SPAN)
            got = _letters(text[m.end():m.end() + _LETTERS_SPAN if end < 0 else end], cfg.mcq_letters)
            if got:
                yield "mcq_choice", got
                break


def _answer_tag(text: str) -> str | None:
    """The content of the last non-empty <answer>...</answer> (found with rfind: linear)."""
    low = text.lower()
    end = len(low)
    while True:
        close = low.rfind("</answer>", 0, end)
        if close < 0:
            return None
        start = low.rfind("<answer>", 0, close)
        if start < 0:
            return None
        content = text[start + len("<answer>"):close]
        if content.strip():
            return content
        end = start


def _final(raw: str, atype: str, cfg: VerifyConfig) -> str | None:
    """The answer in the normal form of its type, or None when ``raw`` is not one."""
    if atype == "mcq":
        return _letters(raw, cfg.mcq_letters)
    if atype == "numeric":
        got = _read_number(raw)
        return got[1] if got else None
    return _clean(raw) or None


def _fallback(text: str, atype: str, cfg: VerifyConfig) -> tuple[str, str] | None:
    if atype == "mcq":
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines:
            got = _letters(_clean(lines[-1]), cfg.mcq_letters, whole=True)
            if got:
                return got, "last_line"
    elif atype in ("numeric", "math") and cfg.last_number_fallback:
        got = _last_number(text)
        if got:
            return got, "last_number"
    return None


def extract_answer(text: str | None, answer_type: str, cfg: VerifyConfig | None = None) -> tuple[str | None, str]:
    """The final answer of a chain and how it was found: ``(answer, method)``; ``(None, "none")`` when
    there is none. mcq answers are sorted unique letters ("AC"); numeric answers the text of one number
    ("1,000", "3/4", "50%"). A marked answer (tag, box, ####, phrase) that is not of the type (a box
    holding "\\sqrt{2}" for a numeric question) is returned as it is, and verification calls it
    unparseable; the fallbacks (last line / last number) are used only when nothing is marked."""
    cfg = cfg or _DEFAULT_CFG
    atype = _check_type(answer_type)
    if not text or not text.strip():
        return None, "none"
    for region, suffix in _regions(text, cfg):
        first_raw: tuple[str, str] | None = None
        for method, raw in _marked(region, atype, cfg):
            ans = _final(raw, atype, cfg)
            if ans is not None:
                return ans, method + suffix
            if first_raw is None and _clean(raw):
                first_raw = (_clean(raw), method + suffix)
        if first_raw is not None:
            return first_raw
        got = _fallback(region, atype, cfg)
        if got is not None:
            return got[0], got[1] + suffix
    return None, "none"


# =========================================================================== comparison


class Verdict(NamedTuple):
    """``correct`` is None when no verdict was reached; ``method`` is the comparison used (None when
    none ran); ``error`` one of ``schemas.cot_verify.VERIFY_ERRORS`` or None."""

    correct: bool | None
    method: str | None
    error: str | None


@dataclass(frozen=True)
class _MathJob:
    reference: str
    answer: str


def _reference_text(ref: str | None) -> str | None:
    """A reference that is a worked solution keeps only its answer (last \\boxed{}, or after ####)."""
    if ref is None:
        return None
    spans = _boxed_spans(ref)
    if spans:
        ref = _unbox(spans[-1][2])
    elif "####" in ref:
        ref = ref.rsplit("####", 1)[-1]
    return _clean(ref) or None


def _norm_exact(s: str) -> str:
    s = _clean(unicodedata.normalize("NFKC", s))
    m = _LATEX_WORD.match(s)
    if m:
        s = m.group(1)
    return " ".join(_clean(s).casefold().split())


_MATH_NOISE = re.compile(r"\s+|\\[,!;: ]|\\left|\\right")


def _norm_math(s: str) -> str:
    s = _MATH_NOISE.sub("", _clean(unicodedata.normalize("NFKC", s)))
    return s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


def _compare_local(pred: str | None, ref: str | None, atype: str | None, cfg: VerifyConfig) -> Verdict | _MathJob:
    if atype not in ANSWER_TYPES:
        return Verdict(None, None, UNKNOWN_ANSWER_TYPE)
    ref = _reference_text(ref)
    if ref is None:
        return Verdict(None, None, MISSING_REFERENCE)
    pred = _clean(pred) if pred is not None else None
    if not pred:
        return Verdict(False, None, NO_ANSWER_FOUND)
    if atype == "exact":
        return Verdict(_norm_exact(pred) == _norm_exact(ref), "exact", None)
    if atype == "mcq":
        want = _letters(ref, cfg.mcq_letters, whole=True) or _letters(ref, cfg.mcq_letters)
        if want is None:
            return Verdict(None, "mcq_set", UNPARSEABLE_REFERENCE)
        got = _letters(pred, cfg.mcq_letters)
        if got is None:
            return Verdict(False, "mcq_set", UNPARSEABLE_ANSWER)
        return Verdict(got == want, "mcq_set", None)
    if atype == "numeric":
        want_n = _read_number(ref)
        if want_n is None:
            return Verdict(None, "numeric", UNPARSEABLE_REFERENCE)
        got_n = _read_number(pred)
        if got_n is None:
            return Verdict(False, "numeric", UNPARSEABLE_ANSWER)
        return Verdict(_numbers_equal(got_n[0], want_n[0], cfg), "numeric", None)
    # math: cheap checks first, then Math-Verify
    if _norm_math(pred) == _norm_math(ref):
        return Verdict(True, "exact", None)
    a, b = _plain_number(pred), _plain_number(ref)
    if a is not None and b is not None:
        return Verdict(_numbers_equal(a, b, cfg), "numeric", None)
    return _MathJob(ref, pred)


def _math_verdict(result: tuple) -> Verdict:
    kind = result[0]
    if kind == "ok":
        return Verdict(bool(result[1]), "math_verify", None)
    if kind == UNPARSEABLE_ANSWER:
        return Verdict(False, "math_verify", UNPARSEABLE_ANSWER)
    if kind in (UNPARSEABLE_REFERENCE, TIMEOUT):
        return Verdict(None, "math_verify", kind)
    return Verdict(None, "math_verify", VERIFIER_ERROR)


def compare_answers(pred: str | None, ref: str | None, answer_type: str, cfg: VerifyConfig | None = None) -> Verdict:
    """Compare one extracted answer with one reference (math goes through the worker pool)."""
    cfg = cfg or _DEFAULT_CFG
    atype = _check_type(answer_type)
    got = _compare_local(pred, ref, atype, cfg)
    if isinstance(got, Verdict):
        return got
    (result,) = _get_pool(cfg).compare([(got.reference, got.answer)], cfg.math_verify_timeout_s)
    return _math_verdict(result)


def is_equivalent(pred: str | None, ref: str | None, answer_type: str,
                  cfg: VerifyConfig | None = None) -> tuple[bool | None, str]:
    """``(correct, how)``: ``how`` is the comparison method ("exact", "numeric", "mcq_set",
    "math_verify"), or the error code when there was one ("timeout", "no_answer_found",
    "unparseable_reference", ...). ``correct`` is None when no verdict was reached."""
    v = compare_answers(pred, ref, answer_type, cfg)
    return v.correct, v.error or v.method or ""


# =========================================================================== Math-Verify workers


def _mv_compare(reference: str, answer: str) -> tuple:
    """Runs in a worker: ("ok", bool) or (unparseable_reference,) / (unparseable_answer,)."""
    from math_verify import parse, verify

    def wrap(s: str) -> str:
        s = _clean(s.replace("\\$", ""))
        return s if "$" in s or "\\[" in s or "\\(" in s else f"${s}$"

    # parse() falls back to the raw string when sympy cannot read it: that is "unparseable" here
    # (equal strings were already decided without Math-Verify).
    gold = parse(wrap(reference), parsing_timeout=None)
    if all(isinstance(x, str) for x in gold):
        return (UNPARSEABLE_REFERENCE,)
    pred = parse(wrap(answer), parsing_timeout=None)
    if all(isinstance(x, str) for x in pred):
        return (UNPARSEABLE_ANSWER,)
    return ("ok", bool(verify(gold, pred, timeout_seconds=None)))


def _limit_memory(extra_mb: int) -> None:
    try:
        import resource

        with open("/proc/self/status", encoding="ascii") as f:
            vm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = vm_kb * 1024 + extra_mb * 2**20
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, StopIteration, ValueError):
        pass  # not Linux: no limit


def _worker_main(read_fd: int, write_fd: int, max_memory_mb: int) -> None:
    """A worker process: answer chunks of (key, reference, answer) with (key, result), one at a time."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    parent = os.getppid()

    def watchdog() -> None:  # the parent died (killed task, crash): leave with it
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled": we time out
    _mv_compare("1", "1")  # import sympy and the LaTeX parser before the first timed comparison
    if max_memory_mb:
        _limit_memory(max_memory_mb)
    outbox.send(("ready", os.getpid()))
    while True:
        try:
            chunk = inbox.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for key, reference, answer in chunk:
            try:
                result = _mv_compare(reference, answer)
            except Exception as e:  # noqa: BLE001 - MemoryError, RecursionError, sympy's own errors
                result = (VERIFIER_ERROR, type(e).__name__)
            outbox.send((key, result))


_WORKER_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
                "from skycurate.stages.cot.verify import _worker_main; "
                "_worker_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))")
_START_TIMEOUT_S = 120.0   # a worker not ready after this long is a broken environment
_MAX_START_FAILURES = 3
_CHUNK_MAX = 16            # comparisons handed to a worker at once


def _import_root() -> str:
    return str(Path(__file__).resolve().parents[3])  # .../src, the folder holding skycurate/


class _Worker:
    def __init__(self, max_memory_mb: int | None):
        child_r, parent_w = os.pipe()
        parent_r, child_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOT, json.dumps([_import_root()]), str(child_r), str(child_w),
                 str(max_memory_mb or 0)],
                pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL)  # the caller's stdout may carry data (--json): never write to it
        except BaseException:
            os.close(parent_r)
            os.close(parent_w)
            raise
        finally:
            os.close(child_r)
            os.close(child_w)
        self.to_child = Connection(parent_w, readable=False)
        self.from_child = Connection(parent_r, writable=False)
        self.ready = False
        self.born = time.monotonic()
        self.since = 0.0                 # when the comparison at the head of ``items`` started
        self.items: deque[int] = deque()  # keys sent and not answered, in the order they run

    def stop(self, grace_s: float = 0.0) -> None:
        """Wait up to ``grace_s`` for it to exit (after it was sent None), then kill it."""
        if grace_s > 0:
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.to_child.close()
        self.from_child.close()


class MathVerifyPool:
    """``workers`` long-lived Math-Verify processes; ``compare`` runs a batch of (reference, answer)
    pairs with a timeout per pair. A worker past its timeout is killed and replaced; the pair gets
    ``("timeout",)`` and the others of its chunk go back to the queue."""

    def __init__(self, workers: int = 2, max_memory_mb: int | None = 2048):
        self.size = workers
        self.max_memory_mb = max_memory_mb
        self.pid = os.getpid()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    @property
    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def compare(self, pairs: Sequence[tuple[str, str]], timeout_s: float) -> list[tuple]:
        """One result per pair, in order: ("ok", bool), ("unparseable_reference",),
        ("unparseable_answer",), ("timeout",) or ("verifier_error", why)."""
        if not pairs:
            return []
        with self._lock:
            try:
                return self._run(list(pairs), timeout_s)
            except BaseException:
                self.close()  # a half-done run leaves workers busy: start clean next time
                raise

    def close(self) -> None:
        """Stop the workers: idle ones are asked to exit (all at once), busy ones are killed."""
        workers, self._workers = self._workers, []
        asked = []
        for w in workers:
            idle = w.ready and not w.items and w.proc.poll() is None
            if idle:
                try:
                    w.to_child.send(None)
                except OSError:
                    idle = False
            asked.append(idle)
        for w, idle in zip(workers, asked, strict=True):
            w.stop(grace_s=1.0 if idle else 0.0)

    def _replace(self, w: _Worker) -> None:
        w.stop()
        self._workers[self._workers.index(w)] = _Worker(self.max_memory_mb)

    def _run(self, pairs: list[tuple[str, str]], timeout_s: float) -> list[tuple]:
        results: list[tuple | None] = [None] * len(pairs)
        pending: deque[int] = deque(range(len(pairs)))
        remaining = len(pairs)
        start_failures = 0
        while len(self._workers) < self.size:
            self._workers.append(_Worker(self.max_memory_mb))

        def lost(w: _Worker, why: tuple) -> None:
            nonlocal remaining, start_failures
            if w.items:
                results[w.items.popleft()] = why
                remaining -= 1
                pending.extendleft(reversed(w.items))
                w.items.clear()
            elif not w.ready:
                start_failures += 1
                if start_failures >= _MAX_START_FAILURES:
                    raise SkycurateError(
                        f"math-verify worker processes fail to start ({sys.executable}); is math-verify "
                        f"(with its antlr4 extra) installed in this environment?")
            self._replace(w)

        while remaining:
            now = time.monotonic()
            for w in self._workers:  # hand out work to idle workers
                if not pending:
                    break
                if w.ready and not w.items:
                    k = max(1, min(_CHUNK_MAX, -(-len(pending) // self.size), len(pending)))
                    keys = [pending.popleft() for _ in range(k)]
                    w.items.extend(keys)
                    w.since = now
                    try:
                        w.to_child.send([(key, *pairs[key]) for key in keys])
                    except OSError:
                        pass  # it died; its pipe reports EOF below
            deadlines = [w.since + timeout_s if w.items else w.born + _START_TIMEOUT_S
                         for w in self._workers if w.items or not w.ready]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            by_conn = {id(w.from_child): w for w in self._workers}
            for conn in wait([w.from_child for w in self._workers], wait_s):
                w = by_conn[id(conn)]
                try:
                    while conn.poll():
                        msg = conn.recv()
                        if msg[0] == "ready":
                            w.ready = True
                            start_failures = 0
                            continue
                        key, result = msg
                        if not w.items or w.items[0] != key:  # cannot happen: results come in order
                            raise RuntimeError(f"math-verify worker answered {key}, expected {list(w.items)[:1]}")
                        w.items.popleft()
                        results[key] = result
                        remaining -= 1
                        w.since = time.monotonic()
                except (EOFError, OSError):
                    lost(w, (VERIFIER_ERROR, "worker died"))
            now = time.monotonic()
            for w in list(self._workers):
                if w.items and now - w.since >= timeout_s and not w.from_child.poll():
                    lost(w, (TIMEOUT,))
                elif not w.ready and not w.items and now - w.born >= _START_TIMEOUT_S:
                    lost(w, (VERIFIER_ERROR, "worker did not start"))
        return results  # type: ignore[return-value]


_POOL: MathVerifyPool | None = None
_POOL_LOCK = threading.Lock()


def _get_pool(cfg: VerifyConfig) -> MathVerifyPool:
    global _POOL
    with _POOL_LOCK:
        pool = _POOL
        if pool is not None and pool.pid != os.getpid():
            pool = _POOL = None  # inherited through fork: the parent's workers, not ours to use or stop
        if pool is not None and (pool.size, pool.max_memory_mb) != (cfg.workers, cfg.worker_max_memory_mb):
            pool.close()
            pool = _POOL = None
        if pool is None:
            pool = _POOL = MathVerifyPool(cfg.workers, cfg.worker_max_memory_mb)
        return pool


def shutdown_pool() -> None:
    """Stop this process's Math-Verify workers (they are started again when needed)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


atexit.register(shutdown_pool)


# =========================================================================== the stage


def _as_strings(col: pa.Array | pa.ChunkedArray) -> list[str | None]:
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    return col.to_pylist()


def verify_batch(batch: pa.RecordBatch, cfg: VerifyConfig | None = None) -> pa.RecordBatch:
    """Add ``VERIFY_FIELDS`` to a batch with ``completion``, ``reference_answer`` and ``answer_type``."""
    cfg = cfg or _DEFAULT_CFG
    require_columns(batch, STAGE, REQUIRED_COLUMNS)
    types_col = batch.column(ANSWER_TYPE)
    if not (pa.types.is_string(types_col.type) or pa.types.is_large_string(types_col.type)):
        types_col = types_col.cast(pa.string())
    types_col = pc.utf8_lower(pc.utf8_trim_whitespace(types_col))
    if cfg.default_answer_type is not None:
        blank = pc.fill_null(pc.equal(types_col, ""), True)
        types_col = pc.if_else(blank, pa.scalar(cfg.default_answer_type, pa.string()), types_col)
    types = types_col.to_pylist()
    completions = _as_strings(batch.column(COMPLETION))
    refs = _as_strings(batch.column(REFERENCE_ANSWER))

    n = batch.num_rows
    answers: list[str | None] = [None] * n
    methods: list[str] = ["none"] * n
    verdicts: list[Verdict | None] = [None] * n
    jobs: dict[_MathJob, list[int]] = {}
    for i in range(n):
        atype = types[i]
        if atype in ANSWER_TYPES:
            answers[i], methods[i] = extract_answer(completions[i], atype, cfg)
        got = _compare_local(answers[i], refs[i], atype, cfg)
        if isinstance(got, Verdict):
            verdicts[i] = got
        else:
            jobs.setdefault(got, []).append(i)
    if jobs:  # every Math-Verify comparison of the batch in one call, each distinct pair once
        keys = list(jobs)
        results = _get_pool(cfg).compare([(j.reference, j.answer) for j in keys], cfg.math_verify_timeout_s)
        for job, result in zip(keys, results, strict=True):
            v = _math_verdict(result)
            for i in jobs[job]:
                verdicts[i] = v

    return with_columns(batch, {
        "extracted_answer": pa.array(answers, pa.string()),
        "extract_method": pa.array(methods, pa.string()),
        "correct": pa.array([v.correct for v in verdicts], pa.bool_()),
        "verify_method": pa.array([v.method for v in verdicts], pa.string()),
        "verify_error": pa.array([v.error for v in verdicts], pa.string()),
    })


VERIFY = BatchStage(name=STAGE, fn=verify_batch, requires=REQUIRED_COLUMNS, adds=VERIFY_FIELDS)
