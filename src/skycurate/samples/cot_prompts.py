"""The CoT demo's synthetic arithmetic problems and the prompts dataset written from them.

Split out of ``cot`` because the problems (questions, step-by-step reference solutions, answers)
and the JSONL prompts dataset need nothing of the model: no torch, no transformers. The teacher
(``cot_teacher``) trains on these problems; the flow reads the prompts. The prompt format and the
solution format are described in ``cot``, which re-exports everything here.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"
LEVELS = {1: "easy", 2: "medium", 3: "hard"}

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")

NAMES = ["Tom", "Anna", "Liam", "Maya", "Omar", "Sara", "Ivan", "Chen", "Lena", "Raj", "Nora", "Hugo", "Zoe",
         "Ben", "Ines", "Kofi", "Mila", "Yuki", "Paul", "Ada"]
OBJECTS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "shells", "stamps", "cards", "coins",
           "plums", "buttons"]
CONTAINERS = ["bags", "boxes", "packs", "jars"]


# --------------------------------------------------------------------------- problems

@dataclass
class Problem:
    """One synthetic problem: ``question``, integer ``answer``, the reference ``solution`` (what
    the teacher learns to write), the ``expression`` it reduces and its number of ``steps``."""

    question: str
    answer: int
    solution: str
    expression: str
    kind: str
    steps: int
    answer_type: str  # "math" (a bare expression) or "numeric" (a word problem)

    @property
    def level(self) -> str:
        return LEVELS[self.steps]

    @property
    def prompt(self) -> str:
        return format_prompt(self.question)


def format_prompt(question: str) -> str:
    """The exact text the teacher expects (the tokenizer adds BOS): ``Question: ...\\nAnswer:``."""
    return PROMPT_TEMPLATE.format(question=question)


def _tokens(expr: str) -> list[str]:
    return expr.split(" ")


def reduce_steps(expression: str) -> list[str]:
    """The expression after each reduction: the first ``*`` first, else the leftmost ``+``/``-``.
    ``"23 + 3 * 12"`` -> ``["23 + 36", "59"]``. Operands are integers separated by single spaces."""
    toks = _tokens(expression)
    out = []
    while len(toks) > 1:
        i = toks.index("*") if "*" in toks else 1
        a, op, b = int(toks[i - 1]), toks[i], int(toks[i + 1])
        value = a * b if op == "*" else a + b if op == "+" else a - b
        toks = toks[:i - 1] + [str(value)] + toks[i + 2:]
        out.append(" ".join(toks))
    return out


def evaluate(expression: str) -> int:
    """The value of ``expression`` under :func:`reduce_steps`' rules (standard precedence)."""
    steps = reduce_steps(expression)
    return int(steps[-1]) if steps else int(expression)


def compact(expression: str) -> str:
    """``"23 + 3 * 12"`` -> ``"23+3*12"`` (how questions and solutions write expressions)."""
    return expression.replace(" ", "")


