"""``vllm bench serve`` against a simulated server: vLLM's summary and result file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from ascend_sim import state as st
from ascend_sim.vllm import cli
from ascend_sim.vllm.bench import arrival_delays, percentile

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
