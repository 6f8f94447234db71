"""The endpoints besides generation: ``/v1/models``, ``/health`` (and ``/healthcheck``), ``/metrics``,
and the tokenizer's (``POST /tokenize``, ``POST /detokenize``, ``GET /tokenizer_info``).

``/metrics`` is the proxy's own series followed by the instances' speculative-decoding counters
(``relay.py``), unless asked with ``?relay=false``.

Also the client key check that generation shares. ``/health`` and ``/metrics`` stay open
when ``api_keys`` is set: load balancers and Prometheus carry no key.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any, Dict, List, Optional, Set

import aiohttp
from aiohttp import web

from . import protocol
from .aggregate import merge_metrics
from .backends import Pool
from .config import Config
from .http_util import JSON, deadline, describe, error_response, json_response
from .metrics import ProxyMetrics
from .relay import OFF, SpecDecodeRelay
from .workers import Siblings


class ServiceEndpoints:
    """Mixed into :class:`~ascend_pd_proxy.server.Proxy`, whose state these endpoints report.

    The annotations below are the part of that state they use; ``Proxy.__init__`` sets it.
    """

    cfg: Config
    pools: Dict[str, Pool]
    session: Optional[aiohttp.ClientSession]
    auth_headers: Dict[str, Dict[str, str]]
    client_keys: List[bytes]
    metrics: ProxyMetrics
    spec_decode_relay: SpecDecodeRelay
    in_flight: int
    draining: bool
    siblings: Optional[Siblings]

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
                reasons.append(f"{backend.name}: {describe(exc)}")
        detail = "; ".join(reasons) or "no healthy decode instance"
        return error_response(503, f"cannot list the models: {detail}")

    async def tokenizer(self, request: web.Request) -> web.Response:
        """Relay a tokenizer request to one instance: every instance of the deployment runs the
        same model and tokenizer, so any answers as the whole would. Decode instances first (as
        ``/v1/models``), keeping the prefill instances, the usual bottleneck, for prompts;
        prefill instances when no decode instance answers. A 4xx is the request's own and is
        relayed (a 404 ``/tokenizer_info`` means the servers run without
        ``--enable-tokenizer-info-endpoint``); another failure tries the next instance.

        Open without a client key, as vLLM's own ``--api-key`` leaves them (it guards ``/v1``
        only): clients such as lm-eval send no key there, and would otherwise have to put it in
        arguments they record in their results."""
        assert self.session is not None
        try:
            async with deadline(self.cfg.timeouts.client_body):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self.cfg.limits.max_body_bytes
            return error_response(413, f"the request body is larger than {limit} bytes (limits.max_body_bytes)")
        except asyncio.TimeoutError:
            return error_response(408, f"the request body took longer than {self.cfg.timeouts.client_body} s to arrive")
        except web.RequestPayloadError as exc:
            return error_response(400, f"the request body is malformed: {exc}")
        reasons: List[str] = []
        limit = self.cfg.timeouts.prefill  # tokenizing grows with the prompt, like a prefill
        for phase in ("decode", "prefill"):
            tried: Set[str] = set()
            while (backend := self.pools[phase].choose(tried)) is not None:
                tried.add(backend.url)
                headers = {"Content-Type": JSON, **self.auth_headers[phase]}
                try:
                    async with (
                        deadline(limit),
                        self.session.request(
                            request.method, backend.url + request.path, data=body or None, headers=headers
                        ) as up,
                    ):
                        answer = await up.read()
                except asyncio.TimeoutError:
                    reasons.append(f"{backend.name}: no answer within {limit:g} s (timeouts.prefill)")
                    continue
                except aiohttp.ClientError as exc:
                    reasons.append(f"{backend.name}: {describe(exc)}")
                    continue
                if up.status == 200 or (400 <= up.status < 500 and up.status not in protocol.BACKEND_FAULT_4XX):
                    return web.Response(status=up.status, body=answer, content_type=up.content_type or JSON)
                reasons.append(f"{backend.name}: HTTP {up.status}")
        if not reasons:
            return error_response(503, f"no instance can take {request.path}: none is healthy")
        return error_response(502, f"no instance answered {request.path}: {'; '.join(reasons)}")

    def _status(self) -> Dict[str, Any]:
        counts = {phase: pool.counts() for phase, pool in self.pools.items()}
        ready = all(c["healthy"] > 0 for c in counts.values())
        status = "draining" if self.draining else ("ok" if ready else "unavailable")
        return {"status": status, "in_flight": self.in_flight, **counts}

    async def health(self, _request: web.Request) -> web.Response:
        status = self._status()
        return json_response(200 if status["status"] == "ok" else 503, status)

    async def scrape(self, request: web.Request) -> web.Response:
        text = self.metrics.render()
        if self.siblings is not None:
            # One proxy to Prometheus: the sum over the workers. The relayed instances' counters
            # below are fetched by this worker alone, so they are not multiplied.
            text = merge_metrics([text, *await self.siblings.metrics()])
        if request.query.get("relay", "true").lower() not in OFF and self.session is not None:
            text += "\n".join(await self.spec_decode_relay.render(self.session)) + "\n"
        return web.Response(text=text, content_type="text/plain", charset="utf-8")
