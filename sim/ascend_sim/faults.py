"""``ascend-sim-fault``: inject and clear faults on this node's simulated devices.

Every subcommand changes the node's state directory (or, for ports / weights / driver
version, the node itself) and prints one line saying what changed. ``init`` writes a fresh
state (used when a node image is built or seeded).

This module is the command line (and ``init``, ``show``, ``clear``); the faults themselves
are in ``faults_devices.py`` (chips, HBM, hccn, npu-smi) and ``faults_node.py`` (ports,
weights, driver version).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

from ascend_sim import profiles
from ascend_sim import state as st
from ascend_sim.faults_base import DEFAULT_VERSION_INFO, FaultError, change_state, version_info_path
from ascend_sim.faults_devices import (
    cmd_chip_health,
    cmd_hbm_holder,
    cmd_hbm_release,
    cmd_layout,
    cmd_link,
    cmd_net_health,
    cmd_npu_smi_broken,
    cmd_reachable,
    cmd_unreachable,
    restore_address,
)
from ascend_sim.faults_node import (
    cmd_driver_version,
    cmd_port_hold,
    cmd_port_release,
    cmd_weights_missing,
    cmd_weights_restore,
    restore_weights,
    stop_holder,
)
from ascend_sim.hccn_tool import NET_HEALTH_VALUES

PROG = "ascend-sim-fault"


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
            restore_address(dev, faults)
            if dev["link"] != "UP" or dev["net_health"] != "Success":
                dev["link"], dev["net_health"] = "UP", "Success"
                changes.append(f"device {dev['device']} network")
        if faults["unreachable"]:
            changes.append(f"{len(faults['unreachable'])} unreachable peer(s)")
        if faults["npu_smi_broken"]:
            changes.append("npu-smi")
        for port, pid in sorted(faults["port_holders"].items()):
            stop_holder(int(pid), int(port))
            changes.append(f"port {port}")
        for path in faults["hidden_weights"]:
            with contextlib.suppress(FaultError):
                restore_weights(Path(path))
                changes.append(f"weights {path}")
        original = faults.get("original_driver_version")
        if original is not None:
            state["driver_version"] = original
            with contextlib.suppress(OSError):
                target.write_text(st.render_version_info(original), encoding="utf-8")
            changes.append(f"driver version {original}")
        state["faults"] = st.default_faults()
        return "cleared: " + (", ".join(changes) if changes else "nothing to clear")

    return change_state(directory, fn)


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
