"""Leakage-audit scoring throughput: the transformers scorer at batch 1 / 8 / 32, length-sorted vs not.

A random-weight Llama model (default hidden 256, 4 layers, 4 heads of 64, vocab 8192) and a BPE
tokenizer are built locally (nothing is downloaded) from the test helper ``tests/leakage/tiny_lm.py``.
The same texts (lengths spread log-uniformly from ~8 to ~600 tokens, in random order) are scored
by every configuration; rows give input tokens per second, the padding share of the batches,
and the ratio to batch 1. A last row turns Min-K%++ moments off (one log-softmax, no p*log p sums)
to show their cost. Every configuration must give the same scores; the script checks that.

Usage: .venv/bin/python benchmarks/audit_scoring.py [--quick] [--texts 256] [--device cpu|cuda]
       [--threads 2] [--repeat 2] [--hidden 256 --layers 4 --vocab 8192] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "leakage"))

import tiny_lm  # noqa: E402 - after the sys.path line above


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Texts whose token counts spread log-uniformly over ~8..600, shuffled."""
    rng = random.Random(seed)
    sentences = tiny_lm.arithmetic_problems(400, seed) + tiny_lm.filler_texts(400, seed)
    out = []
    for _ in range(n):
        target_words = round(float(np.exp(rng.uniform(np.log(6), np.log(420)))))
        words: list[str] = []
        while len(words) < target_words:
            words.extend(rng.choice(sentences).split())
        out.append(" ".join(words[:target_words]))
    return out


def padded_share(lengths: list[int], batch: int, sort: bool) -> float:
    """Share of the model's input positions that are padding under this batching."""
    order = sorted(lengths, reverse=True) if sort else lengths
    total = sum(max(order[i:i + batch]) * len(order[i:i + batch]) for i in range(0, len(order), batch))
    return 1.0 - sum(lengths) / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="64 texts, one repeat")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=2, help="best of N timed runs per configuration")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    if args.quick:
        args.texts, args.repeat = 64, 1

    import torch
    import transformers

    from skycurate.connectors.llm.transformers_scorer import TransformersScorer
    from skycurate.schemas.leakage_audit import AuditConfig

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    texts = make_texts(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        tok = tiny_lm.train_tokenizer(texts[:200] + tiny_lm.filler_texts(100), vocab_size=2000)
        model_dir = tiny_lm.build_tiny_lm(tmp, tok, hidden=args.hidden, layers=args.layers, heads=args.hidden // 64,
                                          intermediate=int(args.hidden * 8 / 3), vocab_size=args.vocab,
                                          max_positions=2048, init_std=0.1, seed=0)
        lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        n_params = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True).parameters())
        configs = [(1, True, True), (8, False, True), (8, True, True), (32, False, True), (32, True, True),
                   (8, True, False)]
        rows, reference = [], None
        for batch, sort, minkpp in configs:
            cfg = AuditConfig(device=args.device, dtype=args.dtype, batch_size=batch, minkpp=minkpp)
            scorer = TransformersScorer(model_dir, cfg, sort_by_length=sort)
            scorer.score(texts[:4])   # warm-up
            best = float("inf")
            for _ in range(args.repeat):
                if scorer.device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                scores = scorer.score(texts)
                if scorer.device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
            losses = np.array([-s.logprobs.astype(np.float64).sum() for s in scores])
            if reference is None:
                reference = losses
            max_diff = float(np.max(np.abs(losses - reference)))
            rows.append({"batch": batch, "sorted": sort, "minkpp": minkpp, "seconds": best,
                         "tokens_per_s": sum(lengths) / best, "pad_share": padded_share(lengths, batch, sort),
                         "max_loss_diff": max_diff, "device": scorer.device})
            scorer.close()

    base = rows[0]["tokens_per_s"]
    print(f"model: Llama hidden {args.hidden}, {args.layers} layers, vocab {args.vocab} "
          f"({n_params / 1e6:.1f} M params); "
          f"{len(texts)} texts, {sum(lengths)} tokens (median {int(np.median(lengths))}, max {max(lengths)}); "
          f"device {rows[0]['device']}, torch threads {args.threads}, best of {args.repeat}")
    print(f"{'batch':>5} {'sorted':>6} {'minkpp':>6} {'seconds':>8} {'tokens/s':>10} {'padding':>8} "
          f"{'vs b=1':>7} {'max |dloss|':>11}")
    for r in rows:
        print(f"{r['batch']:>5} {r['sorted']!s:>6} {r['minkpp']!s:>6} {r['seconds']:>8.2f} "
              f"{r['tokens_per_s']:>10.0f} {r['pad_share']:>8.1%} {r['tokens_per_s'] / base:>6.2f}x "
              f"{r['max_loss_diff']:>11.2e}")
    by = {(r["batch"], r["sorted"], r["minkpp"]): r["tokens_per_s"] for r in rows}
    for b in (8, 32):
        print(f"batch {b}: length-sorted / unsorted = {by[(b, True, True)] / by[(b, False, True)]:.2f}x")
    print(f"batch 8 sorted: without / with Min-K%++ moments = {by[(8, True, False)] / by[(8, True, True)]:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
