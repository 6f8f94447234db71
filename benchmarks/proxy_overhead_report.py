"""The report of benchmarks/proxy_overhead.py: summaries, targets, the table, the JSON and the SVG chart.

Standard library only, and nothing here measures: ``--replot`` redraws a saved result, and
the unit tests check it without processes.
"""

from __future__ import annotations

import json
import math
import pstats
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple
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
    events: int = 0  # every SSE event received, [DONE] included: what the proxy relayed
    worker: str = ""  # the proxy's x-ascend-proxy-worker answer header (which worker process served it)


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
    mean_events: float = math.nan  # SSE events per successful request
    proxy_cpu_us_per_event: float = math.nan  # proxy CPU time / SSE events relayed (long outputs)
    workers: Dict[str, int] = field(default_factory=dict)  # requests per x-ascend-proxy-worker value


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
    events = sum(s.events for s in good)
    workers: Dict[str, int] = {}
    for s in good:
        if s.worker:  # a proxy without the header (or a direct path) leaves this empty
            workers[s.worker] = workers.get(s.worker, 0) + 1
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
        mean_events=events / len(good) if good else math.nan,
        proxy_cpu_us_per_event=1e6 * proxy_cpu_s / events if events else math.nan,
        workers=dict(sorted(workers.items())),
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


CEILING = "256 streams, zero latency (ceiling)"
LONG = "4 streams, zero latency, 1024 tokens"  # long outputs: the proxy's cost per relayed event
LARGE = "1 stream, ~200k-token prompt"  # a ~800 KB request body: parsing and serialising it
WORKERS = 2  # the multi-worker run compares this many proxy workers with one
SCALING = f"64 streams, zero latency, {WORKERS} workers vs 1"
WORKERS_PATH = f"proxy, {WORKERS} workers"
# direct: to the decode instance alone; pd: prefill then decode, done by the load generator (the
# PD hop without the proxy); proxy: through the proxy (which does the same prefill + decode);
# WORKERS_PATH: the same proxy code with ``workers`` set, in front of the same backends.
PATHS = ("direct", "pd", "proxy", WORKERS_PATH)
# The proxy's own budget (issue 14) on this 2-core machine, besides the design targets above.
OWN_TTFT_P50_MS = 0.3
OWN_TTFT_P99_MS = 1.0
CPU_US_PER_REQUEST = 400.0
CPU_US_PER_EVENT = 10.0
WORKER_SHARE_PCT = 20.0
CPU_GROWTH_PCT = 10.0


def worker_share_deviation(counts: Dict[str, int], workers: int) -> float:
    """Largest distance of one worker's share of requests from the mean share, in % of the mean.

    ``counts`` holds only the workers that answered, so an idle worker counts as 0 (100 %
    off). nan when the answers carried no worker header: nothing to judge.
    """
    total = sum(counts.values())
    if not total or workers < 1:
        return math.nan
    mean = total / workers
    shares = list(counts.values()) + [0] * max(0, workers - len(counts))
    return 100 * max(abs(c - mean) for c in shares) / mean


def cpu_growth_pct(runs: Dict[str, Dict[str, Summary]]) -> float:
    """Proxy CPU per request with ``WORKERS`` workers over one worker, in % (+10: 10 % more)."""
    run = runs.get(SCALING, {})
    one, many = run.get("proxy"), run.get(WORKERS_PATH)
    if one is None or many is None or not one.proxy_cpu_us_per_request > 0:
        return math.nan
    return 100 * (many.proxy_cpu_us_per_request / one.proxy_cpu_us_per_request - 1)


