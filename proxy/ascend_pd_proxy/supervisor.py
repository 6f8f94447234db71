"""The supervisor of ``workers`` > 1: N proxy processes on one port, one core each.

One asyncio process is bound to one core; a proxy in front of many decode instances can need
more. The supervisor serves nothing itself: it starts N workers (``python3 -m ascend_pd_proxy
--worker I --control-dir D``), each of which binds ``listen.host:listen.port`` with SO_REUSEPORT,
so the kernel spreads new connections over them. It

* forwards SIGHUP (each worker re-reads the file) and SIGTERM / SIGINT (each drains) to every
  worker, waits for them, and exits 0 once all drained;
* restarts a worker that exits on its own, after a back-off that doubles while it keeps
  failing soon after its start, so a crash loop does not spin;
* exits with the worker's status when one cannot start (1: the port cannot be bound, 2: the
  configuration), after stopping the others.

The control directory (``workers.py``) is made here, mode 0700, and removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Dict, List, Optional

from . import log
from .config import Config
from .workers import socket_path

# Back-off before restarting a worker: doubled for each exit within STABLE_AFTER seconds of its
# start, up to BACKOFF_MAX; a worker that ran longer starts again from BACKOFF_FIRST.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0
READY_POLL = 0.05  # while waiting for the workers' control sockets at start


def describe_exit(status: int) -> str:
    """A ``returncode`` in words: ``exit status 1``, ``killed by SIGKILL``."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def backoff(quick_failures: int) -> float:
    """Seconds before a restart, after ``quick_failures`` exits in a row soon after starting."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, quick_failures - 1))


class Worker:
    def __init__(self, worker_id: int) -> None:
        self.id = worker_id
        self.process: Optional[asyncio.subprocess.Process] = None
        self.started = 0.0
        self.quick_failures = 0  # exits in a row within STABLE_AFTER of a start
        self.awaiting_restart = False  # exited on its own; not part of a drain
        self.watcher: Optional[asyncio.Future[None]] = None  # held: the loop keeps only weak references


class Supervisor:
    def __init__(self, cfg: Config, config_path: str) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.workers = [Worker(i) for i in range(cfg.workers)]
        self.control_dir = ""
        self.stopping: Optional[signal.Signals] = None
        self.wake = asyncio.Event()  # a signal arrived or a worker exited

    def _command(self, worker: Worker) -> List[str]:
        return [
            sys.executable,
            "-m",
            "ascend_pd_proxy",
            "--config",
            self.config_path,
            "--worker",
            str(worker.id),
            "--control-dir",
            self.control_dir,
        ]

    def _environment(self) -> Dict[str, str]:
        # The workers import this very package, wherever it came from (a directory or the
        # role's zip): its parent goes first on their path.
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.environ.get("PYTHONPATH", "")
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_parent, path) if p)}

    async def _spawn(self, worker: Worker) -> None:
        # Own process group: a terminal's Ctrl-C reaches the supervisor only, which forwards it
        # once (the workers would otherwise get it twice).
        worker.process = await asyncio.create_subprocess_exec(
            *self._command(worker), env=self._environment(), start_new_session=True
        )
        worker.started = time.monotonic()
        worker.awaiting_restart = False
        worker.watcher = asyncio.ensure_future(self._watch(worker.process))

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        self.wake.set()

    def _signal(self, signum: signal.Signals) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self.stopping is None:
                log.info("supervisor: %s: draining %d workers", signum.name, len(self.workers))
            self.stopping = signum
        else:
            log.info("supervisor: %s: forwarded to %d workers", signum.name, len(self.workers))
        self._send(signum)
        self.wake.set()

    def _send(self, signum: signal.Signals) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                # It may exit between the check and the signal; _watch sees that.
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signum)

    def _port_in_use(self) -> Optional[str]:
        """Why ``listen.host:port`` cannot be bound, or None.

        Without SO_REUSEPORT, so that a port held by anything else (even another proxy with
        SO_REUSEPORT, which would silently share it) fails as it fails for workers == 1.
        """
        try:
            infos = socket.getaddrinfo(
                self.cfg.host or None, self.cfg.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except OSError as exc:
            return str(exc)
        for family, kind, proto, _canonname, address in infos:
            with socket.socket(family, kind, proto) as probe:
                # As aiohttp binds: connections in TIME_WAIT do not hold the port.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    return exc.strerror or str(exc)
        return None

    async def run(self) -> int:
        problem = self._port_in_use()
        if problem is not None:
            log.error("cannot listen on %s:%d: %s (listen.port)", self.cfg.host, self.cfg.port, problem)
            return 1
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self._signal, signum)
        self.control_dir = tempfile.mkdtemp(prefix="ascend-pd-proxy-")  # mode 0700: this user only
        try:
            return await self._supervise()
        finally:
            self._send(signal.SIGKILL)  # only if something above failed: none is left otherwise
            shutil.rmtree(self.control_dir, ignore_errors=True)

    async def _supervise(self) -> int:
        for worker in self.workers:
            await self._spawn(worker)
        failed = await self._wait_ready()
        if failed is not None:
            assert failed.process is not None and failed.process.returncode is not None
            status = failed.process.returncode
            log.error("supervisor: worker %d could not start (%s); stopping", failed.id, describe_exit(status))
            self.stopping = signal.SIGTERM
            self._send(signal.SIGTERM)
            await asyncio.gather(*(w.process.wait() for w in self.workers if w.process is not None))
            return status if status > 0 else 1
        log.info("supervisor: %d workers listening on %s:%d", len(self.workers), self.cfg.host, self.cfg.port)
        restarts: Dict[int, asyncio.Task[None]] = {}
        while self.stopping is None:
            await self.wake.wait()
            self.wake.clear()
            if self.stopping is not None:
                break
            for worker in self.workers:
                process = worker.process
                if process is None or process.returncode is None or worker.id in restarts:
                    continue
                ran = time.monotonic() - worker.started
                worker.quick_failures = worker.quick_failures + 1 if ran < STABLE_AFTER else 1
                delay = backoff(worker.quick_failures)
                log.error(
                    "supervisor: worker %d (pid %d) exited unexpectedly (%s) after %.1f s; restarting in %.1f s",
                    worker.id,
                    process.pid,
                    describe_exit(process.returncode),
                    ran,
                    delay,
                )
                worker.awaiting_restart = True
                restarts[worker.id] = asyncio.ensure_future(self._restart(worker, delay, restarts))
        for task in restarts.values():
            task.cancel()
        return await self._wait_all()

    async def _restart(self, worker: Worker, delay: float, restarts: Dict[int, asyncio.Task[None]]) -> None:
        try:
            await asyncio.sleep(delay)
            if self.stopping is None:
                await self._spawn(worker)
        finally:
            restarts.pop(worker.id, None)

    async def _wait_ready(self) -> Optional[Worker]:
        """Wait until every worker serves (its control socket exists, made after the port is
        bound); a worker that exits meanwhile is returned."""
        while self.stopping is None:  # a drain asked for meanwhile is no failure to start
            for worker in self.workers:
                if worker.process is not None and worker.process.returncode is not None:
                    return worker
            if all(os.path.exists(socket_path(self.control_dir, w.id)) for w in self.workers):
                return None
            await asyncio.sleep(READY_POLL)
        return None

    async def _wait_all(self) -> int:
        """After SIGTERM / SIGINT: 0 once every worker has drained and exited 0, else 1. A worker
        that had exited on its own and awaited its restart has nothing to drain."""
        status = 0
        for worker in self.workers:
            if worker.process is None or worker.awaiting_restart:
                continue
            code = await worker.process.wait()
            if code != 0 and self.stopping is not None:
                log.error("supervisor: worker %d ended its drain with %s", worker.id, describe_exit(code))
                status = 1
        log.info("supervisor: stopped")
        return status
