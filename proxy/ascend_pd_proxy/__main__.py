"""Command line: ``python3 -m ascend_pd_proxy --config FILE [--check-config]``.

Exit status: 0 after a drained shutdown (SIGTERM / SIGINT) or a valid ``--check-config``;
2 for a bad configuration, with the key at fault on stderr; 1 when the port cannot be bound.
SIGHUP re-reads the file and applies instance changes without dropping requests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from typing import List, Optional

from aiohttp import web

from . import __version__, log
from .config import Config, ConfigError, load
from .server import Proxy, make_runner


def _arguments(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m ascend_pd_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the JSON configuration file (see config.py)")
    parser.add_argument("--check-config", action="store_true", help="validate the file and exit")
    parser.add_argument("--version", action="version", version=__version__)
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


async def serve(cfg: Config, config_path: Optional[str], ssl_context: Optional[ssl.SSLContext]) -> int:
    proxy = Proxy(cfg, config_path)
    runner = make_runner(proxy)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, ssl_context=ssl_context, backlog=2048)
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
    await stop.wait()
    await proxy.drain(runner)
    log.info("stopped")
    return 0


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
    logging.basicConfig(
        level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        import uvloop  # type: ignore[import-not-found]  # the real vLLM image ships it; optional

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(serve(cfg, args.config, ssl_context))


if __name__ == "__main__":
    sys.exit(main())
