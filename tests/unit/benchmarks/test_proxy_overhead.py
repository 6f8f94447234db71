"""benchmarks/proxy_overhead_report.py: percentiles, summaries, targets, table, notes, SVG, profiles, JSON."""

from __future__ import annotations

import cProfile
import importlib.util
import json
import math
import select
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


def _summary(rps: float, ttft_p99: float, total_p99: float = 10.0, **more: object) -> object:
    fields = dict(
        requests=100, errors=0, elapsed_s=1.0, rps=rps, ttft_p50_ms=ttft_p99 / 2, ttft_p99_ms=ttft_p99,
        total_p50_ms=total_p99 / 2, total_p99_ms=total_p99, mean_tokens=16.0, proxy_cpu=0.5,
        proxy_cpu_us_per_request=250.0, side_cpu=0.9,
    )  # fmt: skip
    return po.Summary(**{**fields, **more})


RUNS = {
    "1 stream": {"direct": _summary(300, 2.0, 4.0), "pd": _summary(250, 2.2, 5.0), "proxy": _summary(200, 2.5, 5.5)},
    "256 streams, 20 ms/token": {"direct": _summary(700, 30.0), "proxy": _summary(680, 33.0)},
}


def test_targets_are_judged_against_the_design_limits() -> None:
    verdicts = {t.name: (round(t.value, 2), t.met) for t in po.targets(RUNS)}
    assert verdicts == {
        "1 stream: added p99 TTFT": (0.5, True),
        "1 stream: added p99 total": (1.5, False),
        "1 stream: proxy's own p50 TTFT (proxy - pd)": (0.15, True),
        "1 stream: proxy's own p99 TTFT (proxy - pd)": (0.3, True),
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
    # latency panel: 4 metrics x 3 paths; throughput and p99 TTFT: 2 loaded configurations x 2 paths;
    # proxy CPU per request: 3 configurations x the one proxy path
    assert len(titles) == 12 + 4 + 4 + 3
    assert "proxy 256 streams, 0 ms (ceiling): 250" in titles
    assert "proxy total p99: 5.5" in titles
    assert any(t.text == "a <test> & more" for t in root.iter(f"{ns}text"))


def test_summarize_counts_events_and_requests_per_worker() -> None:
    samples = [po.Sample(0.001, 0.01, 1024, True, events=1026, worker=str(i % 2)) for i in range(10)]
    samples.append(po.Sample(0.001, 0.01, 1024, True, events=1026, worker="1"))
    samples.append(po.Sample(math.nan, 0.01, 0, False, "HTTP 502: x", events=0, worker="0"))  # failed: not counted
    s = po.summarize(samples, elapsed_s=1.0, proxy_cpu_s=0.11286)
    assert s.workers == {"0": 5, "1": 6}
    assert s.mean_events == 1026
    assert s.proxy_cpu_us_per_event == pytest.approx(10.0)  # 0.11286 s / (11 x 1026 events)
    direct = po.summarize([po.Sample(0.001, 0.01, 16, True, events=18)], elapsed_s=1.0, proxy_cpu_s=0.0)
    assert direct.workers == {}  # no header: nothing to judge


def test_worker_share_deviation_counts_an_idle_worker() -> None:
    assert po.worker_share_deviation({"0": 600, "1": 400}, 2) == pytest.approx(20.0)
    assert po.worker_share_deviation({"0": 510, "1": 490}, 2) == pytest.approx(2.0)
    assert po.worker_share_deviation({"0": 1000}, 2) == pytest.approx(100.0)  # the other got nothing
    assert po.worker_share_deviation({"a": 30, "b": 30, "c": 40}, 4) == pytest.approx(100.0)
    assert math.isnan(po.worker_share_deviation({}, 2))


LONG_RUNS = {
    po.CEILING: {
        "direct": _summary(400, 40.0),
        "proxy": _summary(190, 45.0, proxy_cpu_us_per_request=2000.0, mean_events=18.0),
    },
    po.LONG: {
        "proxy": _summary(180, 20.0, proxy_cpu_us_per_request=12000.0, mean_events=1026.0, proxy_cpu_us_per_event=11.7)
    },
    po.SCALING: {
        "proxy": _summary(190, 30.0, proxy_cpu_us_per_request=2000.0, workers={"0": 1500}),
        po.WORKERS_PATH: _summary(200, 28.0, proxy_cpu_us_per_request=2300.0, workers={"0": 810, "1": 690}),
    },
}


def test_cpu_event_and_worker_targets() -> None:
    verdicts = {t.name: (round(t.value, 2), t.met) for t in po.targets(LONG_RUNS)}
    assert verdicts == {
        "16 tokens (ceiling run): proxy CPU per request": (2000.0, False),
        "1024 tokens: proxy CPU per relayed SSE event": (11.7, False),
        "2 workers: largest share off the mean": (8.0, True),  # 810 vs a mean of 750
        "2 workers: CPU per request vs 1 worker": (15.0, False),  # 2300 / 2000
    }


def test_notes_long_outputs_scaling_projection_and_skip() -> None:
    table = po.render_table(LONG_RUNS, po.targets(LONG_RUNS), {})
    # (12000 - 2000) us / (1026 - 18) events
    assert "Marginal cost per event over the 16-token ceiling run: 9.92 us." in table
    assert "requests per worker 0: 810, 1: 690 (8.0 % largest share off the mean)" in table
    assert "(15.0 %)" in table
    assert "1: 435, 2: 870, 4: 1739, 8: 3478." in table  # 1e6 / 2300 us per request, times N
    assert all(math.isnan(v) for v in po.projection(0.0).values())  # no CPU measured: no projection
    skipped = po.render_table(LONG_RUNS, [], {"workers_skipped": "the proxy's configuration rejects workers: 2"})
    assert "2 workers vs 1): skipped: the proxy's configuration rejects workers: 2" in skipped
    assert "Projected" not in skipped


def test_large_prompt_note_compares_with_a_parse_and_two_serialisations() -> None:
    runs = {
        "1 stream": {"proxy": _summary(120, 9.0, proxy_cpu_us_per_request=3500.0)},
        po.LARGE: {
            "direct": _summary(2.5, 490.0),
            "pd": _summary(1.0, 1446.0),
            "proxy": _summary(0.8, 1721.0, proxy_cpu_us_per_request=14500.0),
        },
    }
    info = {"large_body": {"bytes": 800_123, "loads_us": 925.0, "dumps_us": 3235.0}}
    note = po.large_note(runs, info)
    assert note.startswith("Large prompt (1 stream, ~200k-token prompt, 800 KB body):")
    assert "proxy - pd TTFT +137.50 ms p50 / +275.00 ms p99;" in note
    assert "proxy CPU 14500 us per request, 11000 us more than a small body at 1 stream" in note
    assert "one parse plus two serialisations is 7395 us." in note


def _busy_work() -> int:
    with select.epoll() as poller:
        poller.poll(0.02)  # the event loop's idle wait: not work
    return sum(json.loads(json.dumps(list(range(200))))[0] for _ in range(200))


def test_profile_summary_ranks_functions_and_round_trips_through_the_json(tmp_path: Path) -> None:
    prof = tmp_path / "proxy.prof"
    profiler = cProfile.Profile()
    profiler.runcall(_busy_work)
    profiler.dump_stats(str(prof))
    summary = po.profile_summary(prof, top=5)
    assert len(summary["by_tottime"]) == 5 and len(summary["by_cumtime"]) == 5
    own = [row["tottime_s"] for row in summary["by_tottime"]]
    assert own == sorted(own, reverse=True)
    assert any("(_busy_work)" in row["function"] for row in summary["by_cumtime"])
    assert any(row["function"].startswith("json/") for row in summary["by_cumtime"])
    assert 0 < sum(row["tottime_share"] for row in summary["by_tottime"]) <= 1.0001
    assert summary["idle_s"] >= 0.015 and summary["total_s"] < 0.5
    assert not any("select.epoll" in row["function"] for row in summary["by_tottime"])
    parts = {row["part"]: row["tottime_share"] for row in summary["by_part"]}
    assert parts["json"] > 0 and sum(parts.values()) == pytest.approx(1.0, abs=1e-3)
    table = po.render_profile("d0ms", summary, top=2)
    assert f"| the rest ({len(summary['by_part']) - 2} parts) |" in table
    assert "s waiting for I/O" in table

    info = {
        "date": "2026-12-04T15:00:00+00:00", "cpu_model": "AMD EPYC", "cores": 2, "python": "3.12.1",
        "aiohttp": "3.14.5", "proxy_python": "python", "pinning": "none", "loadavg_start": [0.5, 0.4, 0.3],
        "loadavg_end": [0.6, 0.4, 0.3], "calibration_us": 10.6, "proxy_src": "/work/wt-speed/proxy",
        "proxy_commit": "abc1234-dirty",
    }  # fmt: skip
    stem = tmp_path / "proxy_overhead_before"
    po.publish(LONG_RUNS, info, {"profile": True}, stem, {"d0ms": summary})
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert saved["profile"]["d0ms"]["by_tottime"][0] == summary["by_tottime"][0]
    assert saved["runs"][po.SCALING][po.WORKERS_PATH]["workers"] == {"0": 810, "1": 690}
    assert "Proxy measured: /work/wt-speed/proxy at abc1234-dirty." in po.header(info, False)
    svg = stem.with_suffix(".svg").read_text()
    po.replot(stem.with_suffix(".json"))  # the saved numbers rebuild the same chart
    assert stem.with_suffix(".svg").read_text() == svg


@pytest.mark.parametrize(
    ("key", "part"),
    [
        (("/v/lib/python3.12/site-packages/aiohttp/client_reqrep.py", 1643, "send"), "aiohttp client"),
        (("/v/lib/python3.12/site-packages/aiohttp/connector.py", 500, "connect"), "aiohttp client"),
        (("/v/lib/python3.12/site-packages/aiohttp/web_protocol.py", 300, "data_received"), "aiohttp server"),
        (("/v/lib/python3.12/site-packages/aiohttp/streams.py", 539, "_read_nowait_chunk"), "aiohttp http/streams"),
        (("/work/wt-speed/proxy/ascend_pd_proxy/server.py", 661, "_relay"), "proxy code"),
        (("/usr/lib/python3.12/asyncio/base_events.py", 1894, "_run_once"), "asyncio"),
        (("/usr/lib/python3.12/json/encoder.py", 205, "iterencode"), "json"),
        (("~", 0, "<method 'send' of '_socket.socket' objects>"), "socket syscalls"),
        (("~", 0, "<method 'recv_into' of '_socket.socket' objects>"), "socket syscalls"),
        (("~", 0, "<method 'popleft' of 'collections.deque' objects>"), "built-ins (str, bytes, ...)"),
        (("~", 0, "<built-in method builtins.len>"), "built-ins (str, bytes, ...)"),
        (("/usr/lib/python3.12/ssl.py", 500, "wrap_socket"), "stdlib (other)"),
        (("/v/lib/python3.12/site-packages/yarl/_url.py", 300, "build"), "other (yarl)"),
    ],
)
def test_profile_parts_group_functions_by_layer(key: tuple, part: str) -> None:
    assert po._part(key) == part


def test_large_prompt_note_keeps_the_sign_of_a_faster_proxy_path() -> None:
    runs = {po.LARGE: {"pd": _summary(1.0, 1446.0), "proxy": _summary(1.1, 1290.0)}}
    note = po.large_note(runs, {"large_body": {"bytes": 800_000, "loads_us": 900.0, "dumps_us": 3000.0}})
    assert "proxy - pd TTFT -78.00 ms p50 / -156.00 ms p99;" in note
