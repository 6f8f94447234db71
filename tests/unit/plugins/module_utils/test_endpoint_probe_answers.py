# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endpoint probe's requests and answer checks: /v1/models, a chat completion, a tool call.

Tool calls are shaped as the minimax_m2 parser of vLLM 0.11+ returns them.
"""

from __future__ import annotations

from typing import Any, Dict

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.endpoint_probe import (
    DEFAULT_PROMPT,
    WEATHER_TOOL,
    ProbeError,
    chat_body,
    check_chat,
    check_models,
    check_tool_call,
    tool_call_body,
)
from tests.unit.plugins.module_utils.endpoint_probe_helpers import (
    AUTO_TOOL_ERROR,
    CHAT_URL,
    ENGINE_ERROR,
    MODEL,
    MODELS_URL,
    UNAUTHORIZED,
    chat_answer,
    dumps,
)

MODELS = {
    "object": "list",
    "data": [
        {
            "id": MODEL,
            "object": "model",
            "created": 1761900000,
            "owned_by": "vllm",
            "root": "/root/.cache/MiniMax-M2.7-w8a8-QuaRot",
            "parent": None,
            "max_model_len": 196608,
            "permission": [{"id": "modelperm-5f0c", "object": "model_permission", "allow_sampling": True}],
        }
    ],
}


def weather_call(arguments: Any = '{"city": "上海"}', name: str = "get_current_weather") -> Dict[str, Any]:
    return {
        "id": "chatcmpl-tool-6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def tool_answer(**kwargs: Any) -> Dict[str, Any]:
    kwargs.setdefault("tool_calls", [weather_call()])
    kwargs.setdefault("content", None)
    kwargs.setdefault("reasoning", "The user wants the weather in Shanghai. I will call get_current_weather.")
    kwargs.setdefault("finish_reason", "tool_calls")
    return chat_answer(**kwargs)


# -- /v1/models -----------------------------------------------------------------------------------


def test_models_lists_the_served_names() -> None:
    assert check_models(MODELS_URL, 200, dumps(MODELS), MODEL) == [MODEL]
    two = {"object": "list", "data": [*MODELS["data"], {**MODELS["data"][0], "id": "minimax"}]}
    assert check_models(MODELS_URL, 200, dumps(two), "minimax") == [MODEL, "minimax"]


def test_models_says_what_is_served() -> None:
    with pytest.raises(ProbeError) as exc:
        check_models(MODELS_URL, 200, dumps(MODELS), "MiniMax-M2.5")
    assert exc.value.step == "models"
    assert str(exc.value).startswith(
        f"models: GET {MODELS_URL}: 'MiniMax-M2.5' is not served; the server serves ['MiniMax-M2.7'] "
    )
    assert ' - response: {"object": "list", "data": [{"id": "MiniMax-M2.7"' in str(exc.value)


def test_models_401_asks_for_the_api_key() -> None:
    with pytest.raises(ProbeError) as exc:
        check_models(MODELS_URL, 401, dumps(UNAUTHORIZED), MODEL)
    assert str(exc.value) == (
        f"models: GET {MODELS_URL}: HTTP 401 (the server wants an API key (it runs with --api-key): set api_key)"
        ' - response: {"error": "Unauthorized"}'
    )
    assert exc.value.status == 401


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"<html>gateway</html>", "the answer is not JSON"),
        (b'{"object": "list"}', "no 'data' list"),
        (b'{"data": [{"name": "x"}]}', "no 'data' list"),
        (b"[]", "no 'data' list"),
    ],
)
def test_models_malformed(raw: bytes, problem: str) -> None:
    with pytest.raises(ProbeError, match=problem):
        check_models(MODELS_URL, 200, raw, MODEL)


# -- chat ---------------------------------------------------------------------------------------


def test_chat_body_is_the_guides_curl() -> None:
    assert chat_body(MODEL, DEFAULT_PROMPT, 200) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello, who are you?"}],
        "stream": False,
        "max_tokens": 200,
    }
    assert chat_body(MODEL, "hi", 16, stream=True)["stream_options"] == {"include_usage": True}


def test_chat_with_content_and_reasoning() -> None:
    assert check_chat(CHAT_URL, 200, dumps(chat_answer())) == {
        "completion_tokens": 42,
        "finish_reason": "stop",
        "content_excerpt": "\n\nI am MiniMax-M2, an AI assistant.",
    }


def test_chat_append_think_content_is_cut_for_the_excerpt() -> None:
    content = "<think>" + "t" * 300 + "</think>\n\nHello"
    result = check_chat(CHAT_URL, 200, dumps(chat_answer(content=content, reasoning=None)))
    assert result["content_excerpt"] == content[:200] + "..."


@pytest.mark.parametrize("key", ["reasoning", "reasoning_content"])
def test_chat_cut_while_thinking_passes_on_reasoning(key: str) -> None:
    answer = chat_answer(content=None, reasoning="The user asks", reasoning_key=key, finish_reason="length")
    result = check_chat(CHAT_URL, 200, dumps(answer))
    assert result == {"completion_tokens": 42, "finish_reason": "length", "content_excerpt": "The user asks"}


def test_chat_without_usage() -> None:
    answer = chat_answer()
    del answer["usage"]
    assert check_chat(CHAT_URL, 200, dumps(answer))["completion_tokens"] is None


@pytest.mark.parametrize(
    ("status", "raw", "problem"),
    [
        (200, dumps(chat_answer(content="", reasoning=None)), "empty reply: no content and no reasoning"),
        (200, dumps(chat_answer(content="  \n", reasoning="")), "empty reply"),
        (200, b'{"object":"chat.completion","choices":[]}', "no 'choices'"),
        (200, b'{"choices":[{"index":0}]}', r"no 'choices\[0\].message'"),
        (200, b"Internal Server Error", "not JSON"),
        (500, dumps(ENGINE_ERROR), "HTTP 500"),
        (404, b'{"error":{"message":"The model `x` does not exist.","code":404}}', "--served-model-name"),
    ],
)
def test_chat_failures(status: int, raw: bytes, problem: str) -> None:
    with pytest.raises(ProbeError, match=problem) as exc:
        check_chat(CHAT_URL, status, raw)
    assert str(exc.value).startswith(f"chat: POST {CHAT_URL}: ")
    assert " - response: " in str(exc.value)


# -- tool call ------------------------------------------------------------------------------------


def test_tool_call_body_is_the_guides_request() -> None:
    assert tool_call_body(MODEL) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "请查询上海的天气。"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "temperature": 0,
        "max_tokens": 512,
    }
    assert WEATHER_TOOL["function"]["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    }


def test_tool_call_passes() -> None:
    assert check_tool_call(CHAT_URL, 200, dumps(tool_answer())) == {
        "name": "get_current_weather",
        "arguments": {"city": "上海"},
        "finish_reason": "tool_calls",
    }
    answer = tool_answer(tool_calls=[weather_call('{"city": "Shanghai", "unit": "celsius"}')], content="<think>..")
    assert check_tool_call(CHAT_URL, 200, dumps(answer))["arguments"] == {"city": "Shanghai", "unit": "celsius"}


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (tool_answer(tool_calls=[], content="上海今天晴。", finish_reason="stop"), "the model answered in text"),
        (tool_answer(tool_calls=[], finish_reason="length"), "cut at tool_call_max_tokens"),
        (tool_answer(tool_calls=[weather_call(name="get_weather")]), "calls 'get_weather', not 'get_current_weather'"),
        (tool_answer(tool_calls=[weather_call({"city": "上海"})]), "arguments is dict, not a JSON string"),
        (tool_answer(tool_calls=[weather_call('{"city": "上海"')]), "arguments is not JSON"),
        (tool_answer(tool_calls=[weather_call('["上海"]')]), "not a JSON object"),
        (tool_answer(tool_calls=[weather_call('{"unit": "celsius"}')]), "has no 'city' string"),
        (tool_answer(tool_calls=[weather_call('{"city": ""}')]), "has no 'city' string"),
        (tool_answer(tool_calls=[{"id": "x", "type": "function"}]), "has no 'function'"),
    ],
)
def test_tool_call_failures(answer: Dict[str, Any], problem: str) -> None:
    with pytest.raises(ProbeError) as exc:
        check_tool_call(CHAT_URL, 200, dumps(answer))
    assert exc.value.step == "tool_call"
    assert problem in str(exc.value)
    assert str(exc.value).startswith(f"tool_call: POST {CHAT_URL}: ")


def test_tool_call_without_the_server_flags() -> None:
    with pytest.raises(ProbeError) as exc:
        check_tool_call(CHAT_URL, 400, dumps(AUTO_TOOL_ERROR))
    assert "HTTP 400 (the server runs without tool calling: start vLLM with --enable-auto-tool-choice" in str(exc.value)
    assert exc.value.status == 400
