"""Preference pairs from the CoT generations: a correct clean chain vs a wrong, truncated or sloppy one.

MPO (Mixed Preference Optimization, InternVL2-MPO) and Skywork-VL Reward build preference data from
one prompt's sampled responses, with the verified final answer deciding which is better; a pair of
two near-equal texts (a tie) teaches nothing and only adds noise, and a large length gap invites the
model to learn length instead of correctness.

Per prompt (``preference_pairs``, pure, Arrow in/out):

* chosen candidates: correct, no engine error, no quality issue, not truncated; selected-for-SFT
  first (``prefer_selected``), then shorter, then by sample_index.
* rejected candidates: no engine error and wrong, truncated or with a quality issue; a wrong chain
  with an extracted answer first (the most informative contrast), then truncated, then wrong without
  an answer, then low quality, then by sample_index.
* each chosen in turn takes the first unused rejected it is not tied with (so c0-r0, c1-r1, ... when
  nothing is dropped), up to ``max_pairs_per_prompt``; every sample is used at most once. A candidate
  pair is dropped when the texts are equal after whitespace normalisation (``identical``), when the
  MinHash Jaccard of word 3-grams is >= the threshold (``near_identical``), when chosen/rejected tokens
  fall outside the length band (``length_ratio``), or when the same (question, chosen, rejected)
  texts were already paired for an earlier prompt (``duplicate``; prompts run in prompt_id order).

A prompt without a pair gets one ``DROPPED_SCHEMA`` row: no_correct_chain, no_wrong_chain, only_ties
or duplicate_pairs (every dropped candidate repeated an earlier pair). Pairs use TRL's conversational
DPO layout (``prompt``, ``chosen``, ``rejected`` as message lists).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import pyarrow as pa
from datasketch import MinHash

from skycurate.schemas.cot import DROPPED_SCHEMA
from skycurate.schemas.cot_rl import (
    DUPLICATE_PAIRS,
    LOW_QUALITY,
    NO_CORRECT_CHAIN,
    NO_WRONG_CHAIN,
    ONLY_TIES,
    PAIR_SCHEMA,
    PREF_STAGE,
    TRUNCATED,
    WRONG,
    PreferenceConfig,
)
from skycurate.stages.accounting import AccountingError
from skycurate.stages.cot.quality import tokens
from skycurate.stages.cot.rl_pool import columns, dropped_row, first_value, group_rows

REQUIRED = ("prompt_id", "sample_index", "question", "completion", "correct")
NAMES = REQUIRED + ("reference_answer", "answer_type", "finish_reason", "completion_tokens", "error",
                    "extracted_answer", "quality_issues", "selected")
TIE_REASONS = ("identical", "near_identical", "length_ratio")
_WORD = re.compile(r"\w")


# --------------------------------------------------------------------------- classification


def _is_clean_correct(col: dict[str, list], r: int) -> bool:
    """A chain worth imitating: verified right, complete, and with no quality flag."""
    return (col["correct"][r] is True and col["error"][r] is None and not col["quality_issues"][r]
            and col["finish_reason"][r] != "length")


def _rejected_rank(col: dict[str, list], r: int) -> tuple[int, str] | None:
    """(priority, rejected_kind) of a chain worth contrasting with, or None; a wrong answer is the clearest contrast."""
    if col["error"][r] is not None:
        return None
    truncated = col["finish_reason"][r] == "length"
    if col["correct"][r] is False and not truncated:
        return (0, WRONG) if col["extracted_answer"][r] not in (None, "") else (2, WRONG)
    if truncated:
        return 1, TRUNCATED
    if col["quality_issues"][r]:
        return 3, LOW_QUALITY
    return None


def _chosen_key(col: dict[str, list], r: int, cfg: PreferenceConfig) -> tuple:
    """Selected first (the SFT pick is the best chain), then short (no verbosity bias), then stable."""
    toks = col["completion_tokens"][r]
    return (cfg.prefer_selected and col["selected"][r] is not True, toks is None, toks or 0, col["sample_index"][r])


# --------------------------------------------------------------------------- similarity


def _normalise(text: str | None) -> str:
    """Whitespace-collapsed text: reflowed copies of one chain are the same chain."""
    return " ".join((text or "").split())


def _shingles(text: str) -> set[bytes]:
    """Word 3-grams (Han characters count as words, punctuation is skipped); short texts give one shingle."""
    words = [t for t in tokens(text) if _WORD.match(t)]
    grams = [words[i:i + 3] for i in range(max(1, len(words) - 2))] if words else []
    return {" ".join(g).encode("utf-8") for g in grams}


@lru_cache(maxsize=256)
def _minhash(text: str, num_perm: int) -> MinHash:
    """MinHash of the text's shingles; fixed seed so similarities (and so pairs) are reproducible."""
    m = MinHash(num_perm=num_perm, seed=1)
    m.update_batch(list(_shingles(text)))
    return m


