"""Model leakage audit: membership metrics, the transformers scorer, and the end-to-end proof.

(1) metrics on hand-made TokenScores; (2) the scorer on a tiny random Llama model built locally;
(3) the proof: model A trained on the test split of a synthetic benchmark is flagged, model B
trained on its train split instead is not flagged for test leakage (and is flagged for Delta2).
Tiny models run with one torch thread: on 2 busy cores, 2 threads made each step ~20x slower.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zlib

import numpy as np
import pyarrow as pa
import pytest
import tiny_lm  # tests/leakage is on sys.path (pytest's rootdir-relative import of this folder)
import torch
from pydantic import ValidationError

from skycurate.connectors.llm import EngineError, open_scorer
from skycurate.connectors.llm.scoring import TokenScorer, TokenScores, VllmScorer
from skycurate.errors import ConfigError, SkycurateError, StageContractError
from skycurate.schemas.config import validate_config
from skycurate.schemas.leakage_audit import AUDIT_SAMPLE_SCHEMA, AuditConfig
from skycurate.stages.leakage.membership import (
    Delta,
    audit_table,
    auroc,
    bootstrap_micro_loss,
    flags,
    min_k_pp,
    min_k_prob,
    percentile_ci,
    sample_metrics,
    score_benchmark,
    split_losses,
    summarize,
    summarize_all,
)


def ts(lp, mu=None, sigma=None, n_tokens=None, truncated=False) -> TokenScores:
    lp = np.asarray(lp, dtype=np.float32)
    n = lp.size + 1 if n_tokens is None else n_tokens
    f32 = (lambda a: None if a is None else np.asarray(a, dtype=np.float32))
    return TokenScores(lp, n, n, truncated, f32(mu), f32(sigma))


def table_of(splits: dict[str, list[TokenScores]], cfg=None, model="m", bench="b") -> pa.Table:
    cfg = cfg or AuditConfig()
    parts = [audit_table(model, bench, split, [f"{split}{i}" for i in range(len(s))], ["x" * 10] * len(s), s, cfg)
             for split, s in splits.items()]
    return pa.concat_tables(parts)


class FakeScorer:
    """A TokenScorer that returns fixed scores: one log-prob of -len(text)/10 per character."""

    model_name = "fake"
    has_full_logits = False

    def score(self, texts):
        return [ts([-len(t) / 10] * max(len(t) - 1, 0), n_tokens=len(t)) for t in texts]

    def close(self):
        pass


# --------------------------------------------------------------------------- (1) metrics


def test_split_loss_is_micro_averaged_over_tokens_not_samples():
    long_easy = ts([-1.0] * 9)      # loss 9 over 9 tokens
    short_hard = ts([-4.0])         # loss 4 over 1 token
    got = split_losses(table_of({"test": [long_easy, short_hard]}), AuditConfig(bootstrap_samples=50))["test"]
    assert got.loss == pytest.approx(13 / 10)            # micro: (9 + 4) / (9 + 1)
    assert got.loss_macro == pytest.approx((1 + 4) / 2)  # macro would say 2.5
    assert (got.n_items, got.n_tokens, got.n_unscored) == (2, 10, 0)


def test_min_k_averages_the_lowest_k_percent_of_tokens():
    lp = np.array([-0.1, -5.0, -0.2, -3.0, -0.3, -0.4, -0.5, -0.6, -0.7, -0.8])
    assert min_k_prob(lp, 0.2) == pytest.approx((-5.0 - 3.0) / 2)    # 20% of 10 = the 2 lowest
    assert min_k_prob(lp[::-1], 0.2) == pytest.approx(-4.0)           # order does not matter
    assert min_k_prob(lp, 0.05) == pytest.approx(-5.0)                # at least one token
    assert min_k_prob(lp, 1.0) == pytest.approx(lp.mean())
    assert math.isnan(min_k_prob(np.array([]), 0.2))


def test_min_k_pp_standardises_by_the_vocabulary_moments():
    lp = np.array([-6.0, -2.0, -1.0, -0.5, -3.0])
    mu = np.array([-6.5, -1.0, -1.5, -0.5, -2.0])
    sigma = np.array([1.0, 0.5, 2.0, 1.0, 4.0])
    z = (lp - mu) / sigma                                # [0.5, -2.0, 0.25, 0.0, -0.25]
    assert min_k_pp(lp, mu, sigma, 0.4) == pytest.approx(np.sort(z)[:2].mean())   # (-2 - 0.25) / 2
    assert min_k_pp(lp, mu, sigma, 0.4) == pytest.approx(-1.125)
    # the lowest raw log-prob (-6, but expected there: mu = -6.5) is not among the lowest z-scores
    assert min_k_prob(lp, 0.2) == pytest.approx(-6.0)
    assert min_k_pp(lp, mu, sigma, 0.2) == pytest.approx(-2.0)


def test_sample_metrics_zlib_ratio_and_unscored_text():
    text = "Tom has 12 apples. Anna gives Tom 3 more apples."
    m = sample_metrics(ts([-1.0, -2.0, -3.0], [-1.0] * 3, [1.0] * 3), text, k=0.2)
    zb = len(zlib.compress(text.encode("utf-8")))
    assert (m.loss_sum, m.loss_mean, m.zlib_bytes) == (pytest.approx(6.0), pytest.approx(2.0), zb)
    assert m.zlib_ratio == pytest.approx(2.0 / zb)
    assert m.min_k_pp == pytest.approx(-2.0)
    assert math.isnan(sample_metrics(ts([-1.0]), text, minkpp=True).min_k_pp)   # no moments: no Min-K%++

    empty = sample_metrics(TokenScores(np.zeros(0, np.float32), 0, 0, False), "")
    assert empty.n_scored == 0 and all(math.isnan(v) for v in (empty.loss_sum, empty.min_k, empty.zlib_ratio))


def test_unscored_items_are_null_counted_and_left_out_of_the_loss():
    cfg = AuditConfig(bootstrap_samples=50)
    empty = TokenScores(np.zeros(0, np.float32), 0, 0, False)
    table = table_of({"test": [ts([-2.0, -2.0]), empty]}, cfg)
    assert table.schema == AUDIT_SAMPLE_SCHEMA
    assert table["loss_mean"].to_pylist() == [2.0, None]
    got = split_losses(table, cfg)["test"]
    assert (got.loss, got.n_items, got.n_unscored) == (pytest.approx(2.0), 1, 1)


def test_keep_token_scores_stores_per_token_lists():
    cfg = AuditConfig(keep_token_scores=True)
    table = table_of({"test": [ts([-1.0, -3.0], [-1.0, -1.0], [2.0, 2.0])]}, cfg)
    assert table["token_logprobs"].to_pylist() == [[-1.0, -3.0]]
    assert table["token_zscores"].to_pylist() == [[0.0, -1.0]]
    assert table_of({"test": [ts([-1.0])]})["token_logprobs"].to_pylist() == [None]


def test_bootstrap_ci_contains_the_estimate_narrows_with_more_items_and_is_seeded():
    rng = np.random.default_rng(7)

    def split(n):
        n_tok = rng.integers(20, 200, n).astype(float)
        return rng.gamma(4.0, 0.25, n) * n_tok, n_tok

    widths = []
    for n in (20, 500):
        loss_sum, n_tok = split(n)
        point = loss_sum.sum() / n_tok.sum()
        reps = bootstrap_micro_loss(loss_sum, n_tok, 2000, np.random.default_rng(0))
        lo, hi = percentile_ci(reps, 0.95)
        assert lo < point < hi
        widths.append(hi - lo)
        again = bootstrap_micro_loss(loss_sum, n_tok, 2000, np.random.default_rng(0))
        assert np.array_equal(reps, again)
    assert widths[1] < widths[0] / 3          # ~sqrt(500 / 20) = 5x narrower


def test_delta_ci_is_reproducible_and_covers_the_point():
    cfg = AuditConfig(bootstrap_samples=400, seed=3)
    rng = np.random.default_rng(1)
    splits = {s: [ts(-rng.gamma(2, 0.5, rng.integers(5, 40))) for _ in range(30)] for s in ("test", "reference")}
    table = table_of(splits, cfg)
    a, b = summarize(table, cfg), summarize(table, cfg)
    assert a.delta1 == b.delta1 and a.delta2 is None
    assert a.delta1.ci_low < a.delta1.value < a.delta1.ci_high
    assert a.delta1.value == pytest.approx(a.splits["test"].loss - a.splits["reference"].loss)
    json.dumps(a.to_dict(), allow_nan=False)   # JSON-ready for manifests and --json


def test_auroc_on_separable_reversed_identical_and_tied_inputs():
    assert auroc(np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0])) == 1.0
    assert auroc(np.array([0.0, 1.0]), np.array([3.0, 4.0])) == 0.0
    same = np.array([0.3, 0.1, 0.7, 0.5])
    assert auroc(same, same.copy()) == 0.5
    assert auroc(np.array([1.0, 2.0]), np.array([1.0, 0.0])) == pytest.approx(0.875)  # one tie counts 1/2
    assert math.isnan(auroc(np.array([np.nan]), np.array([1.0])))
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, 40).round(1), rng.normal(0, 1, 30).round(1)
    brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert auroc(pos, neg) == pytest.approx(brute)


def test_membership_aurocs_are_signed_so_that_seen_scores_higher():
    seen = [ts([-0.1] * 10) for _ in range(5)]
    unseen = [ts([-3.0] * 10) for _ in range(5)]
    got = summarize(table_of({"test": seen, "reference": unseen}), AuditConfig(bootstrap_samples=50)).auroc
    assert got["test_vs_reference"]["loss_mean"] == 1.0
    assert got["test_vs_reference"]["min_k"] == 1.0
    assert got["test_vs_reference"]["zlib_ratio"] == 1.0
    assert math.isnan(got["test_vs_reference"]["min_k_pp"])     # no moments in these scores


def test_flags_follow_thresholds_and_significance():
    cfg = AuditConfig()
    def d(v, lo, hi, name="Delta1"):
        return Delta(name, "test", "reference", v, lo, hi)

    assert flags(d(-0.3, -0.4, -0.2), None, cfg).test_leakage
    assert not flags(d(-0.05, -0.08, -0.02), None, cfg).test_leakage          # above delta1_max
    assert not flags(d(-0.3, -0.6, +0.05), None, cfg).test_leakage            # CI includes 0
    assert flags(d(-0.3, -0.6, +0.05), None, AuditConfig(require_significant=False)).test_leakage
    f = flags(None, d(0.5, 0.3, 0.7, "Delta2"), cfg)
    assert f.train_split_training and not f.test_leakage and "train split" in f.reasons[0]
    assert not flags(None, d(0.1, 0.05, 0.15, "Delta2"), cfg).train_split_training
    assert flags(None, None, cfg) == flags(None, None, cfg) and not flags(None, None, cfg).reasons


@pytest.mark.parametrize(("model", "test", "train", "ref", "leak", "trained"), [
    ("Qwen-14B", 1.03, 0.42, 1.14, True, True),
    ("Aquila2-34B", 0.78, 0.39, 1.29, True, True),
    ("Skywork-13B", 1.01, 0.97, 1.00, False, False),
])
def test_default_thresholds_on_the_published_gsm8k_losses(model, test, train, ref, leak, trained):
    cfg = AuditConfig()
    tight = 0.02   # published figures have no CI; assume a tight one
    d1 = Delta("Delta1", "test", "reference", test - ref, test - ref - tight, test - ref + tight)
    d2 = Delta("Delta2", "test", "train", test - train, test - train - tight, test - train + tight)
    got = flags(d1, d2, cfg)
    assert (got.test_leakage, got.train_split_training) == (leak, trained)


def test_config_defaults_and_unknown_keys():
    cfg = AuditConfig()
    assert (cfg.engine, cfg.add_bos, cfg.max_tokens, cfg.min_k, cfg.batch_size) == ("transformers", False, 4096,
                                                                                      0.2, 8)
    with pytest.raises(ValidationError):
        AuditConfig(min_kk=0.1)
    with pytest.raises(ConfigError, match="unknown key 'batchsize'"):
        validate_config(AuditConfig, {"batchsize": 4})
    with pytest.raises(ConfigError, match="min_k"):
        validate_config(AuditConfig, {"min_k": 0})


def test_score_benchmark_keeps_order_and_rejects_duplicate_ids():
    scorer = FakeScorer()
    assert isinstance(scorer, TokenScorer)
    cfg = AuditConfig(bootstrap_samples=50)
    table = score_benchmark(scorer, "gsm", {"test": [("a", "xx"), ("b", "xxxx")], "reference": [("c", "xxx")]}, cfg)
    assert table.schema == AUDIT_SAMPLE_SCHEMA
    assert table["item_id"].to_pylist() == ["a", "b", "c"]
    assert table["split"].to_pylist() == ["test", "test", "reference"]
    assert table["n_scored"].to_pylist() == [1, 3, 2]
    assert table["loss_mean"].to_pylist() == pytest.approx([0.2, 0.4, 0.3])
    other = table.set_column(0, AUDIT_SAMPLE_SCHEMA.field("model"), pa.array(["other"] * 3))
    assert [s.model for s in summarize_all(pa.concat_tables([table, other]), cfg)] == ["fake", "other"]
    as_dicts = score_benchmark(scorer, "gsm", {"test": [{"item_id": "a", "text": "xx"}, {"item_id": "b", "text": "xxxx"}],
                                               "reference": [("c", "xxx")]}, cfg)
    assert as_dicts.equals(table)
    with pytest.raises(StageContractError, match="'a' appears more than once"):
        score_benchmark(scorer, "gsm", {"test": [("b", "x"), ("a", "x"), ("a", "y")]}, cfg)
    with pytest.raises(StageContractError, match="item_id and text"):
        score_benchmark(scorer, "gsm", {"test": ["just a text"]}, cfg)


# --------------------------------------------------------------------------- (2) the scorer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import transformers

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    yield
    torch.set_num_threads(before)


# Checked with seeds 0-9 (SKYCURATE_TEST_AUDIT_SEED=n): every assertion below holds for each.
SEED = int(os.environ.get("SKYCURATE_TEST_AUDIT_SEED", "0"))


@pytest.fixture(scope="module")
def corpus():
    problems = tiny_lm.arithmetic_problems(100, seed=SEED)
    filler = tiny_lm.filler_texts(60, seed=SEED)
    return {"train": problems[:20], "test": problems[20:40], "reference": problems[40:60], "pool": problems[60:],
            "filler": filler, "tokenizer": tiny_lm.train_tokenizer(filler + problems, vocab_size=600)}


@pytest.fixture(scope="module")
def random_dir(corpus, tmp_path_factory):
    return tiny_lm.build_tiny_lm(tmp_path_factory.mktemp("random_lm"), corpus["tokenizer"], seed=1,
                                init_std=0.5)


TEXTS = ["Tom has 12 apples. Anna gives Tom 3 more apples. How many apples does Tom have now? Answer: 15.",
         "",
         "The quiet river faces the park.",
         "A",
         "   ",
         "Maya reads 14 pages a day for 6 days. How many pages does Maya read? Answer: 84. " * 3,
         "Hi there"]


def _direct(model_dir, ids: list[int]):
    """Log-probs of ids[1:] and vocabulary moments from a plain full-logits forward pass, in float64."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = ((p * logp.square()).sum(-1) - mu.square()).sqrt()      # the textbook formula
    lp = logp.gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    return lp.numpy(), mu.numpy(), sigma.numpy()


