"""Active health checks of every instance, and the log of their state changes.

Every ``health.interval`` seconds each active instance gets ``GET /health`` (and, with
``health.canary``, a one-token completion). The results go to its pool, which ejects an
instance after ``failures_to_eject`` failures and re-admits it after ``successes_to_admit``
passing checks (see ``backends.py``); request failures count there too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Dict, Mapping, Optional, Set

import aiohttp

from . import log, protocol
from .backends import EJECTED, Backend, Pool
from .config import Health
from .http_util import JSON, deadline, describe


def log_state_change(backend: Backend, old: str) -> None:
    """The pools' ``on_change``: an ejection is a warning with its reason, other changes info."""
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


class HealthChecks:
    """The check loop over the proxy's pools, and single checks on demand (a new instance)."""

    def __init__(self, settings: Health, pools: Mapping[str, Pool], auth_headers: Mapping[str, Dict[str, str]]) -> None:
        self.settings = settings
        self.pools = pools
        # The proxy's own mapping, which a reload updates: a canary uses the current backend keys.
        self.auth_headers = auth_headers
        self.session: Optional[aiohttp.ClientSession] = None
        self._loop_task: Optional[asyncio.Task] = None
        self._canary_models: Dict[str, str] = {}
        self._tasks: Set[asyncio.Future] = set()
        # Set once every instance has had its first check: a worker restarted next to serving
        # siblings waits for it before it takes connections, so none gets a 503 for "no healthy
        # instance" that only means "not checked yet".
        self.first_round = asyncio.Event()

    def start(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._loop_task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            checks = [self._check(pool, b) for pool in self.pools.values() for b in pool.active()]
            await asyncio.gather(*checks)
            self.first_round.set()
            await asyncio.sleep(self.settings.interval)

    def check_soon(self, phase: str, backend: Backend) -> None:
        task = asyncio.ensure_future(self._check(self.pools[phase], backend))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _check(self, pool: Pool, backend: Backend) -> None:
        assert self.session is not None
        health = self.settings
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
            problem = f"health check: {describe(exc)}"
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
        model = self.settings.canary_model or self._canary_models.get(backend.url)
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
