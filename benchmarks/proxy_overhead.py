#!/usr/bin/env python3
"""Proxy overhead: direct-to-decode vs through the PD proxy, on the same simulated backends.

One run starts a simulated prefill (``kv_producer``) and decode (``kv_consumer``) vLLM pair
and the proxy in front of them, then drives three paths with the same closed-loop load
generator (aiohttp client, SSE parsed per event, TTFT = time to the first event carrying
content), alternating them in rounds: ``direct`` (to the decode instance alone, the baseline of
the targets), ``pd`` (the load generator does the prefill and the decode itself: the PD hop
without the proxy) and ``proxy``. ``proxy - direct`` is what the targets judge; ``proxy - pd``
is the proxy's own share. The measurements, against the proxy's design targets and its own
budget (benchmarks/README.md):

1. per-request overhead: 1 stream, zero simulated latency, 16 output tokens, streaming:
   p50/p99 TTFT and total time, direct vs proxy; target added p99 <= 1 ms (PD hop included);
   the proxy's own share (``proxy - pd``) <= 0.3 ms p50 and <= 1 ms p99 TTFT;
2. under load: 64 and 256 streams, 20 ms per output token: requests/s and p99 TTFT; targets
   proxy >= 95 % of direct's requests/s, added p99 TTFT <= 2 ms at 256 streams;
3. ceiling: requests/s through the proxy (one process) at 256 streams, zero latency; its proxy
   CPU per 16-token request, target <= 0.4 ms;
4. long outputs: 4 streams, zero latency, 1024 tokens (``ignore_eos``): proxy CPU per relayed
   SSE event, target <= 10 us;
5. a large prompt: 1 stream, a ~200k-token (~800 KB) body: added latency and proxy CPU, beside
   what one json.loads and two json.dumps of that body cost here (measured, not judged);
6. workers: the same proxy with ``workers: 2`` beside the one-worker proxy, 64 streams, zero
   latency: requests/s, CPU per request over all the proxy's processes, requests per worker
   (the ``x-ascend-proxy-worker`` answer header); targets: each worker within 20 % of the mean
   share, CPU per request at most 10 % above one worker's. Skipped, with the reason in the
   results, when the proxy's ``--check-config`` rejects the key.

The proxy runs pinned to CPU 1 (its workers inherit that); the backends and this load
generator to CPU 0 (when the machine has at least 2 CPUs). For every run the proxy's CPU time
(/proc/PID/stat, summed over its process tree) and each CPU's total busy time (/proc/stat) are
recorded, so a proxy starved by other processes, or a ceiling set by CPU 0 rather than by the
proxy, is visible.

Usage: ``python benchmarks/proxy_overhead.py [--quick] [--profile] [--proxy-src DIR] [--name STEM]``
(``make bench``). ``--proxy-src`` measures the ``ascend_pd_proxy`` package of another source
tree (its path and commit are recorded); ``--profile`` keeps the proxy's top functions in the
JSON. Writes ``benchmarks/results/STEM.json`` and ``.svg`` (STEM ``proxy_overhead`` by default)
and prints a Markdown table.
This is a measurement, not a test: nothing here fails on a missed target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Sequence, Tuple

from proxy_overhead_report import (
    CEILING,
    LARGE,
    LONG,
    PROXY_CPU,
    SCALING,
    WORKERS,
    WORKERS_PATH,
    Sample,
    Summary,
    profile_summary,
    publish,
    replot,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
MODEL = "bench-model"
OUTPUT_TOKENS = 16
LONG_OUTPUT_TOKENS = 1024
LARGE_PROMPT_TOKENS = 200_000  # " tok" is one simulated token of 4 bytes: a ~800 KB body
MAX_MODEL_LEN = 262_144  # room for the large prompt in the simulated model's context
LOAD_CPU = 0  # the backends and this load generator; the proxy gets PROXY_CPU
CHAT = "/v1/chat/completions"

# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> List[int]:
    """``root`` and all its descendants (parents from /proc/PID/stat): a multi-worker proxy's processes."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):  # gone meanwhile
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU time of a proxy and every worker process it started (0 for no proxy)."""
    if not root:
        return 0.0
    total = 0.0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):  # a process that exited between the listing and here
            total += cpu_seconds(pid)
    return total


def _pin(cpu: Optional[int]) -> Any:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Stack:
    prefill_url: str
    decode_url: str
    proxy_url: str
    proxy_pid: int
    procs: List[subprocess.Popen] = field(default_factory=list)


def proxy_config(prefill_url: str, decode_url: str, port: int, workers: Optional[int] = None) -> Dict[str, Any]:
    """The proxy's JSON configuration; ``workers`` only when given, so a proxy without the key runs."""
    cfg: Dict[str, Any] = {
        "listen": {"host": HOST, "port": port},
        "prefill": {"instances": [prefill_url]},
        "decode": {"instances": [decode_url]},
        "log_level": "warning",
    }
    if workers is not None:
        cfg["workers"] = workers
    return cfg


