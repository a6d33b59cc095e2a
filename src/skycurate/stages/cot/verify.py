"""Verification of distilled CoT chains: the batch stage that extracts each chain's final answer and
compares it with the reference.

``verify_batch`` is the pure per-record stage (``VERIFY`` wraps it for ``mapInArrow``): it reads
``completion``, ``reference_answer`` and ``answer_type`` and adds ``extracted_answer``,
``extract_method``, ``correct``, ``verify_method`` and ``verify_error`` (see
``skycurate.schemas.cot_verify``).

The work is done in three modules, one job each: ``answers`` (extraction: ``extract_answer``),
``compare`` (comparison: ``compare_answers``, ``is_equivalent``, ``Verdict``) and ``math_pool``
(the Math-Verify worker processes: ``MathVerifyPool``, ``shutdown_pool``). This module only runs
them over a batch: every Math-Verify comparison of a batch goes to the pool in one call,
deduplicated (N samples of one question often agree).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from skycurate.schemas.cot_verify import (
    ANSWER_TYPE,
    ANSWER_TYPES,
    COMPLETION,
    MISSING_REFERENCE,
    NO_ANSWER_FOUND,
    REFERENCE_ANSWER,
    REQUIRED_COLUMNS,
    STAGE,
    VERIFY_FIELDS,
    VerifyConfig,
)
from skycurate.stages.base import BatchStage, require_columns, with_columns
from skycurate.stages.cot.answers import _DEFAULT_CFG, extract_answer
from skycurate.stages.cot.code_answers import UNPARSEABLE_TESTS, CodeTests, check_programs, extract_code, parse_tests
from skycurate.stages.cot.compare import (
    Verdict,
    _compare_local,
    _math_verdict,
    _MathJob,
)
from skycurate.stages.cot.math_pool import _get_pool

__all__ = ["VERIFY", "verify_batch"]


def _as_strings(col: pa.Array | pa.ChunkedArray) -> list[str | None]:
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    return col.to_pylist()


def verify_batch(batch: pa.RecordBatch, cfg: VerifyConfig | None = None) -> pa.RecordBatch:
    """Add ``VERIFY_FIELDS`` to a batch with ``completion``, ``reference_answer`` and ``answer_type``."""
    cfg = cfg or _DEFAULT_CFG
    require_columns(batch, STAGE, REQUIRED_COLUMNS)
    types_col = batch.column(ANSWER_TYPE)
    if not (pa.types.is_string(types_col.type) or pa.types.is_large_string(types_col.type)):
        types_col = types_col.cast(pa.string())
    types_col = pc.utf8_lower(pc.utf8_trim_whitespace(types_col))
    if cfg.default_answer_type is not None:
        blank = pc.fill_null(pc.equal(types_col, ""), True)
        types_col = pc.if_else(blank, pa.scalar(cfg.default_answer_type, pa.string()), types_col)
    types = types_col.to_pylist()
    completions = _as_strings(batch.column(COMPLETION))
    refs = _as_strings(batch.column(REFERENCE_ANSWER))

    n = batch.num_rows
    answers: list[str | None] = [None] * n
    methods: list[str] = ["none"] * n
    verdicts: list[Verdict | None] = [None] * n
    jobs: dict[_MathJob, list[int]] = {}
    programs: list[tuple[int, str, CodeTests]] = []
    for i in range(n):
        atype = types[i]
        if atype == "code":
            verdict, program = _code_row(completions[i], refs[i])
            answers[i], methods[i] = (program, "code_block") if program is not None else (None, "none")
            if verdict is None:
                programs.append((i, program, parse_tests(refs[i])))
            verdicts[i] = verdict
            continue
        if atype in ANSWER_TYPES:
            answers[i], methods[i] = extract_answer(completions[i], atype, cfg)
        got = _compare_local(answers[i], refs[i], atype, cfg)
        if isinstance(got, Verdict):
            verdicts[i] = got
        else:
            jobs.setdefault(got, []).append(i)
    if jobs:  # every Math-Verify comparison of the batch in one call, each distinct pair once
        keys = list(jobs)
        results = _get_pool(cfg).compare([(j.reference, j.answer) for j in keys], cfg.math_verify_timeout_s)
        for job, result in zip(keys, results, strict=True):
            v = _math_verdict(result)
            for i in jobs[job]:
                verdicts[i] = v

    if programs:  # every program of the batch in one sandbox container
        for (i, _, _), v in zip(programs, check_programs([(p, t) for _, p, t in programs], cfg), strict=True):
            verdicts[i] = Verdict(v.correct, "sandbox", v.error)

    return with_columns(batch, {
        "extracted_answer": pa.array(answers, pa.string()),
        "extract_method": pa.array(methods, pa.string()),
        "correct": pa.array([v.correct for v in verdicts], pa.bool_()),
        "verify_method": pa.array([v.method for v in verdicts], pa.string()),
        "verify_error": pa.array([v.error for v in verdicts], pa.string()),
    })


def _code_row(completion: str | None, reference: str | None) -> tuple[Verdict | None, str | None]:
    """(verdict decided without running anything, the program): no tests or no program settle it."""
    if reference is None or not reference.strip():
        return Verdict(None, None, MISSING_REFERENCE), extract_code(completion)
    if parse_tests(reference) is None:
        return Verdict(None, None, UNPARSEABLE_TESTS), extract_code(completion)
    program = extract_code(completion)
    if program is None:
        return Verdict(False, None, NO_ANSWER_FOUND), None
    return None, program


VERIFY = BatchStage(name=STAGE, fn=verify_batch, requires=REQUIRED_COLUMNS, adds=VERIFY_FIELDS)
