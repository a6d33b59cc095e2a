"""The teacher step of distillation: template the prepared prompts, open the engine, generate
every missing shard, and return the samples as one table.

Kept apart from verification and selection so that the costly part is its own cached step: a
re-selection with another token budget, or a new verifier setting, never touches the engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from skycurate.errors import SkycurateError
from skycurate.schemas import cot as S
from skycurate.stages.cot.generate import ShardReport, run_shards
from skycurate.stages.cot.prompts import generation_items, render, user_content

log = logging.getLogger(__name__)

SAMPLE_EXTRA_COLUMNS = ("user_content", "prompt_tokens_counted")


@dataclass
class TeacherRun:
    samples: pa.Table          # GENERATION_SCHEMA + prompt_id's user_content, prompt_tokens_counted
    too_long: pa.Table         # DROPPED_SCHEMA rows of prompts rejected by the templating step
    prompts_sent: int
    report: ShardReport


def load_tokenizer(teacher: S.EngineConfig):
    """The teacher's tokenizer from its local folder (or ``teacher.tokenizer``); None for a
    served model without a local copy."""
    folder = teacher.tokenizer or (teacher.model if teacher.engine != "openai" else None)
    if not folder or not Path(folder).is_dir():
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - one line for the user
        raise SkycurateError(f"cannot load the tokenizer in {folder}: {type(e).__name__}") from None


VISION_FILES = ("preprocessor_config.json", "processor_config.json")
_REFUSED = re.compile(r"^HTTP (?:400|404|415|422)\b")


def has_vision(folder: str | None) -> bool:
    """Whether a local model folder is a vision-language model: it ships an image processor or its
    config has a vision tower (``vision_config``)."""
    path = Path(folder or "")
    if any((path / f).is_file() for f in VISION_FILES):
        return True
    try:
        return "vision_config" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False


def require_vision(engine: S.EngineConfig, image_prompts: int, generate: Callable[..., list]) -> None:
    """One clear error before any generation when image prompts meet a model that cannot see: a local
    folder without a vision tower, or a served model that refuses a one-token probe with a tiny image
    (a passing failure of the probe is left to the real requests)."""
    what = f"{image_prompts:,} prompt(s) have images but"
    if engine.engine != "openai":
        if not has_vision(engine.model):
            raise SkycurateError(f"{what} {engine.model} has no vision tower (no {' or '.join(VISION_FILES)} and no "
                                 "vision_config in config.json): use a vision-language model or drop the images")
        return
    from skycurate.samples.vlm import solid_png
    from skycurate.schemas.generation import SamplingParams

    probe = generate(["What colour is this picture?"], SamplingParams(max_new_tokens=1, temperature=0.0),
                     images=[[solid_png("red", (28, 28))]])[0][0]
    if probe.error and _REFUSED.match(probe.error):
        raise SkycurateError(f"{what} the served model {engine.model} at {engine.base_url} refused an image "
                             f"({probe.error[:160]}): serve a vision-language model or drop the images")


def vision_checked(engine: S.EngineConfig, items: Sequence[Any], generate: Callable[..., list]) -> Callable[..., list]:
    """``generate`` that checks the model can see (``require_vision``) on its first call, when any of
    ``items`` has images: only a run with shards left to generate pays for the check."""
    image_prompts = sum(1 for i in items if i.images)
    checked = not image_prompts

    def call(*args: Any, **kwargs: Any) -> list:
        nonlocal checked
        if not checked:
            require_vision(engine, image_prompts, generate)
            checked = True
        return generate(*args, **kwargs)

    return call


def open_engine(teacher: S.EngineConfig, template: S.TemplateConfig, work: Path):
    from skycurate.connectors.llm.generation import open_generator

    options = dict(teacher.vllm_options)
    if teacher.max_model_len:
        options.setdefault("max_model_len", teacher.max_model_len)
    if teacher.engine == "vllm":
        work.mkdir(parents=True, exist_ok=True)
    return open_generator(teacher.engine, teacher.model or "", base_url=teacher.base_url, device=teacher.device,
                          batch_size=teacher.batch_size, chat=template.mode == "chat", system=template.system,
                          concurrency=teacher.concurrency, timeout_s=teacher.timeout_s, retries=teacher.retries,
                          vllm_python=teacher.vllm_python, options=options, log_path=work / "vllm-worker.log",
                          request_timeout_s=teacher.request_timeout_s)


def text_only_texts(prompts: pa.Table, template: S.TemplateConfig, teacher: S.EngineConfig,
                    tokenizer: Any) -> dict[str, str]:
    """Each image prompt's text as the teacher would get it without image parts."""
    chat_endpoint = teacher.engine == "openai" and template.mode == "chat"
    return {pid: user_content(q, template) if chat_endpoint else render(q, template, tokenizer, 0)
            for pid, q, pics in zip(prompts["id"].to_pylist(), prompts["question"].to_pylist(),
                                    prompts["images"].to_pylist(), strict=True) if pics}