def _assert_same(a: list[TokenScores], b: list[TokenScores], atol=1e-4):
    for x, y in zip(a, b, strict=True):
        assert (x.n_tokens, x.n_scored, x.truncated) == (y.n_tokens, y.n_scored, y.truncated)
        np.testing.assert_allclose(x.logprobs, y.logprobs, atol=atol)
        np.testing.assert_allclose(x.mu, y.mu, atol=atol)
        np.testing.assert_allclose(x.sigma, y.sigma, atol=atol)


def test_batched_scores_equal_unbatched_despite_padding_and_sorting(random_dir):
    from skycurate.connectors.llm.transformers_scorer import TransformersScorer

    one = TransformersScorer(random_dir, AuditConfig(device="cpu", batch_size=1)).score(TEXTS)
    batched = TransformersScorer(random_dir, AuditConfig(device="cpu", batch_size=3)).score(TEXTS)
    unsorted = TransformersScorer(random_dir, AuditConfig(device="cpu", batch_size=4),
                                  sort_by_length=False).score(TEXTS)
    tiny_chunks = TransformersScorer(random_dir, AuditConfig(device="cpu", batch_size=8),
                                     logit_chunk_bytes=1).score(TEXTS)   # one position per head chunk
    full_logits = TransformersScorer(random_dir, AuditConfig(device="cpu", batch_size=3))
    assert full_logits._chunked                  # a plain Llama head: the hidden-state path...
    full_logits._chunked = False                 # ...and the model(...).logits fallback must agree
    _assert_same(one, batched)
    _assert_same(one, unsorted)
    _assert_same(one, tiny_chunks)
    _assert_same(one, full_logits.score(TEXTS))
    assert [s.n_scored for s in one][:2] == [one[0].n_tokens - 1, 0]   # order is the caller's
    assert one[5].n_scored > one[0].n_scored                            # the long text is really longer


