"""The teacher step of distillation: template the prepared prompts, open the engine, generate
every missing shard, and return the samples as one table.

Kept apart from verification and selection so that the costly part is its own cached step: a
re-selection with another token budget, or a new verifier setting, never touches the engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from skycurate.errors import SkycurateError
from skycurate.schemas import cot as S
from skycurate.stages.cot.generate import ShardReport, run_shards
from skycurate.stages.cot.prompts import generation_items

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


def generate_samples(prompts: pa.Table, template: S.TemplateConfig, teacher: S.EngineConfig, gen: S.GenerateConfig,
                     work: Path, force: bool = False) -> TeacherRun:
    """Template ``prompts`` (prepared, sorted by id) and generate ``gen.samples`` per prompt in
    resumable shards under ``work`` (``force``: every shard again, journalled ones too)."""
    tokenizer = load_tokenizer(teacher)
    if template.mode == "chat" and tokenizer is None and teacher.engine != "openai":
        raise SkycurateError("chat templating needs a local tokenizer: set teacher.tokenizer")
    items, too_long, extra = generation_items(prompts, template, teacher, gen, tokenizer)
    params = gen.sampling.model_copy(update={"n": gen.samples})
    generator = open_engine(teacher, template, work) if items else None

    def progress(done: int, total: int, n: int) -> None:
        log.info("generation: shard %d/%d done (%d prompts x %d samples)", done, total, n, gen.samples)

    try:
        report = run_shards(items, generator.generate if generator else (lambda *a, **k: []), params, work,
                            gen.shard_size, add_special_tokens=template.add_special_tokens and template.mode == "raw",
                            progress=progress, force=force)
    finally:
        if generator is not None:
            generator.close()
    samples = (pa.concat_tables([pq.read_table(f, schema=S.GENERATION_SCHEMA) for f in report.files])
               if report.files else S.GENERATION_SCHEMA.empty_table())
    samples = samples.join(extra.select(["prompt_id", *SAMPLE_EXTRA_COLUMNS]), "prompt_id", join_type="left outer")
    samples = samples.sort_by([("prompt_id", "ascending"), ("sample_index", "ascending")])
    return TeacherRun(samples, pa.Table.from_pylist(too_long, S.DROPPED_SCHEMA), len(items), report)
