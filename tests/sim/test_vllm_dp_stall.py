"""A DP group of a MoE model that loses a rank: the others stall, then die of the collective timeout.

Real ``vllm serve`` processes (one per rank, external DP as the plan deploys them), killed with
SIGKILL like a container that is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from ascend_sim import state as st
from ascend_sim.vllm.engine import EngineDeadError

from .vllm_helpers import MODEL_NAME, Server, base_env, free_port, http, make_model, post_json

# Short but distinguishable: a request must outlive a stall clearly shorter than this.
COLLECTIVE_TIMEOUT = 2.0
WATCHDOG = 0.3


def start_group(
    tmp_path: Path,
    model: Path,
    node: Path,
    rpc_port: int,
    tag: str,
    ranks: Tuple[int, ...] = (0, 1),
    extra_args: Tuple[str, ...] | List[str] = (),
    **extra_env: str,
) -> Dict[int, Server]:
    servers: Dict[int, Server] = {}
    for rank in ranks:
        chips = f"{2 * rank},{2 * rank + 1}"
        env = base_env(
            node,
            ASCEND_RT_VISIBLE_DEVICES=chips,
            HCCL_EXEC_TIMEOUT=str(COLLECTIVE_TIMEOUT),
            VLLM_SIM_WATCHDOG_SECONDS=str(WATCHDOG),
            VLLM_SIM_DECODE_S_PER_TOKEN="0.01",
            **extra_env,
        )
        args = [
            "--served-model-name", MODEL_NAME, "-tp", "2", "--enable-expert-parallel",
            "--data-parallel-size", "2", "--data-parallel-rank", str(rank),
            "--data-parallel-address", "127.0.0.1", "--data-parallel-rpc-port", str(rpc_port),
            *extra_args,
        ]  # fmt: skip
        servers[rank] = Server(model, args, env, tmp_path / f"{tag}-rank{rank}.log")
    return servers


def completion(server: Server, max_tokens: int = 8, timeout: float = 30) -> Tuple[int, Any]:
    body = {"model": MODEL_NAME, "prompt": "a prompt", "max_tokens": max_tokens, "ignore_eos": True}
    return post_json(server.url + "/v1/completions", body, timeout=timeout)


def stop_all(servers: List[Server]) -> None:
    for server in servers:
        server.stop()


@pytest.mark.parametrize("dead_rank", [1, 0], ids=["member-dies", "rank0-dies"])
def test_group_stalls_then_dies_when_a_rank_is_killed(tmp_path: Path, dead_rank: int) -> None:
    node = tmp_path / "state"
    st.init_state("a3", directory=node)
    model = make_model(tmp_path)
    rpc = free_port()
    survivor_rank = 1 - dead_rank
    group = start_group(tmp_path, model, node, rpc, "first")
    lone: List[Server] = []
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        for server in group.values():
            server.wait_healthy()
        for server in group.values():
            assert completion(server)[0] == 200
        survivor, dead = group[survivor_rank], group[dead_rank]

        # A long request is running on the survivor when its peer's container is killed.
        in_flight: Future[Tuple[int, Any]] = pool.submit(completion, survivor, 2000)
        time.sleep(0.3)
        assert not in_flight.done()
        dead.proc.send_signal(signal.SIGKILL)
        dead.proc.wait(5)
        killed_at = time.monotonic()

        # The dead rank restarted alone cannot rejoin: it waits for its group and never serves.
        lone.append(start_group(tmp_path, model, node, rpc, "lone", ranks=(dead_rank,))[dead_rank])

        # The survivor stalls: its /health still says 200, its requests make no progress.
        fresh: Future[Tuple[int, Any]] = pool.submit(completion, survivor, 4)
        time.sleep(COLLECTIVE_TIMEOUT / 2)
        assert http(survivor.url + "/health")[0] == 200
        assert not in_flight.done() and not fresh.done()
        assert survivor.proc.poll() is None

        # HCCL_EXEC_TIMEOUT later the collective fails and the engine core dies with it.
        for request in (in_flight, fresh):
            status, answer = request.result(COLLECTIVE_TIMEOUT + 10)
            assert status == 500 and "EngineCore" in answer["error"]["message"], answer
        assert time.monotonic() - killed_at >= COLLECTIVE_TIMEOUT - 0.1
        log = survivor.log()
        assert "notify wait timeout occurred during task execution" in log
        assert f"DP rank(s) [{dead_rank}] of the data parallel group are gone" in log
        # ... and vLLM's watchdog shuts the API server down (exit code 0, as upstream).
        assert survivor.proc.wait(10) == 0
        assert "Shutting down FastAPI HTTP server." in survivor.log()

        assert lone[0].proc.poll() is None and not lone[0].port_open()
        assert "Application startup complete." not in lone[0].log()
        waiting = "Waiting for DP rank 0" if dead_rank else "Waiting for DP rank(s) [1] to join"
        assert waiting in lone[0].log()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_all(list(group.values()) + lone)

    # Restarting the whole group brings it back.
    group = start_group(tmp_path, model, node, rpc, "again")
    try:
        for server in group.values():
            server.wait_healthy()
        for server in group.values():
            status, answer = completion(server)
            assert status == 200 and answer["usage"]["completion_tokens"] == 8
    finally:
        stop_all(list(group.values()))
    assert st.live_holders(node) == []


def kv_consumer_config() -> str:
    """A decode instance's ``--kv-transfer-config`` (Mooncake, simulated)."""
    sides = {"dp_size": 2, "tp_size": 2}
    return json.dumps(
        {
            "kv_connector": "MooncakeConnectorV1",
            "kv_role": "kv_consumer",
            "kv_port": str(free_port()),
            "engine_id": "decode0",
            "kv_connector_extra_config": {"use_ascend_direct": True, "prefill": sides, "decode": sides},
        }
    )


