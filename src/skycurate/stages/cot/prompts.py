"""Prompt preparation for CoT distillation: check, normalise, deduplicate, decontaminate, template.

``check_batch`` is the pure per-batch part (unit-tested on Arrow): it coerces the optional
columns, quarantines bad rows with a reason (missing fields, unknown answer types, images that
do not decode or are too large, scores outside [0, 1]; ``image_checks`` resizes or converts the
images it can, noted in ``image_notes``) and adds ``dedup_key`` (NFKC, case-folded,
whitespace-collapsed question) and ``numbers`` (the question's numbers, in order).
``prepare_on_spark`` chains it with the global steps on Spark: duplicate ids (quarantined),
exact dedup on ``dedup_key``, near dedup (MinHash LSH on character 5-grams, verified, with the
numbers folded into every band so that '12+30' never collides with '12+31'; the web pipeline's
``near_dedup`` does the graph work) and decontamination (the leakage n-gram scan plus an exact
match on the normalised text, since questions are often shorter than an n-gram), then the
images against the benchmark images by pHash (``image_decontam``).

Templating (``render``) runs where the teacher's tokenizer is: in the generation step.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from skycurate.schemas import cot as S
from skycurate.schemas.cot_verify import ANSWER_TYPES
from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE
from skycurate.stages.cot.image_checks import CheckedImage, check_image
from skycurate.stages.raw_records import parse_text, sample_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from skycurate.stages.cot.image_decontam import ImageIndex
    from skycurate.stages.leakage.decontaminate import NgramIndex

_WS = re.compile(r"\s+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

# The prepared prompt: inputs coerced to these types, then the bookkeeping columns.
CHECKED_SCHEMA = pa.schema([
    pa.field("id", pa.string()), pa.field("question", pa.string()), pa.field("reference_answer", pa.string()),
    pa.field("answer_type", pa.string()), pa.field("images", pa.list_(pa.binary())),
    pa.field("domain", pa.string()), pa.field("source", pa.string()), pa.field("difficulty", pa.float64()),
    pa.field("s_v", pa.float64()), pa.field("s_t", pa.float64()), pa.field("s_i", pa.float64()),
    pa.field("lang", pa.string()), pa.field("explanation", pa.string()),
    pa.field("dedup_key", pa.string()), pa.field("numbers", pa.string()),
    pa.field("image_key", pa.string()),   # the images' digest ("" without): a prompt is its question and images
    pa.field("quarantine_reason", pa.string()), pa.field("quarantine_detail", pa.string()),
    pa.field("record", pa.string()),
    pa.field("image_notes", pa.list_(pa.string())),   # per image changed by the limits: resized, converted, ...
])
PROMPT_COLUMNS = [f.name for f in CHECKED_SCHEMA if f.name not in ("quarantine_reason", "quarantine_detail",
                                                                   "record", "image_notes", "image_key")]



def normalize_question(text: str) -> str:
    """The question as sent: NFC, unified line ends, trailing spaces and outer blank lines removed."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def dedup_key(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: what exact dedup compares."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def image_key(images: list[bytes] | None) -> str:
    """The digest of a prompt's images in order ("" without images): the same question about another
    picture is another prompt, for exact and near dedup alike."""
    if not images:
        return ""
    return hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in images)).hexdigest()[:32]


def numbers_of(text: str) -> str:
    return " ".join(_NUMBER.findall(unicodedata.normalize("NFKC", text)))


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def read_image(value: Any, base_dir: str | None = None) -> bytes:
    """Image bytes from bytes, a path or a Hugging Face image struct; ``ValueError`` when unreadable."""
    if isinstance(value, dict):   # a Hugging Face Image feature: {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() or base_dir is None else Path(base_dir) / value
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ValueError(f"cannot read image {value}: {e.strerror or e}") from None
    else:
        raise ValueError(f"an image must be bytes or a path, not {type(value).__name__}")
    return data


