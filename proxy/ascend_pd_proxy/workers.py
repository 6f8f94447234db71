"""A worker's view of its siblings (``workers`` > 1): the private control endpoints.

The supervisor (``supervisor.py``) starts N worker processes on the same port (SO_REUSEPORT)
and gives them a private directory (mode 0700, made by ``tempfile.mkdtemp``). Each worker also
serves a small control API on a Unix socket there, ``worker-<id>.sock``: its own raw metrics,
its own backend listing, and the admin mutations applied to it alone. A worker that receives
``GET /metrics`` or ``GET /admin/backends`` gathers its siblings' documents from these and
merges them (``aggregate.py``); an admin ``POST`` / ``DELETE`` is applied locally and then to
every sibling. The directory's mode is the control API's only access check: it carries no key
because nothing but this user's processes can reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any, Callable, Dict, List, Optional

import aiohttp
from aiohttp import web

from . import log
from .aggregate import active_instances
from .config import PHASES, Instance, parse_instance

WORKER_HEADER = "x-ascend-proxy-worker"
# A sibling busy with a burst answers in milliseconds; one that takes longer is left out of the
# merged view (and logged) rather than stall the scrape or the admin call.
CONTROL_TIMEOUT = 3.0
SOCKET_PREFIX, SOCKET_SUFFIX = "worker-", ".sock"

# (method, phase, instance) -> the backend's description, or None when there was nothing to remove.
Apply = Callable[[str, str, Instance], Optional[Dict[str, Any]]]


def socket_path(control_dir: str, worker: int) -> str:
    return os.path.join(control_dir, f"{SOCKET_PREFIX}{worker}{SOCKET_SUFFIX}")


class Siblings:
    """The other workers of this proxy, reached through their control sockets."""

    def __init__(self, worker: int, control_dir: str) -> None:
        self.worker = worker
        self.control_dir = control_dir

    @property
    def path(self) -> str:
        return socket_path(self.control_dir, self.worker)

    def peers(self) -> List[str]:
        """The sockets of the other workers. A worker being restarted has none, or a stale one
        that refuses connections: it is left out of the merged view until it is back."""
        try:
            names = sorted(os.listdir(self.control_dir))
        except OSError:
            return []
        own = os.path.basename(self.path)
        return [
            os.path.join(self.control_dir, n)
            for n in names
            if n.startswith(SOCKET_PREFIX) and n.endswith(SOCKET_SUFFIX) and n != own
        ]

    async def _call(self, peer: str, method: str, path: str, body: Optional[Dict[str, Any]]) -> Optional[bytes]:
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=peer)) as session,
                session.request(
                    method,
                    f"http://worker{path}",
                    json=body,
                    timeout=aiohttp.ClientTimeout(total=CONTROL_TIMEOUT),
                ) as answer,
            ):
                data = await answer.read()
                if answer.status == 200:
                    return data
                log.warning("worker %s: %s %s: HTTP %d", os.path.basename(peer), method, path, answer.status)
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("worker %s: %s %s: %s", os.path.basename(peer), method, path, exc or type(exc).__name__)
        return None

    async def _each(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> List[bytes]:
        """The answers of every sibling that answered."""
        answers = await asyncio.gather(*(self._call(peer, method, path, body) for peer in self.peers()))
        return [a for a in answers if a is not None]

    async def metrics(self) -> List[str]:
        return [a.decode("utf-8", "replace") for a in await self._each("GET", "/metrics")]

    async def listings(self) -> List[Dict[str, Any]]:
        return [json.loads(a) for a in await self._each("GET", "/backends")]

    async def apply(self, method: str, phase: str, instance: Instance) -> None:
        body = {"phase": phase, "url": instance.url, "name": instance.name, "group": instance.group}
        await self._each(method, "/backends", body)

    async def tag(self, _request: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare``: every answer names the worker that gave it."""
        response.headers[WORKER_HEADER] = str(self.worker)

    async def adopt(self, reconcile: Callable[[str, List[Instance]], List[str]]) -> None:
        """At start: take the instance lists of a running sibling, so a worker restarted after a
        crash also has the admin API's changes since the last reload, not only the file's."""
        for listing in await self.listings():
            for phase in PHASES:
                instances = [parse_instance(i, phase) for i in active_instances(listing, phase)]
                for change in reconcile(phase, instances):
                    log.info("worker %d: as its sibling worker %s: %s", self.worker, listing.get("worker"), change)
            return


def control_app(
    render_metrics: Callable[[], str], listing: Callable[[], Dict[str, Any]], apply: Apply
) -> web.Application:
    """The control API one worker serves its siblings: its own state only, never merged."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=render_metrics(), content_type="text/plain", charset="utf-8")

    async def backends(_request: web.Request) -> web.Response:
        return web.json_response(listing())

    async def change(request: web.Request) -> web.Response:
        # The public handler validated the body already; a sibling only re-reads it.
        try:
            raw = await request.json()
            instance = parse_instance({k: raw.get(k) for k in ("url", "name", "group")}, raw["phase"])
        except (ValueError, KeyError, AttributeError) as exc:  # ConfigError is a ValueError
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(apply(request.method, raw["phase"], instance))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/backends", backends)
    app.router.add_post("/backends", change)
    app.router.add_delete("/backends", change)
    return app


async def serve_control(app: web.Application, path: str) -> web.AppRunner:
    """Listen on ``path`` (a stale socket of this worker's previous process is replaced)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    await web.UnixSite(runner, path).start()
    return runner
