"""The report of benchmarks/proxy_overhead.py: summaries, targets, the table, the JSON and the SVG chart.

Standard library only, and nothing here measures: ``--replot`` redraws a saved result, and
the unit tests check it without processes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence
from xml.sax.saxutils import escape

PROXY_CPU = 1  # where the measurement pins the proxy; the backends and the load generator share CPU 0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation (numpy's default); nan if empty."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Sample:
    ttft: float  # seconds from sending the request to the first content event
    total: float  # seconds from sending the request to [DONE]
    tokens: int  # content events received
    ok: bool
    error: str = ""  # why it failed


@dataclass
class Summary:
    requests: int
    errors: int
    elapsed_s: float
    rps: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    total_p50_ms: float
    total_p99_ms: float
    mean_tokens: float
    proxy_cpu: float = math.nan  # proxy CPU seconds / wall seconds during the run (1.0 = its core busy)
    proxy_cpu_us_per_request: float = math.nan  # proxy CPU time per successful request
    side_cpu: float = math.nan  # CPU 0 (backends + load generator) CPU seconds / wall seconds
    cpu_busy: List[float] = field(default_factory=list)  # per CPU, all processes (/proc/stat): others' load shows
    error_reasons: Dict[str, int] = field(default_factory=dict)  # the 5 most frequent


def summarize(
    samples: Sequence[Sample],
    elapsed_s: float,
    proxy_cpu_s: float = math.nan,
    side_cpu: float = math.nan,
    cpu_busy: Sequence[float] = (),
) -> Summary:
    """Aggregate one run; latencies are of the successful requests only."""
    good = [s for s in samples if s.ok]
    ttft = [s.ttft * 1000 for s in good]
    total = [s.total * 1000 for s in good]
    reasons: Dict[str, int] = {}
    for s in samples:
        if not s.ok:
            reasons[s.error] = reasons.get(s.error, 0) + 1
    top = dict(sorted(reasons.items(), key=lambda item: -item[1])[:5])
    return Summary(
        requests=len(samples),
        errors=len(samples) - len(good),
        elapsed_s=elapsed_s,
        rps=len(good) / elapsed_s if elapsed_s > 0 else math.nan,
        ttft_p50_ms=percentile(ttft, 50),
        ttft_p99_ms=percentile(ttft, 99),
        total_p50_ms=percentile(total, 50),
        total_p99_ms=percentile(total, 99),
        mean_tokens=sum(s.tokens for s in good) / len(good) if good else math.nan,
        proxy_cpu=proxy_cpu_s / elapsed_s if elapsed_s > 0 else math.nan,
        proxy_cpu_us_per_request=1e6 * proxy_cpu_s / len(good) if good else math.nan,
        side_cpu=side_cpu,
        cpu_busy=list(cpu_busy),
        error_reasons=top,
    )


@dataclass
class Target:
    name: str
    value: float
    limit: float
    unit: str
    higher_is_better: bool = False

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


def targets(runs: Dict[str, Dict[str, Summary]]) -> List[Target]:
    """The PROXY.md targets, from runs keyed by configuration then ``direct``/``proxy``."""
    out: List[Target] = []
    one = runs.get("1 stream")
    if one:
        out.append(Target("1 stream: added p99 TTFT", one["proxy"].ttft_p99_ms - one["direct"].ttft_p99_ms, 1.0, "ms"))
        out.append(
            Target("1 stream: added p99 total", one["proxy"].total_p99_ms - one["direct"].total_p99_ms, 1.0, "ms")
        )
    for streams in (64, 256):
        run = runs.get(f"{streams} streams, 20 ms/token")
        if not run:
            continue
        ratio = 100 * run["proxy"].rps / run["direct"].rps if run["direct"].rps else math.nan
        out.append(Target(f"{streams} streams: proxy req/s vs direct", ratio, 95.0, "%", higher_is_better=True))
        if streams == 256:
            added = run["proxy"].ttft_p99_ms - run["direct"].ttft_p99_ms
            out.append(Target("256 streams: added p99 TTFT", added, 2.0, "ms"))
    return out


def _fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


CEILING = "256 streams, zero latency (ceiling)"
# direct: to the decode instance alone; pd: prefill then decode, done by the load generator (the
# PD hop without the proxy); proxy: through the proxy (which does the same prefill + decode).
PATHS = ("direct", "pd", "proxy")


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.0f} %"


def _busy(values: Sequence[float]) -> str:
    return "/".join(f"{100 * v:.0f}" for v in values) + " %" if values else "-"


def ceiling_note(runs: Dict[str, Dict[str, Summary]]) -> str:
    """The per-worker ceiling: measured, and projected from the proxy's CPU time per request."""
    run = runs.get(CEILING, {}).get("proxy")
    if run is None:
        return ""
    projected = 1e6 / run.proxy_cpu_us_per_request if run.proxy_cpu_us_per_request > 0 else math.nan
    busy = run.cpu_busy[PROXY_CPU] if len(run.cpu_busy) > PROXY_CPU else math.nan
    if run.proxy_cpu >= 0.9:
        bound = "the proxy's core"
    elif busy >= 0.9:
        bound = f"other processes on CPU {PROXY_CPU} (it was {_pct(busy)} busy in all): the proxy was starved"
    else:
        bound = "CPU 0 (backends + load generator) or latency, not the proxy's CPU"
    return (
        f"Ceiling (one proxy process, 256 streams, zero latency): measured {_fmt(run.rps, 0)} req/s with the proxy "
        f"at {_pct(run.proxy_cpu)} of its core, so bounded by {bound}. The proxy spent "
        f"{_fmt(run.proxy_cpu_us_per_request, 0)} us of CPU per request: about {_fmt(projected, 0)} req/s per "
        "fully busy proxy worker on this machine."
    )


