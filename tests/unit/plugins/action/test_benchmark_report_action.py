# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ascend.vllm.benchmark_report in-process: the files it writes, and how it fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict
from unittest.mock import MagicMock

import pytest

from ansible_collections.ascend.vllm.plugins.action.benchmark_report import ActionModule

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "benchmark" / "sim_spec_decode_result.json"


def run_report(args: Dict[str, Any]) -> Dict[str, Any]:
    task = SimpleNamespace(args=args, async_val=0, check_mode=False, action="ascend.vllm.benchmark_report")
    action = ActionModule(task, MagicMock(), MagicMock(), loader=None, templar=None)  # type: ignore[arg-type]
    return action.run(task_vars={})


def slower_copy(tmp_path: Path, factor: float) -> Path:
    data = json.loads(FIXTURE.read_text())
    for key in ("request_throughput", "output_throughput", "total_token_throughput"):
        data[key] *= factor
    path = tmp_path / "slower.json"
    path.write_text(json.dumps(data))
    return path


def test_report_and_plot_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "20261203T140000Z-a3_pd_1p2d_200k"
    result = run_report(
        {"results": [{"name": "proxy", "path": str(FIXTURE)}], "report_dir": str(out), "settings": {"num_prompts": 20}}
    )
    assert not result.get("failed"), result
    assert result["report"] == str(out / "report.md") and result["plot"] == str(out / "report.png")
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    text = (out / "report.md").read_text()
    assert "- num_prompts: 20" in text and "| Metric | proxy |" in text
    assert result["regressions"] == [] and result["changed"] is True


def test_a_regression_fails_naming_each_metric_after_writing_the_report(tmp_path: Path) -> None:
    slower = slower_copy(tmp_path, 0.5)
    result = run_report(
        {
            "results": [{"name": "proxy", "path": str(slower)}],
            "report_dir": str(tmp_path / "run"),
            "baseline": str(FIXTURE),
            "plot": False,
        }
    )
    assert result["failed"] is True
    assert result["msg"].startswith(f"3 metric(s) regressed against the baseline {FIXTURE} (tolerance 0.97; report ")
    assert "proxy: Request throughput (request_throughput) regressed: measured " in result["msg"]
    assert "Output token throughput" in result["msg"] and "Total token throughput" in result["msg"]
    assert "TTFT" not in result["msg"]  # the latencies did not change
    assert "REGRESSED" in (tmp_path / "run" / "report.md").read_text()
    assert not (tmp_path / "run" / "report.png").exists()


def test_check_only_reads_the_baseline_and_writes_nothing(tmp_path: Path) -> None:
    assert run_report({"check_only": True, "baseline": str(FIXTURE), "plot": False}) == {"changed": False}
    missing = run_report({"check_only": True, "baseline": str(tmp_path / "nope.json"), "plot": False})
    assert missing["failed"] is True
    assert missing["msg"].startswith(f"baseline (benchmark_baseline) {tmp_path / 'nope.json'}: cannot be read")
    bad = run_report({"check_only": True, "tolerance": 1.2, "plot": False})
    assert bad["msg"] == "benchmark_tolerance must be in (0, 1], got 1.2"


def test_check_only_fails_clearly_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = run_report({"check_only": True})
    assert result["failed"] is True and "needs matplotlib" in result["msg"] and "benchmark_plot=false" in result["msg"]


GUIDE = {"input_len": 200, "output_len": 128, "num_prompts": 200, "request_rate": 1, "max_concurrency": None,
         "label": "", "timeout": 3600}  # fmt: skip


def test_check_only_accepts_the_guides_workload_and_returns_the_absolute_folder(tmp_path: Path) -> None:
    result = run_report({"check_only": True, "plot": False, "workload": GUIDE, "report_dir": "benchmark-results/x"})
    assert result == {"changed": False, "report_dir": str(Path.cwd() / "benchmark-results" / "x")}
    as_strings = {**GUIDE, "request_rate": "inf", "max_concurrency": "16", "label": "nightly-1p2d"}
    assert not run_report({"check_only": True, "plot": False, "workload": as_strings}).get("failed")


def test_check_only_names_every_bad_option() -> None:
    bad = {**GUIDE, "input_len": 0, "num_prompts": "many", "request_rate": "-1", "max_concurrency": 0, "label": "a/b"}
    result = run_report({"check_only": True, "plot": False, "workload": bad, "tolerance": 0})
    assert result["failed"] is True
    assert result["msg"] == (
        "benchmark_input_len must be a positive integer, got 0; "
        "benchmark_num_prompts must be a positive integer, got 'many'; "
        "benchmark_request_rate must be a positive number or inf, got '-1'; "
        "benchmark_max_concurrency must be a positive integer or null, got 0; "
        "benchmark_label may hold only letters, digits, '.', '_' and '-' (it names a folder), got 'a/b'; "
        "benchmark_tolerance must be in (0, 1], got 0"
    )
