# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ascend.vllm.npu_smi_info, run in-process against a fake npu-smi (a shell script that prints a fixture).

The fake logs its arguments, so the tests also see that the module runs exactly ``npu-smi info``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Dict

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils import tools
from ansible_collections.ascend.vllm.plugins.modules import npu_smi_info
from tests.unit.plugins.modules.fake_tools import FakeNpuSmi
from tests.unit.plugins.modules.module_runner import ModuleExit, adhoc_failure, module_failed, module_ok, run_module

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "npu_smi"
CAT = shutil.which("cat") or "/bin/cat"


def run(args: Dict[str, Any]) -> ModuleExit:
    return run_module(npu_smi_info.main, args)


def ok(args: Dict[str, Any]) -> Dict[str, Any]:
    return module_ok(npu_smi_info.main, args)


def failed(args: Dict[str, Any]) -> Dict[str, Any]:
    return module_failed(npu_smi_info.main, args)


def fake(tmp_path: Path, fixture: str, **kwargs: Any) -> FakeNpuSmi:
    return FakeNpuSmi(tmp_path / "bin", fixture, **kwargs)


# --- facts -----------------------------------------------------------------------------------


def test_a3_facts_at_the_top_level(tmp_path: Path) -> None:
    tool = fake(tmp_path, "a3_idle.txt")
    result = ok({"npu_smi_path": str(tool.path)})
    assert tool.calls() == ["info"]
    assert result["changed"] is False
    assert set(result) == {"changed", "chips", "processes", "npu_smi_version", "driver_version", "summary"}
    assert (result["npu_smi_version"], result["driver_version"]) == ("25.2.3", "25.2.3")
    assert len(result["chips"]) == 16
    assert result["chips"][1] == {
        "npu": 0,
        "chip": 1,
        "phy_id": 1,
        "name": "Ascend910",
        "health": "OK",
        "power_w": None,
        "temp_c": 37,
        "aicore_pct": 0,
        "hbm_used_mb": 2886,
        "hbm_total_mb": 65536,
        "bus_id": "0000:9F:00.0",
    }
    assert result["processes"] == []
    assert result["summary"] == {
        "chip_count": 16,
        "npu_count": 8,
        "process_count": 0,
        "unhealthy_chips": [],
        "busy_chips": [],
    }


def test_a2_busy_facts_without_checks_succeed(tmp_path: Path) -> None:
    result = ok({"npu_smi_path": str(fake(tmp_path, "a2_busy.txt").path)})
    assert result["chips"][5]["phy_id"] is None
    assert result["processes"][5] == {"npu": 5, "chip": 0, "pid": 3918442, "name": "", "memory_mb": 1420}
    assert [b["index"] for b in result["summary"]["busy_chips"]] == [0, 1, 2, 3, 5]
    assert result["summary"]["busy_chips"][0] == {
        "index": 0,
        "npu": 0,
        "chip": 0,
        "pids": [2140551, 2140612],
        "memory_mb": 57428,
    }


def test_v26_wide_layout(tmp_path: Path) -> None:
    result = ok({"npu_smi_path": str(fake(tmp_path, "v26_wide_with_container_pid.txt").path)})
    assert result["npu_smi_version"] == "26.0.rc2"
    assert result["processes"][4] == {"npu": 5, "chip": 1, "pid": 884210, "name": "python3", "memory_mb": 2210}
    assert result["summary"]["unhealthy_chips"] == [{"index": 15, "npu": 7, "chip": 1, "health": "Warning"}]


def test_check_mode_runs_the_same_read_only_query(tmp_path: Path) -> None:
    tool = fake(tmp_path, "a2_idle.txt")
    result = ok({"npu_smi_path": str(tool.path), "min_chips": 8, "require_healthy": True, "_ansible_check_mode": True})
    assert tool.calls() == ["info"]
    assert result["changed"] is False
    assert result["summary"]["chip_count"] == 8


def test_bare_name_is_found_in_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = fake(tmp_path, "a2_idle.txt")
    monkeypatch.setenv("PATH", f"{tool.path.parent}{os.pathsep}{os.environ['PATH']}")
    result = ok({})
    assert tool.calls() == ["info"]
    assert result["chips"][0]["name"] == "910B3"


