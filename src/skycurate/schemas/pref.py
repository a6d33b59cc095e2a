"""Where the fields of a preference pair are in the input rows, and the canonical pair layout.

Public preference sets (TRL's prompt/chosen/rejected, Anthropic HH-RLHF dialogues, UltraFeedback's
scored completions, ultrafeedback_binarized's scored pairs) keep the same pair under their own names
and shapes; ``PairFields`` names the layout (or lets it be detected) and the columns that differ from
the layout's defaults. ``stages/pref/layouts`` maps each row to ``PAIR_SCHEMA``.

=============  ================  =================================================================
column         type              meaning
=============  ================  =================================================================
pair_id        string            sha256(source, prompt_text, chosen_text, rejected_text)[:16],
                                 texts whitespace-collapsed: stable across reruns and reorderings
source         string            the input set the pair came from
prompt         list<MESSAGE>     the conversation before the answer (system / user / assistant turns)
chosen         list<MESSAGE>     the preferred answer turn(s), starting with an assistant turn
rejected       list<MESSAGE>     the dispreferred answer turn(s)
prompt_text    string            the last user turn's text (dedup and decontamination key)
chosen_text    string            the chosen turns' contents joined with newlines
rejected_text  string            the rejected turns' contents joined with newlines
chosen_score   double, nullable  the chosen answer's score, when the input gives one
rejected_score double, nullable  the rejected answer's score, when the input gives one
images         list<binary>, n.  image bytes of the prompt (paths are dropped)
record_id      string, nullable  the input row's id, if it has one
=============  ================  =================================================================
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import Field

from skycurate.schemas.chat import MESSAGES
from skycurate.schemas.config import StrictModel

PAIR_LAYOUTS = ("trl", "conversation", "ultrafeedback", "scored_pair")
PairLayout = Literal["auto", "trl", "conversation", "ultrafeedback", "scored_pair"]


class PairFields(StrictModel):
    """The layout of the input rows and the columns that hold each field, when not the defaults."""

    layout: PairLayout = Field(
        default="auto",
        description="auto (detected from the columns) | trl (prompt, chosen, rejected: strings or message lists) | "
                    "conversation (chosen, rejected full dialogues sharing the prompt: Anthropic HH-RLHF) | "
                    "ultrafeedback (instruction or prompt, completions with response and scores) | "
                    "scored_pair (chosen, rejected and their scores: ultrafeedback_binarized)")
    prompt: str | None = Field(default=None, description="column of the prompt (default: prompt; instruction or "
                                                         "prompt for ultrafeedback)")
    chosen: str | None = Field(default=None, description="column of the chosen answer (default: chosen)")
    rejected: str | None = Field(default=None, description="column of the rejected answer (default: rejected)")
    completions: str | None = Field(default=None, description="column of the scored completions of the "
                                                              "ultrafeedback layout (default: completions)")
    images: str | None = Field(default=None, description="column of the images (default: images, else image)")
    id: str | None = Field(default=None, description="column of the row id (default: id/prompt_id/idx/index/uid)")


PAIR_SCHEMA = pa.schema([
    pa.field("pair_id", pa.string()),             # sha256(source, prompt, chosen, rejected texts)[:16]
    pa.field("source", pa.string()),
    pa.field("prompt", MESSAGES),                 # system?, user, (assistant, user)*
    pa.field("chosen", MESSAGES),                 # the answer turn(s), assistant first
    pa.field("rejected", MESSAGES),
    pa.field("prompt_text", pa.string()),         # last user turn
    pa.field("chosen_text", pa.string()),
    pa.field("rejected_text", pa.string()),
    pa.field("chosen_score", pa.float64()),
    pa.field("rejected_score", pa.float64()),
    pa.field("images", pa.list_(pa.binary())),
    pa.field("record_id", pa.string()),
])
