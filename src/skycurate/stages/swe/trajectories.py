"""Agent trajectories as training data (Skywork-SWE keeps the trajectories whose final patch
resolves the instance).

Reads the files agents write and turns each into one record: the instance it worked on, its
final patch, and the conversation as chat ``messages`` (``role``, ``content``, optional
``tool_calls`` / ``tool_call_id``: the conversational layout TRL's SFT trainer and chat
templates take). Formats, recognised by content, not by file name:

- **SWE-agent** ``*.traj`` (JSON): ``history`` (messages with ``role`` and ``content``, a string
  or a list of text blocks; 1.x adds ``tool_calls`` and ``tool`` messages), ``info.submission``
  (the patch), ``info.exit_status``, ``info.model_stats`` (``tokens_sent``/``tokens_received``).
  The instance id is the file name's stem unless the file names one.
- **mini-SWE-agent** ``*.traj.json``: ``messages`` and ``info.submission``, ``instance_id`` when
  present.
- **OpenHands** ``output.jsonl`` (one run per line): ``instance_id``, ``test_result.git_patch``,
  ``history`` as a flat list of events (``source`` user/agent/environment, ``action`` or
  ``observation``) or, in older versions, ``[action, observation]`` pairs. An event with the
  model's own ``tool_call_metadata`` contributes that message; otherwise actions are rendered
  the way OpenHands' CodeAct agent writes them (``<execute_bash>``, ``<execute_ipython>``) and
  observations become ``OBSERVATION:`` user turns.

A file or line that cannot be read becomes a quarantine row with the reason; nothing is skipped
silently.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SWE_AGENT, MINI_SWE_AGENT, OPENHANDS = "swe-agent", "mini-swe-agent", "openhands"
_SUFFIXES = (".traj", ".traj.json", ".json", ".jsonl")


@dataclass
class Trajectory:
    trajectory_id: str
    instance_id: str
    format: str
    source: str                     # file (and line) it came from
    patch: str
    messages: list[dict[str, Any]]
    model: str | None = None
    exit_status: str | None = None
    tokens_sent: int | None = None  # as the agent reported them (model_stats / metrics), when it did
    tokens_received: int | None = None


@dataclass
class ReadResult:
    trajectories: list[Trajectory] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)   # source, reason, detail


def list_trajectory_files(specs: list[str]) -> list[str]:
    """Files, folders (searched recursively for agent output files) and globs -> sorted files."""
    out: list[str] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if glob.has_magic(spec):
            found = sorted(p for p in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(p))
        elif path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES)
                           and not p.name.startswith("."))
        elif path.is_file():
            found = [str(path)]
        else:
            from skycurate.errors import SkycurateError

            raise SkycurateError(f"trajectories {spec}: no such file or folder")
        out += [f for f in found if f not in out]
    return out


def text_of(content: Any) -> str:
    """A message's content as text: a string, or the text blocks of a list (images dropped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content
                       if not isinstance(b, dict) or b.get("type", "text") == "text")
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return str(content)


def _tool_calls(calls: Any) -> list[dict[str, Any]] | None:
    if not calls:
        return None
    out = []
    for c in calls:
        fn = c.get("function") or {}
        args = fn.get("arguments")
        out.append({"id": str(c.get("id") or ""), "type": str(c.get("type") or "function"),
                    "function": {"name": str(fn.get("name") or ""),
                                 "arguments": args if isinstance(args, str) else json.dumps(args, sort_keys=True)}})
    return out


def _message(role: str, content: Any, tool_calls: Any = None, tool_call_id: Any = None) -> dict[str, Any]:
    return {"role": role, "content": text_of(content), "tool_calls": _tool_calls(tool_calls),
            "tool_call_id": str(tool_call_id) if tool_call_id else None}


def _chat_messages(history: list[dict]) -> list[dict[str, Any]]:
    """SWE-agent / mini-SWE-agent messages (OpenAI chat layout) -> normalised messages."""
    out = []
    for m in history:
        role = m.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            continue
        tool_call_id = m.get("tool_call_id") or (m.get("tool_call_ids") or [None])[0]
        out.append(_message(role, m.get("content"), m.get("tool_calls"), tool_call_id if role == "tool" else None))
    return out


