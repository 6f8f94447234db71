"""The ``minimax_m2`` tool-call parser and the MiniMax reasoning parsers (own implementation).

Behaviour follows vLLM's parsers for MiniMax-M2 (read, not copied):

Tool calls (``--tool-call-parser minimax_m2``): the model writes
``<minimax:tool_call>`` blocks holding ``<invoke name="f">`` elements with
``<parameter name="p">value</parameter>`` children. Each invoke becomes an OpenAI tool call
``{"id": "call_<24 hex>", "type": "function", "function": {"name", "arguments"}}`` where
``arguments`` is a JSON string whose values are converted by the tool's JSON schema: the
parameter's types come from ``type`` (a string or a list), ``enum`` values, and
``anyOf``/``oneOf``/``allOf``; they are tried in the order integer, number, boolean, object,
array, string; ``null``/``none``/``nil`` is None; an unconvertible value stays a string.
The message content is the text before the first block (None when there is none).

Reasoning: MiniMax-M2 never writes ``<think>`` (the chat template opens it); its raw output is
``reasoning </think> answer``.

- ``minimax_m2``: everything before ``</think>`` is ``message.reasoning``, the rest content.
  (vLLM >= 0.16 returns ``reasoning``; the old ``reasoning_content`` field is gone.)
- ``minimax_m2_append_think``: no split; content is ``"<think>" + raw output``.
- no parser: the raw output is the content, ``</think>`` and all.
Other registered reasoning parsers split at ``</think>`` like ``minimax_m2``; other tool-call
parsers do not understand MiniMax's XML, so tool calls stay text -- as with a wrong parser
on a real server.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

TOOL_START = "<minimax:tool_call>"
TOOL_END = "</minimax:tool_call>"
THINK_START = "<think>"
THINK_END = "</think>"

_BLOCK_RE = re.compile(r"<minimax:tool_call>(.*?)</minimax:tool_call>", re.DOTALL)
_INVOKE_RE = re.compile(r"<invoke name=(.*?)</invoke>", re.DOTALL)
_PARAM_RE = re.compile(r"<parameter name=(.*?)</parameter>", re.DOTALL)
_NAME_RE = re.compile(r"<invoke name=[\"']([^\"']+)[\"']>")
_FULL_PARAM_RE = re.compile(r"<parameter name=[\"']([^\"']+)[\"']>(.*?)</parameter>", re.DOTALL)

_TYPE_ORDER = ("integer", "int", "number", "float", "boolean", "bool", "object", "array", "string", "str", "text")


def tool_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


# ---------------------------------------------------------------------------------------------
# Value conversion by JSON schema


def _schema_types(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return ["string"]
    types: set[str] = set()
    declared = schema.get("type")
    if isinstance(declared, str):
        types.add(declared)
    elif isinstance(declared, list):
        types.update(t for t in declared if isinstance(t, str))
    enum = schema.get("enum")
    if isinstance(enum, list):
        for value in enum:
            if value is None:
                types.add("null")
            elif isinstance(value, bool):
                types.add("boolean")
            elif isinstance(value, int):
                types.add("integer")
            elif isinstance(value, float):
                types.add("number")
            elif isinstance(value, str):
                types.add("string")
            elif isinstance(value, list):
                types.add("array")
            elif isinstance(value, dict):
                types.add("object")
    for key in ("anyOf", "oneOf", "allOf"):
        for choice in schema.get(key) or []:
            types.update(_schema_types(choice))
    return sorted(types) or ["string"]


def convert_value(value: str, types: list[str]) -> Any:
    """A parameter's text as the first of its schema types it parses as."""
    if value.lower() in ("null", "none", "nil"):
        return None
    wanted = {t.lower() for t in types}
    for kind in _TYPE_ORDER:
        if kind not in wanted:
            continue
        if kind in ("string", "str", "text"):
            return value
        if kind in ("integer", "int"):
            try:
                return int(value)
            except ValueError:
                continue
        if kind in ("number", "float"):
            try:
                number = float(value)
            except ValueError:
                continue
            return int(number) if number.is_integer() else number
        if kind in ("boolean", "bool"):
            lowered = value.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            continue
        if kind in ("object", "array"):
            try:
                return json.loads(value)
            except ValueError:
                continue
    try:
        return json.loads(value)
    except ValueError:
        return value


def _properties(tools: list[dict[str, Any]] | None, name: str) -> dict[str, Any]:
    for tool in tools or []:
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        if fn.get("name") == name:
            params = fn.get("parameters") or {}
            props = params.get("properties") if isinstance(params, dict) else None
            return props if isinstance(props, dict) else {}
    return {}


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _trim_value(value: str) -> str:
    value = value.strip()
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


# ---------------------------------------------------------------------------------------------
# Non-streaming


