"""A tiny arithmetic teacher for the CoT distillation demo (``cot_distill``), trained on CPU.

Model hubs are unreachable, so the demo trains its own teacher: synthetic arithmetic problems with
step-by-step solutions, a small BPE tokenizer trained with ``tokenizers`` (every digit is its own
token) and a 240k-parameter Llama model (hidden 64, 4 layers, 2 heads of 32) trained for about
1800 steps on one CPU thread (2-3 minutes on the shared 2-core machine). It is right on roughly
80% / 60% / 50% of held-out easy / medium / hard problems greedily, less when sampling, so
distillation yields both verified-correct and wrong chains (``benchmarks/cot_teacher.py``).

Prompt format (what the flow must send, :func:`format_prompt`)::

    "Question: " + question + "\nAnswer:"        # no trailing space

e.g. ``"Question: Nora has 78 stamps and buys 4 bags of 5. How many now?\nAnswer:"``. The tokenizer
adds the BOS token itself (``add_special_tokens=True``, the default of transformers and vLLM's
``generate``). The model continues with a space, the solution and EOS (generation stops there)::

     <think>78+4*5=78+20=98</think> The answer is \\boxed{98}.

The saved folder also has a chat template rendering one user message as exactly this prompt (BOS
included), so vLLM's ``llm.chat`` or an OpenAI-compatible chat endpoint give the same text.
Solutions write the expression, then reduce it one operation at a time (the first ``*``, else the
leftmost ``+``/``-``), without spaces, and end in ``\\boxed{N}``: :func:`extract_boxed` reads it.

Difficulty = number of arithmetic steps: 1 (easy: one ``+``, ``-`` or ``*``), 2 (medium), 3
(hard); the teacher's accuracy falls with the steps, which the selection stage relies on. Every
number (operands, intermediate results, answer) is at most ``MAX_VALUE`` = 99 by default.

The problems and the prompts dataset are in ``cot_prompts`` (no torch needed), the tokenizer,
training and measuring in ``cot_teacher``; this module is the front that re-exports both.
"""

from __future__ import annotations

from skycurate.samples.cot_prompts import (  # noqa: F401 - re-exported
    CONTAINERS,
    DEFAULT_KINDS,
    KINDS,
    LEVELS,
    MAX_VALUE,
    NAMES,
    OBJECTS,
    PROMPT_TEMPLATE,
    Problem,
    PromptsSummary,
    arithmetic_problems,
    compact,
    evaluate,
    extract_boxed,
    format_prompt,
    prompt_row,
    reduce_steps,
    solution_text,
    write_prompts,
)
from skycurate.samples.cot_teacher import (  # noqa: F401 - re-exported
    CHAT_TEMPLATE,
    SPECIALS,
    TeacherConfig,
    TrainReport,
    accuracy_by_level,
    generate,
    is_correct,
    train_teacher,
    train_tokenizer,
    training_questions,
)