def work_key(identity: Any, template: S.TemplateConfig, teacher: S.EngineConfig, gen: S.GenerateConfig) -> str:
    """The name of the shard journal: what decides the samples besides the prompts (engine
    settings that only change speed are left out), the version of the code that makes them
    included: shards of an older version are not reused."""
    from skycurate.codehash import module_code_version

    payload = {"code": module_code_version(__name__), "engine": identity, "template": template.model_dump(mode="json"),
               "teacher": teacher.model_dump(mode="json", exclude={"concurrency", "timeout_s", "retries", "batch_size",
                                                                   "vllm_python", "device", "request_timeout_s"}),
               "generate": gen.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class LazyEngine:
    """A generator opened by the first ``generate`` call: a rerun whose shards are all journalled
    never starts a vLLM worker, loads weights or sends a request."""

    def __init__(self, opener: Callable[[], Any]) -> None:
        self._opener, self._engine = opener, None

    def generate(self, *args: Any, **kwargs: Any) -> list:
        if self._engine is None:
            self._engine = self._opener()
        return self._engine.generate(*args, **kwargs)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def generate_samples(prompts: pa.Table, template: S.TemplateConfig, teacher: S.EngineConfig, gen: S.GenerateConfig,
                     work: Path, force: bool = False, verify: Any = None) -> TeacherRun:
    """Template ``prompts`` (prepared, sorted by id) and generate ``gen.samples`` per prompt in
    resumable shards under ``work`` (``force``: every shard again, journalled ones too).
    ``gen.text_only_filter`` first drops image prompts solvable without their images (``verify``
    is the verifier config it judges the text-only answers with)."""
    tokenizer = load_tokenizer(teacher)
    if template.mode == "chat" and tokenizer is None and teacher.engine != "openai":
        raise SkycurateError("chat templating needs a local tokenizer: set teacher.tokenizer")
    items, too_long, extra = generation_items(prompts, template, teacher, gen, tokenizer)
    params = gen.sampling.model_copy(update={"n": gen.samples})
    generator = LazyEngine(lambda: open_engine(teacher, template, work))
    generate = vision_checked(teacher, items, generator.generate)
    add_special = template.add_special_tokens and template.mode == "raw"

    def progress(done: int, total: int, n: int) -> None:
        log.info("generation: shard %d/%d done (%d prompts x %d samples)", done, total, n, gen.samples)

    try:
        if gen.text_only_filter and any(i.images for i in items):
            from skycurate.schemas.cot_verify import VerifyConfig
            from skycurate.stages.cot.text_only import filter_text_only

            texts = text_only_texts(prompts, template, teacher, tokenizer)
            items, solvable, _ = filter_text_only(items, texts, prompts, generate, params, work,
                                                  gen.shard_size, verify or VerifyConfig(),
                                                  add_special_tokens=add_special, force=force)
            too_long = [*too_long, *solvable]
        report = run_shards(items, generate, params, work, gen.shard_size, add_special_tokens=add_special,
                            progress=progress, force=force)
    finally:
        generator.close()
    samples = (pa.concat_tables([pq.read_table(f, schema=S.GENERATION_SCHEMA) for f in report.files])
               if report.files else S.GENERATION_SCHEMA.empty_table())
    samples = samples.join(extra.select(["prompt_id", *SAMPLE_EXTRA_COLUMNS]), "prompt_id", join_type="left outer")
    samples = samples.sort_by([("prompt_id", "ascending"), ("sample_index", "ascending")])
    return TeacherRun(samples, pa.Table.from_pylist(too_long, S.DROPPED_SCHEMA), len(items), report)