def solution_text(expression: str) -> str:
    """``<think>E=E1=...=N</think> The answer is \\boxed{N}.``: the expression, then one reduction
    per step, written without spaces (fewer tokens: every digit, operator and ``=`` is one)."""
    chain = "=".join(compact(e) for e in [expression, *reduce_steps(expression)])
    return f"<think>{chain}</think> The answer is \\boxed{{{evaluate(expression)}}}."


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (None when there is none)."""
    found = _BOXED.findall(text)
    return found[-1].strip() if found else None


# Each kind draws numbers and returns (expression, word question or None). Intermediate values stay
# positive and below 1000; operands are mostly two-digit, multipliers single-digit.

def _add(r):
    a, b = r.randint(10, 99), r.randint(10, 99)
    return f"{a} + {b}", "{n} has {a} {o} and gets {b} more. How many {o} now?", {"a": a, "b": b}


def _sub(r):
    a = r.randint(20, 99)
    b = r.randint(10, a - 1)
    return f"{a} - {b}", "{n} has {a} {o} and gives away {b}. How many are left?", {"a": a, "b": b}


def _mul(r):
    k, b = r.randint(2, 9), r.randint(2, 20)
    return f"{k} * {b}", "{n} buys {k} {box} of {b} {o}. How many {o} in all?", {"k": k, "b": b}


def _add_sub(r):
    a, b = r.randint(10, 99), r.randint(10, 99)
    c = r.randint(10, min(99, a + b - 1))
    return (f"{a} + {b} - {c}", "{n} has {a} {o}, gets {b} more, then gives away {c}. How many now?",
            {"a": a, "b": b, "c": c})


def _bags(r):
    a, k, b = r.randint(10, 99), r.randint(2, 9), r.randint(2, 20)
    return (f"{a} + {k} * {b}", "{n} has {a} {o} and buys {k} {box} of {b}. How many now?",
            {"a": a, "k": k, "b": b})


def _sub_add(r):
    a = r.randint(20, 99)
    b = r.randint(10, a - 1)
    c = r.randint(10, 99)
    return (f"{a} - {b} + {c}", "{n} has {a} {o}, gives away {b}, then gets {c} more. How many now?",
            {"a": a, "b": b, "c": c})


def _bags_give(r):
    a, k, b = r.randint(10, 99), r.randint(2, 9), r.randint(2, 20)
    c = r.randint(10, min(99, a + k * b - 1))
    return (f"{a} + {k} * {b} - {c}", "{n} has {a} {o}, buys {k} {box} of {b}, then gives away {c}. How many now?",
            {"a": a, "k": k, "b": b, "c": c})


def _chain3(r):
    a, b = r.randint(10, 99), r.randint(10, 99)
    c = r.randint(10, min(99, a + b - 1))
    d = r.randint(10, 99)
    return (f"{a} + {b} - {c} + {d}", "{n} has {a} {o}, gets {b}, gives away {c}, then gets {d} more. How many now?",
            {"a": a, "b": b, "c": c, "d": d})


def _two_bags(r):
    k, b, j, c = r.randint(2, 9), r.randint(2, 20), r.randint(2, 9), r.randint(2, 20)
    return (f"{k} * {b} + {j} * {c}", "{n} buys {k} {box} of {b} {o} and {j} {box} of {c}. How many {o} in all?",
            {"k": k, "b": b, "j": j, "c": c})


KINDS: dict[str, tuple[int, Callable]] = {
    "add": (1, _add), "sub": (1, _sub), "mul": (1, _mul),
    "add_sub": (2, _add_sub), "bags": (2, _bags), "sub_add": (2, _sub_add),
    "bags_give": (3, _bags_give), "chain3": (3, _chain3), "two_bags": (3, _two_bags),
}
# The default bound on every number (operands, intermediate results, answers): two-digit numbers
# keep the digit positions regular enough for a 240k-parameter model to learn the arithmetic in a
# couple of CPU minutes. ``max_value=999`` gives the wider, much harder variant.
MAX_VALUE = 99
# Interleaved so any run of 9 consecutive problems holds 3 easy, 3 medium and 3 hard ones.
DEFAULT_KINDS = ("add", "add_sub", "bags_give", "sub", "bags", "chain3", "mul", "sub_add", "two_bags")


def _values(expression: str) -> list[int]:
    return [int(t) for e in [expression, *reduce_steps(expression)] for t in _tokens(e) if t.isdigit()]


def _make(kind: str, rng: random.Random, word_share: float, max_value: int) -> Problem:
    steps, draw = KINDS[kind]
    for _ in range(10_000):
        expression, template, nums = draw(rng)
        if max(_values(expression)) <= max_value:
            break
    else:
        raise ValueError(f"max_value {max_value} is too small for kind {kind!r}")
    if rng.random() < word_share:
        container = rng.choice(CONTAINERS)
        fields = dict(nums, n=rng.choice(NAMES), o=rng.choice(OBJECTS))
        question = template.format(**fields, box=container)
        answer_type = "numeric"
    else:
        question = f"What is {compact(expression)}?"
        answer_type = "math"
    return Problem(question=question, answer=evaluate(expression), solution=solution_text(expression),
                   expression=expression, kind=kind, steps=steps, answer_type=answer_type)


def arithmetic_problems(n: int, seed: int = 0, kinds: Sequence[str] = DEFAULT_KINDS, *, word_share: float = 0.6,
                        max_value: int = MAX_VALUE, exclude: Iterable[str] = ()) -> list[Problem]:
    """``n`` distinct problems; problem ``i`` is of kind ``kinds[i % len(kinds)]`` (the default
    order mixes easy, medium and hard evenly). ``word_share`` of them are word problems
    (``answer_type="numeric"``), the rest bare expressions (``"What is 23+3*12?"``,
    ``answer_type="math"``). Every number in the question and in each step, the answer included,
    is at most ``max_value`` (numbers are redrawn until so). Questions in ``exclude`` are skipped
    (a held-out set disjoint from a training set). Deterministic given ``seed``."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown problem kinds {unknown}; choose from {sorted(KINDS)}")
    rng = random.Random(seed)
    seen = set(exclude)
    out: list[Problem] = []
    misses = 0
    while len(out) < n:
        p = _make(kinds[len(out) % len(kinds)], rng, word_share, max_value)
        if p.question in seen:
            misses += 1
            if misses > 100 * (n + 10):
                raise ValueError(f"cannot draw {n} distinct problems of kinds {list(kinds)}")
            continue
        seen.add(p.question)
        out.append(p)
    return out


