# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fake vLLM instances and an in-process PD proxy, for the proxy's request-flow tests.

A :class:`FakeBackend` is an ``aiohttp.web`` server on 127.0.0.1 that records every generation
request (path, headers, JSON body) and answers like a vLLM prefill or decode instance, or as
its ``behaviour`` says (see :func:`answer`, :func:`hang`, :func:`stream`). :func:`running`
starts fakes and a proxy in front of them, with short timeouts, and waits until every backend
passed its first health check. Tests are ``async def`` functions wrapped by :func:`async_test`,
which runs each on its own event loop (``asyncio.run``) under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Mapping, Optional

import aiohttp
from aiohttp import web

from ansible_collections.ascend.vllm.plugins.module_utils.sse import SSEParser
from ascend_pd_proxy.config import parse
from ascend_pd_proxy.server import Proxy, make_runner

HOST = "127.0.0.1"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MODEL = "minimax-m2.7"
TEST_DEADLINE = 20.0  # seconds; a test that hangs fails instead of stalling the run

# Short enough for a quick suite, long enough for a loaded 2-core machine.
TIMEOUTS = {"connect": 1, "prefill": 0.5, "decode_first_chunk": 0.5, "decode": 0.5, "idle": 0.3, "client_body": 2}
# A long interval: after the first round, checks run only when a test asks for them by config.
HEALTH = {"interval": 3600, "timeout": 0.5, "failures_to_eject": 2, "successes_to_admit": 2}

Handler = Callable[["FakeBackend", web.Request, Dict[str, Any]], Awaitable[web.StreamResponse]]


def async_test(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an ``async def`` test on a fresh event loop (pytest fixtures still reach it)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), TEST_DEADLINE))

    return run


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: still false after {timeout} s")
        await asyncio.sleep(0.01)


# --- what a backend answers -------------------------------------------------------------------------


@dataclass
class Seen:
    """One request a fake backend received."""

    path: str
    headers: Mapping[str, str]
    body: Dict[str, Any]

    @property
    def request_id(self) -> str:
        return self.headers.get("X-Request-Id", "")


def tokens_of(backend: FakeBackend) -> List[str]:
    """The text a fake decode instance generates: it names the instance."""
    return ["hello", " from", f" {backend.name}", " 你好"]


def kv_params_of(backend: FakeBackend) -> Dict[str, Any]:
    """What a fake prefill instance answers: where its KV cache waits (it names the instance)."""
    return {
        "do_remote_prefill": True,
        "do_remote_decode": False,
        "remote_engine_id": f"engine-{backend.name}",
        "remote_block_ids": [1, 2, 3],
        "remote_host": HOST,
        "remote_port": backend.port,
    }


def chunk(path: str, text: str) -> Dict[str, Any]:
    if path == CHAT:
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": MODEL, "choices": [choice]}
    return {"id": "cmpl-1", "object": "text_completion", "model": MODEL, "choices": [{"index": 0, "text": text}]}


def completion(path: str, text: str) -> Dict[str, Any]:
    if path == CHAT:
        message = {"role": "assistant", "content": text}
        return {"id": "chatcmpl-1", "object": "chat.completion", "model": MODEL, "choices": [{"message": message}]}
    return {"id": "cmpl-1", "object": "text_completion", "model": MODEL, "choices": [{"text": text}]}


def sse(*objects: Any, done: bool = True) -> bytes:
    """An SSE body as vLLM writes it: one ``data:`` event per object, then ``[DONE]``."""
    events = [f"data: {json.dumps(o, ensure_ascii=False)}\n\n" for o in objects]
    return ("".join(events) + ("data: [DONE]\n\n" if done else "")).encode()


def stream_body(backend: FakeBackend, path: str, done: bool = True) -> bytes:
    return sse(*(chunk(path, t) for t in tokens_of(backend)), done=done)


async def vllm_answer(backend: FakeBackend, request: web.Request, body: Dict[str, Any]) -> web.StreamResponse:
    """The default: a prefill answer with kv_transfer_params, or a decode answer (SSE or JSON)."""
    if backend.phase == "prefill":
        usage = {"prompt_tokens": 12, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 8}}
        answer = {**completion(request.path, "x"), "usage": usage, "kv_transfer_params": kv_params_of(backend)}
        return web.json_response(answer)
    if body.get("stream"):
        return await _write_stream(request, [stream_body(backend, request.path)], 0.0, None, "eof")
    return web.json_response(completion(request.path, "".join(tokens_of(backend))))


def answer(status: int, body: Any) -> Handler:
    """Answer ``status`` with a JSON ``body``."""

    async def handler(_backend: FakeBackend, _request: web.Request, _body: Dict[str, Any]) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return handler