def targets(runs: Dict[str, Dict[str, Summary]]) -> List[Target]:
    """The design targets and the proxy's own budget, from runs keyed by configuration then path."""
    out: List[Target] = []
    one = runs.get("1 stream")
    if one:
        out.append(Target("1 stream: added p99 TTFT", one["proxy"].ttft_p99_ms - one["direct"].ttft_p99_ms, 1.0, "ms"))
        out.append(
            Target("1 stream: added p99 total", one["proxy"].total_p99_ms - one["direct"].total_p99_ms, 1.0, "ms")
        )
        if "pd" in one:  # the proxy's own share: what it adds over doing the PD hop in the client
            own = one["proxy"].ttft_p50_ms - one["pd"].ttft_p50_ms
            out.append(Target("1 stream: proxy's own p50 TTFT (proxy - pd)", own, OWN_TTFT_P50_MS, "ms"))
            own = one["proxy"].ttft_p99_ms - one["pd"].ttft_p99_ms
            out.append(Target("1 stream: proxy's own p99 TTFT (proxy - pd)", own, OWN_TTFT_P99_MS, "ms"))
    for streams in (64, 256):
        run = runs.get(f"{streams} streams, 20 ms/token")
        if not run:
            continue
        ratio = 100 * run["proxy"].rps / run["direct"].rps if run["direct"].rps else math.nan
        out.append(Target(f"{streams} streams: proxy req/s vs direct", ratio, 95.0, "%", higher_is_better=True))
        if streams == 256:
            added = run["proxy"].ttft_p99_ms - run["direct"].ttft_p99_ms
            out.append(Target("256 streams: added p99 TTFT", added, 2.0, "ms"))
    # CPU per request where the proxy is busiest with 16-token requests: the ceiling run, whose
    # per-request cost is what bounds a worker's requests/s (1 stream adds idle wake-ups).
    ceiling = runs.get(CEILING, {}).get("proxy")
    if ceiling is not None:
        value = ceiling.proxy_cpu_us_per_request
        out.append(Target("16 tokens (ceiling run): proxy CPU per request", value, CPU_US_PER_REQUEST, "us"))
    long = runs.get(LONG, {}).get("proxy")
    if long is not None:
        value = long.proxy_cpu_us_per_event
        out.append(Target("1024 tokens: proxy CPU per relayed SSE event", value, CPU_US_PER_EVENT, "us"))
    many = runs.get(SCALING, {}).get(WORKERS_PATH)
    if many is not None:
        value = worker_share_deviation(many.workers, WORKERS)
        out.append(Target(f"{WORKERS} workers: largest share off the mean", value, WORKER_SHARE_PCT, "%"))
        out.append(Target(f"{WORKERS} workers: CPU per request vs 1 worker", cpu_growth_pct(runs), CPU_GROWTH_PCT, "%"))
    return out


def _fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _signed(value: float) -> str:
    """A difference with its sign: +1.50, -0.20 (a noisy run can make the proxy path faster)."""
    return "-" if math.isnan(value) else f"{value:+.2f}"


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


def long_note(runs: Dict[str, Dict[str, Summary]]) -> str:
    """CPU per relayed event at 1024-token outputs, and the marginal cost over 16-token requests."""
    run = runs.get(LONG, {}).get("proxy")
    if run is None:
        return ""
    text = (
        f"Long outputs ({LONG}): {_fmt(run.mean_events, 0)} SSE events relayed per request, "
        f"{_fmt(run.proxy_cpu_us_per_request, 0)} us of proxy CPU per request: "
        f"{_fmt(run.proxy_cpu_us_per_event)} us per event, the request's fixed cost included."
    )
    short = runs.get(CEILING, {}).get("proxy")
    if short is not None and run.mean_events > short.mean_events:
        # Both at zero latency: the difference is what the extra events cost, without the prefill.
        marginal = (run.proxy_cpu_us_per_request - short.proxy_cpu_us_per_request) / (
            run.mean_events - short.mean_events
        )
        text += f" Marginal cost per event over the 16-token ceiling run: {_fmt(marginal)} us."
    return text


