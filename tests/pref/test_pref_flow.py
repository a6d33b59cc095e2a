"""``skycurate run preference`` end to end on Spark + Prefect: two public layouts in, one TRL DPO
``pref/pairs`` out; ties, duplicates across sources and contaminated prompts dropped, every record
accounted per source."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from skycurate.catalog import Catalog
from skycurate.cli import app

pytestmark = pytest.mark.usefixtures("prefect_harness")

GSM = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
ANSWERS = [
    ("How do I boil an egg so the yolk stays soft?",
     "Put the egg in boiling water for six minutes, then cool it in ice water so the yolk stays runny.",
     "Eggs are a good source of protein and can be cooked in many different ways around the world."),
    ("Name three primary colours.", "Red, yellow and blue are the traditional primary colours in painting.",
     "Green is a nice colour and many people like it a lot for their houses."),
    ("What is the capital of Australia?", "The capital of Australia is Canberra, not Sydney as many assume.",
     "Australia is a large country with many beautiful beaches and interesting animals."),
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pref")
    # TRL explicit layout (Anthropic-style strings) with a tie, an identical pair, a malformed line
    trl = [{"prompt": q, "chosen": c, "rejected": r} for q, c, r in ANSWERS]
    trl += [{"prompt": "Say hi.", "chosen": "Hi there!", "rejected": "Hi there!"},                 # identical
            {"prompt": GSM + " How many clips did she sell?", "chosen": "She sold 72 clips in all.",
             "rejected": "She sold 48 clips."},                                                     # contaminated
            {"prompt": "Spell cat.", "chosen": 7, "rejected": "k-a-t"}]                            # malformed
    _write(d / "trl.jsonl", trl)
    (d / "trl.jsonl").write_text((d / "trl.jsonl").read_text() + "{not json\n")
    # UltraFeedback layout: scored completions; one repeats a TRL pair (a duplicate across sources)
    uf = [{"source": "evol", "instruction": q, "completions": [
        {"model": "a", "response": c, "overall_score": 8.5}, {"model": "b", "response": "I am not sure.",
                                                                "overall_score": 4.0},
        {"model": "c", "response": r, "overall_score": 2.0}]} for q, c, r in ANSWERS[:1]]
    uf.append({"instruction": "Translate 'merci' into English.", "completions": [
        {"response": "It means 'thank you'.", "overall_score": 9.0},
        {"response": "It means 'sea'.", "overall_score": 3.0}]})
    uf.append({"instruction": "Pick one.", "completions": [{"response": "A", "overall_score": 5.0},
                                                           {"response": "B", "overall_score": 5.0}]})   # tie
    _write(d / "uf.jsonl", uf)
    bench = d / "gsm8k"
    bench.mkdir()
    _write(bench / "test.jsonl", [{"text": GSM}])
    store = str(d / "store")
    res = CliRunner().invoke(app, ["run", "preference", "--source", f"hh={d / 'trl.jsonl'}", "--source",
                                   f"ultrafeedback={d / 'uf.jsonl'}", "--benchmark", f"gsm8k={bench}",
                                   "--store", store, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return store, json.loads(res.stdout[res.stdout.index("{"):])


def test_every_record_is_a_pair_or_a_rejection_with_its_reason(run):
    store, out = run
    s = out["stats"]
    assert s["layouts"] == {"hh": "trl", "ultrafeedback": "ultrafeedback"}
    assert s["by_source"] == {"hh": {"records": 7, "pairs": 3, "rejected": 4},
                              "ultrafeedback": {"records": 3, "pairs": 1, "rejected": 2}}
    rejected = {(r["source"], r["stage"], r["reason"]) for r in Catalog(store).open("pref/rejected@latest")
                .to_table().to_pylist()}
    assert rejected == {("hh", "tie", "tie"), ("hh", "decontaminate", "contaminated"), ("hh", "layout", "malformed"),
                        ("hh", "read", "malformed_record"), ("ultrafeedback", "exact_dedup", "exact_duplicate"),
                        ("ultrafeedback", "tie", "tie")}


def test_pairs_are_in_trls_conversational_layout_and_load_with_datasets(run, tmp_path):
    import datasets

    store, out = run
    pairs = {r["prompt_text"]: r for r in Catalog(store).open("pref/pairs@latest").to_table().to_pylist()}
    egg = pairs[ANSWERS[0][0]]
    assert egg["source"] == "hh"                                  # the earlier source keeps the duplicate
    assert egg["prompt"] == [{"role": "user", "content": ANSWERS[0][0]}]
    assert egg["chosen"] == [{"role": "assistant", "content": ANSWERS[0][1]}]
    assert egg["rejected"] == [{"role": "assistant", "content": ANSWERS[0][2]}]
    merci = pairs["Translate 'merci' into English."]
    assert (merci["chosen_score"], merci["rejected_score"]) == (9.0, 3.0)
    uri = out["datasets"]["pairs"]["uri"].removeprefix("file://")
    loaded = datasets.load_dataset("parquet", data_files=f"{uri}/*.parquet", split="train",
                                   cache_dir=str(tmp_path / "hf"))
    assert loaded.num_rows == 4 and {"prompt", "chosen", "rejected"} <= set(loaded.column_names)


def test_a_source_the_layout_cannot_read_is_one_clear_line(tmp_path):
    bad = _write(tmp_path / "odd.jsonl", [{"question": "q", "good": "a", "bad": "b"}])
    res = CliRunner().invoke(app, ["run", "preference", "--source", f"odd={bad}", "--store", str(tmp_path / "s")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "odd" in lines[0] and "[bad, good, question]" in lines[0]