def load_image(value: Any, base_dir: str | None = None, limits: S.ImageCheckConfig | None = None) -> CheckedImage:
    """The image as a prompt keeps it (``image_checks.check_image``); ``ValueError`` (with a ``reason`` when
    it is not ``bad_image``) when it does not decode or is too large."""
    return check_image(read_image(value, base_dir), limits or S.ImageCheckConfig())


def _record_json(row: dict[str, Any]) -> str:
    def safe(v: Any) -> Any:
        if isinstance(v, (bytes, bytearray)):
            return f"<{len(v)} bytes>"
        if isinstance(v, list):
            return [safe(x) for x in v]
        return v
    return json.dumps({k: safe(v) for k, v in row.items() if k != "_corrupt_record"}, ensure_ascii=False,
                      default=str)[:4000]


def _score(value: Any) -> tuple[float | None, bool]:
    if value is None:
        return None, True
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None, False
    return f, (0.0 <= f <= 1.0)


def check_batch(batch: pa.RecordBatch, base_dir: str | None = None,
                images: S.ImageCheckConfig | None = None) -> pa.RecordBatch:
    """Coerce a batch of input prompts (canonical fields) to ``CHECKED_SCHEMA``; bad rows get a quarantine reason."""
    return check_rows(batch.to_pylist(), base_dir, images)


_CHECK_FIELDS = (*S.REQUIRED_PROMPT_COLUMNS, *S.OPTIONAL_PROMPT_COLUMNS, "_corrupt_record")


def _load_images(value: Any, base_dir: str | None, limits: S.ImageCheckConfig | None
                 ) -> tuple[list[bytes], list[str]]:
    """A row's images as kept and the notes of those the limits changed; ``ValueError`` for the first bad one."""
    given = value if isinstance(value, list) else [value]
    checked = [load_image(v, base_dir, limits) for v in given]
    return [c.data for c in checked], [n for c in checked for n in c.notes]


def check_rows(rows: list[dict[str, Any]], base_dir: str | None = None,
               images_cfg: S.ImageCheckConfig | None = None) -> pa.RecordBatch:
    """``check_batch`` over canonical rows as dicts (images may mix paths and bytes)."""
    out: dict[str, list[Any]] = {f.name: [] for f in CHECKED_SCHEMA}
    for row in rows:
        raw = {n: row.get(n) for n in _CHECK_FIELDS}
        reason = detail = None
        rid = _as_text(raw["id"])
        question = raw["question"] if isinstance(raw["question"], str) else _as_text(raw["question"])
        ref = _as_text(raw["reference_answer"])
        atype = (_as_text(raw["answer_type"]) or "").strip().lower()
        images: list[bytes] | None = None
        notes: list[str] | None = None
        scores = {}
        if raw["_corrupt_record"] is not None:
            reason, detail = S.MALFORMED_RECORD, "not a JSON object with the expected field types"
        elif not rid or not rid.strip():
            reason, detail = S.MISSING_ID, "id is null or blank"
        elif question is None or not question.strip():
            reason, detail = S.MISSING_QUESTION, "question is null or blank"
        elif ref is None or not ref.strip():
            reason, detail = S.MISSING_REFERENCE, "reference_answer is null or blank"
        elif atype not in ANSWER_TYPES:
            reason = S.UNKNOWN_ANSWER_TYPE
            detail = f"answer_type {raw['answer_type']!r} is not one of {', '.join(ANSWER_TYPES)}"
        else:
            for name in ("difficulty", "s_v", "s_t", "s_i"):
                scores[name], ok = _score(raw[name])
                if not ok:
                    reason, detail = S.BAD_SCORE, f"{name} = {raw[name]!r} is not a number in [0, 1]"
                    break
            if reason is None and raw["images"]:
                try:
                    images, notes = _load_images(raw["images"], base_dir, images_cfg)
                except ValueError as e:
                    reason, detail = getattr(e, "reason", S.BAD_IMAGE), str(e)
        ok = reason is None
        q = normalize_question(question) if ok else question
        out["id"].append(rid.strip() if rid else rid)
        out["question"].append(q)
        out["reference_answer"].append(ref.strip() if ok else ref)
        out["answer_type"].append(atype or None)
        out["images"].append(images)
        for name in ("domain", "source", "lang", "explanation"):
            out[name].append(_as_text(raw[name]))
        out["image_key"].append(image_key(images))
        for name in ("difficulty", "s_v", "s_t", "s_i"):
            out[name].append(scores.get(name))
        out["dedup_key"].append(dedup_key(q) if ok else None)
        out["numbers"].append(numbers_of(q) if ok else None)
        out["quarantine_reason"].append(reason)
        out["quarantine_detail"].append(detail)
        out["record"].append(None if ok else (raw["_corrupt_record"] or _record_json(raw))[:4000])
        out["image_notes"].append(notes or None)
    return pa.RecordBatch.from_pydict(out, schema=CHECKED_SCHEMA)


