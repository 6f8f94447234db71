"""A seeded, bounded fuzz of malformed requests against the PD proxy in front of simulated
vLLM prefill and decode processes (local processes, no Docker).

Each family generates its requests from one fixed seed; every request must be answered
within ``BOUND`` seconds with a status below 500 (the simulated instances validate as vLLM
does, so a malformed request is a 4xx, from the proxy or relayed), 4xx answers in vLLM's error
shape, a 200 stream ending with ``[DONE]``. After the run the proxy is alive, every instance
still healthy (no content ejected one), and /metrics counts no 5xx of the proxy's own. One
fault-matrix row per family, with its counts.
"""

from __future__ import annotations

import json
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from tests.faults import FaultRecorder
from tests.integration.proxy_sim import Backends, ProxyProcess, proxy_config
from tests.sim.vllm_helpers import HOST, MODEL_NAME, http

pytestmark = pytest.mark.fault

SEED = 20260613
PER_FAMILY = 80
BOUND = 10.0  # seconds: every request answered (or its connection closed) within this
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
ADMIN_KEY = "fuzz-admin"

# One request: (method, path, headers, body bytes) for HTTP, or raw bytes for the socket.
Request = Tuple[str, str, Dict[str, str], bytes]
JSON_HEADERS = {"Content-Type": "application/json"}

WRONG = ["x", "", [], [1, "a"], {}, {"a": 1}, -1, -(10**30), 10**30, 1.5, True, "1e999", "-5", None, 0]
SAMPLING = [
    "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "seed", "n", "max_tokens", "min_tokens", "stop", "stop_token_ids", "stream", "stream_options", "ignore_eos",
    "logprobs", "top_logprobs", "prompt_logprobs", "echo", "logit_bias", "response_format", "user", "model",
    "skip_special_tokens", "max_completion_tokens", "kv_transfer_params",
]  # fmt: skip


def chat(**extra: Any) -> Dict[str, Any]:
    return {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 4, **extra}


def completion(**extra: Any) -> Dict[str, Any]:
    return {"model": MODEL_NAME, "prompt": "Say hello", "max_tokens": 4, **extra}


def post(body: Any, path: str = CHAT) -> Request:
    return ("POST", path, dict(JSON_HEADERS), json.dumps(body).encode())


def malformed_json(rng: random.Random) -> Request:
    whole = json.dumps(rng.choice([chat(), completion(), chat(stream=True)])).encode()
    kind = rng.randrange(5)
    if kind == 0:
        data = whole[: rng.randrange(len(whole))]  # truncated
    elif kind == 1:
        cut = rng.randrange(len(whole))
        data = whole[:cut] + bytes([rng.randrange(256)]) + whole[cut + 1 :]  # one byte changed
    elif kind == 2:
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))  # garbage
    elif kind == 3:
        data = whole.replace(b"hello", b"\xff\xfe\xc3")  # invalid UTF-8
    else:
        data = rng.choice([b"NaN", b"[]", b"null", b'"text"', b"1", b"{" * 5000, b'{"messages": NaN}'])
    return ("POST", rng.choice([CHAT, COMPLETIONS]), dict(JSON_HEADERS), data)


def wrong_types(rng: random.Random) -> Request:
    field = SAMPLING[rng.randrange(len(SAMPLING))]
    value = rng.choice(WRONG)
    base = rng.choice([chat, completion])
    return post(base(**{field: value}), CHAT if base is chat else COMPLETIONS)


def bogus_messages(rng: random.Random) -> Request:
    shapes: List[Any] = [
        "hello", {}, [], [1], [None], [[]], [{"content": "x"}], [{"role": 5, "content": "x"}],
        [{"role": "user", "content": 5}], [{"role": "user", "content": {"text": "x"}}],
        [{"role": "user", "content": [{"type": "text", "text": 7}]}], [{"role": "user", "content": [5]}],
        [{"role": "user", "content": [{"no": "type"}]}], [{"role": "wizard", "content": "x"}],
        [{"role": "assistant", "content": None, "tool_calls": "x"}], [{"role": "tool", "content": []}],
        [{"role": "user", "content": "x" * rng.randrange(1, 3000)}], [{"role": "system"}],
    ]  # fmt: skip
    return post({"model": MODEL_NAME, "max_tokens": 4, "messages": rng.choice(shapes)})


