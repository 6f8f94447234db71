# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ascend.vllm.endpoint_probe, run in-process against the project's simulated vLLM server.

The servers (``sim/ascend_sim/vllm``) run inside the test process on 127.0.0.1, each on its
own event loop thread, started as the deployment guide starts MiniMax-M2.7 (tool calling with
the minimax_m2 parser, ``minimax_m2_append_think`` reasoning), or without the tool flags, or
with ``--api-key``. Like the real server they keep their port closed while "loading the
weights", answer 400 to a tool call without the tool flags, and send an error event in a 200
stream when the engine dies.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from tests.unit.plugins.modules.module_runner import ModuleExit, module_failed, module_ok, run_module

ROOT = Path(__file__).resolve().parents[4]
SIM = ROOT / "sim"
if str(SIM) not in sys.path:
    sys.path.insert(0, str(SIM))

from ansible_collections.ascend.vllm.plugins.modules import endpoint_probe  # noqa: E402
from ascend_sim import state as st  # noqa: E402  (needs the path set up above)
from tests.sim.vllm_helpers import API_KEY, HOST, MODEL_NAME, InProcessServer, make_model, sim_environ  # noqa: E402

TOOLS = ["--enable-auto-tool-choice", "--tool-call-parser", "minimax_m2"]
GUIDE = [*TOOLS, "--reasoning-parser", "minimax_m2_append_think"]
COMMON = ["--served-model-name", MODEL_NAME, "--max-model-len", "8192"]


def run(args: Dict[str, Any]) -> ModuleExit:
    return run_module(endpoint_probe.main, args)


def ok(args: Dict[str, Any]) -> Dict[str, Any]:
    return module_ok(endpoint_probe.main, args)


def failed(args: Dict[str, Any]) -> Dict[str, Any]:
    return module_failed(endpoint_probe.main, args)


def probe_args(server: Any, **extra: Any) -> Dict[str, Any]:
    """Fast settings for a local server; the proxy environment is not used."""
    return {
        "url": server if isinstance(server, str) else server.url,
        "served_model_name": MODEL_NAME,
        "timeout": 10,
        "health_timeout": 5,
        "health_interval": 0.1,
        "use_proxy": False,
        **extra,
    }


# -- servers ---------------------------------------------------------------------------------------


class Node:
    """A simulated A3 node's driver state and a model directory, to start servers from."""

    def __init__(self, root: Path) -> None:
        self.state = root / "state"
        st.init_state("a3", directory=self.state)
        self.model = make_model(root)

    def server(self, args: List[str], chip: int, wait: bool = True) -> InProcessServer:
        return InProcessServer(self.model, [*COMMON, *args], chips=[chip], state_dir=self.state, wait=wait)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    return Node(tmp_path_factory.mktemp("endpoint-probe"))


@pytest.fixture(scope="module")
def servers(node: Node) -> Iterator[Dict[str, InProcessServer]]:
    """Long-lived servers: as in the guide, without the tool flags, and with --api-key."""
    specs = {"guide": (GUIDE, 0), "plain": ([], 1), "keyed": ([*GUIDE, "--api-key", API_KEY], 2)}
    started: Dict[str, InProcessServer] = {}
    with sim_environ(VLLM_SIM_LOAD_SECONDS="0"):
        try:
            for name, (args, chip) in specs.items():
                started[name] = node.server(args, chip)
            yield started
        finally:
            for server in started.values():
                server.stop()


# -- success ---------------------------------------------------------------------------------------


def test_every_probe_passes_on_the_guides_server(servers: Dict[str, InProcessServer]) -> None:
    server = servers["guide"]
    result = ok(probe_args(server, tool_call=True, stream=True))
    assert result["changed"] is False
    assert set(result) == {
        "changed",
        "base_url",
        "health_wait_s",
        "health_attempts",
        "models",
        "chat",
        "tool_call",
        "stream",
    }
    assert result["base_url"] == server.url
    assert result["health_attempts"] == 1
    assert 0 <= result["health_wait_s"] < 5
    assert result["models"] == [MODEL_NAME]

    chat = result["chat"]
    assert set(chat) == {"latency_s", "completion_tokens", "finish_reason", "content_excerpt"}
    assert chat["latency_s"] > 0
    assert chat["completion_tokens"] > 0
    assert chat["finish_reason"] == "stop"
    # minimax_m2_append_think keeps the thinking in the content
    assert chat["content_excerpt"].startswith("<think>The user wrote: Hello, who are you")

    assert result["tool_call"] == {
        "name": "get_current_weather",
        "arguments": {"city": "上海"},
        "finish_reason": "tool_calls",
        "latency_s": result["tool_call"]["latency_s"],
    }
    assert result["tool_call"]["latency_s"] > 0

    stream = result["stream"]
    assert set(stream) == {"ttft_s", "total_s", "chunks", "completion_tokens", "finish_reason", "content_excerpt"}
    assert 0 < stream["ttft_s"] <= stream["total_s"]
    # the role chunk, one chunk per token, the usage chunk
    assert stream["chunks"] == stream["completion_tokens"] + 2
    assert stream["completion_tokens"] == chat["completion_tokens"]
    assert stream["finish_reason"] == "stop"
    assert stream["content_excerpt"].startswith("<think>The user wrote: Hello")