# --------------------------------------------------------------------------- prompts dataset

@dataclass
class PromptsSummary:
    """What :func:`write_prompts` wrote. ``bad`` maps a defect to the ids of the rows that carry it:
    ``missing_reference`` (``reference_answer`` is null) and ``too_long`` (a question far longer
    than the teacher's context)."""

    path: Path
    rows: int
    good_ids: list[str]
    bad: dict[str, list[str]] = field(default_factory=dict)
    by_level: dict[str, int] = field(default_factory=dict)

    @property
    def bad_ids(self) -> list[str]:
        return [i for ids in self.bad.values() for i in ids]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def prompt_row(problem: Problem, row_id: str) -> dict:
    return {"id": row_id, "question": problem.question, "reference_answer": str(problem.answer),
            "answer_type": problem.answer_type, "domain": "arithmetic", "source": "synthetic",
            "steps": problem.steps, "level": problem.level, "kind": problem.kind}


def write_prompts(path: str | Path, n: int, seed: int = 0, *, kinds: Sequence[str] = DEFAULT_KINDS,
                  max_value: int = MAX_VALUE, bad_rows: bool = True, long_chars: int = 6000,
                  exclude: Iterable[str] = ()) -> PromptsSummary:
    """A JSONL prompts dataset of ``n`` good problems (ids ``arith-00000``...), one row each::

        {"id", "question", "reference_answer" (str), "answer_type" ("math" | "numeric"),
         "domain": "arithmetic", "source": "synthetic", "steps" (1 / 2 / 3),
         "level" ("easy" | "medium" | "hard"), "kind"}

    ``steps`` and ``level`` are for analysis; the flow derives difficulty from the teacher's pass
    rate. With ``bad_rows`` five deliberately bad rows follow, flagged in the summary's ``bad``:
    ``arith-bad-noref`` (``reference_answer`` null), ``arith-bad-long`` (a question of about
    ``long_chars`` characters, far beyond the teacher's context), ``arith-bad-dup`` (the first
    question again under another id), ``arith-bad-type`` (answer_type ``essay``) and
    ``arith-bad-image`` (an image path that does not exist). Pass the training questions as
    ``exclude`` to keep the prompts out of the teacher's training set."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    problems = arithmetic_problems(n, seed, kinds, max_value=max_value, exclude=exclude)
    rows = [prompt_row(p, f"arith-{i:05d}") for i, p in enumerate(problems)]
    bad: dict[str, list[str]] = {}
    if bad_rows:
        extra = arithmetic_problems(4, seed + 7919, kinds, max_value=max_value,
                                    exclude={p.question for p in problems} | set(exclude))
        noref = prompt_row(extra[0], "arith-bad-noref")
        noref["reference_answer"] = None
        long_row = prompt_row(extra[1], "arith-bad-long")
        filler = " ".join(f"{NAMES[i % len(NAMES)]} counts {OBJECTS[i % len(OBJECTS)]} again." for i in range(400))
        long_row["question"] = (filler * (1 + long_chars // len(filler)))[:long_chars] + " " + extra[1].question
        dup = dict(rows[0], id="arith-bad-dup")
        bad_type = dict(prompt_row(extra[2], "arith-bad-type"), answer_type="essay")
        bad_image = dict(prompt_row(extra[3], "arith-bad-image"), images=["no-such-image.png"])
        rows += [noref, long_row, dup, bad_type, bad_image]
        bad = {"missing_reference": [noref["id"]], "too_long": [long_row["id"]], "duplicate": [dup["id"]],
               "unknown_answer_type": [bad_type["id"]], "bad_image": [bad_image["id"]]}
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    by_level: dict[str, int] = {}
    for p in problems:
        by_level[p.level] = by_level.get(p.level, 0) + 1
    return PromptsSummary(path=path, rows=len(rows), good_ids=[r["id"] for r in rows[:n]], bad=bad,
                          by_level=by_level)