# ------------------------------------------------------------------------------------ Spark


def canonical_batch(batch: pa.RecordBatch, layout: str, fields: Any, text: bool,
                    base_dir: str | None = None, images: S.ImageCheckConfig | None = None) -> pa.RecordBatch:
    """Raw prompt rows of any layout -> ``CHECKED_SCHEMA`` (``prompt_layouts`` maps, ``check_rows`` checks)."""
    from skycurate.stages.cot.prompt_layouts import to_canonical

    if text:
        raw = [r for v, w in zip(batch.column("value").to_pylist(), batch.column("whole").to_pylist(), strict=True)
               for r in parse_text(v or "", bool(w))]
    else:
        raw = batch.to_pylist()
    rows = [r if "_corrupt_record" in r and len(r) == 1 else to_canonical(r, layout, fields) for r in raw]
    return check_rows(rows, base_dir, images)


def prompt_layout(source: str, store: str, fields: Any) -> str:
    """The layout of the prompts (``prompt_layouts.detect_layout`` on their first rows); an empty
    input has nothing to detect and is read as the canonical layout."""
    from skycurate.stages.cot.prompt_layouts import detect_layout

    columns, where = sample_columns(source, store)
    if not columns and getattr(fields, "layout", "auto") == "auto":
        return "skycurate"
    return detect_layout(columns, fields, where)


def _fold_numbers_into_bands(batch: pa.RecordBatch, numbers: bool = True) -> pa.RecordBatch:
    """Near-dup candidates must share the question's images and (``numbers``) its numbers: each band
    hash is mixed with them."""
    import xxhash

    from skycurate.stages.hashing import fmix64

    bands = batch.column("minhash_bands")
    nums = batch.column("numbers").to_pylist() if numbers else [None] * batch.num_rows
    pics = batch.column("image_key").to_pylist()
    out = []
    for row, num, pic in zip(bands.to_pylist(), nums, pics, strict=True):
        if row is None:
            out.append(None)
            continue
        salt = np.uint64(xxhash.xxh64_intdigest((num or "").encode() + (b"\x1f" + pic.encode() if pic else b"")))
        h = np.asarray(row, dtype=np.int64).view(np.uint64) ^ salt
        out.append(fmix64(h).view(np.int64).tolist())
    idx = batch.schema.get_field_index("minhash_bands")
    return batch.set_column(idx, batch.schema.field(idx), pa.array(out, bands.type))


def _minhash_config(cfg: S.PrepareConfig):
    from skycurate.schemas.web_dedup import MinHashConfig

    return MinHashConfig(bands=cfg.bands, rows=cfg.rows, verify_threshold=cfg.near_threshold, char_ngram=5,
                         char_ngram_langs=["_chars"], verify_all_pairs_up_to=200)


