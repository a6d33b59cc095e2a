"""The web flow end to end on the built-in sample crawl: real Prefect, real Spark, real fastText."""

from __future__ import annotations

import os

from pathlib import Path

import pyarrow.compute as pc
import pytest

from skycurate import catalog
from skycurate.samples.web import BLOCKED_DOMAIN, write_sample_crawl
from skycurate.schemas.web_flow import WebConfig

pytestmark = [pytest.mark.usefixtures("prefect_harness", "spark"), pytest.mark.integration]


def _config(crawl, model, **extra) -> WebConfig:
    return WebConfig.model_validate({
        "inputs": [str(crawl.inputs)],
        "safety": {"url_blocklist": str(crawl.url_blocklist), "keyword_blocklist": str(crawl.keyword_blocklist)},
        "quality_model": {"model_path": str(model), "threshold": 0.2},
        **extra,
    })


def _run(store, cfg, **kwargs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from skycurate.flows.web_corpus import web_flow

    state = web_flow(store=store, config=cfg, return_state=True, **kwargs)
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    return state.result(), {r.name.rsplit("-", 1)[0]: r.state.name for r in runs}


def test_sample_crawl_end_to_end(store, sample, tmp_path):
    crawl, model = sample
    result, states = _run(store, _config(crawl, model))
    assert set(states.values()) == {"Completed"}
    refs = result["datasets"]
    clean = catalog.open(refs["clean"]).to_table()
    rejected = catalog.open(refs["rejected"]).to_table()
    quarantine = catalog.open(refs["quarantine"]).to_table()

    # Counts reconcile: every input record is kept, rejected (with stage and reason) or quarantined.
    assert clean.num_rows + rejected.num_rows + quarantine.num_rows == crawl.records
    assert pc.all(pc.is_valid(rejected["reject_reason"])).as_py()
    assert quarantine.num_rows == crawl.broken
    manifest = catalog.manifest(refs["clean"])
    funnel = manifest.stats["funnel"]
    assert funnel[0]["rows_in"] == crawl.records and funnel[-1]["rows_out"] == clean.num_rows
    for step in funnel:
        assert step["rows_in"] == step["rows_out"] + step["rejected"] + step["quarantined"]
        assert step["bytes_out"] <= step["bytes_in"]
    assert [a.path for a in manifest.attachments] == ["_funnel.png"]
    assert Path(refs["clean"].uri, "_funnel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The rule ablation agrees with the funnel: the documents that reached the quality rules, and the
    # rejections each family made first; a rule fails at least the documents it rejected first.
    ablation, steps = manifest.stats["rule_ablation"], {s["stage"]: s for s in funnel}
    assert result["rule_ablation"] == ablation
    assert sum(ablation["documents"].values()) == steps["gopher_quality"]["rows_in"]
    for family in ("gopher_quality", "gopher_repetition", "c4", "fineweb"):
        firsts = sum(n for r in ablation["rules"] if r["rule"].startswith(family + ":") for n in r["first"].values())
        assert firsts == steps[family]["rejected"], family
    assert all(r["alone"].get(lang, 0) >= n for r in ablation["rules"] for lang, n in r["first"].items())
    assert any(r["first"] for r in ablation["rules"])

    urls = set(clean["url"].to_pylist())
    reasons = dict(zip(rejected["url"].to_pylist(), rejected["reject_stage"].to_pylist()))
    # Each planted duplicate group keeps exactly one page.
    for original, copies in {**crawl.exact_duplicates, **crawl.near_duplicates}.items():
        group = [original, *copies]
        assert len(urls & set(group)) == 1, (group, [reasons.get(u) for u in group])
    for original, copies in crawl.exact_duplicates.items():
        assert {reasons.get(u) for u in [original, *copies]} - {None} == {"exact_dedup"}
    for original, copies in crawl.near_duplicates.items():
        assert {reasons.get(u) for u in [original, *copies]} - {None} == {"near_dedup"}
    assert reasons[f"https://{BLOCKED_DOMAIN}/win"] == "safety"
    assert reasons["https://fr.example/article"] == "lid"
    assert reasons["https://shop.example/deals"] in {"safety", "gopher_quality", "gopher_repetition", "c4", "fineweb"}
    assert reasons["https://science-notes.example.org/paper.pdf"] == "extract"
    assert reasons["https://deals.example.org/list"] in {"gopher_quality", "gopher_repetition", "c4", "fineweb"}
    assert reasons["https://baike.example.cn/repeat"] in {"gopher_repetition", "boilerplate"}
    # Both languages survive, PII is masked, navigation and footers are gone.
    assert set(clean["lang"].to_pylist()) == {"en", "zh"}
    text = "\n".join(clean["text"].to_pylist())
    assert "editor@riverwiki.example" not in text and "13812345678" not in text and "<EMAIL>" in text
    # Navigation and footers go at extraction; the in-article share line recurs on every page
    # of a site and is removed by the distribution filter.
    assert "All rights reserved" not in text and "隐私政策" not in text
    assert "Share this page on social media" not in text and "扫描二维码关注我们的公众号" not in text
    assert sum(clean["boilerplate_lines"].to_pylist()) > 0
    assert clean.column("quality_score").null_count == 0
    assert pc.all(pc.is_valid(clean["cluster_id"])).as_py()

    lineage = catalog.lineage(refs["clean"])
    chain, nodes = [], []
    node = lineage
    while node.parents:
        node = node.parents[0]
        chain.append(node.name)
        nodes.append(node)
    assert chain[:4] == ["web/scored", "web/deduped", "web/filtered", "web/extracted"]
    # Crawl files are pinned by size and mtime, recorded in the parent's own field (not the URI).
    crawl_parents = nodes[3].parents
    assert crawl_parents and all(p.pin == f"size={os.stat(p.uri).st_size} mtime_ns={os.stat(p.uri).st_mtime_ns}"
                                 and p.sha256 is None for p in crawl_parents)

    # Unchanged input and config: every stage is cached, nothing new is published.
    again, states = _run(store, _config(crawl, model))
    assert set(states) == {"extract", "annotate_and_filter", "dedup", "classify", "finalize"}
    assert set(states.values()) == {"Cached"}
    assert again["datasets"]["clean"] == refs["clean"]

    # A re-tuned classifier threshold reruns only the stages after the signals: classify and finalize.
    cfg = _config(crawl, model)
    cfg.quality_model.threshold = 0.9
    retuned, states = _run(store, cfg)
    assert states == {"extract": "Cached", "annotate_and_filter": "Cached", "dedup": "Cached",
                      "classify": "Completed", "finalize": "Completed"}
    assert retuned["datasets"]["clean"] != refs["clean"]

    # Token counts (tokens.tokenizer): only finalize reruns; web/clean gets n_tokens, the tokenizer's own
    # count of each text, and the manifest its totals by language (exact) and the tokenizer's lineage.
    from collections import Counter

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from skycurate.schemas.tokens import TokenizerConfig

    texts = catalog.open(retuned["datasets"]["clean"]).to_table()["text"].to_pylist()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(tmp_path / "tokenizer.json"))
    cfg.tokens = TokenizerConfig(tokenizer=str(tmp_path / "tokenizer.json"))
    counted, states = _run(store, cfg)
    assert states == {"extract": "Cached", "annotate_and_filter": "Cached", "dedup": "Cached",
                      "classify": "Cached", "finalize": "Completed"}
    clean = catalog.open(counted["datasets"]["clean"]).to_table()
    want = [len(tok.encode(t).ids) for t in clean["text"].to_pylist()]
    assert clean["n_tokens"].to_pylist() == want and sorted(clean["text"].to_pylist()) == sorted(texts)
    by_lang: Counter = Counter()
    for lang, n in zip(clean["lang"].to_pylist(), want, strict=True):
        by_lang[lang] += n
    stats = catalog.manifest(counted["datasets"]["clean"]).stats["tokens"]
    assert counted["tokens"] == stats and stats["tokens"] == sum(want) and stats["by_lang"] == dict(by_lang)
    assert "tokenizer" in [p.name for p in catalog.manifest(counted["datasets"]["clean"]).parents]


def test_incremental_run_does_not_readmit_published_pages(store, sample, tmp_path):
    crawl, model = sample
    first, _ = _run(store, _config(crawl, model))
    first_clean = catalog.open(first["datasets"]["clean"]).to_table()

    # Next week's crawl: the same sample again (every page already published) plus one new page.
    new_crawl = write_sample_crawl(tmp_path / "week2", seed=7)
    new_page = new_crawl.inputs / "pages" / "new.html"
    from skycurate.samples.web import EN_PARAGRAPHS, _page

    new_page.write_text(_page("Bees", [EN_PARAGRAPHS[8], EN_PARAGRAPHS[2], EN_PARAGRAPHS[5]], "en", "Science Notes"))
    cfg = _config(new_crawl, model, dedup_against=first["datasets"]["clean"].label)
    second, _ = _run(store, cfg)
    clean2 = catalog.open(second["datasets"]["clean"]).to_table()
    assert clean2.num_rows == 1 and clean2["source"].to_pylist() == ["pages/new.html"]
    rejected2 = catalog.open(second["datasets"]["rejected"]).to_table()
    previous = [r for r in rejected2["reject_reason"].to_pylist() if "(previous version)" in r]
    assert len(previous) >= first_clean.num_rows
    deduped = catalog.lineage(second["datasets"]["clean"]).parents[0].parents[0]
    assert deduped.name == "web/deduped"
    assert [p.label for p in deduped.parents][1:] == [f"web/minhash_index@{first['datasets']['minhash_index'].version}"]
    # The new index is cumulative: last week's pages plus this week's one new page.
    index2 = catalog.open(second["datasets"]["minhash_index"]).to_table()
    assert index2.num_rows == first_clean.num_rows + 1


def test_counts_that_do_not_reconcile_publish_none_of_the_final_datasets(store, sample, monkeypatch):
    """A row lost between the stages and web/clean fails the check; rejected/clean/index stay unpublished."""
    from skycurate.flows.web_corpus import web_flow
    from skycurate.stages.web import pipeline

    crawl, model = sample
    real_clean_rows = pipeline.clean_rows
    monkeypatch.setattr(pipeline, "clean_rows", lambda scored: real_clean_rows(scored).limit(3))  # loses rows
    state = web_flow(store=store, config=_config(crawl, model), return_state=True)
    assert state.is_failed() and "AccountingError" in state.message and "!= kept 3 +" in state.message
    published = set(catalog.Catalog(store).names())
    assert {"web/extracted", "web/filtered", "web/deduped", "web/scored", "web/quarantine"} <= published
    assert not published & {"web/rejected", "web/clean", "web/minhash_index"}
    for name in ("web/rejected", "web/clean", "web/minhash_index"):  # no staged files or claims left behind
        assert not os.path.exists(os.path.join(store, name))


def test_top_fraction_keep_rule_uses_a_global_quantile(spark, sample):
    from skycurate.samples.web import EN_PARAGRAPHS, ZH_PARAGRAPHS
    from skycurate.schemas.web_annotate import QualityModelConfig
    from skycurate.stages.web.pipeline import classify

    crawl, model = sample
    junk = ["click here free download best price now", "免费 下载 点击 登录 优惠 抽奖", "win now cheap sale login",
            "best price sale now click", "立即 注册 包邮 最低价", "free login download win", "点击 免费 抽奖", "cheap now here"]
    texts = EN_PARAGRAPHS[:8] + ZH_PARAGRAPHS[:8] + junk  # 16 good, 8 junk: the median is a good page
    df = spark.createDataFrame([(f"d{i:02d}", t) for i, t in enumerate(texts)], "id string, text string")
    out, threshold = classify(df, QualityModelConfig(model_path=str(model), top_fraction=0.5))
    rows = out.collect()
    kept = {r.text for r in rows if r.reject_reason is None}
    assert 0.0 < threshold < 1.0
    assert len(rows) == len(texts)
    assert 11 <= len(kept) <= 13  # about the top half, by an approximate quantile
    assert set(junk).isdisjoint(kept)
    assert all(r.reject_stage == "quality_classifier" for r in rows if r.reject_reason is not None)


def _verdict_frame(spark, rows, extra=""):
    schema = "reject_stage string, reject_reason string, text_bytes long" + extra
    return spark.createDataFrame(rows, schema)


def test_funnel_from_stage_datasets_in_one_aggregation(spark):
    from skycurate.stages.accounting import AccountingError
    from skycurate.stages.web.pipeline import funnel

    frames = {
        "quarantine": spark.createDataFrame([(7,)], "payload_bytes long"),
        "extracted": _verdict_frame(spark, [(None, None, 10, 100), (None, None, 20, 200), ("extract", "no text", 0, 50)],
                                    ", payload_bytes long"),
        # boilerplate removal took 5 bytes from the kept row: it entered with 20
        "filtered": _verdict_frame(spark, [("lid", "lid: fr", 10, None), (None, None, 15, 5)],
                                   ", boilerplate_bytes long"),
        "deduped": _verdict_frame(spark, [(None, None, 15)]),
        "scored": _verdict_frame(spark, [(None, None, 15)]),
    }
    steps = {s["stage"]: s for s in funnel(frames)}
    assert list(steps) == ["read", "extract", "lid", "safety", "gopher_quality", "gopher_repetition", "c4", "fineweb",
                           "boilerplate", "exact_dedup", "near_dedup", "quality_classifier"]
    assert steps["read"] == {"stage": "read", "rows_in": 4, "rows_out": 3, "rejected": 0, "quarantined": 1,
                             "bytes_in": 357, "bytes_out": 350}
    assert steps["extract"] == {"stage": "extract", "rows_in": 3, "rows_out": 2, "rejected": 1, "quarantined": 0,
                                "bytes_in": 350, "bytes_out": 30}
    assert steps["lid"] == {"stage": "lid", "rows_in": 2, "rows_out": 1, "rejected": 1, "quarantined": 0,
                            "bytes_in": 30, "bytes_out": 20}
    assert (steps["fineweb"]["rows_out"], steps["fineweb"]["bytes_out"]) == (1, 20)
    assert steps["boilerplate"] == {"stage": "boilerplate", "rows_in": 1, "rows_out": 1, "rejected": 0,
                                    "quarantined": 0, "bytes_in": 20, "bytes_out": 15}
    assert [(s["rows_out"], s["bytes_out"]) for s in list(steps.values())[-3:]] == [(1, 15)] * 3

    # A stage dataset that does not hold exactly the rows the previous stage kept is refused.
    frames["deduped"] = _verdict_frame(spark, [(None, None, 15), (None, None, 1)])
    with pytest.raises(AccountingError, match="deduped: 2 rows, but the previous stage kept 1"):
        funnel(frames)


def test_a_new_web_clean_is_decontaminated_in_the_same_run(store, sample, tmp_path):
    """Chaining: with benchmarks configured, the run that publishes web/clean@vN also publishes
    web/clean-decontaminated made from exactly that version."""
    import json

    from skycurate.samples.web import EN_PARAGRAPHS

    crawl, model = sample
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "test.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in EN_PARAGRAPHS[:4]))
    result, states = _run(store, _config(crawl, model, benchmarks=[{"name": "parabench", "path": str(bench)}]))
    refs = result["datasets"]
    clean, decon = refs["clean"], refs["decontaminated"]
    assert decon.name == "web/clean-decontaminated" and states.get("decontaminate") == "Completed"
    assert [p.label for p in catalog.lineage(decon).parents][0] == clean.label        # made from this run's clean
    matches = catalog.open(refs["contamination"]).to_table()
    assert matches.num_rows >= 1 and set(matches["benchmark"].to_pylist()) == {"parabench"}
    m = catalog.manifest(decon)
    assert m.num_rows <= catalog.manifest(clean).num_rows


def test_the_web_flow_on_an_s3_store(s3_store, sample):
    """The whole flow against an S3-compatible server: Spark has no s3a connector here, so inputs
    reach it as verified local copies and its output is uploaded; reruns are cached as locally."""
    crawl, model = sample
    result, states = _run(s3_store, _config(crawl, model))
    assert set(states.values()) == {"Completed"}
    refs = result["datasets"]
    cat = catalog.Catalog(s3_store)
    clean, rejected, quarantine = (cat.open(refs[k]).count_rows() for k in ("clean", "rejected", "quarantine"))
    assert clean > 0 and clean + rejected + quarantine == crawl.records
    for ref in refs.values():
        assert ref.store == s3_store and cat.verify(ref).ok
    assert cat.attachment(refs["clean"], "_funnel.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert [n.name for n in cat.lineage(refs["clean"]).parents][:1] == ["web/scored"]
    assert not cat.fs.glob(f"{cat.root}/**/_staging/*") and not cat.fs.exists(f"{cat.root}/_scratch")
    again, states = _run(s3_store, _config(crawl, model))
    assert set(states.values()) == {"Cached"} and again["datasets"]["clean"] == refs["clean"]
