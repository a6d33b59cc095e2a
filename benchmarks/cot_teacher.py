"""The CoT demo's tiny arithmetic teacher (``skycurate.samples.cot``): training time and yield.

Trains the teacher on CPU, then measures on held-out problems (disjoint from training) the share
of completions whose ``\\boxed{}`` answer is right, by difficulty (easy = 1 step, medium = 2, hard
= 3): greedy and sampled (temperature 0.7, 4 samples) with transformers ``generate`` (batched, left
padding), and the same with vLLM CPU (``.venv-vllm``) when it is there; greedy outputs of both
engines are also compared text for text. Nothing here asserts a number.

    .venv/bin/python benchmarks/cot_teacher.py [--n-train 38400] [--epochs 1] [--threads 1]
        [--eval 200] [--samples 4] [--no-vllm] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from skycurate.samples import cot

VLLM_SCRIPT = r'''
import json, os, sys, time

def main(req_path, resp_path):
    req = json.load(open(req_path))
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    t0 = time.perf_counter()
    from vllm import LLM, SamplingParams
    llm = LLM(model=req["model"], dtype="float32", seed=0, max_model_len=req["max_model_len"],
              enable_prefix_caching=False)
    out = {"load_s": time.perf_counter() - t0}
    try:
        for name, kw in req["runs"].items():
            t = time.perf_counter()
            res = llm.generate(req["prompts"], SamplingParams(**kw), use_tqdm=False)
            out[name] = [[c.text for c in r.outputs] for r in res]
            out[name + "_s"] = time.perf_counter() - t
        res = llm.chat([[{"role": "user", "content": q}] for q in req["chat"]],
                       SamplingParams(temperature=0, max_tokens=req["max_tokens"]), use_tqdm=False)
        out["chat"] = [r.outputs[0].text for r in res]
        with open(resp_path, "w") as f:
            json.dump(out, f)
    finally:
        core = llm.llm_engine.engine_core
        core.shutdown()
        thread = getattr(core, "output_queue_thread", None)
        if thread is not None:
            thread.join(timeout=10)

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
'''


def vllm_python() -> str | None:
    cand = os.environ.get("SKYCURATE_VLLM_PYTHON") or str(Path(sys.prefix).parent / ".venv-vllm" / "bin" / "python")
    return cand if Path(cand).is_file() else None


def run_vllm(python: str, teacher: Path, problems, samples: int, max_tokens: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        req, resp, script = Path(tmp) / "req.json", Path(tmp) / "resp.json", Path(tmp) / "vllm_gen.py"
        script.write_text(VLLM_SCRIPT)
        req.write_text(json.dumps({
            "model": str(teacher), "prompts": [p.prompt for p in problems], "max_model_len": 256,
            "max_tokens": max_tokens, "chat": [p.question for p in problems],
            "runs": {"greedy": {"temperature": 0.0, "max_tokens": max_tokens},
                     "sampled": {"n": samples, "temperature": 0.7, "max_tokens": max_tokens}}}))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0", OMP_NUM_THREADS=str(threads))
        t = time.perf_counter()
        proc = subprocess.run([python, str(script), str(req), str(resp)], env=env, capture_output=True, text=True,
                              timeout=900, check=False)
        if proc.returncode != 0 or not resp.is_file():
            raise RuntimeError(f"vLLM worker failed ({proc.returncode}): {proc.stderr[-2000:]}")
        out = json.loads(resp.read_text())
        out["wall_s"] = time.perf_counter() - t
        return out


def table(title: str, scores: dict) -> None:
    cells = "  ".join(f"{k} {v['accuracy']:.0%} (pass@n {v['pass_at_n']:.0%}, {v['problems']})"
                      for k, v in scores.items())
    print(f"  {title:<22} {cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=38400)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster on a busy 2-core machine)")
    ap.add_argument("--config", default="{}", help="TeacherConfig overrides as JSON")
    ap.add_argument("--eval", type=int, default=201, help="held-out problems (a multiple of 3: easy/medium/hard)")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--out", help="teacher folder (default: a temporary one)")
    ap.add_argument("--teacher", help="measure this already trained teacher (no training)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    tmp = None
    if args.out:
        out = Path(args.out)
    else:
        tmp = tempfile.TemporaryDirectory()
        out = Path(tmp.name) / "teacher"
    if args.teacher:
        out = Path(args.teacher)
        report = json.loads((out / "teacher.json").read_text())
        args.seed = report["seed"]
        print(f"teacher {out}: trained in {report['seconds']:.1f}s, {report['steps']} steps")
    else:
        cfg = cot.TeacherConfig(**{"threads": args.threads, **json.loads(args.config)})
        report = {}
        print(f"training: {args.n_train} problems x {args.epochs} epoch(s), {cfg}")
        cot.train_teacher(out, n_train=args.n_train, epochs=args.epochs, seed=args.seed, config=cfg, report=report,
                          log=lambda m: print("  " + m, flush=True))
        print(f"trained in {report['seconds']:.1f}s: {report['steps']} steps, {report['tokens']} tokens, "
              f"{report['params']} parameters, loss by epoch {report['losses']}")
    results: dict = {"train": report, "eval_problems": args.eval}

    held = cot.arithmetic_problems(args.eval, seed=10_000 + args.seed, exclude=cot.training_questions(out))
    prompts = [p.prompt for p in held]
    print(f"held-out problems: {len(held)}")
    t = time.perf_counter()
    greedy = cot.generate(out, prompts, max_new_tokens=args.max_new_tokens, threads=args.threads)
    results["hf_greedy"] = cot.accuracy_by_level(held, greedy)
    results["hf_greedy_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sampled = cot.generate(out, prompts, n=args.samples, temperature=0.7, max_new_tokens=args.max_new_tokens,
                           threads=args.threads)
    results["hf_sampled"] = cot.accuracy_by_level(held, sampled)
    results["hf_sampled_s"] = time.perf_counter() - t
    print("transformers:")
    table("greedy", results["hf_greedy"])
    table(f"sampled T=0.7 x{args.samples}", results["hf_sampled"])
    finished = sum(o[0].rstrip().endswith("}.") for o in greedy)
    print(f"  greedy completions ending in '\\boxed{{..}}.': {finished}/{len(greedy)}")
    for p, o in list(zip(held, greedy))[:3]:
        print(f"  e.g. {p.prompt!r} -> {o[0]!r} (reference {p.answer})")

    python = None if args.no_vllm else vllm_python()
    if python:
        vl = run_vllm(python, out, held, args.samples, args.max_new_tokens, args.threads)
        results["vllm_greedy"] = cot.accuracy_by_level(held, vl["greedy"])
        results["vllm_sampled"] = cot.accuracy_by_level(held, vl["sampled"])
        results["vllm_chat_greedy"] = cot.accuracy_by_level(held, [[t] for t in vl["chat"]])
        results["vllm_greedy_same_text"] = sum(a[0] == b[0] for a, b in zip(vl["greedy"], greedy)) / len(held)
        results["vllm_chat_same_text"] = sum(a == b[0] for a, b in zip(vl["chat"], vl["greedy"])) / len(held)
        results["vllm_s"] = {k: round(vl[k], 1) for k in ("load_s", "greedy_s", "sampled_s", "wall_s")}
        print(f"vLLM CPU ({python}):")
        table("greedy", results["vllm_greedy"])
        table(f"sampled T=0.7 x{args.samples}", results["vllm_sampled"])
        table("chat greedy", results["vllm_chat_greedy"])
        print(f"  greedy text identical to transformers: {results['vllm_greedy_same_text']:.0%}; chat == prompt "
              f"format: {results['vllm_chat_same_text']:.0%}; seconds {results['vllm_s']}")
    elif not args.no_vllm:
        print("vLLM: no .venv-vllm interpreter (make vllm); skipped")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