def _near_batch(batch: pa.RecordBatch, cfg: S.PrepareConfig) -> pa.RecordBatch:
    from skycurate.stages.web.minhash import minhash_batch

    out = minhash_batch(batch, _minhash_config(cfg))
    return _fold_numbers_into_bands(out, numbers=cfg.same_numbers)


def prepare_on_spark(df: DataFrame, cfg: S.PrepareConfig, index: NgramIndex | None,
                     benchmark_keys: list[str], base_dir: str | None = None, layout: str = "skycurate",
                     fields: Any = None, text: bool = False, image_index: ImageIndex | None = None) -> DataFrame:
    """Every input row once, ``CHECKED_SCHEMA`` columns plus ``reject_stage``/``reject_reason``:
    quarantined rows have ``quarantine_reason``; rejected ones a verdict; the rest are the prompts.
    ``df`` holds raw rows of ``layout`` (``text``: JSON text, see ``raw_records.read_records``);
    ``image_index``: benchmark image pHashes (``image_decontam``), matched after the text checks."""
    from functools import partial

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from skycurate.schemas.web_dedup import MINHASH_FIELDS
    from skycurate.spark import arrow_schema, map_batches
    from skycurate.stages.leakage.decontaminate import scan_on_spark, split_scan
    from skycurate.stages.web.near_dedup import near_dedup

    from skycurate.schemas.cot_prompts import PromptFields

    checked = map_batches(df, partial(canonical_batch, layout=layout, fields=fields or PromptFields(), text=text,
                                      base_dir=base_dir, images=cfg.images), CHECKED_SCHEMA)
    # duplicate ids: the first by question text keeps the id, the others are quarantined
    w = Window.partitionBy("id").orderBy(F.col("question").asc_nulls_last(), "dedup_key")
    first = F.row_number().over(w) == 1
    checked = checked.withColumn("_first", F.when(F.col("id").isNull(), F.lit(True)).otherwise(first))
    dup = (~F.col("_first")) & F.col("quarantine_reason").isNull()
    checked = (checked.withColumn("quarantine_detail", F.when(dup, F.lit("an earlier row has this id"))
                                  .otherwise(F.col("quarantine_detail")))
               .withColumn("record", F.when(dup, F.to_json(F.struct("id", "question", "reference_answer")))
                           .otherwise(F.col("record")))
               .withColumn("quarantine_reason", F.when(dup, F.lit(S.DUPLICATE_ID))
                           .otherwise(F.col("quarantine_reason"))).drop("_first"))
    null = F.lit(None).cast("string")
    stage = F.when(F.col("quarantine_reason").isNotNull(), F.lit(S.PREPARE)).otherwise(null)
    out = checked.withColumn(REJECT_STAGE, stage).withColumn(
        REJECT_REASON, F.when(F.col("quarantine_reason").isNotNull(), F.col("quarantine_reason")).otherwise(null))
    if cfg.max_question_chars:
        long_q = F.col(REJECT_REASON).isNull() & (F.length("question") > cfg.max_question_chars)
        out = (out.withColumn(REJECT_STAGE, F.when(long_q, F.lit(S.PREPARE)).otherwise(F.col(REJECT_STAGE)))
               .withColumn(REJECT_REASON, F.when(long_q, F.lit(S.TOO_LONG)).otherwise(F.col(REJECT_REASON))))
    if cfg.exact_dedup:
        pending = F.col(REJECT_REASON).isNull()
        w2 = Window.partitionBy(F.when(pending, F.concat_ws("\x1f", "dedup_key", "image_key"))).orderBy("id")
        first_id = F.first("id").over(w2)
        is_dup = pending & (first_id != F.col("id"))
        out = (out.withColumn("_first_id", first_id)
               .withColumn(REJECT_STAGE, F.when(is_dup, F.lit(S.EXACT_DEDUP)).otherwise(F.col(REJECT_STAGE)))
               .withColumn(REJECT_REASON, F.when(is_dup, F.concat(F.lit("exact_duplicate of "), F.col("_first_id")))
                           .otherwise(F.col(REJECT_REASON))).drop("_first_id"))
    if cfg.near_dedup:
        with_text = (out.withColumn("text", F.col("dedup_key")).withColumnRenamed("lang", "_lang")
                     .withColumn("lang", F.lit("_chars")))   # minhash shingles "_chars" rows by characters
        schema = arrow_schema(with_text)
        for f in MINHASH_FIELDS:
            schema = schema.append(f)
        res = near_dedup(map_batches(with_text, partial(_near_batch, cfg=cfg), schema), _minhash_config(cfg))
        out = (res.annotated.drop("lang", "text", "cluster_id", *[f.name for f in MINHASH_FIELDS])
               .withColumnRenamed("_lang", "lang")
               .withColumn(REJECT_STAGE, F.when(F.col(REJECT_STAGE) == "near_dedup", F.lit(S.NEAR_DEDUP))
                           .otherwise(F.col(REJECT_STAGE))))
    if index is not None or benchmark_keys:
        pending = F.col(REJECT_REASON).isNull()
        if benchmark_keys:
            keys = df.sparkSession.createDataFrame([(k,) for k in benchmark_keys], "_bkey STRING").distinct()
            out = out.join(F.broadcast(keys), F.col("dedup_key") == F.col("_bkey"), "left")
            hit = pending & F.col("_bkey").isNotNull()
            out = (out.withColumn(REJECT_STAGE, F.when(hit, F.lit(S.DECONTAMINATE)).otherwise(F.col(REJECT_STAGE)))
                   .withColumn(REJECT_REASON, F.when(hit, F.lit(f"{S.CONTAMINATED}: equals a benchmark item"))
                               .otherwise(F.col(REJECT_REASON))).drop("_bkey"))
        if index is not None:
            scanned, _ = split_scan(scan_on_spark(out.withColumn("text", F.col("question")), index,
                                                  _drop_mode(cfg)))
            stage_col = F.when(F.col(REJECT_STAGE) == "decontaminate", F.lit(S.DECONTAMINATE)) \
                .otherwise(F.col(REJECT_STAGE))
            reason_col = F.when((F.col(REJECT_STAGE) == "decontaminate") & ~F.col(REJECT_REASON).startswith(
                S.CONTAMINATED), F.concat(F.lit(f"{S.CONTAMINATED}: "), F.col(REJECT_REASON))) \
                .otherwise(F.col(REJECT_REASON))
            out = (scanned.withColumn(REJECT_REASON, reason_col).withColumn(REJECT_STAGE, stage_col)
                   .drop("text", "contaminated", "leak_ngrams", "leak_chars_removed"))
    out = out.select(*[f.name for f in CHECKED_SCHEMA], REJECT_STAGE, REJECT_REASON)
    if image_index is not None:
        from skycurate.stages.cot.image_decontam import image_verdicts

        out = map_batches(out, partial(image_verdicts, index=image_index), arrow_schema(out))
    return out