def large_note(runs: Dict[str, Dict[str, Summary]], info: Dict[str, Any]) -> str:
    """What a ~800 KB request body costs: added latency, proxy CPU, in units of one JSON parse here."""
    run = runs.get(LARGE, {})
    proxy = run.get("proxy")
    if proxy is None:
        return ""
    body = info.get("large_body", {})
    text = f"Large prompt ({LARGE}, {_fmt(body.get('bytes', math.nan) / 1000, 0)} KB body):"
    for base in ("pd", "direct"):
        if base in run:
            b = run[base]
            text += (
                f" proxy - {base} TTFT {_signed(proxy.ttft_p50_ms - b.ttft_p50_ms)} ms p50 / "
                f"{_signed(proxy.ttft_p99_ms - b.ttft_p99_ms)} ms p99;"
            )
    text += f" proxy CPU {_fmt(proxy.proxy_cpu_us_per_request, 0)} us per request"
    small = runs.get("1 stream", {}).get("proxy")
    loads, dumps = body.get("loads_us", math.nan), body.get("dumps_us", math.nan)
    if small is not None:
        extra = proxy.proxy_cpu_us_per_request - small.proxy_cpu_us_per_request
        text += f", {_fmt(extra, 0)} us more than a small body at 1 stream"
    # The yardstick for the extra CPU: parsing the body once and writing the prefill and the decode
    # body once each (the proxy needs no more; splicing the changed keys would need less).
    text += (
        f". Here one json.loads of the body takes {_fmt(loads, 0)} us and one json.dumps {_fmt(dumps, 0)} us: "
        f"one parse plus two serialisations is {_fmt(loads + 2 * dumps, 0)} us."
    )
    return text


def projection(cpu_us_per_request: float, counts: Sequence[int] = (1, 2, 4, 8)) -> Dict[int, float]:
    """Requests/s of N workers, each on a core of its own, from the CPU time one request costs."""
    if not cpu_us_per_request > 0:
        return {n: math.nan for n in counts}
    return {n: n * 1e6 / cpu_us_per_request for n in counts}


def scaling_note(runs: Dict[str, Dict[str, Summary]], info: Dict[str, Any]) -> str:
    """Workers N vs 1: throughput, CPU per request, the share per worker, and the projection."""
    skipped = info.get("workers_skipped")
    if skipped:
        return f"Multi-worker run ({SCALING}): skipped: {skipped}"
    run = runs.get(SCALING, {})
    one, many = run.get("proxy"), run.get(WORKERS_PATH)
    if one is None or many is None:
        return ""
    shares = ", ".join(f"{w}: {c}" for w, c in many.workers.items()) or "no x-ascend-proxy-worker header"
    projected = ", ".join(f"{n}: {_fmt(v, 0)}" for n, v in projection(many.proxy_cpu_us_per_request).items())
    return (
        f"Multi-worker run ({SCALING}, every proxy process on CPU {PROXY_CPU}): {_fmt(one.rps, 0)} req/s with 1 "
        f"worker, {_fmt(many.rps, 0)} with {WORKERS} (on this machine CPU 0's backends bound both); proxy CPU "
        f"per request (all its processes) {_fmt(one.proxy_cpu_us_per_request, 0)} vs "
        f"{_fmt(many.proxy_cpu_us_per_request, 0)} us ({_fmt(cpu_growth_pct(runs), 1)} %); requests per worker "
        f"{shares} ({_fmt(worker_share_deviation(many.workers, WORKERS), 1)} % largest share off the mean). "
        f"Projected req/s of N fully busy workers, a core each, from the {WORKERS}-worker CPU per request: "
        f"{projected}."
    )


def notes(runs: Dict[str, Dict[str, Summary]], info: Dict[str, Any]) -> List[str]:
    """The paragraphs under the table: what the derived measurements say."""
    out = [ceiling_note(runs), long_note(runs), large_note(runs, info), scaling_note(runs, info)]
    return [text for text in out if text]


def render_table(
    runs: Dict[str, Dict[str, Summary]], checks: Sequence[Target], info: Optional[Dict[str, Any]] = None
) -> str:
    """Markdown: one row per configuration and path, then the added latency, the targets and the notes."""
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
            proxied = path.startswith("proxy")  # the direct and pd paths leave the proxy idle
            cpu, per_req = (_pct(s.proxy_cpu), _fmt(s.proxy_cpu_us_per_request, 0)) if proxied else ("-", "-")
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
    for note in notes(runs, info or {}):
        lines += ["", note]
    return "\n".join(lines)


# The event loop's wait for I/O: idle time, not work. Left out of the ranking and of the busy
# total the shares are of (cumulative times of the loop's own frames still include it).
IDLE_WAITS = frozenset(
    f"<method '{method}' of 'select.{kind}' objects>"
    for method, kind in (("poll", "epoll"), ("poll", "poll"), ("select", "select"), ("control", "kqueue"))
) | {"<built-in method select.select>"}


