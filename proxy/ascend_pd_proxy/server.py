"""The proxy's HTTP service: aiohttp server in front; behind, a lean client (``upstream``) for
prefill and decode, and an aiohttp client session for the rest.

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
import json
import logging
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from . import log, protocol
from .admin import AdminAPI
from .backends import EJECTED, Backend, Pool
from .config import PHASES, Config
from .endpoints import ServiceEndpoints
from .health import HealthChecks, log_state_change
from .http_util import (
    JSON,
    backend_error,
    bearer_header,
    deadline,
    error_origin,
    error_response,
    json_response,
)
from .lifecycle import Lifecycle
from .metrics import ProxyMetrics, backend_labels
from .relay import SpecDecodeRelay
from .sse import SSEEvent, SSEParser, stream_error
from .upstream import UpstreamError, UpstreamResponse, Upstreams
from .workers import Siblings

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
BACKEND_FAULT_4XX = protocol.BACKEND_FAULT_4XX


class BackendFailure(Exception):
    """This backend could not serve this request; another one may.

    ``answered``: the instance answered with a server error (HTTP 500, or an error event before
    the first token) rather than failing to answer. That may be the request's content as much
    as the instance, so the instance is only held responsible once another instance of the
    phase has served the same request (see :class:`Suspects`).
    """

    def __init__(self, status: int, message: str, backend: Optional[Backend] = None, answered: bool = False) -> None:
        super().__init__(message)
        self.status = status  # what the client gets if no other backend succeeds: 502 or 504
        self.message = message
        self.backend = backend
        self.answered = answered


class Suspects:
    """The instances that answered one request with a server error, per phase, until it is
    known whose fault it was.

    A second instance of the same phase answering the same request with a server error means
    the request's content is the cause: it is not retried further, and nobody is ejected (two
    such requests used to eject every prefill instance). Another instance of the phase serving
    it means the earlier ones failed on their own: they are charged then.
    """

    def __init__(self, pools: Dict[str, Pool]) -> None:
        self.pools = pools
        self.by_phase: Dict[str, List[Tuple[Backend, str]]] = {}

    def reproduced(self, phase: str, failure: BackendFailure) -> bool:
        """Record ``failure``; True when it is the second server error of ``phase`` for this request."""
        assert failure.backend is not None
        suspects = self.by_phase.setdefault(phase, [])
        suspects.append((failure.backend, failure.message))
        return len(suspects) >= 2

    def served(self, phase: str) -> None:
        """An instance of ``phase`` served the request: the ones that failed it are at fault."""
        for backend, reason in self.by_phase.pop(phase, []):
            self.pools[phase].failed(backend, reason)


class BackendRejection(Exception):
    """A backend answered 4xx: the request itself is at fault. Relayed to the client as is."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(status)
        self.status, self.body, self.content_type = status, body, content_type


def _is_error_event(event: SSEEvent) -> Optional[str]:
    # Chunks start with {"id": ...}; an error with {"error" or {"object": "error". Look before parsing.
    if '"error"' not in event.data[:32]:
        return None
    try:
        return stream_error(json.loads(event.data))
    except ValueError:
        return None


