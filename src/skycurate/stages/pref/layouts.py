"""Map the rows of public preference sets to the canonical pair columns (``schemas/pref.PAIR_SCHEMA``).

Skywork-VL Reward built its ~190K training pairs from several public preference sources, each in
its own layout; mapping them here, row by row and without Spark or I/O, lets dedup,
decontamination and the reward/DPO writers see one layout only. The layouts and their origins:

- ``trl``: TRL's preference format, ``prompt``/``chosen``/``rejected`` as strings or as message
  lists (conversational); chosen/rejected lists that repeat the prompt turns have them stripped.
  An Anthropic-style string (``"\\n\\nHuman: ...\\n\\nAssistant:"``) is split into turns.
- ``conversation``: Anthropic HH-RLHF, ``chosen``/``rejected`` full dialogues (HH text or message
  lists); their longest common prefix of turns (backed off to end before an assistant turn) is the
  prompt, the rest are the answers.
- ``ultrafeedback``: openbmb/UltraFeedback, ``instruction`` and ``completions`` (each a response
  with ``overall_score``, else the mean of ``fine-grained_score``/``score``/``rating``); chosen is
  the highest-scored completion, rejected the lowest (ties broken by position: the first wins).
- ``scored_pair``: HuggingFaceH4/ultrafeedback_binarized, a TRL pair plus ``score_chosen`` /
  ``score_rejected`` (or ``chosen_rating``/``rejected_rating``, ``chosen_score``/``rejected_score``).

A row that gives no pair yields a reason (``malformed``, ``missing_field: chosen``, ``tie: equal
scores``, ``tie: identical texts``, ``too_few_completions``), never an exception; only a file
whose layout cannot be told is an error. Images keep bytes only (raw bytes or HF image dicts'
``bytes``): a path cannot be resolved here, so it is dropped.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Iterable
from typing import Any

from skycurate.errors import ConfigError
from skycurate.schemas.pref import PAIR_LAYOUTS, PairFields

ID_COLUMNS = ("id", "prompt_id", "idx", "index", "uid")
SCORE_COLUMNS = (("score_chosen", "score_rejected"), ("chosen_rating", "rejected_rating"),
                 ("chosen_score", "rejected_score"))
COMPLETION_SCORES = ("fine-grained_score", "score", "rating")
RESPONSE_KEYS = ("response", "text", "content")
MAX_LISTED_COLUMNS = 20
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
         "model": "assistant", "system": "system"}

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


class _NoPair(Exception):
    """Why a row gives no pair; caught by ``to_pairs`` and returned as its reason."""


# ------------------------------------------------------------------------------ layout detection


def _listed(columns: Collection[str]) -> str:
    """The file's columns, sorted and capped, so an error stays one readable line."""
    names = sorted(str(c) for c in columns)
    more = f", ... (+{len(names) - MAX_LISTED_COLUMNS} more)" if len(names) > MAX_LISTED_COLUMNS else ""
    return "[" + ", ".join(names[:MAX_LISTED_COLUMNS]) + more + "]"


def _has_scores(columns: set[str]) -> bool:
    """Whether a chosen/rejected score column pair is present (the scored_pair layout)."""
    return any({c, r} <= columns for c, r in SCORE_COLUMNS)


def _needs(layout: str, fields: PairFields) -> list[tuple[str, tuple[str, ...]]]:
    """(field, columns any of which holds it) that ``layout`` cannot do without."""
    pair = [("chosen", (fields.chosen or "chosen",)), ("rejected", (fields.rejected or "rejected",))]
    if layout == "ultrafeedback":
        return [("prompt", (fields.prompt,) if fields.prompt else ("prompt", "instruction")),
                ("completions", (fields.completions or "completions",))]
    return ([("prompt", (fields.prompt or "prompt",))] if layout == "trl" else []) + pair


def _check_overrides(columns: set[str], fields: PairFields, where: str) -> None:
    """A mapped column the file lacks is a typo in the config, not a layout."""
    for name in ("prompt", "chosen", "rejected", "completions"):
        col = getattr(fields, name)
        if col and col not in columns:
            raise ConfigError(f"preference pairs {where}: fields.{name} is '{col}' but the file has no such field "
                              f"(it has {_listed(columns)}); fix fields.{name} in the config")


