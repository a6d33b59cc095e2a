"""SIGKILL of the web flow at chosen points (``skycurate.faults``): the rerun publishes exactly one
new version of each dataset the killed run did not finish, equal to an uninterrupted run's, reuses
the stages that finished, and leaves no staging or scratch folder behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from skycurate.catalog import Catalog
from skycurate.faults import KILL_AT_ENV

pytestmark = [pytest.mark.usefixtures("prefect_harness", "spark"), pytest.mark.integration]
FINAL = ("web/clean", "web/rejected", "web/quarantine", "web/minhash_index")


@pytest.fixture(scope="module")
def config_file(sample, tmp_path_factory) -> Path:
    crawl, model = sample
    path = tmp_path_factory.mktemp("faults") / "web.yaml"
    path.write_text(yaml.safe_dump({
        "inputs": [str(crawl.inputs)],
        "safety": {"url_blocklist": str(crawl.url_blocklist), "keyword_blocklist": str(crawl.keyword_blocklist)},
        "quality_model": {"model_path": str(model), "threshold": 0.2},
    }))
    return path


@pytest.fixture(scope="module")
def uninterrupted(config_file, tmp_path_factory) -> str:
    store = str(tmp_path_factory.mktemp("reference") / "store")
    _cli(config_file, store)
    return store


def _cli(config_file: Path, store: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKYCURATE_SPARK_MASTER": "local[1]"}
    env.pop(KILL_AT_ENV, None)
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    return subprocess.run([sys.executable, "-m", "skycurate.cli", "run", "web", "--config", str(config_file),
                           "--store", store, "--json"], env=env, capture_output=True, text=True,
                          start_new_session=True, timeout=600, check=not kill_at)


def _canonical(cat: Catalog, name: str) -> list[dict]:
    table = cat.open(f"{name}@latest").to_table()
    return sorted(table.to_pylist(), key=lambda r: json.dumps(r, sort_keys=True, default=str))


@pytest.mark.parametrize("kill_at, reused", [
    ("publish:web/extracted:written", []),   # mid-stage: quarantine staged with it, nothing visible
    ("publish:web/minhash_index:claimed",   # mid-publish, every stage before the last one finished
     ["web/extracted", "web/filtered", "web/deduped", "web/scored"]),
])
def test_a_killed_web_run_reruns_to_the_same_datasets(kill_at, reused, config_file, uninterrupted, tmp_path):
    store = str(tmp_path / "store")
    killed = _cli(config_file, store, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    cat = Catalog(store)
    assert not any(cat.versions(n) for n in ("web/clean", "web/rejected", "web/minhash_index"))  # none half-made

    before = {n: cat.versions(n) for n in ("web/extracted", "web/filtered", "web/deduped", "web/scored")}
    out = _cli(config_file, store)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in reused:   # finished stages are not redone: their versions stay the only ones
        assert before[name] == cat.versions(name) == ["v0001"], f"{name} was published again"

    ref = Catalog(uninterrupted)
    for name in FINAL:
        assert len(cat.versions(name)) == 1, f"{name}: {cat.versions(name)}"
        assert _canonical(cat, name) == _canonical(ref, name), name
        assert cat.verify(f"{name}@latest").ok
    assert cat.manifest("web/clean@latest").stats["funnel"] == ref.manifest("web/clean@latest").stats["funnel"]
    leftovers = [p for p in Path(store).rglob("*") if p.name in ("_staging", "_scratch") or "/_staging/" in str(p)]
    assert leftovers == [], leftovers