def test_scores_and_moments_match_a_direct_softmax_over_the_vocabulary(random_dir, corpus):
    from skycurate.connectors.llm.transformers_scorer import TransformersScorer

    text = TEXTS[0]
    ids = corpus["tokenizer"](text, add_special_tokens=False)["input_ids"]
    (got,) = TransformersScorer(random_dir, AuditConfig(device="cpu")).score([text])
    lp, mu, sigma = _direct(random_dir, ids)
    assert got.logprobs.dtype == np.float32 and got.has_moments
    np.testing.assert_allclose(got.logprobs, lp, atol=1e-4)
    np.testing.assert_allclose(got.mu, mu, atol=1e-4)
    np.testing.assert_allclose(got.sigma, sigma, atol=1e-4)
    assert np.all(got.logprobs < 0) and np.all(got.sigma > 0)


def test_no_bos_scores_tokens_two_to_n_and_bos_scores_all(random_dir, corpus):
    from skycurate.connectors.llm.transformers_scorer import TransformersScorer

    tok = corpus["tokenizer"]
    text = TEXTS[2]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    (plain,) = TransformersScorer(random_dir, AuditConfig(device="cpu")).score([text])
    assert (plain.n_tokens, plain.n_scored) == (len(ids), len(ids) - 1)
    (bos,) = TransformersScorer(random_dir, AuditConfig(device="cpu", add_bos=True)).score([text])
    assert (bos.n_tokens, bos.n_scored) == (len(ids), len(ids))
    lp, _, _ = _direct(random_dir, [tok.bos_token_id] + ids)
    np.testing.assert_allclose(bos.logprobs, lp, atol=1e-4)    # first text token predicted from BOS


