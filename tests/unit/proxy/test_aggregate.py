"""Unit tests of ascend_pd_proxy.aggregate (the workers' merged view) and the supervisor's
pure parts (back-off, exit descriptions)."""

from __future__ import annotations

import signal
from typing import Any, Dict, List, Optional

import pytest

from ascend_pd_proxy import aggregate, supervisor
from ascend_pd_proxy.backends import Pool
from ascend_pd_proxy.config import Instance
from ascend_pd_proxy.metrics import ProxyMetrics
from tests.unit.proxy.test_metrics import parse_exposition, values

P0 = Instance("http://10.0.0.1:7000", "node1/p0")
D0 = Instance("http://10.0.0.2:7100", "node2/d0", "decode0")
D1 = Instance("http://10.0.0.2:7101", "node2/d1", "decode0")


def worker_metrics(requests: int, in_flight: int, latencies: List[float], healthy: bool = True) -> str:
    """One worker's /metrics (relay left out), as ProxyMetrics renders it."""
    pools = {
        "prefill": Pool("prefill", [P0], failures_to_eject=2, successes_to_admit=2),
        "decode": Pool("decode", [D0], failures_to_eject=2, successes_to_admit=2),
    }
    for pool in pools.values():
        for backend in pool.backends.values():
            backend.state = "healthy" if healthy else "ejected"
            backend.in_flight = in_flight
    registry = ProxyMetrics(lambda: in_flight, pools)
    for _ in range(requests):
        registry.requests.inc((("endpoint", "/v1/chat/completions"), ("status", "200")))
    for latency in latencies:
        registry.request_seconds.observe((("endpoint", "/v1/chat/completions"),), latency)
    return registry.render()


def sample(text: str, name: str, **labels: str) -> Optional[float]:
    _, samples = parse_exposition(text)
    found = [v for got, v in values(samples, name) if got == labels]
    assert len(found) <= 1, found
    return found[0] if found else None


# --- metrics ------------------------------------------------------------------------------------


def test_counters_histograms_and_in_flight_gauges_are_summed() -> None:
    one = worker_metrics(3, 2, [0.001, 2.0])
    two = worker_metrics(4, 5, [0.001, 0.2, 700.0])
    merged = aggregate.merge_metrics([one, two])
    endpoint = {"endpoint": "/v1/chat/completions"}
    assert sample(merged, "pd_proxy_requests_total", status="200", **endpoint) == 7
    assert sample(merged, "pd_proxy_in_flight") == 7
    assert sample(merged, "pd_proxy_backend_in_flight", backend="node2/d0", phase="decode") == 7
    assert sample(merged, "pd_proxy_request_seconds_count", **endpoint) == 5
    assert sample(merged, "pd_proxy_request_seconds_sum", **endpoint) == pytest.approx(702.202)
    assert sample(merged, "pd_proxy_request_seconds_bucket", le="0.001", **endpoint) == 2
    assert sample(merged, "pd_proxy_request_seconds_bucket", le="0.25", **endpoint) == 3
    assert sample(merged, "pd_proxy_request_seconds_bucket", le="+Inf", **endpoint) == 5


def test_the_merged_text_is_one_valid_exposition_with_nothing_worker_specific() -> None:
    one, two = worker_metrics(1, 0, [0.1]), worker_metrics(2, 1, [0.3])
    merged = aggregate.merge_metrics([one, two])
    meta, samples = parse_exposition(merged)  # HELP and TYPE once per family, samples after them
    assert set(meta) == set(parse_exposition(one)[0])
    assert len(samples) == len(parse_exposition(one)[1])  # the same series, once each
    assert all("worker" not in labels for _, labels, _ in samples)


def test_a_single_worker_text_is_unchanged() -> None:
    text = worker_metrics(5, 1, [0.5, 1.5])
    assert aggregate.merge_metrics([text]) == text


def test_backend_healthy_is_the_minimum_over_workers() -> None:
    merged = aggregate.merge_metrics([worker_metrics(0, 0, []), worker_metrics(0, 0, [], healthy=False)])
    assert sample(merged, "pd_proxy_backend_healthy", backend="node2/d0", phase="decode") == 0
    both = aggregate.merge_metrics([worker_metrics(0, 0, []), worker_metrics(0, 0, [])])
    assert sample(both, "pd_proxy_backend_healthy", backend="node2/d0", phase="decode") == 1


def test_a_series_only_one_worker_has_is_kept() -> None:
    one = worker_metrics(1, 0, [])
    two = one.replace('status="200"', 'status="502"')
    merged = aggregate.merge_metrics([one, two])
    endpoint = {"endpoint": "/v1/chat/completions"}
    assert sample(merged, "pd_proxy_requests_total", status="200", **endpoint) == 1
    assert sample(merged, "pd_proxy_requests_total", status="502", **endpoint) == 1


def test_large_counters_stay_exact() -> None:
    text = "# HELP c_total a counter\n# TYPE c_total counter\nc_total 1234567\n"
    assert aggregate.merge_metrics([text, text]).splitlines()[-1] == "c_total 2469134"


