# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The npu-smi info parser and checks, against fixtures in the layouts real machines print.

The fixtures keep npu-smi's own column widths (classic 98-character table of 24.x/25.x, the
narrower 23.x one, the 116-character table of 26.x); the values are made up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.npu_smi import (
    CHIP_KEYS,
    PROCESS_KEYS,
    NpuSmiParseError,
    check_expected_chips,
    check_healthy,
    check_min_chips,
    check_no_processes,
    parse_npu_smi_info,
    run_checks,
    summarize,
)

FIXTURES = Path(__file__).resolve().parents[3] / "unit" / "fixtures" / "npu_smi"
GOOD = [
    "a2_idle.txt",
    "a2_busy.txt",
    "a2_v23_narrow.txt",
    "a3_idle.txt",
    "a3_busy_mixed_health.txt",
    "v26_wide_with_container_pid.txt",
    "v26_a2_wide.txt",
]


def text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def parse(name: str) -> Dict[str, Any]:
    return parse_npu_smi_info(text(name))


def fixture_line(name: str, line_no: int) -> str:
    return text(name).splitlines()[line_no - 1]


# --- every fixture: shape ------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_entries_have_exactly_the_documented_keys_and_types(name: str) -> None:
    facts = parse(name)
    assert set(facts) == {"npu_smi_version", "driver_version", "chips", "processes"}
    for chip in facts["chips"]:
        assert tuple(chip) == CHIP_KEYS
        for key in ("npu", "chip", "temp_c", "aicore_pct", "hbm_used_mb", "hbm_total_mb"):
            assert type(chip[key]) is int, (key, chip)
        assert chip["phy_id"] is None or type(chip["phy_id"]) is int
        assert chip["power_w"] is None or type(chip["power_w"]) is float
        assert all(isinstance(chip[key], str) for key in ("name", "health", "bus_id"))
    for process in facts["processes"]:
        assert tuple(process) == PROCESS_KEYS
        assert all(type(process[key]) is int for key in ("npu", "pid", "memory_mb"))
        assert type(process["chip"]) is int


@pytest.mark.parametrize(
    ("name", "tool", "driver", "chips", "npus", "processes"),
    [
        ("a2_idle.txt", "24.1.rc2", "24.1.rc2", 8, 8, 0),
        ("a2_busy.txt", "25.2.0", "25.2.0", 8, 8, 6),
        ("a2_v23_narrow.txt", "23.0.rc3", "23.0.rc3", 4, 4, 1),
        ("a3_idle.txt", "25.2.3", "25.2.3", 16, 8, 0),
        ("a3_busy_mixed_health.txt", "25.2.1", "25.2.1", 16, 8, 6),
        ("v26_wide_with_container_pid.txt", "26.0.rc2", "26.0.rc2", 16, 8, 5),
        ("v26_a2_wide.txt", "26.1.0", "26.1.0", 8, 8, 1),
    ],
)
def test_versions_and_counts(name: str, tool: str, driver: str, chips: int, npus: int, processes: int) -> None:
    facts = parse(name)
    assert facts["npu_smi_version"] == tool
    assert facts["driver_version"] == driver
    assert len(facts["chips"]) == chips
    assert len({c["npu"] for c in facts["chips"]}) == npus
    assert len(facts["processes"]) == processes


# --- Atlas 800I A2 -------------------------------------------------------------------------


