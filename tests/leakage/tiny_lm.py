"""Tiny local causal LMs for the leakage-audit tests (model hubs are unreachable: nothing is downloaded).

A byte-level BPE tokenizer trained with ``tokenizers`` on the given texts, wrapped in
``PreTrainedTokenizerFast``; a random-weight ``LlamaConfig`` model with a fixed seed; an optional
short AdamW loop on CPU; both saved with ``save_pretrained`` so ``AutoModelForCausalLM`` /
``AutoTokenizer`` load the folder with ``local_files_only=True``. Also the synthetic benchmark
(templated arithmetic word problems) and unrelated filler text of the proof test.

A plain module (not a conftest): the tests and ``benchmarks/audit_scoring.py`` import it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def train_tokenizer(texts: Sequence[str], vocab_size: int = 600):
    """Byte-level BPE over ``texts`` (any text tokenises, nothing is unknown)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


def random_model(tokenizer, *, hidden: int = 64, layers: int = 2, heads: int = 4, intermediate: int | None = None,
                 max_positions: int = 512, init_std: float = 0.02, vocab_size: int | None = None,
                 seed: int = 0):
    """A Llama model with random weights drawn from ``seed`` (head_dim = hidden / heads). A larger
    ``init_std`` gives peaked, far-from-uniform next-token distributions without training;
    ``vocab_size`` above the tokenizer's pads the embedding (a realistic LM-head cost)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=max(vocab_size or 0, len(tokenizer)), hidden_size=hidden, intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads, head_dim=hidden // heads,
        max_position_embeddings=max_positions, initializer_range=init_std, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def train(model, tokenizer, texts: Sequence[str], *, epochs: int, lr: float = 3e-3, batch_size: int = 16,
          seed: int = 0) -> list[float]:
    """Plain next-token training on ``texts`` (no BOS, like the audit scores them); mean loss per epoch."""
    import torch

    torch.manual_seed(seed)
    order_rng = random.Random(seed)
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    history = []
    for _ in range(epochs):
        order = list(range(len(encoded)))
        order_rng.shuffle(order)
        losses = []
        for lo in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[lo:lo + batch_size]]
            width = max(len(ids) for ids in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, row in enumerate(batch):
                ids[b, :len(row)] = torch.tensor(row)
                mask[b, :len(row)] = 1
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append(sum(losses) / len(losses))
    model.eval()
    return history


def save(model, tokenizer, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_lm(out_dir: str | Path, tokenizer, train_texts: Sequence[str] = (), *, epochs: int = 0,
                  seed: int = 0, lr: float = 3e-3, **model_kw) -> Path:
    """Random model (``seed``), optionally trained on ``train_texts``, saved with its tokenizer into ``out_dir``."""
    model = random_model(tokenizer, seed=seed, **model_kw)
    if epochs and train_texts:
        train(model, tokenizer, train_texts, epochs=epochs, lr=lr, seed=seed)
    return save(model, tokenizer, out_dir)


# --------------------------------------------------------------------------- synthetic texts

NAMES = ["Tom", "Anna", "Liam", "Maya", "Omar", "Sara", "Ivan", "Chen", "Lena", "Raj", "Nora", "Hugo", "Zoe",
         "Ben", "Ines", "Kofi", "Mila", "Yuki", "Paul", "Ada"]
OBJECTS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "shells", "stamps", "cards", "coins",
           "plums", "buttons"]
TEMPLATES = [
    ("{n1} has {a} {o}. {n2} gives {n1} {b} more {o}. How many {o} does {n1} have now? Answer: {r1}.",
     lambda a, b: a + b),
    ("A box holds {a} {o}. {n1} buys {b} boxes. How many {o} does {n1} have? Answer: {r1}.",
     lambda a, b: a * b),
    ("{n1} had {a} {o} and gave {b} of them to {n2}. How many {o} are left? Answer: {r1}.",
     lambda a, b: a - b),
    ("{n1} reads {a} pages a day for {b} days. How many pages does {n1} read? Answer: {r1}.",
     lambda a, b: a * b),
    ("{n1} and {n2} share {a} {o}. {n1} takes {b} {o}. How many {o} does {n2} get? Answer: {r1}.",
     lambda a, b: a - b),
]


def arithmetic_problems(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct word problems in one shared style. Item ``i`` uses template ``i % 5`` and object
    ``i % 12``, so every block of consecutive items has the same template mix and every object turns
    up in every block of 60 (a word never seen in training would dominate a split's loss); names
    and numbers are random."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        template, op = TEMPLATES[len(out) % len(TEMPLATES)]
        n1, n2 = rng.sample(NAMES, 2)
        a = rng.randint(12, 98)
        b = rng.randint(2, min(11, a - 1))
        text = template.format(n1=n1, n2=n2, a=a, b=b, o=OBJECTS[len(out) % len(OBJECTS)], r1=op(a, b))
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


_ADJ = ["quiet", "old", "green", "narrow", "busy", "cold", "bright", "wooden", "small", "long"]
_NOUN = ["river", "market", "bridge", "garden", "harbour", "library", "station", "forest", "valley", "tower"]
_VERB = ["lies beside", "faces", "opens onto", "stands near", "looks over", "runs past"]
_PLACE = ["the square", "the hills", "the coast", "the old town", "the park", "the lake"]
_TAIL = ["Visitors walk there in the morning.", "The light changes in the evening.",
         "It is crowded on market days.", "Birds gather there in spring.", "The path is lined with trees.",
         "Fishermen repair their nets nearby.", "Children play there after school."]


def filler_texts(n: int, seed: int = 0) -> list[str]:
    """Unrelated descriptive prose (no arithmetic), 2-4 sentences each."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [f"The {rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_VERB)} {rng.choice(_PLACE)}."]
        parts += rng.sample(_TAIL, rng.randint(1, 3))
        out.append(" ".join(parts))
    return out
