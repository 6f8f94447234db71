"""The admin API, ``/admin/backends``: list, add and remove instances at run time.

Off unless ``admin_api_key`` is set. Changes last until the next reload or restart: the
configuration file stays the source of truth.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple

from aiohttp import web

from . import log
from .aggregate import merge_listings
from .backends import Backend, Pool
from .config import PHASES, ConfigError, Instance, parse_instance
from .http_util import error_response, json_response

if TYPE_CHECKING:
    from .workers import Siblings


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
        # The other worker processes (workers > 1): the listing shows them all, a change
        # reaches them all. None: this process is the whole proxy.
        self.siblings: Optional[Siblings] = None

    def _check_key(self, request: web.Request) -> Optional[web.Response]:
        if self.key is None:
            return error_response(404, "the admin API is off (set admin_api_key to enable it)")
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {self.key}".encode()):
            return error_response(401, "the admin API needs Authorization: Bearer <admin_api_key>")
        return None

    def listing(self) -> Dict[str, Any]:
        """This process's own view: the ``/health`` document and every backend."""
        backends = [
            {**b.describe(), "held_by": getattr(pool.held_by(b), "name", None)}
            for pool in self.pools.values()
            for b in pool.backends.values()
        ]
        own = {**self.status(), "backends": backends}
        if self.siblings is not None:
            own["worker"] = self.siblings.worker
        return own

    async def list_backends(self, request: web.Request) -> web.Response:
        denied = self._check_key(request)
        if denied is not None:
            return denied
        if self.siblings is None:
            return json_response(200, self.listing())
        return json_response(200, merge_listings([self.listing(), *await self.siblings.listings()]))

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

    def apply(self, method: str, phase: str, instance: Instance) -> Optional[Dict[str, Any]]:
        """Add (``POST``) or remove (``DELETE``) an instance in this process; the backend's
        description, or None when there was no such instance to remove."""
        if method == "POST":
            backend = self.pools[phase].add(instance)
            log.info("admin API: added %s instance %s (%s)", phase, instance.name, instance.url)
            self.check_soon(phase, backend)
            return backend.describe()
        removed = self.pools[phase].remove(instance.url)
        if removed is None:
            return None
        log.info(
            "admin API: removed %s instance %s (%s), %d in flight", phase, removed.name, removed.url, removed.in_flight
        )
        return removed.describe()

    async def change_backend(self, request: web.Request) -> web.Response:
        """``POST`` (add) and ``DELETE`` (remove) ``/admin/backends``, in every worker."""
        try:
            phase, instance = await self._target(request)
        except AdminRefusal as refusal:
            return refusal.response
        described = self.apply(request.method, phase, instance)
        if self.siblings is not None:
            # Every worker, even when this one had nothing to remove: their lists are the same
            # unless one was restarted meanwhile, and then this puts it right.
            await self.siblings.apply(request.method, phase, instance)
        if described is None:
            return error_response(404, f"no {phase} instance {instance.url}")
        return json_response(200, described)
