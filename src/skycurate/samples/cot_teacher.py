"""The CoT demo's tiny arithmetic teacher: tokenizer, training on CPU, and measuring it.

Split out of ``cot`` because this is the part that needs torch, transformers and tokenizers
(imported inside the functions): training a small Llama on the synthetic problems of
``cot_prompts`` and generating from it to measure its accuracy. ``cot`` re-exports everything here
and describes the model, the prompt and the output format.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from skycurate.samples.cot_prompts import (
    DEFAULT_KINDS,
    MAX_VALUE,
    PROMPT_TEMPLATE,
    Problem,
    arithmetic_problems,
    extract_boxed,
)

CHAT_TEMPLATE = ("{%- for message in messages -%}{%- if message['role'] == 'user' -%}"
                 "{{ bos_token }}Question: {{ message['content'] }}\nAnswer:"
                 "{%- elif message['role'] == 'assistant' -%}{{ ' ' ~ (message['content'] | trim) }}{{ eos_token }}"
                 "{%- endif -%}{%- endfor -%}")
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


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
