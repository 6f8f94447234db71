"""The admin API, ``/admin/backends``: list, add and remove instances at run time.

Off unless ``admin_api_key`` is set. Changes last until the next reload or restart: the
configuration file stays the source of truth.
"""

from __future__ import annotations

import hmac
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from aiohttp import web

from . import log
from .backends import Backend, Pool
from .config import PHASES, ConfigError, Instance, parse_instance
from .http_util import error_response, json_response


class AdminRefusal(Exception):
    """An admin API request refused; ``response`` says why."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class AdminAPI:
    """The handlers of ``GET``, ``POST`` and ``DELETE /admin/backends``."""

    def __init__(
        self,
        key: Optional[str],
        pools: Mapping[str, Pool],
        status: Callable[[], Dict[str, Any]],
        check_soon: Callable[[str, Backend], None],
    ) -> None:
        self.key = key
        self.pools = pools
        self.status = status  # the proxy's /health document, which the listing extends
        self.check_soon = check_soon  # an added instance is checked at once, not at the next round

    def _check_key(self, request: web.Request) -> Optional[web.Response]:
        if self.key is None:
            return error_response(404, "the admin API is off (set admin_api_key to enable it)")
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {self.key}".encode()):
            return error_response(401, "the admin API needs Authorization: Bearer <admin_api_key>")
        return None

    async def list_backends(self, request: web.Request) -> web.Response:
        denied = self._check_key(request)
        if denied is not None:
            return denied
        backends = [
            {**b.describe(), "held_by": getattr(pool.held_by(b), "name", None)}
            for pool in self.pools.values()
            for b in pool.backends.values()
        ]
        return json_response(200, {**self.status(), "backends": backends})

    async def _target(self, request: web.Request) -> Tuple[str, Instance]:
        """The admin key checked, the ``{"phase", "url", "name"}`` body read; else an error response."""
        denied = self._check_key(request)
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
            instance = parse_instance({k: v for k, v in raw.items() if k in ("url", "name", "group")}, raw["phase"])
        except ConfigError as exc:
            raise AdminRefusal(error_response(400, str(exc), param="url")) from None
        return raw["phase"], instance

    async def add_backend(self, request: web.Request) -> web.Response:
        try:
            phase, instance = await self._target(request)
        except AdminRefusal as refusal:
            return refusal.response
        backend = self.pools[phase].add(instance)
        log.info("admin API: added %s instance %s (%s)", phase, instance.name, instance.url)
        self.check_soon(phase, backend)
        return json_response(200, backend.describe())

    async def remove_backend(self, request: web.Request) -> web.Response:
        try:
            phase, instance = await self._target(request)
        except AdminRefusal as refusal:
            return refusal.response
        backend = self.pools[phase].remove(instance.url)
        if backend is None:
            return error_response(404, f"no {phase} instance {instance.url}")
        log.info(
            "admin API: removed %s instance %s (%s), %d in flight", phase, backend.name, backend.url, backend.in_flight
        )
        return json_response(200, backend.describe())