def _check_layout(layout: str, columns: set[str], fields: PairFields, where: str) -> str:
    """An explicit layout, once its columns are known to be there."""
    for name, alternatives in _needs(layout, fields):
        if not any(c in columns for c in alternatives):
            raise ConfigError(f"preference pairs {where}: layout '{layout}' needs {' or '.join(alternatives)} for "
                              f"the {name} but the file has {_listed(columns)}; set fields.{name} in the config")
    if layout == "scored_pair" and not _has_scores(columns):
        raise ConfigError(f"preference pairs {where}: layout 'scored_pair' needs score_chosen/score_rejected (or "
                          f"chosen_rating/rejected_rating, chosen_score/rejected_score) but the file has "
                          f"{_listed(columns)}; set fields.layout in the config")
    return layout


def _auto_layout(columns: set[str], fields: PairFields) -> str | None:
    """The first auto rule the columns (mapped ones counted under their field names) satisfy."""
    have = columns | {n for n in ("prompt", "chosen", "rejected", "completions") if getattr(fields, n)}
    if "completions" in have and have & {"prompt", "instruction"}:
        return "ultrafeedback"
    if {"chosen", "rejected"} <= have:
        return "scored_pair" if _has_scores(columns) else "trl" if "prompt" in have else "conversation"
    return None


def detect_pair_layout(columns: Collection[str], fields: PairFields, where: str) -> str:
    """The layout of a file from its columns, so users of public sets need not name it; else one-line ConfigError."""
    cols = {str(c) for c in columns}
    _check_overrides(cols, fields, where)
    if fields.layout != "auto":
        return _check_layout(fields.layout, cols, fields, where)
    layout = _auto_layout(cols, fields)
    if layout is None:
        raise ConfigError(f"preference pairs {where}: cannot tell the pair layout from its fields {_listed(cols)}; "
                          "set fields.prompt, fields.chosen and fields.rejected (and fields.layout) in the config")
    return layout


# ------------------------------------------------------------------------------ values


def _missing(value: Any) -> bool:
    """None, NaN, blank strings and empty lists all mean 'no value'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    if isinstance(value, str):
        return not value.strip()
    return _is_list(value) and len(value) == 0


def _is_list(value: Any) -> bool:
    """Lists, tuples and numpy arrays (pandas-read parquet) are sequences; strings and dicts are not."""
    return isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1)


def _first(row: dict, names: Iterable[str | None]) -> Any:
    """The first present, non-missing value among ``names`` (None entries skipped)."""
    for name in names:
        if name and not _missing(row.get(name)):
            return row[name]
    return None


def _required(row: dict, column: str, name: str) -> Any:
    """The value of a field the layout cannot do without; missing is the row's reason."""
    value = row.get(column)
    if _missing(value):
        raise _NoPair(f"missing_field: {name}")
    return value