def test_check_mode_runs_the_same_probes(servers: Dict[str, InProcessServer]) -> None:
    result = ok(probe_args(servers["guide"], tool_call=True, _ansible_check_mode=True))
    assert result["changed"] is False
    assert result["tool_call"]["arguments"] == {"city": "上海"}
    assert result["chat"]["completion_tokens"] > 0


def test_openai_base_url_and_health_and_models_only(servers: Dict[str, InProcessServer]) -> None:
    result = ok(probe_args(servers["guide"].url + "/v1/", chat=False))
    assert result["base_url"] == servers["guide"].url
    assert result["models"] == [MODEL_NAME]
    assert "chat" not in result and "tool_call" not in result and "stream" not in result


def test_stream_time_to_first_token_is_measured_as_the_tokens_arrive(node: Node) -> None:
    # 20 ms between tokens: a TTFT taken after the whole body would equal the total time.
    with sim_environ(VLLM_SIM_LOAD_SECONDS="0", VLLM_SIM_DECODE_S_PER_TOKEN="0.02"):
        server = node.server(GUIDE, 3)
        try:
            result = ok(probe_args(server, chat=False, stream=True, max_tokens=30))
        finally:
            server.stop()
    stream = result["stream"]
    assert stream["completion_tokens"] == 30 and stream["finish_reason"] == "length"
    assert stream["total_s"] - stream["ttft_s"] >= 29 * 0.02 * 0.9
    assert 0 < stream["ttft_s"] < stream["total_s"] / 2


# -- /health ---------------------------------------------------------------------------------------


def test_health_waits_while_the_weights_load(node: Node) -> None:
    with sim_environ(VLLM_SIM_LOAD_SECONDS="1"):
        server = node.server(GUIDE, 4, wait=False)
        try:
            start = time.monotonic()
            time.sleep(0.2)
            assert not server.port_open()  # bound but not listening: connections are refused
            result = ok(probe_args(server, health_timeout=20))
            assert server.started.done()
        finally:
            server.stop()
    assert result["health_attempts"] >= 2  # the first one was refused
    assert 0.5 <= result["health_wait_s"] <= time.monotonic() - start
    assert result["chat"]["completion_tokens"] > 0


def test_health_deadline_names_the_wait_and_the_last_error(node: Node) -> None:
    with sim_environ(VLLM_SIM_LOAD_SECONDS="60"):
        server = node.server(GUIDE, 5, wait=False)
        try:
            start = time.monotonic()
            result = failed(probe_args(server, health_timeout=1, health_interval=0.2))
            elapsed = time.monotonic() - start
        finally:
            server.stop()
    assert 1 <= elapsed < 5  # the deadline, plus the last attempt and the failure
    msg = result["msg"]
    assert msg.startswith(f"health: GET {server.url}/health: not healthy after waiting 1.")
    assert "(health_timeout=1 s, " in msg
    assert msg.endswith("last error: connection refused ([Errno 111] Connection refused)")
    assert result["step"] == "health"
    assert result["http_status"] is None and result["response_excerpt"] is None
    assert result["base_url"] == server.url
    assert "models" not in result


def test_health_timeout_zero_checks_once(node: Node) -> None:
    with sim_environ(VLLM_SIM_LOAD_SECONDS="60"):
        server = node.server(GUIDE, 6, wait=False)
        try:
            result = failed(probe_args(server, health_timeout=0))
        finally:
            server.stop()
    assert "not healthy after one attempt (health_timeout=0); last error: connection refused" in result["msg"]


# -- failures of the later steps -------------------------------------------------------------------


def test_served_name_not_served(servers: Dict[str, InProcessServer]) -> None:
    result = failed(probe_args(servers["guide"], served_model_name="MiniMax-M2.5"))
    url = servers["guide"].url
    assert result["step"] == "models" and result["http_status"] == 200
    assert result["msg"].startswith(
        f"models: GET {url}/v1/models: 'MiniMax-M2.5' is not served; the server serves ['MiniMax-M2.7']"
    )
    assert ' - response: {"object":"list","data":[{"id":"MiniMax-M2.7"' in result["msg"]
    assert result["health_attempts"] == 1  # the steps that passed are in the failure result
    assert "models" not in result


