"""Tokens/s of the transformers generation backend at several batch sizes, on whatever device is here.

Builds a random-weight Llama of a realistic shape from a config on the device (nothing to
download; the lent GPU machines cannot reach a model hub), then runs ``TransformersGenerator``
(the distill flow's transformers backend: left padding, length sorting) over the same prompts at
each batch size and prints completion tokens/s, with the device name:

    python benchmarks/cot_transformers_gpu.py                 # ~0.5B Llama on cuda (bf16)
    python benchmarks/cot_transformers_gpu.py --shape tiny    # a CPU smoke run of the script

Random weights almost never emit EOS, so nearly every sequence runs to ``--new-tokens``: the figure
is decode throughput at a fixed length.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

SHAPES = {   # hidden, layers, heads, kv heads, intermediate, vocab
    "0.5b": (896, 24, 14, 2, 4864, 151_936),     # Qwen2.5-0.5B-like
    "1.5b": (1536, 28, 12, 2, 8960, 151_936),    # Qwen2.5-1.5B-like
    "tiny": (64, 2, 2, 2, 128, 1_000),
}


def build(shape: str, folder: str, device: str):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    hidden, layers, heads, kv, inter, vocab = SHAPES[shape]
    conf = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv, intermediate_size=inter, max_position_embeddings=4096,
                       bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(conf)
    model.save_pretrained(folder)
    words = {f"w{i}": i for i in range(min(vocab, 5000))}
    words.update({"<pad>": 0, "<s>": 1, "</s>": 2})
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>").save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    ap.add_argument("--batch-sizes", default="1,8,32,64")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    args = ap.parse_args()

    import torch

    from skycurate.connectors.llm.generation import TransformersGenerator
    from skycurate.schemas.generation import SamplingParams

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    with tempfile.TemporaryDirectory() as folder:
        n_params = build(args.shape, folder, device)
        prompts = [" ".join(f"w{(i * 7 + j) % 4000 + 3}" for j in range(args.prompt_words - i % 16))
                   for i in range(args.prompts)]
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=args.new_tokens)
        rows = []
        for bs in [int(x) for x in args.batch_sizes.split(",")]:
            gen = TransformersGenerator(folder, device=device, batch_size=bs)
            if device == "cuda":
                gen.model.to(torch.bfloat16)
            gen.generate(prompts[:bs], params)                      # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = gen.generate(prompts, params)
            if device == "cuda":
                torch.cuda.synchronize()
            secs = time.perf_counter() - t0
            toks = sum(g.completion_tokens for gens in out for g in gens)
            rows.append({"batch_size": bs, "seconds": round(secs, 2), "completion_tokens": toks,
                         "tokens_per_s": round(toks / secs, 1)})
            gen.close()
            del gen
    print(f"transformers backend, random {args.shape} Llama ({n_params / 1e6:.0f}M params), {name}, "
          f"{args.prompts} prompts of ~{args.prompt_words} tokens, {args.new_tokens} new tokens, greedy")
    print(f"{'batch':>6}{'seconds':>10}{'tokens':>10}{'tok/s':>10}{'vs batch 1':>12}")
    for r in rows:
        print(f"{r['batch_size']:>6}{r['seconds']:>10.2f}{r['completion_tokens']:>10,}{r['tokens_per_s']:>10,.1f}"
              f"{r['tokens_per_s'] / rows[0]['tokens_per_s']:>12.2f}")
    print(json.dumps({"device": name, "shape": args.shape, "params": n_params, "rows": rows}))


if __name__ == "__main__":
    main()
