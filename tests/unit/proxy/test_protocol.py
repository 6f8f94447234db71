"""Unit tests of ascend_pd_proxy.protocol: the PD bodies (PROXY.md, "The protocol") and client checks."""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, List

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.sse import SSEParser
from ascend_pd_proxy import protocol
from ascend_pd_proxy.protocol import CHAT, COMPLETIONS, PrefillAnswerError, RequestError

MODEL = "Qwen/Qwen3-235B-A22B"

PREFILL_KV = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}


def chat_stream() -> Dict[str, Any]:
    """A streaming chat request as the OpenAI SDK sends it: tools, content parts, stream_options."""
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the weather in Hangzhou?"},
                    {"type": "text", "text": "Answer in Celsius."},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_0",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Hangzhou", "unit": "c"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_0", "content": '{"temperature": 21}'},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "temperature": 0.7,
        "top_p": 0.95,
        "max_completion_tokens": 512,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": False},
    }


def chat_json() -> Dict[str, Any]:
    """A non-streaming chat request that still carries stream_options (some clients always send it)."""
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Summarise the plot of Hamlet in two sentences."}],
        "max_tokens": 128,
        "stream": False,
        "stream_options": {"include_usage": True},
        "seed": 42,
    }


def completion() -> Dict[str, Any]:
    return {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 16, "temperature": 0.0}


