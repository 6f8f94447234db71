"""The simulated driver state: profiles, device IPs, chip leases, locking."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ascend_sim import state as st

from .conftest import SIM


def _python(code: str, directory: Path, **kwargs: object) -> subprocess.Popen:
    """Run ``code`` in a fresh interpreter that can import ascend_sim (the process is the holder)."""
    prelude = f"import sys; sys.path.insert(0, {str(SIM)!r})\nfrom pathlib import Path\nD = Path({str(directory)!r})\n"
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code)], text=True, **kwargs)  # type: ignore[call-overload]


def test_state_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ASCEND_SIM_STATE_DIR", raising=False)
    assert st.state_dir() == Path("/usr/local/dcmi/ascend-sim")
    monkeypatch.setenv("ASCEND_SIM_STATE_DIR", str(tmp_path))
    assert st.state_dir() == tmp_path


def test_init_a3_has_16_dies_of_8_npus(state_dir: Path) -> None:
    state = st.init_state("a3", directory=state_dir)
    assert st.load_state(state_dir) == state
    chips = state["chips"]
    assert [c["logic_id"] for c in chips] == list(range(16))
    assert [(c["npu"], c["chip"]) for c in chips[:4]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert chips[15]["npu"] == 7 and chips[15]["chip"] == 1
    assert all(c["name"] == "Ascend910" and c["phy_id"] == c["logic_id"] for c in chips)
    assert all(c["hbm_total_mb"] == 65536 and 2000 < c["hbm_base_mb"] < 5000 for c in chips)
    assert [c["power_w"] is None for c in chips] == [c["chip"] == 1 for c in chips]
    assert {c["health"] for c in chips} == {"OK"}
    assert chips[0]["bus_id"] == "0000:9D:00.0" and chips[1]["bus_id"] == "0000:9F:00.0"
    assert state["npu_smi_layout"] == "classic"
    assert state["driver_version"] == "25.2.0"


def test_init_a2_has_8_single_die_chips(state_dir: Path) -> None:
    state = st.init_state("a2", directory=state_dir)
    chips = state["chips"]
    assert [c["logic_id"] for c in chips] == list(range(8))
    assert [c["npu"] for c in chips] == list(range(8))
    assert {c["chip"] for c in chips} == {0}
    assert all(c["name"] == "910B3" and c["phy_id"] is None and c["power_w"] for c in chips)
    assert len(state["hccn"]) == 8


def test_device_ips_are_one_block_per_node(state_dir: Path) -> None:
    node0 = st.new_state("a3", node_index=0)["hccn"]
    node1 = st.new_state("a3", node_index=1)["hccn"]
    assert [d["ip"] for d in node0] == [f"10.20.0.{10 + i}" for i in range(16)]
    assert [d["ip"] for d in node1] == [f"10.20.1.{10 + i}" for i in range(16)]
    assert {d["netmask"] for d in node0 + node1} == {"255.255.0.0"}
    assert {(d["link"], d["net_health"], d["tls"]) for d in node0} == {("UP", "Success", False)}
    custom = st.new_state("a2", node_index=5, device_ip_base="192.168.7.100")["hccn"]
    assert [d["ip"] for d in custom] == [f"192.168.7.{100 + i}" for i in range(8)]


def test_unknown_profile_and_missing_state(state_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown profile 'a5'"):
        st.init_state("a5", directory=state_dir)
    with pytest.raises(st.StateError, match="no simulated Ascend driver state"):
        st.load_state(state_dir)


def test_acquire_release_and_holder_named(a3: Path) -> None:
    lease = st.acquire_chips([0, 1], 30000, owner="vllm-8000", pid=1234, process_name="VLLM::EngineCore", directory=a3)
    holders = st.live_holders(a3)
    assert [(h["logic_id"], h["pid"], h["memory_mb"], h["owner"]) for h in holders] == [
        (0, 1234, 30000, "vllm-8000"),
        (1, 1234, 30000, "vllm-8000"),
    ]
    with pytest.raises(st.ChipError) as exc:
        st.acquire_chips([1], 1000, owner="other", pid=99, process_name="python3", directory=a3)
    assert str(exc.value) == "chip 1 (NPU 0 chip 1) is in use: pid 1234 (VLLM::EngineCore) holds 30000 MB"
    lease.release()
    lease.release()  # idempotent
    assert st.live_holders(a3) == []
    with st.acquire_chips([1], 1000, owner="other", pid=99, process_name="python3", directory=a3) as again:
        assert again.logic_ids == [1]
    assert st.live_holders(a3) == []


def test_acquire_is_all_or_nothing(a3: Path) -> None:
    held = st.acquire_chips([3], 100, owner="a", pid=1, process_name="p", directory=a3)
    with pytest.raises(st.ChipError, match=r"chip 3 \(NPU 1 chip 1\) is in use"):
        st.acquire_chips([2, 3], 100, owner="b", pid=2, process_name="p", directory=a3)
    assert [h["logic_id"] for h in st.live_holders(a3)] == [3]
    held.release()


def test_acquire_refuses_missing_unhealthy_foreign_and_full_chips(a3: Path, mutate) -> None:
    def faults(state: dict) -> None:
        state["chips"][3]["health"] = "Critical"
        state["faults"]["foreign_processes"].append(
            {"logic_id": 5, "pid": 4242, "process_name": "python3", "memory_mb": 30000}
        )

    mutate(faults)
    cases = {
        17: "chip 17 does not exist: this A3 node has chips 0-15",
        3: "chip 3 (NPU 1 chip 1): health is Critical",
        5: "chip 5 (NPU 2 chip 1) is in use: pid 4242 (python3) holds 30000 MB",
    }
    for logic_id, message in cases.items():
        with pytest.raises(st.ChipError) as exc:
            st.acquire_chips([logic_id], 1000, owner="v", pid=7, process_name="p", directory=a3)
        assert str(exc.value) == message
    with pytest.raises(st.ChipError, match=r"chip 0 \(NPU 0 chip 0\): out of memory: 65000 MB requested"):
        st.acquire_chips([0], 65000, owner="v", pid=7, process_name="p", directory=a3)
    foreign = [h for h in st.live_holders(a3) if h["foreign"]]
    assert foreign == [
        {
            "logic_id": 5,
            "pid": 4242,
            "container_pid": 4242,
            "process_name": "python3",
            "memory_mb": 30000,
            "owner": "foreign",
            "in_container": False,
            "foreign": True,
        }
    ]


def test_a2_chip_label_has_no_die(a2: Path) -> None:
    message = r"^chip 6 \(NPU 6\) is in use: pid 5 \(p\) holds 10 MB$"
    with (
        st.acquire_chips([6], 10, owner="x", pid=5, process_name="p", directory=a2),
        pytest.raises(st.ChipError, match=message),
    ):
        st.acquire_chips([6], 10, owner="y", pid=6, process_name="q", directory=a2)


def test_lease_of_a_dead_process_is_stale(a3: Path) -> None:
    proc = _python(
        """
        from ascend_sim import state as st
        st.acquire_chips([4, 5], 20000, owner="dead", pid=4321, process_name="VLLM", directory=D)
        """,
        a3,
    )
    assert proc.wait(timeout=10) == 0
    assert len(list((a3 / "leases").glob("*.json"))) == 1  # never released ...
    assert st.live_holders(a3) == []  # ... but its holder is gone
    assert list((a3 / "leases").glob("*.json")) == []  # and the stale file was removed
    st.acquire_chips([4, 5], 20000, owner="new", pid=1, process_name="p", directory=a3).release()


def test_lease_of_a_live_process_blocks_until_it_dies(a3: Path) -> None:
    proc = _python(
        """
        import os, sys
        from ascend_sim import state as st
        st.acquire_chips([6], 20000, owner="alive", pid=os.getpid(), process_name="VLLM", directory=D)
        print("held", flush=True)
        sys.stdin.readline()
        """,
        a3,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(st.ChipError, match=rf"chip 6 \(NPU 3 chip 0\) is in use: pid {proc.pid} \(VLLM\)"):
            st.acquire_chips([6], 10, owner="x", pid=1, process_name="p", directory=a3)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    st.acquire_chips([6], 10, owner="x", pid=1, process_name="p", directory=a3).release()


def test_update_state_serialises_concurrent_writers(a2: Path) -> None:
    code = """
        from ascend_sim import state as st
        def bump(s):
            s["counter"] = s.get("counter", 0) + 1
        for _ in range(25):
            st.update_state(bump, D)
        """
    procs = [_python(code, a2) for _ in range(4)]
    assert [p.wait(timeout=30) for p in procs] == [0, 0, 0, 0]
    assert st.load_state(a2)["counter"] == 100
    assert json.loads((a2 / "state.json").read_text())["profile"] == "a2"


def test_update_state_does_not_write_when_the_mutator_fails(a2: Path) -> None:
    def boom(state: dict) -> None:
        state["chips"][0]["health"] = "Critical"
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        st.update_state(boom, a2)
    assert st.load_state(a2)["chips"][0]["health"] == "OK"


def test_render_version_info_and_hccn_conf() -> None:
    info = st.render_version_info("25.2.0")
    assert info.startswith("Version=25.2.0\n")
    assert "package_version=25.2.0\n" in info
    conf = st.render_hccn_conf(st.new_state("a2", node_index=1))
    lines = conf.splitlines()
    assert lines[:3] == ["address_0=10.20.1.10", "netmask_0=255.255.0.0", "netdetect_0=10.20.0.1"]
    assert sum(line.startswith("address_") for line in lines) == 8
    assert "address_7=10.20.1.17" in lines


def test_dropping_the_lease_object_keeps_the_chips(a3: Path) -> None:
    st.acquire_chips([7], 10, owner="x", pid=5, process_name="p", directory=a3)
    import gc

    gc.collect()
    assert [h["logic_id"] for h in st.live_holders(a3)] == [7]


def test_holder_in_another_pid_namespace_shows_both_pids(a3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    real_ns = st._pid_namespace()
    monkeypatch.setattr(st, "_pid_namespace", lambda: "pid:[4026530000]")  # the "container"
    lease = st.acquire_chips([8], 10, owner="x", pid=7, process_name="VLLM", directory=a3)
    monkeypatch.setattr(st, "_pid_namespace", lambda: real_ns)  # npu-smi on the node
    try:
        (holder,) = st.live_holders(a3)
        assert holder["in_container"] is True
        assert holder["container_pid"] == 7
        assert holder["pid"] == os.getpid()  # what the kernel reports for the flock in /proc/locks
    finally:
        lease.release()
