"""playbooks/benchmark.yml against the shared 1P2D deployment: vllm bench serve through the proxy.

The client runs in a container of the deployment's image on the proxy host (node4); its result
is fetched to the controller; through the proxy, its own reading of /metrics must find the
decode instances' speculative-decoding counters; the report (Markdown, PNG) is written; and a
baseline the run cannot meet fails naming the regressed metrics.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from tests.integration.day2.conftest import Day2, explain
from tests.sim_cluster import node

pytestmark = pytest.mark.docker

PROMPTS = 12
INPUT_LEN = 200  # the guide's
OUTPUT_LEN = 32
LABEL = "ci"


def decode_ranks(day2: Day2) -> List[Tuple[str, int]]:
    return [(s["host"], s["port"]) for h in day2.plan["hosts"].values() for s in h["servers"] if s["role"] == "decode"]


def drafts_on_the_instances(day2: Day2) -> int:
    """vllm:spec_decode_num_drafts_total summed over the decode ranks, read on their hosts."""
    total = 0
    for host, port in decode_ranks(day2):
        text = node(host, "curl", "-fsS", f"http://127.0.0.1:{port}/metrics").stdout
        lines = [line for line in text.splitlines() if line.startswith("vllm:spec_decode_num_drafts_total")]
        total += sum(int(float(line.split()[-1])) for line in lines)
    return total


def run_benchmark(day2: Day2, results_root: Path, *extra: str) -> Any:
    return day2.playbook(
        "playbooks/benchmark.yml",
        "-e", f"benchmark_results_root={results_root}",
        "-e", f"benchmark_num_prompts={PROMPTS}",
        "-e", f"benchmark_output_len={OUTPUT_LEN}",
        "-e", "benchmark_request_rate=inf",
        "-e", "benchmark_max_concurrency=4",
        "-e", f"benchmark_label={LABEL}",
        *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def first_run(day2: Day2, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    root = tmp_path_factory.mktemp("benchmark-results")
    before = drafts_on_the_instances(day2)
    done = run_benchmark(day2, root)
    assert done.returncode == 0, explain(done)
    yield {"root": root, "stdout": done.stdout, "drafts": drafts_on_the_instances(day2) - before}


def test_the_result_is_fetched_into_a_folder_named_by_time_and_scenario(day2: Day2, first_run: Dict[str, Any]) -> None:
    (run,) = first_run["root"].iterdir()
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}Z-{day2.plan['scenario']}-{LABEL}", run.name), run.name
    proxy = day2.plan["hosts"][day2.node(4)]["proxy"]
    result = json.loads((run / f"{day2.node(4)}-{proxy['port']}.json").read_text())
    assert result["completed"] == PROMPTS and result["failed"] == 0
    assert result["total_input_tokens"] == PROMPTS * INPUT_LEN
    assert result["total_output_tokens"] == PROMPTS * OUTPUT_LEN
    assert result["model_id"] == day2.plan["served_model_name"] and result["label"] == LABEL
    assert result["max_concurrency"] == 4 and result["request_rate"] == "inf"
    assert "Serving Benchmark Result" in first_run["stdout"]  # the client's summary, shown


def test_spec_decode_counters_are_found_through_the_proxy(day2: Day2, first_run: Dict[str, Any]) -> None:
    (run,) = first_run["root"].iterdir()
    (result_file,) = run.glob("*.json")
    result = json.loads(result_file.read_text())
    drafts = result["spec_decode_num_drafts"]
    assert drafts > 0, result
    # The decode recipe's speculative tokens per draft.
    decode_argv = next(s["argv"] for h in day2.plan["hosts"].values() for s in h["servers"] if s["role"] == "decode")
    spec = json.loads(decode_argv[decode_argv.index("--speculative-config") + 1])
    assert result["spec_decode_draft_tokens"] == spec["num_speculative_tokens"] * drafts
    assert 0 < result["spec_decode_acceptance_rate"] <= 100
    assert len(result["spec_decode_per_position_acceptance_rates"]) == spec["num_speculative_tokens"]
    # What the client measured through the proxy is what the instances counted, less the one
    # ready-check request the client sends before its first reading.
    assert drafts <= first_run["drafts"] <= drafts + OUTPUT_LEN


def test_the_report_has_the_table_and_a_valid_png(first_run: Dict[str, Any]) -> None:
    (run,) = first_run["root"].iterdir()
    report = (run / "report.md").read_text()
    assert "| Request throughput (req/s) |" in report and "| P99 ITL (ms) |" in report
    assert "| Spec decode acceptance rate (%) |" in report
    assert f"- num_prompts: {PROMPTS}" in report and "- request_rate: inf" in report
    png = (run / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 800 and height >= 300
    assert "Benchmark report:" in first_run["stdout"]


def test_a_baseline_that_cannot_be_met_fails_naming_the_metrics(
    day2: Day2, first_run: Dict[str, Any], tmp_path: Path
) -> None:
    (run,) = first_run["root"].iterdir()
    (result_file,) = run.glob("*.json")
    baseline = json.loads(result_file.read_text())
    baseline["output_throughput"] *= 100  # a hundred times the throughput: unreachable
    baseline["p99_ttft_ms"] /= 100
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))

    done = run_benchmark(day2, tmp_path / "results", "-e", f"benchmark_baseline={path}")
    assert done.returncode != 0
    shown = " ".join(done.stdout.split())  # the YAML callback wraps long messages
    assert f"regressed against the baseline {path} (tolerance 0.97" in shown, explain(done)
    assert "Output token throughput (output_throughput) regressed: measured " in shown
    assert "P99 TTFT (p99_ttft_ms) regressed: measured " in shown
    (second,) = (tmp_path / "results").iterdir()
    assert "REGRESSED" in (second / "report.md").read_text()


def test_check_mode_shows_the_command_and_runs_nothing(day2: Day2, tmp_path: Path) -> None:
    done = run_benchmark(day2, tmp_path / "results", "--check")
    assert done.returncode == 0, explain(done)
    proxy = day2.plan["hosts"][day2.node(4)]["proxy"]
    shown = " ".join(done.stdout.split())  # the YAML callback wraps long messages
    command = f"would run: vllm bench serve --base-url http://127.0.0.1:{proxy['port']} --model MiniMax-M2.7"
    assert command in shown, done.stdout[-3000:]
    assert f"--num-prompts {PROMPTS} --request-rate inf --max-concurrency 4 --label {LABEL}" in shown
    assert not (tmp_path / "results").exists()


def test_the_deployment_is_left_as_it_was(day2: Day2) -> None:
    proxy_host = day2.node(4)
    assert "vllm-benchmark" not in node(proxy_host, "docker", "ps", "-a", "--format", "{{.Names}}").stdout
    assert node(proxy_host, "ls", "-A", "/var/tmp/ascend-vllm-benchmark").stdout.strip() == ""
    proxy = day2.plan["hosts"][proxy_host]["proxy"]
    health = json.loads(node(proxy_host, "curl", "-fsS", f"http://127.0.0.1:{proxy['port']}/health").stdout)
    assert health["decode"] == {"healthy": 4, "total": 4} and health["prefill"] == {"healthy": 2, "total": 2}