def prefill_answer(cached: Any = 96) -> bytes:
    """What a vLLM-Ascend kv_producer returns for the prefill request (MooncakeConnectorV1)."""
    answer: Dict[str, Any] = {
        "id": "chatcmpl-5f2d8c0e",
        "object": "chat.completion",
        "created": 1735000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "It", "tool_calls": []},
                "logprobs": None,
                "finish_reason": "length",
                "stop_reason": None,
            }
        ],
        "usage": {"prompt_tokens": 187, "total_tokens": 188, "completion_tokens": 1},
        "prompt_logprobs": None,
        "kv_transfer_params": {
            "do_remote_prefill": True,
            "do_remote_decode": False,
            "remote_block_ids": [11, 12, 13],
            "remote_engine_id": "c4a1f6a2-prefill-dp0",
            "remote_host": "10.0.0.1",
            "remote_port": 30000,
        },
    }
    if cached is not None:
        answer["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
    return json.dumps(answer).encode()


KV = json.loads(prefill_answer())["kv_transfer_params"]
ALL_BODIES = [chat_stream, chat_json, completion]


# --- prefill body ----------------------------------------------------------------------------------


def test_prefill_body_of_a_streaming_chat() -> None:
    body = chat_stream()
    request = protocol.prefill_body(body)
    expected = chat_stream()
    del expected["stream_options"]
    expected.update(stream=False, max_tokens=1, max_completion_tokens=1, min_tokens=1, kv_transfer_params=PREFILL_KV)
    assert request == expected


def test_prefill_body_without_max_completion_tokens_does_not_add_it() -> None:
    request = protocol.prefill_body(chat_json())
    assert "max_completion_tokens" not in request
    assert (request["max_tokens"], request["min_tokens"], request["stream"]) == (1, 1, False)
    assert "stream_options" not in request
    assert request["kv_transfer_params"] == PREFILL_KV
    # Everything else is the client's.
    assert {k: v for k, v in request.items() if k in ("model", "messages", "seed")} == {
        k: v for k, v in chat_json().items() if k in ("model", "messages", "seed")
    }


def test_prefill_body_of_a_completion() -> None:
    expected = dict(completion(), max_tokens=1, min_tokens=1, stream=False, kv_transfer_params=PREFILL_KV)
    assert protocol.prefill_body(completion()) == expected


@pytest.mark.parametrize("make", ALL_BODIES)
def test_prefill_body_does_not_mutate_the_client_body(make: Any) -> None:
    body = make()
    protocol.prefill_body(body)
    assert body == make()


def test_prefill_kv_request_is_a_fresh_dict_each_time() -> None:
    first = protocol.prefill_body(completion())
    first["kv_transfer_params"]["remote_host"] = "10.9.9.9"
    second = protocol.prefill_body(completion())
    assert second["kv_transfer_params"] == PREFILL_KV
    assert protocol.PREFILL_KV_REQUEST == PREFILL_KV


# --- decode body -----------------------------------------------------------------------------------


def test_decode_body_of_a_streaming_chat_keeps_stream_options() -> None:
    request = protocol.decode_body(chat_stream(), KV)
    assert request == dict(chat_stream(), kv_transfer_params=KV)
    assert request["stream_options"] == {"include_usage": True, "continuous_usage_stats": False}
    assert request["max_completion_tokens"] == 512


@pytest.mark.parametrize("stream", [False, None, "absent"])
def test_decode_body_of_a_non_streaming_request_drops_stream_options(stream: Any) -> None:
    body = chat_json()
    if stream == "absent":
        del body["stream"]
    else:
        body["stream"] = stream
    request = protocol.decode_body(body, KV)
    assert "stream_options" not in request
    expected = dict(body, kv_transfer_params=KV)
    del expected["stream_options"]
    assert request == expected


@pytest.mark.parametrize("make", ALL_BODIES)
def test_decode_body_does_not_mutate_the_client_body(make: Any) -> None:
    body = make()
    kv = copy.deepcopy(KV)
    protocol.decode_body(body, kv)
    assert body == make()
    assert kv == KV


def test_decode_body_uses_the_prefill_answers_params() -> None:
    kv, cached = protocol.read_prefill_answer(prefill_answer())
    assert protocol.decode_body(completion(), kv)["kv_transfer_params"] == {
        "do_remote_prefill": True,
        "do_remote_decode": False,
        "remote_block_ids": [11, 12, 13],
        "remote_engine_id": "c4a1f6a2-prefill-dp0",
        "remote_host": "10.0.0.1",
        "remote_port": 30000,
    }
    assert cached == 96


# --- the prefill answer ----------------------------------------------------------------------------


@pytest.mark.parametrize(("cached", "expected"), [(96, 96), (0, 0), (None, None), ("96", None), (True, None)])
def test_read_prefill_answer_cached_tokens(cached: Any, expected: Any) -> None:
    params, got = protocol.read_prefill_answer(prefill_answer(cached))
    assert params == KV
    assert got == expected


@pytest.mark.parametrize(
    "usage",
    [None, "n/a", {"prompt_tokens": 3}, {"prompt_tokens_details": None}, {"prompt_tokens_details": [1]}],
)
def test_read_prefill_answer_tolerates_odd_usage(usage: Any) -> None:
    answer = json.loads(prefill_answer())
    answer["usage"] = usage
    assert protocol.read_prefill_answer(json.dumps(answer).encode()) == (KV, None)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"id": "cmpl-1", "choices": []}).encode(), "no kv_transfer_params"),
        (json.dumps({"kv_transfer_params": None}).encode(), "no kv_transfer_params"),
        (json.dumps({"kv_transfer_params": {}}).encode(), "no kv_transfer_params"),
        (json.dumps({"kv_transfer_params": ["x"]}).encode(), "no kv_transfer_params"),
    ],
)
def test_read_prefill_answer_rejects_unusable_answers(raw: bytes, fragment: str) -> None:
    with pytest.raises(PrefillAnswerError, match=fragment):
        protocol.read_prefill_answer(raw)


# --- client body checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "path"), [(chat_stream, CHAT), (chat_json, CHAT), (completion, COMPLETIONS)])
def test_valid_client_bodies_pass(make: Any, path: str) -> None:
    assert protocol.parse_client_body(json.dumps(make()).encode(), path) == make()


@pytest.mark.parametrize(
    "prompt", ["Hello", ["Hello", "World"], [1, 2, 3], [[1, 2], [3]]], ids=["str", "strs", "ids", "id-lists"]
)
def test_completion_prompt_forms_pass(prompt: Any) -> None:
    body = dict(completion(), prompt=prompt)
    assert protocol.parse_client_body(json.dumps(body).encode(), COMPLETIONS)["prompt"] == prompt


def _with(make: Any, **changes: Any) -> bytes:
    body = make()
    for key, value in changes.items():
        if value is _DELETE:
            body.pop(key, None)
        else:
            body[key] = value
    return json.dumps(body).encode()


_DELETE = object()