def test_empty_and_single_token_texts_are_unscored_not_errors(random_dir):
    from skycurate.connectors.llm.transformers_scorer import TransformersScorer

    scores = TransformersScorer(random_dir, AuditConfig(device="cpu", batch_size=2)).score(TEXTS)
    assert (scores[1].n_tokens, scores[1].n_scored) == (0, 0)          # ""
    assert (scores[3].n_tokens, scores[3].n_scored) == (1, 0)          # one token, no BOS
    assert scores[1].mu is not None and scores[1].mu.size == 0
    table = audit_table("m", "b", "test", [str(i) for i in range(len(TEXTS))], TEXTS, scores, AuditConfig())
    assert table["loss_mean"].null_count == 2
    assert split_losses(table, AuditConfig(bootstrap_samples=20))["test"].n_unscored == 2


def test_truncation_at_max_tokens_is_counted(random_dir, corpus):
    from skycurate.connectors.llm.transformers_scorer import TransformersScorer

    full_len = len(corpus["tokenizer"](TEXTS[5], add_special_tokens=False)["input_ids"])
    (full,) = TransformersScorer(random_dir, AuditConfig(device="cpu")).score([TEXTS[5]])
    cut = TransformersScorer(random_dir, AuditConfig(device="cpu", max_tokens=8)).score(TEXTS)
    assert (cut[5].n_tokens, cut[5].n_tokens_full, cut[5].n_scored, cut[5].truncated) == (8, full_len, 7, True)
    np.testing.assert_allclose(cut[5].logprobs, full.logprobs[:7], atol=1e-4)   # causal: same prefix scores
    assert not full.truncated and full.n_tokens == full_len > 8
    bos_cfg = AuditConfig(device="cpu", max_tokens=8, add_bos=True)
    (bos_cut,) = TransformersScorer(random_dir, bos_cfg).score([TEXTS[5]])
    assert (bos_cut.n_tokens, bos_cut.n_scored) == (7, 7)                     # BOS takes one of the 8 inputs
    table = audit_table("m", "b", "test", [str(i) for i in range(len(TEXTS))], TEXTS, cut, AuditConfig())
    assert split_losses(table, AuditConfig(bootstrap_samples=20))["test"].n_truncated == sum(s.truncated for s in cut)
    lengths = [len(corpus["tokenizer"](t, add_special_tokens=False)["input_ids"]) for t in TEXTS]
    assert [s.truncated for s in cut] == [n > 8 for n in lengths]
    assert [s.n_tokens for s in cut] == [min(n, 8) for n in lengths]


