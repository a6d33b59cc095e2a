"""Preference layouts of public sets (stages/pref/layouts.py): detection from the columns, mapping each
layout's rows to the canonical pair, the reasons a row gives no pair, and the errors a user sees."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from skycurate.errors import ConfigError
from skycurate.schemas.pref import PAIR_SCHEMA, PairFields
from skycurate.stages.pref import layouts as L

AUTO = PairFields()


def u(text: str) -> dict:
    return {"role": "user", "content": text}


def a(text: str) -> dict:
    return {"role": "assistant", "content": text}


def one(row: dict, layout: str, fields: PairFields = AUTO, source: str = "src") -> dict:
    """The single pair of a row that must give one; it must also fit PAIR_SCHEMA."""
    rows, reason = L.to_pairs(row, layout, fields, source)
    assert reason is None and len(rows) == 1
    table = pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)
    assert table.to_pylist() == rows
    return rows[0]


def reason(row: dict, layout: str, fields: PairFields = AUTO) -> str:
    rows, why = L.to_pairs(row, layout, fields, "src")
    assert rows == []
    return why


# ------------------------------------------------------------------------------ rows

TRL_HH_STRINGS = {  # Anthropic HH in TRL's explicit-prompt string form
    "prompt": "\n\nHuman: How do I keep basil fresh?\n\nAssistant:",
    "chosen": " Trim the stems and keep it in a glass of water at room temperature.",
    "rejected": " Put it in the freezer.",
}
TRL_PLAIN = {"prompt": "Name a primary colour.", "chosen": "Red.", "rejected": "Green is a primary colour of paint."}
TRL_CONVERSATIONAL = {
    "prompt": [{"role": "system", "content": "You are terse."}, u("What is the capital of France?")],
    "chosen": [{"role": "system", "content": "You are terse."}, u("What is the capital of France?"), a("Paris.")],
    "rejected": [{"role": "system", "content": "You are terse."}, u("What is the capital of France?"),
                 a("Lyon.")],
}
HH_TEXT = {"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4",
           "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5"}
HH_MULTI = {
    "chosen": "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a fact about owls."
              "\n\nAssistant: Owls can rotate their heads about 270 degrees.",
    "rejected": "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a fact about owls."
                "\n\nAssistant: No.",
}
ULTRAFEEDBACK = {
    "source": "evol_instruct",
    "instruction": "Write a haiku about autumn.",
    "models": ["gpt-4", "llama-2-7b-chat", "alpaca-7b", "falcon-40b-instruct"],
    "completions": [
        {"model": "gpt-4", "response": "Crimson leaves drift down,\nwhispering to the cold earth,\nsummer's last goodbye.",
         "overall_score": 8.5, "fine-grained_score": 4.75, "critique": "Vivid."},
        {"model": "llama-2-7b-chat", "response": "Autumn is a season when leaves fall.",
         "overall_score": 3.0, "fine-grained_score": 2.0, "critique": "Not a haiku."},
        {"model": "alpaca-7b", "response": "Leaves fall, it is cold, the end.",
         "overall_score": 3.0, "fine-grained_score": 1.5, "critique": "Not a haiku."},
        {"model": "falcon-40b-instruct", "response": "Golden light fading,\napples heavy on the bough,\ngeese call "
         "overhead.", "overall_score": 7.0, "fine-grained_score": 4.5, "critique": "Good."},
    ],
}
ULTRAFEEDBACK_FINE = {
    "prompt": "Is 17 prime?",
    "completions": [
        {"response": "No.", "fine-grained_score": 1.25},
        {"response": "Yes, 17 is prime: no integer from 2 to 4 divides it.", "fine-grained_score": 4.75},
        {"response": "Yes.", "fine-grained_score": float("nan"), "rating": 3.0, "score": 4.0},
        {"response": "Unscored."},
    ],
}
BINARIZED = {  # HuggingFaceH4/ultrafeedback_binarized
    "prompt": "How many legs does a spider have?",
    "prompt_id": "5f1c3e0a9b",
    "chosen": [u("How many legs does a spider have?"), a("A spider has eight legs.")],
    "rejected": [u("How many legs does a spider have?"), a("Spiders have six legs.")],
    "messages": [u("How many legs does a spider have?"), a("A spider has eight legs.")],
    "score_chosen": 9.0,
    "score_rejected": 2.5,
}


# ------------------------------------------------------------------------------ detection


@pytest.mark.parametrize("columns, layout", [
    (["prompt", "chosen", "rejected"], "trl"),
    (["chosen", "rejected"], "conversation"),
    (["source", "instruction", "models", "completions", "correct_answers", "incorrect_answers"], "ultrafeedback"),
    (["prompt", "completions"], "ultrafeedback"),
    (["prompt", "prompt_id", "chosen", "rejected", "messages", "score_chosen", "score_rejected"], "scored_pair"),
    (["prompt", "chosen", "rejected", "chosen_rating", "rejected_rating"], "scored_pair"),
    (["chosen", "rejected", "chosen_score", "rejected_score"], "scored_pair"),
    (["prompt", "chosen", "rejected", "score_chosen"], "trl"),   # half a score pair is no score pair
])
def test_detect_pair_layout_auto(columns, layout):
    assert L.detect_pair_layout(columns, AUTO, "data/x.jsonl") == layout


def test_detect_counts_mapped_columns_and_respects_an_explicit_layout():
    fields = PairFields(prompt="question", chosen="response_j", rejected="response_k")
    assert L.detect_pair_layout(["question", "response_j", "response_k"], fields, "se") == "trl"
    assert L.detect_pair_layout(["chosen", "rejected", "score_chosen", "score_rejected"],
                                PairFields(layout="conversation"), "w") == "conversation"


def test_detect_error_is_one_line_naming_where_columns_and_fields():
    columns = ["text", "label"] + [f"c{i:02d}" for i in range(25)]
    with pytest.raises(ConfigError) as err:
        L.detect_pair_layout(columns, AUTO, "hub/some-set")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("preference pairs hub/some-set: cannot tell the pair layout from its fields [c00, c01, ")
    assert "c19, ... (+7 more)]" in msg and "label" not in msg
    assert msg.endswith("set fields.prompt, fields.chosen and fields.rejected (and fields.layout) in the config")


def test_detect_errors_for_explicit_layouts_and_mapped_typos():
    with pytest.raises(ConfigError, match=r"^preference pairs w: layout 'trl' needs prompt for the prompt but "
                                          r"the file has \[chosen, rejected\]; set fields.prompt in the config$"):
        L.detect_pair_layout(["chosen", "rejected"], PairFields(layout="trl"), "w")
    with pytest.raises(ConfigError, match=r"layout 'scored_pair' needs score_chosen/score_rejected"):
        L.detect_pair_layout(["prompt", "chosen", "rejected"], PairFields(layout="scored_pair"), "w")
    with pytest.raises(ConfigError, match=r"^preference pairs w: fields.chosen is 'good' but the file has no such "
                                          r"field \(it has \[chosen, prompt, rejected\]\); fix fields.chosen"):
        L.detect_pair_layout(["prompt", "chosen", "rejected"], PairFields(chosen="good"), "w")


def test_pair_fields_are_strict():
    with pytest.raises(ValidationError):
        PairFields(layout="dpo")
    with pytest.raises(ValidationError):
        PairFields(score="s")


# ------------------------------------------------------------------------------ layouts


def test_trl_anthropic_strings():
    pair = one(TRL_HH_STRINGS, "trl", source="hh-rlhf")
    chosen = "Trim the stems and keep it in a glass of water at room temperature."
    assert pair == {
        "pair_id": L.pair_id("hh-rlhf", "How do I keep basil fresh?", chosen, "Put it in the freezer."),
        "source": "hh-rlhf",
        "prompt": [u("How do I keep basil fresh?")],
        "chosen": [a(chosen)],
        "rejected": [a("Put it in the freezer.")],
        "prompt_text": "How do I keep basil fresh?",
        "chosen_text": chosen,
        "rejected_text": "Put it in the freezer.",
        "chosen_score": None, "rejected_score": None, "images": None, "record_id": None,
    }


def test_trl_plain_strings():
    pair = one(TRL_PLAIN, "trl")
    assert (pair["prompt"], pair["chosen"], pair["rejected"]) == (
        [u("Name a primary colour.")], [a("Red.")], [a("Green is a primary colour of paint.")])
    assert pair["prompt_text"] == "Name a primary colour."


def test_trl_conversational_strips_repeated_prompt_turns():
    pair = one(TRL_CONVERSATIONAL, "trl")
    assert pair["prompt"] == [{"role": "system", "content": "You are terse."}, u("What is the capital of France?")]
    assert (pair["chosen"], pair["rejected"]) == ([a("Paris.")], [a("Lyon.")])
    assert (pair["prompt_text"], pair["chosen_text"], pair["rejected_text"]) == (
        "What is the capital of France?", "Paris.", "Lyon.")


def test_trl_numpy_message_arrays_as_pandas_reads_them():
    row = {k: np.array(v, dtype=object) for k, v in TRL_CONVERSATIONAL.items()}
    assert one(row, "trl") == one(TRL_CONVERSATIONAL, "trl")


def test_conversation_hh_text():
    pair = one(HH_TEXT, "conversation", source="Anthropic/hh-rlhf")
    assert pair["prompt"] == [u("What is 2+2?")]
    assert (pair["chosen"], pair["rejected"]) == ([a("4")], [a("5")])
    assert (pair["prompt_text"], pair["chosen_text"], pair["rejected_text"]) == ("What is 2+2?", "4", "5")
    assert pair["pair_id"] == L.pair_id("Anthropic/hh-rlhf", "What is 2+2?", "4", "5")


def test_conversation_hh_multi_turn_keeps_the_shared_turns_in_the_prompt():
    pair = one(HH_MULTI, "conversation")
    assert pair["prompt"] == [u("Hi"), a("Hello! How can I help?"), u("Tell me a fact about owls.")]
    assert pair["chosen"] == [a("Owls can rotate their heads about 270 degrees.")]
    assert pair["rejected"] == [a("No.")]
    assert pair["prompt_text"] == "Tell me a fact about owls."


def test_conversation_message_lists():
    row = {"chosen": [u("Hi"), a("Hello.")], "rejected": [u("Hi"), a("What do you want?")]}
    pair = one(row, "conversation")
    assert (pair["prompt"], pair["chosen"], pair["rejected"]) == ([u("Hi")], [a("Hello.")], [a("What do you want?")])


def test_ultrafeedback_overall_score_highest_vs_lowest_first_wins_ties():
    pair = one(ULTRAFEEDBACK, "ultrafeedback", source="openbmb/UltraFeedback")
    best = "Crimson leaves drift down,\nwhispering to the cold earth,\nsummer's last goodbye."
    assert pair["prompt"] == [u("Write a haiku about autumn.")]
    assert pair["chosen"] == [a(best)]
    assert pair["rejected"] == [a("Autumn is a season when leaves fall.")]   # 3.0 twice: the first one
    assert (pair["chosen_score"], pair["rejected_score"]) == (8.5, 3.0)
    assert pair["pair_id"] == L.pair_id("openbmb/UltraFeedback", "Write a haiku about autumn.", best,
                                        "Autumn is a season when leaves fall.")


def test_ultrafeedback_fine_grained_scores_only():
    pair = one(ULTRAFEEDBACK_FINE, "ultrafeedback")
    assert pair["chosen"] == [a("Yes, 17 is prime: no integer from 2 to 4 divides it.")]
    assert pair["rejected"] == [a("No.")]
    assert (pair["chosen_score"], pair["rejected_score"]) == (4.75, 1.25)   # "Yes." scored mean(4, 3) = 3.5


def test_scored_pair_ultrafeedback_binarized():
    pair = one(BINARIZED, "scored_pair", source="HuggingFaceH4/ultrafeedback_binarized")
    assert pair == {
        "pair_id": L.pair_id("HuggingFaceH4/ultrafeedback_binarized", "How many legs does a spider have?",
                             "A spider has eight legs.", "Spiders have six legs."),
        "source": "HuggingFaceH4/ultrafeedback_binarized",
        "prompt": [u("How many legs does a spider have?")],
        "chosen": [a("A spider has eight legs.")],
        "rejected": [a("Spiders have six legs.")],
        "prompt_text": "How many legs does a spider have?",
        "chosen_text": "A spider has eight legs.",
        "rejected_text": "Spiders have six legs.",
        "chosen_score": 9.0, "rejected_score": 2.5, "images": None, "record_id": "5f1c3e0a9b",
    }


def test_images_keep_bytes_and_drop_paths():
    row = dict(TRL_PLAIN, images=[{"bytes": b"\x89PNG1", "path": "a.png"}, {"bytes": None, "path": "b.png"},
                                  b"\xff\xd8raw", "c.png"])
    assert one(row, "trl")["images"] == [b"\x89PNG1", b"\xff\xd8raw"]
    assert one(dict(TRL_PLAIN, image={"bytes": b"img", "path": None}), "trl")["images"] == [b"img"]
    assert one(dict(TRL_PLAIN, image="only/a/path.jpg"), "trl")["images"] is None


def test_mapped_columns_and_record_id():
    row = {"question": "2+3?", "response_j": "5", "response_k": "6", "qid": 123.0}
    fields = PairFields(prompt="question", chosen="response_j", rejected="response_k", id="qid")
    pair = one(row, "trl", fields)
    assert (pair["prompt_text"], pair["chosen_text"], pair["rejected_text"], pair["record_id"]) == (
        "2+3?", "5", "6", "123")


# ------------------------------------------------------------------------------ no pair


def test_ties():
    assert reason(dict(BINARIZED, score_rejected=9.0), "scored_pair") == "tie: equal scores"
    assert reason(dict(TRL_PLAIN, rejected="  Red.\n"), "trl") == "tie: identical texts"
    assert reason({"chosen": HH_TEXT["chosen"], "rejected": HH_TEXT["chosen"]}, "conversation") == \
        "tie: identical texts"
    same = {"prompt": "q", "completions": [{"response": "x", "overall_score": 5}, {"response": "y",
                                                                                  "overall_score": 5.0}]}
    assert reason(same, "ultrafeedback") == "tie: equal scores"


def test_unknown_scores_are_no_tie():
    pair = one(dict(BINARIZED, score_chosen=float("nan"), score_rejected=None), "scored_pair")
    assert (pair["chosen_score"], pair["rejected_score"]) == (None, None)


@pytest.mark.parametrize("row, layout, why", [
    (dict(TRL_PLAIN, chosen=42), "trl", "malformed"),
    (dict(TRL_PLAIN, chosen={"role": "assistant", "content": "Red."}), "trl", "malformed"),
    (dict(TRL_PLAIN, rejected=[{"role": "assistant"}]), "trl", "malformed"),
    (dict(TRL_PLAIN, rejected=[["nested"]]), "trl", "malformed"),
    ({"prompt": "Name a primary colour.", "rejected": "Green."}, "trl", "missing_field: chosen"),
    (dict(TRL_PLAIN, rejected="   "), "trl", "missing_field: rejected"),
    (dict(TRL_PLAIN, prompt=None), "trl", "missing_field: prompt"),
    (dict(TRL_CONVERSATIONAL, chosen=TRL_CONVERSATIONAL["prompt"]), "trl", "malformed"),  # no answer after prompt
    ({"chosen": "4", "rejected": "5"}, "conversation", "malformed"),                    # not dialogues
    ({"chosen": [a("4")], "rejected": [a("5")]}, "conversation", "missing_field: prompt"),
    ({"chosen": float("nan"), "rejected": HH_TEXT["rejected"]}, "conversation", "missing_field: chosen"),
    ({"instruction": "q", "completions": [{"response": "x", "overall_score": 5}]}, "ultrafeedback",
     "too_few_completions"),
    ({"instruction": "q", "completions": [{"response": "x", "overall_score": 5}, {"response": "y"},
                                          "junk"]}, "ultrafeedback", "too_few_completions"),
    ({"instruction": "q", "completions": "not a list"}, "ultrafeedback", "malformed"),
    ({"instruction": "q"}, "ultrafeedback", "missing_field: completions"),
    ({"completions": ULTRAFEEDBACK["completions"]}, "ultrafeedback", "missing_field: prompt"),
])
def test_bad_rows_give_reasons_not_exceptions(row, layout, why):
    assert reason(row, layout) == why


def test_unknown_layout_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown layout 'dpo'"):
        L.to_pairs(TRL_PLAIN, "dpo", AUTO, "s")


# ------------------------------------------------------------------------------ ids and schema


def test_pair_id_is_deterministic_and_whitespace_insensitive():
    expected = hashlib.sha256(b"s\x00What is 2+2?\x004\x005").hexdigest()[:16]
    assert L.pair_id("s", "What is 2+2?", "4", "5") == expected
    assert L.pair_id("s", "  What is\n2+2? ", "4", "5") == expected
    assert len(expected) == 16
    assert L.pair_id("t", "What is 2+2?", "4", "5") != expected
    assert L.pair_id("s", "What is 2+2?", "5", "4") != expected
    assert one(HH_TEXT, "conversation", source="s")["pair_id"] == expected


def test_every_layout_output_fits_the_schema():
    rows = []
    for row, layout in [(TRL_HH_STRINGS, "trl"), (TRL_PLAIN, "trl"), (TRL_CONVERSATIONAL, "trl"),
                        (HH_TEXT, "conversation"), (HH_MULTI, "conversation"), (ULTRAFEEDBACK, "ultrafeedback"),
                        (ULTRAFEEDBACK_FINE, "ultrafeedback"), (BINARIZED, "scored_pair"),
                        (dict(TRL_PLAIN, images=[b"x"]), "trl")]:
        assert L.detect_pair_layout(row, AUTO, "t") == layout
        rows += L.to_pairs(row, layout, AUTO, "src")[0]
    table = pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)
    assert table.num_rows == 9 and table.schema == PAIR_SCHEMA
    ids = table.column("pair_id").to_pylist()
    assert len(set(ids)) == 8 and ids[1] == ids[8]   # the id hashes texts only: images do not change it