BAD_BODIES = [
    # (id, raw body, path, status, param)
    ("empty", b"", CHAT, 400, None),
    ("not-json", b"{'model': 'x'}", CHAT, 400, None),
    ("truncated", b'{"model": "x", "messages": [', CHAT, 400, None),
    ("bad-utf8", b'{"prompt": "\xff\xfe"}', COMPLETIONS, 400, None),
    ("array", b'[{"role": "user", "content": "hi"}]', CHAT, 400, None),
    ("string", b'"hello"', COMPLETIONS, 400, None),
    ("no-messages", _with(chat_json, messages=_DELETE), CHAT, 400, "messages"),
    ("empty-messages", _with(chat_json, messages=[]), CHAT, 400, "messages"),
    ("messages-str", _with(chat_json, messages="hi"), CHAT, 400, "messages"),
    ("message-not-object", _with(chat_json, messages=["hi"]), CHAT, 400, "messages"),
    ("no-prompt", _with(completion, prompt=_DELETE), COMPLETIONS, 400, "prompt"),
    ("empty-prompt", _with(completion, prompt=""), COMPLETIONS, 400, "prompt"),
    ("empty-prompt-list", _with(completion, prompt=[]), COMPLETIONS, 400, "prompt"),
    ("null-prompt", _with(completion, prompt=None), COMPLETIONS, 400, "prompt"),
    ("stream-str", _with(chat_json, stream="true"), CHAT, 400, "stream"),
    ("stream-int", _with(completion, stream=1), COMPLETIONS, 400, "stream"),
    ("max-tokens-0", _with(completion, max_tokens=0), COMPLETIONS, 400, "max_tokens"),
    ("max-tokens-str", _with(completion, max_tokens="16"), COMPLETIONS, 400, "max_tokens"),
    ("max-tokens-float", _with(completion, max_tokens=16.5), COMPLETIONS, 400, "max_tokens"),
    ("max-tokens-bool", _with(completion, max_tokens=True), COMPLETIONS, 400, "max_tokens"),
    ("max-completion-neg", _with(chat_stream, max_completion_tokens=-1), CHAT, 400, "max_completion_tokens"),
    ("kv-params", _with(chat_json, kv_transfer_params={"do_remote_prefill": True}), CHAT, 400, "kv_transfer_params"),
    ("n-2", _with(chat_json, n=2), CHAT, 400, "n"),
    ("n-0", _with(completion, n=0), COMPLETIONS, 400, "n"),
]


@pytest.mark.parametrize(
    ("raw", "path", "status", "param"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
def test_bad_client_bodies_are_request_errors(raw: bytes, path: str, status: int, param: Any) -> None:
    with pytest.raises(RequestError) as info:
        protocol.parse_client_body(raw, path)
    error = info.value
    assert (error.status, error.param) == (status, param)
    assert error.body() == {
        "error": {"message": error.message, "type": "BadRequestError", "param": param, "code": status}
    }
    assert error.message and str(error) == error.message


@pytest.mark.parametrize(("key", "value"), [("stream", None), ("max_tokens", None), ("n", 1), ("n", None)])
def test_explicit_nulls_and_n_1_pass(key: str, value: Any) -> None:
    body = protocol.parse_client_body(_with(chat_json, **{key: value}), CHAT)
    assert body[key] == value


def test_deeply_nested_json_is_a_400() -> None:
    raw = b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(RequestError) as info:
        protocol.parse_client_body(raw, CHAT)
    assert info.value.status == 400


# --- error bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "BadRequestError"), (401, "AuthenticationError"), (502, "BadGatewayError"), (504, "GatewayTimeoutError")],
)
def test_error_body_shape(status: int, kind: str) -> None:
    assert protocol.error_body(status, "boom", param="model") == {
        "error": {"message": "boom", "type": kind, "param": "model", "code": status}
    }


def test_error_body_unknown_status() -> None:
    assert protocol.error_body(418, "teapot")["error"]["type"] == "Error"


def test_sse_error_event_is_one_complete_event() -> None:
    event = protocol.sse_error_event(502, "decode instance node2/dp1 went away: ünïcode")
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert event.count(b"\n\n") == 1 and b"\n" not in event[: -len(b"\n\n")]
    [parsed] = SSEParser().feed(event)
    payload = json.loads(parsed.data)
    assert payload == protocol.error_body(502, "decode instance node2/dp1 went away: ünïcode")


# --- stream flag -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [({"stream": True}, True), ({"stream": False}, False), ({}, False)])
def test_is_stream(body: Dict[str, Any], expected: bool) -> None:
    assert protocol.is_stream(body) is expected


# --- prompt size estimate --------------------------------------------------------------------------


def _chat(*texts: str, **extra: Any) -> Dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": t} for t in texts], **extra}


ORDERED_PAIRS = [
    # (id, smaller, larger)
    ("chat-text", _chat("hi " * 100), _chat("hi " * 1000)),
    ("chat-more-messages", _chat("question " * 50), _chat("question " * 50, "follow-up " * 50)),
    ("chat-tools", _chat("weather?"), _chat("weather?", tools=[WEATHER_TOOL])),
    (
        "chat-parts",
        _chat("x" * 400),
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 400}] * 3}]},
    ),
    ("completion-text", {"prompt": "a" * 40}, {"prompt": "a" * 4000}),
    ("completion-ids", {"prompt": list(range(100))}, {"prompt": list(range(1000))}),
    ("completion-strs", {"prompt": ["a" * 100]}, {"prompt": ["a" * 100, "b" * 900]}),
]


