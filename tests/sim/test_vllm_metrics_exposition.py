"""The simulated /metrics against vLLM's PrometheusStatLogger: names, types, labels, buckets.

The expected values are read off vLLM's vllm/v1/metrics/loggers.py; the dashboard and the
alert rules of roles/monitoring query exactly these series.
"""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

from ascend_sim.vllm.metrics import Metrics

# name -> (type, buckets) as vLLM registers them; every one labelled model_name + engine.
VLLM = {
    "vllm:num_requests_running": ("gauge", None),
    "vllm:num_requests_waiting": ("gauge", None),
    "vllm:kv_cache_usage_perc": ("gauge", None),
    "vllm:prompt_tokens": ("counter", None),
    "vllm:generation_tokens": ("counter", None),
    "vllm:request_success": ("counter", None),
    "vllm:time_to_first_token_seconds": (
        "histogram",
        [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
         80.0, 160.0, 640.0, 2560.0],
    ),
    "vllm:inter_token_latency_seconds": (
        "histogram",
        [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0],
    ),
    "vllm:e2e_request_latency_seconds": (
        "histogram",
        [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
         960.0, 1920.0, 7680.0],
    ),
}  # fmt: skip

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum")


def parse(text: str) -> Tuple[Dict[str, str], List[Tuple[str, List[Tuple[str, str]], float]]]:
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ")
            types[family] = kind
        elif line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            labels = re.findall(r'(\w+)="([^"]*)"', match["labels"])
            samples.append((match["name"], labels, float(match["value"])))
    return types, samples


def test_names_types_labels_and_buckets_are_vllms() -> None:
    metrics = Metrics("MiniMax-M2.7", engine=1)
    metrics.ttft.observe(0.07)
    metrics.itl.observe(0.02)
    metrics.e2e.observe(1.2)
    types, samples = parse(metrics.render())
    for family, (kind, buckets) in VLLM.items():
        assert types.get(family) == kind, family
        mine = [s for s in samples if s[0] in {family + suffix for suffix in SUFFIXES}]
        assert mine, family
        for _name, labels, _value in mine:
            names = [k for k, _ in labels]
            assert names == sorted(names), labels  # prometheus_client sorts label names
            assert dict(labels)["model_name"] == "MiniMax-M2.7" and dict(labels)["engine"] == "1"
        if buckets:
            bounds = [dict(labels)["le"] for name, labels, _ in mine if name == family + "_bucket"]
            assert bounds == [str(b) for b in buckets] + ["+Inf"], family


def test_histogram_counts_are_cumulative() -> None:
    metrics = Metrics("m")
    for value in (0.0005, 0.07, 0.07, 3000.0):
        metrics.ttft.observe(value)
    _, samples = parse(metrics.render())
    buckets = {dict(lb)["le"]: v for n, lb, v in samples if n == "vllm:time_to_first_token_seconds_bucket"}
    assert buckets["0.001"] == 1 and buckets["0.06"] == 1 and buckets["0.08"] == 3
    assert buckets["2560.0"] == 3 and buckets["+Inf"] == 4
    count = [v for n, _, v in samples if n == "vllm:time_to_first_token_seconds_count"]
    assert count == [4.0]