def similarity(a: str | None, b: str | None, num_perm: int = 64) -> float:
    """Estimated Jaccard of two texts' word 3-gram sets; 1.0 for texts equal up to whitespace."""
    na, nb = _normalise(a), _normalise(b)
    if na == nb:
        return 1.0
    return float(_minhash(na, num_perm).jaccard(_minhash(nb, num_perm)))


def _ratio_ok(chosen_toks: int | None, rejected_toks: int | None, cfg: PreferenceConfig) -> bool:
    """Length band on chosen/rejected tokens; unknown lengths are not judged."""
    if chosen_toks is None or rejected_toks is None:
        return True
    ratio = 1.0 if chosen_toks == rejected_toks else chosen_toks / rejected_toks if rejected_toks else float("inf")
    return ratio >= cfg.min_length_ratio and (cfg.max_length_ratio is None or ratio <= cfg.max_length_ratio)


def _tie_reason(col: dict[str, list], c: int, r: int, cfg: PreferenceConfig) -> tuple[str | None, float]:
    """(drop reason or None, similarity) of one candidate pair."""
    a, b = col["completion"][c], col["completion"][r]
    if _normalise(a) == _normalise(b):
        return "identical", 1.0
    sim = similarity(a, b, cfg.num_perm)
    if sim >= cfg.near_duplicate_threshold:
        return "near_identical", sim
    if not _ratio_ok(col["completion_tokens"][c], col["completion_tokens"][r], cfg):
        return "length_ratio", sim
    return None, sim


# --------------------------------------------------------------------------- pairing


def pair_id(prompt_id: str, chosen_index: int, rejected_index: int) -> str:
    """Stable id: the same samples always give the same pair, whatever the row order or run."""
    key = f"{prompt_id}\x1f{chosen_index}\x1f{rejected_index}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


def _messages(question: str, system: str | None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system is not None else []) + \
        [{"role": "user", "content": question}]


def _pair_row(col: dict[str, list], pid: str, c: int, r: int, kind: str, sim: float, system: str | None) -> dict:
    """One pair in TRL's conversational layout plus the provenance columns."""
    answer = lambda x: {"role": "assistant", "content": col["completion"][x] or ""}
    ci, ri = col["sample_index"][c], col["sample_index"][r]
    return {
        "prompt": _messages(col["question"][c] or "", system), "chosen": [answer(c)], "rejected": [answer(r)],
        "pair_id": pair_id(pid, ci, ri), "prompt_id": pid, "chosen_sample_index": ci, "rejected_sample_index": ri,
        "chosen_correct": True, "rejected_correct": col["correct"][r], "rejected_kind": kind,
        "chosen_extracted_answer": col["extracted_answer"][c], "rejected_extracted_answer": col["extracted_answer"][r],
        "chosen_tokens": col["completion_tokens"][c], "rejected_tokens": col["completion_tokens"][r],
        "similarity": sim, "reference_answer": col["reference_answer"][c], "answer_type": col["answer_type"][c],
    }


def _triple(col: dict[str, list], c: int, r: int) -> tuple:
    return col["question"][c], col["completion"][c], col["completion"][r]