def extract_tool_calls(text: str, tools: list[dict[str, Any]] | None) -> tuple[str | None, list[dict[str, Any]]]:
    """``(content, tool_calls)`` of a complete model output."""
    if TOOL_START not in text:
        return text, []
    calls: list[dict[str, Any]] = []
    for block in _BLOCK_RE.findall(text):
        for invoke in _INVOKE_RE.findall(block):
            head = re.match(r"([^>]+)>", invoke)
            if not head:
                continue
            name = _unquote(head.group(1))
            props = _properties(tools, name)
            args: dict[str, Any] = {}
            for param in _PARAM_RE.findall(invoke):
                match = re.match(r"([^>]+)>(.*)", param, re.DOTALL)
                if not match:
                    continue
                key = _unquote(match.group(1))
                args[key] = convert_value(_trim_value(match.group(2)), _schema_types(props.get(key)))
            calls.append(
                {
                    "id": tool_call_id(),
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
                }
            )
    if not calls:
        return text, []
    content = text[: text.find(TOOL_START)]
    return (content if content.strip() else None), calls


# ---------------------------------------------------------------------------------------------
# Streaming


class ToolCallStreamer:
    """Turns streamed content into content deltas and OpenAI ``tool_calls`` deltas.

    ``feed(text)`` returns ``[("content", str) | ("tool_call", delta_dict)]``. A tool call
    starts with a delta carrying ``index``, ``id``, ``type`` and ``function.name`` (arguments
    ``""``); each completed parameter then adds an ``arguments`` fragment, and the closing
    ``</invoke>`` adds ``}`` -- the fragments concatenate to the same JSON string the
    non-streaming parser returns.
    """

    def __init__(self, tools: list[dict[str, Any]] | None) -> None:
        self.tools = tools
        self.in_tool = False
        self.buffer = ""
        self.index = 0  # tool call index of the invoke being built
        self.header_sent = False
        self.params_sent = 0
        self.called = False

    def feed(self, text: str) -> list[tuple[str, Any]]:
        events: list[tuple[str, Any]] = []
        if not self.in_tool:
            if TOOL_START not in text:
                return [("content", text)] if text else []
            before, _, rest = text.partition(TOOL_START)
            if before:
                events.append(("content", before))
            self.in_tool = True
            self.buffer = TOOL_START
            text = rest
        self.buffer += text
        events.extend(self._tool_events())
        return events

    def _tool_events(self) -> list[tuple[str, Any]]:
        events: list[tuple[str, Any]] = []
        starts = [m.start() for m in re.finditer(r"<invoke name=", self.buffer)]
        while self.index < len(starts):
            start = starts[self.index]
            end = self.buffer.find("</invoke>", start)
            segment = self.buffer[start : end + len("</invoke>")] if end >= 0 else self.buffer[start:]
            name_match = _NAME_RE.match(segment)
            if not name_match:
                break
            name = name_match.group(1).strip()
            props = _properties(self.tools, name)
            params = [
                (
                    m.group(1).strip(),
                    convert_value(_trim_value(m.group(2)), _schema_types(props.get(m.group(1).strip()))),
                )
                for m in _FULL_PARAM_RE.finditer(segment)
            ]
            fragment = ""
            for j in range(self.params_sent, len(params)):
                body = json.dumps(dict([params[j]]), ensure_ascii=False)[1:-1]
                fragment += ("{" if j == 0 else ", ") + body
            self.params_sent = len(params)
            if end >= 0:
                fragment += "{}" if not params else "}"
            if not self.header_sent:
                self.header_sent = True
                self.called = True
                events.append(
                    (
                        "tool_call",
                        {
                            "index": self.index,
                            "id": tool_call_id(),
                            "type": "function",
                            "function": {"name": name, "arguments": fragment},
                        },
                    )
                )
            elif fragment:
                events.append(("tool_call", {"index": self.index, "function": {"arguments": fragment}}))
            if end < 0:
                break
            self.index += 1
            self.header_sent = False
            self.params_sent = 0
        return events


# ---------------------------------------------------------------------------------------------
# Reasoning


def split_reasoning(text: str, parser: str | None) -> tuple[str | None, str | None]:
    """``(reasoning, content)`` of a complete output under ``--reasoning-parser``."""
    if not parser:
        return None, text
    if parser == "minimax_m2_append_think":
        return None, THINK_START + text
    if THINK_END not in text:
        # The output ended inside the reasoning (e.g. max_tokens): all of it is reasoning.
        return (text or None), None
    reasoning, _, content = text.partition(THINK_END)
    reasoning = reasoning.removeprefix(THINK_START)
    return (reasoning or None), (content or None)


class ReasoningStreamer:
    """Per-token split for streaming: ``feed(token) -> (reasoning_delta, content_delta)``."""

    def __init__(self, parser: str | None) -> None:
        self.parser = parser
        self.first = True
        self.done = parser is None or parser == "minimax_m2_append_think"

    def feed(self, token: str) -> tuple[str | None, str | None]:
        first, self.first = self.first, False
        if self.parser == "minimax_m2_append_think":
            return None, (THINK_START + token) if first else token
        if self.done:
            return None, token
        if THINK_END in token:
            self.done = True
            before, _, after = token.partition(THINK_END)
            return (before or None), (after or None)
        if first and token == THINK_START:
            return None, None
        return token, None
