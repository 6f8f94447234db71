"""ascend-sim-fault: each subcommand's effect on the state, the node and the fake tools."""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from ascend_sim import faults, npu_smi
from ascend_sim import state as st


def fault(directory: Path, *args: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        rc = faults.run(["--state-dir", str(directory), *args], out, err)
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def ok(directory: Path, *args: str) -> str:
    rc, out, err = fault(directory, *args)
    assert rc == 0, err
    assert out.count("\n") == 1, out  # one line saying what changed
    return out.strip()


def smi(directory: Path, *args: str) -> str:
    out = io.StringIO()
    npu_smi.run(list(args), out, out, directory)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def can_bind(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X")


def test_init(state_dir: Path, tmp_path: Path) -> None:
    line = ok(
        state_dir,
        "init",
        "a3",
        "--node-index",
        "2",
        "--hccn-conf",
        str(tmp_path / "hccn.conf"),
        "--version-info",
        str(tmp_path / "version.info"),
    )
    assert line.startswith("initialised A3 node 2: 16 chips, device IPs 10.20.2.10-10.20.2.25")
    assert st.load_state(state_dir)["node_index"] == 2
    assert "address_15=10.20.2.25" in (tmp_path / "hccn.conf").read_text()
    assert (tmp_path / "version.info").read_text().startswith("Version=25.2.0\n")


def test_chip_health(a3: Path) -> None:
    assert ok(a3, "chip-health", "3", "Critical") == "chip 3 (NPU 1 chip 1): health OK -> Critical"
    assert st.load_state(a3)["chips"][3]["health"] == "Critical"
    assert "| 1     Ascend910           | Critical      |" in smi(a3, "info")
    with pytest.raises(st.ChipError, match="health is Critical"):
        st.acquire_chips([3], 10, owner="v", pid=1, process_name="p", directory=a3)
    rc, _, err = fault(a3, "chip-health", "16", "OK")
    assert rc == 1 and "chip 16 does not exist: this A3 node has chips 0-15" in err
    assert fault(a3, "chip-health", "0", "Broken")[0] == 2


def test_hbm_holder(a2: Path) -> None:
    line = ok(a2, "hbm-holder", "5", "30000", "--pid", "777", "--name", "train.py")
    assert line == "chip 5 (NPU 5): foreign process pid 777 (train.py) now holds 30000 MB"
    assert "| 5       0                 | 777           | train.py                 | 30000" in smi(a2, "info")
    assert "| 0                         | 0000:02:00.0  | 0           0    / 0          33382/ 65536" in smi(a2, "info")
    with pytest.raises(st.ChipError, match=r"chip 5 \(NPU 5\) is in use: pid 777 \(train.py\) holds 30000 MB"):
        st.acquire_chips([5], 10, owner="v", pid=1, process_name="p", directory=a2)
    assert ok(a2, "hbm-holder", "5", "1000").endswith("pid 4243 (python3) now holds 1000 MB")
    rc, _, err = fault(a2, "hbm-holder", "5", "40000")
    assert rc == 1 and "cannot hold 40000 MB" in err
    assert ok(a2, "hbm-release", "5") == "chip 5 (NPU 5): removed 2 foreign process(es)"
    assert st.live_holders(a2) == []


def test_link_and_net_health(a3: Path) -> None:
    assert ok(a3, "link", "4", "DOWN") == "device 4 (10.20.0.14): link UP -> DOWN"
    assert (
        ok(a3, "net-health", "4", "Receive", "timeout")
        == "device 4 (10.20.0.14): net health Success -> Receive timeout"
    )
    dev = st.load_state(a3)["hccn"][4]
    assert (dev["link"], dev["net_health"]) == ("DOWN", "Receive timeout")
    rc, _, err = fault(a3, "net-health", "4", "Broken")
    assert rc == 1 and "unknown net health status 'Broken'" in err
    rc, _, err = fault(a3, "link", "16", "UP")
    assert rc == 1 and "device 16 does not exist" in err


def test_unreachable(a3: Path) -> None:
    assert ok(a3, "unreachable", "10.20.1.10") == "peer 10.20.1.10: now unreachable from this node's devices"
    ok(a3, "unreachable", "10.20.1.10")
    assert st.load_state(a3)["faults"]["unreachable"] == ["10.20.1.10"]
    assert ok(a3, "reachable", "10.20.1.10") == "peer 10.20.1.10: reachable again"
    assert st.load_state(a3)["faults"]["unreachable"] == []


def test_port_hold_and_release(a2: Path) -> None:
    port = free_port()
    line = ok(a2, "port-hold", str(port))
    pid = st.load_state(a2)["faults"]["port_holders"][str(port)]
    assert line == f"port {port}: now held by a listener on 0.0.0.0:{port} (pid {pid})"
    try:
        assert alive(pid)
        assert not can_bind(port)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        assert ok(a2, "port-hold", str(port)) == f"port {port}: already held by pid {pid}"
    finally:
        assert ok(a2, "port-release", str(port)) == f"port {port}: released (stopped pid {pid})"
    deadline = time.monotonic() + 3
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid)
    assert can_bind(port)
    assert st.load_state(a2)["faults"]["port_holders"] == {}
    assert ok(a2, "port-release", str(port)) == f"port {port}: was not held"


def test_port_hold_refuses_a_port_in_use(a2: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        rc, _, err = fault(a2, "port-hold", str(busy.getsockname()[1]))
    assert rc == 1 and "already in use on this node" in err


def test_weights_missing_and_restore(a2: Path, tmp_path: Path) -> None:
    weights = tmp_path / "models" / "MiniMax-M2"
    weights.mkdir(parents=True)
    (weights / "config.json").write_text("{}")
    assert ok(a2, "weights-missing", str(weights)) == f"weights {weights}: hidden as {weights}.sim-hidden"
    assert not weights.exists() and (tmp_path / "models" / "MiniMax-M2.sim-hidden" / "config.json").exists()
    assert st.load_state(a2)["faults"]["hidden_weights"] == [str(weights)]
    assert ok(a2, "weights-missing", str(weights)) == f"weights {weights}: already hidden"
    assert ok(a2, "weights-restore", str(weights)) == f"weights {weights}: restored"
    assert (weights / "config.json").exists()
    assert st.load_state(a2)["faults"]["hidden_weights"] == []
    rc, _, err = fault(a2, "weights-missing", str(tmp_path / "nope"))
    assert rc == 1 and "no such file or directory" in err


def test_driver_version(a3: Path, tmp_path: Path) -> None:
    target = tmp_path / "driver" / "version.info"  # $ASCEND_SIM_VERSION_INFO of the fixture
    assert ok(a3, "driver-version", "23.0.3") == f"driver version 25.2.0 -> 23.0.3 (wrote {target})"
    assert target.read_text().startswith("Version=23.0.3\n")
    assert "Version: 23.0.3" in smi(a3, "info").splitlines()[1]
    assert "Software Version               : 23.0.3" in smi(a3, "info", "-t", "board", "-i", "0")
    other = tmp_path / "other.info"
    ok(a3, "driver-version", "24.1.0", "--version-info", str(other))
    assert other.read_text().startswith("Version=24.1.0\n")
    assert st.load_state(a3)["faults"]["original_driver_version"] == "25.2.0"


def test_npu_smi_broken_and_layout(a2: Path) -> None:
    ok(a2, "npu-smi-broken", "on")
    assert smi(a2, "info") == "dcmi module initialize failed. ret is -8005\n"
    assert ok(a2, "npu-smi-broken", "off") == "npu-smi: working again"
    assert smi(a2, "info").startswith("+---")
    assert ok(a2, "layout", "v26") == "npu-smi layout classic -> v26"
    assert "Process id in container" in smi(a2, "info")
    ok(a2, "layout", "classic")
    assert "Process id in container" not in smi(a2, "info")


def test_show(a2: Path) -> None:
    ok(a2, "hbm-holder", "1", "100")
    rc, out, _ = fault(a2, "show")
    assert rc == 0
    shown = json.loads(out)
    assert shown["profile"] == "a2" and len(shown["chips"]) == 8
    assert [h["pid"] for h in shown["live_holders"]] == [4242]


def test_clear_restores_everything(a3: Path, tmp_path: Path) -> None:
    weights = tmp_path / "w"
    weights.mkdir()
    port = free_port()
    setup: List[List[str]] = [
        ["chip-health", "2", "Alarm"],
        ["hbm-holder", "3", "100"],
        ["link", "1", "DOWN"],
        ["net-health", "2", "Fault"],
        ["unreachable", "10.20.1.10"],
        ["port-hold", str(port)],
        ["weights-missing", str(weights)],
        ["driver-version", "23.0.3"],
        ["npu-smi-broken", "on"],
        ["layout", "v26"],
    ]
    for args in setup:
        ok(a3, *args)
    pid = st.load_state(a3)["faults"]["port_holders"][str(port)]
    line = ok(a3, "clear")
    assert line.startswith("cleared: chip 2 health, 1 foreign process(es), device 1 network, device 2 network")
    assert f"port {port}" in line and f"weights {weights}" in line and "driver version 25.2.0" in line
    state = st.load_state(a3)
    assert {c["health"] for c in state["chips"]} == {"OK"}
    assert {(d["link"], d["net_health"]) for d in state["hccn"]} == {("UP", "Success")}
    assert state["faults"] == st.default_faults()
    assert state["driver_version"] == "25.2.0"
    assert (tmp_path / "driver" / "version.info").read_text().startswith("Version=25.2.0\n")
    assert weights.is_dir()
    deadline = time.monotonic() + 3
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid) and can_bind(port)
    assert state["npu_smi_layout"] == "v26"  # the layout is the tool's version, not a fault
    assert ok(a3, "clear") == "cleared: nothing to clear"


def test_missing_state_is_an_error(state_dir: Path) -> None:
    rc, _, err = fault(state_dir, "chip-health", "0", "OK")
    assert rc == 1 and "no simulated Ascend driver state" in err


def test_main_returns_argparse_exit_code() -> None:
    assert faults.main(["bogus"]) == 2
