"""The three leakage flows end to end through the CLI: real Spark, real Prefect, real transformers models."""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from skycurate import catalog
from skycurate.catalog import Catalog
from skycurate.cli import app

sys.path.insert(0, str(Path(__file__).parent))
import tiny_lm  # noqa: E402

pytestmark = [pytest.mark.usefixtures("prefect_harness", "spark"), pytest.mark.integration]

WORDS = ("river market bridge garden harbour library station forest valley tower morning evening light "
         "quiet old green narrow busy cold bright wooden small long walk visit open near past hills coast").split()


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


@pytest.fixture(scope="module")
def leak_setup(tmp_path_factory):
    """A corpus of 60 documents (3 with a verbatim test item, 2 with a lightly edited one, 1 with a
    train item) and two benchmarks: ``arith`` (folder, question/answer fields) and ``zh`` (one file)."""
    root = tmp_path_factory.mktemp("leak")
    rng = random.Random(3)
    problems = tiny_lm.arithmetic_problems(40, seed=5)
    questions = [{"id": f"q{i}", "question": p.split(" Answer:")[0], "answer": p.split("Answer: ")[1]}
                 for i, p in enumerate(problems)]
    bench = root / "arith"
    _write_jsonl(bench / "train.jsonl", questions[:20])
    _write_jsonl(bench / "test.jsonl", questions[20:])
    zh_items = ["小明有十二个苹果，他又买了五个苹果，然后送给同学三个，请问小明现在一共有多少个苹果？",
                "一辆公共汽车上原来有二十八位乘客，到站后下去了九位，又上来了六位，车上现在有多少位乘客？"]
    zh_file = _write_jsonl(root / "zh.jsonl", [{"text": t} for t in zh_items])

    docs = [_prose(rng, 120) for _ in range(60)]
    planted = {}
    for d, item in ((0, 20), (1, 21), (2, 22)):  # verbatim
        q = questions[item]
        docs[d] = docs[d][:300] + f" {q['question']}\n{q['answer']} " + docs[d][300:]
        planted[d] = ("arith", f"q{item}")
    q = questions[23]  # light edits: case, punctuation, spacing
    docs[3] = docs[3][:200] + " " + (q["question"].upper().replace(".", " ;") + "  " + q["answer"]) + " " + docs[3][200:]
    planted[3] = ("arith", "q23")
    docs[4] = "今天天气很好。" + zh_items[0].replace("，", " , ") + "我们去公园散步吧。" + docs[4]
    planted[4] = ("zh", "test-0")
    q = questions[0]   # a train item: only found when train is indexed
    docs[5] = docs[5][:250] + f" {q['question']} {q['answer']} " + docs[5][250:]
    store = str(root / "store")
    ids = [f"doc{i:03d}" for i in range(len(docs))]
    Catalog(store).publish("web/clean", pa.table({"id": ids, "url": [f"https://site/{i}" for i in ids], "text": docs}))
    return {"root": root, "store": store, "bench": bench, "zh": zh_file, "planted": planted, "docs": docs,
            "ids": ids}


