"""Config of token counting: how many tokens a dataset holds under the trainer's tokenizer.

SkyPile reports its corpus in tokens and trainers plan in tokens, so every count uses the
trainer's own tokenizer: a local Hugging Face tokenizer folder (its ``tokenizer.json``), a
``tokenizer.json`` file, or ``tiktoken:<encoding>`` when tiktoken is installed.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from skycurate.schemas.config import StrictModel

TOKENS_COLUMN = "n_tokens"
#: the text a dataset's rows are counted by, first present wins (web, CoT SFT, SWE, preference pairs)
TEXT_COLUMNS = ("text", "messages", "problem_statement", "question", "prompt")


class TokenizerConfig(StrictModel):
    """The tokenizer tokens are counted with."""

    tokenizer: str = Field(description="a local Hugging Face tokenizer folder (with tokenizer.json), a "
                                       "tokenizer.json file, or tiktoken:<encoding> (e.g. tiktoken:cl100k_base)")
    text_column: str | None = Field(default=None, description="the column counted; default the first present of "
                                                              + ", ".join(TEXT_COLUMNS) + " (messages: every "
                                                              "turn's content)")
    add_special_tokens: bool = Field(default=False, description="count BOS/EOS the tokenizer adds to each text")
    batch_rows: int = Field(default=1024, ge=1, description="texts encoded per call (encode_batch, Rust threads)")

    @field_validator("tokenizer")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("tokenizer must name a folder, a tokenizer.json or tiktoken:<encoding>")
        return v.strip()
