"""The simulated server's HTTP API: routes, OpenAI shapes, streaming, tools, reasoning."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from ascend_sim import state as st

from .vllm_helpers import (
    API_KEY,
    HOST,
    MODEL_NAME,
    WEATHER_REQUEST,
    WEATHER_TOOL,
    InProcessServer,
    Server,
    base_env,
    free_port,
    http,
    make_model,
    post_json,
    run_vllm,
    sim_environ,
    sse,
)

AUTH = {"Authorization": f"Bearer {API_KEY}"}
COMMON = ["--served-model-name", MODEL_NAME, "--max-model-len", "4096"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, InProcessServer]]:
    """Three servers: MiniMax parsers + API key, append_think, no flags (in this process)."""
    root = tmp_path_factory.mktemp("vllm-api")
    node = root / "state"
    st.init_state("a3", directory=node)
    model = make_model(root)
    tools = ["--enable-auto-tool-choice", "--tool-call-parser", "minimax_m2"]
    main = ["--reasoning-parser", "minimax_m2", "--api-key", API_KEY, "--enable-prompt-tokens-details", *tools]
    specs = {
        "main": (main, [0]),
        "append": (["--reasoning-parser", "minimax_m2_append_think", *tools], [1]),
        "plain": ([], [2]),
    }
    started: Dict[str, InProcessServer] = {}
    with sim_environ(VLLM_SIM_LOAD_SECONDS="0"):
        try:
            for name, (args, chips) in specs.items():
                started[name] = InProcessServer(model, [*COMMON, *args], chips=chips, state_dir=node)
            yield started
        finally:
            for server in started.values():
                server.stop()


def chat(server: InProcessServer, body: dict, headers: Dict[str, str] | None = None) -> tuple[int, dict]:
    return post_json(server.url + "/v1/chat/completions", body, headers)


def hello(**extra: object) -> dict:
    return {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hello, who are you?"}], **extra}


# -- simple routes -------------------------------------------------------------------------------


def test_health_ping_version_models(servers: Dict[str, InProcessServer]) -> None:
    main = servers["main"]
    status, _, body = http(main.url + "/health")
    assert (status, body) == (200, b"")
    assert http(main.url + "/ping")[0] == 200
    assert json.loads(http(main.url + "/version")[2]) == {"version": "0.33.0"}
    status, _, raw = http(main.url + "/v1/models", headers=AUTH)
    models = json.loads(raw)
    assert status == 200 and models["object"] == "list"
    card = models["data"][0]
    assert card["id"] == MODEL_NAME
    assert card["owned_by"] == "vllm"
    assert card["max_model_len"] == 4096
    assert card["root"].endswith("MiniMax-M2.7-w8a8-QuaRot")


def test_api_key_protects_v1_only(servers: Dict[str, InProcessServer]) -> None:
    main = servers["main"]
    status, _, raw = http(main.url + "/v1/models")
    assert status == 401 and json.loads(raw) == {"error": "Unauthorized"}
    assert chat(main, hello(), {"Authorization": "Bearer wrong"})[0] == 401
    assert http(main.url + "/health")[0] == 200


# -- chat and completions ------------------------------------------------------------------------


def test_chat_shape_reasoning_and_request_id(servers: Dict[str, InProcessServer]) -> None:
    status, headers, raw = http(
        servers["main"].url + "/v1/chat/completions", hello(), {**AUTH, "X-Request-Id": "req-42"}
    )
    assert status == 200
    assert headers["X-Request-Id"] == "req-42"
    body = json.loads(raw)
    assert body["id"] == "chatcmpl-req-42"
    assert body["object"] == "chat.completion" and body["model"] == MODEL_NAME
    assert isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    message = choice["message"]
    assert message["role"] == "assistant" and message["tool_calls"] == []
    assert message["reasoning"].startswith("The user wrote: Hello, who are you")
    assert "</think>" not in message["content"] and message["content"].startswith("\n\nSimulated reply:")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert body["kv_transfer_params"] is None
    # same prompt, same answer: the fake model is deterministic
    assert chat(servers["main"], hello(), AUTH)[1]["choices"][0]["message"]["content"] == message["content"]


def test_prefix_cache_hits_are_reported(servers: Dict[str, InProcessServer]) -> None:
    long_text = " ".join(f"word{i}" for i in range(400))
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": long_text}], "max_tokens": 4}
    first = chat(servers["main"], body, AUTH)[1]["usage"]
    second = chat(servers["main"], body, AUTH)[1]["usage"]
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0 and cached % 128 == 0 and cached < second["prompt_tokens"]


def collect_stream(events: List[object]) -> dict:
    """Concatenate chat deltas; returns reasoning, content, tool call arguments, finish, usage."""
    out: dict = {"reasoning": "", "content": "", "tools": {}, "finish": None, "usage": None, "chunks": 0}
    for event in events:
        if event == "[DONE]":
            continue
        assert isinstance(event, dict)
        if not event["choices"]:
            out["usage"] = event["usage"]
            continue
        choice = event["choices"][0]
        delta = choice["delta"]
        out["chunks"] += 1
        out["reasoning"] += delta.get("reasoning") or ""
        out["content"] += delta.get("content") or ""
        for call in delta.get("tool_calls") or []:
            entry = out["tools"].setdefault(call["index"], {"name": None, "arguments": "", "id": None})
            if call.get("id"):
                entry["id"] = call["id"]
                entry["name"] = call["function"]["name"]
            entry["arguments"] += call["function"].get("arguments") or ""
        if choice["finish_reason"]:
            out["finish"] = choice["finish_reason"]
    return out


def test_chat_stream_equals_non_stream(servers: Dict[str, InProcessServer]) -> None:
    main = servers["main"]
    whole = chat(main, hello(max_tokens=30), AUTH)[1]
    status, events = sse(
        main.url + "/v1/chat/completions",
        hello(max_tokens=30, stream=True, stream_options={"include_usage": True}),
        AUTH,
    )
    assert status == 200
    assert events[-1] == "[DONE]"
    first = events[0]
    assert first["object"] == "chat.completion.chunk" and first["id"].startswith("chatcmpl-")
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    got = collect_stream(events)
    message = whole["choices"][0]["message"]
    assert got["reasoning"] == message["reasoning"]
    assert got["content"] == message["content"]
    assert got["finish"] == whole["choices"][0]["finish_reason"] == "length"
    assert got["usage"]["completion_tokens"] == 30 == whole["usage"]["completion_tokens"]
    assert got["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]


def test_completions_plain_and_stream(servers: Dict[str, InProcessServer]) -> None:
    plain = servers["plain"]
    body = {"model": MODEL_NAME, "prompt": "The capital of France is", "max_tokens": 5}
    status, whole = post_json(plain.url + "/v1/completions", body)
    assert status == 200
    assert whole["object"] == "text_completion" and whole["id"].startswith("cmpl-")
    choice = whole["choices"][0]
    assert choice["finish_reason"] == "length"
    assert whole["usage"]["completion_tokens"] == 5 and whole["usage"]["prompt_tokens"] == 5
    status, events = sse(
        plain.url + "/v1/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    chunks = [e for e in events if e != "[DONE]" and e["choices"]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert events[-2]["usage"]["completion_tokens"] == 5 and events[-1] == "[DONE]"
    # with no max_tokens the fake model stops on its own
    natural = post_json(plain.url + "/v1/completions", {"prompt": "Tell me a story", "max_tokens": 500})[1]
    assert natural["choices"][0]["finish_reason"] == "stop"
    assert natural["usage"]["completion_tokens"] < 500


def test_request_errors(servers: Dict[str, InProcessServer]) -> None:
    main = servers["main"]
    status, body = chat(main, hello(stream=False, stream_options={"include_usage": True}), AUTH)
    assert status == 400
    assert body["error"]["message"] == "Stream options can only be defined when `stream=True`."
    assert body["error"]["type"] == "BadRequestError" and body["error"]["code"] == 400
    status, body = chat(main, {**hello(), "model": "MiniMax-M2.5"}, AUTH)
    assert status == 404 and body["error"]["message"] == "The model `MiniMax-M2.5` does not exist."
    status, body = chat(main, hello(max_tokens=4090), AUTH)
    assert status == 400
    assert "'max_tokens' or 'max_completion_tokens' is too large: 4090." in body["error"]["message"]
    assert "maximum context length is 4096 tokens" in body["error"]["message"]
    long_prompt = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "x " * 5000}]}
    status, body = chat(main, long_prompt, AUTH)
    assert status == 400 and "However, your request has" in body["error"]["message"]
    status, _, raw = http(main.url + "/v1/chat/completions", b"{not json", AUTH)
    assert status == 400 and "JSON decode error" in json.loads(raw)["error"]["message"]


# -- tools ---------------------------------------------------------------------------------------

CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


def test_weather_tool_call_from_the_guide(servers: Dict[str, InProcessServer]) -> None:
    status, body = chat(servers["main"], WEATHER_REQUEST, AUTH)
    assert status == 200
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    assert "get_current_weather" in message["reasoning"]
    (call,) = message["tool_calls"]
    assert CALL_ID.match(call["id"])
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_current_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "上海"}


def test_weather_tool_call_streamed(servers: Dict[str, InProcessServer]) -> None:
    status, events = sse(servers["main"].url + "/v1/chat/completions", {**WEATHER_REQUEST, "stream": True}, AUTH)
    assert status == 200
    got = collect_stream(events)
    assert got["finish"] == "tool_calls"
    call = got["tools"][0]
    assert CALL_ID.match(call["id"])
    assert call["name"] == "get_current_weather"
    assert json.loads(call["arguments"]) == {"city": "上海"}
    assert "<minimax:tool_call>" not in got["content"]


def test_tool_arguments_are_typed_by_schema(servers: Dict[str, InProcessServer]) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "set_alarm",
            "description": "Set an alarm clock",
            "parameters": {
                "type": "object",
                "properties": {"hour": {"type": "integer"}, "loud": {"type": "boolean"}, "days": {"type": "array"}},
                "required": ["hour", "loud", "days"],
            },
        },
    }
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Please set an alarm for 7"}],
        "tools": [tool],
    }
    call = chat(servers["main"], body, AUTH)[1]["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"hour": 7, "loud": True, "days": ["Please set an alarm for 7"]}


def test_no_tool_call_when_not_asked(servers: Dict[str, InProcessServer]) -> None:
    body = {**hello(), "tools": [WEATHER_TOOL], "tool_choice": "auto"}
    choice = chat(servers["main"], body, AUTH)[1]["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["tool_calls"] == []


def test_required_and_named_tool_choice(servers: Dict[str, InProcessServer]) -> None:
    named = {
        **hello(),
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_current_weather"}},
    }
    message = chat(servers["main"], named, AUTH)[1]["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "get_current_weather"
    status, body = chat(servers["main"], {**hello(), "tool_choice": "required"}, AUTH)
    assert status == 400 and body["error"]["message"] == "When using `tool_choice`, `tools` must be set."


def test_append_think_keeps_think_in_content(servers: Dict[str, InProcessServer]) -> None:
    append = servers["append"]
    message = chat(append, hello())[1]["choices"][0]["message"]
    assert message["reasoning"] is None
    assert message["content"].startswith("<think>The user wrote:")
    assert "</think>" in message["content"]
    status, events = sse(append.url + "/v1/chat/completions", hello(stream=True))
    assert status == 200
    assert collect_stream(events)["content"] == message["content"]
    body = chat(append, WEATHER_REQUEST)[1]
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "上海"}
    assert choice["message"]["content"].startswith("<think>") and choice["message"]["content"].rstrip().endswith(
        "</think>"
    )


def test_without_tool_flags_auto_tool_choice_is_rejected(servers: Dict[str, InProcessServer]) -> None:
    plain = servers["plain"]
    status, body = chat(plain, WEATHER_REQUEST)
    assert status == 400
    assert (
        body["error"]["message"]
        == '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    )
    # tools without tool_choice default to "auto": the same error
    assert chat(plain, {k: v for k, v in WEATHER_REQUEST.items() if k != "tool_choice"})[0] == 400
    # no reasoning parser: the raw output, </think> included, is the content
    message = chat(plain, hello())[1]["choices"][0]["message"]
    assert message["reasoning"] is None and "\n</think>\n\n" in message["content"]


def test_metrics(servers: Dict[str, InProcessServer]) -> None:
    plain = servers["plain"]
    post_json(plain.url + "/v1/completions", {"prompt": "count me", "max_tokens": 3})
    text = http(plain.url + "/metrics")[2].decode()
    labels = f'engine="0",model_name="{MODEL_NAME}"'
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values[f"vllm:num_requests_running{{{labels}}}"] == 0
    assert values[f"vllm:num_requests_waiting{{{labels}}}"] == 0
    assert values[f"vllm:prompt_tokens_total{{{labels}}}"] > 0
    assert values[f"vllm:generation_tokens_total{{{labels}}}"] >= 3
    assert values[f"vllm:time_to_first_token_seconds_count{{{labels}}}"] >= 1
    # prometheus_client prints labels sorted by name
    assert values[f'vllm:request_success_total{{engine="0",finished_reason="length",model_name="{MODEL_NAME}"}}'] >= 1
    assert values[f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="+Inf",model_name="{MODEL_NAME}"}}'] >= 1
    assert "# TYPE vllm:time_to_first_token_seconds histogram" in text


# -- life cycle ------------------------------------------------------------------------------------


def test_port_closed_while_loading_latency_and_dead_engine(tmp_path: Path) -> None:
    node = tmp_path / "state"
    st.init_state("a2", directory=node)
    # Kept alive after the engine dies (as vLLM with this variable) to see its answers then.
    env = base_env(
        node,
        ASCEND_RT_VISIBLE_DEVICES="0",
        VLLM_SIM_LOAD_SECONDS="0.5",
        VLLM_SIM_DECODE_S_PER_TOKEN="0.03",
        VLLM_KEEP_ALIVE_ON_ENGINE_DEATH="1",
    )
    server = Server(make_model(tmp_path), ["--served-model-name", MODEL_NAME], env, tmp_path / "log")
    try:
        server.wait_for_log("Loading weights from")
        assert not server.port_open()  # bound, not listening: connections are refused
        server.wait_healthy()
        assert "Application startup complete." in server.log()
        body = {"prompt": "timing", "max_tokens": 6, "ignore_eos": True}
        start = time.monotonic()
        status, result = post_json(server.url + "/v1/completions", body)
        assert status == 200 and result["usage"]["completion_tokens"] == 6
        assert time.monotonic() - start >= 5 * 0.03  # five inter-token gaps
        server.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while http(server.url + "/health")[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert http(server.url + "/health")[0] == 503
        status, result = post_json(server.url + "/v1/completions", body)
        assert status == 500 and "EngineCore" in result["error"]["message"]
    finally:
        assert server.stop() == 0


def test_http_port_already_in_use(tmp_path: Path) -> None:
    node = tmp_path / "state"
    st.init_state("a2", directory=node)
    port = free_port()
    with socket.socket() as holder:
        holder.bind((HOST, port))
        holder.listen()
        rc, out = run_vllm(
            ["serve", str(make_model(tmp_path)), "--host", HOST, "--port", str(port)],
            base_env(node, ASCEND_RT_VISIBLE_DEVICES="0"),
        )
    assert rc == 1
    assert f"OSError: [Errno 98] Address already in use ({HOST}:{port})" in out
