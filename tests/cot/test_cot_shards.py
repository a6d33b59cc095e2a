"""The shard journal of teacher generation: keyed by the code's version, and never holding a shard
with a sample the engine failed for a passing reason (the real OpenAI-compatible client against a
small local endpoint that answers 503 while told to)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from skycurate.connectors.llm.generation import OpenAIGenerator
from skycurate import codehash as _code
from skycurate.schemas import cot as S
from skycurate.schemas.generation import SamplingParams
from skycurate.stages.cot.generate import PromptItem, run_shards, transient_error
from skycurate.stages.cot.teacher import work_key

PARAMS = SamplingParams(temperature=0.0, max_new_tokens=8)
ITEMS = [PromptItem(id="p1", text="1+1="), PromptItem(id="p2", text="busy: 2+2="), PromptItem(id="p3", text="bad"),
         PromptItem(id="p4", text="3+3=")]


class _Endpoint(BaseHTTPRequestHandler):
    state: dict = {}

    def log_message(self, *args):
        pass

    def do_POST(self):
        prompt = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["prompt"]
        self.state["requests"] += 1
        if prompt.startswith("busy") and self.state["busy"]:
            status, body = 503, {"error": "overloaded"}
        elif prompt == "bad":       # the prompt's own fault: a final answer
            status, body = 400, {"error": "prompt rejected"}
        else:
            status, body = 200, {"choices": [{"index": 0, "text": " 42", "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def endpoint():
    _Endpoint.state = {"requests": 0, "busy": True}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    gen = OpenAIGenerator(f"http://127.0.0.1:{server.server_port}/v1", "teacher", retries=0, concurrency=1)
    yield gen, _Endpoint.state
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("error, transient", [
    ("HTTP 503: overloaded", True), ("HTTP 429: slow down", True), ("ReadTimeout: timed out", True),
    ("ConnectError: [Errno 111] Connection refused", True), ("RemoteProtocolError: peer closed", True),
    ("HTTP 400: prompt rejected", False), ("no choices in the response", False), (None, False),
    ("vllm: prompt is longer than the context", False),
])
def test_which_engine_errors_are_transient(error, transient):
    assert transient_error(error) is transient


def test_a_shard_with_a_transient_failure_is_retried_and_force_redoes_journalled_ones(endpoint, tmp_path):
    gen, state = endpoint
    first = run_shards(ITEMS, gen.generate, PARAMS, tmp_path, shard_size=2)   # [p1, p2] [p3, p4]
    assert (first.generated, first.unjournalled) == (1, 1)      # p2's 503 keeps its shard out of the journal
    assert len(list(tmp_path.glob("shard-*.parquet"))) == 1     # p3's 400 is the prompt's own: journalled
    state["busy"] = False
    again = run_shards(ITEMS, gen.generate, PARAMS, tmp_path, shard_size=2)
    assert (again.reused, again.generated, again.unjournalled) == (1, 1, 0)
    state["requests"] = 0
    resumed = run_shards(ITEMS, gen.generate, PARAMS, tmp_path, shard_size=2)
    assert (resumed.reused, state["requests"]) == (2, 0)
    forced = run_shards(ITEMS, gen.generate, PARAMS, tmp_path, shard_size=2, force=True)
    assert (forced.reused, forced.generated, state["requests"]) == (0, 2, 4)


def test_the_shard_journal_is_named_after_the_code_version(monkeypatch):
    assert {"skycurate.stages.cot.generate", "skycurate.connectors.llm.generation"} <= _code.closure(
        ["skycurate.stages.cot.teacher"])
    args = ("openai:teacher@http://x", S.TemplateConfig(), S.EngineConfig(), S.GenerateConfig())
    before = work_key(*args)
    assert work_key(*args) == before
    monkeypatch.setattr(_code, "module_code_version", lambda module: "9.9+upgraded")
    assert work_key(*args) != before