def _proxy_env(proxy_src: Path) -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(proxy_src))


def workers_support(work: Path, proxy_python: str, proxy_src: Path) -> str:
    """Why the proxy under test cannot run ``workers`` (its --check-config answer); "" when it can."""
    cfg_path = work / "workers-check.json"
    cfg_path.write_text(json.dumps(proxy_config("http://127.0.0.1:1", "http://127.0.0.1:2", free_port(), WORKERS)))
    cmd = [proxy_python, "-m", "ascend_pd_proxy", "--config", str(cfg_path), "--check-config"]
    done = subprocess.run(cmd, env=_proxy_env(proxy_src), capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return ""
    reason = (done.stderr or done.stdout).strip().splitlines()
    return f"the proxy's configuration rejects workers: {WORKERS} ({reason[-1] if reason else done.returncode})"


def start_proxy(
    work: Path,
    label: str,
    prefill_url: str,
    decode_url: str,
    procs: List[subprocess.Popen],
    pin: bool,
    profile: Optional[Path] = None,
    proxy_python: str = sys.executable,
    proxy_src: Path = ROOT / "proxy",
    workers: Optional[int] = None,
) -> Tuple[subprocess.Popen, str]:
    """One proxy in front of the pair, added to ``procs`` (for the caller to stop); its URL once healthy."""
    cfg_path = work / f"{label}-proxy.json"
    port = free_port()
    cfg_path.write_text(json.dumps(proxy_config(prefill_url, decode_url, port, workers)))
    cmd = [proxy_python]
    if profile is not None:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "ascend_pd_proxy", "--config", str(cfg_path)]
    log = work / f"{label}-proxy.log"
    with open(log, "w", encoding="utf-8") as out:
        # Worker processes inherit the pinning: N workers share the proxy's CPU, so the CPU per
        # request is comparable with one worker's and no worker takes the backends' CPU.
        proxy = subprocess.Popen(
            cmd,
            env=_proxy_env(proxy_src),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_pin(PROXY_CPU if pin else None),
        )
    procs.append(proxy)
    url = f"http://{HOST}:{port}"
    _wait_http(url + "/health", proxy, log)
    return proxy, url