def test_tool_call_on_a_server_without_the_tool_flags(servers: Dict[str, InProcessServer]) -> None:
    result = failed(probe_args(servers["plain"], tool_call=True))
    url = servers["plain"].url
    assert result["step"] == "tool_call" and result["http_status"] == 400
    assert result["msg"] == (
        f"tool_call: POST {url}/v1/chat/completions: HTTP 400 (the server runs without tool calling: "
        "start vLLM with --enable-auto-tool-choice --tool-call-parser minimax_m2) - response: "
        '{"error":{"message":"\\"auto\\" tool choice requires --enable-auto-tool-choice and --tool-call-parser '
        'to be set","type":"BadRequestError","param":null,"code":400}}'
    )
    assert result["response_excerpt"].startswith('{"error":{"message":')
    # the chat step passed before (no reasoning parser: the raw output is the content)
    assert "</think>" in result["chat"]["content_excerpt"]


def test_api_key(servers: Dict[str, InProcessServer]) -> None:
    keyed = servers["keyed"]
    result = failed(probe_args(keyed))
    assert result["step"] == "models" and result["http_status"] == 401
    assert result["msg"] == (
        f"models: GET {keyed.url}/v1/models: HTTP 401 (the server wants an API key (it runs with --api-key): "
        'set api_key) - response: {"error":"Unauthorized"}'
    )
    assert result["health_attempts"] == 1  # /health is not protected

    wrong = failed(probe_args(keyed, api_key="sk-wrong"))
    assert "HTTP 401 (the server rejected api_key" in wrong["msg"]
    assert "sk-wrong" not in wrong["msg"]

    good = ok(probe_args(keyed, api_key=API_KEY, tool_call=True, stream=True, headers={"Authorization": "x"}))
    assert good["tool_call"]["name"] == "get_current_weather"
    assert good["stream"]["ttft_s"] > 0


def test_headers_are_sent(servers: Dict[str, InProcessServer]) -> None:
    result = ok(probe_args(servers["keyed"], headers={"Authorization": f"Bearer {API_KEY}"}))
    assert result["models"] == [MODEL_NAME]


def test_stream_error_event_fails_the_step(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine dies mid-stream: the server has sent 200, so the error comes as an event."""
    with sim_environ(VLLM_SIM_LOAD_SECONDS="0", VLLM_SIM_DECODE_S_PER_TOKEN="0.05"):
        server = node.server(GUIDE, 7)
        engine = server.server.engine

        class KillingProbe(endpoint_probe.StreamProbe):
            def feed(self, data: bytes, now: float) -> None:
                super().feed(data, now)
                server.loop.call_soon_threadsafe(engine.kill)

        monkeypatch.setattr(endpoint_probe, "StreamProbe", KillingProbe)
        try:
            result = failed(probe_args(server, chat=False, stream=True, max_tokens=100))
        finally:
            server.stop()
    assert result["step"] == "stream" and result["http_status"] == 200
    assert result["msg"].startswith(
        f"stream: POST {server.url}/v1/chat/completions: the stream (HTTP 200) carried error event: "
        "EngineCore encountered an issue."
    )
    assert '"type":"InternalServerError"' in result["response_excerpt"]
    assert result["models"] == [MODEL_NAME]


def test_server_gone_after_health_fails_the_next_step_by_name(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    with sim_environ(VLLM_SIM_LOAD_SECONDS="0"):
        server = node.server(GUIDE, 8)
        real_health = endpoint_probe._health
        stopped: List[bool] = []

        def health_then_stop(*args: Any) -> Dict[str, Any]:
            result = real_health(*args)
            server.stop()
            stopped.append(True)
            return result

        monkeypatch.setattr(endpoint_probe, "_health", health_then_stop)
        try:
            result = failed(probe_args(server))
        finally:
            if not stopped:
                server.stop()
    assert result["msg"] == f"models: GET {server.url}/v1/models: connection refused ([Errno 111] Connection refused)"
    assert result["step"] == "models" and result["http_status"] is None
    assert result["health_attempts"] == 1


# -- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        ({"url": "10.0.0.1:8000"}, "url must be an http:// or https:// URL with a host, got '10.0.0.1:8000'"),
        ({"timeout": 0}, "timeout must be more than 0, got 0"),
        ({"health_interval": -1}, "health_interval must be more than 0, got -1"),
        ({"health_timeout": -5}, "health_timeout must be 0 or more, got -5"),
        ({"max_tokens": 0}, "max_tokens must be at least 1, got 0"),
        ({"tool_call_max_tokens": 0}, "tool_call_max_tokens must be at least 1, got 0"),
        ({"served_model_name": " "}, "served_model_name must not be empty"),
        ({"prompt": ""}, "prompt must not be empty"),
    ],
)
def test_invalid_options(extra: Dict[str, Any], msg: str) -> None:
    result = failed(probe_args(f"http://{HOST}:9", **extra))
    assert result["msg"] == msg
