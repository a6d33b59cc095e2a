"""A tiny arithmetic teacher for the CoT distillation demo (``cot_distill``), trained on CPU.

Model hubs are unreachable, so the demo trains its own teacher: synthetic arithmetic problems with
step-by-step solutions, a small BPE tokenizer trained with ``tokenizers`` (every digit is its own
token) and a 240k-parameter Llama model (hidden 64, 4 layers, 2 heads of 32) trained for about
1800 steps on one CPU thread (2-3 minutes on the shared 2-core machine). It is right on roughly
80% / 60% / 50% of held-out easy / medium / hard problems greedily, less when sampling, so
distillation yields both verified-correct and wrong chains (``benchmarks/cot_teacher.py``).

Prompt format (what the flow must send, :func:`format_prompt`)::

    "Question: " + question + "\nAnswer:"        # no trailing space

e.g. ``"Question: Nora has 78 stamps and buys 4 bags of 5. How many now?\nAnswer:"``. The tokenizer
adds the BOS token itself (``add_special_tokens=True``, the default of transformers and vLLM's
``generate``). The model continues with a space, the solution and EOS (generation stops there)::

     <think>78+4*5=78+20=98</think> The answer is \\boxed{98}.

The saved folder also has a chat template rendering one user message as exactly this prompt (BOS
included), so vLLM's ``llm.chat`` or an OpenAI-compatible chat endpoint give the same text.
Solutions write the expression, then reduce it one operation at a time (the first ``*``, else the
leftmost ``+``/``-``), without spaces, and end in ``\\boxed{N}``: :func:`extract_boxed` reads it.

Difficulty = number of arithmetic steps: 1 (easy: one ``+``, ``-`` or ``*``), 2 (medium), 3
(hard); the teacher's accuracy falls with the steps, which the selection stage relies on. Every
number (operands, intermediate results, answer) is at most ``MAX_VALUE`` = 99 by default.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"
CHAT_TEMPLATE = ("{%- for message in messages -%}{%- if message['role'] == 'user' -%}"
                 "{{ bos_token }}Question: {{ message['content'] }}\nAnswer:"
                 "{%- elif message['role'] == 'assistant' -%}{{ ' ' ~ (message['content'] | trim) }}{{ eos_token }}"
                 "{%- endif -%}{%- endfor -%}")
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
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


# --------------------------------------------------------------------------- tokenizer and model

def train_tokenizer(texts: Iterable[str], vocab_size: int = 384):
    """Byte-level BPE over ``texts`` with every digit its own pre-token (numbers never merge, so
    ``123`` is ``1 2 3``); words of the templates become single tokens. BOS is added by the
    tokenizer's post-processor (transformers and vLLM both encode prompts with it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                          use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


@dataclass
class TeacherConfig:
    """Model and training settings. vLLM's CPU attention needs ``head_dim`` 32, 64 or 128; it need
    not be ``hidden / heads`` (Llama projects to ``heads * head_dim``)."""

    hidden: int = 64
    layers: int = 4
    heads: int = 2
    head_dim: int = 32
    intermediate: int = 192
    max_positions: int = 256
    vocab_size: int = 384
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 30
    rope_theta: float = 10000.0
    init_std: float = 0.08  # larger than Llama's 0.02: a much shorter plateau before copying/arithmetic
    decay_frac: float = 0.2  # warm-up, constant LR, then a linear decay over the last ``decay_frac`` of the steps
    batch_size: int = 32
    length_pool: int = 0  # > 1: batches of similar lengths (~30% less padding, but learned worse here)
    weight_decay: float = 0.01
    threads: int = 1  # 2 OpenMP threads thrash (~3x slower) when the 2 cores are shared


@dataclass
class TrainReport:
    out_dir: Path
    steps: int
    seconds: float
    tokens: int
    params: int
    losses: list[float]
    config: dict

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


