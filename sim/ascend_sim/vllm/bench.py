"""``vllm bench serve`` (subset): drive an OpenAI-compatible server and report like vLLM.

Supported: ``--backend openai|vllm`` (``/v1/completions``) and ``openai-chat``
(``/v1/chat/completions``), ``--base-url`` or ``--host``/``--port`` + ``--endpoint``,
``--model`` (else the server's first model) and ``--served-model-name``,
``--dataset-name random`` with ``--random-input-len`` (alias ``--random-input``),
``--random-output-len``, ``--random-range-ratio``, ``--random-prefix-len``, ``--input-len``,
``--output-len``, ``--num-prompts``, ``--request-rate`` (``inf``), ``--burstiness``,
``--max-concurrency``, ``--seed``, ``--ignore-eos``, ``--percentile-metrics``,
``--metric-percentiles``, ``--goodput``, ``--save-result``, ``--save-detailed``,
``--append-result``, ``--result-dir``, ``--result-filename``, ``--label``, ``--metadata``,
``--header``, ``--extra-body``, ``--ready-check-timeout-sec``, sampling flags.

Random prompts are made of the simulator's one-token words, so a prompt of N tokens is N
tokens on the simulated server. Requests stream (``stream_options.include_usage``), and the
metrics, the printed summary and the result JSON follow vLLM's ``vllm/benchmarks/serve.py``:
the same keys (``completed``, ``total_input_tokens``, ``request_throughput``,
``mean_ttft_ms``, ``p99_itl_ms``, ``date``, ``num_prompts``, ``request_rate`` ...), the same
file name pattern ``{label}-{rate}qps[-concurrency{N}]-{model}-{YYYYmmdd-HHMMSS}.json``.

Speculative decoding, as vLLM does it: ``GET {base_url}/metrics`` before and after the run;
every sample whose name starts with ``vllm:spec_decode`` and ends with ``_total`` is summed by
name whatever its labels (per position for ``..._per_pos_total``), and the differences give
the ``spec_decode_*`` result keys (acceptance rate in percent, acceptance length, drafts,
draft and accepted tokens, per-position acceptance rates) and the printed section. No such
sample (no speculative decoding, or ``/metrics`` unreachable): no such keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from ascend_sim.sse import SSEParser
from ascend_sim.vllm import tokens

BACKENDS = {"openai": "completions", "vllm": "completions", "openai-chat": "chat"}


@dataclass
class Sample:
    prompt: str
    prompt_len: int
    output_len: int
    request_id: str


@dataclass
class SpecDecodeCounters:
    """vLLM's spec-decode counters, summed over every sample of the scraped text."""

    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_pos: dict[int, int] = field(default_factory=dict)


@dataclass
class Output:
    success: bool = False
    generated_text: str = ""
    output_tokens: int = 0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    latency: float = 0.0
    start_time: float = 0.0
    prompt_len: int = 0
    error: str = ""


