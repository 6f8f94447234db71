"""The proxy's HTTP service: aiohttp server in front, one aiohttp client session behind.

Per client request (``/v1/chat/completions`` or ``/v1/completions``): check the body (a bad
one is a 4xx at once), then up to ``retries.attempts`` PD passes, each on instances not
tried yet for this request:

* prefill on the least-loaded healthy prefill instance; a connection error, 5xx, timeout or
  unusable answer ejects-on-repeat that instance and the next pass tries another;
* decode on the least-loaded healthy decode instance. The client's headers are not sent
  until the decode instance's first event (streaming) or whole answer (not streaming) is
  in, so a decode failing up to there is retried too, and a client never sees 200 with an
  empty body. After the first event, a failure ends the stream with an SSE error event and
  ``[DONE]``; it is never silent.

A 4xx from a backend (the request's own fault: too long, unknown model) is relayed as is.
Timeouts before the headers give 504; other backend failures 502; no healthy instance 503.
A client that goes away cancels its handler (``handler_cancellation``), which closes the
upstream connections, and vLLM aborts the request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
import time
import uuid
from typing import Any, Dict, Optional, Set, Tuple

import aiohttp
from aiohttp import web

from . import protocol
from .backends import EJECTED, HEALTHY, PROBATION, Backend, Pool
from .config import PHASES, Config, ConfigError, Instance, load, parse_instance
from .metrics import Registry
from .sse import SSEEvent, SSEParser, stream_error

if sys.version_info >= (3, 11):
    from asyncio import timeout as deadline
else:  # aiohttp depends on async-timeout before Python 3.11
    from async_timeout import timeout as deadline

log = logging.getLogger("ascend_pd_proxy")

JSON = "application/json"
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
# A backend's 4xx is the request's fault and goes back to the client -- except these, which
# are the backend's state or the proxy's configuration (a wrong backend API key).
BACKEND_FAULT_4XX = frozenset({401, 403, 408, 429})


class BackendFailure(Exception):
    """This backend could not serve this request; another one may."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status  # what the client gets if no other backend succeeds: 502 or 504
        self.message = message


class BackendRejection(Exception):
    """A backend answered 4xx: the request itself is at fault. Relayed to the client as is."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(status)
        self.status, self.body, self.content_type = status, body, content_type


class AdminRefusal(Exception):
    """An admin API request refused; ``response`` says why."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _json_response(status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=JSON, headers=headers)


def error_response(status: int, message: str, *, param: Optional[str] = None, request_id: str = "") -> web.Response:
    headers = {"X-Request-Id": request_id} if request_id else None
    return _json_response(status, protocol.error_body(status, message, param=param), headers)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection closed before the answer was complete"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _is_error_event(event: SSEEvent) -> Optional[str]:
    # Chunks start with {"id": ...}; an error with {"error" or {"object": "error". Look before parsing.
    if '"error"' not in event.data[:32]:
        return None
    try:
        return stream_error(json.loads(event.data))
    except ValueError:
        return None


