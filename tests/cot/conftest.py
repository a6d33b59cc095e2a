"""Fixtures shared by the CoT tests: one small teacher per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smoke_teacher(tmp_path_factory):
    """A very small teacher trained for a few seconds on one-step additions: ``(folder, report)``.

    A Llama with head_dim 32 (vLLM's CPU attention), its tokenizer adds BOS, prompts are
    ``"Question: <q>\\nAnswer:"``, completions ``" <think>12+30=42</think> The answer is \\boxed{42}."``
    then EOS; the folder's chat template renders a user turn as the same prompt."""
    from skycurate.samples import cot

    cfg = cot.TeacherConfig(hidden=64, layers=2, heads=2, intermediate=128, batch_size=16, lr=4e-3, threads=1)
    report: dict = {}
    out = cot.train_teacher(tmp_path_factory.mktemp("teacher"), n_train=2400, epochs=1, seed=0, config=cfg,
                            kinds=("add",), report=report)
    return out, report
