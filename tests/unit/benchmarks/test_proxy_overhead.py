"""benchmarks/proxy_overhead_report.py: percentiles, summaries, targets, table, SVG."""

from __future__ import annotations

import importlib.util
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "proxy_overhead_report.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_proxy_overhead_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


po = _load()


def test_percentile_interpolates_like_numpy() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert po.percentile(values, 0) == 1.0
    assert po.percentile(values, 50) == 3.0
    assert po.percentile(values, 100) == 5.0
    assert po.percentile(values, 99) == pytest.approx(4.96)  # numpy.percentile(values, 99)
    assert po.percentile([7.0], 99) == 7.0
    assert math.isnan(po.percentile([], 50))
    with pytest.raises(ValueError):
        po.percentile(values, 101)


def test_summarize_ignores_failures_in_latencies_and_counts_their_reasons() -> None:
    samples = [po.Sample(ttft=0.001 * i, total=0.002 * i, tokens=16, ok=True) for i in range(1, 101)]
    samples += [po.Sample(ttft=math.nan, total=9.0, tokens=0, ok=False, error="HTTP 502: x")] * 3
    s = po.summarize(samples, elapsed_s=2.0, proxy_cpu_s=0.5)
    assert (s.requests, s.errors) == (103, 3)
    assert s.rps == 50.0  # successful requests per second
    assert s.ttft_p50_ms == pytest.approx(50.5) and s.total_p99_ms == pytest.approx(198.02)
    assert s.mean_tokens == 16
    assert s.proxy_cpu == 0.25 and s.proxy_cpu_us_per_request == pytest.approx(5000)
    assert s.error_reasons == {"HTTP 502: x": 3}


def _summary(rps: float, ttft_p99: float, total_p99: float = 10.0) -> object:
    return po.Summary(
        requests=100, errors=0, elapsed_s=1.0, rps=rps, ttft_p50_ms=ttft_p99 / 2, ttft_p99_ms=ttft_p99,
        total_p50_ms=total_p99 / 2, total_p99_ms=total_p99, mean_tokens=16.0, proxy_cpu=0.5,
        proxy_cpu_us_per_request=250.0, side_cpu=0.9,
    )  # fmt: skip


RUNS = {
    "1 stream": {"direct": _summary(300, 2.0, 4.0), "pd": _summary(250, 2.2, 5.0), "proxy": _summary(200, 2.5, 5.5)},
    "256 streams, 20 ms/token": {"direct": _summary(700, 30.0), "proxy": _summary(680, 33.0)},
}


def test_targets_are_judged_against_the_design_limits() -> None:
    verdicts = {t.name: (round(t.value, 2), t.met) for t in po.targets(RUNS)}
    assert verdicts == {
        "1 stream: added p99 TTFT": (0.5, True),
        "1 stream: added p99 total": (1.5, False),
        "256 streams: proxy req/s vs direct": (97.14, True),
        "256 streams: added p99 TTFT": (3.0, False),
    }


def test_table_has_a_row_per_path_the_added_row_and_the_verdicts() -> None:
    table = po.render_table(RUNS, po.targets(RUNS))
    lines = table.splitlines()
    assert lines[0].startswith("| configuration | path |")
    assert len({len(line.split("|")) for line in lines[:10]}) == 1  # every row has every column
    assert "| 1 stream | **added** (proxy - direct) | | | 66.7 % | 0.25 | 0.50 | 0.75 | 1.50 |" in table
    assert "| 1 stream | proxy's own (proxy - pd) | | | 80.0 % | 0.15 | 0.30 | 0.25 | 0.50 |" in table
    assert "| 1 stream: added p99 total | 1.50 ms | <= 1.0 ms | **missed** |" in table
    assert "| 256 streams: proxy req/s vs direct | 97.14 % | >= 95.0 % | met |" in table


def test_svg_is_well_formed_with_one_bar_per_value() -> None:
    runs = {**RUNS, po.CEILING: {"direct": _summary(900, 50.0), "proxy": _summary(400, 80.0)}}
    svg = po.render_svg(po.panels_of(runs), title="a <test> & more")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(f"{ns}title")]
    # latency panel: 4 metrics x 3 paths; throughput and p99 TTFT: 2 loaded configurations x 2 paths
    assert len(titles) == 12 + 4 + 4
    assert "proxy total p99: 5.5" in titles
    assert any(t.text == "a <test> & more" for t in root.iter(f"{ns}text"))
