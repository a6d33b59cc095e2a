"""Map the rows of public prompt sets to the canonical CoT prompt columns.

Public prompt sets come in their own layouts (GSM8K's ``#### N`` answers, MATH's ``\\boxed{}``
solutions, MMLU/ARC choices with an index or key, MMBench-style option columns ``A``..``D``).
Mapping them here, row by row and without Spark or I/O, keeps ``prompts.check_batch`` one path:
it only ever sees ``id, question, reference_answer, answer_type`` and the optional columns.

A row whose answer cannot be extracted gets ``reference_answer`` None, so the checker
quarantines it as ``missing_reference``; only a file whose layout cannot be told is an error.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Iterable
from typing import Any

from skycurate.errors import ConfigError
from skycurate.schemas.cot_prompts import LAYOUTS, PromptFields

CANONICAL_KEYS = ("id", "question", "reference_answer", "answer_type", "images", "domain", "source",
                  "difficulty", "s_v", "s_t", "s_i", "lang", "explanation")
ID_COLUMNS = ("id", "idx", "index", "unique_id", "problem_id")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_LISTED_COLUMNS = 20

_NUMBER = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_LETTER_SEPARATORS = re.compile(r"[\s,;/|&、，()]+")
_MATH = re.compile(r"\\|[=+*/^<>√π]|\bsqrt\b|\bpi\b|\d\s*-|-\s*\d|^-\s*[a-zA-Z]|[(\[]\s*-?\d")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


# ------------------------------------------------------------------------------ layout detection


def _listed(columns: Collection[str]) -> str:
    """The file's columns, sorted and capped, so an error stays one readable line."""
    names = sorted(str(c) for c in columns)
    more = f", ... (+{len(names) - MAX_LISTED_COLUMNS} more)" if len(names) > MAX_LISTED_COLUMNS else ""
    return "[" + ", ".join(names[:MAX_LISTED_COLUMNS]) + more + "]"


def _needs(layout: str, fields: PromptFields) -> list[tuple[str, tuple[str, ...]]]:
    """(field, columns any of which holds it) that ``layout`` cannot do without."""
    q = (fields.question,) if fields.question else ("problem",) if layout == "math" else ("question",)
    a = (fields.answer,) if fields.answer else {
        "skycurate": ("reference_answer",), "math": ("answer", "solution"), "mcq": ("answer", "answerKey"),
    }.get(layout, ("answer",))
    needs = [("question", q), ("answer", a)]
    if layout == "mcq":
        needs.append(("choices", (fields.choices or "choices",)))
    return needs


def _check_overrides(columns: set[str], fields: PromptFields, where: str) -> None:
    """A mapped question/answer/choices column the file lacks is a typo in the config, not a layout."""
    for name in ("question", "answer", "choices"):
        col = getattr(fields, name)
        if col and col not in columns:
            raise ConfigError(f"prompts {where}: fields.{name} is '{col}' but the file has no such field "
                              f"(it has {_listed(columns)}); fix fields.{name} in the distill config")


def _check_layout(layout: str, columns: set[str], fields: PromptFields, where: str) -> str:
    """An explicit layout, once its columns are known to be there."""
    for name, alternatives in _needs(layout, fields):
        if not any(c in columns for c in alternatives):
            raise ConfigError(f"prompts {where}: layout '{layout}' needs {' or '.join(alternatives)} for the "
                              f"{name} but the file has {_listed(columns)}; set fields.{name} in the distill config")
    if layout == "letter_options" and not {"A", "B"} <= columns:
        raise ConfigError(f"prompts {where}: layout 'letter_options' needs option columns A, B (C, D, ...) but "
                          f"the file has {_listed(columns)}; set fields.layout in the distill config")
    return layout


def _auto_layout(columns: set[str], fields: PromptFields) -> str | None:
    """The first auto rule the columns (mapped ones counted under their field names) satisfy."""
    have = columns | {n for n in ("question", "answer", "choices") if getattr(fields, n)}
    if {"question", "reference_answer"} <= have:
        return "skycurate"
    if {"question", "choices"} <= have and have & {"answer", "answerKey"}:
        return "mcq"
    if {"question", "answer", "A", "B"} <= have:
        return "letter_options"
    if "problem" in columns and have & {"solution", "answer"}:
        return "math"
    if {"question", "answer"} <= have:
        return "gsm8k"
    return None


def detect_layout(columns: Collection[str], fields: PromptFields, where: str) -> str:
    """The layout of a file from its columns, so users of public sets need not name it; else one-line ConfigError."""
    cols = {str(c) for c in columns}
    _check_overrides(cols, fields, where)
    if fields.layout != "auto":
        return _check_layout(fields.layout, cols, fields, where)
    layout = _auto_layout(cols, fields)
    if layout is None:
        raise ConfigError(f"prompts {where}: cannot tell the prompt layout from its fields {_listed(cols)}; "
                          "set fields.question and fields.answer (and fields.layout) in the distill config")
    return layout