def test_a2_idle_chips() -> None:
    chips = parse("a2_idle.txt")["chips"]
    assert chips[0] == {
        "npu": 0,
        "chip": 0,
        "phy_id": None,
        "name": "910B3",
        "health": "OK",
        "power_w": 94.7,
        "temp_c": 36,
        "aicore_pct": 0,
        "hbm_used_mb": 3385,
        "hbm_total_mb": 65536,
        "bus_id": "0000:C1:00.0",
    }
    assert chips[7] == {
        "npu": 7,
        "chip": 0,
        "phy_id": None,
        "name": "910B3",
        "health": "OK",
        "power_w": 93.1,
        "temp_c": 37,
        "aicore_pct": 0,
        "hbm_used_mb": 3388,
        "hbm_total_mb": 65536,
        "bus_id": "0000:42:00.0",
    }
    assert [c["npu"] for c in chips] == list(range(8))
    assert {c["chip"] for c in chips} == {0}
    assert all(c["phy_id"] is None for c in chips)  # the A2 table has no Phy-ID column
    assert [c["bus_id"][5:7] for c in chips] == ["C1", "C2", "81", "82", "01", "02", "41", "42"]


def test_a2_busy_processes_and_five_digit_hbm() -> None:
    facts = parse("a2_busy.txt")
    assert facts["chips"][0]["hbm_used_mb"] == 61022  # printed "61022/ 65536": no space before "/"
    assert facts["chips"][0]["aicore_pct"] == 23
    assert facts["chips"][0]["power_w"] == 231.4
    assert facts["processes"] == [
        {"npu": 0, "chip": 0, "pid": 2140551, "name": "python3", "memory_mb": 57310},
        {"npu": 0, "chip": 0, "pid": 2140612, "name": "python3", "memory_mb": 118},
        {"npu": 1, "chip": 0, "pid": 2140553, "name": "VLLMWorker_TP1", "memory_mb": 57296},
        {"npu": 2, "chip": 0, "pid": 2140554, "name": "VLLMWorker_TP2", "memory_mb": 57296},
        {"npu": 3, "chip": 0, "pid": 2140555, "name": "VLLMWorker_TP3", "memory_mb": 57296},
        # A process in another container: npu-smi prints its pid but no name.
        {"npu": 5, "chip": 0, "pid": 3918442, "name": "", "memory_mb": 1420},
    ]


def test_a2_older_narrower_table() -> None:
    facts = parse("a2_v23_narrow.txt")
    assert facts["chips"][2] == {
        "npu": 2,
        "chip": 0,
        "phy_id": None,
        "name": "910B4",
        "health": "OK",
        "power_w": 84.1,
        "temp_c": 35,
        "aicore_pct": 0,
        "hbm_used_mb": 2873,
        "hbm_total_mb": 32768,
        "bus_id": "0000:81:00.0",
    }
    assert facts["processes"] == [{"npu": 2, "chip": 0, "pid": 77120, "name": "python3.9", "memory_mb": 1934}]


# --- Atlas 800 A3 ----------------------------------------------------------------------------


def test_a3_idle_two_dies_per_npu() -> None:
    chips = parse("a3_idle.txt")["chips"]
    assert [(c["npu"], c["chip"]) for c in chips] == [(n, d) for n in range(8) for d in (0, 1)]
    assert [c["phy_id"] for c in chips] == list(range(16))
    assert chips[0] == {
        "npu": 0,
        "chip": 0,
        "phy_id": 0,
        "name": "Ascend910",
        "health": "OK",
        "power_w": 168.2,
        "temp_c": 37,
        "aicore_pct": 0,
        "hbm_used_mb": 3131,
        "hbm_total_mb": 65536,
        "bus_id": "0000:9D:00.0",
    }
    # The second die prints its power as "-": null, not 0.
    assert chips[15] == {
        "npu": 7,
        "chip": 1,
        "phy_id": 15,
        "name": "Ascend910",
        "health": "OK",
        "power_w": None,
        "temp_c": 38,
        "aicore_pct": 0,
        "hbm_used_mb": 2890,
        "hbm_total_mb": 65536,
        "bus_id": "0000:83:00.0",
    }
    assert all((c["power_w"] is None) == (c["chip"] == 1) for c in chips)
    assert parse("a3_idle.txt")["processes"] == []