# --- checks ----------------------------------------------------------------------------------


def test_passing_checks(tmp_path: Path) -> None:
    result = ok(
        {
            "npu_smi_path": str(fake(tmp_path, "a3_idle.txt").path),
            "min_chips": 16,
            "expected_chips": list(range(16)),
            "require_healthy": True,
            "require_no_processes": True,
        }
    )
    assert "problems" not in result


def test_require_healthy_names_each_unhealthy_chip(tmp_path: Path) -> None:
    result = failed({"npu_smi_path": str(fake(tmp_path, "a3_busy_mixed_health.txt").path), "require_healthy": True})
    assert result["problems"] == [
        "npu 2 chip 1 (index 5): health Warning",
        "npu 4 chip 0 (index 8): health Alarm",
        "npu 5 chip 1 (index 11): health Critical",
        "npu 6 chip 0 (index 12): health UNKNOWN",
    ]
    assert result["msg"] == "; ".join(result["problems"])
    # The facts come with the failure.
    assert len(result["chips"]) == 16
    assert len(result["processes"]) == 6
    assert result["summary"]["chip_count"] == 16
    assert result["npu_smi_version"] == "25.2.1"


def test_require_no_processes_names_chip_pid_and_name(tmp_path: Path) -> None:
    result = failed({"npu_smi_path": str(fake(tmp_path, "a2_busy.txt").path), "require_no_processes": True})
    assert result["problems"] == [
        "npu 0 chip 0 (index 0): held by pid 2140551 'python3' using 57310 MB",
        "npu 0 chip 0 (index 0): held by pid 2140612 'python3' using 118 MB",
        "npu 1 chip 0 (index 1): held by pid 2140553 'VLLMWorker_TP1' using 57296 MB",
        "npu 2 chip 0 (index 2): held by pid 2140554 'VLLMWorker_TP2' using 57296 MB",
        "npu 3 chip 0 (index 3): held by pid 2140555 'VLLMWorker_TP3' using 57296 MB",
        "npu 5 chip 0 (index 5): held by pid 3918442 (name not shown) using 1420 MB",
    ]
    assert len(result["chips"]) == 8


def test_expected_chips_restrict_the_checks(tmp_path: Path) -> None:
    tool = fake(tmp_path, "a3_busy_mixed_health.txt")
    # Chips 2 and 4 are OK and free; the faults and processes are elsewhere.
    ok(
        {
            "npu_smi_path": str(tool.path),
            "expected_chips": [2, 4],
            "require_healthy": True,
            "require_no_processes": True,
        }
    )
    result = failed(
        {
            "npu_smi_path": str(tool.path),
            "expected_chips": [2, 3, 5, 16],
            "require_healthy": True,
            "require_no_processes": True,
        }
    )
    assert result["msg"] == (
        "chip index 16 not found: npu-smi lists 16 chip(s) (indexes 0-15); "
        "npu 2 chip 1 (index 5): health Warning; "
        "npu 1 chip 1 (index 3): held by pid 1780022 'python3' using 4210 MB"
    )


def test_min_chips(tmp_path: Path) -> None:
    result = failed({"npu_smi_path": str(fake(tmp_path, "a2_idle.txt").path), "min_chips": 16})
    assert result["msg"] == "npu-smi lists 8 chip(s), expected at least 16"
    assert result["summary"]["chip_count"] == 8


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        ({"min_chips": -1}, "min_chips must be 0 or more, got -1"),
        ({"expected_chips": [0, -2]}, "expected_chips are chip indexes (0 or more), got [-2]"),
    ],
)
def test_bad_parameters(tmp_path: Path, args: Dict[str, Any], msg: str) -> None:
    tool = fake(tmp_path, "a2_idle.txt")
    assert failed(dict(args, npu_smi_path=str(tool.path)))["msg"] == msg
    assert tool.calls() == []


# --- failures of npu-smi itself ------------------------------------------------------------


