"""Images reach a vision-language teacher through transformers and vLLM's offline engine: a tiny
Idefics3 built here (``samples.vlm``), trained to name a picture's colour. Proof that the picture got
there: the prompt's token count includes its image tokens (20 for a square image), and the greedy
answer names the colour of the image that was sent."""

from __future__ import annotations

import pytest

from skycurate.connectors.llm.generation import TransformersGenerator
from skycurate.samples.vlm import build_tiny_vlm, solid_png
from skycurate.schemas import cot as S
from skycurate.schemas.generation import SamplingParams
from skycurate.stages.cot.prompts import render

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=3)
RED, BLUE, GREEN_WIDE = solid_png("red"), solid_png("blue"), solid_png("green", (168, 56))


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "tiny-vlm", seed=0)


def _prompts(vlm, counts):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(vlm))
    return [render("What color is the image?", S.TemplateConfig(mode="chat"), tok, n) for n in counts]


def _check(gens):
    (text_only,), (red,), (blue,), (wide,), (two,) = gens
    assert [g.error for g in (text_only, red, blue, wide, two)] == [None] * 5
    assert red.prompt_tokens == blue.prompt_tokens == text_only.prompt_tokens + 20 + 14   # image tokens + markers
    assert wide.prompt_tokens < red.prompt_tokens                     # fewer tiles at 3:1
    assert two.prompt_tokens == text_only.prompt_tokens + 2 * (red.prompt_tokens - text_only.prompt_tokens)
    assert red.text.strip() == "red" and blue.text.strip() == "blue" and wide.text.strip() == "green"
    return [g.text for g in (text_only, red, blue, wide, two)]


def test_transformers_sends_the_images_through_the_models_processor(vlm):
    prompts = _prompts(vlm, [0, 1, 1, 1, 2])
    gen = TransformersGenerator(vlm, device="cpu", batch_size=2)
    try:
        out = gen.generate(prompts, GREEDY, images=[[], [RED], [BLUE], [GREEN_WIDE], [RED, BLUE]],
                           add_special_tokens=False)
    finally:
        gen.close()
    _check(out)


def test_vllm_offline_gets_the_same_pictures_and_gives_the_same_answers(vlm, vllm_python, tmp_path):
    from skycurate.connectors.llm.vllm_generation import VllmGenerator

    prompts = _prompts(vlm, [0, 1, 1, 1, 2])
    images = [[], [RED], [BLUE], [GREEN_WIDE], [RED, BLUE]]
    gen = VllmGenerator(vlm, python=vllm_python, log_path=tmp_path / "worker.log",
                        options={"dtype": "float32", "max_model_len": 512, "enforce_eager": True,
                                 "limit_mm_per_prompt": {"image": 2, "video": 0}})
    try:
        out = gen.generate(prompts, GREEDY, images=images, add_special_tokens=False)
    finally:
        gen.close()
    hf = TransformersGenerator(vlm, device="cpu")
    try:
        ref = hf.generate(prompts, GREEDY, images=images, add_special_tokens=False)
    finally:
        hf.close()
    assert _check(out) == _check(ref)
    assert [g[0].prompt_tokens for g in out] == [g[0].prompt_tokens for g in ref]


