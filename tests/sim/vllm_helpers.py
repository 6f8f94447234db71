"""Helpers of the simulated-vLLM tests: model dirs, free ports, server processes, HTTP/SSE.

Everything runs on 127.0.0.1. Servers are real ``python -m ascend_sim.vllm serve`` processes
with near-zero load time and latencies; their log goes to a file (a pipe nobody reads would
block them).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.sse import SSEEvent, SSEParser

SIM = Path(__file__).resolve().parents[2] / "sim"
if str(SIM) not in sys.path:
    sys.path.insert(0, str(SIM))

HOST = "127.0.0.1"
MODEL_NAME = "MiniMax-M2.7"
API_KEY = "sk-sim-test"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get weather by city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
WEATHER_REQUEST = {
    "model": MODEL_NAME,
    "messages": [{"role": "user", "content": "请查询上海的天气。"}],
    "tools": [WEATHER_TOOL],
    "tool_choice": "auto",
    "temperature": 0,
    "max_tokens": 512,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int) -> int:
    """A base port with ``count`` free ports after it (for KV side channels)."""
    for _ in range(200):
        base = free_port()
        socks = []
        try:
            for i in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((HOST, base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


def make_model(root: Path, name: str = "MiniMax-M2.7-w8a8-QuaRot", max_pos: int = 196608) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(
        json.dumps({"architectures": ["MiniMaxM2ForCausalLM"], "max_position_embeddings": max_pos})
    )
    return path


# What every simulated server of these tests runs with: fast, loopback only.
SIM_ENV = {
    "ASCEND_SIM_SKIP_DEVICE_CHECK": "1",
    "VLLM_SIM_LOAD_SECONDS": "0.2",
    "VLLM_SIM_PREFILL_S_PER_TOKEN": "0",
    "VLLM_SIM_DECODE_S_PER_TOKEN": "0",
    "VLLM_HOST_IP": HOST,
    "VLLM_SIM_KV_TIMEOUT": "2",
    "VLLM_SIM_DP_LOG_INTERVAL": "0.2",
    "VLLM_SIM_DRAIN_SECONDS": "1",
}


def base_env(state_dir: Path, **extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(SIM), "ASCEND_SIM_STATE_DIR": str(state_dir), **SIM_ENV})
    env.pop("ASCEND_RT_VISIBLE_DEVICES", None)
    env.pop("VLLM_API_KEY", None)
    env.update(extra)
    return env


def run_vllm(args: List[str], env: Dict[str, str], timeout: float = 20) -> Tuple[int, str]:
    """Run the ``vllm`` CLI to completion; returns (exit code, stdout+stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_sim.vllm", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout


class LoggedProcess:
    """A Python program as a subprocess on 127.0.0.1:``port``, its output in a log file."""

    def __init__(self, argv: List[str], env: Dict[str, str], log_path: Path, port: int) -> None:
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, *argv], env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


class Server(LoggedProcess):
    """A ``vllm serve`` subprocess on 127.0.0.1."""

    def __init__(self, model: Path, args: List[str], env: Dict[str, str], log_path: Path, port: Optional[int] = None):
        port = port or free_port()
        argv = ["-m", "ascend_sim.vllm", "serve", str(model), "--host", HOST, "--port", str(port), *args]
        super().__init__(argv, env, log_path, port)

    def port_open(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex((HOST, self.port)) == 0

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited ({self.proc.returncode}) before logging {text!r}:\n{self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} in the log within {timeout}s:\n{self.log()}")

    def wait_healthy(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _, _ = http(self.url + "/health", timeout=0.5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not healthy within {timeout}s:\n{self.log()}")


@contextlib.contextmanager
def sim_environ(**extra: str) -> Iterator[None]:
    """``SIM_ENV`` (plus ``extra``) in this process's environment, for in-process servers."""
    saved = dict(os.environ)
    os.environ.update({**SIM_ENV, **extra})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class InProcessServer:
    """A simulated server inside the test process (its own event loop in a thread).

    Much faster to start than a process; for tests of the API, not of the process life cycle.
    Call inside ``sim_environ()`` (latencies and KV settings come from the environment).
    """

    def __init__(self, model: Path, args: List[str], *, chips: List[int], state_dir: Path, wait: bool = True) -> None:
        from ascend_sim.vllm import logs
        from ascend_sim.vllm.config import build_config
        from ascend_sim.vllm.options import parse_serve_args
        from ascend_sim.vllm.serve import Server as VllmServer

        # Their logs would land in whatever test's captured stderr; drop them while any runs.
        InProcessServer._running += 1
        if logs.current_stream() is None:
            logs.set_stream(InProcessServer._devnull)
        self.port = free_port()
        cfg = build_config(parse_serve_args([str(model), "--host", HOST, "--port", str(self.port), *args]))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = VllmServer(cfg, visible_devices=chips, state_dir=state_dir, handle_signals=False)
        self.started = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop)
        if wait:
            self.started.result(20)

    def port_open(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex((HOST, self.port)) == 0

    _running = 0
    _devnull = open(os.devnull, "w")  # noqa: SIM115 - shared by every in-process server

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        from ascend_sim.vllm import logs

        try:
            if self.started.done():
                asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(20)
            else:  # still starting (e.g. waiting for its DP group): abandon the startup
                self.loop.call_soon_threadsafe(self.server.stop.set)
                with contextlib.suppress(BaseException):
                    self.started.result(20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            InProcessServer._running -= 1
            if InProcessServer._running == 0 and logs.current_stream() is InProcessServer._devnull:
                logs.set_stream(None)


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """The simulated vLLM's log lines written meanwhile (even while in-process servers run)."""
    from ascend_sim.vllm import logs

    previous = logs.current_stream()
    buffer = io.StringIO()
    logs.set_stream(buffer)
    try:
        yield buffer
    finally:
        logs.set_stream(previous)


def http(
    url: str,
    body: Any = None,
    headers: Optional[Dict[str, str]] = None,
    method: Optional[str] = None,
    timeout: float = 10,
) -> Tuple[int, Dict[str, str], bytes]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def post_json(url: str, body: Any, headers: Optional[Dict[str, str]] = None, timeout: float = 10) -> Tuple[int, Any]:
    status, _, raw = http(url, body, headers, timeout=timeout)
    return status, json.loads(raw) if raw else None


def event_payload(event: SSEEvent) -> Any:
    """The data of one server-sent event: decoded JSON, or the string ``[DONE]``."""
    return event.data if event.data == "[DONE]" else json.loads(event.data)


def stream_events(raw: bytes) -> List[Any]:
    """The payloads of a whole SSE body (see :func:`event_payload`); it must not end inside an event."""
    parser = SSEParser()
    events = [event_payload(event) for event in parser.feed(raw)]
    assert not parser.pending, f"the body ends inside an event: {parser.pending[-300:]!r}"
    return events


def sse(url: str, body: Any, headers: Optional[Dict[str, str]] = None, timeout: float = 10) -> Tuple[int, List[Any]]:
    """POST and parse an SSE body into its payloads (JSON, or the "[DONE]" string)."""
    status, _, raw = http(url, body, headers, timeout=timeout)
    return status, stream_events(raw)
