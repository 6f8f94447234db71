"""Chips: ASCEND_RT_VISIBLE_DEVICES against the simulated driver, held while serving."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ascend_sim import state as st
from ascend_sim.vllm import cli

from .vllm_helpers import HOST, Server, base_env, free_port, make_model


@pytest.fixture
def node(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    st.init_state("a3", directory=directory)
    return directory


def serve(model: Path, node: Path, visible: str, *args: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> int:
    """Run ``vllm serve`` in this process (its startup fails before serving, so it returns)."""
    for key, value in base_env(node, ASCEND_RT_VISIBLE_DEVICES=visible, **env).items():
        if key.startswith(("ASCEND", "VLLM")):
            monkeypatch.setenv(key, value)
    return cli.main(["serve", str(model), "--host", HOST, "--port", str(free_port()), *args])


def test_unhealthy_chip_fails_startup_naming_it(
    tmp_path: Path, node: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def alarm(state: dict) -> None:
        state["chips"][3]["health"] = "Alarm"

    st.update_state(alarm, node)
    rc = serve(make_model(tmp_path), node, "2,3", "-tp", "2", monkeypatch=monkeypatch)
    out = capsys.readouterr().err
    assert rc == 1
    assert "chip 3 (NPU 1 chip 1): health is Alarm" in out
    assert "EngineCore failed to start." in out
    assert st.live_holders(node) == []  # nothing left held


def test_chip_held_by_another_process(
    tmp_path: Path, node: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lease = st.acquire_chips([5], 1000, owner="other", pid=os.getpid(), process_name="python3", directory=node)
    try:
        rc = serve(make_model(tmp_path), node, "4,5", "-tp", "2", monkeypatch=monkeypatch)
    finally:
        lease.release()
    out = capsys.readouterr().err
    assert rc == 1
    assert "chip 5 (NPU 2 chip 1) is in use" in out


def test_too_few_visible_chips(
    tmp_path: Path, node: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve(make_model(tmp_path), node, "0,1", "--tensor-parallel-size", "4", monkeypatch=monkeypatch) == 1
    assert "World size (4) is larger than the number of available NPUs (2)" in capsys.readouterr().err
    assert serve(make_model(tmp_path), node, "16", "-tp", "1", monkeypatch=monkeypatch) == 1
    assert "chip 16 does not exist" in capsys.readouterr().err


def test_missing_device_node(
    tmp_path: Path, node: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if Path("/dev/davinci_manager").exists():
        pytest.skip("this machine has Ascend device nodes")
    assert serve(make_model(tmp_path), node, "0", monkeypatch=monkeypatch, ASCEND_SIM_SKIP_DEVICE_CHECK="0") == 1
    assert "/dev/davinci_manager does not exist" in capsys.readouterr().err


def test_chips_held_while_serving_and_released_on_sigterm(tmp_path: Path, node: Path) -> None:
    env = base_env(node, ASCEND_RT_VISIBLE_DEVICES="6,7")
    server = Server(make_model(tmp_path), ["-tp", "2", "--gpu-memory-utilization", "0.5"], env, tmp_path / "log")
    try:
        server.wait_healthy()
        holders = st.live_holders(node)
        assert sorted(h["logic_id"] for h in holders) == [6, 7]
        assert {h["memory_mb"] for h in holders} == {32768}  # 0.5 x 64 GiB
        assert {h["pid"] for h in holders} == {server.proc.pid}
    finally:
        rc = server.stop()
    assert rc == 0
    assert st.live_holders(node) == []
    assert "Shutting down" in server.log()
