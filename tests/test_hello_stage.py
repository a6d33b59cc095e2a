"""The demo stage and the verdict accounting, case by case, in English and Chinese."""

from __future__ import annotations

import pyarrow as pa
import pytest

from skycurate.schemas.hello import LengthFilterConfig
from skycurate.stages.accounting import AccountingError, FunnelStep, split_verdicts_arrow
from skycurate.stages.hello import annotate

CASES = [
    # text, words, rejected with min_words=3?
    ("The Yangtze is long.", 4, False),
    ("长江是亚洲第一长河", 9, False),  # each Han character counts as a word
    ("长江 Yangtze", 3, False),
    ("Home", 1, True),
    ("首页", 2, True),
    ("... !!! ---", 0, True),  # punctuation is not a word
    ("", 0, True),
    (None, 0, True),
]


@pytest.mark.parametrize("text,words,rejected", CASES)
def test_word_count_and_verdict(text, words, rejected):
    out = annotate(pa.record_batch({"text": pa.array([text], pa.string())}), LengthFilterConfig(min_words=3))
    row = out.to_pylist()[0]
    assert row["n_words"] == words
    assert (row["reject_reason"] is not None) == rejected
    if rejected:
        assert row["reject_stage"] == "length_filter"
        assert row["reject_reason"] == f"too_short: {words} words < 3"


def test_split_keeps_every_row_exactly_once():
    batch = pa.record_batch({"id": [str(i) for i in range(len(CASES))],
                             "text": pa.array([c[0] for c in CASES], pa.string())})
    kept, rejected = split_verdicts_arrow(pa.Table.from_batches([annotate(batch, LengthFilterConfig())]))
    assert kept.num_rows + rejected.num_rows == len(CASES)
    assert set(kept.column("id").to_pylist()).isdisjoint(rejected.column("id").to_pylist())
    assert "reject_reason" not in kept.schema.names and "reject_reason" in rejected.schema.names
    assert kept.num_rows == sum(not c[2] for c in CASES)


def test_funnel_step_refuses_counts_that_do_not_reconcile():
    FunnelStep(stage="s", rows_in=10, rows_out=6, rejected=3, quarantined=1)
    with pytest.raises(AccountingError, match="10 rows in != 6 kept \\+ 3 rejected \\+ 0 quarantined"):
        FunnelStep(stage="s", rows_in=10, rows_out=6, rejected=3)
