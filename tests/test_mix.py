"""Training mixtures (``skycurate run mix``): the token plan, the upsampling cap, exact proportions within
one document, a deterministic shuffle by seed, filters, lineage and the published layout."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from skycurate.catalog import Catalog
from skycurate.cli import app
from skycurate.schemas.mix import MixSource
from skycurate.stages.mix import MixError, plan_mixture


def _src(name, **kw):
    return MixSource(name=name, dataset=f"x/{name}@latest", **kw)


def test_plan_weights_budgets_default_size_and_the_cap():
    plans = plan_mixture([_src("a", weight=3), _src("b", weight=1)], {"a": (600, 6), "b": (100, 4)}, 1000)
    assert [(p.name, p.target_tokens, p.full_epochs, p.remainder) for p in plans] == [("a", 750, 1, 150),
                                                                                      ("b", 250, 2, 50)]
    # no total: the largest mixture in which no weighted source repeats (b binds: 100 / 0.25)
    plans = plan_mixture([_src("a", weight=3), _src("b", weight=1)], {"a": (600, 6), "b": (100, 4)}, None)
    assert [p.target_tokens for p in plans] == [300, 100]
    plans = plan_mixture([_src("a", weight=1), _src("b", tokens=120)], {"a": (600, 6), "b": (100, 4)}, 500)
    assert [p.target_tokens for p in plans] == [380, 120]
    with pytest.raises(MixError, match=r"^source b needs 600 tokens but holds 100 \(x5 cap = 500\): 100 short; "
                                       r"raise its max_epochs to 6, lower its share or the total$"):
        plan_mixture([_src("a", weight=1), _src("b", weight=1)], {"a": (600, 6), "b": (100, 4)}, 1200)
    with pytest.raises(MixError, match="leave nothing of total_tokens"):
        plan_mixture([_src("a", weight=1), _src("b", tokens=500)], {"a": (600, 6), "b": (100, 4)}, 400)
    with pytest.raises(MixError, match=r"source b \(x/b@latest\) holds no tokens after its filters"):
        plan_mixture([_src("a", weight=1), _src("b", weight=1)], {"a": (600, 6), "b": (0, 0)}, None)


def _web_rows(n: int, lang: str, prefix: str) -> list[dict]:
    return [{"id": f"{prefix}{i:03d}", "text": f"{prefix} document {i}", "lang": lang, "n_tokens": 10 + i % 7,
             "quality_score": i / n, "fetch_date": datetime(2024, 1 + i % 12, 1, tzinfo=timezone.utc)}
            for i in range(n)]


@pytest.fixture
def store(tmp_path):
    store = str(tmp_path / "store")
    catalog = Catalog(store)
    catalog.publish("web/clean", pa.Table.from_pylist(_web_rows(60, "en", "w") + _web_rows(20, "zh", "z")))
    catalog.publish("books/clean", pa.Table.from_pylist(
        [{"id": f"b{i}", "text": f"book {i}", "lang": "en", "n_tokens": 40 + i} for i in range(8)]))
    return store


def _run(store: str, tmp_path, cfg: dict, *args: str) -> dict:
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["run", "mix", "--config", str(path), "--store", store, *args, "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout[res.stdout.index("{"):])


def _rows(store: str, ref: str) -> list[dict]:
    catalog = Catalog(store)
    files = sorted(catalog.local_files(ref))     # shard order is the shuffle order
    return [r for f in files for r in pq.read_table(f).to_pylist()]


CFG = {"name": "pretrain", "total_tokens": 2000, "seed": 7, "shard_rows": 50,
       "sources": [{"name": "web", "dataset": "web/clean@latest", "weight": 3, "filter": {"lang": ["en"]}},
                   {"name": "books", "dataset": "books/clean@v0001", "weight": 1, "max_epochs": 3}]}


@pytest.mark.usefixtures("prefect_harness")
def test_a_mixture_meets_its_plan_within_one_document_respects_the_cap_and_is_deterministic(store, tmp_path):
    out = _run(store, tmp_path, CFG)
    s = out["stats"]
    web, books = s["sources"]["web"], s["sources"]["books"]
    # web: 60 English documents, 778 tokens; books: 8 documents, 348 tokens
    assert (web["available_tokens"], web["available_docs"], books["available_tokens"]) == (774, 60, 348)
    assert (web["target_tokens"], books["target_tokens"]) == (1500, 500)
    for p, longest in ((web, 16), (books, 47)):      # within one document's tokens, never over
        assert p["target_tokens"] - longest < p["achieved_tokens"] <= p["target_tokens"]
        assert p["epochs_achieved"] <= p["max_epochs"]
    rows = _rows(store, "train/pretrain@latest")
    assert len(rows) == s["rows"] and sum(r["n_tokens"] for r in rows) == s["tokens"]
    assert {r["lang"] for r in rows} == {"en"} and {r["source"] for r in rows} == {"web", "books"}
    # books: one whole pass (epoch 0: every book once) and part of a second (epoch 1)
    by_epoch = {}
    for r in rows:
        if r["source"] == "books":
            by_epoch.setdefault(r["epoch"], []).append(r["id"])
    assert sorted(by_epoch[0]) == sorted(f"b{i}" for i in range(8)) and 0 < len(by_epoch[1]) < 8
    assert sum(r["n_tokens"] for r in rows if r["source"] == "books") == books["achieved_tokens"]
    # shuffled: the sources interleave; shards of at most 50 rows
    assert len({r["source"] for r in rows[:20]}) == 2
    files = Catalog(store).file_paths("train/pretrain@latest")
    assert len(files) >= 2 and all(pq.ParquetFile(f).metadata.num_rows <= 50 for f in Catalog(store).local_files(
        "train/pretrain@latest"))
    manifest = Catalog(store).manifest("train/pretrain@latest")
    assert sorted(p.name for p in manifest.parents) == ["books/clean", "web/clean"]
    assert "_mix.png" in {a.path for a in manifest.attachments}

    again = _run(store, tmp_path, CFG, "--force")       # recomputed: the same rows in the same order
    assert again["datasets"]["mixture"]["ref"] != out["datasets"]["mixture"]["ref"]
    assert _rows(store, again["datasets"]["mixture"]["ref"]) == rows
    other = _run(store, tmp_path, {**CFG, "seed": 8})
    other_rows = _rows(store, other["datasets"]["mixture"]["ref"])
    assert [r["id"] for r in other_rows] != [r["id"] for r in rows]
    assert other["stats"]["sources"]["web"]["target_tokens"] == 1500


@pytest.mark.usefixtures("prefect_harness")
def test_filters_a_tokenizer_for_sources_without_counts_and_a_budget_over_the_cap(store, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["notes line one two three"], trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    tok.save(str(tmp_path / "tok.json"))
    Catalog(store).publish("notes/clean", pa.Table.from_pylist(
        [{"text": " ".join(["word"] * (i + 1)), "lang": "en"} for i in range(5)]))   # 1..5 tokens, no ids
    cfg = {"name": "filtered", "seed": 1,
           "sources": [{"name": "web", "dataset": "web/clean@latest", "weight": 1,
                        "filter": {"min_quality_quantile": 0.5, "date_from": "2024-03-01", "date_to": "2024-07-01"}},
                       {"name": "notes", "dataset": "notes/clean@latest", "tokens": 12}],
           "total_tokens": 100, "tokenizer": {"tokenizer": str(tmp_path / "tok.json")}}
    out = _run(store, tmp_path, cfg)
    # the date range first, then the better half of what is left (the exact median: rank ceil(q n))
    dated = [r for r in _web_rows(60, "en", "w") + _web_rows(20, "zh", "z")
             if datetime(2024, 3, 1, tzinfo=timezone.utc) <= r["fetch_date"] < datetime(2024, 7, 1, tzinfo=timezone.utc)]
    cut = sorted(r["quality_score"] for r in dated)[math.ceil(0.5 * len(dated)) - 1]
    kept = [r for r in dated if r["quality_score"] >= cut]
    s = out["stats"]["sources"]
    assert (s["web"]["available_docs"], s["web"]["available_tokens"]) == (len(kept), sum(r["n_tokens"] for r in kept))
    assert s["notes"]["available_tokens"] == 15 and s["notes"]["target_tokens"] == 12
    assert 12 - 5 < s["notes"]["achieved_tokens"] <= 12

    res = CliRunner().invoke(app, ["run", "mix", "--config", str(tmp_path / "mix.yaml"), "--store", store,
                                   "--total-tokens", "1000000"])
    assert res.exit_code == 1
    assert "source web needs" in res.stderr and "short; raise its max_epochs to" in res.stderr