def _score(value: Any) -> float | None:
    """A finite number (numeric strings too, as UltraFeedback ratings come), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _collapse(text: str) -> str:
    """Whitespace collapsed: how texts compare for ties and hash into pair ids."""
    return " ".join(text.split())


# ------------------------------------------------------------------------------ messages


def _hh_turns(text: str) -> list[dict]:
    """'\\n\\nHuman: q\\n\\nAssistant: a' as user/assistant turns; any text before the first marker is a system turn."""
    parts = _HH_TURN.split("\n\n" + text.strip())
    turns = [{"role": "system", "content": parts[0].strip()}] if parts[0].strip() else []
    return turns + [{"role": _HH_ROLES[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2])]


def _content(value: Any) -> str:
    """A message content as text; multimodal part lists give their text parts."""
    if isinstance(value, str):
        return value
    if _is_list(value) and all(isinstance(p, dict) for p in value):
        return "\n".join(p["text"] for p in value if isinstance(p.get("text"), str))
    raise _NoPair("malformed")


def _message(item: Any) -> dict:
    """One {role, content} turn (ShareGPT from/value too); anything else is malformed."""
    if not isinstance(item, dict):
        raise _NoPair("malformed")
    role = item.get("role", item.get("from"))
    content = item.get("content", item.get("value"))
    if not isinstance(role, str) or role.strip().lower() not in ROLES or content is None:
        raise _NoPair("malformed")
    return {"role": ROLES[role.strip().lower()], "content": _content(content)}


def _messages(value: Any, role: str | None) -> list[dict]:
    """A message list, HH text, or (with ``role``) a plain string as one turn of that role."""
    if isinstance(value, str):
        if value.lstrip().startswith("Human:"):
            return _hh_turns(value)
        if role is None:
            raise _NoPair("malformed")
        return [{"role": role, "content": value.strip()}]
    if _is_list(value):
        return [_message(item) for item in value]
    raise _NoPair("malformed")


def _same(a: list[dict], b: list[dict]) -> bool:
    """Turns equal by role and whitespace-collapsed content."""
    return len(a) == len(b) and all(x["role"] == y["role"] and _collapse(x["content"]) == _collapse(y["content"])
                                    for x, y in zip(a, b))


def _prompt_turns(value: Any) -> list[dict]:
    """The prompt as turns, without the trailing empty assistant cue of HH-style prompts."""
    turns = _messages(value, "user")
    if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"].strip():
        turns = turns[:-1]
    return turns


def _answer_turns(value: Any, prompt: list[dict]) -> list[dict]:
    """The answer as turns, without a leading repeat of the prompt turns."""
    turns = _messages(value, "assistant")
    return turns[len(prompt):] if prompt and _same(turns[:len(prompt)], prompt) else turns


def _split_common(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt, chosen, rejected): the shared prefix of turns, ended before an assistant turn, is the prompt."""
    k = 0
    while k < min(len(chosen), len(rejected)) and _same(chosen[k:k + 1], rejected[k:k + 1]):
        k += 1
    while k > 0 and chosen[k - 1]["role"] == "assistant":
        k -= 1
    return chosen[:k], chosen[k:], rejected[k:]


# ------------------------------------------------------------------------------ layouts


def _row_scores(row: dict) -> tuple[float | None, float | None]:
    """(chosen, rejected) scores from the first score column pair the row has."""
    for c, r in SCORE_COLUMNS:
        if c in row and r in row:
            return _score(row[c]), _score(row[r])
    return None, None


def _trl(row: dict, fields: PairFields) -> tuple:
    """TRL: prompt given; answers are strings or lists that may repeat the prompt turns."""
    prompt = _prompt_turns(_required(row, fields.prompt or "prompt", "prompt"))
    chosen = _answer_turns(_required(row, fields.chosen or "chosen", "chosen"), prompt)
    rejected = _answer_turns(_required(row, fields.rejected or "rejected", "rejected"), prompt)
    return (prompt, chosen, rejected, *_row_scores(row))


def _conversation(row: dict, fields: PairFields) -> tuple:
    """Anthropic HH-RLHF: two full dialogues; their common prefix is the prompt."""
    chosen = _messages(_required(row, fields.chosen or "chosen", "chosen"), None)
    rejected = _messages(_required(row, fields.rejected or "rejected", "rejected"), None)
    return (*_split_common(chosen, rejected), *_row_scores(row))


def _scored_pair(row: dict, fields: PairFields) -> tuple:
    """ultrafeedback_binarized: a TRL pair with scores; without a prompt, the dialogues' common prefix."""
    if _missing(row.get(fields.prompt or "prompt")):
        return _conversation(row, fields)
    return _trl(row, fields)


def _completion_score(completion: dict) -> float | None:
    """UltraFeedback: overall_score, else the mean of the per-aspect scores present."""
    overall = _score(completion.get("overall_score"))
    if overall is not None:
        return overall
    scores = [s for s in (_score(completion.get(k)) for k in COMPLETION_SCORES) if s is not None]
    return sum(scores) / len(scores) if scores else None


def _scored_completions(value: Any) -> list[tuple[float, str]]:
    """(score, response) of each completion that has both, in input order."""
    if not _is_list(value):
        raise _NoPair("malformed")
    out = []
    for c in value:
        response = _first(c, RESPONSE_KEYS) if isinstance(c, dict) else None
        score = _completion_score(c) if isinstance(c, dict) else None
        if isinstance(response, str) and score is not None:
            out.append((score, response))
    return out


