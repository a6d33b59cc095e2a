"""The ``skycurate`` command: flows, dataset inspection, JSON output, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skycurate.cli import app

MANIFEST_FIELDS = {"name", "version", "created_at", "num_rows", "schema", "files", "parents", "producer", "stats"}


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def published(store, cli, prefect_harness, spark) -> str:
    result = cli("run", "hello", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    return store


def test_run_prints_json_with_datasets_and_funnel(published, cli):
    result = cli("run", "hello", "--store", published, "--json")  # cached second run, same answer
    data = json.loads(result.stdout)
    assert data["flow"] == "hello" and data["store"] == published
    assert data["datasets"]["clean"]["ref"] == "hello/clean@v0001"
    assert data["datasets"]["clean"]["uri"] == os.path.join(published, "hello", "clean", "v0001")
    assert [s["stage"] for s in data["funnel"]] == ["ingest", "length_filter"]


def test_datasets_commands(published, cli):
    shown = json.loads(cli("datasets", "show", "hello/clean@latest", "--store", published, "--json").stdout)
    assert MANIFEST_FIELDS <= shown.keys()
    assert shown["name"] == "hello/clean" and shown["version"] == "v0001"
    assert shown["parents"] == [{"name": "hello/raw", "version": "v0001", "uri": None, "sha256": None, "pin": None}]
    assert shown["producer"]["flow"] == "hello" and shown["stats"]["funnel"][-1]["stage"] == "length_filter"

    listed = json.loads(cli("datasets", "ls", "--store", published, "--json").stdout)
    assert [d["name"] for d in listed] == ["hello/clean", "hello/quarantine", "hello/raw", "hello/rejected"]

    tree = json.loads(cli("datasets", "lineage", "hello/clean", "--store", published, "--json").stdout)
    assert tree["parents"][0]["name"] == "hello/raw"
    assert tree["parents"][0]["parents"][0]["name"] == "builtin:hello/sample.jsonl"
    # The printed tree and `datasets show` name every file parent's content hash (not "sha256 None").
    from skycurate.flows.hello import builtin_sample

    sample_sha = hashlib.sha256(builtin_sample().read_bytes()).hexdigest()
    assert tree["parents"][0]["parents"][0]["sha256"] == sample_sha
    printed = cli("datasets", "lineage", "hello/clean", "--store", published).stdout
    assert f"builtin:hello/sample.jsonl sha256 {sample_sha[:12]}" in " ".join(printed.split())
    raw_shown = cli("datasets", "show", "hello/raw", "--store", published).stdout
    assert f"sha256 {sample_sha[:12]}" in raw_shown and "None" not in raw_shown.split("schema")[0]

    rows = [json.loads(line) for line in
            cli("datasets", "read", "hello/clean", "-n", "2", "--columns", "id,text", "--store", published,
                "--json").stdout.splitlines()]
    assert len(rows) == 2 and set(rows[0]) == {"id", "text"}

    human = cli("datasets", "show", "hello/clean", "--store", published)
    assert "hello/clean@v0001" in human.stdout and "length_filter" in human.stdout

    ok = cli("datasets", "verify", "hello/clean", "--store", published, "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True

    part = Path(published, "hello", "clean", "v0001", "part-00000.parquet")
    part.write_bytes(part.read_bytes()[:-10] + b"corrupted!")
    bad = cli("datasets", "verify", "hello/clean", "--store", published)
    assert bad.exit_code == 1 and "FAILED" in bad.stdout and "sha256" in bad.stdout


@pytest.mark.parametrize("args,message", [
    (["datasets", "show", "web/nothing"], "error: unknown dataset 'web/nothing'"),
    (["datasets", "show", "Not A Ref"], "error: bad dataset name"),
    (["datasets", "read", "hello/raw@v0042"], "error: unknown dataset 'hello/raw'"),
    (["run", "hello", "--config", "{config}"], "error: config {config}: unknown key 'length_filter.min_wrods'"),
    (["run", "hello", "--source", "{tmp}/missing-*.jsonl"], "error: source '"),
    (["run", "hello", "--store", "/proc/no-store-here"], "error: cannot write to store /proc/no-store-here"),
])
def test_errors_are_one_line_and_exit_nonzero(cli, tmp_path, args, message):
    config = tmp_path / "bad.yaml"
    config.write_text("length_filter:\n  min_wrods: 4\n")
    store = tmp_path / "store"
    store.mkdir()
    args = [a.format(config=config, tmp=tmp_path) for a in args]
    result = cli(*args) if "--store" in args else cli(*args, "--store", str(store))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(config=config)), result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_store_and_debug_traceback(cli, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    result = cli("datasets", "ls", "--store", str(not_a_folder))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: store {not_a_folder} does not exist or is not a folder " \
                                    "(set --store or SKYCURATE_STORE)"
    from skycurate.errors import StoreError

    with pytest.raises(StoreError):
        cli("datasets", "ls", "--store", str(not_a_folder), "--debug")


@pytest.mark.integration
def test_installed_command_runs_the_demo_in_a_fresh_process(tmp_path):
    """What `make demo` does, in new processes with their own ephemeral Prefect API and Spark."""
    exe = str(Path(sys.executable).parent / "skycurate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["SKYCURATE_STORE"] = str(tmp_path / "store")
    root = Path(__file__).resolve().parents[1]

    def sky(*args):
        return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)

    sample = sky("sample", "web", "--out", "sample", "--json")
    assert sample.returncode == 0, sample.stderr[-2000:]
    assert json.loads(sample.stdout)["records"] > 50
    trained = sky("quality", "train", "--positive", "sample/quality/positive.jsonl", "--negative",
                  "sample/quality/negative.jsonl", "--out", "sample/quality/model.bin", "--json")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert json.loads(trained.stdout)["metrics"]["auroc"] > 0.9
    done = sky("run", "web", "--config", str(root / "examples" / "web-demo.yaml"))
    assert done.returncode == 0, done.stderr[-3000:]
    clean = tmp_path / "store" / "web" / "clean" / "v0001"
    assert str(clean) in done.stdout
    assert f"ds.dataset('{clean}')" in done.stdout  # the one-line read example
    assert "near_dedup" in done.stdout  # the funnel table

    missing = sky("datasets", "show", "web/none")
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error: unknown dataset 'web/none'")
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("args,message", [
    (["run", "web"], "error: no input: pass --input"),
    (["run", "web", "--input", "{tmp}/nothing-here"], "error: "),
    (["run", "web", "--input", "{tmp}", "--quality-model", "{tmp}/no-model.bin"], "error: file not found"),
    (["run", "web", "--input", "{tmp}", "--dedup-against", "web/clean@v0009"], "error: unknown dataset 'web/clean'"),
    (["run", "web", "--input", "{tmp}", "--dedup-against", "web/raw@v0001"], "error: config (defaults): 'dedup_against': must name a web/clean version"),
    (["quality", "train", "--positive", "{tmp}/p.txt", "--negative", "{tmp}/n.txt", "--out", "{tmp}/m.bin"],
     "error: "),
])
def test_web_command_errors(cli, tmp_path, args, message):
    (tmp_path / "page.html").write_text("<html><body><p>hello</p></body></html>")
    store = tmp_path / "store"
    store.mkdir()
    args = [a.format(tmp=tmp_path) for a in args]
    result = cli(*args, "--store", str(store)) if args[0] == "run" else cli(*args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_with_prefect_api_url_set_runs_report_to_that_server(prefect_harness, tmp_path):
    """A separate process given PREFECT_API_URL reports its flow run to that (real, local) server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from skycurate import catalog

    exe = Path(sys.executable).parent / "skycurate"
    store = tmp_path / "store"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = subprocess.run([str(exe), "run", "hello", "--store", str(store), "--json"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting temporary server" not in done.stderr
    run_id = catalog.manifest("hello/clean@latest", store=store).producer.flow_run_id
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
    assert flow_run.state.is_completed()
