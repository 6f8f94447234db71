"""``ascend-sim-fault``: inject and clear faults on this node's simulated devices.

Every subcommand changes the node's state directory (or, for ports / weights / driver
version, the node itself) and prints one line saying what changed. ``init`` writes a fresh
state (used when a node image is built or seeded).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

from ascend_sim import profiles
from ascend_sim import state as st
from ascend_sim.hccn_tool import NET_HEALTH_VALUES

PROG = "ascend-sim-fault"
DEFAULT_VERSION_INFO = "/usr/local/Ascend/driver/version.info"
HIDDEN_SUFFIX = ".sim-hidden"
PORT_HOLDER_MARK = "ascend-sim-port-hold"
FOREIGN_PID_BASE = 4242

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


class FaultError(Exception):
    pass


def version_info_path() -> Path:
    return Path(os.environ.get("ASCEND_SIM_VERSION_INFO") or DEFAULT_VERSION_INFO)


# ---------------------------------------------------------------------------------------------
# Helpers


def _chip(state: Dict[str, Any], logic_id: int) -> Dict[str, Any]:
    try:
        return st.find_chip(state, logic_id)
    except st.ChipError as exc:
        raise FaultError(str(exc)) from None


def _device(state: Dict[str, Any], device: int) -> Dict[str, Any]:
    count = len(state["hccn"])
    if not 0 <= device < count:
        raise FaultError(
            f"device {device} does not exist: this {state['profile'].upper()} node has devices 0-{count - 1}"
        )
    return state["hccn"][device]


def _update(directory: Optional[Path], fn: Callable[[Dict[str, Any]], str]) -> str:
    """Apply ``fn`` under the state lock; ``fn`` returns the line to print."""
    message: List[str] = []

    def mutate(state: Dict[str, Any]) -> None:
        message.append(fn(state))

    try:
        st.update_state(mutate, directory)
    except st.StateError as exc:
        raise FaultError(str(exc)) from None
    return message[0]


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


def _stop_holder(pid: int, port: int) -> bool:
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


# ---------------------------------------------------------------------------------------------
# Subcommands


def cmd_init(args: argparse.Namespace, directory: Optional[Path]) -> str:
    state = st.init_state(
        args.profile, node_index=args.node_index, device_ip_base=args.device_ip_base, directory=directory
    )
    extra = ""
    if args.hccn_conf:
        Path(args.hccn_conf).write_text(st.render_hccn_conf(state), encoding="utf-8")
        extra += f", wrote {args.hccn_conf}"
    if args.version_info:
        Path(args.version_info).write_text(st.render_version_info(state["driver_version"]), encoding="utf-8")
        extra += f", wrote {args.version_info}"
    ips = state["hccn"]
    return (
        f"initialised {state['profile'].upper()} node {args.node_index}: {len(state['chips'])} chips, "
        f"device IPs {ips[0]['ip']}-{ips[-1]['ip']}{extra}"
    )


def cmd_chip_health(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        chip = _chip(state, args.logic_id)
        old, chip["health"] = chip["health"], args.health
        return f"{st.chip_label(chip)}: health {old} -> {args.health}"

    return _update(directory, fn)


def cmd_hbm_holder(args: argparse.Namespace, directory: Optional[Path]) -> str:
    if args.mb <= 0:
        raise FaultError(f"MB must be positive, got {args.mb}")

    def fn(state: Dict[str, Any]) -> str:
        chip = _chip(state, args.logic_id)
        holders = st.live_holders(directory)
        used = st.hbm_used_mb(chip, holders)
        if used + args.mb > int(chip["hbm_total_mb"]):
            raise FaultError(
                f"{st.chip_label(chip)}: cannot hold {args.mb} MB, only "
                f"{int(chip['hbm_total_mb']) - used} MB of {chip['hbm_total_mb']} MB free"
            )
        procs = state["faults"]["foreign_processes"]
        pid = args.pid if args.pid is not None else FOREIGN_PID_BASE + len(procs)
        procs.append({"logic_id": args.logic_id, "pid": pid, "process_name": args.name, "memory_mb": args.mb})
        return f"{st.chip_label(chip)}: foreign process pid {pid} ({args.name}) now holds {args.mb} MB"

    return _update(directory, fn)


def cmd_hbm_release(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        chip = _chip(state, args.logic_id)
        procs = state["faults"]["foreign_processes"]
        keep = [p for p in procs if p["logic_id"] != args.logic_id]
        gone = len(procs) - len(keep)
        state["faults"]["foreign_processes"] = keep
        return f"{st.chip_label(chip)}: removed {gone} foreign process(es)"

    return _update(directory, fn)


NODE_IFACE = "eth0"


def _iface_address(dev: Dict[str, Any]) -> str:
    prefix = ipaddress.IPv4Network(f"0.0.0.0/{dev['netmask']}").prefixlen
    return f"{dev['ip']}/{prefix}"


def _withdraw_address(dev: Dict[str, Any], faults: Dict[str, Any]) -> None:
    """A DOWN link must also be unreachable from peers: take its address off the node NIC.

    Only an address that is configured is removed (and remembered), so on a machine that is
    not a simulated node this does nothing.
    """
    if shutil.which("ip") is None:
        return
    res = subprocess.run(["ip", "-o", "addr", "show", "dev", NODE_IFACE], capture_output=True, text=True, check=False)
    if res.returncode != 0 or f" {_iface_address(dev)} " not in res.stdout:
        return
    # Removing a subnet's primary address drops all its secondaries (the other devices' IPs)
    # unless secondaries are promoted.
    Path(f"/proc/sys/net/ipv4/conf/{NODE_IFACE}/promote_secondaries").write_text("1\n")
    subprocess.run(["ip", "addr", "del", _iface_address(dev), "dev", NODE_IFACE], check=False)
    faults.setdefault("withdrawn_addresses", []).append(dev["ip"])


def _restore_address(dev: Dict[str, Any], faults: Dict[str, Any]) -> None:
    withdrawn = faults.get("withdrawn_addresses", [])
    if dev["ip"] in withdrawn:
        subprocess.run(["ip", "addr", "replace", _iface_address(dev), "dev", NODE_IFACE], check=False)
        withdrawn.remove(dev["ip"])


def cmd_link(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        dev = _device(state, args.device)
        old, dev["link"] = dev["link"], args.status
        if args.status == "DOWN":
            _withdraw_address(dev, state["faults"])
        else:
            _restore_address(dev, state["faults"])
        return f"device {args.device} ({dev['ip']}): link {old} -> {args.status}"

    return _update(directory, fn)


def cmd_net_health(args: argparse.Namespace, directory: Optional[Path]) -> str:
    status = " ".join(args.status)
    if status not in NET_HEALTH_VALUES:
        raise FaultError(f"unknown net health status {status!r}: expected one of {', '.join(NET_HEALTH_VALUES)}")

    def fn(state: Dict[str, Any]) -> str:
        dev = _device(state, args.device)
        old, dev["net_health"] = dev["net_health"], status
        return f"device {args.device} ({dev['ip']}): net health {old} -> {status}"

    return _update(directory, fn)


def cmd_unreachable(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        lst = state["faults"]["unreachable"]
        if args.ip not in lst:
            lst.append(args.ip)
        return f"peer {args.ip}: now unreachable from this node's devices"

    return _update(directory, fn)


def cmd_reachable(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        lst = state["faults"]["unreachable"]
        was = args.ip in lst
        state["faults"]["unreachable"] = [ip for ip in lst if ip != args.ip]
        return f"peer {args.ip}: reachable again" if was else f"peer {args.ip}: was not marked unreachable"

    return _update(directory, fn)


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
            _stop_holder(pid, port)
            raise FaultError(f"port {port}: the listener did not start")
        time.sleep(0.02)

    def fn(state: Dict[str, Any]) -> str:
        state["faults"]["port_holders"][str(port)] = pid
        return f"port {port}: now held by a listener on 0.0.0.0:{port} (pid {pid})"

    return _update(directory, fn)


def cmd_port_release(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        holders = state["faults"]["port_holders"]
        pid = holders.pop(str(args.port), None)
        if pid is None:
            return f"port {args.port}: was not held"
        _stop_holder(int(pid), args.port)
        return f"port {args.port}: released (stopped pid {pid})"

    return _update(directory, fn)


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

    return _update(directory, fn)


def _restore(path: Path) -> str:
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
        line = _restore(path)
        state["faults"]["hidden_weights"] = [p for p in state["faults"]["hidden_weights"] if p != str(path)]
        return line

    return _update(directory, fn)


def cmd_driver_version(args: argparse.Namespace, directory: Optional[Path]) -> str:
    target = Path(args.version_info) if args.version_info else version_info_path()

    def fn(state: Dict[str, Any]) -> str:
        old = state["driver_version"]
        state["faults"].setdefault("original_driver_version", old)
        state["driver_version"] = args.version
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(st.render_version_info(args.version), encoding="utf-8")
        return f"driver version {old} -> {args.version} (wrote {target})"

    return _update(directory, fn)


def cmd_npu_smi_broken(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        state["faults"]["npu_smi_broken"] = args.mode == "on"
        if args.mode == "on":
            return "npu-smi: now fails with 'dcmi module initialize failed. ret is -8005'"
        return "npu-smi: working again"

    return _update(directory, fn)


def cmd_layout(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        old, state["npu_smi_layout"] = state.get("npu_smi_layout", "classic"), args.layout
        return f"npu-smi layout {old} -> {args.layout}"

    return _update(directory, fn)


def cmd_show(args: argparse.Namespace, directory: Optional[Path], out: TextIO) -> None:
    try:
        state = st.load_state(directory)
    except st.StateError as exc:
        raise FaultError(str(exc)) from None
    state["live_holders"] = st.live_holders(directory)
    out.write(json.dumps(state, indent=2, sort_keys=True) + "\n")


def cmd_clear(args: argparse.Namespace, directory: Optional[Path]) -> str:
    target = Path(args.version_info) if args.version_info else version_info_path()

    def fn(state: Dict[str, Any]) -> str:
        changes: List[str] = []
        for chip in state["chips"]:
            if chip["health"] != "OK":
                chip["health"] = "OK"
                changes.append(f"chip {chip['logic_id']} health")
        faults = state["faults"]
        if faults["foreign_processes"]:
            changes.append(f"{len(faults['foreign_processes'])} foreign process(es)")
        for dev in state["hccn"]:
            _restore_address(dev, faults)
            if dev["link"] != "UP" or dev["net_health"] != "Success":
                dev["link"], dev["net_health"] = "UP", "Success"
                changes.append(f"device {dev['device']} network")
        if faults["unreachable"]:
            changes.append(f"{len(faults['unreachable'])} unreachable peer(s)")
        if faults["npu_smi_broken"]:
            changes.append("npu-smi")
        for port, pid in sorted(faults["port_holders"].items()):
            _stop_holder(int(pid), int(port))
            changes.append(f"port {port}")
        for path in faults["hidden_weights"]:
            with contextlib.suppress(FaultError):
                _restore(Path(path))
                changes.append(f"weights {path}")
        original = faults.get("original_driver_version")
        if original is not None:
            state["driver_version"] = original
            with contextlib.suppress(OSError):
                target.write_text(st.render_version_info(original), encoding="utf-8")
            changes.append(f"driver version {original}")
        state["faults"] = st.default_faults()
        return "cleared: " + (", ".join(changes) if changes else "nothing to clear")

    return _update(directory, fn)


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Inject faults into this node's simulated Ascend devices.")
    parser.add_argument("--state-dir", help="state directory (default: $ASCEND_SIM_STATE_DIR or %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write a fresh, healthy state for a node profile")
    p.add_argument("profile", choices=profiles.PROFILES)
    p.add_argument("--node-index", type=int, default=0)
    p.add_argument("--device-ip-base", default=None, help="IP of device 0 (default 10.20.<node-index>.10)")
    p.add_argument("--hccn-conf", help="also write this hccn.conf (e.g. /etc/hccn.conf)")
    p.add_argument("--version-info", help="also write this driver version.info")

    p = sub.add_parser("chip-health", help="set a chip's health")
    p.add_argument("logic_id", type=int)
    p.add_argument("health", choices=st.HEALTH_VALUES)

    p = sub.add_parser("hbm-holder", help="a foreign process holds HBM on a chip")
    p.add_argument("logic_id", type=int)
    p.add_argument("mb", type=int)
    p.add_argument("--pid", type=int, default=None)
    p.add_argument("--name", default="python3")

    p = sub.add_parser("hbm-release", help="remove the foreign processes of a chip")
    p.add_argument("logic_id", type=int)

    p = sub.add_parser("link", help="set a device's hccn link")
    p.add_argument("device", type=int)
    p.add_argument("status", choices=("UP", "DOWN"))

    p = sub.add_parser("net-health", help="set a device's hccn net health")
    p.add_argument("device", type=int)
    p.add_argument("status", nargs="+", help=" | ".join(NET_HEALTH_VALUES))

    p = sub.add_parser("unreachable", help="a peer device IP this node cannot reach")
    p.add_argument("ip")
    p = sub.add_parser("reachable", help="undo 'unreachable'")
    p.add_argument("ip")

    p = sub.add_parser("port-hold", help="bind a port with a background listener")
    p.add_argument("port", type=int)
    p = sub.add_parser("port-release", help="stop the listener of 'port-hold'")
    p.add_argument("port", type=int)

    p = sub.add_parser("weights-missing", help="hide a weights directory (rename to PATH.sim-hidden)")
    p.add_argument("path")
    p = sub.add_parser("weights-restore", help="undo 'weights-missing'")
    p.add_argument("path")

    p = sub.add_parser("driver-version", help="pretend another driver version is installed")
    p.add_argument("version")
    p.add_argument(
        "--version-info", help=f"version.info to rewrite (default $ASCEND_SIM_VERSION_INFO or {DEFAULT_VERSION_INFO})"
    )

    p = sub.add_parser("npu-smi-broken", help="make npu-smi fail at dcmi initialisation")
    p.add_argument("mode", choices=("on", "off"))

    p = sub.add_parser("layout", help="npu-smi table layout")
    p.add_argument("layout", choices=st.LAYOUTS)

    sub.add_parser("show", help="print the state as JSON")

    p = sub.add_parser("clear", help="back to healthy defaults (ports released, weights restored)")
    p.add_argument("--version-info", help="version.info to rewrite if the driver version was changed")
    return parser


_COMMANDS: Dict[str, Callable[[argparse.Namespace, Optional[Path]], str]] = {
    "init": cmd_init,
    "chip-health": cmd_chip_health,
    "hbm-holder": cmd_hbm_holder,
    "hbm-release": cmd_hbm_release,
    "link": cmd_link,
    "net-health": cmd_net_health,
    "unreachable": cmd_unreachable,
    "reachable": cmd_reachable,
    "port-hold": cmd_port_hold,
    "port-release": cmd_port_release,
    "weights-missing": cmd_weights_missing,
    "weights-restore": cmd_weights_restore,
    "driver-version": cmd_driver_version,
    "npu-smi-broken": cmd_npu_smi_broken,
    "layout": cmd_layout,
    "clear": cmd_clear,
}


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    directory = Path(args.state_dir) if args.state_dir else None
    try:
        if args.command == "show":
            cmd_show(args, directory, out)
        else:
            print(_COMMANDS[args.command](args, directory), file=out)
    except (FaultError, st.ChipError, st.StateError) as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return 1
    except OSError as exc:
        if exc.errno == errno.EACCES:
            print(f"{PROG}: error: permission denied: {exc.filename}", file=err)
            return 1
        raise
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr)
    except SystemExit as exc:  # argparse errors
        return int(exc.code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
