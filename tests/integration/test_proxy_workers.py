"""The PD proxy with ``workers: 2``: the real process (a supervisor and two workers sharing the
port with SO_REUSEPORT) in front of fake vLLM instances (tests/unit/proxy/fakes.py).

Every request goes on a fresh connection, as the kernel spreads connections, not requests.
Which worker answered is read from the ``x-ascend-proxy-worker`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional

import aiohttp

from tests.unit.proxy.fakes import (
    CHAT,
    HOST,
    FakeBackend,
    Reply,
    chat_body,
    chunk,
    proxy_config,
    running,
    sse,
    stream,
)

PROXY_DIR = Path(__file__).resolve().parents[2] / "proxy"
WORKER = "x-ascend-proxy-worker"
ADMIN_KEY = "admin-test-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
DEADLINE = 90.0  # the whole test; a 2-core machine starting three interpreters is slow
# Health checks every 0.2 s: an instance added or a restarted worker is routed to quickly.
HEALTH = {"interval": 0.2, "timeout": 1, "failures_to_eject": 2, "successes_to_admit": 1}
# Long enough for a stream held open by a test while it signals the proxy.
TIMEOUTS = {"connect": 1, "prefill": 5, "decode_first_chunk": 5, "decode": 5, "idle": 20, "client_body": 5}


def deadline_test(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), DEADLINE))

    return run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


async def poll(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: still false after {timeout} s")
        await asyncio.sleep(0.05)


def children(pid: int) -> List[int]:
    """The live child processes of ``pid`` (from /proc: the workers of the supervisor)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


@dataclass
class Workers:
    process: asyncio.subprocess.Process
    url: str
    config_path: Path
    log_path: Path
    prefill: List[FakeBackend]
    decode: List[FakeBackend]
    spare: List[FakeBackend]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def request(
        self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None
    ) -> Reply:
        """One request on a fresh connection (``force_close``): the kernel picks the worker."""
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=20)) as client,
            client.request(method, self.url + path, json=body, headers=headers) as response,
        ):
            return Reply(response.status, response.headers.copy(), await response.read())

    async def chat(self) -> Reply:
        return await self.request("POST", CHAT, chat_body())

    async def listing(self) -> Dict[str, Any]:
        reply = await self.request("GET", "/admin/backends", headers=ADMIN)
        assert reply.status == 200, reply.body
        return dict(reply.json())

    async def on_each_worker(self, method: str, path: str, **kwargs: Any) -> Dict[str, Reply]:
        """The same request on fresh connections until each worker has answered it once."""
        replies: Dict[str, Reply] = {}
        for _ in range(100):
            reply = await self.request(method, path, **kwargs)
            replies.setdefault(reply.headers[WORKER], reply)
            if len(replies) == 2:
                return replies
        raise AssertionError(f"only workers {sorted(replies)} answered 100 requests")

    async def backend_states(self, url: str) -> Dict[str, str]:
        """``{worker id: state}`` of one instance in the merged admin listing ({} if unlisted)."""
        listing = await self.listing()
        return next((dict(b["workers"]) for b in listing["backends"] if b["url"] == url), {})

    def write_config(self, decode: List[FakeBackend]) -> None:
        raw = json.loads(self.config_path.read_text())
        raw["decode"] = {"instances": [{"url": b.url, "name": b.name} for b in decode]}
        self.config_path.write_text(json.dumps(raw))


@contextlib.asynccontextmanager
async def workers_proxy(tmp_path: Path, spare: int = 0, **config: Any) -> AsyncIterator[Workers]:
    """Fakes p0, d0 (and spare decode fakes s0...) and ``python -m ascend_pd_proxy`` with
    ``workers: 2`` in front of them, once both workers route to both instances."""
    fakes = [FakeBackend("p0", "prefill"), FakeBackend("d0", "decode")]
    spares = [FakeBackend(f"s{i}", "decode") for i in range(spare)]
    for fake in fakes + spares:
        await fake.start()
    port = free_port()
    raw = proxy_config(
        fakes[:1],
        fakes[1:],
        listen={"host": HOST, "port": port},
        workers=2,
        admin_api_key=ADMIN_KEY,
        health=HEALTH,
        timeouts=TIMEOUTS,
        **config,
    )
    config_path, log_path = tmp_path / "proxy.json", tmp_path / "proxy.log"
    config_path.write_text(json.dumps(raw))
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ascend_pd_proxy",
            "--config",
            str(config_path),
            env={**os.environ, "PYTHONPATH": str(PROXY_DIR)},
            stdout=log,
            stderr=log,
        )
    harness = Workers(process, f"http://{HOST}:{port}", config_path, log_path, fakes[:1], fakes[1:], spares)
    try:

        async def ready() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"the proxy exited with {process.returncode}:\n{harness.log()}")
            try:
                listing = await harness.listing()
            except aiohttp.ClientError:
                return False
            return listing["workers"] == ["0", "1"] and listing["status"] == "ok"

        await poll(ready, "both workers serving")
        yield harness
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        for fake in fakes + spares:
            await fake.stop()


