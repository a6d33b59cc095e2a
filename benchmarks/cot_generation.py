"""CoT generation throughput: the distill flow's generation stage against bare ``LLM.generate``.

Same model, same prompts, same sampling parameters (per-prompt seeds, n samples, prefix caching
on), same vLLM options, in one run:

- ``bare``: one ``LLM.generate`` call over every prompt in vLLM's interpreter (engine start-up
  not timed);
- ``pipeline``: ``stages/cot/generate.run_shards`` through ``VllmGenerator`` (the persistent
  worker: JSON request/response files, tokenisation, shard journal written as Parquet), at two
  shard sizes (worker start-up not timed);
- prefix caching: bare ``LLM.generate`` of prompts that share a long prefix, with
  ``enable_prefix_caching`` on and off (a random-weight Llama with a 4k context, since the demo
  teacher's context is 256 tokens).

    .venv/bin/python benchmarks/cot_generation.py [--teacher sample/cot/teacher] [--prompts 512]

Needs ``.venv-vllm`` (``make vllm``). Figures are tokens/s (prompt + completion) and their ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BARE = r'''
import json, os, sys, time
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")   # GiB: what the worker uses
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt
req = json.load(open(sys.argv[1]))
llm = LLM(model=req["model"], seed=0, **req["options"])
tok = llm.get_tokenizer()
ids = [tok.encode(t, add_special_tokens=True) for t in req["prompts"]]
params = [SamplingParams(n=req["n"], temperature=req["temperature"], top_p=req["top_p"], max_tokens=req["max_tokens"],
                         seed=req["seed"] + i) for i in range(len(ids))]
llm.generate([TokensPrompt(prompt_token_ids=ids[0])], params[0], use_tqdm=False)   # warm-up
t0 = time.perf_counter()
outs = llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
secs = time.perf_counter() - t0
prompt_toks = sum(len(i) for i in ids) * req["n"]
gen_toks = sum(len(c.token_ids) for o in outs for c in o.outputs)
json.dump({"seconds": secs, "prompt_tokens": prompt_toks, "completion_tokens": gen_toks}, open(sys.argv[2], "w"))
core = llm.llm_engine.engine_core
core.shutdown()
t = getattr(core, "output_queue_thread", None)
if t is not None: t.join(timeout=10)
'''


def bare(python: str, model: str, prompts: list[str], n: int, temperature: float, top_p: float, max_tokens: int,
         options: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rq, rs, script = Path(tmp, "rq.json"), Path(tmp, "rs.json"), Path(tmp, "bare.py")
        script.write_text(BARE)
        rq.write_text(json.dumps({"model": model, "prompts": prompts, "n": n, "temperature": temperature,
                                  "top_p": top_p, "max_tokens": max_tokens, "seed": 0, "options": options}))
        env = {k: v for k, v in __import__("os").environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        proc = subprocess.run([python, str(script), str(rq), str(rs)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"bare vLLM run failed: {proc.stderr.strip().splitlines()[-1:]}")
        return json.loads(rs.read_text())


def pipeline(model: str, prompts: list[str], n: int, temperature: float, top_p: float, max_tokens: int,
             shard_size: int, options: dict) -> dict:
    import pyarrow.parquet as pq

    from skycurate.connectors.llm.vllm_generation import VllmGenerator
    from skycurate.schemas.generation import SamplingParams
    from skycurate.stages.cot.generate import PromptItem, run_shards

    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_tokens, seed=0)
    items = [PromptItem(id=f"p{i:06d}", text=t) for i, t in enumerate(prompts)]
    with VllmGenerator(model, options=options) as gen, tempfile.TemporaryDirectory() as tmp:
        gen.generate(prompts[:1], params.model_copy(update={"n": 1}))           # start the worker, warm up
        t0 = time.perf_counter()
        report = run_shards(items, gen.generate, params, Path(tmp) / "work", shard_size)
        secs = time.perf_counter() - t0
        rows = [pq.read_table(f) for f in report.files]
        return {"seconds": secs, "prompt_tokens": sum(sum(t["prompt_tokens"].to_pylist()) for t in rows),
                "completion_tokens": sum(sum(t["completion_tokens"].to_pylist()) for t in rows),
                "shards": report.shards}


def _tps(r: dict) -> float:
    return (r["prompt_tokens"] + r["completion_tokens"]) / r["seconds"]


def prefix_model(folder: Path, tokenizer_dir: Path) -> str:
    """A random-weight Llama with a 4k context and the teacher's tokenizer."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").is_file():
        return str(folder)
    torch.manual_seed(0)
    conf = LlamaConfig(vocab_size=384, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=4, head_dim=64, max_position_embeddings=4096,
                       bos_token_id=1, eos_token_id=2, pad_token_id=3)
    LlamaForCausalLM(conf).save_pretrained(folder)
    for f in tokenizer_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, folder / f.name)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 4096
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return str(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default=str(ROOT / "sample" / "cot" / "teacher"))
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--prefix-tokens", type=int, default=1500)
    args = ap.parse_args()

    from skycurate.connectors.llm.vllm_process import find_vllm_python
    from skycurate.samples import cot

    python = find_vllm_python()
    if python is None:
        sys.exit("no .venv-vllm: run `make vllm` first")
    teacher = Path(args.teacher)
    if not (teacher / "teacher.json").is_file():
        print(f"training the demo teacher into {teacher} (~2-3 min) ...", flush=True)
        cot.train_teacher(teacher)
    problems = cot.arithmetic_problems(args.prompts, seed=123, exclude=cot.training_questions(teacher))
    prompts = [p.prompt for p in problems]
    options = {"enable_prefix_caching": True, "enable_chunked_prefill": False, "dtype": "float32"}
    common = dict(n=args.samples, temperature=0.8, top_p=1.0, max_tokens=args.max_new_tokens)
    print(f"{len(prompts)} prompts x {args.samples} samples, up to {args.max_new_tokens} new tokens, "
          f"teacher {teacher.name}, vLLM CPU ({python})", flush=True)
    b = bare(python, str(teacher), prompts, options=options, **common)
    p_all = pipeline(str(teacher), prompts, shard_size=len(prompts), options=options, **common)
    p_4 = pipeline(str(teacher), prompts, shard_size=max(1, len(prompts) // 4), options=options, **common)
    print(f"{'run':<34}{'seconds':>9}{'prompt tok':>12}{'compl tok':>11}{'tok/s':>9}{'vs bare':>9}")
    for name, r in (("bare LLM.generate", b), ("pipeline, 1 shard", p_all), (f"pipeline, {p_4['shards']} shards", p_4)):
        print(f"{name:<34}{r['seconds']:>9.2f}{r['prompt_tokens']:>12,}{r['completion_tokens']:>11,}"
              f"{_tps(r):>9,.0f}{_tps(r) / _tps(b):>9.2f}")

    model = prefix_model(ROOT / ".bench" / "prefix-llama", teacher)
    filler = " ".join(f"Rule {i}: add the numbers, then check the sum twice." for i in range(400))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    ids = tok(filler, add_special_tokens=False)["input_ids"][:args.prefix_tokens]
    prefix = tok.decode(ids)
    shared = [prefix + "\n" + p for p in prompts[:128]]
    pc = dict(n=1, temperature=0.0, top_p=1.0, max_tokens=8)
    on = bare(python, model, shared, options={**options, "max_model_len": 4096}, **pc)
    off = bare(python, model, shared, options={**options, "max_model_len": 4096, "enable_prefix_caching": False}, **pc)
    print(f"\nprefix caching: {len(shared)} prompts sharing a {len(ids)}-token prefix, 8 new tokens, random 4k Llama")
    for name, r in (("prefix caching on", on), ("prefix caching off", off)):
        print(f"{name:<34}{r['seconds']:>9.2f}{r['prompt_tokens']:>12,}{r['completion_tokens']:>11,}{_tps(r):>9,.0f}")
    print(f"speed-up from prefix caching: {_tps(on) / _tps(off):.2f}x")


if __name__ == "__main__":
    main()