def test_a3_every_health_value_as_printed() -> None:
    chips = parse("a3_busy_mixed_health.txt")["chips"]
    assert [(c["npu"], c["chip"], c["health"]) for c in chips if c["health"] != "OK"] == [
        (2, 1, "Warning"),
        (4, 0, "Alarm"),
        (5, 1, "Critical"),
        (6, 0, "UNKNOWN"),
    ]
    assert chips[11] == {
        "npu": 5,
        "chip": 1,
        "phy_id": 11,
        "name": "Ascend910",
        "health": "Critical",
        "power_w": None,
        "temp_c": 41,
        "aicore_pct": 0,
        "hbm_used_mb": 2892,
        "hbm_total_mb": 65536,
        "bus_id": "0000:8B:00.0",
    }


def test_a3_processes_on_both_dies_and_on_die_one_only() -> None:
    assert parse("a3_busy_mixed_health.txt")["processes"] == [
        {"npu": 0, "chip": 0, "pid": 1774110, "name": "VLLMWorker_DP0", "memory_mb": 56684},
        {"npu": 0, "chip": 0, "pid": 1774390, "name": "python3", "memory_mb": 131},
        {"npu": 0, "chip": 1, "pid": 1777209, "name": "VLLMWorker_DP1", "memory_mb": 56690},
        {"npu": 1, "chip": 1, "pid": 1780022, "name": "python3", "memory_mb": 4210},
        {"npu": 3, "chip": 0, "pid": 1790001, "name": "", "memory_mb": 49800},
        {"npu": 3, "chip": 1, "pid": 1790002, "name": "", "memory_mb": 49812},
    ]


# --- npu-smi 26.x wide layout -----------------------------------------------------------


def test_v26_wide_a3_chips_and_processes_without_the_container_pid() -> None:
    facts = parse("v26_wide_with_container_pid.txt")
    assert facts["chips"][1] == {
        "npu": 0,
        "chip": 1,
        "phy_id": 1,
        "name": "Ascend910",
        "health": "OK",
        "power_w": None,
        "temp_c": 49,
        "aicore_pct": 18,
        "hbm_used_mb": 60377,
        "hbm_total_mb": 65536,
        "bus_id": "0000:9F:00.0",
    }
    assert facts["chips"][15]["health"] == "Warning"
    assert facts["processes"] == [
        {"npu": 0, "chip": 0, "pid": 3120455, "name": "VLLMWorker_TP0", "memory_mb": 58112},
        {"npu": 0, "chip": 1, "pid": 3120456, "name": "VLLMWorker_TP1", "memory_mb": 58096},
        {"npu": 1, "chip": 0, "pid": 3120457, "name": "VLLMWorker_TP2", "memory_mb": 58096},
        {"npu": 1, "chip": 1, "pid": 3120458, "name": "VLLMWorker_TP3", "memory_mb": 58090},
        {"npu": 5, "chip": 1, "pid": 884210, "name": "python3", "memory_mb": 2210},
    ]


def test_v26_wide_a2() -> None:
    facts = parse("v26_a2_wide.txt")
    assert facts["chips"][3] == {
        "npu": 3,
        "chip": 0,
        "phy_id": None,
        "name": "910B3",
        "health": "OK",
        "power_w": 228.3,
        "temp_c": 55,
        "aicore_pct": 31,
        "hbm_used_mb": 58411,
        "hbm_total_mb": 65536,
        "bus_id": "0000:82:00.0",
    }
    assert facts["processes"] == [{"npu": 3, "chip": 0, "pid": 508812, "name": "VLLMWorker_TP", "memory_mb": 55048}]


# --- tolerance -------------------------------------------------------------------------------


def test_crlf_trailing_blanks_and_surrounding_text_are_tolerated() -> None:
    noisy = "DrvMngGetConsoleLogLevel failed. (g_conLogLevel=3)\r\n\r\n"
    noisy += "".join(line + "   \r\n" for line in text("a3_busy_mixed_health.txt").splitlines())
    assert parse_npu_smi_info(noisy) == parse("a3_busy_mixed_health.txt")


