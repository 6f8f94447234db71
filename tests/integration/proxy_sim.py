"""The PD proxy as a real process in front of simulated vLLM prefill / decode processes.

Everything runs on 127.0.0.1: each simulated instance is a ``vllm serve`` process with a
Mooncake KV side channel (tests/sim/vllm_helpers.py); the proxy is ``python -m
ascend_pd_proxy`` with a configuration file, as the pd_proxy role runs it in a container.
"""

from __future__ import annotations

import json
import os
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.sse import SSEParser
from tests.sim.vllm_helpers import (
    HOST,
    MODEL_NAME,
    LoggedProcess,
    Server,
    base_env,
    event_payload,
    free_port,
    free_port_block,
    http,
    make_model,
    stream_events,
)

PROXY_DIR = Path(__file__).resolve().parents[2] / "proxy"


def kv_transfer_config(role: str, kv_port: int, engine_id: str) -> str:
    sides = {"dp_size": 1, "tp_size": 1}
    return json.dumps(
        {
            "kv_connector": "MooncakeConnectorV1",
            "kv_role": role,
            "kv_port": str(kv_port),
            "engine_id": engine_id,
            "kv_connector_extra_config": {"use_ascend_direct": True, "prefill": sides, "decode": sides},
        }
    )


class Backends:
    """``count`` prefill and ``count`` decode instances (TP 1), one simulated node per role."""

    def __init__(self, root: Path, count: int = 2, **env: str) -> None:
        from ascend_sim import state as st  # importable once vllm_helpers put sim/ on sys.path

        self.root = root
        self.model = make_model(root)
        self.env = env
        self.nodes = {role: root / f"{role}-node" for role in ("prefill", "decode")}
        for node in self.nodes.values():
            st.init_state("a3", directory=node)
        self.servers: Dict[str, List[Server]] = {"prefill": [], "decode": []}
        try:
            for role in ("prefill", "decode"):
                for chip in range(count):
                    self.servers[role].append(self.start(role, chip))
            for server in self.all():
                server.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def start(self, role: str, chip: int, port: Optional[int] = None) -> Server:
        kv_role = "kv_producer" if role == "prefill" else "kv_consumer"
        args = ["--served-model-name", MODEL_NAME, "--enable-auto-tool-choice", "--tool-call-parser", "minimax_m2"]
        args += ["--kv-transfer-config", kv_transfer_config(kv_role, free_port_block(1), f"{role[0]}{chip}")]
        # A killed engine keeps answering 503/500 (vLLM with VLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1)
        # instead of exiting after the watchdog: the proxy tests look at that state.
        keep = {"VLLM_KEEP_ALIVE_ON_ENGINE_DEATH": "1", **self.env}
        env = base_env(self.nodes[role], ASCEND_RT_VISIBLE_DEVICES=str(chip), VLLM_SIM_ADMIN="1", **keep)
        return Server(self.model, args, env, self.root / f"{role}{chip}-{time.monotonic_ns()}.log", port=port)

    def all(self) -> List[Server]:
        return self.servers["prefill"] + self.servers["decode"]

    def urls(self, role: str) -> List[str]:
        return [s.url for s in self.servers[role]]

    def stop(self) -> None:
        for server in self.all():
            server.stop()


class ProxyProcess(LoggedProcess):
    """``python -m ascend_pd_proxy --config FILE`` on a free port; the config is a dict."""

    def __init__(self, root: Path, config: Dict[str, Any]) -> None:
        self.config_path = root / "proxy.json"
        self.port = free_port()
        self.write_config(config)
        env = {**os.environ, "PYTHONPATH": str(PROXY_DIR)}
        argv = ["-m", "ascend_pd_proxy", "--config", str(self.config_path)]
        super().__init__(argv, env, root / "proxy.log", self.port)

    def write_config(self, config: Dict[str, Any]) -> None:
        self.config_path.write_text(json.dumps({**config, "listen": {"host": HOST, "port": self.port}}))

    def wait_ready(self, timeout: float = 20) -> Dict[str, Any]:
        """Until /health is 200 (a healthy prefill and decode); returns its body."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _, raw = http(self.url + "/health", timeout=1)
                last = json.loads(raw)
                if status == 200:
                    return dict(last)
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"proxy not ready within {timeout}s (last: {last}):\n{self.log()}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30) -> int:  # a drain may take a while
        return super().stop(timeout)


def proxy_config(backends: Backends, **extra: Any) -> Dict[str, Any]:
    config: Dict[str, Any] = {
        "prefill": {"instances": [{"url": u, "name": f"prefill{i}"} for i, u in enumerate(backends.urls("prefill"))]},
        "decode": {"instances": [{"url": u, "name": f"decode{i}"} for i, u in enumerate(backends.urls("decode"))]},
        "health": {"interval": 0.2, "timeout": 2, "failures_to_eject": 2, "successes_to_admit": 2},
        "timeouts": {"connect": 1, "prefill": 10, "decode_first_chunk": 10, "decode": 20, "idle": 5},
    }
    config.update(extra)
    return config


def chat(content: str, max_tokens: int = 16, stream: bool = False) -> Dict[str, Any]:
    body: Dict[str, Any] = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
    return body


class OpenStream:
    """A streaming POST read event by event, so a test can act while the stream is open."""

    def __init__(self, url: str, body: Dict[str, Any], timeout: float = 20) -> None:
        host, port = url.split("//", 1)[1].split(":")
        self.conn = HTTPConnection(host, int(port), timeout=timeout)
        self.conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        self.response = self.conn.getresponse()
        self._parser = SSEParser()

    def events(self) -> Iterator[Any]:
        while True:
            data = self.response.read1(65536)
            if not data:
                return
            for event in self._parser.feed(data):
                yield event_payload(event)

    def close(self) -> None:
        self.conn.close()


def judge(status: int, raw: bytes, stream: bool) -> Tuple[str, str]:
    """Classify one client result: ("ok", text) / ("error", message); AssertionError if it is silent.

    Silent means what the upstream example proxy does on a decode failure: HTTP 200 with an
    empty body, or a stream that just stops.
    """
    if status != 200:
        error = json.loads(raw)["error"]
        assert error["message"], raw
        return "error", f"HTTP {status}: {error['message']}"
    assert raw, "HTTP 200 with an empty body"
    if not stream:
        message = json.loads(raw)["choices"][0]["message"]
        assert message["content"] or message["tool_calls"], raw
        return "ok", message["content"] or ""
    events = stream_events(raw)
    assert events and events[-1] == "[DONE]", f"stream without [DONE]: {raw[-300:]!r}"
    errors = [e["error"]["message"] for e in events[:-1] if "error" in e]
    if errors:
        return "error", f"stream error event: {errors[0]}"
    text = "".join(c["delta"].get("content") or "" for e in events[:-1] for c in e.get("choices", []))
    assert text, f"a stream with neither content nor an error event: {raw[:300]!r}"
    return "ok", text