def profile_summary(prof: Path, top: int = 15) -> Dict[str, Any]:
    """The proxy's top functions of a cProfile dump, by own time and by cumulative time, for the JSON."""
    every = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]  # (file, line, name) -> counts
    idle = sum(row[2] for key, row in every.items() if key[2] in IDLE_WAITS)
    stats = {key: row for key, row in every.items() if key[2] not in IDLE_WAITS}
    total = sum(row[2] for row in stats.values())

    def rows(index: int) -> List[Dict[str, Any]]:
        ranked = sorted(stats.items(), key=lambda item: -item[1][index])[:top]
        return [
            {
                "function": _where(key),
                "ncalls": nc,
                "tottime_s": round(tt, 4),
                "cumtime_s": round(ct, 4),
                "tottime_share": round(tt / total, 4) if total else math.nan,
            }
            for key, (_, nc, tt, ct, _callers) in ranked
        ]

    parts: Dict[str, float] = {}
    for key, row in stats.items():
        parts[_part(key)] = parts.get(_part(key), 0.0) + row[2]
    by_part = [
        {"part": part, "tottime_s": round(tt, 4), "tottime_share": round(tt / total, 4) if total else math.nan}
        for part, tt in sorted(parts.items(), key=lambda item: -item[1])
    ]
    return {
        "total_s": round(total, 4),
        "idle_s": round(idle, 4),
        "by_part": by_part,
        "by_tottime": rows(2),
        "by_cumtime": rows(3),
    }


_BUILTIN_RE = re.compile(r"<method '(\w+)' of '([\w.]+)' objects>|<built-in method ([\w.]+)>")


def _part(key: Tuple[str, int, str]) -> str:
    """Where a function's own time belongs: the proxy's code, aiohttp's client or server, asyncio, json,
    or a built-in by its type (socket send/recv are the syscalls). A flat profile, where no single
    function stands out, still shows which layer bounds the proxy this way."""
    path, _, name = key
    if path == "~":
        match = _BUILTIN_RE.fullmatch(name)
        return "socket syscalls" if match and "socket" in (match.group(2) or "") else "built-ins (str, bytes, ...)"
    folder, stem = Path(path).parent.name, Path(path).stem
    if folder == "aiohttp":
        if stem.startswith("client") or stem == "connector":
            return "aiohttp client"
        return "aiohttp server" if stem.startswith("web") else "aiohttp http/streams"
    if folder == "ascend_pd_proxy":
        return "proxy code"
    if folder in ("asyncio", "json"):
        return folder
    return "stdlib (other)" if folder.startswith("python3") else f"other ({folder or path})"


def _where(key: Tuple[str, int, str]) -> str:
    """``dir/file.py:line(name)``: the last two path parts are enough to tell aiohttp from the proxy."""
    path, line, name = key
    return f"{'/'.join(Path(path).parts[-2:]) if path != '~' else ''}:{line}({name})"


