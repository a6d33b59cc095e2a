"""Reading agent trajectories (SWE-agent, mini-SWE-agent, OpenHands) into chat messages."""

from __future__ import annotations

import json

import pytest

from skycurate.stages.swe.trajectories import (
    MINI_SWE_AGENT,
    OPENHANDS,
    SWE_AGENT,
    as_patches,
    list_trajectory_files,
    read_trajectories,
    trajectory_rows,
)

PATCH = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-x = 0\n+x = 1\n"

SWE_AGENT_DOC = {   # SWE-agent 1.x: text blocks, tool calls and tool messages
    "environment": "swe_main",
    "history": [
        {"role": "system", "content": "You are a helpful assistant.", "agent": "main", "message_type": "system_prompt"},
        {"role": "user", "content": [{"type": "text", "text": "<issue>x should be 1</issue>"}], "agent": "main",
         "message_type": "observation"},
        {"role": "assistant", "content": "Let me look.", "thought": "Let me look.", "action": "cat x.py",
         "agent": "main", "message_type": "action",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "bash", "arguments": "{\"command\": \"cat x.py\"}"}}]},
        {"role": "tool", "content": [{"type": "text", "text": "x = 0"}], "agent": "main",
         "message_type": "observation", "tool_call_ids": ["call_1"]},
        {"role": "assistant", "content": "Fixed.", "agent": "main", "message_type": "action",
         "tool_calls": [{"id": "call_2", "type": "function",
                         "function": {"name": "submit", "arguments": {}}}]},
    ],
    "info": {"submission": PATCH, "exit_status": "submitted",
             "model_stats": {"tokens_sent": 1200, "tokens_received": 80, "api_calls": 2}},
    "trajectory": [],
}

MINI_DOC = {
    "info": {"exit_status": "Submitted", "submission": PATCH,
             "config": {"model": {"model_name": "tiny-coder"}}},
    "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "fix x"},
                 {"role": "assistant", "content": "```bash\nsed -i s/0/1/ x.py\n```"},
                 {"role": "user", "content": "<returncode>0</returncode>"}],
    "trajectory_format": "mini-swe-agent-1",
    "instance_id": "acme__x-3",
}

OPENHANDS_LINE = {   # flat events; the first agent action carries the model's own message
    "instance_id": "acme__x-3", "instruction": "Fix x.",
    "metadata": {"llm_config": {"model": "openai/qwen"}},
    "history": [
        {"id": 0, "source": "agent", "action": "system", "args": {"content": "You are OpenHands."}},
        {"id": 1, "source": "user", "action": "message", "message": "Fix x.", "args": {"content": "Fix x."}},
        {"id": 2, "source": "agent", "action": "run", "message": "Running command: cat x.py",
         "args": {"command": "cat x.py", "thought": "Look first."},
         "tool_call_metadata": {"function_name": "execute_bash", "tool_call_id": "t1",
                                "model_response": {"id": "resp-1", "choices": [{"message": {
                                    "role": "assistant", "content": "Look first.",
                                    "tool_calls": [{"id": "t1", "type": "function",
                                                    "function": {"name": "execute_bash",
                                                                 "arguments": "{\"command\": \"cat x.py\"}"}}]}}]}}},
        {"id": 3, "source": "agent", "observation": "run", "content": "x = 0", "cause": 2,
         "tool_call_metadata": {"tool_call_id": "t1"}},
        {"id": 4, "source": "agent", "action": "run_ipython", "args": {"code": "print(1)", "thought": ""}},
        {"id": 5, "source": "agent", "observation": "run_ipython", "content": "1"},
        {"id": 6, "source": "agent", "action": "finish", "message": "Done: x is 1.", "args": {}},
    ],
    "test_result": {"git_patch": PATCH},
    "metrics": {"accumulated_token_usage": {"prompt_tokens": 900, "completion_tokens": 40}},
    "error": None,
}


