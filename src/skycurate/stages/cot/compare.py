"""Comparison of an extracted answer with its reference: exact strings, numbers within a tolerance,
sets of option letters, and for ``math`` Math-Verify.

Split from ``verify`` so that the per-type comparison rules stand apart from extraction (``answers``)
and from the worker processes (``math_pool``). Strings that are equal or plain numbers on both sides
are decided here (``_compare_local``); everything else becomes a ``_MathJob`` for the pool, whose
result ``_math_verdict`` turns into a ``Verdict``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

from skycurate.schemas.cot_verify import (
    ANSWER_TYPES,
    MISSING_REFERENCE,
    NO_ANSWER_FOUND,
    TIMEOUT,
    UNKNOWN_ANSWER_TYPE,
    UNPARSEABLE_ANSWER,
    UNPARSEABLE_REFERENCE,
    VERIFIER_ERROR,
    VerifyConfig,
)
from skycurate.stages.cot.answers import (
    _DEFAULT_CFG,
    _boxed_spans,
    _check_type,
    _clean,
    _letters,
    _Num,
    _plain_number,
    _read_number,
    _unbox,
)
from skycurate.stages.cot.math_pool import _get_pool

__all__ = ["Verdict", "compare_answers", "is_equivalent"]

_LATEX_WORD = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|textit|rm|bf)\s*\{([^{}]*)\}$")


def _numbers_equal(a: _Num, b: _Num, cfg: VerifyConfig) -> bool:
    def close(x: float, y: float) -> bool:
        return x == y or math.isclose(x, y, rel_tol=cfg.rel_tol, abs_tol=cfg.abs_tol)

    if a.percent == b.percent:
        return close(a.value, b.value)
    pct, other = (a, b) if a.percent else (b, a)
    candidates = {"fraction": (pct.value / 100,), "ignore": (pct.value,),
                  "either": (pct.value / 100, pct.value)}[cfg.percent]
    return any(close(c, other.value) for c in candidates)


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
