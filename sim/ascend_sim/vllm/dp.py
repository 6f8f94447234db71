"""The data-parallel group handshake of external DP (one ``vllm serve`` per rank).

In vLLM the engine cores of one DP group meet at ``--data-parallel-address`` /
``--data-parallel-rpc-port`` before any of them serves: the API server only opens its port
once that startup handshake is done, so a group with a missing rank never becomes healthy.
The simulator keeps exactly that property with a small TCP exchange (JSON lines):

- the process owning rank 0 listens on ``address:rpc_port`` (binding fails if the address is
  not this host's, as it does for real);
- every other process connects (retrying; it logs that it is waiting for rank 0) and sends
  ``{"ranks": [its ranks], "size": N}``;
- rank 0 answers ``{"ok": true}`` to everybody once all N ranks are present (logging which
  ranks it still waits for meanwhile), or ``{"ok": false, "error": ...}`` to a process whose
  group size or ranks do not fit -- that process then fails to start.

After the handshake rank 0 stops listening: a rank restarted alone cannot rejoin (restart the
whole group), as with real vLLM. ``VLLM_ENGINE_READY_TIMEOUT_S`` (default 600) bounds the wait.

The connections stay open afterwards (:class:`GroupLink`): they stand for what binds real ranks
for their whole life -- the Gloo DP group and the HCCL communicators of the MoE layers -- so a
rank whose peer process went away (killed, crashed, stopped) knows which ranks are lost. Like a
real rank it says nothing about it: the loss only shows when its next forward pass waits on a
collective the dead rank never joins (``engine``). They also carry what vLLM's DP coordinator
spreads: which ranks have requests. While any rank has some, the group is in a "wave" and every
rank runs forward passes, idle ones dummy batches; a rank lost mid-wave therefore leaves even an
idle survivor stuck in a collective. Rank 0 relays both (a star, not Gloo's full mesh).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from ascend_sim.vllm import logs
from ascend_sim.vllm.config import StartupError

log = logs.get_logger("coordinator.py")


def _timeout() -> float:
    return float(os.environ.get("VLLM_ENGINE_READY_TIMEOUT_S", "600"))


def _log_interval() -> float:
    return float(os.environ.get("VLLM_SIM_DP_LOG_INTERVAL", "5"))


class GroupLink:
    """A process's ties to the other processes of its DP group, once the group is complete."""

    def __init__(self, size: int, own_ranks: list[int]) -> None:
        self.size = size
        self.own_ranks = list(own_ranks)
        self.lost: list[int] = []
        self.broken = asyncio.Event()
        self.busy: set[int] = set()  # ranks with requests (the wave runs while there are any)
        self.stuck_at_loss = False  # a rank was lost mid-wave: everybody's forward pass hangs
        self.writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Future[None]] = set()

    def lose(self, ranks: list[int]) -> list[int]:
        """Record that ``ranks`` are gone; returns those not known to be gone before."""
        new = sorted({int(r) for r in ranks} - set(self.lost) - set(self.own_ranks))
        if new:
            if self.busy and not self.broken.is_set():
                self.stuck_at_loss = True
            self.lost = sorted(self.lost + new)
            self.broken.set()
            log.debug("DP rank(s) %s left the data parallel group (wave running: %s)", new, self.stuck_at_loss)
        return new

    def mark_busy(self, ranks: list[int], busy: bool) -> None:
        if busy:
            self.busy.update(int(r) for r in ranks)
        else:
            self.busy.difference_update(int(r) for r in ranks)

    def announce_busy(self, busy: bool) -> None:
        """This process has requests (True) or none left (False): tell the group."""
        self.mark_busy(self.own_ranks, busy)
        notice = (json.dumps({"busy": busy, "ranks": self.own_ranks}) + "\n").encode()
        for writer in self.writers:
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(notice)

    def relay(self, source: asyncio.StreamWriter | None, msg: dict[str, Any]) -> None:
        """Rank 0 passes a member's news on to the other members."""
        notice = (json.dumps(msg) + "\n").encode()
        for writer in self.writers:
            if writer is not source:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write(notice)

    def watch(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """This process leaves the group (its peers will find it lost)."""
        for task in list(self._tasks):
            task.cancel()
        for writer in self.writers:
            writer.close()
        self.writers = []


async def _messages(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """A peer's JSON lines until its end of the connection is gone (EOF, or reset by a killed process)."""
    with contextlib.suppress(OSError):
        while line := await reader.readline():
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if isinstance(msg, dict):
                    yield msg


class _Master:
    """Rank 0's side: collect the other ranks, release everyone, then keep the connections."""

    def __init__(self, size: int, own_ranks: list[int]) -> None:
        self.size = size
        self.own_ranks = list(own_ranks)
        self.joined: dict[int, asyncio.StreamWriter | None] = dict.fromkeys(own_ranks)
        self.done = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []
        self.link = GroupLink(size, own_ranks)

    def missing(self) -> list[int]:
        return [r for r in range(self.size) if r not in self.joined]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            msg = json.loads(line) if line else {}
            error = self._check(msg)
            if error:
                await self._send(writer, {"ok": False, "error": error})
                writer.close()
                log.warning("Rejected a data parallel engine from %s: %s", _peer(writer), error)
                return
            for rank in msg["ranks"]:
                self.joined[int(rank)] = writer
            self.writers.append(writer)
            log.info("DP rank(s) %s joined from %s (%d/%d)", msg["ranks"], _peer(writer), len(self.joined), self.size)
            if not self.missing():
                for w in self.writers:
                    with contextlib.suppress(OSError):
                        await self._send(w, {"ok": True, "master_ranks": self.own_ranks})
                self.link.writers = list(self.writers)
                self.done.set()
            async for news in _messages(reader):
                if self.done.is_set() and "busy" in news:
                    self.link.mark_busy(msg["ranks"], bool(news["busy"]))
                    self.link.relay(writer, {"busy": bool(news["busy"]), "ranks": msg["ranks"]})
            if self.done.is_set():
                self._lost(writer, msg["ranks"])
            else:  # until the group is complete, a member that goes away is missing again
                for rank in msg["ranks"]:
                    self.joined.pop(int(rank), None)
                self.writers.remove(writer)
                log.warning("DP rank(s) %s left before the group was complete", msg["ranks"])
        except (OSError, ValueError) as exc:
            log.warning("Data parallel handshake connection failed: %s", exc)
            writer.close()

    def _lost(self, writer: asyncio.StreamWriter, ranks: list[int]) -> None:
        """A member process of the complete group went away: every remaining member learns it."""
        writer.close()
        if writer in self.link.writers:
            self.link.writers.remove(writer)
        new = self.link.lose(ranks)
        if new:
            self.link.relay(None, {"lost": new})

    def _check(self, msg: dict[str, Any]) -> str | None:
        size = msg.get("size")
        ranks = msg.get("ranks")
        if size != self.size:
            return f"data_parallel_size mismatch: rank 0 has {self.size}, the joining engine has {size}"
        if not isinstance(ranks, list) or not ranks:
            return f"bad ranks {ranks!r}"
        for rank in ranks:
            if not isinstance(rank, int) or not 0 <= rank < self.size:
                return f"data_parallel_rank {rank} is out of range for data_parallel_size {self.size}"
            if rank in self.joined:
                return f"data_parallel_rank {rank} has already joined the group (duplicate --data-parallel-rank?)"
        return None

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
        writer.write((json.dumps(msg) + "\n").encode())
        await writer.drain()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


async def _run_master(address: str, port: int, size: int, own_ranks: list[int]) -> GroupLink:
    master = _Master(size, own_ranks)
    try:
        server = await asyncio.start_server(master.handle, address, port)
    except OSError as exc:
        raise StartupError(
            "OSError",
            f"[Errno {exc.errno}] data parallel master cannot listen on {address}:{port}: {exc.strerror or exc} "
            "(--data-parallel-address must be an address of the rank 0 host, and the rpc port free)",
        ) from None
    log.info("Data parallel master listening on %s:%d for %d engines", address, port, size)
    deadline = time.monotonic() + _timeout()
    try:
        while not master.done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartupError(
                    "TimeoutError",
                    f"Timed out waiting for data parallel engines to connect: missing DP rank(s) {master.missing()} "
                    f"at {address}:{port}",
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(master.done.wait(), min(_log_interval(), left))
            if not master.done.is_set():
                log.info(
                    "Waiting for DP rank(s) %s to join the data parallel group at %s:%d (%d/%d engines joined)",
                    master.missing(),
                    address,
                    port,
                    len(master.joined),
                    size,
                )
    finally:
        # Stop listening only; the members' connections stay (``wait_closed`` would wait for them).
        server.close()
    return master.link


async def _watch_master(reader: asyncio.StreamReader, link: GroupLink, master_ranks: list[int]) -> None:
    """Learn from rank 0 which ranks are busy or gone, and notice rank 0 itself going away."""
    async for news in _messages(reader):
        if "busy" in news:
            link.mark_busy(news.get("ranks") or [], bool(news["busy"]))
        if "lost" in news:
            link.lose(news["lost"])
    link.lose(master_ranks)


async def _run_member(address: str, port: int, size: int, own_ranks: list[int]) -> GroupLink:
    deadline = time.monotonic() + _timeout()
    last_log = 0.0
    while True:
        if time.monotonic() > deadline:
            raise StartupError(
                "TimeoutError",
                f"Timed out waiting for the data parallel master (DP rank 0) at {address}:{port}",
            )
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
        except (OSError, asyncio.TimeoutError) as exc:
            if time.monotonic() - last_log >= _log_interval():
                log.info(
                    "Waiting for DP rank 0 (data parallel master) at %s:%d to accept DP rank(s) %s: %s",
                    address,
                    port,
                    own_ranks,
                    exc,
                )
                last_log = time.monotonic()
            await asyncio.sleep(0.2)
            continue
        try:
            writer.write((json.dumps({"ranks": own_ranks, "size": size}) + "\n").encode())
            await writer.drain()
            log.info(
                "DP rank(s) %s connected to the data parallel master at %s:%d; waiting for all %d ranks",
                own_ranks,
                address,
                port,
                size,
            )
            line = await reader.readline()
        except OSError:
            line = b""
        except BaseException:
            writer.close()
            raise
        if not line:
            # rank 0 went away before the group was complete: start over
            writer.close()
            await asyncio.sleep(0.2)
            continue
        reply = json.loads(line)
        if not reply.get("ok"):
            writer.close()
            raise StartupError(
                "RuntimeError",
                f"Data parallel handshake rejected by DP rank 0 at {address}:{port}: {reply.get('error')}",
            )
        link = GroupLink(size, own_ranks)
        link.writers.append(writer)
        link.watch(_watch_master(reader, link, list(reply.get("master_ranks") or [0])))
        return link


async def handshake(address: str, port: int, size: int, own_ranks: list[int]) -> GroupLink | None:
    """Wait until all ``size`` ranks of the group are up; the link to them (None for a whole group)."""
    if size <= 1 or len(own_ranks) >= size:
        return None
    if 0 in own_ranks:
        link = await _run_master(address, port, size, own_ranks)
    else:
        link = await _run_member(address, port, size, own_ranks)
    log.info("All %d data parallel engines are up", size)
    return link