@pytest.mark.usefixtures("prefect_harness")
def test_the_distill_flow_sends_prompt_images_to_the_teacher(vlm, tmp_path):
    """Image prompts (paths next to the JSONL) through the whole flow: every sample's prompt counted
    the image's tokens, and the answer names the colour of that prompt's own picture."""
    import json

    from typer.testing import CliRunner

    from skycurate.catalog import Catalog
    from skycurate.cli import app

    rows = []
    for i, colour in enumerate(["red", "blue", "green", "red"]):
        (tmp_path / f"{i}.png").write_bytes(solid_png(colour, (56 + 28 * i, 56)))
        rows.append({"id": f"img-{i}", "question": f"What color is the image? ({i})", "answer": colour,
                     "answer_type": "exact", "images": [f"{i}.png"]})
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = str(tmp_path / "store")
    res = CliRunner().invoke(app, ["run", "distill", "--prompts", str(tmp_path / "prompts.jsonl"), "--engine",
                                   "transformers", "--model", str(vlm), "--chat", "--samples", "1", "--temperature",
                                   "0", "--max-new-tokens", "3", "--store", store, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    samples = Catalog(store).open(out["datasets"]["samples"]["ref"]).to_table().to_pylist()
    assert sorted(s["prompt_id"] for s in samples) == [f"img-{i}" for i in range(4)]
    for s in samples:
        colour = rows[int(s["prompt_id"][-1])]["answer"]
        assert s["completion"].strip() == colour, s
        assert s["prompt_tokens"] > 30     # the text alone is about 20 tokens: the image's tokens were counted


@pytest.mark.usefixtures("prefect_harness")
def test_text_only_filter_drops_image_prompts_the_teacher_solves_blind(vlm, tmp_path):
    """EMMA's filter through the flow: the teacher is first asked each question without its picture;
    the prompt whose reference is what it answers blind (in every sample) is rejected as
    solvable_without_image, the other goes on to generation with its picture."""
    import json

    from typer.testing import CliRunner

    from skycurate.catalog import Catalog
    from skycurate.cli import app
    from skycurate.samples.vlm import COLORS

    questions = ["What color is the image? (a)", "What color is the image? (b)"]
    gen = TransformersGenerator(vlm, device="cpu", batch_size=2)
    try:   # what the teacher says without a picture
        blind = [g[0].text.strip() for g in gen.generate(_texts(vlm, questions), GREEDY, add_special_tokens=False)]
    finally:
        gen.close()
    assert all(b in COLORS for b in blind), blind
    other = next(c for c in COLORS if c != blind[1])
    rows = [{"id": "blind", "question": questions[0], "answer": blind[0], "answer_type": "exact"},
            {"id": "looks", "question": questions[1], "answer": other, "answer_type": "exact"}]
    for i, r in enumerate(rows):
        (tmp_path / f"{i}.png").write_bytes(solid_png(r["answer"]))
        r["images"] = [f"{i}.png"]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "cfg.yaml").write_text("generate:\n  text_only_filter: true\n")
    store = str(tmp_path / "store")
    res = CliRunner().invoke(app, ["run", "distill", "--config", str(tmp_path / "cfg.yaml"), "--prompts",
                                   str(tmp_path / "prompts.jsonl"), "--engine", "transformers", "--model", str(vlm),
                                   "--chat", "--samples", "2", "--temperature", "0", "--max-new-tokens", "3",
                                   "--store", store, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    catalog, s = Catalog(store), out["stats"]
    rejected = {r["id"]: r for r in catalog.open("cot/rejected@latest").to_table().to_pylist()}
    assert (rejected["blind"]["stage"], rejected["blind"]["reason"]) == ("text_only", "solvable_without_image")
    # the same question about another picture is not a near duplicate: generated (selection may still reject
    # a one-word chain as unclean)
    assert rejected.get("looks", {}).get("stage") in (None, "cot_select")
    samples = catalog.open(out["datasets"]["samples"]["ref"]).to_table().to_pylist()
    assert {x["prompt_id"] for x in samples} == {"looks"} and samples[0]["completion"].strip() == other
    steps = {f["stage"]: f for f in s["funnel"]}
    assert (steps["text_only"]["rows_in"], steps["text_only"]["rows_out"], steps["text_only"]["rejected"]) == (2, 1, 1)
    assert s["prompts_in"] == 2 == s["prompts_with_chain"] + s["rejected"] + s["quarantined"]


def _texts(vlm, questions):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(vlm))
    return [render(q, S.TemplateConfig(mode="chat"), tok, 0) for q in questions]


@pytest.mark.usefixtures("prefect_harness")
def test_the_distill_flow_sends_prompt_images_through_vllm(vlm, vllm_python, tmp_path):
    """The whole flow with the vLLM offline engine: the answer names each prompt's own picture."""
    import json

    import yaml
    from typer.testing import CliRunner

    from skycurate.catalog import Catalog
    from skycurate.cli import app

    rows = []
    for i, colour in enumerate(["blue", "green", "red"]):
        (tmp_path / f"{i}.png").write_bytes(solid_png(colour, (56 + 28 * i, 56)))
        rows.append({"id": f"img-{i}", "question": "What color is the image?", "answer": colour,
                     "answer_type": "exact", "images": [f"{i}.png"]})
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"teacher": {
        "vllm_python": vllm_python, "max_model_len": 512,
        "vllm_options": {"dtype": "float32", "enforce_eager": True, "limit_mm_per_prompt": {"image": 1, "video": 0}}}}))
    store = str(tmp_path / "store")
    res = CliRunner().invoke(app, ["run", "distill", "--config", str(tmp_path / "cfg.yaml"), "--prompts",
                                   str(tmp_path / "prompts.jsonl"), "--engine", "vllm", "--model", str(vlm), "--chat",
                                   "--samples", "1", "--temperature", "0", "--max-new-tokens", "3", "--store", store,
                                   "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    samples = Catalog(store).open(out["datasets"]["samples"]["ref"]).to_table().to_pylist()
    assert {s["prompt_id"]: s["completion"].strip() for s in samples} == {r["id"]: r["answer"] for r in rows}
    assert all(s["prompt_tokens"] > 30 for s in samples)
    # the same question about three pictures: three prompts (not duplicates), each answer verified correct
    gens = Catalog(store).open("cot/generations@latest").to_table().to_pylist()
    assert sorted((g["prompt_id"], g["extract_method"], g["correct"]) for g in gens) == [
        (r["id"], "short_reply", True) for r in rows]


@pytest.mark.usefixtures("prefect_harness")
def test_image_prompts_for_a_teacher_that_cannot_see_are_one_error_before_generation(smoke_teacher, tmp_path):
    from typer.testing import CliRunner

    from skycurate.catalog import Catalog
    from skycurate.cli import app
    from skycurate.stages.cot.teacher import has_vision

    teacher, _ = smoke_teacher
    assert not has_vision(str(teacher))
    (tmp_path / "a.png").write_bytes(RED)
    (tmp_path / "prompts.jsonl").write_text(
        '{"id": "x", "question": "What color is the image?", "answer": "red", "answer_type": "exact", '
        '"images": ["a.png"]}\n{"id": "y", "question": "What is 2+2?", "answer": "4"}\n')
    store = str(tmp_path / "store")
    res = CliRunner().invoke(app, ["run", "distill", "--prompts", str(tmp_path / "prompts.jsonl"), "--engine",
                                   "transformers", "--model", str(teacher), "--chat", "--samples", "1",
                                   "--max-new-tokens", "16", "--store", store])
    assert res.exit_code == 1, res.output
    assert res.stderr.strip().splitlines()[-1].startswith(
        f"error: stage generate: 1 prompt(s) have images but {teacher} has no vision tower")
    assert "cot/samples" not in Catalog(store).names()


def test_has_vision_reads_the_model_folder(vlm, tmp_path):
    from skycurate.stages.cot.teacher import has_vision

    assert has_vision(str(vlm))
    (tmp_path / "config.json").write_text('{"model_type": "qwen2_vl", "vision_config": {"depth": 2}}')
    assert has_vision(str(tmp_path)) and not has_vision(str(tmp_path / "missing"))