# ------------------------------------------------------------------------------ values


def _missing(value: Any) -> bool:
    """None, NaN (pandas-read TSVs) and blank strings all mean 'no value'."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


def _text(value: Any) -> str | None:
    """A value as text (7.0 -> '7', as JSON numbers come back), None when missing."""
    if _missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    return str(value)


def _first(row: dict, names: Iterable[str | None]) -> Any:
    """The first present, non-missing value among ``names`` (None entries skipped)."""
    for name in names:
        if name and not _missing(row.get(name)):
            return row[name]
    return None


def _strip_thousands(text: str) -> str:
    """'1,234' -> '1234': GSM8K writes thousands separators the verifier would read as a tuple."""
    return text.replace(",", "") if _THOUSANDS.fullmatch(text) else text


def _is_number(text: str) -> bool:
    """A plain number (sign, thousands separators, decimals); fractions are math."""
    return bool(_NUMBER.fullmatch(text.strip()))


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{}``/``\\fbox{}``: where MATH solutions put the answer."""
    found = None
    for match in _BOX.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found = text[start:i]
                break
    return found.strip() if found is not None and found.strip() else None


def _letter_set(value: Any, allowed: str = LETTERS) -> str | None:
    """'C, A' / 'A,C' / 'ac' -> 'AC': option letters as the mcq verifier compares them; None when not letters."""
    text = _text(value)
    if text is None:
        return None
    letters = _LETTER_SEPARATORS.sub("", text).upper()
    if not letters or any(ch not in allowed for ch in letters):
        return None
    return "".join(sorted(set(letters)))


def infer_answer_type(reference: str | None, has_options: bool) -> str:
    """How to verify an answer that came without a type: letters, numbers, math, else exact match."""
    text = (reference or "").strip()
    if has_options and _letter_set(text) and _LETTER_SEPARATORS.sub("", text).isupper():
        return "mcq"
    if text and _is_number(text):
        return "numeric"
    if _MATH.search(text):
        return "math"
    return "exact"


def _images(row: dict, fields: PromptFields) -> list | None:
    """Images as a list of paths or bytes (one value becomes a list; HF image dicts give their bytes/path)."""
    value = _first(row, (fields.images, "images", "image"))
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "tolist") else [value]
    out = [(v.get("bytes") or v.get("path")) if isinstance(v, dict) else v for v in items]
    out = [v for v in out if not _missing(v)]
    return out or None


# ------------------------------------------------------------------------------ layouts


def _options_text(question: str | None, options: list[tuple[str, str]]) -> str | None:
    """The question followed by 'A. text' lines: how an mcq prompt reaches the teacher."""
    if question is None:
        return None
    return "\n".join([question.strip(), *(f"{label}. {text.strip()}" for label, text in options)])


def _gsm8k(row: dict, fields: PromptFields) -> tuple[str | None, str | None, str | None]:
    """GSM8K: the answer after the last '####'."""
    answer = _text(_first(row, (fields.answer or "answer",)))
    ref = answer.rsplit("####", 1)[-1].strip() if answer is not None else None
    ref = _strip_thousands(ref) if ref else None
    return _text(_first(row, (fields.question or "question",))), ref, "numeric" if ref and _is_number(ref) else None


def _math(row: dict, fields: PromptFields) -> tuple[str | None, str | None, str | None]:
    """MATH/NuminaMath: the answer column, else the last boxed expression of the solution."""
    answer = _text(_first(row, (fields.answer or "answer",)))
    if answer is not None and _BOX.search(answer):
        answer = last_boxed(answer)
    if answer is None:
        answer = last_boxed(_text(row.get("solution")) or "")
    ref = answer.strip() if answer else None
    question = _text(_first(row, (fields.question or "problem",)))
    return question, ref, ("numeric" if _is_number(ref) else "math") if ref else None


def _choices(value: Any) -> tuple[list[Any], list[str] | None]:
    """(option texts, given labels) from a list (MMLU) or {'text': [...], 'label': [...]} (ARC)."""
    if isinstance(value, dict):
        texts, labels = value.get("text"), value.get("label")
        texts = list(texts) if texts is not None and not isinstance(texts, str) else []
        labels = [str(x) for x in labels] if labels is not None and not isinstance(labels, str) else None
        return texts, labels if labels and len(labels) == len(texts) else None
    if value is None or isinstance(value, (str, bytes)):
        return [], None
    return list(value), None


