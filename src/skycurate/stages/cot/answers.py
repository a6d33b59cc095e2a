"""Answer extraction for distilled CoT chains: find a chain's final answer and put it in normal form.

Split from ``verify`` so that the text rules (regexes, ``\\boxed{}`` spans, option letters, numbers)
live apart from the comparison and the worker pool; ``compare`` and ``math_pool`` reuse the
normalisers defined here.

Extraction (``extract_answer``), in order, first in the text outside ``<think>...</think>`` and only
then inside it (``VerifyConfig.think``): ``<answer>...</answer>``, ``\\boxed{...}``/``\\fbox{...}``
(nested braces; the last one by default), GSM8K ``#### 42``, an answer phrase ("the final answer
is", "答案是", ...), for mcq "选 A 和 C"/"choose (B)"; then the fallbacks: for mcq a last line made
only of option letters, for numeric and math the last number of the text. mcq answers are
normalised to sorted unique letters ("C, A" -> "AC"); numeric answers to the text of one number.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

from skycurate.schemas.cot_verify import ANSWER_TYPES, VerifyConfig

__all__ = ["extract_answer"]

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


SHORT_REPLY_WORDS = 5


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
    elif atype == "exact":   # a terse reply is its own answer ("red", "Paris."): VLM benchmarks ask for a word
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) == 1 and len(lines[0].split()) <= SHORT_REPLY_WORDS:
            got = _rstrip_punct(_clean(lines[0]))
            if got:
                return got, "short_reply"
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