def render_table(runs: Dict[str, Dict[str, Summary]], checks: Sequence[Target]) -> str:
    """Markdown: one row per configuration and path, then the added latency, then the targets."""
    lines = [
        "| configuration | path | requests | errors | req/s | TTFT p50 ms | TTFT p99 ms "
        "| total p50 ms | total p99 ms | proxy CPU | proxy CPU us/req | ours on CPU 0 | CPU 0/1 busy, all |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, pair in runs.items():
        for path in PATHS:
            s = pair.get(path)
            if s is None:
                continue
            cpu, per_req = (_pct(s.proxy_cpu), _fmt(s.proxy_cpu_us_per_request, 0)) if path == "proxy" else ("-", "-")
            lines.append(
                f"| {name} | {path} | {s.requests} | {s.errors} | {_fmt(s.rps, 1)} | {_fmt(s.ttft_p50_ms)} "
                f"| {_fmt(s.ttft_p99_ms)} | {_fmt(s.total_p50_ms)} | {_fmt(s.total_p99_ms)} | {cpu} | {per_req} "
                f"| {_pct(s.side_cpu)} | {_busy(s.cpu_busy)} |"
            )
        for base, label in (("direct", "**added** (proxy - direct)"), ("pd", "proxy's own (proxy - pd)")):
            if base not in pair or "proxy" not in pair:
                continue
            d, p = pair[base], pair["proxy"]
            ratio = f"{100 * p.rps / d.rps:.1f} %" if d.rps else "-"
            lines.append(
                f"| {name} | {label} | | | {ratio} | {_fmt(p.ttft_p50_ms - d.ttft_p50_ms)} "
                f"| {_fmt(p.ttft_p99_ms - d.ttft_p99_ms)} | {_fmt(p.total_p50_ms - d.total_p50_ms)} "
                f"| {_fmt(p.total_p99_ms - d.total_p99_ms)} | | | | |"
            )
    if checks:
        lines += ["", "| target | measured | limit | result |", "|---|---:|---:|---|"]
        for t in checks:
            sign = ">=" if t.higher_is_better else "<="
            verdict = "met" if t.met else "**missed**"
            lines.append(f"| {t.name} | {_fmt(t.value)} {t.unit} | {sign} {_fmt(t.limit, 1)} {t.unit} | {verdict} |")
    note = ceiling_note(runs)
    if note:
        lines += ["", note]
    return "\n".join(lines)


@dataclass
class Panel:
    title: str
    unit: str
    categories: List[str]
    series: Dict[str, List[float]]  # series name -> one value per category


PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759")


def _label(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _nice_max(value: float) -> float:
    if not value > 0 or math.isinf(value):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def render_svg(panels: Sequence[Panel], title: str = "", width: int = 900, panel_height: int = 260) -> str:
    """Grouped bar charts, one panel under the other, as a standalone SVG (standard library only)."""
    top = 40 if title else 10
    height = top + panel_height * len(panels) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    if title:
        out.append(f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="16">{escape(title)}</text>')
    left, right = 70, 150
    for index, panel in enumerate(panels):
        y0 = top + index * panel_height
        plot_top, plot_bottom = y0 + 30, y0 + panel_height - 40
        plot_h = plot_bottom - plot_top
        values = [v for vals in panel.series.values() for v in vals if not math.isnan(v)]
        vmax = _nice_max(max(values, default=0.0))
        vmin = min(0.0, min(values, default=0.0))
        span = vmax - vmin or 1.0

        def y_of(v: float, plot_bottom: int = plot_bottom, plot_h: int = plot_h, vmin: float = vmin) -> float:
            return plot_bottom - (v - vmin) / span * plot_h  # noqa: B023 - bound through the defaults

        out.append(f'<text x="{left}" y="{y0 + 18}" font-size="14">{escape(panel.title)}</text>')
        for tick in range(5):
            v = vmin + span * tick / 4
            y = y_of(v)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        out.append(
            f'<text x="16" y="{(plot_top + plot_bottom) / 2:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 16 {(plot_top + plot_bottom) / 2:.1f})">{escape(panel.unit)}</text>'
        )
        n_cat = max(len(panel.categories), 1)
        n_ser = max(len(panel.series), 1)
        group_w = (width - left - right) / n_cat
        bar_w = group_w * 0.8 / n_ser
        for c, category in enumerate(panel.categories):
            gx = left + c * group_w + group_w * 0.1
            for s, (name, vals) in enumerate(panel.series.items()):
                v = vals[c] if c < len(vals) else math.nan
                if math.isnan(v):
                    continue
                y_top, y_zero = y_of(max(v, 0.0)), y_of(min(v, 0.0))
                x = gx + s * bar_w
                out.append(
                    f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar_w * 0.95:.1f}" height="{y_zero - y_top:.1f}" '
                    f'fill="{PALETTE[s % len(PALETTE)]}">'
                    f"<title>{escape(name)} {escape(category)}: {_label(v)}</title></rect>"
                )
                out.append(
                    f'<text x="{x + bar_w * 0.475:.1f}" y="{y_top - 3:.1f}" text-anchor="middle" '
                    f'font-size="10">{_label(v)}</text>'
                )
            out.append(
                f'<text x="{left + (c + 0.5) * group_w:.1f}" y="{plot_bottom + 16}" '
                f'text-anchor="middle">{escape(category)}</text>'
            )
        for s, name in enumerate(panel.series):
            ly = plot_top + 18 * s
            out.append(
                f'<rect x="{width - right + 15}" y="{ly}" width="12" height="12" fill="{PALETTE[s % len(PALETTE)]}"/>'
            )
            out.append(f'<text x="{width - right + 32}" y="{ly + 10}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def panels_of(runs: Dict[str, Dict[str, Summary]]) -> List[Panel]:
    panels: List[Panel] = []
    one = runs.get("1 stream")
    if one:
        metrics = [("TTFT p50", "ttft_p50_ms"), ("TTFT p99", "ttft_p99_ms")]
        metrics += [("total p50", "total_p50_ms"), ("total p99", "total_p99_ms")]
        panels.append(
            Panel(
                "1 stream, zero latency, 16 tokens: latency",
                "ms",
                [m for m, _ in metrics],
                {p: [getattr(one[p], k) for _, k in metrics] for p in PATHS if p in one},
            )
        )
    loaded = [n for n in runs if n != "1 stream"]
    short = [n.replace(" streams, zero latency", " streams, 0 ms") for n in loaded]
    if loaded:
        for title, unit, field in (
            ("Throughput (closed loop)", "requests/s", "rps"),
            ("p99 time to first token", "ms", "ttft_p99_ms"),
        ):
            series = {
                p: [getattr(runs[n][p], field) if p in runs[n] else math.nan for n in loaded]
                for p in PATHS
                if p in runs[loaded[0]]
            }
            panels.append(Panel(title, unit, short, series))
    return panels


def chart_title(date: str) -> str:
    return f"PD proxy vs direct-to-decode ({date[:10]})"


def header(info: Dict[str, Any], profiled: bool) -> str:
    """The machine and the conditions of a run, above its table."""
    text = (
        f"Proxy overhead, {info['date']}: {info['cpu_model']}, {info['cores']} CPUs, Python {info['python']}, "
        f"aiohttp {info['aiohttp']}. Proxy interpreter: {info['proxy_python']}.\nPinning: {info['pinning']}. "
        "Load average at start "
        f"{info['loadavg_start']}, at end {info['loadavg_end']}; json round trip {info['calibration_us']} us."
    )
    if profiled:
        text += " PROFILED RUN (cProfile): timings are distorted."
    return text


def publish(runs: Dict[str, Dict[str, Summary]], info: Dict[str, Any], settings: Dict[str, Any], stem: Path) -> None:
    """Print the header and the table; write every number to ``stem``.json and the chart to ``stem``.svg."""
    checks = targets(runs)
    print(header(info, settings["profile"]) + "\n\n" + render_table(runs, checks))
    result = {
        "machine": info,
        "settings": settings,
        "runs": {name: {path: asdict(s) for path, s in pair.items()} for name, pair in runs.items()},
        "targets": [{**asdict(t), "met": t.met} for t in checks],
    }
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".svg").write_text(render_svg(panels_of(runs), title=chart_title(info["date"])))


def replot(saved_json: Path) -> None:
    """``--replot``: print the table of a saved result and redraw its SVG beside it."""
    saved = json.loads(saved_json.read_text())
    runs = {name: {path: Summary(**raw) for path, raw in pair.items()} for name, pair in saved["runs"].items()}
    print(render_table(runs, targets(runs)))
    saved_json.with_suffix(".svg").write_text(render_svg(panels_of(runs), title=chart_title(saved["machine"]["date"])))
