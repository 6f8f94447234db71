# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of a ``vllm bench serve`` run, and its comparison with a baseline run.

Input: the result JSON that ``vllm bench serve --save-result`` writes (keys such as
``request_throughput``, ``output_throughput``, ``mean_ttft_ms``, ``median_tpot_ms``,
``p99_itl_ms`` and, when the server does speculative decoding, ``spec_decode_acceptance_rate``),
one per endpoint benchmarked. Output: a Markdown report (the run's settings, then one table, a
column per endpoint) and a PNG plot of the throughputs and of the TTFT / TPOT / ITL statistics.

The baseline comparison follows each metric's direction: a throughput regressed when it is
below ``tolerance`` x the baseline's, a latency when it is above the baseline's / ``tolerance``
(vLLM's nightly benchmarks use 0.97).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

DEFAULT_TOLERANCE = 0.97

# (result key, what it is, unit, higher is better)
THROUGHPUTS: Tuple[Tuple[str, str, str], ...] = (
    ("request_throughput", "Request throughput", "req/s"),
    ("output_throughput", "Output token throughput", "tok/s"),
    ("total_token_throughput", "Total token throughput", "tok/s"),
)
LATENCIES: Tuple[Tuple[str, str], ...] = (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"))
SPEC_DECODE = (
    ("spec_decode_acceptance_rate", "Spec decode acceptance rate (%)"),
    ("spec_decode_acceptance_length", "Spec decode acceptance length"),
    ("spec_decode_num_drafts", "Spec decode drafts"),
)
REQUIRED = ("completed", "duration", "request_throughput", "output_throughput", "mean_ttft_ms")
_PERCENTILE_KEY = re.compile(r"^p(\d+(?:\.\d+)?)_(ttft|tpot|itl)_ms$")


class ReportError(Exception):
    """A result or baseline that cannot be read, or a report that cannot be written."""


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool


@dataclass(frozen=True)
class Regression:
    metric: Metric
    baseline: float
    measured: float
    limit: float

    def message(self, tolerance: float) -> str:
        op = ">=" if self.metric.higher_is_better else "<="
        rule = "tolerance x baseline" if self.metric.higher_is_better else "baseline / tolerance"
        return (
            f"{self.metric.label} ({self.metric.key}) regressed: measured {self.measured:.2f} {self.metric.unit}, "
            f"baseline {self.baseline:.2f} {self.metric.unit}; must be {op} {self.limit:.2f} "
            f"({rule}, tolerance {tolerance:g})"
        )


_LABEL = re.compile(r"^[A-Za-z0-9._-]*$")


def _positive_int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number > 0 else None


def validate_workload(workload: Mapping[str, Any]) -> List[str]:
    """Problems with the benchmark's options, each naming its variable (``benchmark_<key>``)."""
    problems = []
    for key in ("input_len", "output_len", "num_prompts", "timeout"):
        if key in workload and _positive_int(workload[key]) is None:
            problems.append(f"benchmark_{key} must be a positive integer, got {workload[key]!r}")
    if "request_rate" in workload:
        rate = str(workload["request_rate"]).strip().lower()
        try:
            valid = rate == "inf" or (math.isfinite(float(rate)) and float(rate) > 0)
        except ValueError:
            valid = False
        if not valid:
            given = workload["request_rate"]
            problems.append(f"benchmark_request_rate must be a positive number or inf, got {given!r}")
    concurrency = workload.get("max_concurrency")
    if concurrency not in (None, "", "None") and _positive_int(concurrency) is None:
        problems.append(f"benchmark_max_concurrency must be a positive integer or null, got {concurrency!r}")
    label = str(workload.get("label") or "")
    if not _LABEL.match(label):
        problems.append(
            f"benchmark_label may hold only letters, digits, '.', '_' and '-' (it names a folder), got {label!r}"
        )
    return problems


def load_result(path: str, what: str = "result") -> Dict[str, Any]:
    """A ``vllm bench serve`` result file (the last JSON line if ``--append-result`` wrote several)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{what} {path}: cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        lines = [line for line in text.splitlines() if line.strip()]
        try:  # --append-result: one JSON document per line
            data = json.loads(lines[-1]) if len(lines) > 1 else None
        except ValueError:
            data = None
        if data is None:
            raise ReportError(f"{what} {path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{what} {path}: not a `vllm bench serve` result (a JSON object)")
    missing = [key for key in REQUIRED if not isinstance(data.get(key), (int, float))]
    if missing:
        raise ReportError(f"{what} {path}: not a `vllm bench serve` result, no {', '.join(missing)}")
    return data


def metrics_of(result: Mapping[str, Any]) -> List[Metric]:
    """The metrics a result has, in report order: throughputs, then each latency's mean, median, percentiles."""
    found = [Metric(key, label, unit, True) for key, label, unit in THROUGHPUTS if key in result]
    for name, upper in LATENCIES:
        percentiles = sorted(
            (float(m.group(1)), key) for key in result for m in [_PERCENTILE_KEY.match(key)] if m and m.group(2) == name
        )
        for stat, key in [("Mean", f"mean_{name}_ms"), ("Median", f"median_{name}_ms")] + [
            (f"P{key[1:].split('_')[0]}", key) for _rank, key in percentiles
        ]:
            if isinstance(result.get(key), (int, float)):
                found.append(Metric(key, f"{stat} {upper}", "ms", False))
    return found


def _cell(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)  # the metric's name left, numbers right
    return ["| " + " | ".join(row) + " |" for row in [list(header), align, *rows]]


def results_table(results: Sequence[Tuple[str, Mapping[str, Any]]]) -> List[str]:
    """One Markdown table: a row per metric, a column per endpoint."""
    metrics: List[Metric] = []
    for _name, result in results:
        metrics += [m for m in metrics_of(result) if m not in metrics]
    rows: List[List[str]] = [
        ["Successful requests"] + [_cell(r.get("completed")) for _name, r in results],
        ["Failed requests"] + [_cell(r.get("failed")) for _name, r in results],
        ["Benchmark duration (s)"] + [_cell(r.get("duration")) for _name, r in results],
        ["Total input tokens"] + [_cell(r.get("total_input_tokens")) for _name, r in results],
        ["Total generated tokens"] + [_cell(r.get("total_output_tokens")) for _name, r in results],
    ]
    rows += [[f"{m.label} ({m.unit})"] + [_cell(r.get(m.key)) for _name, r in results] for m in metrics]
    if any("spec_decode_acceptance_rate" in r for _name, r in results):
        for key, label in SPEC_DECODE:
            rows.append([label] + [_cell(r.get(key)) for _name, r in results])
        per_pos = [r.get("spec_decode_per_position_acceptance_rates") or [] for _name, r in results]
        rows.append(
            ["Acceptance per draft position (%)"]
            + [", ".join(f"{100 * float(rate):.1f}" for rate in rates) or "-" for rates in per_pos]
        )
    return _md_table(["Metric"] + [name for name, _result in results], rows)


def compare(
    result: Mapping[str, Any], baseline: Mapping[str, Any], tolerance: float = DEFAULT_TOLERANCE
) -> Tuple[List[Tuple[Metric, float, float, float, bool]], List[Regression]]:
    """Every metric both runs have: (metric, baseline, measured, limit, passed); and the regressions."""
    if not 0 < tolerance <= 1:
        raise ReportError(f"the tolerance must be in (0, 1], got {tolerance:g}")
    rows: List[Tuple[Metric, float, float, float, bool]] = []
    regressions: List[Regression] = []
    for metric in metrics_of(baseline):
        measured = result.get(metric.key)
        if not isinstance(measured, (int, float)):
            continue
        base = float(baseline[metric.key])
        if metric.higher_is_better:
            limit = tolerance * base
            passed = measured >= limit
        else:
            limit = base / tolerance
            passed = measured <= limit
        rows.append((metric, base, float(measured), limit, passed))
        if not passed:
            regressions.append(Regression(metric, base, float(measured), limit))
    return rows, regressions


def comparison_table(rows: Sequence[Tuple[Metric, float, float, float, bool]]) -> List[str]:
    header = ["Metric", "Baseline", "Measured", "Limit", "Change", "Verdict"]
    table = []
    for metric, base, measured, limit, passed in rows:
        change = f"{(measured - base) / base * 100:+.1f} %" if base else "-"
        bound = (">= " if metric.higher_is_better else "<= ") + _cell(limit)
        verdict = "ok" if passed else "REGRESSED"
        table.append([f"{metric.label} ({metric.unit})", _cell(base), _cell(measured), bound, change, verdict])
    return _md_table(header, table)


def settings_lines(settings: Mapping[str, Any]) -> List[str]:
    return [f"- {key}: {_cell(value)}" for key, value in settings.items() if value not in (None, "", [])]


def markdown_report(
    title: str,
    settings: Mapping[str, Any],
    results: Sequence[Tuple[str, Mapping[str, Any]]],
    comparisons: Sequence[Tuple[str, str, float, Sequence[Tuple[Metric, float, float, float, bool]]]] = (),
    plot_file: Optional[str] = None,
) -> str:
    """The whole report; ``comparisons``: (endpoint, baseline path, tolerance, compare() rows)."""
    lines = [f"# {title}", "", *settings_lines(settings), "", *results_table(results), ""]
    for name, path, tolerance, rows in comparisons:
        lines += [f"## {name} against the baseline {path} (tolerance {tolerance:g})", ""]
        lines += [*comparison_table(rows), ""]
    if plot_file:
        lines += [f"![throughput and latency percentiles]({plot_file})", ""]
    return "\n".join(lines)


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` drawing to files (Agg), or a ReportError that says what to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as exc:
        raise ReportError(
            f"the report's plot needs matplotlib in the Python that runs ansible-playbook ({exc}); "
            "install it (pip install matplotlib) or set benchmark_plot=false"
        ) from None
    return pyplot


def plot(results: Sequence[Tuple[str, Mapping[str, Any]]], title: str, path: str) -> None:
    """The PNG: throughputs (left) and each latency's mean, median and percentiles (right)."""
    pyplot = require_matplotlib()
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1, 2]})
    width = 0.8 / max(1, len(results))
    throughputs = [(key, label) for key, label, _unit in THROUGHPUTS if any(key in r for _name, r in results)]
    for i, (name, result) in enumerate(results):
        xs = [j + i * width for j in range(len(throughputs))]
        bars = left.bar(xs, [float(result.get(key) or 0) for key, _label in throughputs], width, label=name)
        left.bar_label(bars, fmt="%.2f", fontsize=7)  # req/s is tiny beside tok/s: the value shows it
    left.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(throughputs))])
    left.set_xticklabels([label.replace(" throughput", "\nthroughput") for _key, label in throughputs], fontsize=8)
    left.set_ylabel("per second (req/s, tok/s)")
    left.set_title("Throughput")
    latency_metrics: List[Metric] = []
    for _name, result in results:
        latency_metrics += [m for m in metrics_of(result) if not m.higher_is_better and m not in latency_metrics]
    for i, (name, result) in enumerate(results):
        xs = [j + i * width for j in range(len(latency_metrics))]
        bars = right.bar(xs, [float(result.get(m.key) or 0) for m in latency_metrics], width, label=name)
        right.bar_label(bars, fmt="%.1f", fontsize=7)
    right.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(latency_metrics))])
    right.set_xticklabels([m.label.replace(" ", "\n", 1) for m in latency_metrics], fontsize=8)
    right.set_ylabel("ms")
    right.set_title("Latency: TTFT, TPOT, ITL")
    if len(results) > 1:
        right.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    try:
        figure.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise ReportError(f"cannot write the plot {path}: {exc.strerror or exc}") from None
    finally:
        pyplot.close(figure)
