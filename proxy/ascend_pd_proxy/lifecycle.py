"""Reload (SIGHUP) and drain (SIGTERM): what ``__main__`` does to a running proxy."""

from __future__ import annotations

import asyncio
from typing import Dict, List, Optional, Sequence

from aiohttp import web

from . import log
from .backends import Pool
from .config import PHASES, Config, ConfigError, Instance, load
from .health import HealthChecks
from .http_util import bearer_header


class Lifecycle:
    """Mixed into :class:`~ascend_pd_proxy.server.Proxy`, whose state both signals change.

    The annotations below are the part of that state they use; ``Proxy.__init__`` sets it.
    """

    cfg: Config
    config_path: Optional[str]
    pools: Dict[str, Pool]
    health_checks: HealthChecks
    auth_headers: Dict[str, Dict[str, str]]
    client_keys: List[bytes]
    in_flight: int
    draining: bool
    _idle: asyncio.Event  # set by the request flow when the last request ends during a drain

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
            for change in self.reconcile(phase, new.pool(phase).instances):
                log.info("reload: %s", change)
            self.auth_headers[phase] = bearer_header(new.pool(phase).api_key)
        restart_only = ("host", "port", "certfile", "keyfile", "workers")
        kept = [k for k in restart_only if getattr(new, k) != getattr(self.cfg, k)]
        if kept:
            log.warning("reload: %s changed; restart the proxy to apply", ", ".join(kept))
        self.client_keys = [key.encode() for key in new.api_keys]

    def reconcile(self, phase: str, instances: Sequence[Instance]) -> List[str]:
        """Make the ``phase`` pool hold exactly ``instances``, the new ones checked at once (not
        at the next round); returns what changed, for the log."""
        changes = self.pools[phase].reconcile(instances)
        for backend in self.pools[phase].active():
            if backend.state == "unknown":
                self.health_checks.check_soon(phase, backend)
        return changes

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
