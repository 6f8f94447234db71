# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""npu-smi info (the parser's fixtures) -> the node exporter textfile of the NPU collector."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Tuple

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.npu_metrics import npu_textfile
from ansible_collections.ascend.vllm.plugins.module_utils.npu_smi import parse_npu_smi_info

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "npu_smi"
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def samples(text: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    found = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, line
        labels = tuple(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        found[(match["name"], labels)] = float(match["value"])
    return found


def chip(values: Dict, name: str, device: int) -> float:
    hits = [v for (n, labels), v in values.items() if n == name and ("device", str(device)) in labels]
    assert len(hits) == 1, (name, device, hits)
    return hits[0]


def test_a3_busy_mixed_health() -> None:
    info = parse_npu_smi_info((FIXTURES / "a3_busy_mixed_health.txt").read_text())
    values = samples(npu_textfile(info))
    assert values[("ascend_npu_smi_up", ())] == 1
    assert values[("ascend_npu_chips", ())] == 16
    unhealthy = {
        dict(labels)["device"]: dict(labels)["health"]
        for (name, labels), value in values.items()
        if name == "ascend_npu_chip_healthy" and value == 0
    }
    assert unhealthy == {"5": "Warning", "8": "Alarm", "11": "Critical", "12": "UNKNOWN"}
    # Chip 0 of NPU 0: 59870 of 65536 MiB, AICore 17 %, 243.3 W, 52 C, held by 2 processes.
    assert chip(values, "ascend_npu_hbm_used_bytes", 0) == 59870 * 1024 * 1024
    assert chip(values, "ascend_npu_hbm_total_bytes", 0) == 65536 * 1024 * 1024
    assert chip(values, "ascend_npu_aicore_utilization_ratio", 0) == 0.17
    assert chip(values, "ascend_npu_power_watts", 0) == 243.3
    assert chip(values, "ascend_npu_temperature_celsius", 0) == 52
    assert chip(values, "ascend_npu_processes", 0) == 2
    # An A3's second die prints no power: no series rather than a made-up 0.
    assert not [k for k in values if k[0] == "ascend_npu_power_watts" and ("device", "1") in k[1]]
    assert ("npu", "0") in next(k[1] for k in values if k[0] == "ascend_npu_hbm_used_bytes")


@pytest.mark.parametrize("fixture", ["a2_busy.txt", "a2_idle.txt", "a3_idle.txt", "v26_wide_with_container_pid.txt"])
def test_every_layout_gives_one_series_per_chip(fixture: str) -> None:
    info = parse_npu_smi_info((FIXTURES / fixture).read_text())
    values = samples(npu_textfile(info))
    for name in ("ascend_npu_chip_healthy", "ascend_npu_hbm_used_bytes", "ascend_npu_aicore_utilization_ratio"):
        assert len([k for k in values if k[0] == name]) == len(info["chips"]), (fixture, name)


def test_a_failed_read_says_so_and_exports_no_stale_chip() -> None:
    text = npu_textfile(None)
    assert samples(text) == {("ascend_npu_smi_up", ()): 0.0}
    assert "# TYPE ascend_npu_smi_up gauge" in text


def test_label_values_are_escaped() -> None:
    info = parse_npu_smi_info((FIXTURES / "a3_idle.txt").read_text())
    info["chips"][0]["name"] = 'odd "name"\\'
    text = npu_textfile(info)
    assert 'name="odd \\"name\\"\\\\"' in text


def test_promtool_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("ASCEND_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool not found: run tools/promtool.sh (installs Debian's prometheus)")
        pytest.skip("promtool absent (tools/promtool.sh installs it)")
    info = parse_npu_smi_info((FIXTURES / "a3_busy_mixed_health.txt").read_text())
    done = subprocess.run([promtool, "check", "metrics"], input=npu_textfile(info), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
