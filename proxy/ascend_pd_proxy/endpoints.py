"""The endpoints besides generation: ``/v1/models``, ``/health`` (and ``/healthcheck``), ``/metrics``.

Also the client key check that generation shares. ``/health`` and ``/metrics`` stay open
when ``api_keys`` is set: load balancers and Prometheus carry no key.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any, Dict, List, Optional, Set

import aiohttp
from aiohttp import web

from .backends import Pool
from .config import Config
from .http_util import JSON, deadline, describe, error_response, json_response
from .metrics import ProxyMetrics


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
    in_flight: int
    draining: bool

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

    def _status(self) -> Dict[str, Any]:
        counts = {phase: pool.counts() for phase, pool in self.pools.items()}
        ready = all(c["healthy"] > 0 for c in counts.values())
        status = "draining" if self.draining else ("ok" if ready else "unavailable")
        return {"status": status, "in_flight": self.in_flight, **counts}

    async def health(self, _request: web.Request) -> web.Response:
        status = self._status()
        return json_response(200 if status["status"] == "ok" else 503, status)

    async def scrape(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")