@pytest.mark.parametrize(("small", "large"), [p[1:] for p in ORDERED_PAIRS], ids=[p[0] for p in ORDERED_PAIRS])
def test_longer_prompt_estimates_larger(small: Dict[str, Any], large: Dict[str, Any]) -> None:
    assert protocol.prompt_tokens_estimate(small) < protocol.prompt_tokens_estimate(large)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": list(range(777))}, 777),  # token ids are counted as they are
        ({"prompt": "x" * 4000}, 4000 // protocol.CHARS_PER_TOKEN),
        (_chat("y" * 800), 800 // protocol.CHARS_PER_TOKEN),
        (_chat(""), 1),  # never 0: every request has some load
        ({"prompt": "a"}, 1),
        ({"messages": [{"role": "assistant", "content": None}, "junk"]}, 1),
    ],
)
def test_prompt_estimate_values(body: Dict[str, Any], expected: int) -> None:
    assert protocol.prompt_tokens_estimate(body) == expected


def test_long_context_estimate_is_in_the_right_range() -> None:
    """A ~200k-token document (about 800k characters) must weigh about 200k tokens, not bytes or 1."""
    body = _chat("lorem ipsum dolor sit amet " * 30_000)
    assert 150_000 <= protocol.prompt_tokens_estimate(body) <= 250_000


def test_token_id_batch_estimates_like_token_ids() -> None:
    ids = list(range(1000))
    assert protocol.prompt_tokens_estimate({"prompt": [ids]}) == protocol.prompt_tokens_estimate({"prompt": ids})


# --- prefix key ------------------------------------------------------------------------------------

SYSTEM = "You are a contract analyst. Here is the contract:\n" + "Clause. " * 1000


def _rag(question: str) -> Dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        "stream": True,
    }


def test_prefix_key_is_stable_and_bounded() -> None:
    keys = {protocol.prefix_key(_rag("Who signs?"), 2048) for _ in range(3)}
    assert len(keys) == 1
    (key,) = keys
    assert len(key) == 2048
    assert key.startswith("system:You are a contract analyst.")


def test_prefix_key_shared_long_prefix_gives_the_same_key() -> None:
    questions = ["Who signs?", "What is the term?", "Is there a penalty clause?"]
    keys = {protocol.prefix_key(_rag(q), 2048) for q in questions}
    assert len(keys) == 1


def test_prefix_key_ignores_sampling_parameters() -> None:
    a = dict(_rag("Who signs?"), temperature=0.1, max_tokens=10)
    b = dict(_rag("Who signs?"), temperature=0.9, stream=False)
    assert protocol.prefix_key(a, 2048) == protocol.prefix_key(b, 2048)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (_chat("Document A. " * 10), _chat("Document B. " * 10)),
        (
            {"messages": [{"role": "system", "content": "be brief"}]},
            {"messages": [{"role": "user", "content": "be brief"}]},
        ),
        ({"prompt": "first document"}, {"prompt": "second document"}),
        ({"prompt": [1, 2, 3]}, {"prompt": [1, 2, 4]}),
    ],
    ids=["content", "role", "prompt-text", "prompt-ids"],
)
def test_prefix_key_differs_for_different_prompts(a: Dict[str, Any], b: Dict[str, Any]) -> None:
    assert protocol.prefix_key(a, 2048) != protocol.prefix_key(b, 2048)