def test_power_printed_as_na_is_null() -> None:
    source = text("a2_idle.txt").replace("| 94.7        36 ", "| NA          36 ")
    assert parse_npu_smi_info(source)["chips"][0]["power_w"] is None


def test_header_without_driver_version() -> None:
    source = text("a2_idle.txt").replace("Version: 24.1.rc2", "                 ")
    facts = parse_npu_smi_info(source)
    assert (facts["npu_smi_version"], facts["driver_version"]) == ("24.1.rc2", None)


def test_process_row_naming_only_the_npu_has_a_null_chip() -> None:
    source = text("a2_busy.txt").replace(
        "| 5       0                 | 3918442", "| 5                         | 3918442"
    )
    assert parse_npu_smi_info(source)["processes"][5] == {
        "npu": 5,
        "chip": None,
        "pid": 3918442,
        "name": "",
        "memory_mb": 1420,
    }


# --- errors name the line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line_no", "message"),
    [
        ("malformed_chip_temp_na.txt", 10, "expected 'Power(W) Temp(C) used / total' in the third column"),
        ("malformed_process_row.txt", 18, "expected a numeric Process id"),
        ("truncated_in_chip_table.txt", 13, "chip row without its second line"),
        ("unsupported_310p3.txt", 5, "chip table without an HBM-Usage column is not supported"),
    ],
)
def test_unreadable_line_raises_with_its_number_and_text(name: str, line_no: int, message: str) -> None:
    with pytest.raises(NpuSmiParseError) as exc:
        parse(name)
    assert exc.value.line_no == line_no
    assert exc.value.line == fixture_line(name, line_no).strip()
    assert exc.value.message.startswith(message)
    assert str(exc.value) == f"line {line_no}: {exc.value.message}: {exc.value.line!r}"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated_before_process_table.txt", "the output ends before the process table (cut short?)"),
        ("not_a_table.txt", "no 'npu-smi <version>' header: this is not npu-smi info output"),
        ("dcmi_init_failed_8005.txt", "no 'npu-smi <version>' header: this is not npu-smi info output"),
    ],
)
def test_incomplete_output_raises_without_a_line(name: str, message: str) -> None:
    with pytest.raises(NpuSmiParseError) as exc:
        parse(name)
    assert (exc.value.line_no, exc.value.line, str(exc.value)) == (None, None, message)


def _edit_line(name: str, line_no: int, new: str) -> str:
    lines = text(name).splitlines()
    lines[line_no - 1] = new
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("line_no", "new", "message"),
    [
        # second chip row whose HBM column lost its total
        (
            11,
            "| 1     1                   | 0000:9F:00.0  | 0           0    / 0          2886 /               |",
            "expected 'AICore used / total used / total'",
        ),
        # chip row with a fourth column
        (
            10,
            "| 0     Ascend910           | OK            | -           37                0    / 0 | x |",
            "chip row with 4 columns",
        ),
        # two words of health
        (
            7,
            "| 0     Ascend910           | Not OK        | 168.2       37                0    / 0             |",
            "expected one Health word",
        ),
        # a process row with the wrong number of columns
        (58, "| 0       0                 | 1774110       | python3                  |", "process row with 3 columns"),
        # a line in the process table that is neither a process nor "No running processes"
        (
            58,
            "| Something else entirely                                                                       |",
            "unrecognised line in the process table",
        ),
        # a separator cut short
        (58, "+=====", "unrecognised table line"),
    ],
)
def test_edited_rows_raise_with_the_line(line_no: int, new: str, message: str) -> None:
    with pytest.raises(NpuSmiParseError) as exc:
        parse_npu_smi_info(_edit_line("a3_idle.txt", line_no, new))
    assert exc.value.line_no == line_no
    assert exc.value.line == new.strip()
    assert message in exc.value.message