@contextlib.contextmanager
def stack(
    work: Path,
    decode_s_per_token: float,
    label: str,
    pin: bool,
    profile: Optional[Path] = None,
    proxy_python: str = sys.executable,
    proxy_src: Path = ROOT / "proxy",
    workers: Optional[int] = None,
) -> Iterator[Stack]:
    """A simulated prefill + decode pair and the proxy in front, stopped on exit."""
    if str(ROOT / "sim") not in sys.path:
        sys.path.insert(0, str(ROOT / "sim"))
    from ascend_sim import state

    model = work / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(
        json.dumps({"architectures": ["MiniMaxM2ForCausalLM"], "max_position_embeddings": MAX_MODEL_LEN})
    )
    procs: List[subprocess.Popen] = []
    urls: Dict[str, str] = {}
    sides = {"prefill": {"dp_size": 1, "tp_size": 1}, "decode": {"dp_size": 1, "tp_size": 1}}
    try:
        for role, kv_role in (("prefill", "kv_producer"), ("decode", "kv_consumer")):
            node = work / f"{label}-{role}-state"
            state.init_state("a3", directory=node)
            port, kv_port = free_port(), free_port()
            env = dict(os.environ)
            env.pop("ASCEND_RT_VISIBLE_DEVICES", None)
            env.pop("VLLM_API_KEY", None)
            env.update(
                PYTHONPATH=str(ROOT / "sim"),
                ASCEND_SIM_STATE_DIR=str(node),
                ASCEND_SIM_SKIP_DEVICE_CHECK="1",
                VLLM_SIM_LOAD_SECONDS="0",
                VLLM_SIM_PREFILL_S_PER_TOKEN="0",
                VLLM_SIM_DECODE_S_PER_TOKEN=str(decode_s_per_token),
                VLLM_HOST_IP=HOST,
                VLLM_SIM_DRAIN_SECONDS="1",
            )
            kv = {
                "kv_connector": "MooncakeConnectorV1",
                "kv_role": kv_role,
                "kv_port": str(kv_port),
                "engine_id": f"{label}-{role}",
                "kv_connector_extra_config": {"use_ascend_direct": True, **sides},
            }
            log = work / f"{label}-{role}.log"
            cmd = [sys.executable, "-m", "ascend_sim.vllm", "serve", str(model), "--host", HOST, "--port", str(port)]
            cmd += ["--served-model-name", MODEL, "--max-num-seqs", "1024", "--kv-transfer-config", json.dumps(kv)]
            with open(log, "w", encoding="utf-8") as out:
                proc = subprocess.Popen(
                    cmd, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_pin(LOAD_CPU if pin else None)
                )
            procs.append(proc)
            urls[role] = f"http://{HOST}:{port}"
            _wait_http(urls[role] + "/health", proc, log)
        proxy, proxy_url = start_proxy(
            work, label, urls["prefill"], urls["decode"], procs, pin, profile, proxy_python, proxy_src, workers
        )
        yield Stack(urls["prefill"], urls["decode"], proxy_url, proxy.pid, procs)
    finally:
        for proc in reversed(procs):
            _stop(proc)


# --- load generator -----------------------------------------------------------------------------


PROMPT = "Explain prefill and decode disaggregation in one paragraph."


def request_body(output_tokens: int = OUTPUT_TOKENS, prompt: str = PROMPT, ignore_eos: bool = False) -> bytes:
    """A streaming chat request; ``ignore_eos`` (vLLM's sampling option) makes it run to ``max_tokens``."""
    request: Dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": output_tokens,
        "stream": True,
    }
    if ignore_eos:
        request["ignore_eos"] = True
    return json.dumps(request).encode()


def large_prompt(tokens: int = LARGE_PROMPT_TOKENS) -> str:
    """A prompt of ``tokens`` simulated tokens: 4 bytes each, as a 200k-token prompt is ~800 KB of JSON."""
    return " tok" * tokens


def _content(event: Dict[str, Any]) -> str:
    choices = event.get("choices") or [{}]
    delta = choices[0].get("delta") or {}
    return delta.get("content") or delta.get("reasoning_content") or choices[0].get("text") or ""


def _proxy_modules() -> Tuple[Any, Any]:
    """The proxy's own request builders and SSE parser: the ``pd`` path sends exactly what the proxy
    sends, and every path's answer is parsed as the proxy parses events."""
    if str(ROOT / "proxy") not in sys.path:
        sys.path.insert(0, str(ROOT / "proxy"))
    from ascend_pd_proxy import protocol, sse

    return protocol, sse


async def _prefill(session: Any, url: str, body: bytes) -> bytes:
    """The PD hop done by the load generator itself: prefill, then the decode body with its KV params."""
    protocol, _ = _proxy_modules()
    request = json.loads(body)
    async with session.post(
        url, data=json.dumps(protocol.prefill_body(request)).encode(), headers={"Content-Type": "application/json"}
    ) as answer:
        raw = await answer.read()
        if answer.status != 200:
            raise RuntimeError(f"prefill HTTP {answer.status}: {raw[:200]!r}")
    kv_params, _ = protocol.read_prefill_answer(raw)
    return json.dumps(protocol.decode_body(request, kv_params)).encode()


async def _event_data(answer: Any) -> AsyncIterator[str]:
    """The data of each server-sent event of a streaming answer, as it arrives."""
    _, sse = _proxy_modules()
    parser = sse.SSEParser()
    async for chunk in answer.content.iter_any():
        for event in parser.feed(chunk):
            yield event.data


