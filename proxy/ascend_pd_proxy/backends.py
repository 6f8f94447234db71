"""The backend pools: health state, in-flight load and the choice of instance. No I/O.

Each backend (one vLLM instance = one DP rank) is in one of these states:

``unknown``   just configured; not routed to until its first health check passes.
``healthy``   routed to.
``ejected``   failed ``failures_to_eject`` times in a row (health checks or requests); not
              routed to. Health checks go on; after ``successes_to_admit`` passing checks in a
              row it moves to ``probation``.
``probation`` half-open: it gets one request at a time; the first successful request (or
              ``successes_to_admit`` more passing checks) makes it healthy again, the
              first failure ejects it again.
``removed``   taken out of the configuration (SIGHUP or the admin API); gets no new requests
              and disappears once its in-flight requests end.

When every backend of a phase is ejected, the ejected ones are tried anyway (panic mode, as
Envoy does): a request then fails only if they really are down. Not a rank whose DP group
still has a rank passing its checks: that is one rank lost (below), not an overload, and
trying the lost rank only turns the clear 503 into a 502 from a dead address.

Ranks of one data-parallel group (``Instance.group``) stand or fall together: with expert
parallelism every forward pass is collective, so when one rank dies its group's other ranks
stall (their ``/health`` still passes) until the collective times out, half an hour later by
default. While a rank of a group is ejected, the group's other ranks are *held*: not routed
to, not counted as healthy, and ``on_group_lost`` is told, so the proxy can abort the requests
they hold (those are then retried on another group, or end with an error event).

The choice is the least-loaded routable backend, load being the in-flight requests and the
prompt tokens they carry, weighted per phase: prefill time grows with prompt length, decode
load with the number of running sequences. Ties go round-robin. With prefix affinity, a
prefill request goes to the backend that rendezvous hashing picks for its prompt prefix, so
requests sharing a long prefix hit the same prefix cache, unless that backend is far busier
than the least-loaded one.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set

from .config import Instance

UNKNOWN, HEALTHY, EJECTED, PROBATION, REMOVED = "unknown", "healthy", "ejected", "probation", "removed"

# Load of one in-flight request, in prompt-token equivalents, on top of its prompt tokens.
REQUEST_WEIGHT = {"prefill": 256, "decode": 8192}
# Prefix affinity yields to balance when the preferred backend's load exceeds
# AFFINITY_SLACK x the least load + one request's weight.
AFFINITY_SLACK = 2.0


class Backend:
    __slots__ = (
        "consecutive_failures",
        "consecutive_successes",
        "in_flight",
        "in_flight_tokens",
        "instance",
        "last_error",
        "phase",
        "since",
        "state",
        "streams",
        "tasks",
    )

    def __init__(self, phase: str, instance: Instance, now: float) -> None:
        self.phase = phase
        self.instance = instance
        self.state = UNKNOWN
        self.since = now  # when the state last changed
        self.in_flight = 0
        self.in_flight_tokens = 0
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.last_error: Optional[str] = None
        # What a lost DP group aborts: the request handlers (asyncio tasks) waiting for this
        # backend's answer, cancelled; the upstream responses of streams already relayed, closed.
        self.tasks: Set[Any] = set()
        self.streams: Set[Any] = set()

    @property
    def name(self) -> str:
        return self.instance.name

    @property
    def group(self) -> str:
        return self.instance.group

    @property
    def url(self) -> str:
        return self.instance.url

    def load(self) -> float:
        return self.in_flight * REQUEST_WEIGHT[self.phase] + self.in_flight_tokens

    def routable(self) -> bool:
        return self.state == HEALTHY or (self.state == PROBATION and self.in_flight == 0)

    def describe(self) -> Dict[str, object]:
        return {
            "name": self.name,
            "url": self.url,
            "phase": self.phase,
            "state": self.state,
            "since": round(self.since, 3),
            "in_flight": self.in_flight,
            "in_flight_tokens": self.in_flight_tokens,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "group": self.group,
        }


class Pool:
    """The backends of one phase."""

    def __init__(
        self,
        phase: str,
        instances: Iterable[Instance],
        *,
        failures_to_eject: int,
        successes_to_admit: int,
        clock: Callable[[], float] = time.monotonic,
        on_change: Optional[Callable[[Backend, str], None]] = None,
        on_group_lost: Optional[Callable[[Backend, List[Backend]], None]] = None,
    ) -> None:
        self.phase = phase
        self.failures_to_eject = failures_to_eject
        self.successes_to_admit = successes_to_admit
        self.clock = clock
        self.on_change = on_change  # (backend, old state): for logs
        self.on_group_lost = on_group_lost  # (the ejected rank, its held siblings)
        self.backends: Dict[str, Backend] = {}
        self._turn = 0
        for instance in instances:
            self.add(instance)

    # -- membership ----------------------------------------------------------------------------

    def add(self, instance: Instance) -> Backend:
        """Add an instance (or re-add a removed one); it is routed to once a health check passes."""
        current = self.backends.get(instance.url)
        if current is None:
            backend = self.backends[instance.url] = Backend(self.phase, instance, self.clock())
            return backend
        current.instance = instance  # possibly a new name for the same URL
        if current.state == REMOVED:
            # Same object: requests still in flight on it will call finish() on it.
            current.consecutive_failures = current.consecutive_successes = 0
            current.last_error = None
            self._set(current, UNKNOWN)
        return current

    def remove(self, url: str) -> Optional[Backend]:
        backend = self.backends.get(url)
        if backend is None or backend.state == REMOVED:
            return None
        self._set(backend, REMOVED)
        self._forget_if_idle(backend)
        return backend

    def reconcile(self, instances: Sequence[Instance]) -> List[str]:
        """Make the pool hold exactly ``instances``; returns what changed, for the log."""
        wanted = {i.url: i for i in instances}
        changes = []
        for url in [u for u, b in self.backends.items() if b.state != REMOVED and u not in wanted]:
            self.remove(url)
            changes.append(f"removed {self.phase} {url}")
        for url, instance in wanted.items():
            existing = self.backends.get(url)
            if existing is None or existing.state == REMOVED:
                changes.append(f"added {self.phase} {url}")
            self.add(instance)
        return changes

    def active(self) -> List[Backend]:
        return [b for b in self.backends.values() if b.state != REMOVED]

    def routed(self) -> List[Backend]:
        """The active backends routed to: healthy or on probation, and their DP group whole."""
        broken = self.broken_groups()
        return [b for b in self.active() if b.state in (HEALTHY, PROBATION) and b.group not in broken]

    def counts(self) -> Dict[str, int]:
        """``healthy``: the backends routed to (:meth:`routed`); ``total``: all configured."""
        return {"healthy": len(self.routed()), "total": len(self.active())}

    # -- data-parallel groups ------------------------------------------------------------------

    def siblings(self, backend: Backend) -> List[Backend]:
        """The other active ranks of ``backend``'s DP group (none for a rank on its own)."""
        if not backend.group:
            return []
        return [b for b in self.active() if b.group == backend.group and b is not backend]

    def instance_urls(self, backend: Backend) -> Set[str]:
        """The URLs of ``backend``'s instance: every rank of its DP group, or itself alone."""
        return {backend.url, *(b.url for b in self.siblings(backend))}

    def broken_groups(self) -> Set[str]:
        """The DP groups with an ejected rank: their other ranks are held."""
        return {b.group for b in self.backends.values() if b.group and b.state == EJECTED}

    def panic_candidates(self) -> List[Backend]:
        """The ejected backends panic mode may try: alone, or in a DP group ejected whole."""
        alive = {b.group for b in self.active() if b.group and b.state != EJECTED}
        return [b for b in self.backends.values() if b.state == EJECTED and b.group not in alive]

    def held_by(self, backend: Backend) -> Optional[Backend]:
        """The ejected rank that stalls ``backend``'s DP group, if any."""
        return next((b for b in self.siblings(backend) if b.state == EJECTED), None)

    def state_of(self, backend: Backend) -> str:
        """``backend``'s state for a message: a held rank says which rank holds it."""
        lost = self.held_by(backend) if backend.state != EJECTED else None
        return f"held (its DP group {backend.group} lost {lost.name})" if lost else backend.state

    # -- choice --------------------------------------------------------------------------------

    def choose(
        self, exclude: Iterable[str] = (), affinity_key: Optional[str] = None, *, peek: bool = False
    ) -> Optional[Backend]:
        """The backend for the next request, or None when no routable backend is left. ``peek``:
        only look (the round-robin turn does not move), for a choice made again later."""
        excluded = set(exclude)
        candidates = [b for b in self.backends.values() if b.routable() and b.url not in excluded]
        broken = self.broken_groups()
        if broken:
            candidates = [b for b in candidates if b.group not in broken]
        if not candidates:
            # Panic mode: with every backend ejected (an overload can fail health checks
            # everywhere at once), trying one beats refusing all traffic until checks recover.
            candidates = [b for b in self.panic_candidates() if b.url not in excluded]
        if not candidates:
            return None
        if not peek:
            self._turn += 1
        start = self._turn % len(candidates)
        ordered = candidates[start:] + candidates[:start]  # round-robin among equals
        least = min(ordered, key=Backend.load)
        if affinity_key is None or len(candidates) == 1:
            return least
        preferred = max(candidates, key=lambda b: _rendezvous(affinity_key, b.url))
        limit = AFFINITY_SLACK * least.load() + REQUEST_WEIGHT[self.phase]
        return preferred if preferred.load() <= limit else least

    def start(self, backend: Backend, tokens: int) -> None:
        backend.in_flight += 1
        backend.in_flight_tokens += tokens

    def finish(self, backend: Backend, tokens: int) -> None:
        backend.in_flight -= 1
        backend.in_flight_tokens -= tokens
        self._forget_if_idle(backend)

    # -- health --------------------------------------------------------------------------------

    def succeeded(self, backend: Backend, *, check: bool = False) -> None:
        """A request (or, with ``check``, a health check) to ``backend`` went well."""
        backend.consecutive_failures = 0
        backend.last_error = None if backend.state != EJECTED else backend.last_error
        if backend.state == UNKNOWN:
            self._set(backend, HEALTHY)
        elif backend.state in (EJECTED, PROBATION) and check:
            # Without traffic a probation would never end: passing checks complete it too.
            backend.consecutive_successes += 1
            if backend.consecutive_successes >= self.successes_to_admit:
                self._set(backend, PROBATION if backend.state == EJECTED else HEALTHY)
        elif backend.state == PROBATION:
            self._set(backend, HEALTHY)

    def failed(self, backend: Backend, reason: str) -> None:
        """A request or health check failed for a reason that is the backend's, not the client's."""
        backend.last_error = reason
        backend.consecutive_successes = 0
        backend.consecutive_failures += 1
        if backend.state == PROBATION or (
            backend.state in (HEALTHY, UNKNOWN) and backend.consecutive_failures >= self.failures_to_eject
        ):
            self._set(backend, EJECTED)

    def _set(self, backend: Backend, state: str) -> None:
        old = backend.state
        if old == state:
            return
        backend.state = state
        backend.since = self.clock()
        if state in (EJECTED, PROBATION):
            backend.consecutive_successes = 0
        if self.on_change is not None:
            self.on_change(backend, old)
        if state == EJECTED and self.on_group_lost is not None:
            held = [b for b in self.siblings(backend) if b.state != EJECTED]
            if held:
                self.on_group_lost(backend, held)

    def _forget_if_idle(self, backend: Backend) -> None:
        if backend.state == REMOVED and backend.in_flight == 0 and self.backends.get(backend.url) is backend:
            del self.backends[backend.url]


def _rendezvous(key: str, url: str) -> int:
    digest = hashlib.blake2b(f"{url}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
