"""One view of several worker processes (``workers`` > 1): their metrics and admin listings merged.

Each worker keeps its own counters, histograms and backend pools; the worker that receives a
``GET /metrics`` or ``GET /admin/backends`` gathers its siblings' raw documents
(``workers.py``) and merges them here, so Prometheus and the ``pd_proxy_backends`` module see
one proxy, not N. Pure functions: no I/O, no state.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

from .backends import EJECTED, HEALTHY, PROBATION, REMOVED, UNKNOWN
from .metrics import _number

# Families whose samples are a 0/1 state, not an amount: a sum over two workers would read
# "2" for a backend both route to. The merged value is the minimum: 1 only when every worker
# routes to the backend, so an alert on 0 fires as soon as one worker stops using it.
MIN_FAMILIES = frozenset({"pd_proxy_backend_healthy"})

# When workers disagree about a backend (each runs its own health checks, and a request failure
# is seen by one worker only), the listing shows the state that serves least, and each
# worker's own under "workers". "removed" first: a backend still draining on one worker must
# stay listed as removed until its last request ends there ("drained" = gone or 0 in flight).
STATE_ORDER = (REMOVED, EJECTED, UNKNOWN, PROBATION, HEALTHY)
STATUS_ORDER = ("draining", "unavailable", "ok")


def _first_ranked(values: Sequence[str], order: Sequence[str]) -> str:
    """The value of ``values`` that comes first in ``order`` (unknown values last)."""
    return min(values, key=lambda v: order.index(v) if v in order else len(order))


def merge_metrics(texts: Sequence[str]) -> str:
    """Prometheus texts of the same families, one per worker, as one text.

    A sample (the same name and labels) present in several texts is summed: counters, histogram
    buckets, ``_count`` and ``_sum`` (cumulative buckets sum to the merged histogram's), and
    gauges such as the requests in flight; the families of :data:`MIN_FAMILIES` take the
    minimum. A sample only some workers have (a backend one worker still drains) is merged
    over those. Families and samples keep the order in which they first appear.
    """
    headers: Dict[str, List[str]] = {}  # family -> its "# HELP" / "# TYPE" lines, from the first text
    samples: Dict[str, Dict[str, float]] = {}  # family -> "name{labels}" -> merged value
    for text in texts:
        family = ""
        seen_headers: Dict[str, List[str]] = {}
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                family = line.split(" ", 3)[2]
                seen_headers.setdefault(family, []).append(line)
                samples.setdefault(family, {})
                continue
            if not line or line.startswith("#"):
                continue
            key, _space, raw = line.rpartition(" ")
            try:
                value = float(raw)
            except ValueError:
                continue  # not a sample this module wrote; leave it out rather than guess
            series = samples.setdefault(family, {})
            if key not in series:
                series[key] = value
            elif family in MIN_FAMILIES:
                series[key] = min(series[key], value)
            else:
                series[key] += value
        for family, lines in seen_headers.items():
            headers.setdefault(family, lines)
    out: List[str] = []
    for family, series in samples.items():
        out += headers.get(family, [])
        out += [f"{key} {_number(value)}" for key, value in series.items()]
    return "\n".join(out) + "\n"


def _merge_backend(entries: Sequence[Tuple[str, Mapping[str, Any]]]) -> Dict[str, Any]:
    """One backend as listed by several workers (``(worker id, entry)``)."""
    views = [entry for _worker, entry in entries]
    first = views[0]
    merged = dict(first)
    merged["state"] = _first_ranked([e["state"] for e in views], STATE_ORDER)
    for key in ("in_flight", "in_flight_tokens"):
        merged[key] = sum(e.get(key, 0) for e in views)
    merged["consecutive_failures"] = max(e.get("consecutive_failures", 0) for e in views)
    merged["since"] = max(e.get("since", 0) for e in views)
    # The error and DP-group hold of the worker whose view changed last: the newest news.
    latest = max(views, key=lambda e: e.get("since", 0))
    merged["last_error"] = latest.get("last_error") or next(
        (e["last_error"] for e in views if e.get("last_error")), None
    )
    merged["held_by"] = next((e["held_by"] for e in views if e.get("held_by")), None)
    merged["workers"] = {worker: e["state"] for worker, e in entries}
    return merged


def merge_listings(docs: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """``GET /admin/backends`` documents, one per worker (each with its ``worker`` id), as one.

    ``status``: the worst worker's (draining, then unavailable, then ok); ``in_flight`` summed;
    per phase ``healthy`` the fewest any worker routes to, ``total`` the most any configures;
    each backend once, with summed load and the least-serving state (:data:`STATE_ORDER`), its
    state per worker under ``workers``; ``workers``: the ids that answered.
    """
    merged: Dict[str, Any] = {
        "status": _first_ranked([d["status"] for d in docs], STATUS_ORDER),
        "in_flight": sum(d.get("in_flight", 0) for d in docs),
    }
    phases = [k for k, v in docs[0].items() if isinstance(v, dict) and {"healthy", "total"} <= set(v)]
    for phase in phases:
        merged[phase] = {
            "healthy": min(d[phase]["healthy"] for d in docs if phase in d),
            "total": max(d[phase]["total"] for d in docs if phase in d),
        }
    by_backend: Dict[Tuple[str, str], List[Tuple[str, Mapping[str, Any]]]] = {}
    for doc in docs:
        for entry in doc.get("backends", []):
            by_backend.setdefault((entry["phase"], entry["url"]), []).append((str(doc.get("worker")), entry))
    merged["backends"] = [_merge_backend(entries) for entries in by_backend.values()]
    merged["workers"] = sorted(str(d.get("worker")) for d in docs)
    return merged


def active_instances(listing: Mapping[str, Any], phase: str) -> List[Dict[str, str]]:
    """The instances of ``phase`` a worker's listing routes or may route to (not ``removed``), as
    ``{"url", "name", "group"}``: what a restarted worker takes over from a running sibling."""
    return [
        {"url": b["url"], "name": b["name"], "group": b.get("group") or ""}
        for b in listing.get("backends", [])
        if b["phase"] == phase and b["state"] != REMOVED
    ]