def _encode_pairs(tokenizer, problems: Sequence[Problem]) -> list[tuple[list[int], int]]:
    """(ids, prompt length): BOS + prompt tokens exactly as the prompt alone encodes, then the
    solution (encoded on its own, with its leading space) and EOS."""
    prompts = tokenizer([p.prompt for p in problems])["input_ids"]
    sols = tokenizer([" " + p.solution for p in problems], add_special_tokens=False)["input_ids"]
    return [(pr + so + [tokenizer.eos_token_id], len(pr)) for pr, so in zip(prompts, sols)]


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random, pool: int = 0) -> list[list[int]]:
    """Shuffled batches. With ``pool`` > 1, of similar lengths (less padding): shuffle, sort each
    run of ``pool`` batches by length, cut into batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if pool <= 1:
        return [order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)]
    batches = []
    for lo in range(0, len(order), batch_size * pool):
        chunk = sorted(order[lo:lo + batch_size * pool], key=lambda i: lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def train_teacher(out_dir: str | Path, *, n_train: int = 38400, epochs: int = 1, seed: int = 0,
                  config: TeacherConfig | None = None, kinds: Sequence[str] = DEFAULT_KINDS,
                  max_value: int = MAX_VALUE,
                  log: Callable[[str], None] | None = None, report: dict | None = None,
                  callback: Callable[[int, object, object], None] | None = None, callback_every: int = 0) -> Path:
    """Train the arithmetic teacher and save it into ``out_dir`` with ``save_pretrained`` (model,
    generation config, tokenizer with its chat template, and ``teacher.json``: settings, steps,
    seconds, losses); returns ``out_dir``.

    ``n_train`` fresh problems (seed ``seed``; defaults: 38,400 = 1,200 steps of 32) for ``epochs``
    epochs; AdamW, warm-up, constant rate, then a linear decay over the last ``decay_frac`` of the
    steps; the loss covers the solution tokens only (and EOS), not the prompt. About 2 minutes on
    one thread of the shared machine (``seconds`` in ``report``). Deterministic given ``seed`` and
    the thread count. ``report``, when given, is filled with the :class:`TrainReport` fields.
    ``callback(step, model, tokenizer)`` runs every ``callback_every`` steps (progress checks)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = config or TeacherConfig()
    if cfg.head_dim not in (32, 64, 128):
        raise ValueError("head_dim must be 32, 64 or 128 (vLLM's CPU attention)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    try:
        problems = arithmetic_problems(n_train, seed, kinds, max_value=max_value)
        tok_texts = [p.prompt + " " + p.solution for p in problems[:2000]]
        tokenizer = train_tokenizer(tok_texts, cfg.vocab_size)
        data = _encode_pairs(tokenizer, problems)
        longest = max(len(ids) for ids, _ in data)
        if longest > cfg.max_positions:
            raise ValueError(f"training sequences reach {longest} tokens > max_positions {cfg.max_positions}")
        mconf = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
            num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
            head_dim=cfg.head_dim, max_position_embeddings=cfg.max_positions, rope_theta=cfg.rope_theta,
            initializer_range=cfg.init_std, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, dtype="float32")
        torch.manual_seed(seed)
        model = LlamaForCausalLM(mconf)
        decay = [p for n_, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n_, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
        steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
        total = steps_per_epoch * epochs

        def lr_at(step: int) -> float:
            if step < cfg.warmup_steps:
                return cfg.lr * (step + 1) / cfg.warmup_steps
            decay_start = total * (1 - cfg.decay_frac)
            if step < decay_start:
                return cfg.lr
            frac = (step - decay_start) / max(1.0, total - decay_start)
            return cfg.lr * (1 - (1 - cfg.min_lr_ratio) * frac)

        order_rng = random.Random(seed + 1)
        model.train()
        losses: list[float] = []
        step, n_tokens = 0, 0
        t_train = time.perf_counter()
        for epoch in range(epochs):
            window: list[float] = []
            for batch_idx in _batches([len(ids) for ids, _ in data], cfg.batch_size, order_rng, cfg.length_pool):
                batch = [data[i] for i in batch_idx]
                width = max(len(ids) for ids, _ in batch)
                ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                labels = torch.full((len(batch), width), -100, dtype=torch.long)
                for b, (row, plen) in enumerate(batch):
                    ids[b, :len(row)] = torch.tensor(row)
                    mask[b, :len(row)] = 1
                    labels[b, plen:len(row)] = torch.tensor(row[plen:])
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                n_tokens += int(mask.sum())
                window.append(loss.item())
                if log and step % 300 == 0:
                    log(f"step {step}/{total}: loss {sum(window[-300:]) / len(window[-300:]):.4f}, "
                        f"lr {lr_at(step - 1):.2e}, {time.perf_counter() - t_train:.1f}s")
                if callback is not None and callback_every and step % callback_every == 0:
                    model.eval()
                    callback(step, model, tokenizer)
                    model.train()
            losses.append(sum(window) / len(window))
            if log:
                log(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}, step {step}, "
                    f"{time.perf_counter() - t_train:.1f}s")
        model.eval()
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.bos_token_id = tokenizer.bos_token_id
        model.save_pretrained(out)
        tokenizer.model_max_length = cfg.max_positions
        tokenizer.save_pretrained(out)
        _portable_tokenizer_class(out)
        seconds = time.perf_counter() - t0
        info = TrainReport(out_dir=out, steps=step, seconds=round(seconds, 2), tokens=n_tokens,
                           params=sum(p.numel() for p in model.parameters()), losses=[round(x, 4) for x in losses],
                           config=asdict(cfg))
        (out / "teacher.json").write_text(json.dumps({**info.to_dict(), "n_train": n_train, "epochs": epochs,
                                                      "seed": seed, "kinds": list(kinds), "max_value": max_value,
                                                      "prompt_template": PROMPT_TEMPLATE}, indent=2))
        if report is not None:
            report.update(info.to_dict())
    finally:
        torch.set_num_threads(prev_threads)
    return out


