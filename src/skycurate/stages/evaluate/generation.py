"""One model's answers to the evaluation items, through distillation's teacher machinery.

The same templating and context check (``prompts.generation_items``), engines
(``teacher.open_engine``: transformers, vLLM offline, OpenAI-compatible HTTP) and resumable
journalled shards (``generate.run_shards``) as the teacher step of distillation, in a journal keyed
by ``teacher.work_key`` on the model's identity: each model has its own, and a rerun generates only
the shards it lacks. The engine opens on the first shard that is missing, so a rerun whose shards
are all journalled loads no model and sends no request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from skycurate.errors import SkycurateError
from skycurate.schemas import cot as S
from skycurate.schemas.evaluate import TOO_LONG
from skycurate.stages.cot.generate import ShardReport, run_shards
from skycurate.stages.cot.prompts import generation_items
from skycurate.stages.cot.teacher import LazyEngine, load_tokenizer, open_engine, vision_checked

log = logging.getLogger(__name__)


@dataclass
class ModelRun:
    samples: pa.Table      # GENERATION_SCHEMA; items too long for the context as error rows
    items: int             # items in (= items sent + too long)
    too_long: int
    report: ShardReport


def _as_prompts(items: pa.Table) -> pa.Table:
    """Evaluation items in the columns ``generation_items`` reads; no R1V scores, so no repetition penalty."""
    n = items.num_rows
    none = pa.nulls(n, pa.float64())
    return pa.table({"id": items["prompt_id"], "question": items["question"], "images": items["images"],
                     "s_v": none, "s_t": none, "s_i": none})


def _too_long_rows(rejected: list[dict], samples: int) -> pa.Table:
    """An item longer than the context is answered by no sample: ``samples`` error rows, scored as not correct."""
    rows = [{"prompt_id": r["id"], "sample_index": k, "finish_reason": TOO_LONG, "error": f"{TOO_LONG}: {r['detail']}",
             "repetition_penalty": 1.0} for r in rejected for k in range(samples)]
    return pa.Table.from_pylist(rows, S.GENERATION_SCHEMA)


def model_samples(items: pa.Table, template: S.TemplateConfig, engine: S.EngineConfig, gen: S.GenerateConfig,
                  work: Path, force: bool = False) -> ModelRun:
    """``gen.samples`` answers per item (``PROMPT_SCHEMA`` rows) from one model, shards journalled under ``work``
    (``force``: every shard again)."""
    tokenizer = load_tokenizer(engine)
    if template.mode == "chat" and tokenizer is None and engine.engine != "openai":
        raise SkycurateError(f"chat templating of {engine.model} needs a local tokenizer: set its tokenizer")
    todo, too_long, _ = generation_items(_as_prompts(items), template, engine, gen, tokenizer)
    params = gen.sampling.model_copy(update={"n": gen.samples})
    lazy = LazyEngine(lambda: open_engine(engine, template, work))

    def progress(done: int, total: int, n: int) -> None:
        log.info("evaluate %s: shard %d/%d done (%d items x %d samples)", engine.model, done, total, n, gen.samples)

    try:
        report = run_shards(todo, vision_checked(engine, todo, lazy.generate), params, work, gen.shard_size,
                            add_special_tokens=template.add_special_tokens and template.mode == "raw",
                            progress=progress, force=force)
    finally:
        lazy.close()
    parts = [pq.read_table(f, schema=S.GENERATION_SCHEMA) for f in report.files]
    samples = pa.concat_tables([*parts, _too_long_rows(too_long, gen.samples)])
    samples = samples.sort_by([("prompt_id", "ascending"), ("sample_index", "ascending")])
    return ModelRun(samples, items.num_rows, len(too_long), report)