# ---------------------------------------------------------------------------------------------
# Arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vllm bench serve", allow_abbrev=False)
    p.add_argument("--backend", default="openai", choices=sorted(BACKENDS))
    p.add_argument("--label", default=None)
    p.add_argument("--base-url", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--endpoint", default="/v1/completions")
    p.add_argument("--header", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--tokenizer-mode", default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--dataset-name", default="random")
    p.add_argument("--dataset-path", default=None)
    p.add_argument("--num-prompts", type=int, default=1000)
    p.add_argument("--input-len", type=int, default=None)
    p.add_argument("--output-len", type=int, default=None)
    p.add_argument("--random-input-len", "--random-input", dest="random_input_len", type=int, default=1024)
    p.add_argument("--random-output-len", type=int, default=128)
    p.add_argument("--random-range-ratio", type=float, default=0.0)
    p.add_argument("--random-prefix-len", type=int, default=0)
    p.add_argument("--request-rate", type=float, default=float("inf"))
    p.add_argument("--burstiness", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--disable-tqdm", action="store_true")
    p.add_argument("--num-warmups", type=int, default=0)
    p.add_argument("--logprobs", type=int, default=None)
    p.add_argument("--save-result", action="store_true")
    p.add_argument("--save-detailed", action="store_true")
    p.add_argument("--append-result", action="store_true")
    p.add_argument("--metadata", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--result-dir", default=None)
    p.add_argument("--result-filename", default=None)
    p.add_argument("--percentile-metrics", default=None)
    p.add_argument("--metric-percentiles", default="99")
    p.add_argument("--goodput", nargs="+", default=None)
    p.add_argument("--request-id-prefix", default=f"bench-{os.urandom(4).hex()}-")
    p.add_argument("--ready-check-timeout-sec", type=int, default=600)
    p.add_argument("--extra-body", type=json.loads, default=None)
    for name in (
        "--top-p",
        "--min-p",
        "--temperature",
        "--frequency-penalty",
        "--presence-penalty",
        "--repetition-penalty",
    ):
        p.add_argument(name, type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    return p


# ---------------------------------------------------------------------------------------------
# Dataset


def random_samples(args: argparse.Namespace) -> list[Sample]:
    """vLLM's ``random`` dataset, in the simulator's one-token words."""
    if args.dataset_name != "random":
        raise ValueError(
            f"the simulated `vllm bench serve` supports --dataset-name random only, not {args.dataset_name!r}"
        )
    rng = random.Random(args.seed)
    ratio = args.random_range_ratio
    if not 0 <= ratio < 1:
        raise ValueError("random_range_ratio must be in [0, 1).")
    prefix = "".join(" " + rng.choice(tokens.VOCAB) for _ in range(args.random_prefix_len))
    samples: list[Sample] = []
    for i in range(args.num_prompts):
        lo_in = max(1, math.floor(args.random_input_len * (1 - ratio)))
        hi_in = max(lo_in, math.ceil(args.random_input_len * (1 + ratio)))
        lo_out = max(1, math.floor(args.random_output_len * (1 - ratio)))
        hi_out = max(lo_out, math.ceil(args.random_output_len * (1 + ratio)))
        n_in = rng.randint(lo_in, hi_in) if ratio else args.random_input_len
        n_out = rng.randint(lo_out, hi_out) if ratio else args.random_output_len
        body = "".join(" " + rng.choice(tokens.VOCAB) for _ in range(n_in))
        prompt = prefix + body
        samples.append(Sample(prompt, args.random_prefix_len + n_in, n_out, f"{args.request_id_prefix}{i}"))
    return samples


def arrival_delays(n: int, rate: float, burstiness: float, rng: random.Random) -> list[float]:
    """Cumulative send times: all at once for ``inf``, else gamma intervals rescaled to n/rate."""
    if rate == float("inf"):
        return [0.0] * n
    delays: list[float] = []
    total = 0.0
    for _ in range(n):
        total += 1.0 / rate if burstiness == float("inf") else rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
        delays.append(total)
    if delays and delays[-1] > 0:
        scale = (n / rate) / delays[-1]
        delays = [d * scale for d in delays]
    return delays


# ---------------------------------------------------------------------------------------------
# Requests


async def send_request(
    session: aiohttp.ClientSession,
    url: str,
    kind: str,
    model: str,
    sample: Sample,
    args: argparse.Namespace,
    extra: dict[str, Any],
    headers: dict[str, str],
) -> Output:
    out = Output(prompt_len=sample.prompt_len)
    payload: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True}}
    if kind == "chat":
        payload["messages"] = [{"role": "user", "content": sample.prompt}]
        payload["max_completion_tokens"] = sample.output_len
    else:
        payload["prompt"] = sample.prompt
        payload["max_tokens"] = sample.output_len
        payload["repetition_penalty"] = 1.0
        if args.logprobs is not None:
            payload["logprobs"] = args.logprobs
    if args.ignore_eos:
        payload["ignore_eos"] = True
    payload.update(extra)
    req_headers = {"Content-Type": "application/json", "x-request-id": sample.request_id, **headers}
    if os.environ.get("OPENAI_API_KEY"):
        req_headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
    start = time.perf_counter()
    out.start_time = start
    recent = start
    try:
        async with session.post(url, json=payload, headers=req_headers) as resp:
            if resp.status != 200:
                out.error = resp.reason or ""
                return out
            parser = SSEParser()
            async for piece in resp.content.iter_any():
                for event in parser.feed(piece):
                    if event.data == "[DONE]":
                        continue
                    msg = json.loads(event.data)
                    if "error" in msg:
                        out.error = str(msg["error"].get("message", msg["error"]))
                        return out
                    now = time.perf_counter()
                    if msg.get("choices"):
                        choice = msg["choices"][0]
                        text = choice.get("text") if kind != "chat" else (choice.get("delta") or {}).get("content")
                        if out.ttft == 0.0:
                            out.ttft = now - start
                        else:
                            out.itl.append(now - recent)
                        out.generated_text += text or ""
                        recent = now
                    elif msg.get("usage"):
                        out.output_tokens = int(msg["usage"].get("completion_tokens") or 0)
            out.latency = recent - start
            out.success = out.ttft > 0 or bool(out.generated_text)
            if not out.success:
                out.error = "Never received a valid chunk to calculate TTFT. This response will be marked as failed!"
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return out


# ---------------------------------------------------------------------------------------------
# The server's speculative-decoding counters


def parse_spec_decode(text: str) -> SpecDecodeCounters | None:
    """The ``vllm:spec_decode*_total`` samples of a Prometheus text, summed; None without any."""
    counters = SpecDecodeCounters()
    found = False
    for raw in text.split("\n"):
        line = raw.strip()
        if not line.startswith("vllm:spec_decode"):
            continue
        parts = line.split(None, 1)
        name = parts[0].split("{")[0]
        if not name.endswith("_total"):
            continue
        found = True
        try:
            value = int(float(parts[-1].rsplit(None, 1)[-1]))
        except ValueError:
            continue
        if "num_drafts" in name:
            counters.num_drafts += value
        elif "num_draft_tokens" in name:
            counters.num_draft_tokens += value
        elif "num_accepted_tokens_per_pos" in name:
            marker = 'position="'
            if marker in line:
                start = line.index(marker) + len(marker)
                pos = int(line[start : line.index('"', start)])
                counters.accepted_per_pos[pos] = counters.accepted_per_pos.get(pos, 0) + value
        elif "num_accepted_tokens" in name:
            counters.num_accepted_tokens += value
    return counters if found else None


async def fetch_spec_decode(session: aiohttp.ClientSession, base_url: str) -> SpecDecodeCounters | None:
    try:
        async with session.get(f"{base_url}/metrics") as resp:
            if resp.status != 200:
                return None
            return parse_spec_decode(await resp.text())
    except (asyncio.TimeoutError, aiohttp.ClientError):
        return None


def spec_decode_stats(before: SpecDecodeCounters | None, after: SpecDecodeCounters | None) -> dict[str, Any] | None:
    """What the run did: the counters' differences, as vLLM reports them (None without drafts)."""
    if before is None or after is None:
        return None
    drafts = after.num_drafts - before.num_drafts
    draft_tokens = after.num_draft_tokens - before.num_draft_tokens
    accepted = after.num_accepted_tokens - before.num_accepted_tokens
    if draft_tokens <= 0:
        return None
    per_pos: list[float] = []
    if drafts > 0:
        for pos in sorted(set(before.accepted_per_pos) | set(after.accepted_per_pos)):
            was = before.accepted_per_pos.get(pos, 0)
            per_pos.append((after.accepted_per_pos.get(pos, was) - was) / drafts)
    return {
        "spec_decode_acceptance_rate": accepted / draft_tokens * 100,
        "spec_decode_acceptance_length": 1 + accepted / drafts if drafts > 0 else 0.0,
        "spec_decode_num_drafts": drafts,
        "spec_decode_draft_tokens": draft_tokens,
        "spec_decode_accepted_tokens": accepted,
        "spec_decode_per_position_acceptance_rates": per_pos,
    }


# ---------------------------------------------------------------------------------------------
# Metrics


def percentile(values: list[float], p: float) -> float:
    """numpy.percentile's default (linear interpolation)."""
    if not values:
        return 0.0
    data = sorted(values)
    rank = p / 100 * (len(data) - 1)
    lo = math.floor(rank)
    hi = math.ceil(rank)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


def _stats(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return 0.0, 0.0, 0.0
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return mean, percentile(values, 50), std


def compute_metrics(
    samples: list[Sample], outputs: list[Output], duration: float, percentiles: list[float], goodput: dict[str, float]
) -> dict[str, Any]:
    ttfts: list[float] = []
    tpots: list[float] = []
    all_tpots: list[float] = []
    itls: list[float] = []
    e2els: list[float] = []
    output_lens: list[int] = []
    total_input = 0
    completed = 0
    for sample, out in zip(samples, outputs):
        if not out.success:
            output_lens.append(0)
            continue
        n = out.output_tokens or tokens.count_tokens(out.generated_text)
        output_lens.append(n)
        total_input += sample.prompt_len
        tpot = 0.0
        if n > 1:
            tpot = (out.latency - out.ttft) / (n - 1)
            tpots.append(tpot)
        all_tpots.append(tpot)
        itls.extend(out.itl)
        ttfts.append(out.ttft)
        e2els.append(out.latency)
        completed += 1
    good = 0
    if goodput:
        for ttft, tpot, e2el in zip(ttfts, all_tpots, e2els):
            checks = {"ttft": ttft, "tpot": tpot, "e2el": e2el}
            if all(goodput[k] / 1000 >= checks[k] for k in goodput):
                good += 1
    peak_tokens, peak_conc = _peaks([o for o in outputs if o.success])
    total_output = sum(output_lens)
    m: dict[str, Any] = {
        "completed": completed,
        "failed": len(outputs) - completed,
        "total_input": total_input,
        "total_output": total_output,
        "request_throughput": completed / duration,
        "request_goodput": good / duration,
        "output_throughput": total_output / duration,
        "total_token_throughput": (total_input + total_output) / duration,
        "max_output_tokens_per_s": peak_tokens,
        "max_concurrent_requests": peak_conc,
        "output_lens": output_lens,
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        mean, median, std = _stats(values)
        m[f"mean_{name}_ms"] = mean * 1000
        m[f"median_{name}_ms"] = median * 1000
        m[f"std_{name}_ms"] = std * 1000
        m[f"percentiles_{name}_ms"] = [(p, percentile(values, p) * 1000) for p in percentiles]
    return m


def _peaks(outputs: list[Output]) -> tuple[float, int]:
    """Max output tokens in one second, and the requests active in that busiest second."""
    if not outputs:
        return 0.0, 0
    t0 = min(o.start_time for o in outputs)
    t1 = max(o.start_time + o.latency for o in outputs)
    buckets = math.ceil(t1 - t0) + 1
    tok = [0] * buckets
    conc = [0] * buckets
    for o in outputs:
        t = o.start_time + o.ttft
        times = [t]
        for gap in o.itl:
            t += gap
            times.append(t)
        for ts in times:
            b = int(ts - t0)
            if 0 <= b < buckets:
                tok[b] += 1
        for s in range(int(o.start_time - t0), int(o.start_time + o.latency - t0) + 1):
            if 0 <= s < buckets:
                conc[s] += 1
    return float(max(tok)), int(max(conc))


# ---------------------------------------------------------------------------------------------
# Run


async def _first_model(base_url: str, headers: dict[str, str]) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/v1/models", headers=headers) as resp:
        resp.raise_for_status()
        data = await resp.json()
        if data.get("data"):
            return str(data["data"][0]["id"])
        raise ValueError(
            f"No models found on the server at {base_url}. Make sure the server is running and has models loaded."
        )


async def _wait_ready(session: aiohttp.ClientSession, send: Any, sample: Sample, timeout: int) -> Output:
    print(f"Waiting for endpoint to become up in {timeout} seconds")
    deadline = time.perf_counter() + timeout
    out = Output()
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return out
        out = await send(sample)
        if out.success:
            return out
        await asyncio.sleep(min(5.0, max(0.0, deadline - time.perf_counter())))


def _print_row(label: str, value: Any, fmt: str = "") -> None:
    print(("{:<40} {:<10" + fmt + "}").format(label, value))


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    print(args)
    random.seed(args.seed)
    if args.input_len is not None:
        args.random_input_len = args.input_len
    if args.output_len is not None:
        args.random_output_len = args.output_len
    if args.dataset_name in ("random",):
        args.ignore_eos = True  # vLLM: random datasets run to the requested length
    kind = BACKENDS[args.backend]
    if kind == "chat" and not args.endpoint.endswith("chat/completions"):
        raise ValueError("OpenAI Chat Completions API URL must end with 'chat/completions'.")
    if kind == "completions" and not args.endpoint.endswith(("completions", "profile")):
        raise ValueError("OpenAI Completions API URL must end with 'completions' or 'profile'.")
    base = args.base_url if args.base_url is not None else f"http://{args.host}:{args.port}"
    url = f"{base}{args.endpoint}"
    headers: dict[str, str] = {}
    for item in args.header or []:
        if "=" not in item:
            raise ValueError("Invalid header format. Please use KEY=VALUE format.")
        key, value = item.split("=", 1)
        headers[key.strip()] = value.strip()
    if args.model is None:
        print("Model not specified, fetching first model from server...")
        model_id = await _first_model(base, headers)
        print(f"Using model: {model_id}")
    else:
        model_id = args.model
    request_model = args.served_model_name or model_id
    samples = random_samples(args)
    goodput: dict[str, float] = {}
    for pair in args.goodput or []:
        name, _, value = pair.partition(":")
        if name not in ("ttft", "tpot", "e2el"):
            raise ValueError(f"Invalid metric name found, {name}: {value}.")
        goodput[name] = float(value)
    extra = {
        k: v
        for k, v in {
            "top_p": args.top_p,
            "top_k": args.top_k,
            "min_p": args.min_p,
            "temperature": args.temperature,
            "frequency_penalty": args.frequency_penalty,
            "presence_penalty": args.presence_penalty,
            "repetition_penalty": args.repetition_penalty,
        }.items()
        if v is not None
    }
    extra.setdefault("temperature", 0.0)
    extra.update(args.extra_body or {})
    percentile_metrics = (args.percentile_metrics or "ttft,tpot,itl").split(",")
    percentiles = [float(p) for p in args.metric_percentiles.split(",")]

    limit = args.max_concurrency or 0
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=6 * 3600)) as session:

        async def send(sample: Sample) -> Output:
            return await send_request(session, url, kind, request_model, sample, args, extra, headers)

        print("Starting initial single prompt test run...")
        if args.ready_check_timeout_sec > 0:
            test = await _wait_ready(session, send, samples[0], args.ready_check_timeout_sec)
            if not test.success:
                raise ValueError(
                    "Initial test run failed - Please make sure benchmark arguments are correctly specified. "
                    f"Error: {test.error}"
                )
            print("Initial test run completed.")
        else:
            print("Skipping endpoint ready check.")
        if args.num_warmups > 0:
            print(f"Warming up with {args.num_warmups} requests...")
            await asyncio.gather(*(send(samples[0]) for _ in range(args.num_warmups)))
            print("Warmup run completed.")
        print("Starting main benchmark run...")
        print(f"Traffic request rate: {args.request_rate}")
        distribution = "Poisson process" if args.burstiness == 1.0 else "Gamma distribution"
        print(f"Burstiness factor: {args.burstiness} ({distribution})")
        print(f"Maximum request concurrency: {args.max_concurrency}")
        gate: asyncio.Semaphore | None = asyncio.Semaphore(args.max_concurrency) if args.max_concurrency else None

        async def limited(sample: Sample) -> Output:
            if gate is None:
                return await send(sample)
            async with gate:
                return await send(sample)

        spec_before = await fetch_spec_decode(session, base)
        delays = arrival_delays(len(samples), args.request_rate, args.burstiness, random.Random(args.seed))
        start = time.perf_counter()
        tasks = []
        for sample, delay in zip(samples, delays):
            wait = start + delay - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.ensure_future(limited(sample)))
        outputs = await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
        spec = spec_decode_stats(spec_before, await fetch_spec_decode(session, base))

    m = compute_metrics(samples, outputs, duration, percentiles, goodput)
    print("{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="))
    _print_row("Successful requests:", m["completed"])
    _print_row("Failed requests:", m["failed"])
    if args.max_concurrency is not None:
        _print_row("Maximum request concurrency:", args.max_concurrency)
    if args.request_rate != float("inf"):
        _print_row("Request rate configured (RPS):", args.request_rate, ".2f")
    _print_row("Benchmark duration (s):", duration, ".2f")
    _print_row("Total input tokens:", m["total_input"])
    _print_row("Total generated tokens:", m["total_output"])
    _print_row("Request throughput (req/s):", m["request_throughput"], ".2f")
    if goodput:
        _print_row("Request goodput (req/s):", m["request_goodput"], ".2f")
    _print_row("Output token throughput (tok/s):", m["output_throughput"], ".2f")
    _print_row("Peak output token throughput (tok/s):", m["max_output_tokens_per_s"], ".2f")
    _print_row("Peak concurrent requests:", m["max_concurrent_requests"], ".2f")
    _print_row("Total token throughput (tok/s):", m["total_token_throughput"], ".2f")
    result: dict[str, Any] = {
        "duration": duration,
        "completed": m["completed"],
        "failed": m["failed"],
        "total_input_tokens": m["total_input"],
        "total_output_tokens": m["total_output"],
        "request_throughput": m["request_throughput"],
        "request_goodput": m["request_goodput"] if goodput else None,
        "output_throughput": m["output_throughput"],
        "total_token_throughput": m["total_token_throughput"],
        "input_lens": [o.prompt_len for o in outputs],
        "output_lens": m["output_lens"],
        "ttfts": [o.ttft for o in outputs],
        "itls": [o.itl for o in outputs],
        "latencies": [o.latency for o in outputs],
        "start_times": [o.start_time for o in outputs],
        "generated_texts": [o.generated_text for o in outputs],
        "errors": [o.error for o in outputs],
        "max_output_tokens_per_s": m["max_output_tokens_per_s"],
        "max_concurrent_requests": m["max_concurrent_requests"],
    }
    result.update(spec or {})
    headers_of = {
        "ttft": "Time to First Token",
        "tpot": "Time per Output Token (excl. 1st token)",
        "itl": "Inter-token Latency",
        "e2el": "End-to-end Latency",
    }
    for name in ("ttft", "tpot", "itl", "e2el"):
        if name not in percentile_metrics:
            continue
        upper = name.upper()
        print("{s:{c}^{n}}".format(s=headers_of[name], n=50, c="-"))
        _print_row(f"Mean {upper} (ms):", m[f"mean_{name}_ms"], ".2f")
        _print_row(f"Median {upper} (ms):", m[f"median_{name}_ms"], ".2f")
        for key in ("mean", "median", "std"):
            result[f"{key}_{name}_ms"] = m[f"{key}_{name}_ms"]
        for p, value in m[f"percentiles_{name}_ms"]:
            word = str(int(p)) if int(p) == p else str(p)
            _print_row(f"P{word} {upper} (ms):", value, ".2f")
            result[f"p{word}_{name}_ms"] = value
    if spec is not None:
        print("{s:{c}^{n}}".format(s="Speculative Decoding", n=50, c="-"))
        _print_row("Acceptance rate (%):", spec["spec_decode_acceptance_rate"], ".2f")
        _print_row("Acceptance length:", spec["spec_decode_acceptance_length"], ".2f")
        _print_row("Drafts:", spec["spec_decode_num_drafts"])
        _print_row("Draft tokens:", spec["spec_decode_draft_tokens"])
        _print_row("Accepted tokens:", spec["spec_decode_accepted_tokens"])
        if spec["spec_decode_per_position_acceptance_rates"]:
            print("Per-position acceptance (%):")
            for pos, rate in enumerate(spec["spec_decode_per_position_acceptance_rates"]):
                _print_row(f"  Position {pos}:", rate * 100, ".2f")
    print("=" * 50)

    now = datetime.now().strftime("%Y%m%d-%H%M%S")
    result_json: dict[str, Any] = {
        "date": now,
        "endpoint_type": args.backend,
        "backend": args.backend,
        "label": args.label,
        "model_id": model_id,
        "tokenizer_id": args.tokenizer or model_id,
        "num_prompts": args.num_prompts,
    }
    for item in args.metadata or []:
        if "=" not in item:
            raise ValueError("Invalid metadata format. Please use KEY=VALUE format.")
        key, value = item.split("=", 1)
        result_json[key.strip()] = value.strip()
    result_json["request_rate"] = args.request_rate if args.request_rate < float("inf") else "inf"
    result_json["burstiness"] = args.burstiness
    result_json["max_concurrency"] = args.max_concurrency
    result_json.update(result)
    if not args.save_detailed:
        for key in ("input_lens", "output_lens", "start_times", "ttfts", "itls", "generated_texts", "errors"):
            result_json.pop(key, None)
    if args.save_result or args.append_result:
        label = args.label or args.backend
        conc = f"-concurrency{args.max_concurrency}" if args.max_concurrency is not None else ""
        file_name = args.result_filename or f"{label}-{args.request_rate}qps{conc}-{model_id.split('/')[-1]}-{now}.json"
        if args.result_dir:
            os.makedirs(args.result_dir, exist_ok=True)
            file_name = os.path.join(args.result_dir, file_name)
        with open(file_name, "a+" if args.append_result else "w", encoding="utf-8") as fh:
            if args.append_result and fh.tell() != 0:
                fh.write("\n")
            json.dump(result_json, fh)
    return result_json


def run_bench(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(bench(args))
    except (ValueError, RuntimeError, aiohttp.ClientError, OSError) as exc:
        sys.stdout.flush()
        sys.stderr.write("Traceback (most recent call last):\n  (simulated vllm bench serve)\n")
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0
