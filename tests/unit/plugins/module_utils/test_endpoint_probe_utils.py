# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endpoint probe's request bodies, answer checks, SSE parser, stream measurements and health wait.

The answers are shaped as vLLM 0.11+ (vLLM-Ascend) sends them: chat completions with
``reasoning`` or ``reasoning_content``, tool calls from the minimax_m2 parser, SSE streams
with a role chunk, token chunks, a usage chunk and ``data: [DONE]``, error events as
``data: {"error": {...}}``.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
from typing import Any, Dict, List, Optional, Tuple

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.endpoint_probe import (
    DEFAULT_PROMPT,
    WEATHER_TOOL,
    ProbeError,
    StreamProbe,
    chat_body,
    check_chat,
    check_models,
    check_tool_call,
    describe_error,
    error_message,
    excerpt,
    health_outcome,
    http_failure,
    http_hint,
    normalize_base_url,
    tool_call_body,
    wait_healthy,
)
from ansible_collections.ascend.vllm.plugins.module_utils.sse import SSEEvent, SSEParser

BASE = "http://10.0.0.1:8000"
CHAT_URL = BASE + "/v1/chat/completions"
MODELS_URL = BASE + "/v1/models"
MODEL = "MiniMax-M2.7"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


# -- realistic vLLM answers ----------------------------------------------------------------------

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


def chat_answer(
    content: Optional[str] = "\n\nI am MiniMax-M2, an AI assistant.",
    reasoning: Optional[str] = "The user asks who I am.",
    tool_calls: Optional[List[Dict[str, Any]]] = None,
    finish_reason: str = "stop",
    reasoning_key: str = "reasoning",
    completion_tokens: int = 42,
) -> Dict[str, Any]:
    message = {
        "role": "assistant",
        "content": content,
        "refusal": None,
        "annotations": None,
        "audio": None,
        "function_call": None,
        "tool_calls": tool_calls or [],
        reasoning_key: reasoning,
    }
    return {
        "id": "chatcmpl-3f1e0c2a9b8d4e67a1c2d3e4f5a6b7c8",
        "object": "chat.completion",
        "created": 1761900123,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
                "token_ids": None,
            }
        ],
        "service_tier": None,
        "system_fingerprint": None,
        "usage": {
            "prompt_tokens": 41,
            "total_tokens": 41 + completion_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": None,
        },
        "prompt_logprobs": None,
        "prompt_token_ids": None,
        "kv_transfer_params": None,
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


AUTO_TOOL_ERROR = {
    "error": {
        "message": '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
}
UNAUTHORIZED = {"error": "Unauthorized"}


def chunk(delta: Dict[str, Any], finish: Optional[str] = None) -> Dict[str, Any]:
    return {
        "id": "chatcmpl-9c8b7a",
        "object": "chat.completion.chunk",
        "created": 1761900200,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def sse(*payloads: Any) -> bytes:
    """An SSE body as vLLM writes it: ``data: <compact JSON>\\n\\n`` per event."""
    out = b""
    for payload in payloads:
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        out += f"data: {text}\n\n".encode()
    return out


ROLE = chunk({"role": "assistant", "content": ""})
USAGE = {
    "id": "chatcmpl-9c8b7a",
    "object": "chat.completion.chunk",
    "created": 1761900200,
    "model": MODEL,
    "choices": [],
    "usage": {"prompt_tokens": 41, "total_tokens": 46, "completion_tokens": 5},
}
STREAM_EVENTS = [
    ROLE,
    chunk({"reasoning": "The"}),
    chunk({"reasoning": " user"}),
    chunk({"content": "\n\n你好"}),
    chunk({"content": "!"}),
    chunk({"content": ""}, finish="stop"),
    USAGE,
    "[DONE]",
]
STREAM = sse(*STREAM_EVENTS)
ENGINE_ERROR = {
    "error": {
        "message": "EngineCore encountered an issue. See stack trace (above) for the root cause.",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }
}


# -- URL, excerpts, hints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://10.0.0.1:8000", BASE),
        ("http://10.0.0.1:8000/", BASE),
        ("http://10.0.0.1:8000/v1", BASE),
        (" http://10.0.0.1:8000/v1/ ", BASE),
        ("https://gw.example.com/minimax/", "https://gw.example.com/minimax"),
        ("https://gw.example.com/minimax/v1", "https://gw.example.com/minimax"),
        ("http://[fd00::1]:8000", "http://[fd00::1]:8000"),
    ],
)
def test_normalize_base_url(url: str, base: str) -> None:
    assert normalize_base_url(url) == base


