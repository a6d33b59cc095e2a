"""The columns of ``cot/generations`` that the RL pool and the preference pairs read (test helper)."""

import pyarrow as pa

GEN_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("sample_index", pa.int32()), ("question", pa.string()),
    ("reference_answer", pa.string()), ("answer_type", pa.string()), ("lang", pa.string()),
    ("domain", pa.string()), ("source", pa.string()), ("completion", pa.string()),
    ("finish_reason", pa.string()), ("completion_tokens", pa.int32()), ("error", pa.string()),
    ("extracted_answer", pa.string()), ("correct", pa.bool_()), ("quality_issues", pa.list_(pa.string())),
    ("selected", pa.bool_()),
])
