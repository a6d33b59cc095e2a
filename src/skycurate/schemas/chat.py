"""The chat message struct every SFT / RL / preference dataset shares (TRL, verl, LLaMA-Factory read it)."""

from __future__ import annotations

import pyarrow as pa

MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