def spread(replies: List[Reply]) -> Counter[str]:
    return Counter(r.headers.get(WORKER, "none") for r in replies)


def metric(text: str, series: str) -> float:
    values = [float(line.rpartition(" ")[2]) for line in text.splitlines() if line.rpartition(" ")[0] == series]
    assert len(values) == 1, f"{series}: {values}"
    return values[0]


REQUESTS_OK = 'pd_proxy_requests_total{endpoint="/v1/chat/completions",status="200"}'


# --- spread and one view ------------------------------------------------------------------------------


@deadline_test
async def test_connections_spread_over_both_workers_and_metrics_are_their_sum(tmp_path: Path) -> None:
    async with workers_proxy(tmp_path) as w:
        replies = [await w.chat() for _ in range(200)]
        scrapes = await w.on_each_worker("GET", "/metrics", headers=None)

    assert all(r.status == 200 for r in replies), [r.status for r in replies]
    counts = spread(replies)
    assert set(counts) == {"0", "1"}, counts
    assert min(counts.values()) >= 40, counts  # 50/50 expected; 40 is 8 standard deviations off
    for worker, scrape in scrapes.items():
        text = scrape.body.decode()
        assert metric(text, REQUESTS_OK) == 200, worker
        assert metric(text, 'pd_proxy_backend_requests_total{backend="d0",phase="decode",outcome="ok"}') == 200
        assert metric(text, 'pd_proxy_request_seconds_count{endpoint="/v1/chat/completions"}') == 200
        assert metric(text, "pd_proxy_in_flight") == 0
        assert metric(text, 'pd_proxy_backend_healthy{backend="d0",phase="decode"}') == 1
        assert text.count("# TYPE pd_proxy_requests_total ") == 1 and "worker" not in text


@deadline_test
async def test_admin_changes_reach_every_worker(tmp_path: Path) -> None:
    async with workers_proxy(tmp_path, spare=1) as w:
        s0, d0 = w.spare[0], w.decode[0]
        added = await w.request("POST", "/admin/backends", {"phase": "decode", "url": s0.url, "name": "s0"}, ADMIN)
        assert added.status == 200, added.body

        async def s0_healthy_everywhere() -> bool:
            return await w.backend_states(s0.url) == {"0": "healthy", "1": "healthy"}

        await poll(s0_healthy_everywhere, "s0 added on both workers")
        removed = await w.request("DELETE", "/admin/backends", {"phase": "decode", "url": d0.url}, ADMIN)
        assert removed.status == 200, removed.body
        served_by_d0 = len(d0.seen)
        replies = [await w.chat() for _ in range(40)]
        listing = await w.listing()

    assert all(r.status == 200 for r in replies)
    assert set(spread(replies)) == {"0", "1"}
    assert len(d0.seen) == served_by_d0 and len(s0.seen) == 40  # neither worker still uses d0
    assert [b["url"] for b in listing["backends"] if b["phase"] == "decode"] == [s0.url]


@deadline_test
async def test_sighup_reload_reaches_every_worker(tmp_path: Path) -> None:
    async with workers_proxy(tmp_path, spare=1) as w:
        s0, d0 = w.spare[0], w.decode[0]
        w.write_config([s0])
        w.process.send_signal(signal.SIGHUP)

        async def swapped() -> bool:
            return await w.backend_states(s0.url) == {"0": "healthy", "1": "healthy"} and not await w.backend_states(
                d0.url
            )

        await poll(swapped, "d0 replaced by s0 on both workers")
        served_by_d0 = len(d0.seen)
        replies = [await w.chat() for _ in range(40)]
        still_running = w.process.returncode is None

    assert still_running
    assert all(r.status == 200 for r in replies) and set(spread(replies)) == {"0", "1"}
    assert len(d0.seen) == served_by_d0 and len(s0.seen) == 40


