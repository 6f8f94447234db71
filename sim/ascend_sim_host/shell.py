"""Running commands for the host-side CLI: errors for the user, docker, timers, threads."""

from __future__ import annotations

import concurrent.futures
import subprocess
import time
from typing import Any, Callable, TypeVar

from ascend_sim_host.config import ENGINE_HINT

Item = TypeVar("Item")
Result = TypeVar("Result")


class SimError(Exception):
    """A failure with a message for the user (no traceback)."""


def say(msg: str) -> None:
    print(msg, flush=True)


def run(cmd: list[str], *, check: bool = True, capture: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(cmd, capture_output=capture, text=True, check=False, **kwargs)
    except FileNotFoundError:
        raise SimError(f"{cmd[0]}: command not found" + (f" ({ENGINE_HINT})" if cmd[0] == "docker" else "")) from None
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout or "").strip() if capture else ""
        raise SimError(f"`{' '.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''}` failed ({res.returncode}): {detail}")
    return res


def docker(*args: str, check: bool = True) -> str:
    return run(["docker", *args], check=check).stdout.strip()


def ensure_engine() -> None:
    try:
        res = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    except FileNotFoundError:
        raise SimError(f"docker CLI not found; {ENGINE_HINT}") from None
    if res.returncode != 0 or not res.stdout.strip():
        raise SimError(ENGINE_HINT)


class Timer:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.start:.1f} s"


def parallel(fn: Callable[[Item], Result], items: list[Item]) -> list[Result]:
    """``fn`` over ``items`` in threads; re-raises the first failure after all finished."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = [pool.submit(fn, item) for item in items]
        concurrent.futures.wait(futures)
    return [f.result() for f in futures]