def bogus_tools(rng: random.Random) -> Request:
    function = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    tools: List[Any] = [
        "x", {}, [1], [{}], [{"type": "function"}], [{"type": "code", "function": {"name": "f"}}],
        [{"function": {"name": 3}}], [{"function": {"name": "f", "parameters": "x"}}], [function],
    ]  # fmt: skip
    choices: List[Any] = [None, "auto", "none", "required", "sometimes", 5, {}, {"function": {}},
                          {"type": "function", "function": {"name": "nope"}}, ["auto"]]  # fmt: skip
    body = chat(tools=rng.choice(tools))
    choice = rng.choice(choices)
    if choice is not None:
        body["tool_choice"] = choice
    return post(body)


def huge_values(rng: random.Random) -> Request:
    body = rng.choice(
        [
            chat(max_tokens=10**12),
            chat(n=10**9),
            chat(stop=["x"] * 5000),
            chat(logit_bias={str(i): 1 for i in range(3000)}),
            completion(prompt=[7] * 200_000),  # over max_model_len
            completion(prompt=list(range(1, 3000))),
            completion(prompt=[[1, 2]] * 4, max_tokens=1),
            chat(seed=2**80),
            completion(max_tokens=-(2**63)),
            {"model": "x" * 100_000, "messages": [{"role": "user", "content": "x"}]},
        ]
    )
    path = COMPLETIONS if "prompt" in body else CHAT
    return post(body, path)


def bad_headers(rng: random.Random) -> Request:
    body = json.dumps(chat()).encode()
    kind = rng.randrange(6)
    if kind == 0:
        ctype = rng.choice(["text/plain", "application/x-www-form-urlencoded", "", "json", "application/jsonx"])
        return ("POST", CHAT, {"Content-Type": ctype}, body)
    if kind == 1:
        return (rng.choice(["GET", "PUT", "DELETE", "PATCH"]), rng.choice([CHAT, COMPLETIONS]), {}, b"")
    if kind == 2:
        path = rng.choice(["/", "/v1", "/v2/chat/completions", "/v1/chat/completions/x", "/%ff", "/admin/backends"])
        return (rng.choice(["GET", "POST"]), path, dict(JSON_HEADERS), body)
    if kind == 3:
        return ("POST", CHAT, {**JSON_HEADERS, "Authorization": rng.choice(["Bearer", "x" * 5000, "Basic abc"])}, body)
    if kind == 4:
        return ("POST", CHAT, {**JSON_HEADERS, "Content-Encoding": rng.choice(["gzip", "br", "deflate"])}, body)
    return ("POST", "/tokenize", dict(JSON_HEADERS), rng.choice([b"{", b"[]", json.dumps({"prompt": 5}).encode()]))


def raw_garbage(rng: random.Random) -> bytes:
    head = f"POST {CHAT} HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\n"
    body = json.dumps(chat())
    return rng.choice(
        [
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))),
            (head + "Content-Length: abc\r\n\r\n" + body).encode(),
            (head + f"Content-Length: {len(body)}\r\nContent-Length: 3\r\n\r\n" + body).encode(),
            (head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body).encode(),
            (head + f"Content-Length: {len(body) + 50}\r\n\r\n" + body).encode(),  # body cut short
            (head + "Content-Length: 999999999999\r\n\r\n{").encode(),
            (head + f"X-Long: {'a' * 20000}\r\n\r\n").encode(),
            b"GET / HTTP/9.9\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on a plain port
            head.encode(),  # headers never finished (the connection is half-closed)
        ]
    )


FAMILIES: Dict[str, Callable[[random.Random], Any]] = {
    "malformed JSON": malformed_json,
    "wrong types of sampling fields": wrong_types,
    "bogus messages, roles, content shapes": bogus_messages,
    "tools and tool_choice": bogus_tools,
    "huge values": huge_values,
    "bad headers, methods, paths": bad_headers,
    "raw-socket garbage": raw_garbage,
}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    root = tmp_path_factory.mktemp("proxy-fuzz")
    backends = Backends(root, count=1, VLLM_SIM_DECODE_S_PER_TOKEN="0.0005")
    timeouts = {"connect": 1, "prefill": 10, "decode_first_chunk": 10, "decode": 20, "idle": 5}
    config = proxy_config(
        backends, admin_api_key=ADMIN_KEY, timeouts={**timeouts, "client_body": 2, "client_headers": 2}
    )
    proxy = ProxyProcess(Path(root), config)
    try:
        proxy.wait_ready()
        yield proxy
    finally:
        proxy.stop()
        backends.stop()


