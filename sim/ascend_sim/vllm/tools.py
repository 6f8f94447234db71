"""When the fake model calls a tool, with which arguments, and the MiniMax XML it writes.

The trigger rule (documented so tests and demos can rely on it):

1. ``tool_choice: "none"`` (or no tools): never. A named ``tool_choice`` calls that tool;
   ``"required"`` calls the best-matching tool, else the first one.
2. ``"auto"``: only when the conversation's last message is the user's (after a tool result
   the model answers in text). Each tool is scored against that message: +10 if its name
   appears (``get_current_weather`` or ``get current weather``), +1 per keyword found --
   keywords are the words of the function name and description (three letters or more, not
   in ``_STOPWORDS``). Chinese words in the message are first mapped to English keywords by
   ``_ZH_KEYWORDS`` (``天气`` -> ``weather``). The best tool with a score above zero is called;
   none -> a plain text answer.
3. Arguments: the tool's ``required`` parameters (all properties if it lists none). An enum
   takes the first of its values the message mentions (else its first value); integers and
   numbers the first number in the message (else 1); booleans ``true``; arrays a one-element
   list of the message; objects ``{}``; strings named like a place (city, location, ...) the
   first place from ``_PLACES`` in the message (else ``in <Capitalized Words>``, else the
   message), any other string the message itself.

So the MiniMax guide's ``请查询上海的天气。`` with ``get_current_weather`` ("Get weather by
city", required ``city``) yields ``get_current_weather(city="上海")``.
"""

from __future__ import annotations

import json
import re
from typing import Any

_STOPWORDS = {
    "get", "set", "the", "and", "for", "with", "from", "this", "that", "current", "given", "function",
    "tool", "use", "using", "list", "data", "info", "information", "value", "name", "user", "by",
    "are", "you", "can", "into", "about", "specific", "specified", "return", "returns", "call",
}  # fmt: skip

_ZH_KEYWORDS = {
    "天气": "weather", "气温": "temperature", "温度": "temperature", "下雨": "weather", "搜索": "search",
    "查找": "search", "时间": "time", "日期": "date", "新闻": "news", "股票": "stock", "股价": "stock",
    "汇率": "exchange", "翻译": "translate", "计算": "calculate", "邮件": "email", "日历": "calendar",
    "地图": "map", "航班": "flight", "酒店": "hotel", "文件": "file", "代码": "code", "网页": "web",
}  # fmt: skip

_PLACES = (
    "上海", "北京", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "重庆", "天津", "苏州", "香港",
    "San Francisco", "New York", "Los Angeles", "London", "Paris", "Tokyo", "Berlin", "Beijing",
    "Shanghai", "Shenzhen", "Hangzhou", "Singapore", "Seattle", "Boston", "Sydney",
)  # fmt: skip

_PLACE_PARAMS = ("city", "location", "place", "region", "address", "country", "destination", "origin", "area", "town")


def _keywords(tool: dict[str, Any]) -> set[str]:
    fn = tool.get("function", tool)
    text = f"{fn.get('name', '')} {fn.get('description', '') or ''}"
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ").replace("-", " ")
    return {w for w in re.findall(r"[a-zA-Z]{3,}", text.lower()) if w not in _STOPWORDS}


def _message_terms(text: str) -> str:
    extra = [en for zh, en in _ZH_KEYWORDS.items() if zh in text]
    return (text + " " + " ".join(extra)).lower()


def _score(tool: dict[str, Any], text: str) -> int:
    fn = tool.get("function", tool)
    name = str(fn.get("name", ""))
    lowered = text.lower()
    score = 0
    if name and (name.lower() in lowered or name.replace("_", " ").lower() in lowered):
        score += 10
    terms = _message_terms(text)
    for word in _keywords(tool):
        if re.search(rf"\b{re.escape(word)}", terms):
            score += 1
    return score


def _tool_named(tools: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for tool in tools:
        if tool.get("function", tool).get("name") == name:
            return tool
    return None


def choose_tool(
    tools: list[dict[str, Any]] | None, tool_choice: Any, messages: list[dict[str, Any]], last_user: str
) -> dict[str, Any] | None:
    """The tool the fake model calls for this request, or None (rule: module docstring)."""
    if not tools or tool_choice == "none":
        return None
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        return _tool_named(tools, name) if name else None
    if not messages or messages[-1].get("role") != "user":
        return None if tool_choice != "required" else tools[0]
    scored = [(_score(t, last_user), i, t) for i, t in enumerate(tools)]
    best = max(scored, key=lambda s: (s[0], -s[1]))
    if best[0] > 0:
        return best[2]
    return tools[0] if tool_choice == "required" else None


# ---------------------------------------------------------------------------------------------
# Arguments


def _place(text: str) -> str:
    for place in sorted(_PLACES, key=len, reverse=True):
        if place.lower() in text.lower():
            return place
    match = re.search(r"\b(?:in|at|for|of)\s+([A-Z][\w'.-]*(?:\s+[A-Z][\w'.-]*)*)", text)
    if match:
        return match.group(1)
    return _plain(text)


def _plain(text: str) -> str:
    return text.strip().rstrip(".!?\u3002\uff01\uff1f")  # ASCII and CJK sentence ends


def _value(name: str, schema: dict[str, Any], text: str) -> Any:
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        for option in enum:
            if str(option).lower() in text.lower():
                return option
        return enum[0]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind in ("integer", "number"):
        match = re.search(r"-?\d+(?:\.\d+)?", text)
        if not match:
            return 1
        number = float(match.group(0))
        return int(number) if kind == "integer" or number.is_integer() else number
    if kind == "boolean":
        return True
    if kind == "array":
        return [_plain(text)]
    if kind == "object":
        return {}
    if any(p in name.lower() for p in _PLACE_PARAMS):
        return _place(text)
    return _plain(text)


def arguments(tool: dict[str, Any], text: str) -> dict[str, Any]:
    """The arguments the fake model fills in for ``tool`` from the user's ``text``."""
    params = tool.get("function", tool).get("parameters") or {}
    props = params.get("properties") or {}
    wanted = params.get("required") or list(props)
    return {name: _value(name, props.get(name) or {}, text) for name in wanted}


# ---------------------------------------------------------------------------------------------
# MiniMax-M2's tool-call syntax


def _xml_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def minimax_xml(calls: list[tuple[str, dict[str, Any]]]) -> str:
    """``<minimax:tool_call>`` block for ``[(function name, arguments)]``, as MiniMax-M2 writes it."""
    lines = ["<minimax:tool_call>"]
    for name, args in calls:
        lines.append(f'<invoke name="{name}">')
        lines.extend(f'<parameter name="{key}">{_xml_value(val)}</parameter>' for key, val in args.items())
        lines.append("</invoke>")
    lines.append("</minimax:tool_call>")
    return "\n".join(lines)
