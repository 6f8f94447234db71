# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render npu_smi_info / hccn_info facts as fixed-width text tables for operators."""

from __future__ import annotations

DOCUMENTATION = r"""
name: npu_chip_table
short_description: Render npu_smi_info chips as a text table
version_added: 0.1.0
description:
  - Turns the C(chips) and C(processes) returned by M(ascend.vllm.npu_smi_info) into a list of
    fixed-width lines, one per chip, for C(ansible.builtin.debug) output.
positional: _input, processes
options:
  _input:
    description: The C(chips) list returned by M(ascend.vllm.npu_smi_info).
    type: list
    elements: dict
    required: true
  processes:
    description: The C(processes) list returned by M(ascend.vllm.npu_smi_info).
    type: list
    elements: dict
    default: []
"""

EXAMPLES = r"""
- name: Show the chips of each host
  ansible.builtin.debug:
    msg: "{{ npu.chips | ascend.vllm.npu_chip_table(npu.processes) }}"
"""

RETURN = r"""
_value:
  description: A header line followed by one line per chip.
  type: list
  elements: str
"""

from typing import Any

from ansible_collections.ascend.vllm.plugins.module_utils.text_table import format_rows

_CHIP_COLUMNS = ("NPU", "Chip", "Phy", "Name", "Health", "HBM used/total MB", "AICore%", "Temp", "Processes")


def _holders_by_chip(processes: list[dict[str, Any]]) -> dict[tuple[int, Any], list[str]]:
    holders: dict[tuple[int, Any], list[str]] = {}
    for proc in processes:
        holders.setdefault((proc["npu"], proc["chip"]), []).append(f"{proc['pid']}:{proc['name']}")
    return holders


def npu_chip_table(chips: list[dict[str, Any]], processes: list[dict[str, Any]] | None = None) -> list[str]:
    holders = _holders_by_chip(processes or [])
    rows = []
    for chip in chips:
        # A2 process rows may not name a chip (one chip per NPU), so fall back to the NPU.
        names = holders.get((chip["npu"], chip["chip"]), []) + holders.get((chip["npu"], None), [])
        rows.append(
            (
                str(chip["npu"]),
                str(chip["chip"]),
                "-" if chip.get("phy_id") is None else str(chip["phy_id"]),
                chip["name"],
                chip["health"],
                f"{chip['hbm_used_mb']}/{chip['hbm_total_mb']}",
                str(chip["aicore_pct"]),
                str(chip["temp_c"]),
                ",".join(names) or "-",
            )
        )
    return format_rows(_CHIP_COLUMNS, rows)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"npu_chip_table": npu_chip_table}
