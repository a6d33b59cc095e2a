"""The vLLM scoring engine (vLLM in its own virtualenv, ``make vllm``) gives the same per-token
log-probs, losses and Min-K% as the transformers engine on the same tiny model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_lm  # noqa: E402

from skycurate.connectors.llm import EngineError, open_scorer  # noqa: E402
from skycurate.schemas.leakage_audit import AuditConfig  # noqa: E402
from skycurate.stages.leakage.membership import score_benchmark, summarize  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    texts = tiny_lm.arithmetic_problems(40, seed=3) + tiny_lm.filler_texts(20, seed=3)
    tok = tiny_lm.train_tokenizer(texts, vocab_size=400)
    # vLLM's CPU attention needs head_dim 32/64/128: hidden 64 with 2 heads.
    return tiny_lm.build_tiny_lm(tmp_path_factory.mktemp("vllm_lm"), tok, texts, epochs=3, seed=0, heads=2,
                                 init_std=0.2)


def test_vllm_and_transformers_give_the_same_scores(vllm_python, model_dir):
    problems = tiny_lm.arithmetic_problems(30, seed=9)
    splits = {"train": [(f"tr{i}", t) for i, t in enumerate(problems[:10])],
              "test": [(f"te{i}", t) for i, t in enumerate(problems[10:20])],
              "reference": [(f"re{i}", t) for i, t in enumerate(problems[20:])] + [("re-empty", ""), ("re-1", "A")]}
    base = dict(device="cpu", dtype="float32", max_tokens=24, minkpp=False, keep_token_scores=True)
    hf = score_benchmark(open_scorer(model_dir, AuditConfig(**base)), "b", splits, AuditConfig(**base))
    vl_cfg = AuditConfig(engine="vllm", vllm_python=vllm_python, **base)
    vl = score_benchmark(open_scorer(model_dir, vl_cfg), "b", splits, vl_cfg)
    assert hf["item_id"].to_pylist() == vl["item_id"].to_pylist()
    assert hf["n_tokens"].to_pylist() == vl["n_tokens"].to_pylist()          # same tokens, same truncation
    assert hf["truncated"].to_pylist() == vl["truncated"].to_pylist() and any(hf["truncated"].to_pylist())
    for a, b in zip(hf["token_logprobs"].to_pylist(), vl["token_logprobs"].to_pylist()):
        if a is None or b is None or not a:
            assert (a or []) == (b or [])
            continue
        np.testing.assert_allclose(np.array(a), np.array(b), atol=2e-3)
    for col in ("loss_mean", "min_k", "zlib_ratio"):
        x = np.array(hf[col].to_pylist(), dtype=float)
        y = np.array(vl[col].to_pylist(), dtype=float)
        np.testing.assert_allclose(x, y, atol=2e-3, equal_nan=True)
    s_hf, s_vl = summarize(hf, AuditConfig(**base)), summarize(vl, vl_cfg)
    assert abs(s_hf.delta1.value - s_vl.delta1.value) < 1e-3
    assert vl["min_k_pp"].null_count == vl.num_rows  # no full logits from vLLM: no Min-K%++


def test_a_broken_vllm_interpreter_is_one_clear_error(model_dir, tmp_path):
    from skycurate.connectors.llm.vllm_process import VllmProcessScorer

    scorer = VllmProcessScorer(model_dir, AuditConfig(engine="vllm", device="cpu"), str(tmp_path / "nope" / "python"))
    with pytest.raises(EngineError, match="vllm worker"):
        scorer.score(["some text to score here"])


@pytest.fixture(scope="module")
def vllm_server(vllm_serve, model_dir):
    """A real `vllm serve` (OpenAI-compatible API server) of the tiny model on 127.0.0.1."""
    with vllm_serve(model_dir, "tiny", args=["--dtype", "float32", "--max-model-len", "512", "--enforce-eager"]) as url:
        yield url


@pytest.mark.usefixtures("prefect_harness")
def test_reference_builder_through_a_real_vllm_server(vllm_server, model_dir, tmp_path):
    import json

    from typer.testing import CliRunner

    from skycurate import catalog
    from skycurate.cli import app

    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "test.jsonl").write_text("".join(json.dumps({"text": t}) + "\n"
                                              for t in tiny_lm.arithmetic_problems(12, seed=21)))
    store = str(tmp_path / "store")
    result = CliRunner().invoke(app, ["run", "leakage-reference", "--benchmark", f"arith={bench}", "--engine", "openai",
                                      "--base-url", vllm_server, "--model", "tiny", "--samples", "5", "--store", store,
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    items = catalog.open(out["datasets"]["reference"]["ref"], store=store).to_table().to_pylist()
    assert 0 < len(items) <= 5 and all(i["engine"].startswith("openai:tiny@") for i in items)
    assert out["stats"]["prompts_sent"] >= len(items)