def _from_swe_agent(doc: dict, source: str) -> Trajectory:
    info = doc.get("info") or {}
    stats = info.get("model_stats") or {}
    instance = doc.get("instance_id") or info.get("instance_id") or Path(source).name.split(".traj")[0]
    fmt = MINI_SWE_AGENT if "messages" in doc and "history" not in doc else SWE_AGENT
    history = doc.get("messages") if fmt == MINI_SWE_AGENT else doc.get("history")
    if not isinstance(history, list):
        raise ValueError("no history/messages list")
    model = ((info.get("config") or {}).get("model") or {}).get("model_name") if fmt == MINI_SWE_AGENT else None
    return Trajectory(trajectory_id="", instance_id=str(instance), format=fmt, source=source,
                      patch=info.get("submission") or "", messages=_chat_messages(history), model=model,
                      exit_status=info.get("exit_status"), tokens_sent=stats.get("tokens_sent"),
                      tokens_received=stats.get("tokens_received"))


_CODEACT = {"run": ("command", "<execute_bash>\n{}\n</execute_bash>"),
            "run_ipython": ("code", "<execute_ipython>\n{}\n</execute_ipython>")}


def _openhands_events(history: list) -> list[dict]:
    if history and isinstance(history[0], list):   # older output: [action, observation] pairs
        return [e for pair in history for e in pair if isinstance(e, dict)]
    return [e for e in history if isinstance(e, dict)]