def test_decontaminate_flow_finds_planted_items_and_leaves_the_rest(leak_setup):
    s = leak_setup
    args = ["run", "decontaminate", "--corpus", "web/clean@latest", "--benchmark", f"arith={s['bench']}",
            "--benchmark", f"zh={s['zh']}", "--store", s["store"], "--json"]
    cfg = s["root"] / "decon.yaml"
    cfg.write_text("benchmarks:\n  - {name: arith, path: %s, template: \"{question}\\n{answer}\", id_field: id}\n"
                   "  - {name: zh, path: %s}\n" % (s["bench"], s["zh"]))
    result = _cli("run", "decontaminate", "--corpus", "web/clean@latest", "--config", str(cfg),
                  "--store", s["store"], "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["datasets"]["clean"]["ref"] == "web/clean-decontaminated@v0001"

    matches = catalog.open("leakage/contamination@latest", store=s["store"]).to_table().to_pylist()
    found = {(m["doc_id"], m["benchmark"], m["item_id"]) for m in matches}
    for d, (bench, item) in s["planted"].items():
        assert (s["ids"][d], bench, item) in found, (d, bench, item)
    assert {m["doc_id"] for m in matches} == {s["ids"][d] for d in s["planted"]}  # nothing else touched
    assert not any(m["doc_id"] == s["ids"][5] for m in matches)  # train split not indexed by default

    clean = catalog.open("web/clean-decontaminated@latest", store=s["store"]).to_table().to_pylist()
    rejected = catalog.open("leakage/rejected@latest", store=s["store"]).to_table().to_pylist()
    assert len(clean) + len(rejected) == len(s["docs"])
    by_id = {r["id"]: r for r in clean}
    for i, doc in enumerate(s["docs"]):
        if i not in s["planted"]:
            assert by_id[s["ids"][i]]["text"] == doc and not by_id[s["ids"][i]]["contaminated"]
    for d in s["planted"]:
        row = by_id.get(s["ids"][d])
        if row is not None:  # kept with the match and 200 characters around it cut out
            assert row["contaminated"] and row["leak_chars_removed"] > 0
            assert "How many" not in row["text"] and "请问小明" not in row["text"]
        else:
            assert any(r["id"] == s["ids"][d] and r["reject_reason"] for r in rejected)

    m = catalog.manifest("web/clean-decontaminated@latest", store=s["store"])
    assert m.stats["input"] == len(s["docs"]) and m.stats["kept"] + m.stats["rejected"] == len(s["docs"])
    parents = {p.name: p for p in m.parents}
    assert parents["web/clean"].version == "v0001"
    bench_parents = [p for n, p in parents.items() if n.startswith("benchmark:arith/test")]
    assert bench_parents and all(p.sha256 == hashlib.sha256(Path(p.uri).read_bytes()).hexdigest()
                                 for p in bench_parents)
    summary = {r["benchmark"]: r for r in m.stats["summary"]}
    assert summary["arith"]["items"] == 20 and summary["arith"]["items_contaminated"] == 4
    assert summary["zh"]["items_contaminated"] == 1

    again = _cli("run", "decontaminate", "--corpus", "web/clean@latest", "--config", str(cfg),
                 "--store", s["store"], "--json")
    assert json.loads(again.stdout)["datasets"]["clean"]["ref"] == "web/clean-decontaminated@v0001"  # cached

    bad = _cli(*args[:-1])  # default text field `text` does not exist in the arith files
    assert bad.exit_code != 0
    assert "arith" in bad.output and "text" in bad.output and ".jsonl" in bad.output
    assert "Traceback" not in bad.output


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    problems = tiny_lm.arithmetic_problems(90, seed=11)
    filler = tiny_lm.filler_texts(40, seed=2)
    splits = {"train": problems[:15], "test": problems[15:30], "reference": problems[30:45]}
    root = tmp_path_factory.mktemp("audit")
    for split, texts in splits.items():
        _write_jsonl(root / "bench" / f"{split}.jsonl", [{"text": t} for t in texts])
    tok = tiny_lm.train_tokenizer(filler + problems, vocab_size=500)
    leaked = tiny_lm.build_tiny_lm(root / "leaked", tok, filler + problems[45:] + splits["test"], epochs=30, seed=0)
    return {"root": root, "bench": root / "bench", "leaked": leaked, "splits": splits}


def test_leakage_audit_flow_flags_a_leaked_model_and_caches(models, tmp_path):
    store = str(tmp_path / "store")
    args = ["run", "leakage-audit", "--model", str(models["leaked"]), "--benchmark", f"arith={models['bench']}",
            "--store", store, "--device", "cpu"]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    assert "flag arith: Delta1 = L_test - L_ref" in result.output and "_losses.png" in result.output
    table = catalog.open("leakage/audit@latest", store=store).to_table()
    assert table.num_rows == 45 and set(table["split"].to_pylist()) == {"train", "test", "reference"}
    m = catalog.manifest("leakage/audit@latest", store=store)
    s = m.stats["summaries"][0]
    assert s["delta1"]["value"] < 0 and s["flags"]["test_leakage"] and m.stats["flagged"] == ["arith"]
    assert s["splits"]["test"]["loss"] < s["splits"]["reference"]["loss"]
    assert any(a.path == "_losses.png" for a in m.attachments)
    png = Path(store, "leakage/audit", m.version, "_losses.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(p.name.startswith("model:") for p in m.parents)
    again = _cli(*args, "--json")
    assert json.loads(again.stdout)["datasets"]["audit"]["ref"] == "leakage/audit@v0001"  # cached, nothing rescored

    missing = _cli("run", "leakage-audit", "--model", str(models["leaked"]), "--benchmark",
                   f"x={models['bench'] / 'test.jsonl'}", "--store", store)
    assert missing.exit_code != 0 and "reference" in missing.output and "Traceback" not in missing.output
    not_a_model = _cli("run", "leakage-audit", "--model", str(models["bench"]), "--benchmark",
                       f"arith={models['bench']}", "--store", store)
    assert not_a_model.exit_code != 0 and str(models["bench"].name) in not_a_model.output
    assert len(not_a_model.output.strip().splitlines()) <= 2


def test_leakage_reference_flow_publishes_screened_items_the_audit_can_use(models, tmp_path):
    from skycurate.stages.leakage.ngrams import item_ngram_hashes

    store = str(tmp_path / "store")
    result = _cli("run", "leakage-reference", "--benchmark", f"arith={models['bench']}", "--model",
                  str(models["leaked"]), "--samples", "12", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    ref = out["datasets"]["reference"]["ref"]
    assert ref.startswith("leakage/reference-arith@")
    items = catalog.open(ref, store=store).to_table().to_pylist()
    rejected = catalog.open("leakage/reference-rejected@latest", store=store).to_table().to_pylist()
    stats = out["stats"]
    assert stats["accepted"] == len(items) and stats["rejected"] == len(rejected) and 0 < len(items) <= 12
    # The screen's promise, checked independently: no accepted item shares an 8-gram with the benchmark.
    bench_texts = [t for texts in models["splits"].values() for t in texts]
    bench_grams, _ = item_ngram_hashes(bench_texts, 8, 8)
    bench_set = set(int(h) for g in bench_grams for h in g)
    for item in items:
        grams, _ = item_ngram_hashes([item["text"]], 8, 8)
        assert not bench_set & set(int(h) for h in grams[0]), item["text"]
    assert len({i["text"] for i in items}) == len(items)
    # The model memorised the test split: some of what it writes are copies, and those were rejected.
    assert all(r["reason"] for r in rejected)

    audit = _cli("run", "leakage-audit", "--model", str(models["leaked"]), "--benchmark",
                 f"arith={models['bench']}", "--reference", f"arith={ref}", "--store", store, "--json",
                 "--device", "cpu")
    assert audit.exit_code == 0, audit.output
    m = catalog.manifest("leakage/audit@latest", store=store)
    assert any(p.name == "leakage/reference-arith" for p in m.parents)
    n_ref = sum(1 for s in catalog.open("leakage/audit@latest", store=store).to_table()["split"].to_pylist()
                if s == "reference")
    assert n_ref == len(items)