def _mcq_reference(answer: Any, given: list[str] | None, letters: list[str]) -> str | None:
    """The answer as a letter: an index (0-based), a given label (ARC '1' -> 'A' by position) or letters."""
    if _missing(answer) or isinstance(answer, bool):
        return None
    text = _text(answer).strip()
    if given and text in given:
        return letters[given.index(text)]
    if isinstance(answer, float) and not answer.is_integer():
        return None
    if isinstance(answer, (int, float)) or text.isdigit():
        index = int(text)
        return letters[index] if 0 <= index < len(letters) else None
    return _letter_set(text, "".join(letters))


def _mcq(row: dict, fields: PromptFields) -> tuple[str | None, str | None, str | None]:
    """MMLU/ARC: options rendered under the question, the answer as the option letter."""
    texts, given = _choices(row.get(fields.choices or "choices"))
    texts = texts[:len(LETTERS)]
    letter_labels = given if given and all(len(g) == 1 and g.upper() in LETTERS for g in given) else None
    letters = [g.upper() for g in letter_labels] if letter_labels else list(LETTERS[:len(texts)])
    options = [(letters[i], _text(t)) for i, t in enumerate(texts) if _text(t) is not None]
    answer = _first(row, (fields.answer,) if fields.answer else ("answer", "answerKey"))
    ref = _mcq_reference(answer, given, letters) if texts else None
    return _options_text(_text(_first(row, (fields.question or "question",))), options), ref, "mcq"


def _letter_options(row: dict, fields: PromptFields) -> tuple[str | None, str | None, str | None]:
    """MMBench-style TSV: option columns A, B, ...; the answer one or more of their letters."""
    options = [(k, _text(row[k])) for k in sorted(k for k in row if isinstance(k, str) and len(k) == 1 and k in LETTERS)
               if _text(row[k]) is not None]
    question = _text(_first(row, (fields.question or "question",)))
    hint = _text(row.get("hint"))
    if question is not None and hint is not None:
        question = f"{hint.strip()}\n{question.strip()}"
    ref = _letter_set(_first(row, (fields.answer or "answer",)), "".join(k for k, _ in options))
    return _options_text(question, options), ref if options else None, "mcq"


def _skycurate(row: dict, fields: PromptFields) -> tuple[str | None, str | None, str | None]:
    """Already canonical: copied as they are."""
    q = _first(row, (fields.question or "question",))
    question = q if isinstance(q, str) else _text(q)
    return question, _text(_first(row, (fields.answer or "reference_answer",))), None


_LAYOUTS = {"skycurate": _skycurate, "gsm8k": _gsm8k, "math": _math, "mcq": _mcq,
            "letter_options": _letter_options}
assert set(_LAYOUTS) == set(LAYOUTS)


def _answer_type(row: dict, layout: str, fields: PromptFields, ref: str | None, given: str | None) -> str:
    """mcq layouts are always mcq; else the row's type, the configured default, the layout's, or inferred."""
    if layout in ("mcq", "letter_options"):
        return "mcq"
    row_type = _text(_first(row, (fields.answer_type or "answer_type",)))
    if row_type:
        return row_type.strip().lower()
    return fields.default_answer_type or given or infer_answer_type(ref, has_options=False)


def _prompt_id(row: dict, fields: PromptFields, question: str | None, ref: str | None) -> str:
    """The row's id, else one hashed from the content, so reruns and reorderings keep ids stable."""
    rid = _text(_first(row, (fields.id, *ID_COLUMNS)))
    if rid is not None:
        return rid
    return "p-" + hashlib.sha256(f"{question or ''}\x00{ref or ''}".encode()).hexdigest()[:16]


def to_canonical(row: dict, layout: str, fields: PromptFields) -> dict:
    """One raw row as the canonical prompt columns; never raises, so a bad row is quarantined, not fatal."""
    try:
        question, ref, given_type = _LAYOUTS[layout](row, fields)
    except (TypeError, ValueError, AttributeError, IndexError):  # odd value types: the row, not the run
        question, ref, given_type = _text(_first(row, (fields.question, "question", "problem"))), None, None
    out = dict.fromkeys(CANONICAL_KEYS)
    out.update(id=_prompt_id(row, fields, question, ref), question=question, reference_answer=ref,
               answer_type=_answer_type(row, layout, fields, ref, given_type), images=_images(row, fields),
               domain=_text(_first(row, ("domain", "subject", "category"))))
    for name in ("source", "lang"):
        out[name] = _text(row.get(name))
    out["explanation"] = _text(_first(row, (fields.explanation, "explanation", "rationale")))
    for name in ("difficulty", "s_v", "s_t", "s_i"):
        out[name] = None if _missing(row.get(name)) else row[name]
    return out


def canonical_rows(rows: Iterable[dict], layout: str, fields: PromptFields) -> list[dict]:
    """Every row mapped, for callers that hold a list (tests, small files)."""
    return [to_canonical(row, layout, fields) for row in rows]
