from __future__ import annotations

from ansible_collections.ascend.vllm.plugins.filter.npu_chip_table import npu_chip_table


def _chip(npu: int, chip: int, phy_id: int | None, health: str = "OK", used: int = 3200) -> dict:
    return {
        "npu": npu,
        "chip": chip,
        "phy_id": phy_id,
        "name": "Ascend910",
        "health": health,
        "power_w": None,
        "temp_c": 41,
        "aicore_pct": 0,
        "hbm_used_mb": used,
        "hbm_total_mb": 65536,
        "bus_id": "0000:9D:00.0",
    }


def test_one_line_per_chip_with_aligned_columns() -> None:
    lines = npu_chip_table([_chip(0, 0, 0), _chip(0, 1, 1, health="Critical", used=12000)])
    assert len(lines) == 3
    assert lines[0].split() == [
        "NPU",
        "Chip",
        "Phy",
        "Name",
        "Health",
        "HBM",
        "used/total",
        "MB",
        "AICore%",
        "Temp",
        "Processes",
    ]
    assert lines[2].split() == ["0", "1", "1", "Ascend910", "Critical", "12000/65536", "0", "41", "-"]
    # Columns line up: every row puts Health at the same offset.
    assert lines[1].index("OK") == lines[2].index("Critical") == lines[0].index("Health")


def test_processes_are_shown_on_their_chip_and_a2_rows_without_chip_fall_back_to_npu() -> None:
    chips = [_chip(0, 0, None), _chip(1, 0, None)]
    processes = [
        {"npu": 0, "chip": 0, "pid": 4242, "name": "python3", "memory_mb": 30000},
        {"npu": 1, "chip": None, "pid": 77, "name": "VLLM::Worker", "memory_mb": 100},
    ]
    lines = npu_chip_table(chips, processes)
    assert lines[1].endswith("4242:python3")
    assert lines[2].endswith("77:VLLM::Worker")
    assert lines[1].split()[2] == "-"  # no phy-id printed on A2