def test_non_zero_exit_shows_rc_and_npu_smi_text(tmp_path: Path) -> None:
    tool = fake(tmp_path, "dcmi_init_failed_8005.txt", rc=255, stderr="extra detail on stderr")
    result = failed({"npu_smi_path": str(tool.path), "require_healthy": True})
    cmd = f"{tool.path} info"
    assert result["msg"] == (
        f"'{cmd}' failed (rc=255): DrvMngGetConsoleLogLevel failed. (g_conLogLevel=3)\n"
        "dcmi module initialize failed. ret is -8005\nextra detail on stderr"
    )
    assert result["rc"] == 255
    assert result["cmd"] == cmd
    assert "ret is -8005" in result["stdout"]
    assert result["stderr"] == "extra detail on stderr\n"
    assert "chips" not in result


def test_non_zero_exit_without_output(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    tool = FakeNpuSmi(empty, "a2_idle.txt", rc=3)
    tool.path.write_text("#!/bin/sh\nexit 3\n", encoding="utf-8")
    assert failed({"npu_smi_path": str(tool.path)})["msg"] == f"'{tool.path} info' failed (rc=3): (no output)"


def test_unreadable_output_names_the_line(tmp_path: Path) -> None:
    tool = fake(tmp_path, "malformed_chip_temp_na.txt")
    result = failed({"npu_smi_path": str(tool.path)})
    line = (FIXTURES / "malformed_chip_temp_na.txt").read_text(encoding="utf-8").splitlines()[9].strip()
    assert result["msg"] == (
        f"cannot read the output of '{tool.path} info': line 10: "
        f"expected 'Power(W) Temp(C) used / total' in the third column: {line!r}"
    )
    assert "| 1     910B3               | OK            | 90.1        NA " in result["msg"]
    assert result["rc"] == 0
    assert result["stdout"].startswith("+----")


def test_help_text_instead_of_a_table(tmp_path: Path) -> None:
    result = failed({"npu_smi_path": str(fake(tmp_path, "not_a_table.txt").path)})
    assert result["msg"].endswith("no 'npu-smi <version>' header: this is not npu-smi info output")


def test_missing_binary_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "npu-smi"
    result = failed({"npu_smi_path": str(missing)})
    assert result["msg"] == f"npu-smi not found or not executable at {missing} (set npu_smi_path)"


def test_not_executable_binary(tmp_path: Path) -> None:
    tool = fake(tmp_path, "a2_idle.txt")
    tool.path.chmod(0o644)
    result = failed({"npu_smi_path": str(tool.path)})
    assert result["msg"] == f"npu-smi not found or not executable at {tool.path} (set npu_smi_path)"


def test_bare_name_not_found_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = failed({"npu_smi_path": "npu-smi-not-installed"})
    assert result["msg"].startswith("npu-smi not found: 'npu-smi-not-installed' is neither in PATH nor in ")
    assert "/usr/local/Ascend/driver/tools" in result["msg"] and result["msg"].endswith("(set npu_smi_path)")


def test_bare_name_falls_back_to_the_ascend_tool_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = fake(tmp_path, "a2_idle.txt")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(tools, "ASCEND_TOOL_DIRS", ("/nonexistent", str(tool.path.parent)))
    result = ok({})
    assert tool.calls() == ["info"]
    assert result["summary"]["chip_count"] == 8


# --- wired into Ansible -------------------------------------------------------------------


def test_ansible_adhoc_runs_the_module(tmp_path: Path) -> None:
    tool = fake(tmp_path, "a3_busy_mixed_health.txt")
    result = adhoc_failure("npu_smi_info", f"npu_smi_path={tool.path} require_healthy=true", tmp_path)
    assert result["changed"] is False
    assert result["problems"] == [
        "npu 2 chip 1 (index 5): health Warning",
        "npu 4 chip 0 (index 8): health Alarm",
        "npu 5 chip 1 (index 11): health Critical",
        "npu 6 chip 0 (index 12): health UNKNOWN",
    ]
    assert result["npu_smi_version"] == "25.2.1"
    assert result["chips"][11]["power_w"] is None
    assert result["summary"]["busy_chips"][2] == {
        "index": 3,
        "npu": 1,
        "chip": 1,
        "pids": [1780022],
        "memory_mb": 4210,
    }
    assert tool.calls() == ["info"]
