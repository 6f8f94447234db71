"""Faults of the simulated devices: chip health, foreign HBM holders, the hccn NICs, npu-smi.

They change the node's state, which ``npu-smi`` and ``hccn_tool`` read; a DOWN link also takes
its device IP off the node's NIC, so that peers cannot reach it either.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional

from ascend_sim import state as st
from ascend_sim.faults_base import FaultError, change_state
from ascend_sim.hccn_tool import NET_HEALTH_VALUES

FOREIGN_PID_BASE = 4242
NODE_IFACE = "eth0"


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


def cmd_chip_health(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        chip = _chip(state, args.logic_id)
        old, chip["health"] = chip["health"], args.health
        return f"{st.chip_label(chip)}: health {old} -> {args.health}"

    return change_state(directory, fn)


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

    return change_state(directory, fn)


def cmd_hbm_release(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        chip = _chip(state, args.logic_id)
        procs = state["faults"]["foreign_processes"]
        keep = [p for p in procs if p["logic_id"] != args.logic_id]
        gone = len(procs) - len(keep)
        state["faults"]["foreign_processes"] = keep
        return f"{st.chip_label(chip)}: removed {gone} foreign process(es)"

    return change_state(directory, fn)


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


def restore_address(dev: Dict[str, Any], faults: Dict[str, Any]) -> None:
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
            restore_address(dev, state["faults"])
        return f"device {args.device} ({dev['ip']}): link {old} -> {args.status}"

    return change_state(directory, fn)


def cmd_net_health(args: argparse.Namespace, directory: Optional[Path]) -> str:
    status = " ".join(args.status)
    if status not in NET_HEALTH_VALUES:
        raise FaultError(f"unknown net health status {status!r}: expected one of {', '.join(NET_HEALTH_VALUES)}")

    def fn(state: Dict[str, Any]) -> str:
        dev = _device(state, args.device)
        old, dev["net_health"] = dev["net_health"], status
        return f"device {args.device} ({dev['ip']}): net health {old} -> {status}"

    return change_state(directory, fn)


def cmd_unreachable(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        lst = state["faults"]["unreachable"]
        if args.ip not in lst:
            lst.append(args.ip)
        return f"peer {args.ip}: now unreachable from this node's devices"

    return change_state(directory, fn)


def cmd_reachable(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        lst = state["faults"]["unreachable"]
        was = args.ip in lst
        state["faults"]["unreachable"] = [ip for ip in lst if ip != args.ip]
        return f"peer {args.ip}: reachable again" if was else f"peer {args.ip}: was not marked unreachable"

    return change_state(directory, fn)


def cmd_npu_smi_broken(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        state["faults"]["npu_smi_broken"] = args.mode == "on"
        if args.mode == "on":
            return "npu-smi: now fails with 'dcmi module initialize failed. ret is -8005'"
        return "npu-smi: working again"

    return change_state(directory, fn)


def cmd_layout(args: argparse.Namespace, directory: Optional[Path]) -> str:
    def fn(state: Dict[str, Any]) -> str:
        old, state["npu_smi_layout"] = state.get("npu_smi_layout", "classic"), args.layout
        return f"npu-smi layout {old} -> {args.layout}"

    return change_state(directory, fn)
