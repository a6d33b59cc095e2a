"""The judge stage: ask a model what rules cannot decide, parse its replies strictly.

Pure parts (unit-tested on strings and tiny tables): ``parse_verdict`` and ``parse_scores`` read a
reply or return None (never a guess); ``judge_samples`` turns verified samples into the judge
prompts for answer equivalence and reasoning checks and applies the parsed verdicts;
``score_prompts`` fills R1V's ``s_v/s_t/s_i``. The engine part, ``Judge``, sends the prompts
through the teacher machinery (templating, context check, resumable journalled shards), so a
judge is any model on any of the three engines and a rerun asks it nothing twice.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from skycurate.schemas import cot as S
from skycurate.schemas.cot_judge import (
    JUDGE_ERROR,
    JUDGE_UNPARSABLE,
    REASONING_REJECTED,
    STAGE,
    JudgeConfig,
    fill,
)

log = logging.getLogger(__name__)

QUARANTINE_SCHEMA = pa.schema([     # cot/judge-quarantine: one row per judge reply that decided nothing
    pa.field("prompt_id", pa.string()),
    pa.field("sample_index", pa.int32()),    # null for a prompt-level question (scores)
    pa.field("task", pa.string()),           # equivalence | reasoning | scores
    pa.field("reason", pa.string()),         # judge_unparsable | judge_error
    pa.field("detail", pa.string()),         # the engine error, or the reply's start
    pa.field("judge_output", pa.string()),
])
OVERRIDE_SCHEMA = pa.schema([       # what the judge changed on a sample
    pa.field("prompt_id", pa.string()),
    pa.field("sample_index", pa.int32()),
    pa.field("correct", pa.bool_()),
    pa.field("verify_method", pa.string()),
    pa.field("verify_error", pa.string()),
    pa.field("judge_output", pa.string()),
    pa.field("reasoning_output", pa.string()),
])

# ------------------------------------------------------------------------------------ parsing

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_BRACKETED = re.compile(r"\[\[\s*(yes|no|correct|incorrect|true|false|equivalent|not equivalent)\s*\]\]", re.I)
_LABELLED = re.compile(r"\b(?:final\s+)?(?:verdict|judgement|judgment|answer)\s*[:：]\s*\**\s*"
                       r"(yes|no|correct|incorrect|true|false|equivalent|not equivalent)\b", re.I)
_BARE = re.compile(r"^\W*(yes|no|correct|incorrect|true|false|equivalent|not equivalent)\W*$", re.I)
_POSITIVE = {"yes", "correct", "true", "equivalent"}


def _visible(text: str) -> str:
    """The reply without its hidden reasoning (``<think>...</think>``; an unclosed one hides the rest)."""
    text = _THINK.sub(" ", text)
    return text.split("<think>", 1)[0] if "<think>" in text.lower() else text


def parse_verdict(text: str | None) -> bool | None:
    """YES/NO from a judge reply: the last ``[[YES]]``/``[[NO]]``, else the last ``Verdict: yes``
    line, else a reply that is one word. Anything else (prose, both without a marker) is None."""
    if not text:
        return None
    body = _visible(text)
    for pattern in (_BRACKETED, _LABELLED):
        found = pattern.findall(body)
        if found:
            return found[-1].strip().lower() in _POSITIVE
    m = _BARE.match(body.strip())
    return (m.group(1).lower() in _POSITIVE) if m else None


_SCORE_KEYS = {"s_v": ("s_v", "visual_dependency", "visual dependency"),
               "s_t": ("s_t", "text_quality", "text quality"),
               "s_i": ("s_i", "image_information", "image information")}
_OBJECT = re.compile(r"\{[^{}]*\}", re.S)


def _score_value(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if 0.0 <= f <= 1.0 else None


def parse_scores(text: str | None) -> tuple[float, float, float] | None:
    """(s_v, s_t, s_i) from the last JSON object of a reply that holds all three in [0, 1] (keys
    ``s_v`` or ``visual_dependency`` etc.); None when no object does (scores on another scale are
    not rescaled: the template asks for [0, 1])."""
    if not text:
        return None
    for raw in reversed(_OBJECT.findall(_visible(text))):
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        lowered = {str(k).strip().lower(): v for k, v in obj.items()}
        values = []
        for names in _SCORE_KEYS.values():
            got = next((lowered[n] for n in names if n in lowered), None)
            values.append(_score_value(got))
        if all(v is not None for v in values):
            return values[0], values[1], values[2]
    return None


# ------------------------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Request:
    id: str
    text: str                          # the filled template (the judge's user turn)
    images: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Reply:
    text: str | None
    error: str | None                  # engine error or a templating rejection (too long)


Ask = Callable[[Sequence[Request]], dict[str, Reply]]


def _detail(reply: Reply) -> str:
    return (reply.error or (reply.text or "").strip()[:300] or "empty reply")


def _quarantine_row(pid: str, index: int | None, task: str, reply: Reply) -> dict[str, Any]:
    return {"prompt_id": pid, "sample_index": index, "task": task,
            "reason": JUDGE_ERROR if reply.error else JUDGE_UNPARSABLE, "detail": _detail(reply),
            "judge_output": reply.text}


def _needs_equivalence(correct: bool | None, extracted: str | None, reference: str | None, atype: str | None,
                       cfg: JudgeConfig) -> bool:
    if not cfg.equivalence or not extracted or not (reference or "").strip() or atype == "code":
        return False
    return correct is None or (cfg.equivalence_on == "not_correct" and correct is False)


def judge_samples(rows: pa.Table, cfg: JudgeConfig, ask: Ask) -> tuple[pa.Table, pa.Table]:
    """(overrides, quarantine) for verified samples: answer equivalence where the rules are
    undecided, then the reasoning check of correct chains whose prompt has an ``explanation``.

    ``rows``: prompt_id, sample_index, question, reference_answer, answer_type, extracted_answer,
    completion, correct, verify_method, verify_error and optionally explanation."""
    recs = rows.to_pylist()
    state: dict[tuple[str, int], dict[str, Any]] = {}
    quarantine: list[dict[str, Any]] = []

    eq = [r for r in recs if _needs_equivalence(r["correct"], r["extracted_answer"], r["reference_answer"],
                                                r.get("answer_type"), cfg)]
    replies = ask([Request(f"eq\x1f{r['prompt_id']}\x1f{r['sample_index']}",
                           fill(cfg.equivalence_template, question=r["question"] or "",
                                reference=r["reference_answer"], answer=r["extracted_answer"])) for r in eq])
    for r in eq:
        reply = replies[f"eq\x1f{r['prompt_id']}\x1f{r['sample_index']}"]
        verdict = None if reply.error else parse_verdict(reply.text)
        key = (r["prompt_id"], r["sample_index"])
        if verdict is None:
            quarantine.append(_quarantine_row(*key, "equivalence", reply))
            state[key] = {"correct": None, "verify_method": STAGE,
                          "verify_error": JUDGE_ERROR if reply.error else JUDGE_UNPARSABLE,
                          "judge_output": reply.text}
        else:
            state[key] = {"correct": verdict, "verify_method": STAGE, "verify_error": None,
                          "judge_output": reply.text}

    def now_correct(r: dict[str, Any]) -> bool | None:
        got = state.get((r["prompt_id"], r["sample_index"]))
        return got["correct"] if got else r["correct"]

    rs = [r for r in recs if cfg.reasoning and (r.get("explanation") or "").strip() and now_correct(r) is True]
    replies = ask([Request(f"rs\x1f{r['prompt_id']}\x1f{r['sample_index']}",
                           fill(cfg.reasoning_template, question=r["question"] or "",
                                reference=r["reference_answer"] or "", explanation=r["explanation"],
                                answer=r["extracted_answer"] or "",
                                response=(r["completion"] or "")[-cfg.response_chars:])) for r in rs])
    for r in rs:
        reply = replies[f"rs\x1f{r['prompt_id']}\x1f{r['sample_index']}"]
        verdict = None if reply.error else parse_verdict(reply.text)
        key = (r["prompt_id"], r["sample_index"])
        row = state.setdefault(key, {"correct": r["correct"], "verify_method": r["verify_method"],
                                     "verify_error": r["verify_error"], "judge_output": None})
        row["reasoning_output"] = reply.text
        if verdict is None:   # not guessed: the chain is not verified
            quarantine.append(_quarantine_row(*key, "reasoning", reply))
            row.update(correct=None, verify_error=JUDGE_ERROR if reply.error else JUDGE_UNPARSABLE)
        elif not verdict:
            row.update(correct=False, verify_error=REASONING_REJECTED)

    overrides = [{"prompt_id": k[0], "sample_index": k[1], "reasoning_output": None, **v}
                 for k, v in sorted(state.items())]
    return (pa.Table.from_pylist(overrides, OVERRIDE_SCHEMA),
            pa.Table.from_pylist(quarantine, QUARANTINE_SCHEMA))


def score_prompts(prompts: pa.Table, cfg: JudgeConfig, ask: Ask) -> tuple[pa.Table, list[dict], pa.Table]:
    """(prompts with s_v/s_t/s_i filled, ``DROPPED_SCHEMA`` quarantine rows, judge quarantine rows).

    Only prompts missing a score are asked (given scores win); the judge sees the prompt's images.
    A prompt whose reply does not parse is quarantined, never given a default."""
    recs = prompts.to_pylist()
    todo = [r for r in recs if any(r.get(k) is None for k in ("s_v", "s_t", "s_i"))]
    replies = ask([Request(f"sc\x1f{r['id']}", fill(cfg.scores_template, question=r["question"]),
                           tuple(r.get("images") or ())) for r in todo])
    dropped, judge_q, bad = [], [], set()
    filled: dict[str, tuple[float, float, float]] = {}
    for r in todo:
        reply = replies[f"sc\x1f{r['id']}"]
        scores = None if reply.error else parse_scores(reply.text)
        if scores is None:
            bad.add(r["id"])
            row = _quarantine_row(r["id"], None, "scores", reply)
            judge_q.append(row)
            dropped.append({"id": r["id"], "stage": STAGE, "reason": row["reason"], "detail": row["detail"],
                            "question": (r["question"] or "")[:2000], "record": None})
        else:
            filled[r["id"]] = scores
    out = []
    for r in recs:
        if r["id"] in bad:
            continue
        got = filled.get(r["id"])
        if got:
            for k, v in zip(("s_v", "s_t", "s_i"), got, strict=True):
                r[k] = r[k] if r.get(k) is not None else v
        out.append(r)
    return (pa.Table.from_pylist(out, prompts.schema), dropped, pa.Table.from_pylist(judge_q, QUARANTINE_SCHEMA))


# ------------------------------------------------------------------------------------ engine


def _template(cfg: JudgeConfig) -> S.TemplateConfig:
    """Judge prompts are complete texts: the template only chooses chat or raw and the system turn."""
    return S.TemplateConfig(mode=cfg.mode, system=cfg.system, add_special_tokens=True)


def _generation(cfg: JudgeConfig) -> S.GenerateConfig:
    return S.GenerateConfig(samples=1, sampling=cfg.sampling, shard_size=cfg.shard_size)


class Judge:
    """The judge model behind ``ask``: templated like a teacher, generated in journalled shards
    under ``work``; the engine opens on the first question and closes with the ``with`` block."""

    def __init__(self, cfg: JudgeConfig, work: Path, force: bool = False) -> None:
        if cfg.engine is None:
            raise ValueError("judge.engine is not set")
        self.cfg, self.work, self.force = cfg, work, force
        self.template, self.gen = _template(cfg), _generation(cfg)
        self._engine = None
        self._tokenizer: Any = False
        self.asked = 0

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def _open(self):
        from skycurate.stages.cot.teacher import open_engine

        if self._engine is None:
            self._engine = open_engine(self.cfg.engine, self.template, self.work)
        return self._engine

    def ask(self, requests: Sequence[Request]) -> dict[str, Reply]:
        from skycurate.stages.cot.generate import run_shards
        from skycurate.stages.cot.prompts import generation_items
        from skycurate.stages.cot.teacher import load_tokenizer

        if not requests:
            return {}
        if self._tokenizer is False:
            self._tokenizer = load_tokenizer(self.cfg.engine)
        table = pa.table({"id": [r.id for r in requests], "question": [r.text for r in requests],
                          "images": pa.array([list(r.images) for r in requests], pa.list_(pa.binary())),
                          **{k: pa.nulls(len(requests), pa.float64()) for k in ("s_v", "s_t", "s_i")}})
        items, too_long, _ = generation_items(table, self.template, self.cfg.engine, self.gen, self._tokenizer)
        replies = {row["id"]: Reply(None, f"{S.TOO_LONG}: {row['detail']}") for row in too_long}
        params = self.gen.sampling.model_copy(update={"n": 1})
        if items:
            from skycurate.stages.cot.teacher import vision_checked

            generate = vision_checked(self.cfg.engine, items, lambda *a, **k: self._open().generate(*a, **k))
            report = run_shards(items, generate, params, self.work, self.gen.shard_size,
                                add_special_tokens=self.template.mode == "raw", force=self.force)
            got = pa.concat_tables([pq.read_table(f, columns=["prompt_id", "completion", "error"])
                                    for f in report.files])
            wanted = {i.id for i in items}
            for pid, text, err in zip(*(got[c].to_pylist() for c in ("prompt_id", "completion", "error")),
                                      strict=True):
                if pid in wanted:
                    replies[pid] = Reply(text, err)
        self.asked += len(requests)
        log.info("judge: %d questions, %d too long for its context", len(requests), len(too_long))
        return replies


def judge_work_key(identity: Any, cfg: JudgeConfig) -> str:
    """The judge's shard journal: its model and decoding (the templates are inside each prompt,
    so a changed template asks again without a new folder)."""
    from skycurate.stages.cot.teacher import work_key

    return "judge-" + work_key(identity, _template(cfg), cfg.engine, _generation(cfg))