def _openhands_messages(events: list[dict]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in events:
        meta = e.get("tool_call_metadata") or {}
        if "action" in e:
            action, args, source = e["action"], e.get("args") or {}, e.get("source")
            if action == "system":
                out.append(_message("system", args.get("content") or e.get("message")))
            elif action == "message":
                role = "assistant" if source == "agent" else "user"
                out.append(_message(role, args.get("content", e.get("message"))))
            elif source == "agent":
                response = ((meta.get("model_response") or {}).get("choices") or [{}])[0].get("message")
                if response:
                    if not out or out[-1].get("_response") != meta.get("model_response", {}).get("id"):
                        msg = _message("assistant", response.get("content"), response.get("tool_calls"))
                        msg["_response"] = meta.get("model_response", {}).get("id")
                        out.append(msg)
                elif action in _CODEACT:
                    key, fmt = _CODEACT[action]
                    thought = args.get("thought") or ""
                    text = (thought + "\n\n" if thought else "") + fmt.format(args.get(key, ""))
                    out.append(_message("assistant", text))
                elif action not in ("null", "change_agent_state", "recall"):
                    out.append(_message("assistant", e.get("message") or args.get("thought") or action))
        elif e.get("observation") not in (None, "null", "agent_state_changed", "recall"):
            content = e.get("content") if e.get("content") is not None else e.get("message")
            if meta.get("tool_call_id"):
                out.append(_message("tool", content, tool_call_id=meta["tool_call_id"]))
            else:
                out.append(_message("user", f"OBSERVATION:\n{text_of(content)}"))
    for m in out:
        m.pop("_response", None)
    return out


def _from_openhands(doc: dict, source: str) -> Trajectory:
    if not isinstance(doc.get("history"), list):
        raise ValueError("no history list")
    metrics = doc.get("metrics") or {}
    usage = metrics.get("accumulated_token_usage") or {}
    instruction = doc.get("instruction")
    messages = _openhands_messages(_openhands_events(doc["history"]))
    if instruction and not any(m["role"] == "user" for m in messages):
        messages.insert(0, _message("user", instruction))
    return Trajectory(trajectory_id="", instance_id=str(doc["instance_id"]), format=OPENHANDS, source=source,
                      patch=(doc.get("test_result") or {}).get("git_patch") or "", messages=messages,
                      model=(doc.get("metadata") or {}).get("llm_config", {}).get("model"),
                      exit_status="error" if doc.get("error") else "finished",
                      tokens_sent=usage.get("prompt_tokens"), tokens_received=usage.get("completion_tokens"))


def parse_trajectory(doc: Any, source: str) -> Trajectory:
    """One agent output document -> a ``Trajectory`` (``ValueError`` when it is none of the formats)."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if "instance_id" in doc and "history" in doc and ("test_result" in doc or "instruction" in doc):
        traj = _from_openhands(doc, source)
    elif isinstance(doc.get("history"), list) or isinstance(doc.get("messages"), list):
        traj = _from_swe_agent(doc, source)
    else:
        raise ValueError("neither SWE-agent (history/messages + info) nor OpenHands (instance_id + history) output")
    if not traj.messages:
        raise ValueError("the trajectory has no messages")
    key = json.dumps([traj.instance_id, traj.patch, [m["content"] for m in traj.messages]])
    traj.trajectory_id = f"{traj.instance_id}#{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    return traj


def read_trajectories(files: list[str]) -> ReadResult:
    """Every trajectory in ``files``; unreadable files or lines quarantined with the reason."""
    result = ReadResult()

    def add(doc: Any, source: str) -> None:
        try:
            result.trajectories.append(parse_trajectory(doc, source))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            result.quarantined.append({"source": source, "reason": "unrecognised_trajectory",
                                       "detail": f"{type(e).__name__}: {e}"[:500]})

    for f in files:
        try:
            text = Path(f).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            result.quarantined.append({"source": f, "reason": "unreadable", "detail": str(e)[:500]})
            continue
        try:                        # one JSON document (SWE-agent, mini-SWE-agent) ...
            doc = None if f.endswith(".jsonl") else json.loads(text)
        except json.JSONDecodeError as e:
            if "\n{" not in text.strip():   # not JSON Lines either
                result.quarantined.append({"source": f, "reason": "bad_json",
                                           "detail": f"{e.msg} at line {e.lineno}"})
                continue
            doc = None
        if doc is not None:
            add(doc, f)
            continue
        for n, line in enumerate(text.splitlines(), 1):   # ... or JSON Lines (OpenHands output.jsonl)
            if not line.strip():
                continue
            try:
                line_doc = json.loads(line)
            except json.JSONDecodeError as e:
                result.quarantined.append({"source": f"{f}:{n}", "reason": "bad_json", "detail": e.msg})
                continue
            add(line_doc, f"{f}:{n}")
    return result




def as_patches(trajectories: list[Trajectory]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(patch records for ``patches.check_patches``, rejections of duplicates and empty patches).
    A trajectory whose content repeats an earlier one is checked once."""
    seen: set[str] = set()
    patches, rejected = [], []
    for t in trajectories:
        if t.trajectory_id in seen:
            rejected.append(_rejection(t, "duplicate_trajectory", "the same instance, patch and messages as an "
                                                                  "earlier trajectory"))
        elif not t.patch.strip():
            rejected.append(_rejection(t, "no_patch", f"the agent submitted no patch (exit status {t.exit_status})"))
        else:
            patches.append({"patch_id": t.trajectory_id, "instance_id": t.instance_id, "model": t.model,
                            "patch": t.patch})
        seen.add(t.trajectory_id)
    return patches, rejected


def _rejection(t: Trajectory, reason: str, detail: str | None) -> dict[str, Any]:
    return {"trajectory_id": t.trajectory_id, "instance_id": t.instance_id, "source": t.source, "reason": reason,
            "detail": detail}


def count_tokens(tokenizer: Any, messages: list[dict[str, Any]]) -> int:
    """Tokens of the conversation's text (contents and tool-call arguments), without a template."""
    texts = [m["content"] for m in messages] + [c["function"]["arguments"] for m in messages
                                                for c in m.get("tool_calls") or []]
    return sum(len(ids) for ids in tokenizer([t for t in texts if t], add_special_tokens=False)["input_ids"])


def trajectory_rows(trajectories: list[Trajectory], results: dict[str, dict[str, Any]],
                    tokenizer: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(``swe/trajectories`` rows of the resolved ones, rejections of the rest) given the patch
    check results by ``trajectory_id``. Every trajectory lands in exactly one of them."""
    kept, rejected, seen = [], [], set()
    for t in trajectories:
        if t.trajectory_id in seen:
            continue
        seen.add(t.trajectory_id)
        r = results.get(t.trajectory_id)
        if r is None:
            continue            # rejected by ``as_patches`` (no patch)
        if not r["resolved"]:
            detail = ", ".join(r["failing_tests"][:10]) or None
            rejected.append(_rejection(t, f"not_resolved:{r['reason']}", detail))
            continue
        kept.append({"trajectory_id": t.trajectory_id, "instance_id": t.instance_id, "format": t.format,
                     "source": t.source, "model": t.model, "exit_status": t.exit_status, "messages": t.messages,
                     "patch": t.patch, "turns": sum(m["role"] == "assistant" for m in t.messages),
                     "tokens": count_tokens(tokenizer, t.messages) if tokenizer is not None else None,
                     "tokens_sent": t.tokens_sent, "tokens_received": t.tokens_received,
                     "f2p_total": r["f2p_total"], "p2p_total": r["p2p_total"]})
    return kept, rejected