def _portable_tokenizer_class(folder: Path) -> None:
    """transformers 5 saves ``tokenizer_class: TokenizersBackend``, which transformers 4 cannot
    load; ``PreTrainedTokenizerFast`` (a tokenizer.json wrapper) loads in both, and in vLLM."""
    path = folder / "tokenizer_config.json"
    conf = json.loads(path.read_text())
    if conf.get("tokenizer_class") == "TokenizersBackend":
        conf["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(conf, indent=2))


def training_questions(teacher_dir: str | Path) -> set[str]:
    """The questions the teacher in ``teacher_dir`` was trained on (from its ``teacher.json``), to
    keep prompts and held-out sets disjoint from them."""
    meta = json.loads((Path(teacher_dir) / "teacher.json").read_text())
    return {p.question for p in arithmetic_problems(meta["n_train"], meta["seed"], meta["kinds"],
                                                    max_value=meta["max_value"])}


# --------------------------------------------------------------------------- measuring the teacher

def is_correct(text: str, answer: int | str) -> bool:
    got = extract_boxed(text)
    return got is not None and got == str(answer).strip()


def generate(teacher_dir: str | Path | None, prompts: Sequence[str], *, n: int = 1, temperature: float = 0.0,
             max_new_tokens: int = 96, batch_size: int = 64, seed: int = 0, threads: int = 1,
             loaded: tuple | None = None) -> list[list[str]]:
    """``n`` completions per prompt (the text after the prompt, special tokens dropped) with
    transformers ``generate``, batched with left padding; ``temperature`` 0 is greedy, else plain
    sampling (no top-k/top-p). ``loaded``: an already loaded ``(model, tokenizer)`` instead of
    ``teacher_dir``. A measuring aid; the flow uses its own generation backends."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if loaded is None:
            tokenizer = AutoTokenizer.from_pretrained(teacher_dir, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(teacher_dir, local_files_only=True,
                                                         dtype=torch.float32).eval()
        else:
            model, tokenizer = loaded
        tokenizer.padding_side = "left"
        torch.manual_seed(seed)
        out: list[list[str]] = []
        for lo in range(0, len(prompts), batch_size):
            enc = tokenizer(list(prompts[lo:lo + batch_size]), return_tensors="pt", padding=True)
            kw = ({"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature > 0
                  else {"do_sample": False})
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=n,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **kw)
            texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [texts[i:i + n] for i in range(0, len(texts), n)]
        return out
    finally:
        torch.set_num_threads(prev_threads)


def accuracy_by_level(problems: Sequence[Problem], completions: Sequence[Sequence[str]]) -> dict[str, dict]:
    """Share of correct completions per level and overall, plus per problem ``any`` (pass@n)."""
    buckets: dict[str, list[tuple[int, int, bool]]] = {}
    for p, outs in zip(problems, completions):
        ok = [is_correct(t, p.answer) for t in outs]
        for key in (p.level, "all"):
            buckets.setdefault(key, []).append((sum(ok), len(ok), any(ok)))
    return {k: {"problems": len(v), "accuracy": round(sum(c for c, _, _ in v) / max(1, sum(t for _, t, _ in v)), 4),
                "pass_at_n": round(sum(a for _, _, a in v) / len(v), 4)}
            for k, v in sorted(buckets.items(), key=lambda kv: ("easy", "medium", "hard", "all").index(kv[0]))}
