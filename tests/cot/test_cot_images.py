"""Prompt images reach the teacher: the shard journal tells prompts apart by their images, chat
endpoints get them as data URLs before the text (in order), raw templates refuse them up front."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from skycurate.connectors.llm.generation import OpenAIGenerator
from skycurate.errors import SkycurateError
from skycurate.schemas import cot as S
from skycurate.schemas.generation import SamplingParams
from skycurate.stages.cot.generate import PromptItem, run_shards, shard_digest
from skycurate.stages.cot.prompts import generation_items


def png(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


RED, BLUE = png((255, 0, 0)), png((0, 0, 255))


def test_the_shard_name_depends_on_the_images_and_their_order():
    text = PromptItem(id="p1", text="What colour?")
    assert shard_digest([text]) == shard_digest([PromptItem(id="p1", text="What colour?", images=())])
    red = shard_digest([PromptItem(id="p1", text="What colour?", images=(RED,))])
    assert len({shard_digest([text]), red, shard_digest([PromptItem(id="p1", text="What colour?", images=(BLUE,))]),
                shard_digest([PromptItem(id="p1", text="What colour?", images=(RED, BLUE))]),
                shard_digest([PromptItem(id="p1", text="What colour?", images=(BLUE, RED))])}) == 5


class _Endpoint(BaseHTTPRequestHandler):
    bodies: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.bodies.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
        data = json.dumps({"choices": [{"index": 0, "message": {"content": "red"}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def endpoint():
    _Endpoint.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", _Endpoint.bodies
    server.shutdown()
    server.server_close()


def test_a_chat_endpoint_gets_the_images_as_data_urls_before_the_text(endpoint, tmp_path):
    url, bodies = endpoint
    gen = OpenAIGenerator(url, "vlm", chat=True, retries=0, concurrency=1)
    items = [PromptItem(id="a", text="Which colour first?", images=(RED, BLUE)), PromptItem(id="b", text="2+2=")]
    report = run_shards(items, gen.generate, SamplingParams(temperature=0.0, max_new_tokens=4), tmp_path, 2)
    assert report.generated == 1
    by_text = {}
    for path, body in bodies:
        assert path == "/v1/chat/completions"
        [turn] = body["messages"]
        by_text[json.dumps(turn["content"])[:40]] = turn["content"]
    with_images = next(c for c in by_text.values() if isinstance(c, list))
    assert [p["type"] for p in with_images] == ["image_url", "image_url", "text"]
    assert with_images[2]["text"] == "Which colour first?"
    sent = [base64.b64decode(p["image_url"]["url"].removeprefix("data:image/png;base64,")) for p in with_images[:2]]
    assert sent == [RED, BLUE]                                    # the bytes, in the prompt's order
    assert "2+2=" in by_text.values()                             # a text-only prompt stays a plain string


def test_a_completions_endpoint_cannot_take_images_and_says_so(endpoint, tmp_path):
    url, _ = endpoint
    gen = OpenAIGenerator(url, "vlm", chat=False, retries=0, concurrency=1)
    [[g]] = gen.generate(["What colour?"], SamplingParams(temperature=0.0, max_new_tokens=4), images=[[RED]])
    assert g.finish_reason == "error" and "need a chat endpoint" in g.error


def test_raw_templates_refuse_image_prompts_with_one_line():
    table = pa.table({"id": ["p1"], "question": ["What colour?"], "images": [[RED]],
                      "s_v": [None], "s_t": [None], "s_i": [None]},
                     schema=pa.schema([("id", pa.string()), ("question", pa.string()),
                                       ("images", pa.list_(pa.binary())), ("s_v", pa.float64()),
                                       ("s_t", pa.float64()), ("s_i", pa.float64())]))
    with pytest.raises(SkycurateError, match="set template.mode to chat"):
        generation_items(table, S.TemplateConfig(mode="raw"), S.EngineConfig(engine="openai", base_url="http://x/v1",
                                                                           model="m"), S.GenerateConfig(), None)
    items, _, _ = generation_items(table, S.TemplateConfig(mode="chat"),
                                   S.EngineConfig(engine="openai", base_url="http://x/v1", model="m"),
                                   S.GenerateConfig(), None)
    assert items[0].images == (RED,) and items[0].text.endswith("What colour?")
