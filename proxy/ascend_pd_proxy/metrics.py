"""Prometheus metrics in the text exposition format, without a client library, and the proxy's own.

The vLLM-Ascend image is not guaranteed to ship ``prometheus_client``, and the few series the
proxy keeps need only counters, gauges computed at scrape time, and fixed-bucket histograms.
"""

from __future__ import annotations

import bisect
from typing import Callable, Dict, Iterable, List, Mapping, Sequence, Tuple

from .backends import Backend, Pool

Labels = Tuple[Tuple[str, str], ...]

# Seconds: from well under a millisecond (the proxy's own work) to many minutes (a 200k prefill).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """Exact text: ``:g`` would print 1234567 as 1.23457e+06 and make counters stall."""
    return str(int(value)) if float(value).is_integer() else repr(round(float(value), 9))


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self.values: Dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def render(self) -> List[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.values.items())]
        return lines


class Gauge:
    """A gauge read at scrape time from ``collect()`` -> ``[(labels, value), ...]``."""

    def __init__(self, name: str, help_text: str, collect: Callable[[], Iterable[Tuple[Labels, float]]]) -> None:
        self.name, self.help, self.collect = name, help_text, collect

    def render(self) -> List[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge"]
        lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.collect())]
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(buckets)
        self.series: Dict[Labels, List[float]] = {}  # per-bucket counts, then +Inf count, then sum

    def observe(self, labels: Labels, value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        series[bisect.bisect_left(self.buckets, value)] += 1
        series[-1] += value

    def render(self) -> List[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, series in sorted(self.series.items()):
            running = 0.0
            for bound, count in zip(self.buckets, series):
                running += count
                le = f'le="{bound:g}"'
                lines.append(f"{self.name}_bucket{_labels(labels, le)} {_number(running)}")
            running += series[len(self.buckets)]
            inf = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{_labels(labels, inf)} {_number(running)}")
            lines.append(f"{self.name}_count{_labels(labels)} {_number(running)}")
            lines.append(f"{self.name}_sum{_labels(labels)} {_number(series[-1])}")
        return lines


class Registry:
    def __init__(self) -> None:
        self.metrics: List[object] = []

    def counter(self, name: str, help_text: str) -> Counter:
        metric = Counter(name, help_text)
        self.metrics.append(metric)
        return metric

    def gauge(self, name: str, help_text: str, collect: Callable[[], Iterable[Tuple[Labels, float]]]) -> Gauge:
        metric = Gauge(name, help_text, collect)
        self.metrics.append(metric)
        return metric

    def histogram(self, name: str, help_text: str) -> Histogram:
        metric = Histogram(name, help_text)
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: List[str] = []
        for metric in self.metrics:
            lines += metric.render()  # type: ignore[attr-defined]
        return "\n".join(lines) + "\n"


def _routed_samples(pools: Mapping[str, Pool]) -> List[Tuple[Labels, float]]:
    """1 for every backend a pool routes to (Pool.routed), 0 for the other active ones."""
    samples = []
    for pool in pools.values():
        routed = set(pool.routed())
        samples += [(backend_labels(b), float(b in routed)) for b in pool.active()]
    return samples


def backend_labels(backend: Backend, *extra: Tuple[str, str]) -> Labels:
    return (("backend", backend.name), ("phase", backend.phase), *extra)


class ProxyMetrics(Registry):
    """The proxy's series (proxy/README.md lists them); the gauges read the proxy's state at scrape time."""

    def __init__(self, in_flight: Callable[[], int], pools: Mapping[str, Pool]) -> None:
        super().__init__()
        self.requests = self.counter("pd_proxy_requests_total", "Client requests by endpoint and HTTP status.")
        self.errors = self.counter(
            "pd_proxy_errors_total",
            "Client requests answered with an error, by endpoint, status and origin: client (4xx: the request), "
            "backend (the instances failed) or proxy (the proxy's own 5xx).",
        )
        self.backend_requests = self.counter(
            "pd_proxy_backend_requests_total", "Backend requests by phase, backend and outcome (ok, error, rejected)."
        )
        self.retries = self.counter("pd_proxy_retries_total", "PD passes retried, by the phase that failed.")
        self.cached_tokens = self.counter(
            "pd_proxy_prefill_cached_tokens_total", "Prompt tokens the prefill instances found in their prefix cache."
        )
        self.phase_seconds = self.histogram(
            "pd_proxy_phase_seconds",
            "Backend phase latency: prefill (whole request) and decode (until the first event, or the whole "
            "non-streaming answer), by backend.",
        )
        self.first_chunk_seconds = self.histogram(
            "pd_proxy_time_to_first_chunk_seconds", "Client request to first byte sent back."
        )
        self.request_seconds = self.histogram("pd_proxy_request_seconds", "Client request duration, by endpoint.")
        self.gauge("pd_proxy_in_flight", "Client requests in flight.", lambda: [((), in_flight())])
        self.gauge(
            "pd_proxy_backend_in_flight",
            "Requests in flight per backend.",
            lambda: [(backend_labels(b), b.in_flight) for p in pools.values() for b in p.active()],
        )
        self.gauge(
            "pd_proxy_backend_healthy",
            "1 when the backend is routed to (healthy or on probation, its DP group whole), else 0.",
            lambda: _routed_samples(pools),
        )