def hang() -> Handler:
    """Never answer (until the proxy gives up and closes the connection)."""

    async def handler(_backend: FakeBackend, _request: web.Request, _body: Dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    return handler


def delayed(seconds: float) -> Handler:
    """Answer like vLLM, after ``seconds`` (a long prompt's prefill)."""

    async def handler(backend: FakeBackend, request: web.Request, body: Dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return await vllm_answer(backend, request, body)

    return handler


def stream(*pieces: bytes, delay: float = 0.0, gate: Optional[asyncio.Event] = None, end: str = "eof") -> Handler:
    """A 200 SSE answer written as ``pieces``, one write each, ``delay`` seconds apart.

    ``gate``: wait for it after the first piece. ``end``: ``eof`` (a clean end of the body),
    ``drop`` (the connection is cut: an incomplete chunked body) or ``hang`` (nothing more).
    """

    async def handler(_backend: FakeBackend, request: web.Request, _body: Dict[str, Any]) -> web.StreamResponse:
        return await _write_stream(request, list(pieces), delay, gate, end)

    return handler


async def _write_stream(
    request: web.Request, pieces: List[bytes], delay: float, gate: Optional[asyncio.Event], end: str
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for i, piece in enumerate(pieces):
        if i and delay:
            await asyncio.sleep(delay)
        await response.write(piece)
        if i == 0 and gate is not None:
            await gate.wait()
    if end == "hang":
        await asyncio.sleep(3600)
    if end == "drop":
        assert request.transport is not None
        request.transport.abort()
        return response
    await response.write_eof()
    return response


def pieces_of(data: bytes, size: int) -> List[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# --- the fake instance -----------------------------------------------------------------------------


class FakeBackend:
    """One fake vLLM instance: /health, /v1/models and the two generation endpoints."""

    def __init__(self, name: str, phase: str) -> None:
        self.name, self.phase = name, phase
        self.seen: List[Seen] = []  # every request but /health
        self.health_status = 200
        self.metrics_text = ""  # what GET /metrics answers (vLLM's Prometheus text)
        self.behaviour: Optional[Handler] = None  # None: answer like vLLM (vllm_answer)
        self.tokenizer_behaviour: Optional[Handler] = None  # None: /tokenize etc. answer like vLLM
        self.cancelled = 0  # generation handlers cancelled because the proxy went away
        self.port = 0
        self.runner: Optional[web.AppRunner] = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(CHAT, self._generate)
        app.router.add_post(COMPLETIONS, self._generate)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/tokenize", self._tokenizer)
        app.router.add_post("/detokenize", self._tokenizer)
        app.router.add_get("/tokenizer_info", self._tokenizer)
        app.router.add_get("/metrics", self._metrics)
        # Cancel a handler when its client (the proxy) goes away, as vLLM aborts the request.
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the port (a later request is refused); ``start()`` opens the same port again."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(status=self.health_status)

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.metrics_text, content_type="text/plain")

    async def _models(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.path, request.headers.copy(), {}))
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": self.name}]})

    async def _tokenizer(self, request: web.Request) -> web.StreamResponse:
        """vLLM's tokenizer routes: one id per character here, and the instance named."""
        body = await request.json() if request.can_read_body else {}
        self.seen.append(Seen(request.path, request.headers.copy(), body))
        if self.tokenizer_behaviour is not None:
            return await self.tokenizer_behaviour(self, request, body)
        if request.path == "/tokenize":
            ids = [ord(c) for c in body["prompt"]]
            return web.json_response({"count": len(ids), "max_model_len": 4096, "tokens": ids, "token_strs": None})
        if request.path == "/detokenize":
            return web.json_response({"prompt": "".join(chr(i) for i in body["tokens"])})
        return web.json_response({"tokenizer_class": "GPT2Tokenizer", "eos_token": "[e~[", "served_by": self.name})

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(Seen(request.path, request.headers.copy(), body))
        try:
            return await (self.behaviour or vllm_answer)(self, request, body)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


# --- the proxy in front of them ------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("Content-Type", "").startswith("application/json"), self.headers
        return json.loads(self.body)

    def error(self) -> str:
        """The message of an OpenAI-style error answer (and check its shape)."""
        err = self.json()["error"]
        assert err["code"] == self.status and err["type"], err
        return err["message"]

    def events(self) -> List[str]:
        """The data of each SSE event, checking the framing: one ``data: ...`` line + blank line,
        or a ``:`` comment (keep-alives are forwarded as they came), LF line ends only."""
        assert self.headers.get("Content-Type", "").startswith("text/event-stream"), self.headers
        text = self.body.decode()
        assert text.endswith("\n\n") and "\r" not in text, text[-200:]
        assert all(line.startswith(("data: ", ":")) for line in text.split("\n") if line), text[-200:]
        events = SSEParser().feed(self.body)
        assert all("\n" not in e.data for e in events), events  # a single data line each
        return [e.data for e in events]


def merged(base: Dict[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """``base`` with ``extra`` merged in, nested objects key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def proxy_config(
    prefill: List[FakeBackend], decode: List[FakeBackend], /, group_size: int = 0, **extra: Any
) -> Dict[str, Any]:
    """The proxy's configuration document for these fakes; ``extra`` overrides any key.
    ``group_size``: the fakes of each phase form DP groups of that many ranks (prefill0, ...)."""

    def instances(fakes: List[FakeBackend], phase: str) -> List[Dict[str, str]]:
        found = [{"url": b.url, "name": b.name} for b in fakes]
        for i, instance in enumerate(found if group_size else []):
            instance["group"] = f"{phase}{i // group_size}"
        return found

    base = {
        "listen": {"host": HOST, "port": 8009},  # not used: the tests bind port 0
        "prefill": {"instances": instances(prefill, "prefill")},
        "decode": {"instances": instances(decode, "decode")},
        "timeouts": TIMEOUTS,
        "health": HEALTH,
        "drain_timeout": 5,
    }
    return merged(base, extra)


@dataclass
class Setup:
    proxy: Proxy
    runner: web.AppRunner
    url: str
    client: aiohttp.ClientSession
    prefill: List[FakeBackend]
    decode: List[FakeBackend]
    config_path: Optional[Path] = None
    spare: List[FakeBackend] = field(default_factory=list)  # started, not in the configuration

    async def request(
        self, method: str, path: str, body: Any = None, *, headers: Optional[Dict[str, str]] = None, raw: bytes = b""
    ) -> Reply:
        data = raw or (json.dumps(body).encode() if body is not None else None)
        if data is not None:  # as clients send it (vLLM refuses a body of another type)
            headers = {"Content-Type": "application/json", **(headers or {})}
        async with self.client.request(method, self.url + path, data=data, headers=headers) as response:
            return Reply(response.status, response.headers.copy(), await response.read())

    async def post(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.request("POST", path, body, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    def state(self, backend: FakeBackend) -> str:
        """The proxy's view of a backend: unknown, healthy, ejected, probation (or gone)."""
        known = self.proxy.pools[backend.phase].backends.get(backend.url)
        return known.state if known is not None else "gone"

    def in_flight(self, backend: FakeBackend) -> int:
        known = self.proxy.pools[backend.phase].backends.get(backend.url)
        return known.in_flight if known is not None else 0

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when the series does not exist yet)."""
        text = (await self.get("/metrics")).body.decode()
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        series = f"{name}{{{wanted}}}" if labels else name
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if key == series:
                return float(value)
        return 0.0


def chat_body(**extra: Any) -> Dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], **extra}


def completions_body(**extra: Any) -> Dict[str, Any]:
    return {"model": MODEL, "prompt": "Say hello", **extra}


@contextlib.asynccontextmanager
async def running(
    prefills: int = 1,
    decodes: int = 1,
    *,
    spare: int = 0,
    config_path: Optional[Path] = None,
    wait_healthy: bool = True,
    setup: Optional[Callable[[List[FakeBackend], List[FakeBackend]], None]] = None,
    group_size: int = 0,
    **config: Any,
) -> AsyncIterator[Setup]:
    """Fakes ``p0..``, ``d0..`` (and ``spare`` decode fakes ``s0..``) and a proxy in front of them.

    ``config`` overrides keys of :func:`proxy_config`; ``config_path``: write the configuration
    there and give it to the proxy (for ``reload``); ``setup`` runs before the proxy starts;
    ``group_size``: the fakes of each phase form DP groups of that many ranks.
    """
    fakes_p = [FakeBackend(f"p{i}", "prefill") for i in range(prefills)]
    fakes_d = [FakeBackend(f"d{i}", "decode") for i in range(decodes)]
    fakes_s = [FakeBackend(f"s{i}", "decode") for i in range(spare)]
    everyone = fakes_p + fakes_d + fakes_s
    for fake in everyone:
        await fake.start()
    if setup is not None:
        setup(fakes_p, fakes_d)
    raw = proxy_config(fakes_p, fakes_d, group_size, **config)
    if config_path is not None:
        config_path.write_text(json.dumps(raw))
    proxy = Proxy(parse(raw), str(config_path) if config_path else None)
    runner = make_runner(proxy)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    harness = Setup(proxy, runner, f"http://{HOST}:{port}", client, fakes_p, fakes_d, config_path, fakes_s)
    try:
        if wait_healthy:
            backends = fakes_p + fakes_d
            states = lambda: [b.describe() for p in proxy.pools.values() for b in p.backends.values()]  # noqa: E731
            await eventually(lambda: all(harness.state(b) == "healthy" for b in backends), what=f"healthy {states}")
        yield harness
    finally:
        await client.close()
        if runner.server is not None:  # not already cleaned up by a drain
            await runner.cleanup()
        for fake in everyone:
            await fake.stop()