class Proxy:
    def __init__(self, cfg: Config, config_path: Optional[str] = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.pools: Dict[str, Pool] = {
            phase: Pool(
                phase,
                cfg.pool(phase).instances,
                failures_to_eject=cfg.health.failures_to_eject,
                successes_to_admit=cfg.health.successes_to_admit,
                on_change=self._state_changed,
            )
            for phase in PHASES
        }
        self.auth_headers = {phase: self._auth_header(cfg.pool(phase).api_key) for phase in PHASES}
        self.client_keys = [key.encode() for key in cfg.api_keys]
        self.session: Optional[aiohttp.ClientSession] = None
        self.in_flight = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._health_task: Optional[asyncio.Task] = None
        self._canary_models: Dict[str, str] = {}
        self._tasks: Set[asyncio.Future] = set()
        self._setup_metrics()

    # -- set-up ------------------------------------------------------------------------------------

    @staticmethod
    def _auth_header(key: Optional[str]) -> Dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _setup_metrics(self) -> None:
        r = self.registry = Registry()
        self.m_requests = r.counter("pd_proxy_requests_total", "Client requests by endpoint and HTTP status.")
        self.m_backend = r.counter(
            "pd_proxy_backend_requests_total", "Backend requests by phase, backend and outcome (ok, error, rejected)."
        )
        self.m_retries = r.counter("pd_proxy_retries_total", "PD passes retried, by the phase that failed.")
        self.m_cached = r.counter(
            "pd_proxy_prefill_cached_tokens_total", "Prompt tokens the prefill instances found in their prefix cache."
        )
        self.m_phase = r.histogram(
            "pd_proxy_phase_seconds",
            "Backend phase latency: prefill (whole request) and decode (until the first event, or the whole "
            "non-streaming answer), by backend.",
        )
        self.m_ttft = r.histogram("pd_proxy_time_to_first_chunk_seconds", "Client request to first byte sent back.")
        self.m_total = r.histogram("pd_proxy_request_seconds", "Client request duration, by endpoint.")
        r.gauge("pd_proxy_in_flight", "Client requests in flight.", lambda: [((), self.in_flight)])
        r.gauge(
            "pd_proxy_backend_in_flight",
            "Requests in flight per backend.",
            lambda: [(self._labels(b), b.in_flight) for p in self.pools.values() for b in p.active()],
        )
        r.gauge(
            "pd_proxy_backend_healthy",
            "1 when the backend is routed to (healthy or on probation), else 0.",
            lambda: [
                (self._labels(b), float(b.state in (HEALTHY, PROBATION)))
                for p in self.pools.values()
                for b in p.active()
            ],
        )

    @staticmethod
    def _labels(backend: Backend, *extra: Tuple[str, str]) -> Tuple[Tuple[str, str], ...]:
        return (("backend", backend.name), ("phase", backend.phase), *extra)

    def _state_changed(self, backend: Backend, old: str) -> None:
        reason = f": {backend.last_error}" if backend.state == EJECTED and backend.last_error else ""
        level = logging.WARNING if backend.state == EJECTED else logging.INFO
        log.log(
            level,
            "%s instance %s (%s): %s -> %s%s",
            backend.phase,
            backend.name,
            backend.url,
            old,
            backend.state,
            reason,
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.limits.max_body_bytes)
        app.router.add_post(protocol.CHAT, self.generate)
        app.router.add_post(protocol.COMPLETIONS, self.generate)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/healthcheck", self.health)  # the upstream example's path
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/admin/backends", self.admin_list)
        app.router.add_post("/admin/backends", self.admin_add)
        app.router.add_delete("/admin/backends", self.admin_remove)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=75)
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.cfg.timeouts.connect),
            skip_auto_headers=("User-Agent",),
        )
        self._health_task = asyncio.ensure_future(self._health_loop())

    async def _stop(self, _app: web.Application) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    # -- generation --------------------------------------------------------------------------------

    async def generate(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        denied = self._check_client_key(request)
        if denied is not None:
            return self._count(request, denied, started)
        if self.draining:
            return self._count(
                request, error_response(503, "the proxy is shutting down; retry on another proxy"), started
            )
        if self.in_flight >= self.cfg.limits.max_in_flight:
            message = f"{self.in_flight} requests in flight (limits.max_in_flight); retry later"
            return self._count(request, error_response(503, message), started)
        self.in_flight += 1
        response: Optional[web.StreamResponse] = None
        try:
            response = await self._generate(request, started)
            return response
        finally:
            self.in_flight -= 1
            # No response: the client went away and the handler was cancelled (nginx's 499).
            self._count(request, response or error_response(499, "the client closed the request"), started)
            if self.draining and self.in_flight == 0:
                self._idle.set()

    def _count(self, request: web.Request, response: web.StreamResponse, started: float) -> web.StreamResponse:
        labels = (("endpoint", request.path), ("status", str(response.status)))
        self.m_requests.inc(labels)
        self.m_total.observe(labels[:1], time.perf_counter() - started)
        return response

    async def _generate(self, request: web.Request, started: float) -> web.StreamResponse:
        path = request.path
        try:
            async with deadline(self.cfg.timeouts.client_body):
                raw = await request.read()
            body = protocol.parse_client_body(raw, path)
        except protocol.RequestError as exc:
            return _json_response(exc.status, exc.body())
        except web.HTTPRequestEntityTooLarge:
            message = f"the request body is larger than {self.cfg.limits.max_body_bytes} bytes (limits.max_body_bytes)"
            return error_response(413, message)
        except asyncio.TimeoutError:
            return error_response(408, f"the request body took longer than {self.cfg.timeouts.client_body} s to arrive")
        stream = protocol.is_stream(body)
        tokens = protocol.prompt_tokens_estimate(body)
        affinity = protocol.prefix_key(body, self.cfg.affinity_prefix_chars) if self.cfg.prefix_affinity else None
        request_id = str(uuid.uuid4())
        tried: Dict[str, Set[str]] = {"prefill": set(), "decode": set()}
        failure: Optional[BackendFailure] = None
        for attempt in range(self.cfg.attempts):
            # A retry gets its own id: the first pass's KV may still be parked under the old one.
            attempt_id = request_id if attempt == 0 else f"{request_id}-retry{attempt}"
            prefill = self.pools["prefill"].choose(tried["prefill"], affinity)
            decode = self.pools["decode"].choose(tried["decode"])
            if prefill is None or decode is None:
                failure = failure or self._none_available("prefill" if prefill is None else "decode")
                break
            phase = "prefill"
            try:
                kv_params = await self._prefill(prefill, path, body, attempt_id, tokens)
                phase = "decode"
                # Choose again now: the loads changed while the prefill ran (minutes, for long prompts).
                decode = self.pools["decode"].choose(tried["decode"]) or decode
                if stream:
                    return await self._decode_stream(
                        request, decode, body, kv_params, attempt_id, tokens, started, request_id
                    )
                return await self._decode_json(decode, body, kv_params, attempt_id, tokens, path, request_id)
            except BackendRejection as exc:
                return web.Response(
                    status=exc.status,
                    body=exc.body,
                    content_type=exc.content_type,
                    headers={"X-Request-Id": request_id},
                )
            except BackendFailure as exc:
                failure = exc
                tried[phase].add((prefill if phase == "prefill" else decode).url)
                if attempt + 1 < self.cfg.attempts:
                    self.m_retries.inc((("phase", phase),))
                log.warning("request %s: %s", attempt_id, exc.message)
        assert failure is not None
        return error_response(failure.status, failure.message, request_id=request_id)

    def _none_available(self, phase: str) -> BackendFailure:
        pool = self.pools[phase]
        states = ", ".join(f"{b.name} {b.state}" for b in pool.active()) or "none configured"
        return BackendFailure(503, f"no {phase} instance can take the request ({states})")

    def _headers(self, phase: str, request_id: str) -> Dict[str, str]:
        return {"Content-Type": JSON, "X-Request-Id": request_id, **self.auth_headers[phase]}

    def _failed(self, backend: Backend, status: int, reason: str) -> BackendFailure:
        self.pools[backend.phase].failed(backend, reason)
        self.m_backend.inc(self._labels(backend, ("outcome", "error")))
        return BackendFailure(status, f"{backend.phase} instance {backend.name} ({backend.url}): {reason}")

    def _check_status(self, backend: Backend, status: int, body: bytes, content_type: str) -> None:
        """Raise for a non-200 answer: a rejection to relay, or a failure to retry."""
        if status == 200:
            return
        if 400 <= status < 500 and status not in BACKEND_FAULT_4XX:
            self.pools[backend.phase].succeeded(backend)  # it answered; the request was wrong
            self.m_backend.inc(self._labels(backend, ("outcome", "rejected")))
            raise BackendRejection(status, body, content_type or JSON)
        hint = " (check prefill.api_key / decode.api_key)" if status in (401, 403) else ""
        raise self._failed(backend, 502, f"HTTP {status}{hint}: {body[:300].decode('utf-8', 'replace')}")

    async def _exchange(
        self, backend: Backend, path: str, payload: Dict[str, Any], request_id: str, tokens: int, limit_key: str
    ) -> Tuple[bytes, float]:
        """POST ``payload`` and read the whole answer within ``timeouts.<limit_key>``.

        Returns the 200 answer and when the exchange began; anything else raises (a
        BackendFailure to retry elsewhere, or a BackendRejection to relay).
        """
        assert self.session is not None
        pool = self.pools[backend.phase]
        limit = getattr(self.cfg.timeouts, limit_key)
        pool.start(backend, tokens)
        began = time.perf_counter()
        try:
            async with (
                deadline(limit),
                self.session.post(
                    backend.url + path,
                    data=json.dumps(payload).encode(),
                    headers=self._headers(backend.phase, request_id),
                ) as upstream,
            ):
                answer = await upstream.read()
                status, content_type = upstream.status, upstream.content_type
        except asyncio.TimeoutError:
            raise self._failed(backend, 504, f"no answer within {limit:g} s (timeouts.{limit_key})") from None
        except aiohttp.ClientError as exc:
            raise self._failed(backend, 502, _describe(exc)) from None
        finally:
            pool.finish(backend, tokens)
        self._check_status(backend, status, answer, content_type)
        return answer, began

    def _ok(self, backend: Backend) -> None:
        self.pools[backend.phase].succeeded(backend)
        self.m_backend.inc(self._labels(backend, ("outcome", "ok")))

    def _served(self, backend: Backend, began: float) -> None:
        self._ok(backend)
        self.m_phase.observe(self._labels(backend), time.perf_counter() - began)

    async def _prefill(
        self, backend: Backend, path: str, body: Dict[str, Any], request_id: str, tokens: int
    ) -> Dict[str, Any]:
        answer, began = await self._exchange(backend, path, protocol.prefill_body(body), request_id, tokens, "prefill")
        try:
            kv_params, cached = protocol.read_prefill_answer(answer)
        except protocol.PrefillAnswerError as exc:
            raise self._failed(backend, 502, str(exc)) from None
        self._served(backend, began)
        if cached:
            self.m_cached.inc((), cached)
        return kv_params

    async def _decode_json(
        self,
        backend: Backend,
        body: Dict[str, Any],
        kv_params: Dict[str, Any],
        request_id: str,
        tokens: int,
        path: str,
        client_id: str,
    ) -> web.Response:
        payload = protocol.decode_body(body, kv_params)
        answer, began = await self._exchange(backend, path, payload, request_id, tokens, "decode")
        if not answer.lstrip().startswith(b"{"):
            raise self._failed(backend, 502, f"HTTP 200 without a JSON answer: {answer[:200]!r}")
        self._served(backend, began)
        return web.Response(body=answer, content_type=JSON, headers={"X-Request-Id": client_id})

    async def _decode_stream(
        self,
        request: web.Request,
        backend: Backend,
        body: Dict[str, Any],
        kv_params: Dict[str, Any],
        request_id: str,
        tokens: int,
        started: float,
        client_id: str,
    ) -> web.StreamResponse:
        assert self.session is not None
        pool = self.pools["decode"]
        timeouts = self.cfg.timeouts
        framer = protocol.SSEFramer()
        pool.start(backend, tokens)
        began = time.perf_counter()
        upstream: Optional[aiohttp.ClientResponse] = None
        try:
            # Phase 1: nothing is sent to the client until the first event is in.
            try:
                async with deadline(timeouts.decode_first_chunk):
                    upstream = await self.session.post(
                        backend.url + request.path,
                        data=json.dumps(protocol.decode_body(body, kv_params)).encode(),
                        headers=self._headers("decode", request_id),
                    )
                    if upstream.status != 200:
                        self._check_status(backend, upstream.status, await upstream.read(), upstream.content_type)
                    head, first = b"", []
                    while not first:  # comments (": ping") are not events
                        data = await upstream.content.readany()
                        if not data:
                            raise self._failed(backend, 502, "the stream ended before its first event")
                        completed = framer.feed(data)
                        head += completed
                        first = SSEParser().feed(completed) if completed else []
            except asyncio.TimeoutError:
                limit = timeouts.decode_first_chunk
                raise self._failed(
                    backend, 504, f"no first event within {limit:g} s (timeouts.decode_first_chunk)"
                ) from None
            except aiohttp.ClientError as exc:
                raise self._failed(backend, 502, _describe(exc)) from None
            message = _is_error_event(first[0])
            if message is not None:
                raise self._failed(backend, 502, f"the stream failed before its first token: {message}")
            self.m_phase.observe(self._labels(backend), time.perf_counter() - began)

            # Phase 2: committed. From here a failure is an SSE error event, never a silent end.
            response = web.StreamResponse(status=200, headers={**SSE_HEADERS, "X-Request-Id": client_id})
            await response.prepare(request)
            await response.write(head)
            self.m_ttft.observe((), time.perf_counter() - started)
            outcome = await self._relay(backend, upstream, framer, response, head)
            if outcome is None:
                self._ok(backend)
            else:
                self._failed(backend, 502, outcome)
                log.warning("request %s: decode instance %s (%s): %s", request_id, backend.name, backend.url, outcome)
            await response.write_eof()
            return response
        finally:
            pool.finish(backend, tokens)
            if upstream is not None:
                upstream.release()

    async def _relay(
        self,
        backend: Backend,
        upstream: aiohttp.ClientResponse,
        framer: protocol.SSEFramer,
        response: web.StreamResponse,
        sent: bytes,
    ) -> Optional[str]:
        """Forward whole events as they come until ``[DONE]``; returns None, or why the stream
        failed (the client has been told with an error event). ``sent``: what went out already."""
        idle = self.cfg.timeouts.idle
        error: Optional[str] = None
        out = sent
        while True:
            # Events are decoded only when their bytes may hold the end or an error (rare).
            if b"[DONE]" in out or b'"error"' in out:
                for event in SSEParser().feed(out):
                    if event.data == "[DONE]":
                        return error
                    error = error or _is_error_event(event)
            try:
                async with deadline(idle):
                    data = await upstream.content.readany()
            except asyncio.TimeoutError:
                problem = f"no data for {idle:g} s (timeouts.idle)"
                break
            except aiohttp.ClientError as exc:
                problem = _describe(exc)
                break
            out = framer.feed(data)  # at the end (b""), what a trailing CR completes
            if out:
                await response.write(out)
            elif not data:
                problem = "the stream ended without [DONE]"
                break
        message = f"decode instance {backend.name} failed mid-stream: {problem}"
        await response.write(protocol.sse_error_event(502, message) + b"data: [DONE]\n\n")
        return problem

    # -- other endpoints ---------------------------------------------------------------------------

    def _check_client_key(self, request: web.Request) -> Optional[web.Response]:
        if not self.client_keys:
            return None
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[7:].encode()
            # Compare with every key, so timing does not tell which prefix matched.
            if sum(hmac.compare_digest(given, key) for key in self.client_keys):
                return None
        return error_response(401, "a valid API key is required: Authorization: Bearer <key>")

    async def models(self, request: web.Request) -> web.Response:
        denied = self._check_client_key(request)
        if denied is not None:
            return denied
        assert self.session is not None
        tried: Set[str] = set()
        reasons = []
        while True:
            backend = self.pools["decode"].choose(tried)
            if backend is None:
                break
            tried.add(backend.url)
            try:
                url, headers = backend.url + "/v1/models", self.auth_headers["decode"]
                async with (
                    deadline(self.cfg.health.timeout + self.cfg.timeouts.connect),
                    self.session.get(url, headers=headers) as up,
                ):
                    answer = await up.read()
                    if up.status == 200:
                        return web.Response(body=answer, content_type=JSON)
                    reasons.append(f"{backend.name}: HTTP {up.status}")
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                reasons.append(f"{backend.name}: {_describe(exc)}")
        detail = "; ".join(reasons) or "no healthy decode instance"
        return error_response(503, f"cannot list the models: {detail}")

    def _status(self) -> Dict[str, Any]:
        counts = {phase: pool.counts() for phase, pool in self.pools.items()}
        ready = all(c["healthy"] > 0 for c in counts.values())
        status = "draining" if self.draining else ("ok" if ready else "unavailable")
        return {"status": status, "in_flight": self.in_flight, **counts}

    async def health(self, _request: web.Request) -> web.Response:
        status = self._status()
        return _json_response(200 if status["status"] == "ok" else 503, status)

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.registry.render(), content_type="text/plain", charset="utf-8")

    async def not_found(self, request: web.Request) -> web.Response:
        known = {protocol.CHAT: "POST", protocol.COMPLETIONS: "POST", "/admin/backends": "GET, POST or DELETE"}
        known.update(dict.fromkeys(("/v1/models", "/health", "/healthcheck", "/metrics"), "GET"))
        if request.path in known:
            return error_response(405, f"{request.method} is not allowed on {request.path}; use {known[request.path]}")
        return error_response(404, f"no route {request.method} {request.path}")

    # -- admin: add / remove instances at run time ---------------------------------------------------

    def _check_admin(self, request: web.Request) -> Optional[web.Response]:
        key = self.cfg.admin_api_key
        if key is None:
            return error_response(404, "the admin API is off (set admin_api_key to enable it)")
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {key}".encode()):
            return error_response(401, "the admin API needs Authorization: Bearer <admin_api_key>")
        return None

    async def admin_list(self, request: web.Request) -> web.Response:
        denied = self._check_admin(request)
        if denied is not None:
            return denied
        backends = [b.describe() for pool in self.pools.values() for b in pool.backends.values()]
        return _json_response(200, {**self._status(), "backends": backends})

    async def _admin_target(self, request: web.Request) -> Tuple[str, Instance]:
        """The admin key checked, the ``{"phase", "url", "name"}`` body read; else an error response."""
        denied = self._check_admin(request)
        if denied is not None:
            raise AdminRefusal(denied)
        try:
            raw = await request.json()
        except ValueError:
            raw = None
        if not isinstance(raw, dict) or raw.get("phase") not in PHASES:
            message = 'the body must be JSON {"phase": "prefill" or "decode", "url": ..., "name": ...}'
            raise AdminRefusal(error_response(400, message, param="phase"))
        try:
            instance = parse_instance({k: v for k, v in raw.items() if k in ("url", "name")}, raw["phase"])
        except ConfigError as exc:
            raise AdminRefusal(error_response(400, str(exc), param="url")) from None
        return raw["phase"], instance

    async def admin_add(self, request: web.Request) -> web.Response:
        try:
            phase, instance = await self._admin_target(request)
        except AdminRefusal as refusal:
            return refusal.response
        backend = self.pools[phase].add(instance)
        log.info("admin API: added %s instance %s (%s)", phase, instance.name, instance.url)
        self._check_soon(phase, backend)
        return _json_response(200, backend.describe())

    async def admin_remove(self, request: web.Request) -> web.Response:
        try:
            phase, instance = await self._admin_target(request)
        except AdminRefusal as refusal:
            return refusal.response
        backend = self.pools[phase].remove(instance.url)
        if backend is None:
            return error_response(404, f"no {phase} instance {instance.url}")
        log.info(
            "admin API: removed %s instance %s (%s), %d in flight", phase, backend.name, backend.url, backend.in_flight
        )
        return _json_response(200, backend.describe())

    # -- health checks ------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            checks = [self._check(pool, b) for pool in self.pools.values() for b in pool.active()]
            await asyncio.gather(*checks)
            await asyncio.sleep(self.cfg.health.interval)

    def _check_soon(self, phase: str, backend: Backend) -> None:
        task = asyncio.ensure_future(self._check(self.pools[phase], backend))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _check(self, pool: Pool, backend: Backend) -> None:
        assert self.session is not None
        health = self.cfg.health
        try:
            async with deadline(health.timeout):
                async with self.session.get(backend.url + "/health") as answer:
                    await answer.read()
                    problem = None if answer.status == 200 else f"GET /health: HTTP {answer.status}"
                if problem is None and health.canary:
                    problem = await self._canary(backend)
        except asyncio.TimeoutError:
            problem = f"health check: no answer within {health.timeout:g} s (health.timeout)"
        except aiohttp.ClientError as exc:
            problem = f"health check: {_describe(exc)}"
        except Exception as exc:  # a check must never end the loop
            problem = f"health check: {type(exc).__name__}: {exc}"
        if backend.state == "removed":
            return
        if problem is None:
            pool.succeeded(backend, check=True)
        else:
            pool.failed(backend, problem)

    async def _canary(self, backend: Backend) -> Optional[str]:
        """A one-token completion: catches an engine that answers /health but cannot generate."""
        assert self.session is not None
        headers = {"Content-Type": JSON, **self.auth_headers[backend.phase]}
        model = self.cfg.health.canary_model or self._canary_models.get(backend.url)
        if model is None:
            async with self.session.get(backend.url + "/v1/models", headers=headers) as answer:
                listing = await answer.json(content_type=None) if answer.status == 200 else {}
            names = [m.get("id") for m in listing.get("data") or [] if isinstance(m, dict)]
            if not names:
                return "canary: GET /v1/models lists no model"
            model = self._canary_models[backend.url] = names[0]
        body = {"model": model, "prompt": "ping", "max_tokens": 1, "stream": False}
        async with self.session.post(backend.url + protocol.COMPLETIONS, json=body, headers=headers) as answer:
            await answer.read()
            return None if answer.status == 200 else f"canary completion: HTTP {answer.status}"

    # -- reload and drain -------------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: re-read the configuration file; apply instance and backend-key changes."""
        if self.config_path is None:
            return
        try:
            new = load(self.config_path)
        except ConfigError as exc:
            log.error("reload: %s; keeping the running configuration", exc)
            return
        for phase in PHASES:
            for change in self.pools[phase].reconcile(new.pool(phase).instances):
                log.info("reload: %s", change)
            for backend in self.pools[phase].active():
                if backend.state == "unknown":
                    self._check_soon(phase, backend)
            self.auth_headers[phase] = self._auth_header(new.pool(phase).api_key)
        kept = [k for k in ("host", "port", "certfile", "keyfile") if getattr(new, k) != getattr(self.cfg, k)]
        if kept:
            log.warning("reload: %s changed; restart the proxy to apply", ", ".join(kept))
        self.client_keys = [key.encode() for key in new.api_keys]

    async def drain(self, runner: web.AppRunner) -> None:
        """SIGTERM: stop listening, let in-flight requests finish (up to drain_timeout), stop."""
        self.draining = True
        log.info("draining: %d requests in flight, waiting up to %g s", self.in_flight, self.cfg.drain_timeout)
        for site in list(runner.sites):
            await site.stop()
        if self.in_flight:
            try:
                await asyncio.wait_for(self._idle.wait(), self.cfg.drain_timeout)
            except asyncio.TimeoutError:
                log.warning("drain timeout: cancelling %d requests still in flight", self.in_flight)
        await runner.cleanup()


def make_runner(proxy: Proxy) -> web.AppRunner:
    """The aiohttp runner of a proxy, as ``__main__`` serves it (and the tests do)."""
    return web.AppRunner(
        proxy.app(),
        handler_cancellation=True,  # a client that leaves cancels its upstream requests
        access_log=logging.getLogger("ascend_pd_proxy.access") if proxy.cfg.access_log else None,
        shutdown_timeout=1.0,
    )
