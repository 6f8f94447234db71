# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark report and the baseline comparison, on a result `vllm bench serve` wrote.

The fixture is the result JSON of a run of the simulated `vllm bench serve` against a simulated
server with speculative decoding (vLLM's keys, values as measured).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.benchmark_report import (
    ReportError,
    compare,
    load_result,
    markdown_report,
    metrics_of,
    plot,
    require_matplotlib,
    results_table,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "benchmark" / "sim_spec_decode_result.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def result() -> Dict[str, Any]:
    return load_result(str(FIXTURE))


def scaled(result: Dict[str, Any], throughput: float = 1.0, latency: float = 1.0) -> Dict[str, Any]:
    """The same run, its throughputs and latencies multiplied."""
    out = dict(result)
    for metric in metrics_of(result):
        out[metric.key] = result[metric.key] * (throughput if metric.higher_is_better else latency)
    return out


def test_metrics_in_report_order(result: Dict[str, Any]) -> None:
    assert [m.key for m in metrics_of(result)] == [
        "request_throughput", "output_throughput", "total_token_throughput",
        "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms",
        "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms",
        "mean_itl_ms", "median_itl_ms", "p99_itl_ms",
    ]  # fmt: skip
    several = {**result, "p50_ttft_ms": 1.0, "p99.9_ttft_ms": 3.0, "p90_ttft_ms": 2.0}
    labels = [m.label for m in metrics_of(several) if m.key.endswith("_ttft_ms")]
    assert labels == ["Mean TTFT", "Median TTFT", "P50 TTFT", "P90 TTFT", "P99 TTFT", "P99.9 TTFT"]


def test_results_table_has_a_row_per_metric_and_the_acceptance(result: Dict[str, Any]) -> None:
    table = results_table([("proxy node4:8009", result)])
    assert table[0] == "| Metric | proxy node4:8009 |"
    assert table[1] == "| --- | ---: |"
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1].rstrip(" |") for line in table[2:]}
    assert rows["Successful requests"] == "20" and rows["Failed requests"] == "0"
    assert rows["Request throughput (req/s)"] == f"{result['request_throughput']:.2f}"
    assert rows["P99 TPOT (ms)"] == f"{result['p99_tpot_ms']:.2f}"
    assert rows["Spec decode acceptance rate (%)"] == f"{result['spec_decode_acceptance_rate']:.2f}"
    assert rows["Spec decode drafts"] == str(result["spec_decode_num_drafts"])
    per_pos = [f"{100 * r:.1f}" for r in result["spec_decode_per_position_acceptance_rates"]]
    assert rows["Acceptance per draft position (%)"] == ", ".join(per_pos)


def test_no_acceptance_rows_without_speculative_decoding(result: Dict[str, Any]) -> None:
    plain = {k: v for k, v in result.items() if not k.startswith("spec_decode")}
    assert not [line for line in results_table([("x", plain)]) if "Spec decode" in line]


def test_a_run_within_the_tolerance_passes(result: Dict[str, Any]) -> None:
    rows, regressions = compare(scaled(result, throughput=0.98, latency=1.02), result, 0.97)
    assert regressions == []
    assert len(rows) == len(metrics_of(result)) and all(passed for *_, passed in rows)


def test_a_slower_run_regresses_and_says_how(result: Dict[str, Any]) -> None:
    slower = scaled(result, throughput=0.9)
    slower["p99_ttft_ms"] = result["p99_ttft_ms"] * 1.05  # over baseline / 0.97 (+3.1 %)
    _, regressions = compare(slower, result, 0.97)
    assert [r.metric.key for r in regressions] == [
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "p99_ttft_ms",
    ]
    message = regressions[0].message(0.97)
    base = result["request_throughput"]
    assert message == (
        f"Request throughput (request_throughput) regressed: measured {0.9 * base:.2f} req/s, "
        f"baseline {base:.2f} req/s; must be >= {0.97 * base:.2f} (tolerance x baseline, tolerance 0.97)"
    )
    assert "must be <= " in regressions[-1].message(0.97) and "baseline / tolerance" in regressions[-1].message(0.97)


def test_a_faster_run_never_regresses(result: Dict[str, Any]) -> None:
    assert compare(scaled(result, throughput=2.0, latency=0.5), result)[1] == []


def test_only_metrics_both_runs_have_are_compared(result: Dict[str, Any]) -> None:
    partial = {k: v for k, v in result.items() if not k.endswith("_itl_ms")}
    rows, _ = compare(partial, result)
    assert not [m for m, *_ in rows if m.key.endswith("_itl_ms")]


@pytest.mark.parametrize("tolerance", [0.0, 1.5, -0.97])
def test_a_tolerance_out_of_range_is_refused(result: Dict[str, Any], tolerance: float) -> None:
    with pytest.raises(ReportError, match=r"tolerance must be in \(0, 1\]"):
        compare(result, result, tolerance)


def test_unreadable_or_foreign_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"^baseline .*/absent.json: cannot be read"):
        load_result(str(tmp_path / "absent.json"), "baseline")
    (tmp_path / "lm.json").write_text(json.dumps({"results": {"gsm8k": {}}}))
    with pytest.raises(ReportError, match=r"lm.json: not a `vllm bench serve` result, no completed, duration"):
        load_result(str(tmp_path / "lm.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ReportError, match=r"bad.json: not JSON"):
        load_result(str(tmp_path / "bad.json"))


def test_an_appended_result_file_gives_its_last_run(result: Dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "appended.json"
    path.write_text(json.dumps({**result, "completed": 1}) + "\n" + json.dumps(result))
    assert load_result(str(path))["completed"] == 20


def test_markdown_report_lists_settings_table_comparison_and_plot(result: Dict[str, Any]) -> None:
    rows, _ = compare(scaled(result, throughput=0.5), result, 0.97)
    text = markdown_report(
        "MiniMax-M2.7 on a3_pd_1p2d_200k",
        {"scenario": "a3_pd_1p2d_200k", "input_len": 200, "max_concurrency": None, "request_rate": float("inf")},
        [("proxy", result)],
        [("proxy", "base.json", 0.97, rows)],
        "report.png",
    )
    assert text.startswith("# MiniMax-M2.7 on a3_pd_1p2d_200k\n\n- scenario: a3_pd_1p2d_200k\n- input_len: 200\n")
    assert "max_concurrency" not in text and "- request_rate: inf" in text
    assert "## proxy against the baseline base.json (tolerance 0.97)" in text
    assert "| Metric | Baseline | Measured | Limit | Change | Verdict |" in text
    assert "| -50.0 % | REGRESSED |" in text and "| ok |" in text
    assert text.endswith("![throughput and latency percentiles](report.png)\n")


def test_the_plot_is_a_png(result: Dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "report.png"
    plot([("proxy", result), ("baseline", scaled(result, 0.9, 1.1))], "title", str(path))
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_without_matplotlib_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ReportError, match=r"needs matplotlib .*\(pip install matplotlib\) or set benchmark_plot=false"):
        require_matplotlib()