# --- admin listings -----------------------------------------------------------------------------


def entry(
    instance: Instance, phase: str, state: str, in_flight: int = 0, since: float = 1.0, **extra: Any
) -> Dict[str, Any]:
    return {
        "name": instance.name,
        "url": instance.url,
        "phase": phase,
        "state": state,
        "since": since,
        "in_flight": in_flight,
        "in_flight_tokens": in_flight * 10,
        "consecutive_failures": extra.pop("failures", 0),
        "last_error": extra.pop("last_error", None),
        "group": instance.group,
        "held_by": extra.pop("held_by", None),
    }


def listing(worker: int, status: str, backends: List[Dict[str, Any]], healthy: int = 1) -> Dict[str, Any]:
    return {
        "status": status,
        "in_flight": sum(b["in_flight"] for b in backends),
        "prefill": {"healthy": healthy, "total": 1},
        "decode": {"healthy": healthy, "total": 2},
        "backends": backends,
        "worker": worker,
    }


def test_listings_sum_load_and_show_each_workers_state() -> None:
    zero = listing(0, "ok", [entry(P0, "prefill", "healthy", 2), entry(D0, "decode", "healthy", 1)])
    one = listing(
        1,
        "unavailable",
        [
            entry(P0, "prefill", "healthy", 3),
            entry(D0, "decode", "ejected", 0, since=5.0, failures=2, last_error="HTTP 502"),
        ],
        healthy=0,
    )
    merged = aggregate.merge_listings([zero, one])
    assert merged["status"] == "unavailable"
    assert merged["in_flight"] == 6
    assert merged["prefill"] == {"healthy": 0, "total": 1} and merged["decode"] == {"healthy": 0, "total": 2}
    assert merged["workers"] == ["0", "1"]
    prefill, decode = merged["backends"]
    assert (prefill["url"], prefill["state"], prefill["in_flight"], prefill["in_flight_tokens"]) == (
        P0.url,
        "healthy",
        5,
        50,
    )
    assert prefill["workers"] == {"0": "healthy", "1": "healthy"}
    assert decode["state"] == "ejected" and decode["workers"] == {"0": "healthy", "1": "ejected"}
    assert (decode["consecutive_failures"], decode["last_error"], decode["since"]) == (2, "HTTP 502", 5.0)


def test_a_backend_draining_on_one_worker_stays_listed_as_removed() -> None:
    """pd_proxy_backends waits for "gone, or 0 in flight": the merged listing must not hide a
    request still running on a worker whose siblings have forgotten the instance."""
    zero = listing(0, "ok", [entry(D0, "decode", "removed", 1)])
    one = listing(1, "ok", [])
    merged = aggregate.merge_listings([zero, one])
    assert [(b["url"], b["state"], b["in_flight"]) for b in merged["backends"]] == [(D0.url, "removed", 1)]
    gone = aggregate.merge_listings([listing(0, "ok", []), listing(1, "ok", [])])
    assert gone["backends"] == []


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (("healthy", "healthy"), "healthy"),
        (("healthy", "probation"), "probation"),
        (("unknown", "healthy"), "unknown"),
        (("probation", "ejected"), "ejected"),
        (("ejected", "removed"), "removed"),
    ],
)
def test_disagreeing_states_show_the_least_serving(states: Any, expected: str) -> None:
    docs = [listing(i, "ok", [entry(D0, "decode", state)]) for i, state in enumerate(states)]
    assert aggregate.merge_listings(docs)["backends"][0]["state"] == expected


def test_draining_wins_over_every_other_status() -> None:
    docs = [listing(0, "unavailable", []), listing(1, "draining", []), listing(2, "ok", [])]
    assert aggregate.merge_listings(docs)["status"] == "draining"


def test_held_by_is_kept_from_the_worker_that_holds() -> None:
    docs = [
        listing(0, "ok", [entry(D1, "decode", "healthy")]),
        listing(1, "ok", [entry(D1, "decode", "healthy", held_by="node2/d0")]),
    ]
    assert aggregate.merge_listings(docs)["backends"][0]["held_by"] == "node2/d0"


def test_active_instances_leave_removed_ones_out() -> None:
    doc = listing(
        0, "ok", [entry(P0, "prefill", "healthy"), entry(D0, "decode", "ejected"), entry(D1, "decode", "removed")]
    )
    assert aggregate.active_instances(doc, "decode") == [{"url": D0.url, "name": D0.name, "group": "decode0"}]
    assert aggregate.active_instances(doc, "prefill") == [{"url": P0.url, "name": P0.name, "group": ""}]


# --- supervisor -----------------------------------------------------------------------------------


def test_backoff_doubles_and_is_capped() -> None:
    delays = [supervisor.backoff(n) for n in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == supervisor.BACKOFF_MAX and delays == sorted(delays)


def test_exit_statuses_in_words() -> None:
    assert supervisor.describe_exit(1) == "exit status 1"
    assert supervisor.describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