@pytest.mark.parametrize("url", ["10.0.0.1:8000", "ftp://h/", "http://", "", "http://h:8000/?a=1", "http://h/#x"])
def test_normalize_base_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match="url must"):
        normalize_base_url(url)


def test_excerpt() -> None:
    assert excerpt(b"") == "(empty)"
    assert excerpt(None) == "(empty)"
    assert excerpt(b'{"a":\n1}') == '{"a":\\n1}'
    assert excerpt("上海".encode()) == "上海"
    assert excerpt(b"\xff") == "\ufffd"
    long = "x" * 250 + "y" * 100
    assert excerpt(long) == "x" * 250 + "y" * 50 + "... [50 more characters]"
    assert excerpt(long, tail=True) == "[50 characters before] ..." + "x" * 200 + "y" * 100


def test_error_message() -> None:
    assert error_message(dumps(AUTO_TOOL_ERROR)).startswith('"auto" tool choice requires')
    assert error_message(dumps(UNAUTHORIZED)) == "Unauthorized"
    assert error_message(b"Bad Gateway") == "Bad Gateway"
    assert error_message(b"[1]") == "[1]"
    assert error_message(b'{"detail": "Not Found"}') == '{"detail": "Not Found"}'


def test_http_hints() -> None:
    assert "set api_key" in http_hint(401, dumps(UNAUTHORIZED), api_key_set=False)
    assert "rejected api_key" in http_hint(401, dumps(UNAUTHORIZED), api_key_set=True)
    assert "--enable-auto-tool-choice --tool-call-parser minimax_m2" in http_hint(400, dumps(AUTO_TOOL_ERROR), False)
    too_long = {"error": {"message": "This model's maximum context length is 4096 tokens. However, ...", "code": 400}}
    assert "lower max_tokens" in http_hint(400, dumps(too_long), False)
    missing = {"error": {"message": "The model `MiniMax-M2.5` does not exist.", "code": 404}}
    assert "--served-model-name" in http_hint(404, dumps(missing), False)
    assert "root" in http_hint(404, b'{"detail":"Not Found"}', False)
    assert http_hint(500, b"", False) == ""
    assert http_hint(400, b'{"error":{"message":"messages: Field required"}}', False) == ""


def test_probe_error_message_names_step_url_and_body() -> None:
    err = http_failure("tool_call", "POST", CHAT_URL, 400, dumps(AUTO_TOOL_ERROR))
    assert (err.step, err.status) == ("tool_call", 400)
    text = str(err)
    assert text.startswith(f"tool_call: POST {CHAT_URL}: HTTP 400 (the server runs without tool calling: ")
    assert ' - response: {"error": {"message": "\\"auto\\" tool choice requires' in text
    assert err.body_excerpt is not None and len(err.body_excerpt) <= 300 + len("... [999 more characters]")
    assert str(ProbeError("health", "GET", BASE + "/health", "connection refused")) == (
        f"health: GET {BASE}/health: connection refused"
    )


# -- transport errors ---------------------------------------------------------------------------


class SSLValidationError(Exception):
    """Stands for ansible.module_utils.urls.SSLValidationError (recognised by name)."""


@pytest.mark.parametrize(
    ("exc", "text", "retry"),
    [
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "connection refused (", True),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused", True),
        (urllib.error.URLError(socket.timeout("timed out")), "no answer within 5 s (timed out)", True),
        (socket.timeout("timed out"), "no answer within 5 s", True),
        (TimeoutError("The read operation timed out"), "no answer within 5 s", True),
        (urllib.error.URLError("timed out"), "no answer within 5 s", True),
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "cannot resolve the host", True),
        (http.client.RemoteDisconnected("Remote end closed connection"), "closed the connection", True),
        (ConnectionResetError(104, "Connection reset by peer"), "connection failed (", True),
        (http.client.IncompleteRead(b"ab", 10), "bad HTTP answer (IncompleteRead", True),
        (urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed")), "TLS error", False),
        (SSLValidationError("Failed to validate the SSL certificate"), "TLS error", False),
        (OSError(113, "No route to host"), "OSError: [Errno 113] No route to host", True),
    ],
)
def test_describe_error(exc: BaseException, text: str, retry: bool) -> None:
    described, retried = describe_error(exc, timeout=5)
    assert text in described
    assert retried is retry


# -- /health ------------------------------------------------------------------------------------