def render_profile(label: str, summary: Dict[str, Any], top: int = 10) -> str:
    """Markdown: the top functions by own time, with their share of the proxy's busy time."""
    lines = [
        f"Proxy profile, {label}: {summary['total_s']} s busy (shares are of this), "
        f"{summary.get('idle_s', 0)} s waiting for I/O:",
        "",
        "| function | calls | own s | own share | cumulative s |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in summary["by_tottime"][:top]:
        lines.append(
            f"| `{row['function']}` | {row['ncalls']} | {row['tottime_s']:.3f} | {_pct(row['tottime_share'])} "
            f"| {row['cumtime_s']:.3f} |"
        )
    if summary.get("by_part"):  # results before the grouping have none
        lines += ["", "| part | own s | own share |", "|---|---:|---:|"]
        shown, rest = summary["by_part"][:top], summary["by_part"][top:]
        lines += [f"| {row['part']} | {row['tottime_s']:.3f} | {_pct(row['tottime_share'])} |" for row in shown]
        if rest:
            own = sum(row["tottime_s"] for row in rest)
            lines.append(f"| the rest ({len(rest)} parts) | {own:.3f} | {_pct(own / summary['total_s'])} |")
    return "\n".join(lines)


@dataclass
class Panel:
    title: str
    unit: str
    categories: List[str]
    series: Dict[str, List[float]]  # series name -> one value per category


PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759")


def _color(series: str, index: int) -> str:
    """A path keeps its colour in every panel (the CPU panel has only the proxy paths)."""
    return PALETTE[(PATHS.index(series) if series in PATHS else index) % len(PALETTE)]


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
                    f'fill="{_color(name, s)}">'
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
            out.append(f'<rect x="{width - right + 15}" y="{ly}" width="12" height="12" fill="{_color(name, s)}"/>')
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
    # The large prompt and the long outputs are on other scales (100s of ms, 1000s of us): their
    # numbers are in the notes under the table, and would flatten every other bar here.
    loaded = [n for n in runs if n not in ("1 stream", LARGE, LONG)]
    if loaded:
        for title, unit, field in (
            ("Throughput (closed loop)", "requests/s", "rps"),
            ("p99 time to first token", "ms", "ttft_p99_ms"),
        ):
            panels.append(Panel(title, unit, [_short(n) for n in loaded], _series(runs, loaded, PATHS, field)))
    cpu = [n for n in runs if n not in (LARGE, LONG)]
    proxied = [p for p in PATHS if p.startswith("proxy")]
    if cpu:
        series = _series(runs, cpu, proxied, "proxy_cpu_us_per_request")
        panels.append(Panel("Proxy CPU per request (all its processes)", "us", [_short(n) for n in cpu], series))
    return panels


def _short(name: str) -> str:
    return name.replace(" streams, zero latency", " streams, 0 ms").replace(" ms/token", " ms/tok")


def _series(
    runs: Dict[str, Dict[str, Summary]], names: List[str], paths: Sequence[str], field: str
) -> Dict[str, List[float]]:
    """One series per path that any of ``names`` measured, nan where a run did not measure it."""
    present = [p for p in paths if any(p in runs[n] for n in names)]
    return {p: [getattr(runs[n][p], field) if p in runs[n] else math.nan for n in names] for p in present}


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
    if info.get("proxy_src"):  # results before this option have no record of the proxy measured
        text += f"\nProxy measured: {info['proxy_src']} at {info.get('proxy_commit') or 'unknown commit'}."
    if profiled:
        text += " PROFILED RUN (cProfile): timings are distorted."
    return text


def publish(
    runs: Dict[str, Dict[str, Summary]],
    info: Dict[str, Any],
    settings: Dict[str, Any],
    stem: Path,
    profiles: Optional[Dict[str, Dict[str, Any]]] = None,
) -> None:
    """Print the header, the table and any profiles; write every number to ``stem``.json, the chart to .svg.

    ``profiles``: per stack label, a ``profile_summary`` (``--profile``), kept in the JSON so
    the note on what bounds the numbers can cite it later.
    """
    checks = targets(runs)
    print(header(info, settings["profile"]) + "\n\n" + render_table(runs, checks, info))
    for label, summary in (profiles or {}).items():
        print("\n" + render_profile(label, summary))
    result = {
        "machine": info,
        "settings": settings,
        "runs": {name: {path: asdict(s) for path, s in pair.items()} for name, pair in runs.items()},
        "targets": [{**asdict(t), "met": t.met} for t in checks],
    }
    if profiles:
        result["profile"] = profiles
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".svg").write_text(render_svg(panels_of(runs), title=chart_title(info["date"])))


def replot(saved_json: Path) -> None:
    """``--replot``: print the table of a saved result and redraw its SVG beside it."""
    saved = json.loads(saved_json.read_text())
    runs = {name: {path: Summary(**raw) for path, raw in pair.items()} for name, pair in saved["runs"].items()}
    print(render_table(runs, targets(runs), saved["machine"]))
    for label, summary in saved.get("profile", {}).items():
        print("\n" + render_profile(label, summary))
    saved_json.with_suffix(".svg").write_text(render_svg(panels_of(runs), title=chart_title(saved["machine"]["date"])))