def test_the_same_chip_twice_raises() -> None:
    # NPU 1's first die relabelled as NPU 0: npu 0 chip 0 appears twice.
    line_13 = fixture_line("a3_idle.txt", 13)
    edited = _edit_line("a3_idle.txt", 13, line_13.replace("| 1     Ascend910", "| 0     Ascend910"))
    with pytest.raises(NpuSmiParseError) as exc:
        parse_npu_smi_info(edited)
    assert (exc.value.line_no, exc.value.message) == (14, "npu 0 chip 0 listed twice")
    assert exc.value.line == fixture_line("a3_idle.txt", 14)


def test_process_table_missing_an_npu_is_cut_short() -> None:
    lines = text("a3_idle.txt").splitlines()
    assert lines[-2].startswith("| No running processes found in NPU 7")
    with pytest.raises(NpuSmiParseError) as exc:
        parse_npu_smi_info("\n".join(lines[:-2]))
    assert str(exc.value) == "the process table has no entry for NPU 7 (output cut short?)"


def test_row_before_any_header_raises() -> None:
    source = "| npu-smi 25.2.0   Version: 25.2.0 |\n| 0     910B3 | OK | 90.0 30 0 / 0 |\n"
    with pytest.raises(NpuSmiParseError) as exc:
        parse_npu_smi_info(source)
    assert (exc.value.line_no, exc.value.message) == (2, "unrecognised row outside the chip and process tables")


def test_empty_output_raises() -> None:
    with pytest.raises(NpuSmiParseError, match="no 'npu-smi <version>' header"):
        parse_npu_smi_info("")


# --- summary ---------------------------------------------------------------------------------


def test_summary_of_an_idle_a3() -> None:
    facts = parse("a3_idle.txt")
    assert summarize(facts["chips"], facts["processes"]) == {
        "chip_count": 16,
        "npu_count": 8,
        "process_count": 0,
        "unhealthy_chips": [],
        "busy_chips": [],
    }


def test_summary_of_a_busy_a3_with_faults() -> None:
    facts = parse("a3_busy_mixed_health.txt")
    assert summarize(facts["chips"], facts["processes"]) == {
        "chip_count": 16,
        "npu_count": 8,
        "process_count": 6,
        "unhealthy_chips": [
            {"index": 5, "npu": 2, "chip": 1, "health": "Warning"},
            {"index": 8, "npu": 4, "chip": 0, "health": "Alarm"},
            {"index": 11, "npu": 5, "chip": 1, "health": "Critical"},
            {"index": 12, "npu": 6, "chip": 0, "health": "UNKNOWN"},
        ],
        "busy_chips": [
            {"index": 0, "npu": 0, "chip": 0, "pids": [1774110, 1774390], "memory_mb": 56815},
            {"index": 1, "npu": 0, "chip": 1, "pids": [1777209], "memory_mb": 56690},
            {"index": 3, "npu": 1, "chip": 1, "pids": [1780022], "memory_mb": 4210},
            {"index": 6, "npu": 3, "chip": 0, "pids": [1790001], "memory_mb": 49800},
            {"index": 7, "npu": 3, "chip": 1, "pids": [1790002], "memory_mb": 49812},
        ],
    }


def test_summary_process_without_chip_holds_every_die_of_its_npu() -> None:
    chips = parse("a3_idle.txt")["chips"]
    processes = [{"npu": 2, "chip": None, "pid": 9, "name": "x", "memory_mb": 5}]
    assert summarize(chips, processes)["busy_chips"] == [
        {"index": 4, "npu": 2, "chip": 0, "pids": [9], "memory_mb": 5},
        {"index": 5, "npu": 2, "chip": 1, "pids": [9], "memory_mb": 5},
    ]


# --- checks ----------------------------------------------------------------------------------


