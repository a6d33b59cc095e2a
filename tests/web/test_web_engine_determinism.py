"""The same published data whatever runs Spark: the web flow (with its chained decontamination) on
``local[1]``, ``local[2]`` and a standalone cluster of two workers on 127.0.0.1 gives the same rows,
the same content hash after a canonical sort, and the same manifest stats for every dataset."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from skycurate.catalog import Catalog
from skycurate.samples.web import EN_PARAGRAPHS

pytestmark = pytest.mark.integration


def canonical_rows(cat: Catalog, ref: str) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str, ensure_ascii=False)
                  for r in cat.open(ref).to_table().to_pylist())


def fingerprint(store: str) -> dict[str, dict]:
    cat = Catalog(store)
    out = {}
    for name in cat.names():
        ref = f"{name}@latest"
        rows = canonical_rows(cat, ref)
        m = cat.manifest(ref)
        out[name] = {"versions": cat.versions(name), "rows": len(rows),
                     "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest(),
                     "stats": json.dumps(m.stats, sort_keys=True, default=str), "schema": m.schema_}
    return out


def test_web_and_decontamination_publish_the_same_data_on_every_engine(sample, standalone_cluster, tmp_path):
    crawl, model = sample
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "test.jsonl").write_text(json.dumps({"text": EN_PARAGRAPHS[0]}) + "\n"
                                      + json.dumps({"text": "an item that no page holds at all"}) + "\n")
    config = tmp_path / "web.yaml"
    config.write_text(yaml.safe_dump({
        "inputs": [str(crawl.inputs)],
        "safety": {"url_blocklist": str(crawl.url_blocklist), "keyword_blocklist": str(crawl.keyword_blocklist)},
        "quality_model": {"model_path": str(model), "threshold": 0.2},
        "benchmarks": [{"name": "bench", "path": str(bench)}],
        "spark": {"conf": {"spark.executor.memory": "1g", "spark.cores.max": "2"}},
    }))
    prints, contamination = {}, {}
    apps = lambda: {a["id"] for key in ("activeapps", "completedapps")   # noqa: E731
                    for a in (standalone_cluster.state() or {}).get(key, [])}
    before = apps()
    for master in ("local[1]", "local[2]", standalone_cluster.url):
        store = str(tmp_path / f"store-{len(prints)}")
        env = {**os.environ, "SKYCURATE_SPARK_MASTER": master}
        done = subprocess.run([sys.executable, "-m", "skycurate.cli", "run", "web", "--config", str(config),
                               "--store", store, "--json"], env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{master}:\n{done.stderr[-3000:]}"
        prints[master] = fingerprint(store)
        ref = json.loads(done.stdout)["datasets"]["contamination"]["ref"]
        contamination[master] = Catalog(store).open(ref).to_table().num_rows
    assert apps() - before, "the run did not reach the standalone cluster"
    first, *others = prints.values()
    assert {"web/clean", "web/rejected", "web/minhash_index"} <= set(first)
    # the chained decontamination found the leaked paragraph (in each page that holds it), alike everywhere
    assert len(set(contamination.values())) == 1 and min(contamination.values()) >= 1, contamination
    for master, other in zip(list(prints)[1:], others):
        assert set(other) == set(first), master
        for name in first:
            assert other[name] == first[name], f"{name} differs on {master}"