def _prompt_pairs(col: dict[str, list], pid: str, rows: list[int], cfg: PreferenceConfig,
                  system: str | None, seen: set) -> tuple[list[dict], dict[str, int]]:
    """Pairs of one prompt and the count of dropped candidate pairs per reason."""
    chosen = sorted((r for r in rows if _is_clean_correct(col, r)), key=lambda r: _chosen_key(col, r, cfg))
    ranked = sorted((rank, col["sample_index"][r], r) for r in rows if (rank := _rejected_rank(col, r)))
    rejected, used = [(r, rank[1]) for rank, _, r in ranked], set()
    pairs, drops = [], dict.fromkeys((*TIE_REASONS, "duplicate"), 0)
    for c in chosen:
        if len(pairs) >= cfg.max_pairs_per_prompt:
            break
        for r, kind in rejected:
            if r in used:
                continue
            reason, sim = _tie_reason(col, c, r, cfg)
            if reason is None and _triple(col, c, r) in seen:
                reason = "duplicate"
            if reason is not None:
                drops[reason] += 1
                continue
            seen.add(_triple(col, c, r))
            used.add(r)
            pairs.append(_pair_row(col, pid, c, r, kind, sim, system))
            break
    return pairs, drops


def _no_pair_reason(col: dict[str, list], rows: list[int], drops: dict[str, int],
                    cfg: PreferenceConfig) -> tuple[str, str]:
    """Why a prompt gave no pair, with the numbers a reviewer needs to judge it."""
    n = len(rows)
    n_chosen = sum(1 for r in rows if _is_clean_correct(col, r))
    n_rejected = sum(1 for r in rows if _rejected_rank(col, r))
    n_correct = sum(1 for r in rows if col["correct"][r] is True)
    n_error = sum(1 for r in rows if col["error"][r] is not None)
    if n_chosen == 0:
        return NO_CORRECT_CHAIN, (f"0 clean correct chains of {n} samples ({n_correct} correct, "
                                  f"{n_error} engine errors, {n_rejected} wrong/truncated/low quality)")
    if n_rejected == 0:
        return NO_WRONG_CHAIN, (f"{n_chosen} clean correct chains, 0 wrong/truncated/low-quality chains "
                                f"of {n} samples ({n_error} engine errors)")
    ties = sum(drops[k] for k in TIE_REASONS)
    upper = "inf" if cfg.max_length_ratio is None else f"{cfg.max_length_ratio:g}"
    detail = (f"{ties + drops['duplicate']} candidate pairs of {n_chosen} chosen x {n_rejected} rejected dropped: "
              f"{drops['identical']} identical, {drops['near_identical']} near-identical "
              f"(MinHash >= {cfg.near_duplicate_threshold:g}), {drops['length_ratio']} length ratio outside "
              f"[{cfg.min_length_ratio:g}, {upper}], {drops['duplicate']} duplicate of an earlier pair")
    return (ONLY_TIES if ties else DUPLICATE_PAIRS), detail


def preference_pairs(generations: pa.Table, cfg: PreferenceConfig,
                     template_system: str | None = None) -> tuple[pa.Table, pa.Table]:
    """(pairs, rejected): chosen/rejected pairs per prompt, and one reason row per prompt without a pair."""
    col = columns(generations, NAMES, REQUIRED, PREF_STAGE)
    pairs, dropped, seen = [], [], set()
    for pid, rows in group_rows(col["prompt_id"], col["sample_index"]).items():
        spid = None if pid is None else str(pid)
        found, drops = _prompt_pairs(col, spid, rows, cfg, template_system, seen)
        pairs.extend(found)
        if not found:
            reason, detail = _no_pair_reason(col, rows, drops, cfg)
            dropped.append(dropped_row(pid, PREF_STAGE, reason, detail, first_value(col["question"], rows)))
    out = pa.Table.from_pylist(pairs, schema=PAIR_SCHEMA), pa.Table.from_pylist(dropped, schema=DROPPED_SCHEMA)
    preference_counts(generations, *out)
    return out


def preference_counts(generations: pa.Table, pairs: pa.Table, rejected: pa.Table) -> dict[str, int]:
    """Prompts in, with pairs, rejected (and per reason); raises unless every prompt is in exactly one."""
    prompts_in = set(generations["prompt_id"].to_pylist())
    paired = set(pairs["prompt_id"].to_pylist())
    dropped = rejected["id"].to_pylist()
    counts = {"prompts_in": len(prompts_in), "prompts_with_pairs": len(paired), "pairs": pairs.num_rows,
              "rejected": len(dropped)}
    for reason in rejected["reason"].to_pylist():
        counts[reason] = counts.get(reason, 0) + 1
    if len(prompts_in) != len(paired) + len(dropped) or paired & set(dropped):
        raise AccountingError(f"preference: {len(prompts_in)} prompts in != {len(paired)} with pairs + "
                              f"{len(dropped)} rejected")
    return counts