async def one_request(session: Any, url: str, body: bytes, prefill_url: str = "") -> Sample:
    """POST one streaming request and read its SSE body event by event (after a prefill if ``prefill_url``)."""
    began = time.perf_counter()
    first: Optional[float] = None
    tokens = events = 0
    worker = ""
    error = "the stream ended without [DONE]"
    try:
        if prefill_url:
            body = await _prefill(session, prefill_url, body)
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer:
            worker = answer.headers.get("x-ascend-proxy-worker", "")
            if answer.status != 200:
                text = (await answer.read())[:200].decode("utf-8", "replace")
                return Sample(math.nan, time.perf_counter() - began, 0, False, f"HTTP {answer.status}: {text}")
            async for payload in _event_data(answer):
                events += 1
                if payload == "[DONE]":
                    error = "" if tokens else "no content event"
                    break
                event = json.loads(payload)
                if "error" in event:
                    error = f"SSE error event: {str(event['error'])[:200]}"
                    break
                if _content(event):
                    tokens += 1
                    if first is None:
                        first = time.perf_counter()
    except Exception as exc:  # a failed request is counted, not fatal
        error = f"{type(exc).__name__}: {exc}"[:200]
    end = time.perf_counter()
    return Sample((first or end) - began, end - began, tokens, not error, error, events, worker)


@dataclass(frozen=True)
class Route:
    url: str  # where the streaming request goes
    prefill_url: str = ""  # set: the load generator does the prefill first (PD without the proxy)
    proxy_pid: int = 0  # the proxy whose CPU time (all its processes) is charged to this path; 0: none


async def _drive(session: Any, route: Route, body: bytes, concurrency: int, count: int, out: List[Sample]) -> None:
    """A closed loop: ``concurrency`` workers, each sending its next request when the previous one ends."""
    remaining = [count]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            out.append(await one_request(session, route.url, body, route.prefill_url))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def cpu_times() -> List[Tuple[int, int]]:
    """(busy, total) jiffies per CPU from /proc/stat; busy excludes idle and iowait."""
    out: List[Tuple[int, int]] = []
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("cpu") and line[3].isdigit():
                values = [int(v) for v in line.split()[1:9]]
                total = sum(values)
                out.append((total - values[3] - values[4], total))
    return out


def _cpu(pids: Sequence[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def measure_paths(
    urls: Dict[str, Route], concurrency: int, requests: int, warmup: int, rounds: int, side: List[int], body: bytes
) -> Dict[str, Summary]:
    """Every path in turn, alternating the order in ``rounds`` (ABC CBA ...) so all see the same background load.

    ``side``: the pids sharing CPU 0 with this load generator (the backends); their CPU time
    plus this process's is reported as ``side_cpu`` (1.0: CPU 0 was the bottleneck). Each
    path's proxy CPU is that of its route's proxy, workers included.
    """
    import aiohttp

    sessions = {
        path: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=120))
        for path in urls
    }
    samples: Dict[str, List[Sample]] = {path: [] for path in urls}
    elapsed = dict.fromkeys(urls, 0.0)
    proxy_cpu = dict.fromkeys(urls, 0.0)
    side_cpu = dict.fromkeys(urls, 0.0)
    jiffies: Dict[str, List[List[int]]] = {path: [[0, 0] for _ in cpu_times()] for path in urls}
    try:
        for path, url in urls.items():  # opens the connections, both sides' pools included
            await _drive(sessions[path], url, body, concurrency, max(warmup, concurrency), [])
        order = list(urls)
        for r in range(rounds):
            chunk = requests // rounds + (1 if r < requests % rounds else 0)
            for path in order if r % 2 == 0 else reversed(order):
                proxy_pid = urls[path].proxy_pid
                p0, s0, c0, j0 = tree_cpu_seconds(proxy_pid), _cpu(side), time.process_time(), cpu_times()
                t0 = time.perf_counter()
                await _drive(sessions[path], urls[path], body, concurrency, chunk, samples[path])
                elapsed[path] += time.perf_counter() - t0
                proxy_cpu[path] += tree_cpu_seconds(proxy_pid) - p0
                side_cpu[path] += _cpu(side) - s0 + time.process_time() - c0
                for acc, (b0, t0_), (b1, t1) in zip(jiffies[path], j0, cpu_times()):
                    acc[0] += b1 - b0
                    acc[1] += t1 - t0_
    finally:
        for session in sessions.values():
            await session.close()
    return {
        path: summarize(
            samples[path],
            elapsed[path],
            proxy_cpu[path],
            side_cpu[path] / max(elapsed[path], 1e-9),
            [busy / total if total else math.nan for busy, total in jiffies[path]],
        )
        for path in urls
    }


