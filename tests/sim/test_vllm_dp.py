"""External data parallel: the ranks of a group wait for each other before serving."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ascend_sim import state as st
from ascend_sim.vllm import dp
from ascend_sim.vllm.config import StartupError

from .vllm_helpers import HOST, InProcessServer, captured_logs, free_port, http, make_model, sim_environ


def rank_args(rank: int, size: int, rpc_port: int) -> list[str]:
    return [
        "-tp", "2", "--data-parallel-size", str(size), "--data-parallel-rank", str(rank),
        "--data-parallel-address", HOST, "--data-parallel-rpc-port", str(rpc_port),
    ]  # fmt: skip


def test_group_serves_only_when_every_rank_joined(tmp_path: Path) -> None:
    node = tmp_path / "state"
    st.init_state("a3", directory=node)
    model = make_model(tmp_path)
    rpc = free_port()
    with sim_environ(), captured_logs() as logs:
        rank0 = InProcessServer(model, rank_args(0, 2, rpc), chips=[0, 1], state_dir=node, wait=False)
        rank1 = None
        try:
            deadline = time.monotonic() + 5
            while "Waiting for DP rank(s) [1] to join the data parallel group" not in logs.getvalue():
                assert time.monotonic() < deadline, logs.getvalue()
                time.sleep(0.02)
            time.sleep(0.4)  # twice the 0.2 s load time: still nothing
            assert not rank0.port_open()
            assert not rank0.started.done()
            assert "Application startup complete." not in logs.getvalue()
            rank1 = InProcessServer(model, rank_args(1, 2, rpc), chips=[2, 3], state_dir=node, wait=False)
            rank0.started.result(10)
            rank1.started.result(10)
            for rank, server in enumerate((rank0, rank1)):
                assert http(server.url + "/health")[0] == 200
                # vLLM labels an external DP rank's metrics with the engine core it manages: its rank
                metrics = http(server.url + "/metrics")[2].decode()
                assert f'vllm:num_requests_running{{engine="{rank}",model_name=' in metrics
            assert "All 2 data parallel engines are up" in logs.getvalue()
            assert sorted(h["logic_id"] for h in st.live_holders(node)) == [0, 1, 2, 3]
        finally:
            rank0.stop()
            if rank1 is not None:
                rank1.stop()
    assert st.live_holders(node) == []


def test_rank_without_its_master_keeps_waiting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VLLM_SIM_DP_LOG_INTERVAL", "0.05")

    async def attempt() -> None:
        await asyncio.wait_for(dp.handshake(HOST, free_port(), 2, [1]), 0.4)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(attempt())
    assert "Waiting for DP rank 0 (data parallel master) at 127.0.0.1:" in capsys.readouterr().err


def test_group_checks_sizes_and_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_SIM_DP_LOG_INTERVAL", "0.05")
    port = free_port()

    async def group() -> list[object]:
        master = asyncio.ensure_future(dp.handshake(HOST, port, 3, [0]))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(
            dp.handshake(HOST, port, 4, [1]),  # wrong size
            return_exceptions=True,
        )
        links = await asyncio.gather(
            dp.handshake(HOST, port, 3, [1]), dp.handshake(HOST, port, 3, [2]), master, return_exceptions=True
        )
        # The group stays linked: rank 2 leaving is noticed by rank 0 and, through it, by rank 1.
        one, two, zero = links
        assert isinstance(one, dp.GroupLink) and isinstance(two, dp.GroupLink) and isinstance(zero, dp.GroupLink)
        assert not (one.broken.is_set() or two.broken.is_set() or zero.broken.is_set())
        # What the DP coordinator spreads: rank 2 has requests, a wave runs on every rank.
        two.announce_busy(True)
        while not (one.busy == {2} and zero.busy == {2}):
            await asyncio.sleep(0.01)
        two.close()
        await asyncio.wait_for(asyncio.gather(one.broken.wait(), zero.broken.wait()), 2)
        assert one.stuck_at_loss and zero.stuck_at_loss  # lost mid-wave
        lost = (one.lost, zero.lost)
        one.close()
        zero.close()
        await asyncio.sleep(0.05)
        return [*results, lost]

    wrong, lost = asyncio.run(asyncio.wait_for(group(), 5))
    assert isinstance(wrong, StartupError)
    assert "data_parallel_size mismatch: rank 0 has 3, the joining engine has 4" in wrong.message
    assert lost == ([2], [2])


def test_rank0_needs_a_local_address() -> None:
    with pytest.raises(StartupError) as info:
        asyncio.run(dp.handshake("192.0.2.1", free_port(), 2, [0]))  # TEST-NET-1: never local, never contacted
    assert "data parallel master cannot listen on 192.0.2.1:" in info.value.message