# --- signals and failures -----------------------------------------------------------------------


@deadline_test
async def test_sigterm_drains_in_flight_streams_on_every_worker_and_exits_0(tmp_path: Path) -> None:
    async with workers_proxy(tmp_path) as w:
        gate = asyncio.Event()
        w.decode[0].behaviour = stream(sse(chunk(CHAT, "a"), done=False), sse(chunk(CHAT, "b")), gate=gate)
        clients: List[aiohttp.ClientSession] = []
        streams: List[aiohttp.ClientResponse] = []
        try:
            # Streams held open (the decode waits for the gate) until both workers have some.
            while len({s.headers[WORKER] for s in streams}) < 2:
                assert len(streams) < 40, "40 connections all went to one worker"
                client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
                clients.append(client)
                streams.append(await client.post(w.url + CHAT, json=chat_body(stream=True)))
            assert all(s.status == 200 for s in streams)

            w.process.send_signal(signal.SIGTERM)

            async def refused() -> bool:
                try:
                    await w.request("GET", "/health")
                except aiohttp.ClientConnectorError:
                    return True
                return False

            await poll(refused, "new connections refused")
            draining = w.process.returncode is None  # the streams keep both workers alive
            gate.set()
            bodies = [await s.read() for s in streams]
            status = await asyncio.wait_for(w.process.wait(), 15)
        finally:
            for client in clients:
                await client.close()
        log = w.log()

    assert draining
    assert all(b.endswith(b"data: [DONE]\n\n") and b'"b"' in b for b in bodies), bodies
    assert status == 0, log
    assert "[worker 0]: draining: " in log and "[worker 1]: draining: " in log


@deadline_test
async def test_a_killed_worker_is_restarted_and_serves_again(tmp_path: Path) -> None:
    async with workers_proxy(tmp_path) as w:
        before = children(w.process.pid)
        assert len(before) == 2, before
        for _ in range(10):
            assert (await w.chat()).status == 200
        os.kill(before[0], signal.SIGKILL)

        async def replaced() -> bool:
            now = children(w.process.pid)
            return len(now) == 2 and before[0] not in now

        await poll(replaced, "a new worker process")

        async def both_serving() -> bool:
            listing = await w.listing()
            return listing["workers"] == ["0", "1"] and listing["status"] == "ok"

        await poll(both_serving, "the restarted worker serving")
        replies = [await w.chat() for _ in range(60)]
        scrape = await w.request("GET", "/metrics")
        log = w.log()

    assert all(r.status == 200 for r in replies), (spread(replies), log)
    assert set(spread(replies)) == {"0", "1"}, (spread(replies), log)
    assert f"(pid {before[0]}) exited unexpectedly (killed by SIGKILL)" in log, log
    assert "restarting in 0.5 s" in log, log
    # The survivor's share of the 10 earlier requests and the 60 new ones: the killed worker's
    # counts went with it.
    assert 60 <= metric(scrape.body.decode(), REQUESTS_OK) <= 70, (scrape.body.decode(), log)


@deadline_test
async def test_a_port_in_use_is_exit_status_1_naming_it(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        raw = {
            "listen": {"host": HOST, "port": port},
            "workers": 2,
            "prefill": {"instances": ["http://127.0.0.1:7000"]},
            "decode": {"instances": ["http://127.0.0.1:7100"]},
        }
        path = tmp_path / "proxy.json"
        path.write_text(json.dumps(raw))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ascend_pd_proxy",
            "--config",
            str(path),
            env={**os.environ, "PYTHONPATH": str(PROXY_DIR)},
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 1
    assert f"cannot listen on {HOST}:{port}" in stderr.decode() and "(listen.port)" in stderr.decode()


@deadline_test
async def test_one_worker_is_the_single_process_of_before_without_a_worker_header() -> None:
    async with running() as s:
        reply = await s.post(CHAT, chat_body())
        assert s.proxy.siblings is None
    assert reply.status == 200 and WORKER not in reply.headers
