"""A tiny judge model that has memorised given replies to given prompts, built offline in seconds.

Why: a judge's replies must be known to test them exactly, and nothing can be downloaded. A tiny
Llama (a byte-level BPE tokenizer trained on the prompts, two layers, head_dim 32 for vLLM's CPU
attention) is trained on the
(prompt, reply) pairs until its greedy reply to every prompt is the given one; the builder checks
that before saving. The folder is an ordinary Hugging Face model that transformers, vLLM offline
and ``vllm serve`` all load, so the same memorised replies come back through every engine. Prompts
are used as raw text (``judge.mode: raw``; no chat template).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

from skycurate.errors import SkycurateError

SPECIALS = ["<unk>", "<pad>", "</s>"]


def _tokenizer(texts: Sequence[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts) * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>", pad_token="<pad>",
                                   padding_side="left")


def _batch(tok, pairs: Sequence[tuple[str, str]]):
    import torch

    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p, _ in pairs]
    replies = [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for _, r in pairs]
    width = max(len(p) + len(r) for p, r in zip(prompts, replies, strict=True))
    ids = torch.full((len(pairs), width), tok.pad_token_id)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), -100)
    for b, (p, r) in enumerate(zip(prompts, replies, strict=True)):
        seq = p + r
        start = width - len(seq)                      # left-padded, as the engines pad
        ids[b, start:] = torch.tensor(seq)
        mask[b, start:] = 1
        labels[b, start + len(p):] = torch.tensor(r)
    return ids, mask, labels


def _greedy(model, tok, prompt: str, max_new_tokens: int) -> str:
    import torch

    enc = tok(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def build_tiny_judge(out_dir, pairs: Sequence[tuple[str, str]], seed: int = 0, max_steps: int = 1500,
                     vocab_size: int = 320) -> Path:
    """Train until each prompt's greedy reply is its given reply; raise if ``max_steps`` is not enough."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer([p + r for p, r in pairs], vocab_size)
    ids, mask, labels = _batch(tok, pairs)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, head_dim=32,
                         max_position_embeddings=max(512, 2 * ids.shape[1]), rms_norm_eps=1e-5,
                         bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    random.seed(seed)
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    longest = max(len(tok(r)["input_ids"]) for _, r in pairs) + 2
    steps, done = 0, False
    while steps < max_steps and not done:
        model.train()
        for _ in range(50):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        steps += 50
        model.eval()
        done = loss.item() < 0.05 and all(_greedy(model, tok, p, longest) == r for p, r in pairs)
    if not done:
        raise SkycurateError(f"tiny judge: replies not memorised after {steps} steps (loss {loss.item():.3f})")
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                               do_sample=False)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "tiny_judge.json").write_text(json.dumps({"seed": seed, "pairs": len(pairs), "steps": steps,
                                                     "build_seconds": round(time.perf_counter() - t0, 2)}))
    return out
