"""Faults of the node itself: a port held by another process, hidden weights, another driver version."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

from ascend_sim import state as st
from ascend_sim.faults_base import FaultError, change_state, version_info_path

HIDDEN_SUFFIX = ".sim-hidden"
PORT_HOLDER_MARK = "ascend-sim-port-hold"

# The background listener of `port-hold`: a tiny program run by the node's python3.
# SO_REUSEADDR as real servers set it (this listener still makes their bind fail). A peer's
# connection is kept until the peer closes it, so that the port is not left in TIME_WAIT.
_LISTENER = """
import selectors, signal, socket, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is s:
            conn, _ = s.accept()
            sel.register(conn, selectors.EVENT_READ)
            continue
        try:
            data = key.fileobj.recv(65536)
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fileobj)
            key.fileobj.close()
"""


_LAUNCHER = """
import subprocess, sys
listener = subprocess.Popen(
    [sys.executable, "-c"] + sys.argv[1:],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    start_new_session=True, close_fds=True,
)
print(listener.pid)
"""


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    return bool(fields) and fields[0] not in ("Z", "X")


def _is_port_holder(pid: int, port: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return PORT_HOLDER_MARK.encode() in cmdline and str(port).encode() in cmdline


def _port_free(port: int) -> bool:
    """Whether a server (SO_REUSEADDR, as servers set it) could bind ``port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def stop_holder(pid: int, port: int) -> bool:
    """Stop our listener ``pid`` (only if it is one); True if it is gone."""
    if not _is_port_holder(pid, port):
        return not _pid_alive(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child (tests)
        if not _pid_alive(pid):
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return not _pid_alive(pid)


def cmd_port_hold(args: argparse.Namespace, directory: Optional[Path]) -> str:
    port = args.port
    held = st.load_state(directory)["faults"]["port_holders"].get(str(port))
    if held and _is_port_holder(int(held), port) and _pid_alive(int(held)):
        return f"port {port}: already held by pid {held}"
    if not _port_free(port):
        raise FaultError(f"port {port}: already in use on this node (by something else)")
    # Start the listener through a short-lived launcher, so that it is nobody's child here: it
    # outlives this command and is reaped by the node's init when it is stopped.
    launcher = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, _LISTENER, str(port), PORT_HOLDER_MARK],
        capture_output=True,
        text=True,
        timeout=10,
    )
    try:
        pid = int(launcher.stdout.strip())
    except ValueError:
        raise FaultError(f"port {port}: could not start the listener: {launcher.stderr.strip()}") from None
    deadline = time.monotonic() + 5
    while not _listening(port):
        if not _pid_alive(pid) or time.monotonic() > deadline:
            stop_holder(pid, port)
            raise FaultError(f"port {port}: the listener did not start")
        time.sleep(0.02)

    def fn(state: Dict[str, Any]) -> str:
        state["faults"]["port_holders"][str(port)] = pid
        return f"port {port}: now held by a listener on 0.0.0.0:{port} (pid {pid})"

    return change_state(directory, fn)


def cmd_port_release(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        holders = state["faults"]["port_holders"]
        pid = holders.pop(str(args.port), None)
        if pid is None:
            return f"port {args.port}: was not held"
        stop_holder(int(pid), args.port)
        return f"port {args.port}: released (stopped pid {pid})"

    return change_state(directory, fn)


def _hide(path: Path) -> Path:
    return path.with_name(path.name + HIDDEN_SUFFIX)


def _move(source: Path, target: Path) -> None:
    """Rename; a directory that comes from an image's lower overlay layer cannot be renamed
    (EXDEV), so it is copied (the simulated weights are small) and the original removed."""
    try:
        source.rename(target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
            shutil.rmtree(source)
        else:
            shutil.copy2(source, target)
            source.unlink()


def cmd_weights_missing(args: argparse.Namespace, directory: Optional[Path]) -> str:
    path = Path(args.path).absolute()

    def fn(state: Dict[str, Any]) -> str:
        hidden = _hide(path)
        if not path.exists():
            if hidden.exists():
                return f"weights {path}: already hidden"
            raise FaultError(f"weights {path}: no such file or directory")
        if hidden.exists():
            raise FaultError(f"weights {path}: {hidden} already exists")
        _move(path, hidden)
        if str(path) not in state["faults"]["hidden_weights"]:
            state["faults"]["hidden_weights"].append(str(path))
        return f"weights {path}: hidden as {hidden}"

    return change_state(directory, fn)


def restore_weights(path: Path) -> str:
    hidden = _hide(path)
    if not hidden.exists():
        return f"weights {path}: nothing to restore"
    if path.exists():
        raise FaultError(f"weights {path}: cannot restore, {path} exists again")
    _move(hidden, path)
    return f"weights {path}: restored"


def cmd_weights_restore(args: argparse.Namespace, directory: Optional[Path]) -> str:
    path = Path(args.path).absolute()

    def fn(state: Dict[str, Any]) -> str:
        line = restore_weights(path)
        state["faults"]["hidden_weights"] = [p for p in state["faults"]["hidden_weights"] if p != str(path)]
        return line

    return change_state(directory, fn)


def cmd_driver_version(args: argparse.Namespace, directory: Optional[Path]) -> str:
    target = Path(args.version_info) if args.version_info else version_info_path()

    def fn(state: Dict[str, Any]) -> str:
        old = state["driver_version"]
        state["faults"].setdefault("original_driver_version", old)
        state["driver_version"] = args.version
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(st.render_version_info(args.version), encoding="utf-8")
        return f"driver version {old} -> {args.version} (wrote {target})"

    return change_state(directory, fn)