@pytest.mark.parametrize("decode", [False, True], ids=["gloo-allreduce-first", "kv-consumer-mc2"])
def test_idle_survivor_notices_nothing_until_a_request_comes(tmp_path: Path, decode: bool) -> None:
    """No forward pass, no collective: an idle rank outlives the timeout, healthy. Its first request
    then fails at once where the pass starts with the Gloo DP all-reduce (the dead peer's socket is
    closed), and stalls until HCCL_EXEC_TIMEOUT on a decode rank, which skips that all-reduce."""
    node = tmp_path / "state"
    st.init_state("a3", directory=node)
    extra = ["--kv-transfer-config", kv_consumer_config()] if decode else []
    group = start_group(tmp_path, make_model(tmp_path), node, free_port(), "idle", extra_args=extra)
    try:
        for server in group.values():
            server.wait_healthy()
        group[1].proc.send_signal(signal.SIGKILL)
        group[1].proc.wait(5)
        time.sleep(COLLECTIVE_TIMEOUT + 2 * WATCHDOG)
        survivor = group[0]
        assert survivor.proc.poll() is None and http(survivor.url + "/health")[0] == 200
        start = time.monotonic()
        status, _ = completion(survivor, timeout=COLLECTIVE_TIMEOUT + 10)
        took = time.monotonic() - start
        assert status == 500
        if decode:
            assert took >= COLLECTIVE_TIMEOUT - 0.1
            assert "notify wait timeout occurred during task execution" in survivor.log()
        else:
            assert took < COLLECTIVE_TIMEOUT / 2
            assert "Connection closed by peer (DP rank(s) [1]" in survivor.log()
        assert survivor.proc.wait(10) == 0
    finally:
        stop_all(list(group.values()))


def test_idle_survivor_of_a_busy_group_dies_without_a_request(tmp_path: Path) -> None:
    """Mid-wave the idle rank runs dummy batches with the busy one: killing the busy one strands it."""
    node = tmp_path / "state"
    st.init_state("a3", directory=node)
    group = start_group(tmp_path, make_model(tmp_path), node, free_port(), "wave")
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        for server in group.values():
            server.wait_healthy()
        busy: Future[Tuple[int, Any]] = pool.submit(completion, group[1], 2000)
        time.sleep(0.3)  # the wave has reached rank 0
        assert not busy.done()
        group[1].proc.send_signal(signal.SIGKILL)
        group[1].proc.wait(5)
        survivor = group[0]
        time.sleep(COLLECTIVE_TIMEOUT / 2)
        assert survivor.proc.poll() is None and http(survivor.url + "/health")[0] == 200
        assert survivor.proc.wait(COLLECTIVE_TIMEOUT + 10) == 0  # no request of its own was needed
        assert "notify wait timeout occurred during task execution" in survivor.log()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_all(list(group.values()))


def test_keep_alive_on_engine_death_keeps_answering(tmp_path: Path) -> None:
    """``VLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1``: the dead engine's server stays up and answers 503."""
    node = tmp_path / "state"
    st.init_state("a3", directory=node)
    group = start_group(tmp_path, make_model(tmp_path), node, free_port(), "keep", VLLM_KEEP_ALIVE_ON_ENGINE_DEATH="1")
    try:
        for server in group.values():
            server.wait_healthy()
        group[1].proc.send_signal(signal.SIGKILL)
        group[1].proc.wait(5)
        survivor = group[0]
        assert completion(survivor, timeout=COLLECTIVE_TIMEOUT + 10)[0] == 500
        time.sleep(3 * WATCHDOG)
        assert survivor.proc.poll() is None
        assert http(survivor.url + "/health")[0] == 503
        assert completion(survivor)[0] == 500
    finally:
        stop_all(list(group.values()))


def test_hccl_exec_timeout_zero_never_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CANN: ``HCCL_EXEC_TIMEOUT=0`` means no timeout -- the stalled engine hangs for good."""
    from ascend_sim.vllm.config import build_config
    from ascend_sim.vllm.dp import GroupLink
    from ascend_sim.vllm.engine import Engine, Job
    from ascend_sim.vllm.metrics import Metrics
    from ascend_sim.vllm.options import parse_serve_args

    monkeypatch.setenv("HCCL_EXEC_TIMEOUT", "0")
    monkeypatch.setenv("VLLM_SIM_PREFILL_S_PER_TOKEN", "0")
    monkeypatch.setenv("VLLM_SIM_DECODE_S_PER_TOKEN", "0")
    cfg = build_config(parse_serve_args([str(make_model(tmp_path)), "--data-parallel-size", "2"]))

    async def scenario() -> Tuple[bool, bool]:
        engine = Engine(cfg, Metrics(MODEL_NAME))
        engine.group = GroupLink(2, [0])
        job = Job("cmpl-1", "p", ["p"], ["a", "b"], "length")
        assert [token async for token in engine.generate(job)] == ["a", "b"]  # a whole group serves
        engine.group.mark_busy([1], True)  # mid-wave: the pass in flight is inside HCCL
        engine.group.lose([1])
        stalled = asyncio.ensure_future(_drain(engine, Job("cmpl-2", "p", ["p"], ["a", "b"], "length")))
        await asyncio.sleep(0.5)
        hanging = not stalled.done() and not engine.dead
        engine.kill()  # what ends the hang: the operator, not a timeout
        with contextlib.suppress(EngineDeadError):
            await stalled
        return hanging, engine.metrics.running == 0

    hanging, released = asyncio.run(scenario())
    assert hanging and released


async def _drain(engine: Any, job: Any) -> List[str]:
    return [token async for token in engine.generate(job)]
