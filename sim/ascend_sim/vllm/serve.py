"""``vllm serve``: the life cycle of one simulated vLLM-Ascend server process.

Order of events, as with the real server (each failure is fatal and named in the log):

1. flags (argparse, exit code 2) and the pre-engine checks of ``config`` (exit code 1);
2. the HTTP socket is *bound* (not listening: connections are refused) -- vLLM binds early,
   so a taken ``--port`` fails at once (``[Errno 98] Address already in use``);
3. the chips are checked and held (``devices``);
4. external data parallel: the ranks of the group wait for each other (``dp``);
5. "loading the weights" takes ``VLLM_SIM_LOAD_SECONDS`` (default 3);
6. the Mooncake KV side-channel ports open (``kv``; a taken port is an error);
7. the HTTP port starts listening; ``Application startup complete.``

SIGTERM/SIGINT: stop accepting, let running requests finish (up to
``VLLM_SIM_DRAIN_SECONDS``, default 5), release the chips, exit 0 -- at any phase.
SIGUSR1 kills the engine (``/health`` 503).

Once the engine is dead (SIGUSR1, ``/sim/engine_dead``, or a DP collective that timed out),
vLLM's launcher watchdog, which looks every 5 s (``VLLM_SIM_WATCHDOG_SECONDS`` here), shuts the
server down -- exit code 0, as upstream still does (vllm-project/vllm#48966) -- unless
``VLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1``, which keeps it answering 503/500.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ascend_sim import state as driver
from ascend_sim.vllm import VLLM_VERSION, devices, dp, logs, options
from ascend_sim.vllm.config import ServeConfig, StartupError, build_config
from ascend_sim.vllm.engine import Engine
from ascend_sim.vllm.metrics import Metrics

if TYPE_CHECKING:
    from aiohttp import web

log = logs.get_logger("api_server.py")
engine_log = logs.get_logger("core.py", proc="EngineCore")

T = TypeVar("T")


class _Stopped(Exception):
    """SIGTERM/SIGINT arrived during startup."""


def print_startup_error(err: StartupError) -> None:
    engine_log.error("EngineCore failed to start.")
    logs.raw("Traceback (most recent call last):")
    logs.raw('  File "/vllm-workspace/vllm/vllm/entrypoints/cli/main.py", line 73, in main')
    logs.raw("    args.dispatch_function(args)")
    logs.raw(f"{err.kind}: {err.message}")


def bind_http(host: str | None, port: int) -> socket.socket:
    """Bind (without listening) like vLLM's ``create_server_socket``: a used port fails here."""
    bind_host = host or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(bind_host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError("socket.gaierror", f"[Errno {exc.errno}] {exc.strerror}: --host {bind_host!r}") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise StartupError("OSError", f"[Errno {exc.errno}] {exc.strerror} ({bind_host}:{port})") from None
    return sock


class Server:
    """One server. ``run()`` is the ``vllm serve`` process; ``start()``/``shutdown()`` embed it.

    Embedding (tests, benchmarks) may pass the chips and the driver state directory instead
    of taking them from ``ASCEND_RT_VISIBLE_DEVICES``/``ASCEND_SIM_STATE_DIR``, so several
    servers can share one process.
    """

    def __init__(
        self,
        cfg: ServeConfig,
        *,
        visible_devices: list[int] | None = None,
        state_dir: Path | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.cfg = cfg
        self.visible_devices = visible_devices
        self.state_dir = state_dir
        self.handle_signals = handle_signals
        # vLLM's default for a draft model without num_speculative_tokens is its config's; 1 here.
        num_spec = int(cfg.speculative.get("num_speculative_tokens") or 1) if cfg.speculative else 0
        # vLLM's API server labels its metrics with the engine core it manages: the rank itself
        # under external DP (--data-parallel-rank), else the first of its in-process engines.
        engine = cfg.data_parallel_rank if cfg.data_parallel_rank is not None else 0
        self.metrics = Metrics(cfg.served_model_names[0], num_spec, engine)
        self.engine = Engine(cfg, self.metrics)
        self.stop = asyncio.Event()
        self.lease: driver.Lease | None = None
        self.runner: web.AppRunner | None = None
        self._stats_task: asyncio.Future[None] | None = None

    async def _until_stopped(self, coro: Awaitable[T]) -> T:
        """Run a startup phase, abandoning it if a stop signal arrives."""
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            stopper.cancel()
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise _Stopped()

    def _signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.engine.kill)

    async def start(self) -> None:
        """Steps 2-7 of the module docstring; on failure everything taken is given back."""
        cfg = self.cfg
        sock: socket.socket | None = None
        try:
            sock = bind_http(cfg.host, cfg.port)
            chips = devices.select_chips(cfg.chips_needed, directory=self.state_dir, visible=self.visible_devices)
            self.lease = devices.acquire(chips, cfg.gpu_memory_utilization, directory=self.state_dir)
            engine_log.info(
                "Initializing a V1 LLM engine (v%s) with config: model=%r, served_model_name=%s, "
                "tensor_parallel_size=%d, data_parallel_size=%d, max_seq_len=%d, quantization=%s, device_config=npu",
                VLLM_VERSION,
                cfg.model,
                cfg.served_model_names[0],
                cfg.tensor_parallel_size,
                cfg.data_parallel_size,
                cfg.max_model_len,
                cfg.quantization,
            )
            engine_log.info("Using NPUs %s", chips)
            if cfg.data_parallel_size > 1 and len(cfg.local_dp_ranks) < cfg.data_parallel_size:
                link = await self._until_stopped(
                    dp.handshake(
                        cfg.data_parallel_address,
                        cfg.data_parallel_rpc_port,
                        cfg.data_parallel_size,
                        cfg.local_dp_ranks,
                    )
                )
                if link is not None:
                    self.engine.join_group(link)
            await self._until_stopped(self._load())
            try:
                await self.engine.start_kv()
            except OSError as exc:  # a KV side-channel port
                raise StartupError("OSError", f"[Errno {exc.errno}] {exc.strerror or exc}") from None
            if cfg.headless:
                # engines only (the API server runs elsewhere): nothing listens on --port
                sock.close()
                log.info("Running in headless mode: engines are up, no API server in this process.")
            else:
                await self._start_http(sock)
            sock = None
            if not cfg.disable_log_stats:
                self._stats_task = asyncio.ensure_future(self._log_stats())
        except BaseException:
            await self._cleanup(sock)
            raise

    async def _log_stats(self) -> None:
        """vLLM's periodic engine line (every ``VLLM_LOG_STATS_INTERVAL`` s, when not idle)."""
        interval = float(os.environ.get("VLLM_LOG_STATS_INTERVAL", "10"))
        stats = logs.get_logger("loggers.py")
        m = self.metrics

        def snapshot() -> tuple[int, int, int, int]:
            return m.prompt_tokens, m.generation_tokens, m.prefix_queries, m.prefix_hits

        last = snapshot()
        while True:
            await asyncio.sleep(interval)
            now = snapshot()
            prompt, gen, queries, hits = (a - b for a, b in zip(now, last))
            last = now
            if not (prompt or gen or m.running or m.waiting):
                continue
            stats.info(
                "Engine 000: Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f tokens/s, "
                "Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%%, Prefix cache hit rate: %.1f%%",
                prompt / interval,
                gen / interval,
                m.running,
                m.waiting,
                m.kv_cache_usage * 100,
                100.0 * hits / queries if queries else 0.0,
            )

    async def shutdown(self) -> None:
        log.info("Shutting down FastAPI HTTP server.")
        await self._cleanup(None)
        logs.uvicorn("Shutting down")
        logs.uvicorn(f"Finished server process [{os.getpid()}]")

    async def run(self) -> int:
        """The process: start, serve until SIGTERM/SIGINT, shut down; the exit code."""
        if self.handle_signals:
            self._signals()
        try:
            await self.start()
        except StartupError as err:
            print_startup_error(err)
            return 1
        except _Stopped:
            log.info("Received a stop signal during startup; shutting down.")
            return 0
        await self._until_exit()
        await self.shutdown()
        return 0

    async def _until_exit(self) -> None:
        """Until SIGTERM/SIGINT, or until the watchdog finds the engine dead (module docstring)."""
        keep_alive = _env_flag("VLLM_KEEP_ALIVE_ON_ENGINE_DEATH")
        interval = max(0.01, float(os.environ.get("VLLM_SIM_WATCHDOG_SECONDS", "5")))
        while not self.stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), interval)
            if self.engine.dead and not keep_alive and not self.stop.is_set():
                return

    async def _load(self) -> None:
        seconds = float(os.environ.get("VLLM_SIM_LOAD_SECONDS", "3"))
        worker = logs.get_logger("default_loader.py", proc="EngineCore")
        worker.info("Loading weights from %s", self.cfg.model)
        start = time.monotonic()
        await asyncio.sleep(seconds)
        worker.info("Loading weights took %.2f seconds", time.monotonic() - start)
        runner = logs.get_logger("gpu_model_runner.py", proc="EngineCore")
        runner.info("Model loading took 26.1321 GiB and %.6f seconds", time.monotonic() - start)
        logs.get_logger("kv_cache_utils.py", proc="EngineCore").info(
            "Maximum concurrency for %d tokens per request: %.2fx", self.cfg.max_model_len, 4.0
        )
        if self.cfg.speculative:
            runner.info(
                "Loading drafter model (%s) from %s",
                self.cfg.speculative.get("method"),
                self.cfg.speculative.get("model"),
            )

    async def _start_http(self, sock: socket.socket) -> None:
        # aiohttp is imported only now: a server that fails its checks exits in a blink.
        from aiohttp import web

        from ascend_sim.vllm import api

        cfg = self.cfg
        app = api.make_app(cfg, self.engine, self.metrics)
        access = None if cfg.disable_access_log else api.AccessLogger
        kwargs: dict[str, Any] = {"handler_cancellation": True}
        if access is None:
            kwargs["access_log"] = None
        else:
            kwargs["access_log_class"] = access
        self.runner = web.AppRunner(
            app, shutdown_timeout=float(os.environ.get("VLLM_SIM_DRAIN_SECONDS", "5")), **kwargs
        )
        await self.runner.setup()
        site = web.SockSite(self.runner, sock, backlog=1024)
        shown = cfg.host or "0.0.0.0"
        log.info("Starting vLLM API server 0 on http://%s:%d", shown, cfg.port)
        launcher = logs.get_logger("launcher.py")
        launcher.info("Available routes are:")
        for route in (
            "/health",
            "/ping",
            "/version",
            "/metrics",
            "/v1/models",
            "/v1/completions",
            "/v1/chat/completions",
        ):
            launcher.info("Route: %s", route)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError("OSError", f"[Errno {exc.errno}] {exc.strerror} ({shown}:{cfg.port})") from None
        logs.uvicorn(f"Started server process [{os.getpid()}]")
        logs.uvicorn("Waiting for application startup.")
        logs.uvicorn("Application startup complete.")

    async def _cleanup(self, sock: socket.socket | None) -> None:
        if sock is not None:
            sock.close()
        self.engine.leave_group()
        if self._stats_task is not None:
            self._stats_task.cancel()
            self._stats_task = None
        if self.runner is not None:
            await self.runner.cleanup()  # stops listening, then waits for running handlers
            self.runner = None
        await self.engine.stop_kv()
        if self.lease is not None:
            self.lease.release()
            self.lease = None


def _env_flag(name: str) -> bool:
    """A vLLM boolean environment variable (``bool(int(value))``; unparsable counts as unset here)."""
    try:
        return bool(int(os.environ.get(name, "0") or "0"))
    except ValueError:
        return False


def run_serve(argv: list[str]) -> int:
    args = options.parse_serve_args(argv)  # argparse exits with code 2 on bad flags
    log.info("vLLM API server version %s", VLLM_VERSION)
    try:
        cfg = build_config(args)
    except StartupError as err:
        print_startup_error(err)
        return 1
    logs.get_logger("utils.py").info("non-default args: %s", cfg.non_default_args)
    logs.engine_proc = f"EngineCore_DP{cfg.local_dp_ranks[0]}"
    return asyncio.run(Server(cfg).run())
