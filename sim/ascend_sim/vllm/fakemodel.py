"""What the fake MiniMax-M2 writes for a request: a deterministic list of output tokens.

- Completions (raw prompt): answer words only.
- Chat: MiniMax-M2 always thinks first, so the raw output is
  ``<reasoning tokens>\\n</think>\\n\\n<answer>``; the answer is either text or, when the
  tool rule of ``tools.py`` fires, a ``<minimax:tool_call>`` block (the model's natural end
  comes right after it).
- ``tool_choice: "required"`` or a named tool: vLLM forces the output with structured
  outputs (JSON), not the tool parser; the plan carries the call and the JSON text.

Everything depends only on the prompt, so any instance (single node, prefill, decode) writes
the same text for the same request. ``limit()`` applies ``max_tokens``, ``min_tokens`` and
``ignore_eos``: past its natural end the model keeps writing words (as a real model ignoring
EOS does); ``apply_stop()`` then cuts the output at the request's ``stop`` strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from ascend_sim.vllm import tokens, tools

# Sentence-final punctuation, ASCII and CJK (full-width "!" and "?").
END_PUNCTUATION = ".!?\u3002\uff01\uff1f"


@dataclass
class Plan:
    """The natural (untruncated) output of one request."""

    tokens: list[str]
    seed: bytes
    # "required"/"named": the call forced by structured outputs, as (name, arguments).
    forced_call: tuple[str, dict[str, Any]] | None = None
    forced_kind: str | None = None
    called_tool: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _answer(seed: bytes) -> list[str]:
    return ["Simulated", " reply", ":", *islice(tokens.words(seed), tokens.natural_length(seed))]


def completion_plan(prompt: str) -> Plan:
    seed = tokens.digest(prompt)
    return Plan(tokens=list(islice(tokens.words(seed), tokens.natural_length(seed))), seed=seed)


def _reasoning(last_user: str, tool_name: str | None) -> list[str]:
    snippet = "".join(tokens.tokenize(last_user.strip())[:12]).strip().rstrip(END_PUNCTUATION) or "nothing"
    plan = f" I will call {tool_name}." if tool_name else " I will answer briefly."
    return [*tokens.tokenize(f"The user wrote: {snippet}.{plan}"), "\n", tokens.SPECIAL_TOKENS[3], "\n\n"]


def chat_plan(
    prompt: str, messages: list[dict[str, Any]], tool_list: list[dict[str, Any]] | None, tool_choice: Any
) -> Plan:
    seed = tokens.digest(prompt)
    last_user = ""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            last_user = tokens.message_text(msg.get("content"))
            break
    tool = tools.choose_tool(tool_list, tool_choice, messages, last_user)
    if tool is not None:
        name = str(tool.get("function", tool).get("name", ""))
        args = tools.arguments(tool, last_user)
        if tool_choice == "required" or isinstance(tool_choice, dict):
            kind = "required" if tool_choice == "required" else "named"
            text = json.dumps([{"name": name, "parameters": args}] if kind == "required" else args, ensure_ascii=False)
            return Plan(
                tokens=tokens.tokenize(text), seed=seed, forced_call=(name, args), forced_kind=kind, called_tool=name
            )
        xml = tools.minimax_xml([(name, args)])
        return Plan(tokens=_reasoning(last_user, name) + tokens.tokenize(xml), seed=seed, called_tool=name)
    return Plan(tokens=_reasoning(last_user, None) + _answer(seed), seed=seed)


def limit(plan: Plan, max_tokens: int, *, min_tokens: int = 0, ignore_eos: bool = False) -> tuple[list[str], str]:
    """``(output tokens, finish_reason)`` under the request's length controls."""
    out = list(plan.tokens)
    want = max_tokens if ignore_eos else max(min_tokens, len(out))
    if len(out) < want and plan.forced_call is None:
        out.extend(islice(tokens.words(plan.seed, start=len(out)), want - len(out)))
    if len(out) > max_tokens:
        return out[:max_tokens], "length"
    return out, "length" if ignore_eos and len(out) == max_tokens else "stop"


def apply_stop(out: list[str], finish: str, stop: Any) -> tuple[list[str], str, str | None]:
    """Cut the output at the first ``stop`` string (it is not included), as vLLM does."""
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str) and s]
    if not stops:
        return out, finish, None
    text = "".join(out)
    hits = [(text.find(s), s) for s in stops if s in text]
    if not hits:
        return out, finish, None
    cut, which = min(hits)
    kept: list[str] = []
    length = 0
    for token in out:
        if length + len(token) >= cut:
            if cut > length:
                kept.append(token[: cut - length])
            break
        kept.append(token)
        length += len(token)
    return kept, "stop", which