def _drop_mode(cfg: S.PrepareConfig):
    return cfg.decontaminate.model_copy(update={"mode": "drop_document"})


# ------------------------------------------------------------------------------------ templating


def user_content(question: str, tcfg: S.TemplateConfig) -> str:
    return tcfg.user_template.replace("{question}", question)


def render(question: str, tcfg: S.TemplateConfig, tokenizer: Any | None, n_images: int = 0) -> str:
    """The prompt text the teacher gets (``assistant_prefix`` included). ``n_images``: the user turn
    starts with that many image parts, which the model's chat template turns into its image tokens."""
    if tcfg.mode == "raw":
        text = tcfg.template.replace("{system}", tcfg.system or "").replace("{question}", question)
        return text + tcfg.assistant_prefix
    if tokenizer is None:
        from skycurate.errors import SkycurateError

        raise SkycurateError("chat templating needs the teacher's tokenizer: give teacher.tokenizer (a local folder)")
    content: Any = user_content(question, tcfg)
    if n_images:
        content = [*({"type": "image"} for _ in range(n_images)), {"type": "text", "text": content}]
    messages = ([{"role": "system", "content": tcfg.system}] if tcfg.system else []) + [
        {"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + tcfg.assistant_prefix


def context_length(teacher: S.EngineConfig, tokenizer: Any) -> int | None:
    """The teacher's context: ``teacher.max_model_len``, else its config's max_position_embeddings,
    else the tokenizer's model_max_length; None when unknown (an endpoint without a local folder)."""
    if teacher.max_model_len:
        return teacher.max_model_len
    conf = Path(teacher.tokenizer or teacher.model or "") / "config.json"
    if conf.is_file():
        value = json.loads(conf.read_text()).get("max_position_embeddings")
        if value:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 10**7 else None


def generation_items(table: pa.Table, template: S.TemplateConfig, teacher: S.EngineConfig, gen: S.GenerateConfig,
                     tokenizer: Any) -> tuple[list, list[dict], pa.Table]:
    """The templating step over the prepared prompts: (items to generate, too-long rejections as
    ``DROPPED_SCHEMA`` rows, per-prompt ``prompt_id, user_content, prompt_tokens_counted``).

    OpenAI chat endpoints get the user turn (the server applies the chat template); every other
    engine the rendered prompt. A prompt whose tokens plus ``max_new_tokens`` exceed the context
    is rejected (counted with the teacher's tokenizer, when there is one here)."""
    from skycurate.stages.cot.generate import PromptItem
    from skycurate.stages.cot.select import repetition_penalties

    ids = table["id"].to_pylist()
    questions = table["question"].to_pylist()
    images = ([list(x or ()) for x in table["images"].to_pylist()] if "images" in table.column_names
              else [[] for _ in ids])
    if template.mode == "raw" and any(images):
        from skycurate.errors import SkycurateError

        raise SkycurateError("prompts with images need chat templating (the model's chat template places the "
                             "image tokens): set template.mode to chat")
    chat_endpoint = teacher.engine == "openai" and template.mode == "chat"
    texts = [user_content(q, template) if chat_endpoint else render(q, template, tokenizer, len(pics))
             for q, pics in zip(questions, images, strict=True)]
    penalties = repetition_penalties(table["s_v"], table["s_t"], table["s_i"], gen.alpha, gen.beta, gen.gamma)
    context = context_length(teacher, tokenizer)
    counts: list[int | None] = [None] * len(texts)
    if tokenizer is not None and texts:
        add = template.add_special_tokens and template.mode == "raw"
        counts = [len(x) for x in tokenizer(texts, add_special_tokens=add)["input_ids"]]
    items, too_long = [], []
    budget = None if context is None else context - gen.sampling.max_new_tokens
    for i, (pid, text, n_tok) in enumerate(zip(ids, texts, counts, strict=True)):
        if budget is not None and n_tok is not None and n_tok > budget:
            too_long.append({"id": pid, "stage": S.TEMPLATE, "reason": S.TOO_LONG,
                             "detail": f"{n_tok} prompt tokens + {gen.sampling.max_new_tokens} new tokens > "
                                       f"context {context}", "question": questions[i][:2000], "record": None})
            continue
        items.append(PromptItem(id=pid, text=text, penalty=float(penalties[i]), images=tuple(images[i])))
    users = [user_content(q, template) if template.mode == "chat" else q for q in questions]
    extra = pa.table({"prompt_id": pa.array(ids, pa.string()), "user_content": pa.array(users, pa.string()),
                      "prompt_tokens_counted": pa.array(counts, pa.int32())})   # typed: no prompts is a valid input
    return items, too_long, extra
