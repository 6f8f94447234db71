"""The simulated npu-smi: text layouts of the real tool, driven by the state and leases."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from ascend_sim import npu_smi
from ascend_sim import state as st

from .conftest import SIM


def smi(directory: Path, *args: str) -> Tuple[int, str]:
    out = io.StringIO()
    rc = npu_smi.run(list(args), out, out, directory)
    return rc, out.getvalue()


def chip_rows(text: str) -> List[str]:
    """The first row of each chip pair (the one with the name)."""
    return [line for line in text.splitlines() if re.match(r"^\| \d+\s+(Ascend910|910B3)\s+\|", line)]


def add_foreign(state: Dict[str, Any]) -> None:
    state["faults"]["foreign_processes"].append(
        {"logic_id": 5, "pid": 4242, "process_name": "python3", "memory_mb": 30000}
    )


# ---------------------------------------------------------------------------------------------
# npu-smi info: classic layout


def test_a3_classic_idle_snapshot(a3: Path) -> None:
    rc, text = smi(a3, "info")
    assert rc == 0
    lines = text.splitlines()
    assert lines[:6] == [
        "+" + "-" * 96 + "+",
        "| npu-smi 25.2.0                   Version: 25.2.0                                               |",
        "+---------------------------+---------------+----------------------------------------------------+",
        "| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|",
        "| Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |",
        "+===========================+===============+====================================================+",
    ]
    assert lines[6:11] == [
        "| 0     Ascend910           | OK            | 166.2       36                0    / 0             |",
        "| 0     0                   | 0000:9D:00.0  | 0           0    / 0          3416 / 65536         |",
        "+" + "-" * 96 + "+",
        "| 0     Ascend910           | OK            | -           37                0    / 0             |",
        "| 1     1                   | 0000:9F:00.0  | 0           0    / 0          3195 / 65536         |",
    ]
    assert {len(line) for line in lines} == {98}
    rows = chip_rows(text)
    assert len(rows) == 16
    assert [row.split("|")[3].split()[0] == "-" for row in rows] == [False, True] * 8
    assert "| 1     15                  | 0000:83:00.0  |" in text
    assert [f"No running processes found in NPU {n}" in text for n in range(8)] == [True] * 8
    assert text.count("No running processes found") == 8
    assert (
        lines[-1]
        == "+===========================+===============+====================================================+"
    )


def test_a2_classic_rows(a2: Path) -> None:
    rc, text = smi(a2, "info")
    assert rc == 0
    assert "| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |" in text
    assert "| 0     910B3               | OK            | 93.6        36                0    / 0             |" in text
    assert "| 0                         | 0000:C1:00.0  | 0           0    / 0          3386 / 65536         |" in text
    assert "| 7                         |" not in text  # second rows carry the chip id (0), not the NPU
    assert len(chip_rows(text)) == 8
    assert "+" + "-" * 96 + "+\n| 1 " not in text  # no die separator on single-die NPUs
    assert text.count("No running processes found") == 8
    assert {len(line) for line in text.splitlines()} == {98}


def test_holders_show_in_hbm_and_process_table(a3: Path, mutate) -> None:
    lease = st.acquire_chips([0, 1], 50000, owner="vllm", pid=3325989, process_name="VLLM", directory=a3)
    mutate(add_foreign)
    try:
        rc, text = smi(a3, "info")
    finally:
        lease.release()
    assert rc == 0
    assert "| 0     0                   | 0000:9D:00.0  | 0           0    / 0          53416/ 65536         |" in text
    assert "| 1     1                   | 0000:9F:00.0  | 0           0    / 0          53195/ 65536         |" in text
    assert "| 1     5                   | 0000:97:00.0  | 0           0    / 0          33196/ 65536         |" in text
    procs = text.split("| NPU     Chip              | Process id    |")[1]
    assert "| 0       0                 | 3325989       | VLLM                     | 50000                   |" in procs
    assert "| 0       1                 | 3325989       | VLLM                     | 50000                   |" in procs
    assert "| 2       1                 | 4242          | python3                  | 30000                   |" in procs
    assert "No running processes found in NPU 0 " not in procs
    assert "No running processes found in NPU 2 " not in procs
    assert procs.count("No running processes found") == 6
    # after release the HBM and the process rows are gone again
    _, after = smi(a3, "info")
    assert "3416 / 65536" in after and "3325989" not in after and "4242" in after


def test_health_faults_show_in_the_table(a2: Path, mutate) -> None:
    mutate(lambda s: s["chips"][3].update(health="Critical"))
    mutate(lambda s: s["chips"][4].update(health="Warning"))
    _, text = smi(a2, "info")
    rows = chip_rows(text)
    assert [row.split("|")[2].strip() for row in rows] == ["OK", "OK", "OK", "Critical", "Warning", "OK", "OK", "OK"]


# ---------------------------------------------------------------------------------------------
# npu-smi info: 26.x layout


def test_v26_layout(a3: Path, mutate) -> None:
    mutate(lambda s: s.update(npu_smi_layout="v26"))
    lease = st.acquire_chips([14], 12417, owner="vllm", pid=692318, process_name="python3", directory=a3)
    try:
        rc, text = smi(a3, "info")
    finally:
        lease.release()
    assert rc == 0
    lines = text.splitlines()
    assert {len(line) for line in lines} == {116}
    assert lines[1] == (
        "| npu-smi 25.2.0                              Version: 25.2.0"
        "                                                      |"
    )
    assert (
        "| NPU   Name                | Health        "
        "| Power(W)             Temp(C)                 Hugepages-Usage(page)   |" in lines
    )
    assert (
        "| 7     Ascend910           | OK            "
        "| -                    38                      0    / 0                |" in lines
    )
    assert (
        "| 1     15                  | 0000:83:00.0  "
        "| 0                    0    / 0                3193 / 65536            |" in lines
    )
    assert (
        "| 0     14                  | 0000:81:00.0  "
        "| 0                    0    / 0                15827/ 65536            |" in lines
    )
    assert (
        "| NPU     Chip              | Process id    "
        "| Process name       | Process memory(MB)    | Process id in container |"
    ) in lines
    assert (
        "| 7       0                 | 692318        "
        "| python3            | 12417                 | NA                      |"
    ) in lines
    assert text.count("No running processes found") == 7
    assert len(chip_rows(text)) == 16


def test_v26_shows_the_container_pid_of_a_holder_in_another_namespace(a2: Path, mutate, monkeypatch) -> None:
    import os

    mutate(lambda s: s.update(npu_smi_layout="v26"))
    real_ns = st._pid_namespace()
    monkeypatch.setattr(st, "_pid_namespace", lambda: "pid:[4026531111]")
    lease = st.acquire_chips([2], 1000, owner="vllm", pid=1, process_name="VLLM", directory=a2)
    monkeypatch.setattr(st, "_pid_namespace", lambda: real_ns)
    try:
        _, text = smi(a2, "info")
    finally:
        lease.release()
    row = next(line for line in text.splitlines() if line.startswith("| 2       0 "))
    assert [cell.strip() for cell in row.split("|")[2:6]] == [str(os.getpid()), "VLLM", "1000", "1"]


# ---------------------------------------------------------------------------------------------
# -m, -l, -t board, -t health


def test_mapping_a3_and_a2(a3: Path, tmp_path: Path) -> None:
    rc, text = smi(a3, "info", "-m")
    assert rc == 0
    lines = text.splitlines()
    assert lines[0].split() == ["NPU", "ID", "Chip", "ID", "Chip", "Logic", "ID", "Chip", "Phy-ID", "Chip", "Name"]
    assert lines[0].startswith("\tNPU ID" + " " * 25 + "Chip ID")
    rows = [line.split() for line in lines[1:]]
    assert rows[:3] == [
        ["0", "0", "0", "0", "Ascend910"],
        ["0", "1", "1", "1", "Ascend910"],
        ["0", "2", "-", "-", "Mcu"],
    ]
    assert ["7", "1", "15", "15", "Ascend910"] in rows
    assert sum(r[-1] == "Ascend910" for r in rows) == 16 and sum(r[-1] == "Mcu" for r in rows) == 8

    a2_dir = tmp_path / "a2"
    st.init_state("a2", directory=a2_dir)
    _, text = smi(a2_dir, "info", "-m")
    rows = [line.split() for line in text.splitlines()[1:]]
    assert rows[:2] == [["0", "0", "0", "Ascend", "910B3"], ["0", "1", "-", "Mcu"]]
    assert ["7", "0", "7", "Ascend", "910B3"] in rows


def test_list(a3: Path) -> None:
    rc, text = smi(a3, "info", "-l")
    assert rc == 0
    assert text.startswith("\tTotal Count                    : 8\n\n\tNPU ID                         : 0\n")
    assert text.count("Chip Count                     : 2") == 8


def test_board(a3: Path, mutate) -> None:
    mutate(lambda s: s.update(driver_version="24.1.0"))
    rc, text = smi(a3, "info", "-t", "board", "-i", "3")
    assert rc == 0
    fields = dict(line.strip().split(" : ", 1) for line in text.splitlines())
    fields = {k.strip(): v for k, v in fields.items()}
    assert fields["NPU ID"] == "3"
    assert fields["Software Version"] == "24.1.0"
    assert fields["Chip Count"] == "2"
    assert fields["PCIe Bus Info"] == "0000:91:00.0"
    rc, text = smi(a3, "info", "-t", "board", "-i", "3", "-c", "1")
    assert rc == 0
    assert "\tChip Name                      : Ascend910\n" in text
    assert "\tPCIe Bus Info                  : 0000:93:00.0\n" in text


def test_health(a3: Path, mutate) -> None:
    mutate(lambda s: s["chips"][3].update(health="Alarm"))
    rc, text = smi(a3, "info", "-t", "health", "-i", "1", "-c", "1")
    assert rc == 0
    assert text.splitlines()[0] == "\tHealth Status                  : Alarm"
    assert "Error Code                     : 80E3A203" in text
    rc, text = smi(a3, "info", "-t", "health", "-i", "1")
    statuses = re.findall(r"Health Status\s+: (\S+)", text)
    assert statuses == ["OK", "Alarm"]
    assert re.findall(r"Chip ID\s+: (\d+)", text) == ["0", "1"]


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("args", "first_line", "with_help"),
    [
        (["info", "-x"], "Error parameter of -x", True),
        (["info", "-t", "bogus", "-i", "0"], "Error parameter of -t", True),
        (["info", "-t", "board"], "Error parameter of -i", True),
        (["info", "-t", "board", "-i", "8"], "The npu id 8 is invalid.", False),
        (["info", "-t", "health", "-i", "0", "-c", "2"], "The chip id 2 of npu id 0 is invalid.", False),
        (["info", "-t", "temp", "-i", "0"], "This device does not support querying temp.", False),
        (["infox"], "Error command: infox", False),
    ],
)
def test_bad_arguments(a3: Path, args: List[str], first_line: str, with_help: bool) -> None:
    rc, text = smi(a3, *args)
    assert rc != 0
    assert text.splitlines()[0] == first_line
    assert ("Usage: npu-smi info <watch|proc|-h|-m|-l|-t type> [Options...]" in text) is with_help


def test_help(a3: Path) -> None:
    rc, text = smi(a3, "info", "-h")
    assert rc == 0 and text.startswith("Usage: npu-smi info <watch|proc|-h|-m|-l|-t type>")
    assert "       -i %d          Card ID" in text


def test_dcmi_failure_without_state_or_when_broken(state_dir: Path, mutate) -> None:
    rc, text = smi(state_dir, "info")
    assert (rc, text) == (1, "dcmi module initialize failed. ret is -8005\n")
    st.init_state("a2", directory=state_dir)
    mutate(lambda s: s["faults"].update(npu_smi_broken=True))
    assert smi(state_dir, "info") == (1, "dcmi module initialize failed. ret is -8005\n")
    assert smi(state_dir, "info", "-m")[0] == 1


def test_runs_as_a_program(a2: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_sim.npu_smi", "info", "-l"],
        capture_output=True,
        text=True,
        cwd=SIM,
        env={"ASCEND_SIM_STATE_DIR": str(a2), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Total Count                    : 8" in proc.stdout


# ---------------------------------------------------------------------------------------------
# Round trip through the collection's own parser (plugins/module_utils/npu_smi.py)


def _parser():
    module = pytest.importorskip("ansible_collections.ascend.vllm.plugins.module_utils.npu_smi")
    return module.parse_npu_smi_info


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    raise KeyError(f"none of {names} in {obj!r}")


@pytest.mark.parametrize("profile", ["a3", "a2"])
@pytest.mark.parametrize("layout", ["classic", "v26"])
def test_round_trip_through_parse_npu_smi_info(state_dir: Path, mutate, profile: str, layout: str) -> None:
    parse = _parser()
    st.init_state(profile, directory=state_dir)
    mutate(lambda s: s.update(npu_smi_layout=layout))
    mutate(lambda s: s["chips"][3].update(health="Critical"))
    mutate(add_foreign)
    lease = st.acquire_chips([0, 1], 40000, owner="vllm", pid=31337, process_name="VLLM", directory=state_dir)
    try:
        _, text = smi(state_dir, "info")
        holders = st.live_holders(state_dir)
        state = st.load_state(state_dir)
    finally:
        lease.release()
    parsed = parse(text)
    chips = _get(parsed, "chips", "devices")
    assert len(chips) == len(state["chips"])
    for got, want in zip(chips, state["chips"]):
        assert _get(got, "npu", "npu_id") == want["npu"]
        assert _get(got, "chip", "chip_id") == want["chip"]
        assert _get(got, "name", "chip_name") == want["name"]
        assert _get(got, "health") == want["health"]
        assert _get(got, "bus_id") == want["bus_id"]
        assert _get(got, "hbm_used_mb", "hbm_used") == st.hbm_used_mb(want, holders)
        assert _get(got, "hbm_total_mb", "hbm_total") == 65536
        if profile == "a3":
            assert _get(got, "phy_id") == want["phy_id"]
    procs = _get(parsed, "processes")
    got_procs = sorted(
        (_get(p, "npu", "npu_id"), _get(p, "chip", "chip_id"), _get(p, "pid"), _get(p, "memory_mb", "memory"))
        for p in procs
    )
    by_id = {c["logic_id"]: c for c in state["chips"]}
    want_procs = sorted(
        (by_id[h["logic_id"]]["npu"], by_id[h["logic_id"]]["chip"], h["pid"], h["memory_mb"]) for h in holders
    )
    assert got_procs == want_procs