# --- machine info and main ----------------------------------------------------------------------


def machine_info(pinned: bool) -> Dict[str, Any]:
    import aiohttp

    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
        "git_commit": commit,
        "pinning": f"proxy on CPU {PROXY_CPU}; backends and load generator on CPU {LOAD_CPU}"
        if pinned
        else "none (fewer than 2 CPUs or --no-pin)",
    }


def _interpreter(python: str) -> str:
    """The proxy's interpreter: version, and whether uvloop (which the proxy uses when present) is there."""
    probe = "import platform, importlib.util as u; print(platform.python_version(), bool(u.find_spec('uvloop')))"
    try:
        version, uvloop = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return python
    return f"{python} (Python {version}, {'uvloop' if uvloop == 'True' else 'asyncio event loop, no uvloop'})"


def json_costs(body: bytes, rounds: int) -> Dict[str, float]:
    """Microseconds for one json.loads and one json.dumps of ``body`` here (machine speed at run time)."""
    began = time.perf_counter()
    for _ in range(rounds):
        request = json.loads(body)
    loads = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(rounds):
        json.dumps(request)
    dumps = time.perf_counter() - began
    return {"bytes": len(body), "loads_us": round(1e6 * loads / rounds, 2), "dumps_us": round(1e6 * dumps / rounds, 2)}


def calibration_us(rounds: int = 20000) -> float:
    """Microseconds for one json.dumps + json.loads of the request body here (machine speed at run time)."""
    costs = json_costs(request_body(), rounds)
    return round(costs["loads_us"] + costs["dumps_us"], 2)


def proxy_source(src: Path) -> Tuple[str, str]:
    """The proxy's source directory and its commit (``-dirty`` with uncommitted changes there)."""
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(src)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True).stdout
        if commit and dirty.strip():
            commit += "-dirty"
    return str(src.resolve()), commit


