"""Unit tests of ascend_pd_proxy.metrics: the Prometheus text exposition, parsed back."""

from __future__ import annotations

import math
import re
from typing import Dict, Iterable, List, Tuple

import pytest

from ascend_pd_proxy import metrics
from ascend_pd_proxy.metrics import Counter, Gauge, Histogram, Labels, Registry

Sample = Tuple[str, Dict[str, str], float]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}


def parse_exposition(text: str) -> Tuple[Dict[str, Tuple[str, str]], List[Sample]]:
    """A strict reader of the text format: {name: (type, help)} and the samples in order."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    meta: Dict[str, Tuple[str, str]] = {}
    helps: Dict[str, str] = {}
    samples: List[Sample] = []
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert name not in helps, f"HELP twice for {name}"
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            assert name in helps and name not in meta, f"TYPE of {name} must follow its HELP, once"
            meta[name] = (kind, helps[name])
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, label_text, value = match.groups()
            labels: Dict[str, str] = {}
            if label_text:
                end = 0
                for label in _LABEL.finditer(label_text):
                    assert label.start() == end, f"bad labels in {line!r}"
                    raw = label.group(2)
                    labels[label.group(1)] = re.sub(r"\\.", lambda m: _UNESCAPE[m.group(0)], raw)
                    end = label.end()
                assert end == len(label_text), f"bad labels in {line!r}"
            family = re.sub(r"_(bucket|count|sum)$", "", name) if name not in meta else name
            assert family in meta, f"sample {name} before its TYPE"
            samples.append((name, labels, float(value)))
    return meta, samples


def values(samples: Iterable[Sample], name: str) -> List[Tuple[Dict[str, str], float]]:
    return [(labels, value) for sample_name, labels, value in samples if sample_name == name]


BACKEND = (("phase", "prefill"), ("backend", "node1/dp0"))


# --- counters ----------------------------------------------------------------------------------


def test_counter_exposition_lines_exactly() -> None:
    counter = Counter("pd_proxy_requests_total", "Client requests by endpoint and HTTP status.")
    ok = (("endpoint", "/v1/chat/completions"), ("status", "200"))
    bad = (("endpoint", "/v1/completions"), ("status", "400"))
    counter.inc(ok)
    counter.inc(ok)
    counter.inc(bad)
    assert counter.render() == [
        "# HELP pd_proxy_requests_total Client requests by endpoint and HTTP status.",
        "# TYPE pd_proxy_requests_total counter",
        'pd_proxy_requests_total{endpoint="/v1/chat/completions",status="200"} 2',
        'pd_proxy_requests_total{endpoint="/v1/completions",status="400"} 1',
    ]


def test_counter_without_labels_and_amounts() -> None:
    counter = Counter("pd_proxy_cached_tokens_total", "Prompt tokens served from the prefix cache.")
    counter.inc(amount=96)
    counter.inc(amount=4)
    assert counter.render()[-1] == "pd_proxy_cached_tokens_total 100"


def test_empty_counter_has_only_its_header() -> None:
    assert Counter("pd_proxy_retries_total", "Retries.").render() == [
        "# HELP pd_proxy_retries_total Retries.",
        "# TYPE pd_proxy_retries_total counter",
    ]


@pytest.mark.parametrize("count", [1_234_567, 10_000_001])
def test_large_counter_values_are_exact(count: int) -> None:
    counter = Counter("pd_proxy_requests_total", "Requests.")
    counter.inc((("status", "200"),), amount=count)
    _, samples = parse_exposition("\n".join(counter.render()) + "\n")
    assert values(samples, "pd_proxy_requests_total") == [({"status": "200"}, float(count))]


# --- label escaping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("node1/dp0", "node1/dp0"),
        ('say "hi"', 'say \\"hi\\"'),
        ("C:\\models\\qwen", "C:\\\\models\\\\qwen"),
        ("line1\nline2", "line1\\nline2"),
        ('\\"\n', '\\\\\\"\\n'),
        ("ünïcode ✓", "ünïcode ✓"),
    ],
    ids=["plain", "quotes", "backslash", "newline", "all-three", "unicode"],
)
def test_label_values_are_escaped(value: str, rendered: str) -> None:
    counter = Counter("pd_proxy_backend_requests_total", "Backend requests.")
    counter.inc((("backend", value),))
    line = counter.render()[-1]
    assert line == f'pd_proxy_backend_requests_total{{backend="{rendered}"}} 1'
    _, samples = parse_exposition("\n".join(counter.render()) + "\n")
    assert samples == [("pd_proxy_backend_requests_total", {"backend": value}, 1.0)]


# --- gauges ------------------------------------------------------------------------------------


def test_gauge_reads_its_value_at_scrape_time() -> None:
    state = {"in_flight": 3}
    gauge = Gauge("pd_proxy_in_flight", "Client requests in flight.", lambda: [((), state["in_flight"])])
    assert gauge.render()[-1] == "pd_proxy_in_flight 3"
    state["in_flight"] = 0
    assert gauge.render()[-1] == "pd_proxy_in_flight 0"


def test_gauge_series_are_sorted_by_labels() -> None:
    series: List[Tuple[Labels, float]] = [
        ((("phase", "prefill"), ("backend", "node1/dp1")), 1),
        ((("phase", "decode"), ("backend", "node2/dp0")), 0),
        ((("phase", "prefill"), ("backend", "node1/dp0")), 1),
    ]
    gauge = Gauge("pd_proxy_backend_up", "1 if the backend is routable.", lambda: series)
    assert gauge.render()[2:] == [
        'pd_proxy_backend_up{phase="decode",backend="node2/dp0"} 0',
        'pd_proxy_backend_up{phase="prefill",backend="node1/dp0"} 1',
        'pd_proxy_backend_up{phase="prefill",backend="node1/dp1"} 1',
    ]


# --- histograms --------------------------------------------------------------------------------


def test_histogram_exact_lines_with_small_buckets() -> None:
    hist = Histogram("pd_proxy_phase_seconds", "Phase latency.", buckets=(0.1, 1.0, 10.0))
    for value in (0.05, 0.1, 0.5, 3.0, 42.0):
        hist.observe(BACKEND, value)
    labels = 'phase="prefill",backend="node1/dp0"'
    assert hist.render() == [
        "# HELP pd_proxy_phase_seconds Phase latency.",
        "# TYPE pd_proxy_phase_seconds histogram",
        f'pd_proxy_phase_seconds_bucket{{{labels},le="0.1"}} 2',  # 0.1 itself is <= 0.1
        f'pd_proxy_phase_seconds_bucket{{{labels},le="1"}} 3',
        f'pd_proxy_phase_seconds_bucket{{{labels},le="10"}} 4',
        f'pd_proxy_phase_seconds_bucket{{{labels},le="+Inf"}} 5',
        f"pd_proxy_phase_seconds_count{{{labels}}} 5",
        f"pd_proxy_phase_seconds_sum{{{labels}}} 45.65",
    ]


OBSERVATIONS = [0.0003, 0.0005, 0.0007, 0.004, 0.004, 0.2, 1.0, 7.5, 250.0, 599.0, 600.0, 1200.0, 4000.0]


def test_histogram_buckets_are_cumulative_and_consistent() -> None:
    registry = Registry()
    hist = registry.histogram("pd_proxy_time_to_first_chunk_seconds", "Client request to first byte sent back.")
    for value in OBSERVATIONS:
        hist.observe((), value)
    meta, samples = parse_exposition(registry.render())
    assert meta == {"pd_proxy_time_to_first_chunk_seconds": ("histogram", "Client request to first byte sent back.")}
    buckets = values(samples, "pd_proxy_time_to_first_chunk_seconds_bucket")
    bounds = [labels["le"] for labels, _ in buckets]
    assert bounds == [f"{b:g}" for b in metrics.LATENCY_BUCKETS] + ["+Inf"]
    counts = [count for _, count in buckets]
    assert counts == sorted(counts), "bucket counts must be cumulative"
    for (labels, count), bound in zip(buckets, metrics.LATENCY_BUCKETS):
        assert float(labels["le"]) == pytest.approx(bound)
        assert count == sum(1 for v in OBSERVATIONS if v <= bound), labels["le"]
    assert counts[-1] == len(OBSERVATIONS)
    assert values(samples, "pd_proxy_time_to_first_chunk_seconds_count") == [({}, len(OBSERVATIONS))]
    ((_, total),) = values(samples, "pd_proxy_time_to_first_chunk_seconds_sum")
    assert total == pytest.approx(sum(OBSERVATIONS), abs=1e-6)


def test_histogram_series_per_label_set() -> None:
    hist = Histogram("pd_proxy_phase_seconds", "Phase latency.", buckets=(1.0,))
    prefill = (("phase", "prefill"), ("backend", "node1/dp1"))
    decode = (("phase", "decode"), ("backend", "node2/dp0"))
    hist.observe(prefill, 0.5)
    hist.observe(decode, 2.0)
    hist.observe(decode, 3.0)
    _, samples = parse_exposition("\n".join(hist.render()) + "\n")
    assert values(samples, "pd_proxy_phase_seconds_count") == [
        ({"phase": "decode", "backend": "node2/dp0"}, 2.0),
        ({"phase": "prefill", "backend": "node1/dp1"}, 1.0),
    ]
    assert values(samples, "pd_proxy_phase_seconds_bucket") == [
        ({"phase": "decode", "backend": "node2/dp0", "le": "1"}, 0.0),
        ({"phase": "decode", "backend": "node2/dp0", "le": "+Inf"}, 2.0),
        ({"phase": "prefill", "backend": "node1/dp1", "le": "1"}, 1.0),
        ({"phase": "prefill", "backend": "node1/dp1", "le": "+Inf"}, 1.0),
    ]


def test_latency_buckets_are_increasing_and_span_sub_ms_to_minutes() -> None:
    bounds = metrics.LATENCY_BUCKETS
    assert list(bounds) == sorted(set(bounds))
    assert bounds[0] <= 0.001 and bounds[-1] >= 600
    assert all(math.isfinite(b) for b in bounds)


# --- the registry ------------------------------------------------------------------------------


def test_registry_renders_all_families_in_order_and_parses() -> None:
    registry = Registry()
    requests = registry.counter("pd_proxy_requests_total", "Client requests by endpoint and HTTP status.")
    registry.gauge("pd_proxy_in_flight", "Client requests in flight.", lambda: [((), 2)])
    phase = registry.histogram("pd_proxy_phase_seconds", "Backend phase duration.")
    requests.inc((("endpoint", "/v1/chat/completions"), ("status", "200")))
    requests.inc((("endpoint", "/v1/chat/completions"), ("status", "502")), amount=2)
    phase.observe(BACKEND, 0.012)
    text = registry.render()
    meta, samples = parse_exposition(text)
    assert list(meta) == ["pd_proxy_requests_total", "pd_proxy_in_flight", "pd_proxy_phase_seconds"]
    assert [kind for kind, _ in meta.values()] == ["counter", "gauge", "histogram"]
    assert values(samples, "pd_proxy_requests_total") == [
        ({"endpoint": "/v1/chat/completions", "status": "200"}, 1.0),
        ({"endpoint": "/v1/chat/completions", "status": "502"}, 2.0),
    ]
    assert values(samples, "pd_proxy_in_flight") == [({}, 2.0)]
    assert values(samples, "pd_proxy_phase_seconds_count") == [(dict(BACKEND), 1.0)]
    assert len(values(samples, "pd_proxy_phase_seconds_bucket")) == len(metrics.LATENCY_BUCKETS) + 1


def test_empty_registry_renders_a_newline() -> None:
    assert Registry().render() == "\n"


def test_parser_rejects_broken_lines() -> None:
    """The test's own parser must be able to fail, or the tests above prove nothing."""
    header = "# HELP x h\n# TYPE x counter\n"
    for broken in ('x{a="unterminated} 1\n', 'x{a="1"}1\n', "y 1\n", 'x{a="1" b="2"} 1\n'):
        with pytest.raises(AssertionError):
            parse_exposition(header + broken)