def _ultrafeedback(row: dict, fields: PairFields) -> tuple:
    """UltraFeedback: chosen the highest-scored completion, rejected the lowest (first wins a tie)."""
    column = fields.prompt or next((c for c in ("prompt", "instruction") if not _missing(row.get(c))), "prompt")
    prompt = _prompt_turns(_required(row, column, "prompt"))
    scored = _scored_completions(_required(row, fields.completions or "completions", "completions"))
    if len(scored) < 2:
        raise _NoPair("too_few_completions")
    best = max(range(len(scored)), key=lambda i: (scored[i][0], -i))
    worst = min(range(len(scored)), key=lambda i: (scored[i][0], i))
    chosen, rejected = scored[best], scored[worst]
    return (prompt, [{"role": "assistant", "content": chosen[1].strip()}],
            [{"role": "assistant", "content": rejected[1].strip()}], chosen[0], rejected[0])


_LAYOUTS = {"trl": _trl, "conversation": _conversation, "ultrafeedback": _ultrafeedback,
            "scored_pair": _scored_pair}
assert set(_LAYOUTS) == set(PAIR_LAYOUTS)


# ------------------------------------------------------------------------------ canonical rows


def pair_id(source: str, prompt_text: str, chosen_text: str, rejected_text: str) -> str:
    """sha256 of the source and the whitespace-collapsed texts, so reruns and reorderings keep ids stable."""
    key = "\x00".join([source, _collapse(prompt_text), _collapse(chosen_text), _collapse(rejected_text)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _images(row: dict, fields: PairFields) -> list[bytes] | None:
    """Image bytes (one value becomes a list; HF image dicts give their bytes); paths are dropped."""
    value = _first(row, (fields.images, "images", "image"))
    if value is None:
        return None
    items = list(value) if _is_list(value) else [value]
    items = [v.get("bytes") if isinstance(v, dict) else v for v in items]
    out = [bytes(v) for v in items if isinstance(v, (bytes, bytearray, memoryview)) and len(v)]
    return out or None


def _record_id(row: dict, fields: PairFields) -> str | None:
    """The input row's id, so a pair can be traced back to its source row."""
    rid = _first(row, (fields.id, *ID_COLUMNS))
    if isinstance(rid, float) and rid.is_integer():
        rid = int(rid)
    return None if rid is None else str(rid)


def _texts(prompt: list[dict], chosen: list[dict], rejected: list[dict]) -> tuple[str, str, str]:
    """(last user turn, chosen, rejected) texts, after checking the pair has a question and two answers."""
    users = [t["content"] for t in prompt if t["role"] == "user"]
    if not users or not users[-1].strip():
        raise _NoPair("missing_field: prompt")
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if not turns or turns[0]["role"] != "assistant":
            raise _NoPair("malformed")
        if not "".join(t["content"] for t in turns).strip():
            raise _NoPair(f"missing_field: {name}")
    return users[-1], "\n".join(t["content"] for t in chosen), "\n".join(t["content"] for t in rejected)


def _pair(row: dict, layout: str, fields: PairFields, source: str) -> dict:
    """The canonical pair of one row, or _NoPair with the reason it gives none."""
    prompt, chosen, rejected, chosen_score, rejected_score = _LAYOUTS[layout](row, fields)
    prompt_text, chosen_text, rejected_text = _texts(prompt, chosen, rejected)
    if chosen_score is not None and chosen_score == rejected_score:
        raise _NoPair("tie: equal scores")
    if _collapse(chosen_text) == _collapse(rejected_text):
        raise _NoPair("tie: identical texts")
    return {"pair_id": pair_id(source, prompt_text, chosen_text, rejected_text), "source": source,
            "prompt": prompt, "chosen": chosen, "rejected": rejected, "prompt_text": prompt_text,
            "chosen_text": chosen_text, "rejected_text": rejected_text, "chosen_score": chosen_score,
            "rejected_score": rejected_score, "images": _images(row, fields), "record_id": _record_id(row, fields)}


def to_pairs(row: dict, layout: str, fields: PairFields, source: str) -> tuple[list[dict], str | None]:
    """(canonical pairs, reason when none) of one raw row; never raises, so a bad row is counted, not fatal."""
    if layout not in _LAYOUTS:
        raise ConfigError(f"preference pairs: unknown layout '{layout}' (one of {', '.join(PAIR_LAYOUTS)})")
    try:
        return [_pair(row, layout, fields, source)], None
    except _NoPair as no:
        return [], str(no)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):  # odd value types: the row, not the run
        return [], "malformed"
