"""Secrets kept out of what skycurate records and sends: ``skycurate.redact`` (URLs, query
parameters, tokens), the log filter, manifests, SWE rejection details, the CoT teacher identity,
the OpenAI engine's refusal to send a key over plain http, and the GitHub token kept to the API's
own origin (real local HTTP servers)."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest

from skycurate import redact as R
from skycurate.catalog import Catalog, Parent, Producer
from skycurate.errors import SkycurateError
from skycurate.redact import RedactingFilter, redact, redact_obj

# ---------------------------------------------------------------------------------- redact


@pytest.mark.parametrize("text, expected", [
    ("https://user:TOKEN@github.com/org/repo.git", "https://user:***@github.com/org/repo.git"),
    ("http://user:p4ss@10.0.0.5:8000/v1", "http://user:***@10.0.0.5:8000/v1"),
    ("s3://AKIAKEY:SeCrEt/9x@bucket/prefix", "s3://AKIAKEY:***@bucket/prefix"),
    ("postgres://app:hunter2@db:5432/x", "postgres://app:***@db:5432/x"),
    ("https://:onlysecret@host/x", "https://:***@host/x"),
    ("https://u:p@ss@host/x", "https://u:***@host/x"),           # a raw "@" in the password
    ("https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/o/r", "https://***@github.com/o/r"),
    ("git://TOKEN@host/r.git", "git://***@host/r.git"),
    ("s3://LONETOKEN@bucket/k", "s3://***@bucket/k"),
    ("https://x-access-token:ghs_abcdefghijklmnopqrstuvwxyz0123@github.com/o/r.git",
     "https://x-access-token:***@github.com/o/r.git"),
    ("git clone 'https://u:tok@github.com/o/r' failed", "git clone 'https://u:***@github.com/o/r' failed"),
    ("openai:model@http://user:key@host/v1", "openai:model@http://user:***@host/v1"),
])
def test_redact_userinfo(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("https://h/x?token=abc&page=2", "https://h/x?token=***&page=2"),
    ("https://h/x?a=1&access_token=zz#frag", "https://h/x?a=1&access_token=***#frag"),
    ("https://h/x?api_key=k1&apikey=k2&key=k3&secret=k4&password=k5", "https://h/x?api_key=***&apikey=***&key=***"
                                                                      "&secret=***&password=***"),
    ("https://h/x?API_KEY=K&Token=T&client_secret=C&private_token=P",
     "https://h/x?API_KEY=***&Token=***&client_secret=***&private_token=***"),
    ("https://acct.blob.core.windows.net/c/b?sv=2022&sig=abc%2Fdef&se=1", "https://acct.blob.core.windows.net/c/b?"
                                                                          "sv=2022&sig=***&se=1"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2024"
     "&X-Amz-Signature=deadbeef&X-Amz-Security-Token=FwoGZX&X-Amz-Expires=60",
     "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
     "&X-Amz-Signature=***&X-Amz-Security-Token=***&X-Amz-Expires=60"),
    ("https://h/x?signature=s&sort_key=a&max_tokens=5&page_size=2",
     "https://h/x?signature=***&sort_key=a&max_tokens=5&page_size=2"),
    ('{"url": "https://h/x?token=abc"}', '{"url": "https://h/x?token=***"}'),
])
def test_redact_query_params(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Authorization: Bearer abc123def456ghi", "Authorization: Bearer ***"),
    ("authorization: bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.sig", "authorization: bearer ***"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZDE=", "Authorization: Basic ***"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 rejected", "token ghp_*** rejected"),
    ("gho_ABCDEFGHIJKLMNOPQRSTUVWX12 and ghs_abcdefghijklmnopqrstuv34", "gho_*** and ghs_***"),
    ("GITHUB_TOKEN=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv", "GITHUB_TOKEN=github_pat_***"),
    ("OPENAI_API_KEY=sk-proj-abcdef1234567890XYZ set", "OPENAI_API_KEY=sk-*** set"),
    ("key sk-ant-api03-AbCdEf0123456789xyz", "key sk-***"),
])
def test_redact_tokens_in_text(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "",
    "plain text, no secrets: 100% fine",
    "/data/store/web/clean/v0001/part-00000.parquet",
    "s3://bucket/prefix/file.jsonl.gz",
    "ssh://git@github.com/org/repo.git",           # a user name, not a token
    "git@github.com:org/repo.git",
    "mail me@example.org or see https://example.org/path@v1?page=2&sort=asc",
    "https://h/x?token=&key=",                     # nothing to hide
    "a Bearer token is required; Basic auth too",
    "task-abcdefghijklmnopqrstuvwxyz0123 risk-free-investment-2024-plans sk-learn",
    "ghp_short gho_",
    "sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "openai:teacher@http://127.0.0.1:8000/v1",
    "PR #12 (abc123def456): no test file changed",
    "ünïcödé ✓ https://例え.jp/パス?q=1",
])
def test_text_without_secrets_is_byte_identical(text):
    assert redact(text) == text


@pytest.mark.parametrize("text", [
    "https://user:TOKEN@github.com/org/repo.git?access_token=x&sig=y Bearer abcdefgh12345678",
    "https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com sk-abcdefghij0123456789 github_pat_11ABCDEFG0123456789_ab",
    "s3://K:S@b/k?X-Amz-Signature=1&X-Amz-Credential=2",
])
def test_redact_is_idempotent(text):
    once = redact(text)
    assert once != text and redact(once) == once


def test_redact_obj_walks_containers_and_keeps_other_values():
    value = {"source": "https://u:pw@h/x?token=abc", "n": 3, "ok": True, "none": None, "ratio": 0.5,
             "repos": ["https://u:pw@h/a", ("git://TOK@h/b", 7)], "nested": {"https://t@h/k": ["plain"]}}
    assert redact_obj(value) == {
        "source": "https://u:***@h/x?token=***", "n": 3, "ok": True, "none": None, "ratio": 0.5,
        "repos": ["https://u:***@h/a", ("git://***@h/b", 7)], "nested": {"https://***@h/k": ["plain"]}}
    assert isinstance(redact_obj(value)["repos"][1], tuple)
    assert redact_obj("Bearer abc123def456") == "Bearer ***"
    assert redact_obj(42) == 42 and redact_obj(None) is None
    clean = {"a": ["b", ("c", 1)], "d": {"e": 2.0}}
    assert redact_obj(clean) == clean


# ---------------------------------------------------------------------------------- logging


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record):
        self.records.append(record)
        self.lines.append(self.format(record))


def test_redacting_filter_on_a_handler():
    log = logging.getLogger("skycurate.test_redact.handler")
    handler = _Collect()
    handler.addFilter(RedactingFilter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("cloning %s with %s", "https://u:tok123@github.com/o/r", {"key": "Bearer abc123def456"})
        log.info("nothing to hide: %d rows from %s", 5, "s3://bucket/x")
        try:
            raise RuntimeError("git fetch https://u:tok123@github.com/o/r failed")
        except RuntimeError:
            log.exception("fetch failed")
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
    assert handler.lines[0] == "cloning https://u:***@github.com/o/r with {'key': 'Bearer ***'}"
    assert handler.records[0].args == ()
    assert handler.lines[1] == "nothing to hide: 5 rows from s3://bucket/x"
    assert handler.records[1].args == (5, "s3://bucket/x")          # left alone
    assert "tok123" not in handler.lines[2] and "https://u:***@github.com/o/r failed" in handler.lines[2]
    assert "tok123" not in "".join(handler.lines)


def test_redacting_filter_leaves_a_bad_format_to_the_handler():
    record = logging.LogRecord("skycurate", logging.INFO, __file__, 1, "%d rows", ("many",), None)
    assert RedactingFilter().filter(record) is True
    assert record.msg == "%d rows" and record.args == ("many",)


@pytest.fixture
def fresh_log_redaction(monkeypatch):
    """install_log_redaction() as if for the first time; the record factory and filter restored after."""
    factory = logging.getLogRecordFactory()
    monkeypatch.setattr(R, "_installed", False)
    yield
    logging.setLogRecordFactory(factory)
    logging.getLogger("skycurate").removeFilter(R._FILTER)


def test_install_log_redaction_covers_child_loggers(fresh_log_redaction, caplog):
    R.install_log_redaction()
    R.install_log_redaction()      # idempotent: not wrapped twice
    assert logging.getLogger("skycurate").filters.count(R._FILTER) == 1
    with caplog.at_level(logging.INFO):
        logging.getLogger("skycurate.stages.swe.mining").warning("clone %s failed", "https://x:ghp_tok@github.com/o/r")
        logging.getLogger("skycurate").info("teacher %s", "openai:m@http://u:k3y@host/v1?api_key=zz")
    assert [r.getMessage() for r in caplog.records] == ["clone https://x:***@github.com/o/r failed",
                                                        "teacher openai:m@http://u:***@host/v1?api_key=***"]
    assert "ghp_tok" not in caplog.text and "k3y" not in caplog.text


def test_the_cli_installs_log_redaction(fresh_log_redaction):
    from typer.testing import CliRunner

    from skycurate.cli import app

    before = logging.getLogRecordFactory()
    assert CliRunner().invoke(app, ["version"]).exit_code == 0
    assert logging.getLogRecordFactory() is not before and R._installed


# ---------------------------------------------------------------------------------- catalog


def test_published_manifest_and_lineage_hold_no_credentials(tmp_path):
    secret_url = "https://u:s3cr3tpw@host/x?token=zzTOKzz"
    cat = Catalog(str(tmp_path / "store"))
    producer = Producer(flow="f", config={"source": secret_url, "repos": [secret_url], "n": 1})
    parents = [Parent(name=f"src:{secret_url}", uri=secret_url, pin=f"from {secret_url}", sha256="ab" * 32)]
    ref = cat.publish("test/redacted", pa.table({"id": [1, 2]}), parents, producer,
                      {"source": secret_url, "by_source": {secret_url: 2}})
    text = Path(ref.uri, "_manifest.json").read_text()
    assert "s3cr3tpw" not in text and "zzTOKzz" not in text
    assert "***" in text
    m = json.loads(text)
    clean = "https://u:***@host/x?token=***"
    assert m["parents"] == [{"name": f"src:{clean}", "version": None, "uri": clean, "sha256": "ab" * 32,
                             "pin": f"from {clean}"}]
    assert m["producer"]["config"] == {"source": clean, "repos": [clean], "n": 1}
    assert m["stats"] == {"source": clean, "by_source": {clean: 2}}
    (node,) = cat.lineage(ref).parents
    assert node.uri == clean and node.sha256 == "ab" * 32
    # a dataset parent and a plain path stay exactly as given
    child = cat.publish("test/child", pa.table({"id": [1]}), [ref, Parent(name="cfg", uri="/etc/x.yaml")])
    assert [p.model_dump() for p in cat.manifest(child).parents] == [
        {"name": "test/redacted", "version": "v0001", "uri": None, "sha256": None, "pin": None},
        {"name": "cfg", "version": None, "uri": "/etc/x.yaml", "sha256": None, "pin": None}]


# ---------------------------------------------------------------------------------- SWE, CoT


def test_mining_rejection_detail_is_redacted():
    from skycurate.stages.swe.mining import MineResult

    res = MineResult(repo="o/r")
    res.reject(None, "clone", "clone_failed", "git clone https://u:ghp_tok@github.com/o/r: exit 128")
    res.reject("o__r-1", "mine", "no_tests", None)
    assert [r["detail"] for r in res.rejected] == ["git clone https://u:***@github.com/o/r: exit 128", None]
    assert res.rejected_table().column("detail").to_pylist()[0] == "git clone https://u:***@github.com/o/r: exit 128"


def test_cot_teacher_identity_is_redacted():
    from skycurate.flows._engines import engine_identity
    from skycurate.schemas.cot import EngineConfig

    teacher = EngineConfig(engine="openai", model="m", base_url="http://user:key@host/v1?api_key=abc")
    assert engine_identity(teacher) == "openai:m@http://user:***@host/v1?api_key=***"
    plain = EngineConfig(engine="openai", model="m", base_url="http://127.0.0.1:8000/v1")
    assert engine_identity(plain) == "openai:m@http://127.0.0.1:8000/v1"


# ---------------------------------------------------------------------------------- HTTP servers


class _Recorder(BaseHTTPRequestHandler):
    """Records (port, path, Authorization) of every request; answers from ``routes``."""

    log: list = []
    routes: dict = {}

    def log_message(self, *args):
        pass

    def _answer(self):
        port = self.server.server_address[1]
        self.log.append((port, self.path, self.headers.get("Authorization")))
        body, link = self.routes.get((port, self.path.split("?")[0]), ({"error": "no route"}, None))
        data = json.dumps(body).encode()
        self.send_response(200 if "error" not in body else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if link:
            self.send_header("Link", link)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()


@pytest.fixture
def servers():
    """Two local HTTP servers on different ports (two origins), sharing one request log."""
    _Recorder.log, _Recorder.routes = [], {}
    started = [ThreadingHTTPServer(("127.0.0.1", 0), _Recorder) for _ in range(2)]
    for s in started:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield [s.server_address[1] for s in started], _Recorder
    for s in started:
        s.shutdown()
        s.server_close()


def test_github_token_only_goes_to_the_api_origin(servers):
    from skycurate.connectors.github_api import GitHubClient

    (api, other), rec = servers
    rec.routes = {
        (api, "/repos/o/r/pulls"): ([{"n": 1}], f'<http://127.0.0.1:{api}/repos/o/r/pulls2?page=2>; rel="next"'),
        (api, "/repos/o/r/pulls2"): ([{"n": 2}], f'<http://127.0.0.1:{other}/elsewhere?page=3>; rel="next", '
                                                 f'<http://127.0.0.1:{api}/repos/o/r/pulls>; rel="first"'),
        (other, "/elsewhere"): ([{"n": 3}], None),
    }
    with GitHubClient(token="tok-SECRET-1", base_url=f"http://127.0.0.1:{api}") as gh:
        assert [x["n"] for x in gh.paginate("/repos/o/r/pulls")] == [1, 2, 3]
    assert [(port, auth) for port, _, auth in rec.log] == [
        (api, "Bearer tok-SECRET-1"), (api, "Bearer tok-SECRET-1"), (other, None)]


# ---------------------------------------------------------------------------------- OpenAI engine


@pytest.fixture
def no_env_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.mark.parametrize("base_url", ["http://example.com/v1", "http://10.1.2.3:8000/v1", "HTTP://Example.com/v1",
                                      "http://localhost.example.com/v1", "http://127.0.0.1.nip.io/v1"])
def test_openai_refuses_a_key_over_plain_http_to_another_host(no_env_key, base_url):
    from skycurate.connectors.llm.generation import OpenAIGenerator

    with pytest.raises(SkycurateError, match="plain http") as exc:
        OpenAIGenerator(base_url, "m", api_key="sk-live-0123456789abcdef")
    message = str(exc.value)
    assert "\n" not in message and "https" in message and "OPENAI_API_KEY" in message
    assert "sk-live" not in message


def test_openai_refuses_the_env_key_and_a_url_password_too(no_env_key, monkeypatch):
    from skycurate.connectors.llm.generation import OpenAIGenerator, open_generator

    with pytest.raises(SkycurateError, match="plain http"):
        OpenAIGenerator("http://u:pw@example.com/v1", "m")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-0123456789abcdef")
    with pytest.raises(SkycurateError, match="plain http"):
        OpenAIGenerator("http://example.com/v1", "m")
    with pytest.raises(SkycurateError, match="plain http"):
        open_generator("openai", "m", base_url="http://example.com/v1")


@pytest.mark.parametrize("base_url, api_key", [
    ("http://127.0.0.1:1/v1", "sk-local-0123456789"), ("http://127.8.9.10:1/v1", "k"), ("http://localhost:1/v1", "k"),
    ("http://[::1]:1/v1", "k"), ("https://example.com/v1", "sk-0123456789abcdef"), ("http://example.com/v1", None),
    ("http://example.com/v1", "EMPTY"),
])
def test_openai_allows_https_loopback_or_no_key(no_env_key, base_url, api_key):
    from skycurate.connectors.llm.generation import OpenAIGenerator

    OpenAIGenerator(base_url, "m", api_key=api_key).close()


def test_openai_sends_the_key_to_loopback_and_names_itself_without_it(no_env_key, servers):
    from skycurate.connectors.llm.generation import OpenAIGenerator
    from skycurate.schemas.generation import SamplingParams

    (port, _), rec = servers
    rec.routes = {(port, "/v1/completions"): ({"choices": [{"index": 0, "text": " 4", "finish_reason": "stop"}],
                                               "usage": {"prompt_tokens": 2, "completion_tokens": 1}}, None)}
    gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", "m", api_key="sk-loop-0123456789", retries=0)
    try:
        [[out]] = gen.generate(["2+2="], SamplingParams(temperature=0.0, max_new_tokens=2))
    finally:
        gen.close()
    assert out.text == " 4" and rec.log[0][2] == "Bearer sk-loop-0123456789"
    named = OpenAIGenerator("https://u:pw@example.com/v1?api_key=abc", "m")
    named.close()
    assert named.name == "openai:m@https://u:***@example.com/v1?api_key=***"