def test_prefix_key_content_parts_are_order_stable() -> None:
    parts_a: List[Dict[str, Any]] = [{"type": "text", "text": "same"}]
    parts_b: List[Dict[str, Any]] = [{"text": "same", "type": "text"}]
    a = {"messages": [{"role": "user", "content": parts_a}]}
    b = {"messages": [{"role": "user", "content": parts_b}]}
    assert protocol.prefix_key(a, 512) == protocol.prefix_key(b, 512)


@pytest.mark.parametrize("chars", [1, 16, 100])
def test_prefix_key_completion_prompt_is_truncated(chars: int) -> None:
    body = {"prompt": "p" * 1000}
    assert protocol.prefix_key(body, chars) == "p" * chars


# --- SSEFramer: whole events, as they came --------------------------------------------------------

VLLM_STREAM = (
    b'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"\xe4\xbd\xa0\xe5\xa5\xbd"}}]}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 64, len(VLLM_STREAM)])
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_framer_forwards_whole_events_only(size: int, line_end: bytes) -> None:
    stream = VLLM_STREAM.replace(b"\n", line_end)
    framer = protocol.SSEFramer()
    forwarded = []
    for start in range(0, len(stream), size):
        out = framer.feed(stream[start : start + size])
        assert out == b"" or out.endswith(b"\n\n")  # never half an event
        forwarded.append(out)
    forwarded.append(framer.feed(b""))  # the end of the stream completes a trailing CR
    assert b"".join(forwarded) == VLLM_STREAM  # LF line ends, bytes otherwise untouched
    assert framer.pending == b""


def test_framer_keeps_an_incomplete_event_pending() -> None:
    framer = protocol.SSEFramer()
    assert framer.feed(b'data: {"a": 1}\n\ndata: {"b"') == b'data: {"a": 1}\n\n'
    assert framer.pending == b'data: {"b"'
    assert framer.feed(b": 2}\r") == b""  # a CR that may be half of a CRLF waits
    assert framer.pending == b'data: {"b": 2}\r'
    assert framer.feed(b"\n\n") == b'data: {"b": 2}\n\n'


# --- the client's body serialised once -------------------------------------------------------------


@pytest.mark.parametrize("make", ALL_BODIES)
def test_encoded_bodies_say_what_the_phase_bodies_say(make: Any) -> None:
    body = make()
    encoded = protocol.EncodedBody(body)
    assert json.loads(encoded.prefill()) == protocol.prefill_body(body)
    assert json.loads(encoded.decode(KV)) == protocol.decode_body(body, KV)
    assert json.loads(encoded.whole()) == body
    assert body == make()


def test_an_encoded_body_without_client_keys_is_still_one_object() -> None:
    encoded = protocol.EncodedBody({"stream": True})
    assert json.loads(encoded.whole()) == {"stream": True}
    assert json.loads(protocol.EncodedBody({}).whole()) == {}


def test_a_large_prompt_is_serialised_once_for_every_phase_and_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    body = chat_stream()
    body["messages"] = [{"role": "user", "content": " alpha" * 200_000}]  # ~1.2 MB, a 200k-token prompt
    sizes: List[int] = []
    real_dumps = json.dumps

    def counting_dumps(value: Any, **kwargs: Any) -> str:
        text = real_dumps(value, **kwargs)
        sizes.append(len(text))
        return text

    monkeypatch.setattr(protocol.json, "dumps", counting_dumps)
    encoded = protocol.EncodedBody(body)
    sent = [encoded.prefill(), encoded.decode(KV), encoded.prefill(), encoded.decode(KV)]  # a retry
    assert [size > 1_000_000 for size in sizes].count(True) == 1, sizes
    assert all(len(one) > 1_000_000 for one in sent)
    assert json.loads(sent[1])["messages"] == body["messages"]