class Proxy(ServiceEndpoints, Lifecycle):
    """One proxy process: its pools and the PD request flow.

    The endpoints besides generation and reload / drain are mixed in, as they act on this
    state; the health checks and the admin API are parts with their own (``health_checks``,
    ``admin``).
    """

    def __init__(self, cfg: Config, config_path: Optional[str] = None, siblings: Optional[Siblings] = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.pools: Dict[str, Pool] = {
            phase: Pool(
                phase,
                cfg.pool(phase).instances,
                failures_to_eject=cfg.health.failures_to_eject,
                successes_to_admit=cfg.health.successes_to_admit,
                on_change=log_state_change,
                on_group_lost=self._group_lost,
            )
            for phase in PHASES
        }
        self.auth_headers = {phase: bearer_header(cfg.pool(phase).api_key) for phase in PHASES}
        self.client_keys = [key.encode() for key in cfg.api_keys]
        self.session: Optional[aiohttp.ClientSession] = None  # health checks and the other endpoints
        self.upstreams: Optional[Upstreams] = None  # the generate hot path (prefill, decode)
        self.in_flight = 0
        self.draining = False
        self._idle = asyncio.Event()
        self.health_checks = HealthChecks(cfg.health, self.pools, self.auth_headers)
        self.admin = AdminAPI(cfg.admin_api_key, self.pools, self._status, self.health_checks.check_soon)
        # With workers > 1, the other processes serving the port: /metrics and the admin API
        # speak for all of them, and answers name this one (workers.py).
        self.siblings = self.admin.siblings = siblings
        self.metrics = ProxyMetrics(lambda: self.in_flight, self.pools)
        self.spec_decode_relay = SpecDecodeRelay(self.pools, self.auth_headers, cfg.health.timeout)
        self._group_aborts: Dict[asyncio.Task[Any], str] = {}  # handler -> why it was interrupted

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.limits.max_body_bytes)
        app.router.add_post(protocol.CHAT, self.generate)
        app.router.add_post(protocol.COMPLETIONS, self.generate)
        app.router.add_get("/v1/models", self.models)
        for path in protocol.TOKENIZER_POST:
            app.router.add_post(path, self.tokenizer)
        for path in protocol.TOKENIZER_GET:
            app.router.add_get(path, self.tokenizer)
        app.router.add_get("/health", self.health)
        app.router.add_get("/healthcheck", self.health)  # the upstream example's path
        app.router.add_get("/metrics", self.scrape)
        app.router.add_get("/admin/backends", self.admin.list_backends)
        app.router.add_post("/admin/backends", self.admin.change_backend)
        app.router.add_delete("/admin/backends", self.admin.change_backend)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        if self.siblings is not None:
            app.on_response_prepare.append(self.siblings.tag)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def not_found(self, request: web.Request) -> web.Response:
        known = {protocol.CHAT: "POST", protocol.COMPLETIONS: "POST", "/admin/backends": "GET, POST or DELETE"}
        gets = ("/v1/models", "/health", "/healthcheck", "/metrics", *protocol.TOKENIZER_GET)
        known.update(dict.fromkeys(gets, "GET"))
        known.update(dict.fromkeys(protocol.TOKENIZER_POST, "POST"))
        if request.path in known:
            return error_response(405, f"{request.method} is not allowed on {request.path}; use {known[request.path]}")
        return error_response(404, f"no route {request.method} {request.path}")

    async def _start(self, _app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=75)
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.cfg.timeouts.connect),
            skip_auto_headers=("User-Agent",),
        )
        self.health_checks.start(self.session)
        self.upstreams = Upstreams(self.cfg.timeouts.connect)

    async def _stop(self, _app: web.Application) -> None:
        await self.health_checks.stop()
        if self.upstreams is not None:
            self.upstreams.close()
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
            try:
                response = await self._generate(request, started)
            except (asyncio.CancelledError, ConnectionError):
                raise  # the client went away: nobody to answer
            except Exception as exc:  # a bug of the proxy's: still an answer, and counted as its own 5xx
                log.exception("request %s %s: internal error", request.method, request.path)
                response = error_response(500, f"internal error in the PD proxy: {type(exc).__name__}")
            return response
        finally:
            self.in_flight -= 1
            # No response: the client went away and the handler was cancelled (nginx's 499).
            self._count(request, response or error_response(499, "the client closed the request"), started)
            if self.draining and self.in_flight == 0:
                self._idle.set()

    def _count(self, request: web.Request, response: web.StreamResponse, started: float) -> web.StreamResponse:
        labels = (("endpoint", request.path), ("status", str(response.status)))
        self.metrics.requests.inc(labels)
        origin = error_origin(response)
        if origin is not None:
            self.metrics.errors.inc((*labels, ("origin", origin)))
        self.metrics.request_seconds.observe(labels[:1], time.perf_counter() - started)
        return response

    async def _generate(self, request: web.Request, started: float) -> web.StreamResponse:
        path = request.path
        too_large = f"the request body is larger than {self.cfg.limits.max_body_bytes} bytes (limits.max_body_bytes)"
        try:
            protocol.check_content_type(request.headers.get("Content-Type", ""))
            if (request.content_length or 0) > self.cfg.limits.max_body_bytes:
                # At once, and the connection closed rather than the body read and thrown away.
                refusal = self._refused(request, 413, protocol.error_body(413, too_large))
                refusal.force_close()
                return refusal
            async with deadline(self.cfg.timeouts.client_body):
                raw = await request.read()
            body = protocol.parse_client_body(raw, path)
        except protocol.RequestError as exc:
            return self._refused(request, exc.status, exc.body())
        except web.HTTPRequestEntityTooLarge:
            return self._refused(request, 413, protocol.error_body(413, too_large))
        except asyncio.TimeoutError:
            message = f"the request body took longer than {self.cfg.timeouts.client_body} s to arrive"
            return self._refused(request, 408, protocol.error_body(408, message))
        except web.HTTPException as exc:  # aiohttp refusing the body (an unknown Content-Encoding)
            return self._refused(request, exc.status, protocol.error_body(exc.status, exc.text or exc.reason))
        except web.RequestPayloadError as exc:  # a body cut short, or a bad chunked / compressed encoding
            return self._refused(request, 400, protocol.error_body(400, f"the request body is malformed: {exc}"))
        stream = protocol.is_stream(body)
        tokens = protocol.prompt_tokens_estimate(body)
        affinity = protocol.prefix_key(body, self.cfg.affinity_prefix_chars) if self.cfg.prefix_affinity else None
        request_id = str(uuid.uuid4())
        if protocol.prefill_alone(body, path):
            return await self._on_prefill_alone(request, body, stream, tokens, affinity, started, request_id)
        batch = protocol.split_prompts(body, path)
        if batch is None:
            return await self._pd(request, body, stream, tokens, affinity, started, request_id)
        if stream:
            message = "a list of prompts cannot be streamed through the PD proxy: send stream false, or one prompt"
            return error_response(400, message, request_id=request_id)
        return await self._pd_batch(request, batch, affinity, started, request_id)

    async def _pd(
        self,
        request: web.Request,
        body: Dict[str, Any],
        stream: bool,
        tokens: int,
        affinity: Optional[str],
        started: float,
        request_id: str,
    ) -> web.StreamResponse:
        """Up to ``retries.attempts`` PD passes for one prompt."""
        path = request.path
        tried: Dict[str, Set[str]] = {"prefill": set(), "decode": set()}
        suspects = Suspects(self.pools)
        failure: Optional[BackendFailure] = None
        encoded = protocol.EncodedBody(body)
        prefill_payload = encoded.prefill()
        for attempt in range(self.cfg.attempts):
            # A retry gets its own id: the first pass's KV may still be parked under the old one.
            attempt_id = request_id if attempt == 0 else f"{request_id}-retry{attempt}"
            prefill = self.pools["prefill"].choose(tried["prefill"], affinity)
            # Only whether a decode is left: the choice that counts is made after the prefill. Two
            # turns per request would give idle equals the same one every time (with two decodes,
            # every request on the first while the load is low).
            decode = self.pools["decode"].choose(tried["decode"], peek=True)
            if prefill is None or decode is None:
                failure = failure or self._none_available("prefill" if prefill is None else "decode")
                break
            phase = "prefill"
            try:
                kv_params = await self._prefill(prefill, path, prefill_payload, attempt_id, tokens)
                suspects.served("prefill")
                phase = "decode"
                # Choose again now: the loads changed while the prefill ran (minutes, for long prompts).
                decode = self.pools["decode"].choose(tried["decode"]) or decode
                payload = encoded.decode(kv_params)
                if stream:
                    answer: web.StreamResponse = await self._relay_stream(
                        request, decode, payload, attempt_id, tokens, started, request_id, "decode_first_chunk"
                    )
                else:
                    answer = await self._whole(decode, payload, attempt_id, tokens, path, request_id, "decode")
                suspects.served("decode")
                return answer
            except BackendRejection as exc:
                return self._rejected(exc, request_id)
            except BackendFailure as exc:
                failure = exc
                # The retry goes to another instance: a sibling rank of the same DP group shares its fate.
                tried[phase].update(self.pools[phase].instance_urls(prefill if phase == "prefill" else decode))
                if exc.answered and suspects.reproduced(phase, exc):
                    return self._content_fault(phase, suspects, request_id)
                self._retrying(attempt, phase, attempt_id, exc)
        assert failure is not None
        return backend_error(failure.status, failure.message, request_id)

    async def _on_prefill_alone(
        self,
        request: web.Request,
        body: Dict[str, Any],
        stream: bool,
        tokens: int,
        affinity: Optional[str],
        started: float,
        request_id: str,
    ) -> web.StreamResponse:
        """The whole request on one prefill instance (retried on others): it asks for the
        prompt's scores, which only a prefill computes."""
        tried: Set[str] = set()
        suspects = Suspects(self.pools)
        failure: Optional[BackendFailure] = None
        payload = protocol.EncodedBody(body).whole()
        for attempt in range(self.cfg.attempts):
            attempt_id = request_id if attempt == 0 else f"{request_id}-retry{attempt}"
            prefill = self.pools["prefill"].choose(tried, affinity)
            if prefill is None:
                failure = failure or self._none_available("prefill")
                break
            try:
                if stream:
                    answer: web.StreamResponse = await self._relay_stream(
                        request, prefill, payload, attempt_id, tokens, started, request_id, "prefill"
                    )
                else:
                    answer = await self._whole(
                        prefill, payload, attempt_id, tokens, request.path, request_id, "prefill"
                    )
                suspects.served("prefill")
                return answer
            except BackendRejection as exc:
                return self._rejected(exc, request_id)
            except BackendFailure as exc:
                failure = exc
                tried.update(self.pools["prefill"].instance_urls(prefill))
                if exc.answered and suspects.reproduced("prefill", exc):
                    return self._content_fault("prefill", suspects, request_id)
                self._retrying(attempt, "prefill", attempt_id, exc)
        assert failure is not None
        return backend_error(failure.status, failure.message, request_id)

    async def _pd_batch(
        self,
        request: web.Request,
        bodies: List[Dict[str, Any]],
        affinity: Optional[str],
        started: float,
        request_id: str,
    ) -> web.StreamResponse:
        """One PD pass per prompt, concurrently; their answers merged (or the first failure)."""
        answers = await asyncio.gather(
            *(
                self._pd(
                    request, one, False, protocol.prompt_tokens_estimate(one), affinity, started, f"{request_id}-{i}"
                )
                for i, one in enumerate(bodies)
            )
        )
        for answer in answers:
            if answer.status != 200:
                return answer
        merged = protocol.merge_answers([json.loads(a.body) for a in answers if isinstance(a, web.Response)])
        return web.Response(body=json.dumps(merged).encode(), content_type=JSON, headers={"X-Request-Id": request_id})

    @staticmethod
    def _refused(request: web.Request, status: int, body: Dict[str, Any]) -> web.Response:
        """The client's request is wrong: one log line (never a traceback), and the answer."""
        peer = request.remote or "-"
        log.info(
            "refused %s %s from %s: %d %s", request.method, request.path, peer, status, body["error"]["message"][:200]
        )
        return json_response(status, body)

    @staticmethod
    def _rejected(exc: BackendRejection, request_id: str) -> web.Response:
        return web.Response(
            status=exc.status, body=exc.body, content_type=exc.content_type, headers={"X-Request-Id": request_id}
        )

    @staticmethod
    def _content_fault(phase: str, suspects: Suspects, request_id: str) -> web.Response:
        """Two instances of ``phase`` failed this request with a server error: its content is the
        likely cause. The client gets 502 naming both; no instance is charged."""
        reasons = "; ".join(reason for _backend, reason in suspects.by_phase.pop(phase))
        log.warning("request %s: two %s instances failed it alike, not retried: %s", request_id, phase, reasons)
        message = (
            f"two {phase} instances failed this request alike, so the request itself is the likely cause; "
            f"it was not retried on other instances, and no instance was ejected: {reasons}"
        )
        return backend_error(502, message, request_id)

    def _retrying(self, attempt: int, phase: str, attempt_id: str, exc: BackendFailure) -> None:
        if attempt + 1 < self.cfg.attempts:
            self.metrics.retries.inc((("phase", phase),))
        log.warning("request %s: %s", attempt_id, exc.message)

    def _none_available(self, phase: str) -> BackendFailure:
        pool = self.pools[phase]
        states = ", ".join(f"{b.name} {pool.state_of(b)}" for b in pool.active()) or "none configured"
        return BackendFailure(503, f"no {phase} instance can take the request ({states})")

    def _headers(self, phase: str, request_id: str) -> Dict[str, str]:
        return {"Content-Type": JSON, "X-Request-Id": request_id, **self.auth_headers[phase]}

    def _failed(self, backend: Backend, status: int, reason: str, *, answered: bool = False) -> BackendFailure:
        """A failure of ``backend`` on this request. One it ``answered`` (a server error) is charged
        to it only once another instance has served the request (:class:`Suspects`); one of a rank
        whose DP group lost another rank is never charged (held until its group is whole)."""
        pool = self.pools[backend.phase]
        lost = pool.held_by(backend)
        if lost is not None:
            answered = False
            if "its DP group" not in reason:
                reason = f"{reason} (its DP group {backend.group} lost {lost.name})"
        elif not answered:
            pool.failed(backend, reason)
        self.metrics.backend_requests.inc(backend_labels(backend, ("outcome", "error")))
        message = f"{backend.phase} instance {backend.name} ({backend.url}): {reason}"
        return BackendFailure(status, message, backend, answered)

    def _group_lost(self, lost: Backend, held: List[Backend]) -> None:
        """A rank of a DP group was ejected: its group's other ranks stall on it, so the requests
        they hold would hang for the collective's timeout. They are aborted now: a request not
        yet answered is interrupted (:meth:`_aborted`) and retried on another group; a stream
        already relayed has its upstream closed and ends with an error event."""
        aborted = 0
        # The lost rank's own requests too: a rank ejected for not answering (a hung process)
        # would keep them until their timeouts, and its group cannot finish them anyway.
        for backend in (lost, *held):
            for task in list(backend.tasks):
                if task not in self._group_aborts and task.cancel():
                    self._group_aborts[task] = f"aborted: its DP group {lost.group} lost {lost.name}"
                    aborted += 1
            for upstream in list(backend.streams):
                upstream.close()
                aborted += 1
        log.warning(
            "%s DP group %s lost %s: its other ranks (%s) get no requests until it is whole again;"
            " %d requests in flight on them aborted",
            lost.phase,
            lost.group,
            lost.name,
            ", ".join(b.name for b in held),
            aborted,
        )

    def _aborted(self) -> Optional[str]:
        """In a handler that got CancelledError: why, if :meth:`_group_lost` did it (the handler
        then goes on), or None for any other cancellation (the client left: let it end)."""
        task = asyncio.current_task()
        reason = self._group_aborts.pop(task, None) if task is not None else None
        if reason is not None and hasattr(task, "uncancel"):  # 3.11+: asyncio.timeout counts cancels
            task.uncancel()
        return reason

    def _check_status(self, backend: Backend, status: int, body: bytes, content_type: str) -> None:
        """Raise for a non-200 answer: a rejection to relay, or a failure to retry."""
        if status == 200:
            return
        if 400 <= status < 500 and status not in BACKEND_FAULT_4XX:
            self.pools[backend.phase].succeeded(backend)  # it answered; the request was wrong
            self.metrics.backend_requests.inc(backend_labels(backend, ("outcome", "rejected")))
            raise BackendRejection(status, body, content_type or JSON)
        hint = " (check prefill.api_key / decode.api_key)" if status in (401, 403) else ""
        # A 500 is what vLLM answers when a request breaks its engine: maybe the instance, maybe
        # the content. 502/503/504 (and 401/403/408/429) are the instance's state, charged at once.
        reason = f"HTTP {status}{hint}: {body[:300].decode('utf-8', 'replace')}"
        raise self._failed(backend, 502, reason, answered=status == 500)

    async def _exchange(
        self, backend: Backend, path: str, payload: bytes, request_id: str, tokens: int, limit_key: str
    ) -> Tuple[bytes, float]:
        """POST ``payload`` and read the whole answer within ``timeouts.<limit_key>``.

        Returns the 200 answer and when the exchange began; anything else raises (a
        BackendFailure to retry elsewhere, or a BackendRejection to relay).
        """
        assert self.upstreams is not None
        pool = self.pools[backend.phase]
        limit = getattr(self.cfg.timeouts, limit_key)
        pool.start(backend, tokens)
        task = _current_task(backend)
        began = time.perf_counter()
        try:
            async with deadline(limit):
                upstream = await self.upstreams.post(
                    backend.url, path, payload, self._headers(backend.phase, request_id)
                )
                try:
                    answer = await upstream.read()
                finally:
                    upstream.release()
            status, content_type = upstream.status, upstream.content_type
        except asyncio.TimeoutError:
            raise self._failed(backend, 504, f"no answer within {limit:g} s (timeouts.{limit_key})") from None
        except UpstreamError as exc:
            raise self._failed(backend, exc.status, str(exc)) from None
        except asyncio.CancelledError:
            reason = self._aborted()
            if reason is None:
                raise
            raise self._failed(backend, 502, reason) from None
        finally:
            backend.tasks.discard(task)
            pool.finish(backend, tokens)
        self._check_status(backend, status, answer, content_type)
        return answer, began

    def _ok(self, backend: Backend) -> None:
        self.pools[backend.phase].succeeded(backend)
        self.metrics.backend_requests.inc(backend_labels(backend, ("outcome", "ok")))

    def _served(self, backend: Backend, began: float) -> None:
        self._ok(backend)
        self.metrics.phase_seconds.observe(backend_labels(backend), time.perf_counter() - began)

    async def _prefill(
        self, backend: Backend, path: str, payload: bytes, request_id: str, tokens: int
    ) -> Dict[str, Any]:
        answer, began = await self._exchange(backend, path, payload, request_id, tokens, "prefill")
        try:
            kv_params, cached = protocol.read_prefill_answer(answer)
        except protocol.PrefillAnswerError as exc:
            raise self._failed(backend, 502, str(exc)) from None
        self._served(backend, began)
        if cached:
            self.metrics.cached_tokens.inc((), cached)
        return kv_params

    async def _whole(
        self,
        backend: Backend,
        payload: bytes,
        request_id: str,
        tokens: int,
        path: str,
        client_id: str,
        limit_key: str,
    ) -> web.Response:
        """A non-streaming answer from ``backend``, relayed whole."""
        answer, began = await self._exchange(backend, path, payload, request_id, tokens, limit_key)
        if not answer.lstrip().startswith(b"{"):
            raise self._failed(backend, 502, f"HTTP 200 without a JSON answer: {answer[:200]!r}")
        self._served(backend, began)
        return web.Response(body=answer, content_type=JSON, headers={"X-Request-Id": client_id})

    async def _relay_stream(
        self,
        request: web.Request,
        backend: Backend,
        payload: bytes,
        request_id: str,
        tokens: int,
        started: float,
        client_id: str,
        first_limit_key: str,
    ) -> web.StreamResponse:
        """Stream ``backend``'s answer (a decode, or a prefill serving alone) to the client,
        committing only once its first event is in (within ``timeouts.<first_limit_key>``)."""
        assert self.upstreams is not None
        pool = self.pools[backend.phase]
        first_limit = getattr(self.cfg.timeouts, first_limit_key)
        framer = protocol.SSEFramer()
        pool.start(backend, tokens)
        task = _current_task(backend)
        began = time.perf_counter()
        upstream: Optional[UpstreamResponse] = None
        try:
            # Phase 1: nothing is sent to the client until the first event is in.
            try:
                async with deadline(first_limit):
                    upstream = await self.upstreams.post(
                        backend.url, request.path, payload, self._headers(backend.phase, request_id)
                    )
                    if upstream.status != 200:
                        self._check_status(backend, upstream.status, await upstream.read(), upstream.content_type)
                    head, first = b"", None
                    while first is None:  # comments (": ping") are not events
                        data = await upstream.readany()
                        if not data:
                            raise self._failed(backend, 502, "the stream ended before its first event")
                        completed = framer.feed(data)
                        head += completed
                        first = next(_events(completed), None)
            except asyncio.TimeoutError:
                raise self._failed(
                    backend, 504, f"no first event within {first_limit:g} s (timeouts.{first_limit_key})"
                ) from None
            except UpstreamError as exc:
                raise self._failed(backend, exc.status, str(exc)) from None
            except asyncio.CancelledError:
                reason = self._aborted()
                if reason is None:
                    raise
                raise self._failed(backend, 502, reason) from None
            finally:
                # From here the client is written to: a lost group closes the upstream instead.
                backend.tasks.discard(task)
            message = _is_error_event(first)
            if message is not None:
                raise self._failed(backend, 502, f"the stream failed before its first token: {message}", answered=True)
            self.metrics.phase_seconds.observe(backend_labels(backend), time.perf_counter() - began)

            # Phase 2: committed. From here a failure is an SSE error event, never a silent end.
            response = web.StreamResponse(status=200, headers={**SSE_HEADERS, "X-Request-Id": client_id})
            backend.streams.add(upstream)
            await response.prepare(request)
            await response.write(head)
            self.metrics.first_chunk_seconds.observe((), time.perf_counter() - started)
            outcome = await self._relay(backend, upstream, framer, response, head)
            if outcome is None:
                upstream.release(drain=True)  # after [DONE]: its connection may serve another request
                self._ok(backend)
            else:
                self._failed(backend, 502, outcome)
                log.warning(
                    "request %s: %s instance %s (%s): %s", request_id, backend.phase, backend.name, backend.url, outcome
                )
            await response.write_eof()
            return response
        finally:
            pool.finish(backend, tokens)
            backend.tasks.discard(task)
            if upstream is not None:
                backend.streams.discard(upstream)
                upstream.release()

    async def _relay(
        self,
        backend: Backend,
        upstream: UpstreamResponse,
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
                for event in _events(out, (b"[DONE]", b'"error"')):
                    if event.data == "[DONE]":
                        return error
                    error = error or _is_error_event(event)
            try:
                async with deadline(idle):
                    data = await upstream.readany()
            except asyncio.TimeoutError:
                problem = f"no data for {idle:g} s (timeouts.idle)"
                break
            except UpstreamError as exc:
                problem = str(exc)
                break
            out = framer.feed(data)  # at the end (b""), what a trailing CR completes
            if out:
                await response.write(out)
            elif not data:
                problem = "the stream ended without [DONE]"
                break
        lost = self.pools[backend.phase].held_by(backend)
        if lost is None and backend.group and backend.state == EJECTED:
            lost = backend
        if lost is not None:
            problem = f"{problem}: aborted, its DP group {backend.group} lost {lost.name}"
        message = f"{backend.phase} instance {backend.name} failed mid-stream: {problem}"
        await response.write(protocol.sse_error_event(502, message) + b"data: [DONE]\n\n")
        return problem


class OneLineClientErrors(logging.Filter):
    """aiohttp logs a request it cannot parse (garbage, a bad Content-Length, a header too long)
    with a traceback, at error level; it is the client's mistake, not the proxy's: one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"refused a malformed request: {record.getMessage()}: {exc.code} {exc.message}"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _events(framed: bytes, markers: Tuple[bytes, ...] = ()) -> Iterator[SSEEvent]:
    """The events of ``framed`` (whole events, as :class:`protocol.SSEFramer` cuts them: LF line
    ends, each ending with a blank line), decoded one at a time and only as far as the caller
    reads, or only those whose bytes hold one of ``markers``. At zero latency a whole 16-token
    stream comes in one read: decoding all of it to find its first event, or its ``[DONE]``,
    was the proxy's largest cost after the HTTP client."""
    for raw in framed.split(b"\n\n"):
        if raw and (not markers or any(m in raw for m in markers)):
            yield from SSEParser().feed(raw + b"\n\n")


def _current_task(backend: Backend) -> Optional[asyncio.Task[Any]]:
    """The handler now waiting on ``backend``, registered so that a lost DP group can abort it."""
    task = asyncio.current_task()
    if task is not None:
        backend.tasks.add(task)
    return task


def make_runner(proxy: Proxy) -> web.AppRunner:
    """The aiohttp runner of a proxy, as ``__main__`` serves it (and the tests do)."""
    server_log = logging.getLogger("ascend_pd_proxy.http")
    if not any(isinstance(f, OneLineClientErrors) for f in server_log.filters):
        server_log.addFilter(OneLineClientErrors())
    return web.AppRunner(
        proxy.app(),
        handler_cancellation=True,  # a client that leaves cancels its upstream requests
        access_log=logging.getLogger("ascend_pd_proxy.access") if proxy.cfg.access_log else None,
        logger=server_log,
        # aiohttp (3.14, as the image ships it) arms this timer when a connection opens and after
        # each answer, and closes the connection if no whole request head has arrived by then:
        # the deadline for a client's headers (slowloris), and for idle keep-alive connections.
        keepalive_timeout=proxy.cfg.timeouts.client_headers,
        shutdown_timeout=1.0,
    )
