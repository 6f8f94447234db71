"""One simulated engine: queueing, the latency model, prefix cache, metrics and the KV hand-off.

Latency model (environment, seconds; both may be 0, e.g. for proxy benchmarks):

- ``VLLM_SIM_PREFILL_S_PER_TOKEN`` (default 0.00005): prefill time = this x the prompt tokens
  not found in the prefix cache. A decode whose KV came from a prefill instance skips it
  (it pays the TCP pull instead).
- ``VLLM_SIM_DECODE_S_PER_TOKEN`` (default 0.02): the time between two output tokens (one
  decode step; the running requests step together, as in a batch).
- ``VLLM_SIM_SPEC_ACCEPTANCE`` (default 0.7): with ``--speculative-config``, the chance that
  each draft token is accepted (a draft position counts only if every earlier one was). A
  decode step verifies ``num_speculative_tokens`` drafts, and the accepted ones are its next
  tokens, counted in vLLM's spec-decode metrics. The timing stays one token per step: vLLM
  streams a step's tokens as one event, the simulator's API one event per token, so emitting
  them at once would show as zero inter-token latencies that real vLLM never reports.

At most ``--max-num-seqs`` requests run at once; the others wait (``num_requests_waiting``).

Data parallelism: the ranks of a DP group of a MoE model (every model the simulator knows is
one) run each forward pass together, so a rank that is gone (``dp.GroupLink.lost``) breaks
the group, and how this engine notices depends on where its next forward pass waits:

- on HCCL (the MoE token exchange across the expert-parallel group): forever -- running and
  new requests stall and ``/health`` still answers 200 -- until HCCL aborts the collective after
  ``HCCL_EXEC_TIMEOUT`` seconds (CANN's default 1836; 0 = never, as in CANN; vLLM-Ascend raises
  ``VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS`` above it so that HCCL fires first). That is every pass
  in flight when the rank is lost, and every pass of a KV-consumer (decode) rank, whose
  vLLM-Ascend model runner skips the per-step DP all-reduce (MC2);
- on the per-step all-reduce of the batch metadata over the DP group's Gloo (TCP) group, which
  vLLM-Ascend does first in every pass of the other ranks: Gloo already saw the dead process's
  connection close, so that pass fails at once ("Connection closed by peer").

Either way the engine core dies of it: every request fails, ``/health`` is 503 and the server
exits (``serve``). The group runs in waves, as with vLLM's DP coordinator: while any rank has
requests every rank runs forward passes (dummy batches when it has none), so a rank lost
mid-wave leaves even an idle survivor stuck in HCCL at once; a rank lost while the whole group
is idle goes unnoticed until the next request.

The prefix cache (on unless ``--no-enable-prefix-caching``) remembers prompt blocks of
``--block-size`` tokens (hash-chained, LRU, bounded); a hit is reported in
``usage.prompt_tokens_details.cached_tokens`` with ``--enable-prompt-tokens-details``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ascend_sim.vllm import kv, logs
from ascend_sim.vllm.config import ServeConfig
from ascend_sim.vllm.dp import GroupLink
from ascend_sim.vllm.metrics import Metrics
from ascend_sim.vllm.tokens import digest

log = logs.get_logger("core.py", proc="EngineCore")
worker_log = logs.get_logger("multiproc_executor.py", proc="Worker")

HCCL_EXEC_TIMEOUT_DEFAULT = 1836.0  # seconds, CANN's default on Atlas A2/A3
ENGINE_DEAD_MESSAGE = "EngineCore encountered an issue. See stack trace (above) for the root cause."


class EngineDeadError(Exception):
    """The (simulated) engine core died: requests fail, /health is 503."""


def _env_float(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


class PrefixCache:
    """Which prompt blocks this engine has computed before (hash chain per block, LRU)."""

    def __init__(self, block_size: int, capacity_blocks: int = 200_000) -> None:
        self.block_size = block_size
        self.capacity = capacity_blocks
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def match_and_insert(self, tokens: list[str]) -> int:
        """Tokens of ``tokens`` already cached (whole blocks, never the last token)."""
        bs = self.block_size
        usable = (max(0, len(tokens) - 1) // bs) * bs
        cached = 0
        matching = True
        chain = 0
        for start in range(0, (len(tokens) // bs) * bs, bs):
            chain = hash((chain, tuple(tokens[start : start + bs])))
            if matching and chain in self._blocks and start + bs <= usable:
                self._blocks.move_to_end(chain)
                cached = start + bs
            else:
                matching = False
                self._blocks[chain] = None
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)
        return cached


@dataclass
class Job:
    """One request as the engine sees it."""

    request_id: str  # internal id (the external id + a random suffix, as vLLM does)
    prompt: str
    prompt_tokens: list[str]
    output: list[str]
    finish_reason: str
    kv_params: dict[str, Any] | None = None
    cached_tokens: int = 0
    kv_out: dict[str, Any] | None = None
    remote_prefill: bool = False
    arrival: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None


class Engine:
    def __init__(self, cfg: ServeConfig, metrics: Metrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.dead = False
        self.died = asyncio.Event()
        self.group: GroupLink | None = None  # see join_group()
        self._stuck_collective: asyncio.Future[None] | None = None
        self._group_watch: asyncio.Future[None] | None = None
        self._active = 0  # requests inside generate(), waiting or running
        # vLLM-Ascend skips the per-step DP metadata all-reduce (Gloo) on KV-consumer ranks of a
        # MoE model (MC2 decode); every other rank does it first in each forward pass.
        self._dp_allreduce_per_step = not (cfg.kv_transfer is not None and cfg.kv_transfer.is_consumer)
        self.prefill_s = _env_float("VLLM_SIM_PREFILL_S_PER_TOKEN", 0.00005)
        self.decode_s = _env_float("VLLM_SIM_DECODE_S_PER_TOKEN", 0.02)
        self.spec_acceptance = min(1.0, _env_float("VLLM_SIM_SPEC_ACCEPTANCE", 0.7))
        self._slots = asyncio.Semaphore(cfg.max_num_seqs)
        self._step_waiters: list[asyncio.Future[None]] = []
        self._ranks = itertools.cycle(cfg.local_dp_ranks)
        self.prefix_cache = PrefixCache(cfg.block_size) if cfg.enable_prefix_caching else None
        self.kv_store: kv.KVStore | None = None
        self.kv_host = kv.advertised_host()
        self.side_channels: list[kv.SideChannel] = []
        if cfg.kv_transfer is not None and cfg.kv_transfer.simulated and cfg.kv_transfer.is_producer:
            self.kv_store = kv.KVStore(cfg.tensor_parallel_size)

    # -- KV side channels ------------------------------------------------------------------

    async def start_kv(self) -> None:
        """Open the Mooncake handshake ports of every local DP rank (producers serve pulls)."""
        transfer = self.cfg.kv_transfer
        if transfer is None or not transfer.simulated:
            return
        tp = self.cfg.tensor_parallel_size
        for rank in self.cfg.local_dp_ranks:
            engine_id = transfer.engine_id(rank)
            log.info("Initializing Mooncake Scheduler %s (kv_role=%s)", engine_id, transfer.role)
            if self.kv_store is None:
                continue
            channel = kv.SideChannel(self.kv_store, engine_id, self.kv_host, transfer.side_channel_port(rank, tp), tp)
            await channel.start()
            self.side_channels.append(channel)

    async def stop_kv(self) -> None:
        for channel in self.side_channels:
            await channel.close()
        self.side_channels = []

    # -- generation --------------------------------------------------------------------------

    def _remote_prefill_params(self, job: Job) -> dict[str, Any] | None:
        params = job.kv_params
        transfer = self.cfg.kv_transfer
        if not params or not params.get("do_remote_prefill"):
            return None
        if transfer is None or not transfer.simulated or not transfer.is_consumer:
            return None  # no connector: vLLM ignores the params and prefills locally
        needed = ("remote_engine_id", "remote_host", "remote_port", "remote_request_id")
        if not params.get("remote_block_ids") or any(params.get(k) in (None, "") for k in needed):
            log.warning("Got invalid KVTransferParams: %s. This request will not utilize KVTransfer", params)
            return None
        return params

    async def generate(self, job: Job) -> AsyncIterator[str]:
        """Yield the job's output tokens with the latency model; fills ``job.kv_out``."""
        if self.dead:
            raise EngineDeadError(ENGINE_DEAD_MESSAGE)
        self._active += 1
        if self._active == 1 and self.group is not None:
            self.group.announce_busy(True)
        try:
            async with contextlib.aclosing(self._generate(job)) as tokens:
                async for token in tokens:
                    yield token
        finally:
            self._active -= 1
            if self._active == 0 and self.group is not None:
                self.group.announce_busy(False)

    async def _generate(self, job: Job) -> AsyncIterator[str]:
        self.metrics.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.metrics.waiting -= 1
        self.metrics.running += 1
        finished = "abort"
        try:
            rank = next(self._ranks)
            self.metrics.prompt_tokens += len(job.prompt_tokens)
            remote = self._remote_prefill_params(job)
            try:
                await self._forward_pass()
            except EngineDeadError:
                finished = "error"
                raise
            if remote is not None:
                transfer = self.cfg.kv_transfer
                assert transfer is not None
                job.remote_prefill = True
                try:
                    await kv.pull(
                        remote,
                        local_tp=self.cfg.tensor_parallel_size,
                        prefill_tp=transfer.prefill_tp or self.cfg.tensor_parallel_size,
                        prompt_hash=digest(job.prompt).hex(),
                    )
                except kv.KVTransferError as exc:
                    finished = "error"
                    log.error("Failed to transfer KV cache for request %s: %s", job.request_id, exc)
                    raise
            else:
                if self.prefix_cache is not None:
                    job.cached_tokens = self.prefix_cache.match_and_insert(job.prompt_tokens)
                    self.metrics.prefix_queries += len(job.prompt_tokens)
                    self.metrics.prefix_hits += job.cached_tokens
                compute = len(job.prompt_tokens) - job.cached_tokens
                if self.prefill_s and compute > 0:
                    await asyncio.sleep(self.prefill_s * compute)
            last = time.monotonic()
            drafts = random.Random(digest(job.request_id))
            accepted_left = 0  # draft tokens accepted by the current step, still to emit
            for i, token in enumerate(job.output):
                try:
                    await self._forward_pass()
                except EngineDeadError:
                    finished = "error"
                    raise
                if i > 0 and self.decode_s:
                    await self._decode_step()
                if i > 0 and accepted_left:
                    accepted_left -= 1  # a draft this request's last verification accepted
                elif i > 0:
                    accepted_left = self._verify_drafts(drafts)
                now = time.monotonic()
                if i == 0:
                    job.first_token_at = now
                    self.metrics.ttft.observe(now - job.arrival)
                else:
                    self.metrics.itl.observe(now - last)
                last = now
                self.metrics.generation_tokens += 1
                yield token
            finished = job.finish_reason
            if job.kv_params and job.kv_params.get("do_remote_decode") and job.finish_reason == "length":
                job.kv_out = self._park(job, rank)
        finally:
            self.metrics.running -= 1
            self._slots.release()
            if finished in self.metrics.success:
                self.metrics.success[finished] += 1
            self.metrics.e2e.observe(time.monotonic() - job.arrival)
            self.metrics.kv_cache_usage = self._kv_usage()

    def join_group(self, link: GroupLink) -> None:
        """The DP group is complete (``serve``): from now on its forward passes are collective."""
        self.group = link
        self._group_watch = asyncio.ensure_future(self._watch_group(link))

    def leave_group(self) -> None:
        """Shutting down: leave the group (its other ranks will find this one lost)."""
        for task in (self._group_watch, self._stuck_collective):
            if task is not None:
                task.cancel()
        if self.group is not None:
            self.group.close()

    async def _watch_group(self, link: GroupLink) -> None:
        await link.broken.wait()
        if link.stuck_at_loss:  # lost mid-wave: this engine is inside a collective right now
            self._start_stuck_collective(link)

    def _start_stuck_collective(self, link: GroupLink) -> None:
        if self._stuck_collective is None:
            self._stuck_collective = asyncio.ensure_future(self._collective_timeout(list(link.lost)))

    async def _forward_pass(self) -> None:
        """Enter a forward pass: raises once the engine is dead; with a DP rank lost, dies (module docstring)."""
        if self.dead:
            raise EngineDeadError(ENGINE_DEAD_MESSAGE)
        group = self.group
        if group is None or not group.broken.is_set():
            return
        if self._stuck_collective is None and not group.stuck_at_loss and self._dp_allreduce_per_step:
            worker_log.error(
                "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
                "(DP rank(s) %s of the data parallel group are gone)",
                group.lost,
            )
            self.kill("RuntimeError: Connection closed by peer (all_reduce over the DP group)")
            raise EngineDeadError(ENGINE_DEAD_MESSAGE)
        # This pass (or the one in flight) waits on a collective that never completes; every
        # other request waits behind it (one engine core, one batch).
        self._start_stuck_collective(group)
        await self.died.wait()
        raise EngineDeadError(ENGINE_DEAD_MESSAGE)

    async def _collective_timeout(self, lost: list[int]) -> None:
        timeout = _env_float("HCCL_EXEC_TIMEOUT", HCCL_EXEC_TIMEOUT_DEFAULT)
        if timeout == 0:
            return  # HCCL_EXEC_TIMEOUT=0: the collective never times out, the engine hangs for good
        await asyncio.sleep(timeout)
        # Shaped like the HCCL error an operator greps for (EI0002, "notify wait timeout").
        worker_log.error(
            "EI0002: HCCL notify wait timeout occurred during task execution, timeout=%gs (HCCL_EXEC_TIMEOUT): "
            "DP rank(s) %s of the data parallel group are gone and never joined the collective",
            timeout,
            lost,
        )
        self.kill("RuntimeError: ACL stream synchronize failed, error code:507035 (HCCL collective timed out)")

    def _verify_drafts(self, rng: random.Random) -> int:
        """One decode step's speculative verification: the draft tokens accepted (0 without drafts)."""
        k = self.metrics.num_speculative_tokens
        if not k:
            return 0
        accepted = 0
        while accepted < k and rng.random() < self.spec_acceptance:
            accepted += 1
        self.metrics.observe_draft(accepted)
        return accepted

    async def _decode_step(self) -> None:
        """Wait for the next decode step of the batch.

        Like vLLM's scheduler, all running requests advance together: one timer per step
        wakes every request waiting for it (cheaper than a timer per request and token,
        which matters at hundreds of concurrent streams).
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if not self._step_waiters:
            loop.call_later(self.decode_s, self._finish_step)
        self._step_waiters.append(waiter)
        await waiter

    def _finish_step(self) -> None:
        waiters, self._step_waiters = self._step_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _park(self, job: Job, rank: int) -> dict[str, Any] | None:
        transfer = self.cfg.kv_transfer
        if self.kv_store is None or transfer is None:
            return None
        engine_id = transfer.engine_id(rank)
        block_ids = self.kv_store.park(
            engine_id, job.request_id, len(job.prompt_tokens), self.cfg.block_size, digest(job.prompt).hex()
        )
        return {
            "do_remote_prefill": True,
            "do_remote_decode": False,
            "remote_block_ids": block_ids,
            "remote_num_prompt_tokens": len(job.prompt_tokens),
            "remote_engine_id": engine_id,
            "remote_request_id": job.request_id,
            "remote_host": self.kv_host,
            "remote_port": transfer.side_channel_port(rank, self.cfg.tensor_parallel_size),
            "tp_size": self.cfg.tensor_parallel_size,
            # a token id for the last token; the fake tokenizer has no vocabulary, so hash it
            "last_token_id": int.from_bytes(digest(job.output[-1] if job.output else "")[:2], "big"),
        }

    def _kv_usage(self) -> float:
        parked = self.kv_store.parked_blocks if self.kv_store is not None else 0
        capacity = 1 << 16
        busy = self.metrics.running * 8 + parked
        return min(1.0, busy / capacity)

    def kill(self, cause: str | None = None) -> None:
        if not self.dead:
            self.dead = True
            self.died.set()
            if cause is None:
                log.error(
                    "EngineCore encountered a fatal error (simulated). The engine is dead: /health now returns 503."
                )
            else:
                log.error("EngineCore encountered a fatal error. %s", cause)

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for running requests to finish (graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while self.metrics.running + self.metrics.waiting and time.monotonic() < deadline:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)