def send_http(proxy: ProxyProcess, request: Request) -> Tuple[int, bytes, float]:
    method, path, headers, body = request
    began = time.monotonic()
    conn = HTTPConnection(HOST, proxy.port, timeout=BOUND)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), time.monotonic() - began
    except (ConnectionError, socket.timeout) as exc:
        if isinstance(exc, socket.timeout):
            return -1, b"", time.monotonic() - began  # a hang
        return 0, b"", time.monotonic() - began  # closed without an answer (allowed for raw input only)
    finally:
        conn.close()


def send_raw(proxy: ProxyProcess, data: bytes) -> Tuple[int, bytes, float]:
    began = time.monotonic()
    with socket.create_connection((HOST, proxy.port), timeout=BOUND) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        except socket.timeout:
            return -1, b"", time.monotonic() - began
        except ConnectionError:
            answer = b""
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, answer, time.monotonic() - began


def problem(status: int, raw: bytes, seconds: float, http_request: Optional[Request]) -> Optional[str]:
    """Why one answer breaks the rules, or None."""
    if status == -1 or seconds > BOUND:
        return f"no answer within {BOUND} s"
    if status >= 500:
        return f"HTTP {status}: {raw[:300]!r}"
    if http_request is None:
        return None  # raw input: an answer below 500 or a closed connection
    if status == 0:
        return "the connection closed without an answer"
    if status == 400 and "Content-Encoding" in http_request[2]:
        return None  # refused by aiohttp's parser before the proxy's code runs: its plain-text 400
    if status >= 400:
        try:
            error = json.loads(raw)["error"]
        except (ValueError, KeyError, TypeError):
            return f"HTTP {status} not in vLLM's error shape: {raw[:200]!r}"
        if not isinstance(error, dict) or not error.get("message"):
            return f"HTTP {status} error without a message: {raw[:200]!r}"
    elif status == 200 and raw.startswith(b"data:") and not raw.rstrip().endswith(b"data: [DONE]"):
        return f"a 200 stream without [DONE]: {raw[-200:]!r}"
    return None


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz_family(deployment: ProxyProcess, family: str, fault: FaultRecorder) -> None:
    fault.describe(
        case=f"fuzz: {family}",
        layer="proxy",
        injected=f"{PER_FAMILY} generated requests, seed {SEED}, proxy in front of simulated vLLM P and D",
        expected=f"every one answered within {BOUND:g} s, none 5xx, 4xx in vLLM's error shape; "
        "proxy alive, no instance ejected, no proxy-origin error on /metrics",
    )
    rng = random.Random(f"{SEED}-{family}")
    generate = FAMILIES[family]
    requests = [generate(rng) for _ in range(PER_FAMILY)]
    began = time.monotonic()

    def one(item: Any) -> Tuple[int, bytes, float, Optional[Request]]:
        if isinstance(item, bytes):
            return (*send_raw(deployment, item), None)
        return (*send_http(deployment, item), item)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, requests))
    elapsed = time.monotonic() - began
    problems = [p for r in results if (p := problem(*r)) is not None]
    statuses: Dict[int, int] = {}
    for status, *_ in results:
        statuses[status] = statuses.get(status, 0) + 1
    _, _, health = http(deployment.url + "/health")
    _, _, metrics = http(deployment.url + "/metrics?relay=false")
    proxy_errors = [line for line in metrics.decode().splitlines() if 'origin="proxy"' in line]
    state = json.loads(health)
    counts = {phase: state[phase] for phase in ("prefill", "decode")}
    alive = deployment.proc.poll() is None
    slowest = max(r[2] for r in results)
    summary = (
        f"{len(results)} requests in {elapsed:.1f} s (slowest {slowest:.2f} s), statuses "
        f"{dict(sorted(statuses.items()))}, {len(problems)} broke the rules; instances {counts}; "
        f"proxy-origin error series {len(proxy_errors)}; proxy alive {alive}"
    )
    print(f"fuzz {family!r}: {summary}")
    fault.observe(summary)
    assert not problems, problems[:5]
    assert alive and state["status"] == "ok"
    assert all(c["healthy"] == c["total"] for c in counts.values()), counts
    assert not proxy_errors, proxy_errors