def test_swe_agent_trajectory_becomes_messages_with_tool_calls(tmp_path):
    (tmp_path / "acme__x-3.traj").write_text(json.dumps(SWE_AGENT_DOC))
    [t] = read_trajectories([str(tmp_path / "acme__x-3.traj")]).trajectories
    assert (t.format, t.instance_id, t.patch, t.exit_status) == (SWE_AGENT, "acme__x-3", PATCH, "submitted")
    assert [m["role"] for m in t.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert t.messages[1]["content"] == "<issue>x should be 1</issue>"
    assert t.messages[2]["tool_calls"][0]["function"] == {"name": "bash", "arguments": "{\"command\": \"cat x.py\"}"}
    assert t.messages[3]["tool_call_id"] == "call_1" and t.messages[3]["content"] == "x = 0"
    assert t.messages[4]["tool_calls"][0]["function"]["arguments"] == "{}"     # a dict becomes JSON text
    assert (t.tokens_sent, t.tokens_received) == (1200, 80)
    assert t.trajectory_id.startswith("acme__x-3#")


def test_mini_swe_agent_and_openhands_outputs(tmp_path):
    (tmp_path / "run.traj.json").write_text(json.dumps(MINI_DOC))
    (tmp_path / "output.jsonl").write_text(json.dumps(OPENHANDS_LINE) + "\n")
    got = read_trajectories(list_trajectory_files([str(tmp_path)]))
    assert got.quarantined == []
    by_format = {t.format: t for t in got.trajectories}
    mini, oh = by_format[MINI_SWE_AGENT], by_format[OPENHANDS]
    assert mini.model == "tiny-coder" and [m["role"] for m in mini.messages] == ["system", "user", "assistant", "user"]
    assert oh.source.endswith("output.jsonl:1") and oh.model == "openai/qwen" and oh.patch == PATCH
    assert [(m["role"], m["content"]) for m in oh.messages] == [
        ("system", "You are OpenHands."), ("user", "Fix x."), ("assistant", "Look first."), ("tool", "x = 0"),
        ("assistant", "<execute_ipython>\nprint(1)\n</execute_ipython>"), ("user", "OBSERVATION:\n1"),
        ("assistant", "Done: x is 1.")]
    assert oh.messages[2]["tool_calls"][0]["id"] == "t1" and oh.messages[3]["tool_call_id"] == "t1"
    assert (oh.tokens_sent, oh.tokens_received) == (900, 40)


def test_older_openhands_pairs_and_unreadable_input_are_accounted_for(tmp_path):
    old = {"instance_id": "acme__x-4", "instruction": "Fix it",
           "history": [[{"source": "user", "action": "message", "args": {"content": "Fix it"}},
                        {"observation": "null", "content": ""}],
                       [{"source": "agent", "action": "run", "args": {"command": "ls", "thought": "List."}},
                        {"source": "agent", "observation": "run", "content": "x.py"}]],
           "test_result": {"git_patch": ""}}
    (tmp_path / "out.jsonl").write_text(json.dumps(old) + "\n{not json\n" + json.dumps({"foo": 1}) + "\n")
    (tmp_path / "broken.traj").write_text("{")
    got = read_trajectories(list_trajectory_files([str(tmp_path)]))
    [t] = got.trajectories
    assert [(m["role"], m["content"]) for m in t.messages] == [
        ("user", "Fix it"), ("assistant", "List.\n\n<execute_bash>\nls\n</execute_bash>"),
        ("user", "OBSERVATION:\nx.py")]
    assert sorted(q["reason"] for q in got.quarantined) == ["bad_json", "bad_json", "unrecognised_trajectory"]
    patches, rejected = as_patches(got.trajectories)
    assert patches == [] and [r["reason"] for r in rejected] == ["no_patch"]


def test_only_resolved_trajectories_become_rows_and_duplicates_are_checked_once(tmp_path):
    (tmp_path / "a.traj").write_text(json.dumps({**SWE_AGENT_DOC, "instance_id": "acme__x-3"}))
    (tmp_path / "b.traj").write_text(json.dumps({**SWE_AGENT_DOC, "instance_id": "acme__x-3"}))   # same content
    (tmp_path / "c.traj.json").write_text(json.dumps(MINI_DOC))
    trajs = read_trajectories(list_trajectory_files([str(tmp_path / "*.traj*")])).trajectories
    patches, rejected = as_patches(trajs)
    assert len(patches) == 2 and [r["reason"] for r in rejected] == ["duplicate_trajectory"]
    results = {patches[0]["patch_id"]: {"resolved": True, "reason": None, "failing_tests": [], "f2p_total": 1,
                                        "p2p_total": 2},
               patches[1]["patch_id"]: {"resolved": False, "reason": "tests_fail", "failing_tests": ["t::a"],
                                        "f2p_total": 1, "p2p_total": 2}}
    kept, not_resolved = trajectory_rows(trajs, results)
    assert [r["trajectory_id"] for r in kept] == [patches[0]["patch_id"]]
    assert kept[0]["turns"] == 2 and kept[0]["tokens"] is None and kept[0]["f2p_total"] == 1
    assert [(r["reason"], r["detail"]) for r in not_resolved] == [("not_resolved:tests_fail", "t::a")]


def test_a_missing_trajectory_path_is_one_clear_error(tmp_path):
    from skycurate.errors import SkycurateError

    with pytest.raises(SkycurateError, match="no such file or folder"):
        list_trajectory_files([str(tmp_path / "nope")])
