"""The simulated Mooncake KV side channel: prefill keeps "KV blocks", decode pulls them over TCP.

What is real: the sockets. A prefill (``kv_producer``) DP rank listens on
``kv_port + dp_rank * tp_size + tp_rank`` for each of its TP workers (bound to its
advertised host, like vLLM-Ascend's handshake sockets); a decode (``kv_consumer``) request
carrying ``kv_transfer_params`` connects to ``remote_host:remote_port (+ worker offset)`` and
pulls the blocks of ``remote_request_id`` before it generates. So a wrong IP or port, a
firewall, a dead prefill or a proxy that mixes up requests fails the way it does for real.

Wire protocol (one request per connection, one JSON object per line, UTF-8):

    decode -> prefill: {"op": "pull", "engine_id": E, "request_id": R, "tp_rank": T}
    prefill -> decode: {"ok": true, "engine_id": E, "request_id": R, "num_tokens": N,
                        "block_ids": [...], "prompt_hash": H}
                   or: {"ok": false, "error": "..."}

Each prefill TP worker is pulled once; when all have been, the blocks are freed (vLLM's
DONE_RECVING). Unclaimed blocks are freed after ``VLLM_MOONCAKE_ABORT_REQUEST_TIMEOUT``
seconds (default 480, the real knob) or when ``VLLM_SIM_KV_MAX_REQUESTS`` (default 10000)
requests are parked, oldest first -- then a late decode gets "unknown request".

The advertised host (``remote_host``) is ``VLLM_HOST_IP`` when set (vLLM's own override),
else the address this host's name resolves to -- vLLM asks the routing table instead, by
"connecting" a UDP socket to a public address; the simulator does not touch outside
addresses, and on a simulated node the hostname resolves to the node's IP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ascend_sim.vllm import logs

log = logs.get_logger("mooncake_connector.py", proc="EngineCore")

MAX_LINE = 1 << 20


def advertised_host() -> str:
    """The IP a prefill puts in ``remote_host`` (see module docstring)."""
    env = os.environ.get("VLLM_HOST_IP")
    if env:
        return env
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def kv_timeout() -> float:
    return float(os.environ.get("VLLM_SIM_KV_TIMEOUT", "10"))


class KVTransferError(Exception):
    """A decode request could not get its KV blocks."""


@dataclass
class Parked:
    """The blocks of one finished prefill request, waiting for decode to pull them."""

    engine_id: str
    request_id: str
    num_tokens: int
    block_ids: list[int]
    prompt_hash: str
    pending: set[int]
    created: float = field(default_factory=time.monotonic)


class KVStore:
    """Finished prefill requests' blocks, per (engine id, request id), bounded and expiring."""

    def __init__(self, tp_size: int, num_blocks: int = 1 << 20) -> None:
        self.tp_size = tp_size
        self.num_blocks = num_blocks
        self._next_block = 0
        self._parked: OrderedDict[tuple[str, str], Parked] = OrderedDict()
        self.max_requests = int(os.environ.get("VLLM_SIM_KV_MAX_REQUESTS", "10000"))
        self.expiry = float(os.environ.get("VLLM_MOONCAKE_ABORT_REQUEST_TIMEOUT", "480"))

    def park(self, engine_id: str, request_id: str, num_tokens: int, block_size: int, prompt_hash: str) -> list[int]:
        """Keep the blocks of a finished prefill; returns their ids (``remote_block_ids``)."""
        self._expire()
        count = max(1, -(-num_tokens // block_size))
        ids = [(self._next_block + i) % self.num_blocks for i in range(count)]
        self._next_block = (self._next_block + count) % self.num_blocks
        self._parked[(engine_id, request_id)] = Parked(
            engine_id, request_id, num_tokens, ids, prompt_hash, set(range(self.tp_size))
        )
        while len(self._parked) > self.max_requests:
            (_, old), _ = self._parked.popitem(last=False)
            log.warning("Force freed request %s: too many requests waiting for KV pull", old)
        log.info("Delaying free of %d blocks for request %s", count, request_id)
        return ids

    def pull(self, engine_id: str, request_id: str, tp_rank: int) -> Parked | None:
        self._expire()
        parked = self._parked.get((engine_id, request_id))
        if parked is None or tp_rank not in parked.pending:
            return None
        parked.pending.discard(tp_rank)
        if not parked.pending:
            del self._parked[(engine_id, request_id)]
        return parked

    @property
    def parked_blocks(self) -> int:
        return sum(len(p.block_ids) for p in self._parked.values())

    def _expire(self) -> None:
        now = time.monotonic()
        while self._parked:
            key, parked = next(iter(self._parked.items()))
            if now - parked.created <= self.expiry:
                break
            del self._parked[key]
            log.info("Force freed request: %s", parked.request_id)


class SideChannel:
    """The listening sockets of one prefill DP rank (one per TP worker)."""

    def __init__(self, store: KVStore, engine_id: str, host: str, base_port: int, tp_size: int) -> None:
        self.store = store
        self.engine_id = engine_id
        self.host = host
        self.base_port = base_port
        self.tp_size = tp_size
        self.servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        for tp_rank in range(self.tp_size):
            port = self.base_port + tp_rank
            try:
                server = await asyncio.start_server(
                    lambda r, w, rank=tp_rank: self._serve(r, w, rank), self.host, port, limit=MAX_LINE
                )
            except OSError as exc:
                await self.close()
                raise OSError(
                    exc.errno,
                    f"Mooncake handshake socket for TP rank {tp_rank} cannot listen on tcp://{self.host}:{port}: "
                    f"{exc.strerror or exc} (is kv_port {port} already used by another process, or is "
                    f"{self.host} not an address of this host?)",
                ) from None
            self.servers.append(server)
            log.info("Starting listening on path: tcp://%s:%d", self.host, port)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.servers = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tp_rank: int) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), kv_timeout())
            msg = json.loads(line) if line else {}
            reply = self._answer(msg, tp_rank)
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            log.error("Connection listener got exception %s: %s", type(exc).__name__, exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, msg: dict[str, Any], tp_rank: int) -> dict[str, Any]:
        if msg.get("op") != "pull":
            return {"ok": False, "error": f"unexpected message {msg!r}"}
        engine_id = msg.get("engine_id")
        request_id = str(msg.get("request_id"))
        if engine_id != self.engine_id:
            return {
                "ok": False,
                "error": f"engine id mismatch: this is engine {self.engine_id}, the request names {engine_id}",
            }
        parked = self.store.pull(self.engine_id, request_id, tp_rank)
        if parked is None:
            return {
                "ok": False,
                "error": f"unknown request {request_id} on engine {self.engine_id} (TP rank {tp_rank})",
            }
        return {
            "ok": True,
            "engine_id": self.engine_id,
            "request_id": request_id,
            "num_tokens": parked.num_tokens,
            "block_ids": parked.block_ids,
            "prompt_hash": parked.prompt_hash,
        }