def _loadavg() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass(frozen=True)
class Config:
    """One measured configuration: the load, the request body, and which paths it compares."""

    name: str
    streams: int
    requests: int
    warmup: int  # at least one request per stream, so every connection is open before measuring
    body: bytes
    paths: Tuple[str, ...] = ("direct", "pd", "proxy")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about two minutes: a quarter of the requests")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every request count by this")
    parser.add_argument("--rounds", type=int, default=4, help="direct/proxy alternations per configuration")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the proxy under cProfile (timings distorted, no multi-worker run); keep its top functions",
    )
    parser.add_argument(
        "--proxy-python",
        default=sys.executable,
        help="the interpreter that runs the proxy, e.g. one with uvloop as in the vLLM image (default: this one)",
    )
    parser.add_argument(
        "--proxy-src",
        type=Path,
        default=ROOT / "proxy",
        metavar="DIR",
        help="the directory holding the ascend_pd_proxy package to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--name", default="proxy_overhead", help="results file stem, e.g. proxy_overhead_after (default: %(default)s)"
    )
    parser.add_argument(
        "--replot", type=Path, metavar="JSON", help="measure nothing: print the table and redraw the SVG of a result"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="output directory (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.replot:
        replot(args.replot)
        return 0
    if not (args.proxy_src / "ascend_pd_proxy" / "__main__.py").is_file():
        parser.error(f"--proxy-src {args.proxy_src}: no ascend_pd_proxy package there")
    scale = args.scale * (0.25 if args.quick else 1.0)
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
    if pin:
        os.sched_setaffinity(0, {LOAD_CPU})

    def n(count: int) -> int:
        return max(20, int(count * scale))

    small = request_body()
    long_body = request_body(LONG_OUTPUT_TOKENS, ignore_eos=True)  # else the fake model ends after ~50
    large_body = request_body(OUTPUT_TOKENS, large_prompt())
    # decode s/token -> configurations; warm-up >= streams
    plan = {
        0.0: [
            Config("1 stream", 1, n(1000), n(100), small),
            Config(CEILING, 256, n(2000), n(256), small),
            # pd relays nothing more than direct here: direct is the reference for the events
            Config(LONG, 4, n(120), 8, long_body, ("direct", "proxy")),
            # ~1 s per PD request: the simulated backends tokenize 200k tokens each (CPU 0)
            Config(LARGE, 1, max(6, int(12 * scale)), 2, large_body),
        ],
        0.02: [
            Config("64 streams, 20 ms/token", 64, n(1500), n(128), small),
            Config("256 streams, 20 ms/token", 256, n(2000), n(256), small),
        ],
    }
    scaling = Config(SCALING, 64, n(1500), n(128), small, ("proxy", WORKERS_PATH))
    info = machine_info(pin)
    info["proxy_python"] = _interpreter(args.proxy_python)
    info["proxy_src"], info["proxy_commit"] = proxy_source(args.proxy_src)
    info["loadavg_start"] = _loadavg()
    info["calibration_us"] = calibration_us()
    info["large_body"] = json_costs(large_body, 20)
    print(f"# proxy overhead benchmark, {info['date']}", file=sys.stderr)
    print(
        f"# {info['cpu_model']}, {info['cores']} CPUs; {info['pinning']}; load {info['loadavg_start']}", file=sys.stderr
    )
    print(f"# proxy: {info['proxy_src']} at {info['proxy_commit'] or 'unknown commit'}", file=sys.stderr)
    runs: Dict[str, Dict[str, Summary]] = {}
    profiles: Dict[str, Dict[str, Any]] = {}
    args.results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp:
        work = Path(tmp)
        rejected = workers_support(work, args.proxy_python, args.proxy_src)
        # A proxy that knows the key gets workers: 1 spelled out, whatever its default: the
        # "proxy" path is the one-worker baseline, and cProfile then sees the serving process.
        one_worker = None if rejected else 1
        # cProfile sees one process (the workers' would be missing) and distorts the timings
        info["workers_skipped"] = "not run under --profile" if args.profile else rejected
        for decode_s, configs in plan.items():
            label = f"d{int(decode_s * 1000)}ms"
            profile = work / f"proxy_profile_{label}.prof" if args.profile else None  # summarised below
            with stack(work, decode_s, label, pin, profile, args.proxy_python, args.proxy_src, one_worker) as st:
                routes = {
                    "direct": Route(st.decode_url + CHAT),
                    "pd": Route(st.decode_url + CHAT, prefill_url=st.prefill_url + CHAT),
                    "proxy": Route(st.proxy_url + CHAT, proxy_pid=st.proxy_pid),
                }
                if decode_s == 0.0 and not info["workers_skipped"]:
                    # the same proxy code with workers, in front of the same backends, alternated with one worker
                    many, url = start_proxy(
                        work, f"{label}-workers", st.prefill_url, st.decode_url, st.procs, pin,
                        None, args.proxy_python, args.proxy_src, WORKERS,
                    )  # fmt: skip
                    routes[WORKERS_PATH] = Route(url + CHAT, proxy_pid=many.pid)
                    configs = [*configs, scaling]
                proxies = {r.proxy_pid for r in routes.values()}
                side = [p.pid for p in st.procs if p.pid not in proxies]
                for cfg in configs:
                    t0 = time.monotonic()
                    urls = {path: routes[path] for path in cfg.paths}
                    runs[cfg.name] = asyncio.run(
                        measure_paths(urls, cfg.streams, cfg.requests, cfg.warmup, args.rounds, side, cfg.body)
                    )
                    for path, s in runs[cfg.name].items():
                        print(
                            f"# {cfg.name} / {path}: {s.rps:.1f} req/s, TTFT p99 {s.ttft_p99_ms:.2f} ms, "
                            f"{s.errors} errors {s.error_reasons or ''}",
                            file=sys.stderr,
                        )
                    print(f"#   ({time.monotonic() - t0:.0f} s, load {_loadavg()[0]})", file=sys.stderr)
            if profile is not None:
                profiles[label] = profile_summary(profile)  # before the temporary directory goes
    info["loadavg_end"] = _loadavg()
    settings = {
        "output_tokens": OUTPUT_TOKENS,
        "long_output_tokens": LONG_OUTPUT_TOKENS,
        "large_prompt_tokens": LARGE_PROMPT_TOKENS,
        "workers": WORKERS,
        "quick": args.quick,
        "scale": scale,
        "profile": args.profile,
    }
    stem = f"{args.name}_profiled" if args.profile else args.name  # keep the real numbers
    publish(runs, info, settings, args.results / stem, profiles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
