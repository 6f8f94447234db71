"""Log lines shaped like vLLM's, on stderr.

Operators (and the collection's log checks) read vLLM logs by their shape:
``(APIServer pid=42) INFO 11-29 07:21:03 [api_server.py:1885] message``; uvicorn's own lines
are ``INFO:     Started server process [42]``. The file names and line numbers are those of
the real modules the message comes from (line numbers are only plausible, not exact).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

# Real-looking line numbers per source file, so every line has the "[file.py:NNN]" part.
_LINES = {
    "api_server.py": 1885,
    "utils.py": 253,
    "model.py": 547,
    "parallel.py": 1235,
    "core.py": 93,
    "worker.py": 334,
    "default_loader.py": 267,
    "gpu_model_runner.py": 2602,
    "kv_cache_utils.py": 1087,
    "mooncake_connector.py": 1090,
    "launcher.py": 46,
    "loggers.py": 127,
    "serving_chat.py": 1288,
    "core_client.py": 741,
    "coordinator.py": 81,
    "platform.py": 204,
    "cli_args.py": 311,
}

_lock = threading.Lock()
_stream: TextIO | None = None
# Shown for proc="EngineCore": real engine processes are named after their DP rank.
engine_proc = "EngineCore_DP0"


def set_stream(stream: TextIO | None) -> None:
    """Send log lines to ``stream`` instead of stderr (tests)."""
    global _stream
    _stream = stream


def current_stream() -> TextIO | None:
    """The stream set by ``set_stream`` (None: stderr)."""
    return _stream


def _write(line: str) -> None:
    stream = _stream or sys.stderr
    with _lock:
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):  # closed pipe at shutdown: losing a log line is fine
            pass


class Logger:
    """A vLLM-style logger for one (process role, source file) pair."""

    def __init__(self, source: str, proc: str = "APIServer") -> None:
        self.source = source
        self.proc = proc

    def _log(self, level: str, msg: str, args: tuple[Any, ...]) -> None:
        text = msg % args if args else msg
        stamp = time.strftime("%m-%d %H:%M:%S")
        where = f"{self.source}:{_LINES.get(self.source, 1)}"
        proc = engine_proc if self.proc == "EngineCore" else self.proc
        for part in text.splitlines() or [""]:
            _write(f"({proc} pid={os.getpid()}) {level} {stamp} [{where}] {part}")

    def debug(self, msg: str, *args: Any) -> None:
        if os.environ.get("VLLM_LOGGING_LEVEL", "INFO").upper() == "DEBUG":
            self._log("DEBUG", msg, args)

    def info(self, msg: str, *args: Any) -> None:
        self._log("INFO", msg, args)

    def warning(self, msg: str, *args: Any) -> None:
        self._log("WARNING", msg, args)

    def error(self, msg: str, *args: Any) -> None:
        self._log("ERROR", msg, args)


def get_logger(source: str, proc: str = "APIServer") -> Logger:
    return Logger(source, proc)


def uvicorn(msg: str, level: str = "INFO") -> None:
    """A uvicorn line: ``INFO:     Application startup complete.``"""
    _write(f"{level + ':':<10}{msg}")


def raw(text: str) -> None:
    """Unformatted text (tracebacks, argparse-style errors)."""
    for line in text.rstrip("\n").splitlines():
        _write(line)
