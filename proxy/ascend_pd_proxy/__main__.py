"""Command line: ``python3 -m ascend_pd_proxy --config FILE [--check-config]``.

Exit status: 0 after a drained shutdown (SIGTERM / SIGINT) or a valid ``--check-config``;
2 for a bad configuration, with the key at fault on stderr; 1 when the port cannot be bound.
SIGHUP re-reads the file and applies instance changes without dropping requests.

With ``workers`` > 1 this process is the supervisor (``supervisor.py``) of N worker processes,
which it starts as ``--worker I --control-dir D`` (internal options): the same signals and
exit statuses, for all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from typing import List, Optional

from aiohttp import web

from . import __version__, log
from .config import Config, ConfigError, load
from .server import Proxy, make_runner
from .supervisor import Supervisor
from .workers import Siblings, control_app, serve_control


def _arguments(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m ascend_pd_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the JSON configuration file (see config.py)")
    parser.add_argument("--check-config", action="store_true", help="validate the file and exit")
    parser.add_argument("--version", action="version", version=__version__)
    # Set by the supervisor for its workers only (workers > 1): not for people.
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--control-dir", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _ssl_context(cfg: Config) -> Optional[ssl.SSLContext]:
    """The server's TLS context; a file that cannot be used is a ConfigError naming it."""
    if not cfg.certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cfg.certfile, cfg.keyfile)
    except OSError as exc:  # ssl.SSLError is one too: not PEM, key and certificate do not match
        reason = exc.strerror or str(exc)
        raise ConfigError(f"tls.certfile / tls.keyfile: cannot load {cfg.certfile} / {cfg.keyfile}: {reason}") from None
    return context


async def serve(
    cfg: Config, config_path: Optional[str], ssl_context: Optional[ssl.SSLContext], siblings: Optional[Siblings] = None
) -> int:
    """Serve until SIGTERM / SIGINT, then drain. ``siblings``: this process is one of several
    workers (SO_REUSEPORT on the shared port, a control socket for its siblings)."""
    proxy = Proxy(cfg, config_path, siblings)
    runner = make_runner(proxy)
    await runner.setup()
    if siblings is not None:
        # A worker (re)started next to serving siblings: take over the instance lists they have
        # (the admin API's changes too), and take connections only once the instances were
        # checked. Each check, canary included, is bounded by health.timeout; 1 s of slack.
        await siblings.adopt(proxy.reconcile)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proxy.health_checks.first_round.wait(), cfg.health.timeout + 1.0)
    site = web.TCPSite(
        runner, cfg.host, cfg.port, ssl_context=ssl_context, backlog=2048, reuse_port=siblings is not None
    )
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s (listen.port)", cfg.host, cfg.port, exc.strerror)
        await runner.cleanup()
        return 1
    scheme = "https" if cfg.certfile else "http"
    log.info(
        "listening on %s://%s:%d: %d prefill, %d decode instances",
        scheme,
        cfg.host,
        cfg.port,
        len(cfg.prefill.instances),
        len(cfg.decode.instances),
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, proxy.reload)
    control: Optional[web.AppRunner] = None
    orphaned: Optional[asyncio.Future[None]] = None
    if siblings is not None:
        # Last: the control socket's appearance tells the supervisor "serving".
        app = control_app(proxy.metrics.render, proxy.admin.listing, proxy.admin.apply)
        control = await serve_control(app, siblings.path)
        orphaned = asyncio.ensure_future(_until_orphaned(stop))
    await stop.wait()
    await proxy.drain(runner)
    if control is not None:
        await control.cleanup()
    if orphaned is not None:
        orphaned.cancel()
    log.info("stopped")
    return 0


async def _until_orphaned(stop: asyncio.Event) -> None:
    """A worker whose supervisor died (SIGKILL, OOM) drains rather than serve on unsupervised:
    nobody would forward its signals any more."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the supervisor (pid %d) is gone: draining", parent)
    stop.set()


def main(argv: Optional[List[str]] = None) -> int:
    args = _arguments(argv)
    try:
        cfg = load(args.config)
        # Checked here too: the files belong to the configuration (a typo is exit 2, not a traceback).
        ssl_context = None if args.check_config else _ssl_context(cfg)
    except ConfigError as exc:
        print(f"ascend_pd_proxy: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.config}: ok ({len(cfg.prefill.instances)} prefill, {len(cfg.decode.instances)} decode)")
        return 0
    # Each line of a worker names it: the workers share the supervisor's stderr.
    worker = f"[worker {args.worker}]" if args.worker is not None else ""
    logging.basicConfig(
        level=cfg.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s{worker}: %(message)s",
        stream=sys.stderr,
    )
    if args.worker is None and cfg.workers > 1:
        return asyncio.run(Supervisor(cfg, args.config).run())
    siblings = None
    if args.worker is not None and args.control_dir:
        siblings = Siblings(args.worker, args.control_dir)
    try:
        import uvloop  # type: ignore[import-not-found]  # the real vLLM image ships it; optional

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(serve(cfg, args.config, ssl_context, siblings))


if __name__ == "__main__":
    sys.exit(main())