class FakeTime:
    """A clock that only ``sleep`` and attempts advance."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(time: FakeTime, answers: List[Tuple[str, str, Any]], cost: float = 0.0):
    """An attempt function answering from ``answers``; each attempt takes ``cost`` seconds."""
    timeouts: List[float] = []

    def attempt(timeout: float) -> Tuple[str, str, Any]:
        timeouts.append(timeout)
        time.now += cost
        return answers.pop(0) if len(answers) > 1 else answers[0]

    attempt.timeouts = timeouts  # type: ignore[attr-defined]
    return attempt


REFUSED = ("retry", "connection refused ([Errno 111] Connection refused)", None)
OK = ("ok", "HTTP 200", None)


def wait(time: FakeTime, attempt: Any, health_timeout: float = 10, interval: float = 2, timeout: float = 5) -> Any:
    return wait_healthy(
        attempt,
        BASE + "/health",
        health_timeout=health_timeout,
        interval=interval,
        timeout=timeout,
        clock=time.clock,
        sleep=time.sleep,
    )


def test_health_at_once() -> None:
    time = FakeTime()
    attempt = scripted(time, [OK], cost=0.004)
    assert wait(time, attempt) == {"waited_s": 0.004, "attempts": 1}
    assert attempt.timeouts == [5]
    assert time.sleeps == []


def test_health_retries_refused_connections_until_up() -> None:
    time = FakeTime()
    attempt = scripted(time, [REFUSED, REFUSED, REFUSED, OK])
    assert wait(time, attempt) == {"waited_s": 6.0, "attempts": 4}
    assert time.sleeps == [2, 2, 2]


def test_health_deadline_says_how_long_and_the_last_error() -> None:
    time = FakeTime()
    attempt = scripted(time, [("retry", "HTTP 503", b""), REFUSED], cost=0.1)
    with pytest.raises(ProbeError) as exc:
        wait(time, attempt, health_timeout=5, interval=2)
    err = exc.value
    assert err.step == "health"
    # attempts at 0, 2.1, 4.2 and one last at the deadline (5.0)
    assert str(err) == (
        f"health: GET {BASE}/health: not healthy after waiting 5.1 s (health_timeout=5 s, 4 attempts); "
        "last error: connection refused ([Errno 111] Connection refused)"
    )
    assert [round(s, 3) for s in time.sleeps] == [2, 2, 0.7]
    # each attempt gets `timeout`, but no further than the deadline (at least 0.5 s)
    assert [round(t, 3) for t in attempt.timeouts] == [5, 2.9, 0.8, 0.5]


def test_health_last_error_with_body() -> None:
    time = FakeTime()
    attempt = scripted(time, [("retry", "HTTP 503", b"Service Unavailable")])
    with pytest.raises(ProbeError) as exc:
        wait(time, attempt, health_timeout=1, interval=1)
    assert str(exc.value).endswith("last error: HTTP 503 - response: Service Unavailable")


def test_health_timeout_zero_is_one_attempt() -> None:
    time = FakeTime()
    attempt = scripted(time, [REFUSED])
    with pytest.raises(ProbeError, match=r"not healthy after one attempt \(health_timeout=0\); last error: conn"):
        wait(time, attempt, health_timeout=0, timeout=7)
    assert attempt.timeouts == [7]
    assert time.sleeps == []
    assert wait(FakeTime(), scripted(FakeTime(), [OK]), health_timeout=0)["attempts"] == 1


def test_health_4xx_is_not_retried() -> None:
    time = FakeTime()
    attempt = scripted(time, [("fail", "HTTP 404", b'{"detail":"Not Found"}')])
    with pytest.raises(ProbeError) as exc:
        wait(time, attempt)
    assert str(exc.value) == f'health: GET {BASE}/health: HTTP 404 (not retried) - response: {{"detail":"Not Found"}}'
    assert time.sleeps == []


@pytest.mark.parametrize(
    ("status", "outcome"), [(200, "ok"), (404, "fail"), (401, "fail"), (503, "retry"), (502, "retry")]
)
def test_health_outcome(status: int, outcome: str) -> None:
    assert health_outcome(status) == outcome


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


# -- SSE parser -----------------------------------------------------------------------------------


def parse(reads: List[bytes]) -> Tuple[List[SSEEvent], SSEParser]:
    parser = SSEParser()
    events: List[SSEEvent] = []
    for data in reads:
        events.extend(parser.feed(data))
    return events, parser


def split_every(data: bytes, size: int) -> List[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


EXPECTED = [
    SSEEvent("message", p if isinstance(p, str) else json.dumps(p, ensure_ascii=False, separators=(",", ":")))
    for p in STREAM_EVENTS
]


def test_sse_whole_stream_in_one_read() -> None:
    events, parser = parse([STREAM])
    assert events == EXPECTED
    assert parser.pending == ""


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 101])
def test_sse_events_split_across_reads(size: int) -> None:
    events, parser = parse(split_every(STREAM, size))
    assert events == EXPECTED
    assert parser.pending == ""


def test_sse_each_read_returns_the_events_it_completes() -> None:
    parser = SSEParser()
    first, second = sse(ROLE), sse(chunk({"content": "你好"}))
    # half an event: nothing yet
    assert parser.feed(first[:30]) == []
    assert parser.pending.startswith("data: {")
    # the rest of the first, a whole second and half of the [DONE] event in one read
    done = sse("[DONE]")
    out = parser.feed(first[30:] + second + done[:8])
    assert [json.loads(e.data) for e in out] == [ROLE, chunk({"content": "你好"})]
    assert parser.feed(done[8:]) == [SSEEvent("message", "[DONE]")]


def test_sse_utf8_character_split_across_reads() -> None:
    data = 'data: {"content":"上海"}\n\n'.encode()
    cut = data.index("海".encode()) + 1  # inside the 3-byte character
    events, _ = parse([data[:cut], data[cut:]])
    assert events == [SSEEvent("message", '{"content":"上海"}')]


@pytest.mark.parametrize("sep", [b"\r\n", b"\r", b"\n"])
def test_sse_line_endings(sep: bytes) -> None:
    data = b"data: a" + sep + sep + b"data: b" + sep + sep
    assert parse([data])[0] == [SSEEvent("message", "a"), SSEEvent("message", "b")]
    # split between the CR and the LF of a CRLF: still one line end, not a blank line
    assert parse(split_every(data, 1))[0] == [SSEEvent("message", "a"), SSEEvent("message", "b")]


def test_sse_crlf_split_does_not_dispatch_early() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: one\r") == []
    assert parser.feed(b"\ndata: two\r\n") == []
    assert parser.feed(b"\r\n") == [SSEEvent("message", "one\ntwo")]


def test_sse_fields_comments_and_types() -> None:
    data = (
        b"\xef\xbb\xbf: keep-alive\n\n"  # a BOM, a comment, a blank line: no event
        b'event: error\ndata: {"message": "boom"}\nid: 7\n\n'
        b"data:no space\ndata:  two spaces\n\n"
        b"event: ping\n\n"  # no data: not dispatched, and the type is reset
        b"data\n\n"  # a field without colon: empty data line
        b"retry: 1000\nunknown: x\ndata: last\n\n"
    )
    events, _ = parse([data])
    assert events == [
        SSEEvent("error", '{"message": "boom"}', "7"),
        SSEEvent("message", "no space\n two spaces", "7"),
        SSEEvent("message", "", "7"),
        SSEEvent("message", "last", "7"),
    ]


def test_sse_incomplete_event_at_the_end_is_pending() -> None:
    events, parser = parse([sse(ROLE) + b"data: [DONE]\n"])
    assert events == [EXPECTED[0]]
    assert parser.pending == "data: [DONE]"


# -- stream measurements ----------------------------------------------------------------------------


def run_stream(reads: List[Tuple[float, bytes]], content_type: Optional[str] = "text/event-stream") -> StreamProbe:
    probe = StreamProbe(CHAT_URL, start=100.0, content_type=content_type)
    for now, data in reads:
        probe.feed(data, now)
    return probe


def test_stream_measures_ttft_total_and_chunks() -> None:
    events = [sse(e) for e in STREAM_EVENTS]
    # the role chunk at +0.05 is not a token; the first reasoning delta arrives at +0.25
    reads = [(100.05, events[0]), (100.25, events[1]), (100.3, b"".join(events[2:6])), (100.4, events[6] + events[7])]
    probe = run_stream(reads)
    assert probe.done
    assert probe.finish(101.0) == {
        "ttft_s": 0.25,
        "total_s": 0.4,
        "chunks": 7,
        "completion_tokens": 5,
        "finish_reason": "stop",
        "content_excerpt": "\n\n你好!",
    }


def test_stream_ttft_is_the_read_that_completes_the_first_token_event() -> None:
    first_token = sse(chunk({"content": "Hi"}))
    reads = [(100.1, sse(ROLE) + first_token[:20]), (100.6, first_token[20:] + sse("[DONE]"))]
    result = run_stream(reads).finish(100.7)
    assert (result["ttft_s"], result["total_s"], result["chunks"]) == (0.6, 0.6, 2)
    assert result["completion_tokens"] is None


def test_stream_reasoning_only_excerpt() -> None:
    probe = run_stream([(100.2, sse(ROLE, chunk({"reasoning_content": "Think"}, "length"), "[DONE]"))])
    result = probe.finish(100.3)
    assert (result["content_excerpt"], result["finish_reason"]) == ("Think", "length")


def test_stream_long_reasoning_then_content_excerpt_is_the_content() -> None:
    thinking = [chunk({"reasoning": "x" * 50}) for _ in range(6)]
    answer = [chunk({"content": "y" * 150}), chunk({"content": "z" * 100})]
    result = run_stream([(100.1, sse(ROLE, *thinking, *answer, "[DONE]"))]).finish(100.2)
    assert result["content_excerpt"] == "y" * 150 + "z" * 50 + "..."


def test_stream_byte_by_byte_gives_the_same_result() -> None:
    reads = [(100.0 + i * 0.001, bytes([b])) for i, b in enumerate(STREAM)]
    result = run_stream(reads).finish(200.0)
    assert result["chunks"] == 7 and result["completion_tokens"] == 5
    first_token_end = len(sse(STREAM_EVENTS[0], STREAM_EVENTS[1]))
    assert result["ttft_s"] == round((first_token_end - 1) * 0.001, 3)


def test_stream_error_event_after_a_200_fails_even_with_done() -> None:
    body = sse(ROLE, chunk({"reasoning": "The"}), ENGINE_ERROR, "[DONE]")
    probe = run_stream([(100.2, body)])
    with pytest.raises(ProbeError) as exc:
        probe.finish(100.3)
    text = str(exc.value)
    assert exc.value.step == "stream" and exc.value.status == 200
    assert text.startswith(
        f"stream: POST {CHAT_URL}: the stream (HTTP 200) carried error event: EngineCore encountered an issue."
    )
    assert ' - response: {"error":{"message":"EngineCore' in text


def test_stream_older_vllm_error_object() -> None:
    old = {"object": "error", "message": "KV transfer failed", "type": "InternalServerError", "code": 500}
    with pytest.raises(ProbeError, match="carried error event: KV transfer failed"):
        run_stream([(100.1, sse(ROLE, old, "[DONE]"))]).finish(100.2)


def test_stream_sse_error_type_event() -> None:
    body = sse(ROLE) + b'event: error\ndata: {"message": "overloaded"}\n\n' + sse("[DONE]")
    with pytest.raises(ProbeError, match=r'carried error event: \{"message": "overloaded"\}'):
        run_stream([(100.1, body)]).finish(100.2)


def test_stream_without_done_fails() -> None:
    body = sse(ROLE, chunk({"content": "Hi"}), chunk({"content": "!"}))
    probe = run_stream([(100.1, body)])
    assert not probe.done
    with pytest.raises(ProbeError) as exc:
        probe.finish(100.2)
    text = str(exc.value)
    assert "the stream (HTTP 200) ended without 'data: [DONE]' after 3 chunks - response: [" in text
    assert text.endswith('"finish_reason":null}]}\\n\\n')  # the end of the stream is shown


def test_stream_cut_inside_an_event() -> None:
    body = sse(ROLE, chunk({"content": "Hi"})) + b'data: {"id":"chatcmpl-9c8b7a","obj'
    with pytest.raises(ProbeError, match=r"ended without 'data: \[DONE\]' \(cut inside an event\) after 2 chunks"):
        run_stream([(100.1, body)]).finish(100.2)


def test_stream_not_sse_says_the_content_type() -> None:
    body = dumps(chat_answer())
    with pytest.raises(ProbeError, match="Content-Type is 'application/json', not text/event-stream"):
        run_stream([(100.1, body)], content_type="application/json").finish(100.2)


def test_stream_without_text_fails() -> None:
    with pytest.raises(ProbeError, match="no content or reasoning in the 2 chunks"):
        run_stream([(100.1, sse(ROLE, USAGE, "[DONE]"))]).finish(100.2)


def test_stream_non_json_event_fails() -> None:
    with pytest.raises(ProbeError, match="an event whose data is not JSON - response: Internal Server Error"):
        run_stream([(100.1, sse(ROLE, "Internal Server Error", "[DONE]"))]).finish(100.2)


def test_stream_ignores_events_after_done() -> None:
    probe = run_stream([(100.1, sse(ROLE, chunk({"content": "Hi"}), "[DONE]", ENGINE_ERROR))])
    assert probe.finish(100.2)["chunks"] == 2
