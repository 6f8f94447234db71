# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The instances' speculative-decoding counters on the proxy's /metrics (ascend_pd_proxy.relay).

``vllm bench serve`` pointed at the proxy must find vLLM's counters there, summed over the
instances the way it sums them; Prometheus, scraping with ``?relay=false``, must not see them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

from ascend_pd_proxy.relay import spec_decode_samples
from tests.unit.proxy.fakes import async_test, running
from tests.unit.proxy.test_metrics import parse_exposition

SIM = Path(__file__).resolve().parents[3] / "sim"
if str(SIM) not in sys.path:
    sys.path.insert(0, str(SIM))

from ascend_sim.vllm.bench import parse_spec_decode  # noqa: E402  (the simulated `vllm bench serve`)

MODEL = "MiniMax-M2.7"


def vllm_metrics(drafts: int, draft_tokens: int, accepted: int, per_pos: List[int]) -> str:
    """A decode rank's /metrics as vLLM (prometheus_client) writes it, spec-decode families included."""
    labels = f'engine="0",model_name="{MODEL}"'
    lines = [
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{labels}}} 0.0",
        "# HELP vllm:generation_tokens Number of generation tokens processed.",
        "# TYPE vllm:generation_tokens counter",
        f"vllm:generation_tokens_total{{{labels}}} 4242.0",
    ]
    for name, value in (("num_drafts", drafts), ("num_draft_tokens", draft_tokens), ("num_accepted_tokens", accepted)):
        lines += [
            f"# HELP vllm:spec_decode_{name} Number of {name}.",
            f"# TYPE vllm:spec_decode_{name} counter",
            f"vllm:spec_decode_{name}_total{{{labels}}} {float(value)}",
            f"vllm:spec_decode_{name}_created{{{labels}}} 1.7649123456e+09",
        ]
    lines += ["# TYPE vllm:spec_decode_num_accepted_tokens_per_pos counter"]
    lines += [
        f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{{labels},position="{pos}"}} {float(n)}'
        for pos, n in enumerate(per_pos)
    ]
    return "\n".join(lines) + "\n"


def test_only_the_spec_decode_totals_are_taken_with_their_labels() -> None:
    text = vllm_metrics(10, 30, 21, [9, 7, 5]) + 'vllm:spec_decode_num_drafts_total{model_name="a\\"b"} 2 1700000000\n'
    samples = spec_decode_samples(text)
    assert [name for name, _, _ in samples] == [
        "vllm:spec_decode_num_drafts_total",
        "vllm:spec_decode_num_draft_tokens_total",
        "vllm:spec_decode_num_accepted_tokens_total",
        "vllm:spec_decode_num_accepted_tokens_per_pos_total",
        "vllm:spec_decode_num_accepted_tokens_per_pos_total",
        "vllm:spec_decode_num_accepted_tokens_per_pos_total",
        "vllm:spec_decode_num_drafts_total",
    ]
    assert samples[0] == ("vllm:spec_decode_num_drafts_total", (("engine", "0"), ("model_name", MODEL)), 10.0)
    assert samples[5][1][-1] == ("position", "2")
    assert samples[-1] == ("vllm:spec_decode_num_drafts_total", (("model_name", 'a"b'),), 2.0)  # a timestamp too
    assert spec_decode_samples("vllm:spec_decode_num_drafts_total{broken 1\n") == []


def relayed(text: str) -> Dict[tuple, float]:
    _, samples = parse_exposition(text)
    return {
        (name, labels.get("backend"), labels.get("position")): value
        for name, labels, value in samples
        if name.startswith("vllm:")
    }


@async_test
async def test_the_proxy_relays_every_instances_counters_and_the_bench_sums_them() -> None:
    async with running(prefills=1, decodes=2) as s:
        s.prefill[0].metrics_text = vllm_metrics(0, 0, 0, [0])  # a prefill answers one token: no draft verified
        s.decode[0].metrics_text = vllm_metrics(100, 300, 180, [80, 60, 40])
        s.decode[1].metrics_text = vllm_metrics(50, 150, 30, [20, 8, 2])
        text = (await s.get("/metrics")).body.decode()
        own_only = (await s.get("/metrics?relay=false")).body.decode()

    series = relayed(text)
    assert series[("vllm:spec_decode_num_drafts_total", "d0", None)] == 100
    assert series[("vllm:spec_decode_num_drafts_total", "d1", None)] == 50
    assert series[("vllm:spec_decode_num_drafts_total", "p0", None)] == 0
    assert series[("vllm:spec_decode_num_accepted_tokens_per_pos_total", "d1", "2")] == 2
    assert 'phase="decode"' in text and 'model_name="MiniMax-M2.7"' in text
    assert "vllm:generation_tokens_total" not in text  # only what the benchmark needs is relayed
    assert "_created" not in text
    assert 'pd_proxy_backend_metrics_up{backend="d1",phase="decode"} 1' in text

    # What `vllm bench serve` computes from the proxy's /metrics (the simulator's client reads it
    # exactly as vLLM's does): the sums over the instances.
    counters = parse_spec_decode(text)
    assert counters is not None
    assert (counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens) == (150, 450, 210)
    assert counters.accepted_per_pos == {0: 100, 1: 68, 2: 42}

    # Prometheus scrapes the instances themselves: with ?relay=false nothing is counted twice.
    assert parse_spec_decode(own_only) is None
    assert "pd_proxy_backend_metrics_up" not in own_only and "pd_proxy_requests_total" in own_only


@async_test
async def test_an_instance_that_stops_answering_keeps_its_last_values() -> None:
    async with running(prefills=1, decodes=2) as s:
        for fake, drafts in ((s.decode[0], 100), (s.decode[1], 50)):
            fake.metrics_text = vllm_metrics(drafts, 3 * drafts, drafts, [drafts, 0, 0])
        first = parse_spec_decode((await s.get("/metrics")).body.decode())
        await s.decode[1].stop()
        s.decode[0].metrics_text = vllm_metrics(110, 330, 111, [110, 1, 0])
        text = (await s.get("/metrics")).body.decode()

    assert first is not None and first.num_drafts == 150
    after = parse_spec_decode(text)
    assert after is not None and after.num_drafts == 160  # d1's 50 still counted: no drop mid-benchmark
    assert 'pd_proxy_backend_metrics_up{backend="d1",phase="decode"} 0' in text
    assert 'pd_proxy_backend_metrics_up{backend="d0",phase="decode"} 1' in text


@async_test
async def test_instances_without_speculative_decoding_relay_nothing() -> None:
    async with running(prefills=1, decodes=1) as s:
        s.decode[0].metrics_text = 'vllm:num_requests_running{engine="0",model_name="m"} 0.0\n'
        text = (await s.get("/metrics")).body.decode()
    assert parse_spec_decode(text) is None
    parse_exposition(text)  # still one valid exposition