def test_a_model_folder_that_does_not_load_gives_one_line_engine_error(tmp_path, random_dir):
    from skycurate.connectors.llm.transformers_scorer import TransformersScorer

    missing = tmp_path / "no_such_model"
    with pytest.raises(EngineError, match="no_such_model") as e:
        TransformersScorer(missing, AuditConfig(device="cpu"))
    assert isinstance(e.value, SkycurateError) and "\n" not in str(e.value)

    broken = tmp_path / "broken_model"
    broken.mkdir()
    for f in random_dir.iterdir():
        if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": ')   # truncated JSON
    with pytest.raises(EngineError, match="broken_model") as e:
        TransformersScorer(broken, AuditConfig(device="cpu"))
    assert "\n" not in str(e.value)

    corrupt = tmp_path / "corrupt_weights"
    shutil.copytree(random_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(EngineError, match="cannot load model from .*corrupt_weights"):
        TransformersScorer(corrupt, AuditConfig(device="cpu"))

    empty = tmp_path / "empty_model"
    empty.mkdir()
    with pytest.raises(EngineError, match="empty_model"):
        open_scorer(empty, AuditConfig(device="cpu"))


def test_vllm_backend_says_clearly_when_vllm_is_missing(random_dir, monkeypatch):
    import importlib.util

    from skycurate.connectors.llm import vllm_process

    # vLLM never lives in the flow's virtualenv (its fastapi pin conflicts with Prefect's)...
    assert importlib.util.find_spec("vllm") is None
    with pytest.raises(EngineError, match="vllm is not installed"):
        VllmScorer(random_dir, AuditConfig(engine="vllm"))
    # ...and without a vLLM interpreter elsewhere the audit says how to get one.
    monkeypatch.setattr(vllm_process, "find_vllm_python", lambda configured=None: None)
    with pytest.raises(EngineError, match="make vllm"):
        open_scorer(random_dir, AuditConfig(engine="vllm"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_an_engine_error(random_dir):
    from skycurate.connectors.llm.transformers_scorer import TransformersScorer

    with pytest.raises(EngineError, match="no GPU"):
        TransformersScorer(random_dir, AuditConfig(device="cuda"))


# --------------------------------------------------------------------------- (3) the proof


EPOCHS = 12


@pytest.fixture(scope="module")
def audits(corpus, tmp_path_factory):
    """Model A: filler + same-style pool + the TEST split (leaked). Model B: the same budget with the
    TRAIN split instead. Same tokenizer, seed, epochs and number of texts; both audited on all splits."""
    cfg = AuditConfig(device="cpu", seed=SEED)
    common = corpus["filler"] + corpus["pool"]
    splits = {s: [(f"{s}-{i}", t) for i, t in enumerate(corpus[s])] for s in ("train", "test", "reference")}
    out = {}
    for name, extra in (("A", corpus["test"]), ("B", corpus["train"])):
        model_dir = tiny_lm.build_tiny_lm(tmp_path_factory.mktemp(f"model_{name}"), corpus["tokenizer"],
                                          common + extra, epochs=EPOCHS, seed=SEED)
        scorer = open_scorer(model_dir, cfg)
        out[name] = summarize(score_benchmark(scorer, "synthetic-arith", splits, cfg, model=name), cfg)
    return out


def test_model_trained_on_the_test_split_is_flagged(audits):
    a = audits["A"]
    assert a.delta1.value < -0.3                        # observed -0.50 .. -0.68 over seeds 0-9
    assert a.delta1.ci_high < 0                         # the whole CI below 0
    assert a.flags.test_leakage and "test split" in a.flags.reasons[0]
    assert not a.flags.train_split_training             # its train split is as unseen as the reference
    assert a.splits["test"].loss < a.splits["reference"].loss - 0.3
    assert a.auroc["test_vs_reference"]["min_k"] >= 0.8
    assert a.auroc["test_vs_reference"]["loss_mean"] >= 0.8


def test_model_not_trained_on_the_test_split_is_not_flagged(audits):
    a, b = audits["A"], audits["B"]
    assert not b.flags.test_leakage
    assert b.delta1.ci_low < 0 < b.delta1.ci_high       # test and reference look the same to B
    assert abs(b.delta1.value) < 0.2                    # observed -0.11 .. +0.11 over seeds 0-9
    assert b.delta1.value > a.delta1.value + 0.3
    assert b.auroc["test_vs_reference"]["min_k"] < 0.75 < a.auroc["test_vs_reference"]["min_k"]
    # ...but B was trained on the train split, and Delta2 says so
    assert b.flags.train_split_training and b.delta2.ci_low > 0
    assert b.auroc["train_vs_reference"]["min_k"] >= 0.8


def test_audit_summary_reports_counts_and_settings(audits):
    a = audits["A"]
    assert {s: x.n_items for s, x in a.splits.items()} == {"train": 20, "test": 20, "reference": 20}
    assert all(x.n_unscored == 0 and x.n_truncated == 0 for x in a.splits.values())
    d = a.to_dict()
    assert d["settings"]["add_bos"] is False and d["flags"]["test_leakage"] is True
    json.dumps(d, allow_nan=False)