async def _pull_one(
    host: str, port: int, engine_id: str, request_id: str, tp_rank: int, timeout: float
) -> dict[str, Any]:
    where = f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=MAX_LINE), timeout)
    except asyncio.TimeoutError:
        raise KVTransferError(f"timed out after {timeout:g}s connecting to the prefill engine at {where}") from None
    except OSError as exc:
        raise KVTransferError(f"cannot connect to the prefill engine at {where}: {exc.strerror or exc}") from None
    try:
        msg = {"op": "pull", "engine_id": engine_id, "request_id": request_id, "tp_rank": tp_rank}
        writer.write((json.dumps(msg) + "\n").encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except asyncio.TimeoutError:
        raise KVTransferError(f"timed out after {timeout:g}s waiting for KV blocks from {where}") from None
    except OSError as exc:
        raise KVTransferError(f"connection to {where} failed: {exc.strerror or exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    try:
        reply = json.loads(line)
    except ValueError:
        raise KVTransferError(f"bad reply from {where}: {line[:200]!r}") from None
    if not reply.get("ok"):
        raise KVTransferError(f"prefill engine at {where} refused: {reply.get('error')}")
    return reply


async def pull(params: dict[str, Any], *, local_tp: int, prefill_tp: int, prompt_hash: str) -> int:
    """Pull the KV blocks named by ``kv_transfer_params``; returns the transferred token count.

    Each local TP worker reads from its share of the prefill TP workers (prefill tp >= decode
    tp), so together they pull every prefill worker's port once.
    """
    host = str(params["remote_host"])
    base = int(params["remote_port"])
    engine_id = str(params["remote_engine_id"])
    request_id = str(params["remote_request_id"])
    timeout = kv_timeout()
    per_worker = max(1, prefill_tp // max(1, local_tp))
    ranks = [r * per_worker + j for r in range(local_tp) for j in range(per_worker) if r * per_worker + j < prefill_tp]
    replies = await asyncio.gather(
        *(_pull_one(host, base + rank, engine_id, request_id, rank, timeout) for rank in ranks),
        return_exceptions=True,
    )
    for reply in replies:
        if isinstance(reply, BaseException):
            if isinstance(reply, KVTransferError):
                raise reply
            raise KVTransferError(str(reply))
    first = replies[0]
    assert isinstance(first, dict)
    if first.get("prompt_hash") != prompt_hash:
        log.warning(
            "KV blocks of request %s were computed for a different prompt than this request's "
            "(proxy sent different bodies to prefill and decode?)",
            request_id,
        )
    return int(first.get("num_tokens", 0))
