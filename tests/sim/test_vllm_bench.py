"""``vllm bench serve`` against a simulated server: vLLM's summary and result file."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from ascend_sim import state as st
from ascend_sim.vllm import cli
from ascend_sim.vllm.bench import (
    SpecDecodeCounters,
    arrival_delays,
    parse_spec_decode,
    percentile,
    spec_decode_stats,
)

from .vllm_helpers import MODEL_NAME, InProcessServer, make_model, sim_environ

RESULT_KEYS = {
    "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts", "request_rate",
    "burstiness", "max_concurrency", "duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
    "request_throughput", "request_goodput", "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
    "max_concurrent_requests",
    "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms",
    "mean_tpot_ms", "median_tpot_ms", "std_tpot_ms", "p99_tpot_ms",
    "mean_itl_ms", "median_itl_ms", "std_itl_ms", "p99_itl_ms",
}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    root = tmp_path_factory.mktemp("vllm-bench")
    st.init_state("a2", directory=root / "state")
    with sim_environ(VLLM_SIM_LOAD_SECONDS="0"):
        srv = InProcessServer(
            make_model(root), ["--served-model-name", MODEL_NAME], chips=[0], state_dir=root / "state"
        )
        try:
            yield srv
        finally:
            srv.stop()


def bench(server: InProcessServer, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``vllm bench serve`` in this process; returns (exit code, stdout + stderr)."""
    rc = cli.main(["bench", "serve", "--host", "127.0.0.1", "--port", str(server.port), *args])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_bench_serve_prints_and_saves_vllm_results(
    server: InProcessServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = bench(
        server, capsys,
        "--model", "/weights/MiniMax-M2.7-w8a8-QuaRot", "--served-model-name", MODEL_NAME,
        "--dataset-name", "random", "--random-input", "64", "--random-output-len", "8", "--num-prompts", "12",
        "--request-rate", "inf", "--max-concurrency", "4", "--save-result", "--result-dir", str(tmp_path / "res"),
    )  # fmt: skip
    assert rc == 0, out
    assert "============ Serving Benchmark Result ============" in out
    assert "Successful requests:                     12" in out
    for label in ("Benchmark duration (s):", "Request throughput (req/s):", "Mean TTFT (ms):", "P99 ITL (ms):"):
        assert label in out
    (result_file,) = (tmp_path / "res").iterdir()
    assert result_file.name.startswith("openai-infqps-concurrency4-MiniMax-M2.7-w8a8-QuaRot-")
    result = json.loads(result_file.read_text())
    assert set(result) >= RESULT_KEYS
    assert result["completed"] == 12 and result["failed"] == 0
    assert result["total_input_tokens"] == 12 * 64  # prompts are 64 tokens on the simulated server
    assert result["total_output_tokens"] == 12 * 8  # random datasets ignore EOS
    assert result["request_rate"] == "inf" and result["max_concurrency"] == 4 and result["num_prompts"] == 12
    assert "ttfts" not in result  # per-request data only with --save-detailed


def test_bench_chat_backend_and_result_filename(
    server: InProcessServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = bench(
        server, capsys, "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
        "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", "4", "--num-prompts", "3",
        "--request-rate", "50", "--save-result", "--result-dir", str(tmp_path), "--result-filename", "chat.json",
    )  # fmt: skip
    assert rc == 0, out
    assert "Using model: MiniMax-M2.7" in out  # no --model: the server's first model
    result = json.loads((tmp_path / "chat.json").read_text())
    assert result["backend"] == "openai-chat" and result["request_rate"] == 50.0
    assert result["completed"] == 3 and result["total_output_tokens"] == 12


def test_bench_with_a_model_name_the_server_does_not_serve(
    server: InProcessServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The guide's ``--model /path`` against ``--served-model-name MiniMax-M2.7``: 404, as for real."""
    rc, out = bench(
        server,
        capsys,
        "--model",
        "/weights/MiniMax-M2.7-w8a8-QuaRot",
        "--num-prompts",
        "2",
        "--ready-check-timeout-sec",
        "1",
    )
    assert rc == 1
    assert (
        "Initial test run failed - Please make sure benchmark arguments are correctly specified. Error: Not Found"
        in out
    )


def test_percentile_and_arrivals() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == pytest.approx(3.97)
    import random

    delays = arrival_delays(10, 5.0, 1.0, random.Random(0))
    assert delays == sorted(delays) and delays[-1] == pytest.approx(2.0)  # n / rate
    assert arrival_delays(3, float("inf"), 1.0, random.Random(0)) == [0.0, 0.0, 0.0]


# --- speculative decoding: vLLM's counters on /metrics, and the bench's reading of them -------

# A vLLM /metrics excerpt (prometheus_client: a family's HELP/TYPE without "_total", and a
# "_created" sample per counter), as two DP ranks relayed by the PD proxy add labels to it.
SPEC_DECODE_TEXT = """\
# HELP vllm:spec_decode_num_drafts Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="MiniMax-M2.7",backend="n2/dp0",phase="decode"} 100.0
vllm:spec_decode_num_drafts_created{engine="0",model_name="MiniMax-M2.7"} 1.7649e+09
vllm:spec_decode_num_drafts_total{engine="0",model_name="MiniMax-M2.7",backend="n2/dp1",phase="decode"} 50.0
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="MiniMax-M2.7",backend="n2/dp0"} 300.0
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="MiniMax-M2.7",backend="n2/dp1"} 150.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="MiniMax-M2.7"} 210.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="MiniMax-M2.7",position="0"} 105.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="MiniMax-M2.7",position="1"} 70.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="MiniMax-M2.7",position="0"} 15.0
vllm:num_requests_running{engine="0",model_name="MiniMax-M2.7"} 0.0
"""


def test_spec_decode_samples_are_summed_by_name_whatever_their_labels() -> None:
    counters = parse_spec_decode(SPEC_DECODE_TEXT)
    assert counters is not None
    assert (counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens) == (150, 450, 210)
    assert counters.accepted_per_pos == {0: 120, 1: 70}  # "_created" timestamps are never summed
    assert parse_spec_decode('vllm:num_requests_running{engine="0"} 0.0\n') is None


def test_spec_decode_stats_are_the_runs_differences() -> None:
    before = SpecDecodeCounters(10, 30, 15, {0: 8, 1: 5, 2: 2})
    after = SpecDecodeCounters(110, 330, 225, {0: 88, 1: 65, 2: 42})
    stats = spec_decode_stats(before, after)
    assert stats == {
        "spec_decode_acceptance_rate": pytest.approx(70.0),
        "spec_decode_acceptance_length": pytest.approx(3.1),
        "spec_decode_num_drafts": 100,
        "spec_decode_draft_tokens": 300,
        "spec_decode_accepted_tokens": 210,
        "spec_decode_per_position_acceptance_rates": [pytest.approx(0.8), pytest.approx(0.6), pytest.approx(0.4)],
    }
    assert spec_decode_stats(before, before) is None  # no draft during the run
    assert spec_decode_stats(None, after) is None


@pytest.fixture(scope="module")
def spec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    root = tmp_path_factory.mktemp("vllm-bench-spec")
    st.init_state("a2", directory=root / "state")
    with sim_environ(VLLM_SIM_LOAD_SECONDS="0", VLLM_SIM_DECODE_S_PER_TOKEN="0.001"):
        srv = InProcessServer(
            make_model(root),
            ["--served-model-name", MODEL_NAME, "--speculative-config", '{"num_speculative_tokens": 3}'],
            chips=[0],
            state_dir=root / "state",
        )
        try:
            yield srv
        finally:
            srv.stop()


def test_a_speculative_server_exposes_vllms_counters(spec_server: InProcessServer) -> None:
    with urllib.request.urlopen(f"{spec_server.url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert "# TYPE vllm:spec_decode_num_drafts counter" in text
    for name in ("num_drafts", "num_draft_tokens", "num_accepted_tokens"):
        assert f'vllm:spec_decode_{name}_total{{engine="0",model_name="{MODEL_NAME}"}} ' in text
    positions = [line for line in text.splitlines() if line.startswith("vllm:spec_decode_num_accepted_tokens_per_pos")]
    assert [p.split('position="')[1].split('"')[0] for p in positions] == ["0", "1", "2"]


def test_bench_reports_the_acceptance_it_measured(
    spec_server: InProcessServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = bench(
        spec_server, capsys, "--random-input-len", "16", "--random-output-len", "40", "--num-prompts", "6",
        "--save-result", "--result-dir", str(tmp_path), "--result-filename", "spec.json",
    )  # fmt: skip
    assert rc == 0, out
    assert "-------------Speculative Decoding---------------" in out and "Acceptance rate (%):" in out
    result = json.loads((tmp_path / "spec.json").read_text())
    # Each decode step verifies 3 drafts; the steps of 7 requests (the ready check's one too, as
    # vLLM counts it before its scrape) emit 39 tokens after the first.
    drafts, accepted = result["spec_decode_num_drafts"], result["spec_decode_accepted_tokens"]
    assert result["spec_decode_draft_tokens"] == 3 * drafts
    assert 0 < drafts <= 6 * 39
    assert result["spec_decode_acceptance_rate"] == pytest.approx(100 * accepted / (3 * drafts))
    assert result["spec_decode_acceptance_length"] == pytest.approx(1 + accepted / drafts)
    rates = result["spec_decode_per_position_acceptance_rates"]
    assert len(rates) == 3 and rates == sorted(rates, reverse=True)  # a later position needs the earlier ones


def test_bench_without_speculative_decoding_reports_no_acceptance(
    server: InProcessServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = bench(server, capsys, "--num-prompts", "2", "--random-output-len", "4", "--save-result",
                    "--result-dir", str(tmp_path), "--result-filename", "plain.json")  # fmt: skip
    assert rc == 0, out
    assert "Speculative Decoding" not in out
    assert not [k for k in json.loads((tmp_path / "plain.json").read_text()) if k.startswith("spec_decode")]