def test_check_min_chips() -> None:
    chips = parse("a3_idle.txt")["chips"]
    assert check_min_chips(chips, 16) == []
    assert check_min_chips(chips, 0) == []
    assert check_min_chips(chips[:14], 16) == ["npu-smi lists 14 chip(s), expected at least 16"]


def test_check_expected_chips() -> None:
    chips = parse("a2_idle.txt")["chips"]
    assert check_expected_chips(chips, [0, 7, 7]) == []
    assert check_expected_chips(chips, [9, 8, 3]) == [
        "chip index 8 not found: npu-smi lists 8 chip(s) (indexes 0-7)",
        "chip index 9 not found: npu-smi lists 8 chip(s) (indexes 0-7)",
    ]
    assert check_expected_chips([], [0]) == ["chip index 0 not found: npu-smi lists 0 chip(s) (no chip)"]


def test_check_healthy_names_every_unhealthy_chip() -> None:
    chips = parse("a3_busy_mixed_health.txt")["chips"]
    assert check_healthy(chips) == [
        "npu 2 chip 1 (index 5): health Warning",
        "npu 4 chip 0 (index 8): health Alarm",
        "npu 5 chip 1 (index 11): health Critical",
        "npu 6 chip 0 (index 12): health UNKNOWN",
    ]
    assert check_healthy(chips, [0, 1, 2, 3, 4, 12]) == ["npu 6 chip 0 (index 12): health UNKNOWN"]
    assert check_healthy(chips, [0, 1]) == []
    assert check_healthy(parse("a3_idle.txt")["chips"]) == []


def test_check_no_processes_names_chip_pid_and_process() -> None:
    facts = parse("a3_busy_mixed_health.txt")
    assert check_no_processes(facts["chips"], facts["processes"]) == [
        "npu 0 chip 0 (index 0): held by pid 1774110 'VLLMWorker_DP0' using 56684 MB",
        "npu 0 chip 0 (index 0): held by pid 1774390 'python3' using 131 MB",
        "npu 0 chip 1 (index 1): held by pid 1777209 'VLLMWorker_DP1' using 56690 MB",
        "npu 1 chip 1 (index 3): held by pid 1780022 'python3' using 4210 MB",
        "npu 3 chip 0 (index 6): held by pid 1790001 (name not shown) using 49800 MB",
        "npu 3 chip 1 (index 7): held by pid 1790002 (name not shown) using 49812 MB",
    ]
    # Chip index 2 (npu 1 chip 0) is free although its NPU's second die is busy.
    assert check_no_processes(facts["chips"], facts["processes"], [2, 4, 5]) == []
    assert check_no_processes(facts["chips"], facts["processes"], [2, 3]) == [
        "npu 1 chip 1 (index 3): held by pid 1780022 'python3' using 4210 MB"
    ]


def test_check_no_processes_on_a_process_outside_the_chip_table() -> None:
    chips = parse("a2_idle.txt")["chips"]
    stray = [{"npu": 9, "chip": 0, "pid": 1, "name": "x", "memory_mb": 2}]
    assert check_no_processes(chips, stray) == ["npu 9: held by pid 1 'x' using 2 MB"]
    assert check_no_processes(chips, stray, [0]) == []


def test_run_checks_collects_every_problem_in_order() -> None:
    facts = parse("a3_busy_mixed_health.txt")
    assert run_checks(facts) == []
    assert run_checks(
        facts, min_chips=17, require_healthy=True, require_no_processes=True, expected_chips=[3, 5, 16]
    ) == [
        "npu-smi lists 16 chip(s), expected at least 17",
        "chip index 16 not found: npu-smi lists 16 chip(s) (indexes 0-15)",
        "npu 2 chip 1 (index 5): health Warning",
        "npu 1 chip 1 (index 3): held by pid 1780022 'python3' using 4210 MB",
    ]
    idle = parse("a3_idle.txt")
    assert run_checks(idle, min_chips=16, require_healthy=True, require_no_processes=True) == []
