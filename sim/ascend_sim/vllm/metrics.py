"""Prometheus ``/metrics`` with vLLM's metric names (``vllm:`` prefix, ``model_name`` label).

A subset of what vLLM exports, enough for dashboards and the collection's checks:
running/waiting requests, prompt/generation token counters, finished requests by reason,
KV cache usage, the TTFT, inter-token and end-to-end latency histograms, and with
``--speculative-config`` vLLM's speculative-decoding counters (drafts, draft tokens, accepted
tokens, accepted tokens per draft position), which ``vllm bench serve`` reads. Names, types,
help texts and buckets are those of vLLM's ``PrometheusStatLogger``
(vllm/v1/metrics/loggers.py). Every series carries ``model_name`` (the first
``--served-model-name``) and ``engine``: the index of the engine core the API server manages,
which for external data parallelism (``--data-parallel-rank R``, one ``vllm serve`` per rank)
is ``R``. Labels are printed sorted by name, as prometheus_client prints them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
    1920.0, 7680.0,
)  # fmt: skip


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.n += 1

    def render(self, name: str, labels: dict[str, str]) -> list[str]:
        lines: list[str] = []
        running = 0
        for bound, count in zip(self.buckets, self.counts):
            running += count
            lines.append(f"{name}_bucket{label_text(labels, le=str(bound))} {float(running)}")
        lines.append(f"{name}_bucket{label_text(labels, le='+Inf')} {float(self.n)}")
        lines.append(f"{name}_count{label_text(labels)} {float(self.n)}")
        lines.append(f"{name}_sum{label_text(labels)} {self.total}")
        return lines


def label_text(labels: dict[str, str], **more: str) -> str:
    """``{a="1",b="2"}``, sorted by label name as prometheus_client's exposition sorts them."""
    merged = {**labels, **more}
    return "{" + ",".join(f'{key}="{merged[key]}"' for key in sorted(merged)) + "}"


class Metrics:
    """Counters of one server process, labelled with its engine index (``engine``)."""

    def __init__(self, model_name: str, num_speculative_tokens: int = 0, engine: int = 0) -> None:
        self.model_name = model_name
        self.engine = engine
        # vLLM registers the spec-decode counters only when speculative decoding is configured.
        self.num_speculative_tokens = num_speculative_tokens
        self.spec_drafts = 0
        self.spec_draft_tokens = 0
        self.spec_accepted = 0
        self.spec_accepted_per_pos = [0] * num_speculative_tokens
        self.running = 0
        self.waiting = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success: dict[str, int] = {"stop": 0, "length": 0, "abort": 0, "error": 0}
        self.kv_cache_usage = 0.0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)
        self.prefix_queries = 0
        self.prefix_hits = 0

    def observe_draft(self, accepted: int) -> None:
        """One verification of ``num_speculative_tokens`` draft tokens, the first ``accepted`` kept."""
        self.spec_drafts += 1
        self.spec_draft_tokens += self.num_speculative_tokens
        self.spec_accepted += accepted
        for pos in range(accepted):
            self.spec_accepted_per_pos[pos] += 1

    def render(self) -> str:
        labels = {"engine": str(self.engine), "model_name": self.model_name}
        plain = label_text(labels)
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, lines: list[str]) -> None:
            # prometheus_client names a counter family without its "_total" sample suffix
            family = name.removesuffix("_total") if kind == "counter" else name
            out.append(f"# HELP {family} {help_text}")
            out.append(f"# TYPE {family} {kind}")
            out.extend(lines)

        metric(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            [f"vllm:num_requests_running{plain} {float(self.running)}"],
        )
        metric(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            [f"vllm:num_requests_waiting{plain} {float(self.waiting)}"],
        )
        metric(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            [f"vllm:kv_cache_usage_perc{plain} {self.kv_cache_usage}"],
        )
        metric(
            "vllm:prefix_cache_queries_total",
            "counter",
            "Prefix cache queries, in terms of number of queried tokens.",
            [f"vllm:prefix_cache_queries_total{plain} {float(self.prefix_queries)}"],
        )
        metric(
            "vllm:prefix_cache_hits_total",
            "counter",
            "Prefix cache hits, in terms of number of cached tokens.",
            [f"vllm:prefix_cache_hits_total{plain} {float(self.prefix_hits)}"],
        )
        metric(
            "vllm:prompt_tokens_total",
            "counter",
            "Number of prefill tokens processed.",
            [f"vllm:prompt_tokens_total{plain} {float(self.prompt_tokens)}"],
        )
        metric(
            "vllm:generation_tokens_total",
            "counter",
            "Number of generation tokens processed.",
            [f"vllm:generation_tokens_total{plain} {float(self.generation_tokens)}"],
        )
        metric(
            "vllm:request_success_total",
            "counter",
            "Count of successfully processed requests.",
            [
                f"vllm:request_success_total{label_text(labels, finished_reason=r)} {float(n)}"
                for r, n in self.success.items()
            ],
        )
        metric(
            "vllm:time_to_first_token_seconds",
            "histogram",
            "Histogram of time to first token in seconds.",
            self.ttft.render("vllm:time_to_first_token_seconds", labels),
        )
        metric(
            "vllm:inter_token_latency_seconds",
            "histogram",
            "Histogram of inter-token latency in seconds.",
            self.itl.render("vllm:inter_token_latency_seconds", labels),
        )
        metric(
            "vllm:e2e_request_latency_seconds",
            "histogram",
            "Histogram of e2e request latency in seconds.",
            self.e2e.render("vllm:e2e_request_latency_seconds", labels),
        )
        if self.num_speculative_tokens:
            for name, help_text, value in (
                ("vllm:spec_decode_num_drafts_total", "Number of spec decoding drafts.", self.spec_drafts),
                ("vllm:spec_decode_num_draft_tokens_total", "Number of draft tokens.", self.spec_draft_tokens),
                ("vllm:spec_decode_num_accepted_tokens_total", "Number of accepted tokens.", self.spec_accepted),
            ):
                metric(name, "counter", help_text, [f"{name}{plain} {float(value)}"])
            name = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
            per_pos = [
                f"{name}{label_text(labels, position=str(pos))} {float(n)}"
                for pos, n in enumerate(self.spec_accepted_per_pos)
            ]
            metric(name, "counter", "Accepted tokens per draft position.", per_pos)
        return "\n".join(out) + "\n"
