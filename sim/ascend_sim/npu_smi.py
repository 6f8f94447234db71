"""The simulated ``npu-smi``: real-looking text from the state directory.

Layouts follow the real tool. The classic table (npu-smi <= 25.x) is the ``printf`` formats
of ``print_total_info_with_HBM`` / ``print_card_total_info_with_HBM_{first,second}`` /
``print_proc_total_info_with_HBM`` in CANN's open-sourced npu-smi (``npu_info_print.c``),
checked against captured A3 (Ascend910, npu-smi 25.2.3) and A2 (910B3) output. The 26.x wide
layout (an extra "Process id in container" column, 116 characters) is measured from captured
26.0.rc2 / 26.1.0 output. ``-m`` / ``-l`` / ``-t board`` use the tool's ``"\\t%-30s : %s"``
key-value style.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from ascend_sim import state as st

TOOL = "npu-smi"
DCMI_INIT_FAILED = "dcmi module initialize failed. ret is -8005"

INFO_TYPES = (
    "board, flash, memory, usages, sensors, temp, power, volt, mac-addr,",
    "common, health, product, ecc, ip, sys-time, i2c_check, work-mode,",
    "ecc-enable, p2p-enable, ssh-enable, license, customized-info, device-share,",
    "device-share-cfg-recover, nve-level, aicpu-config, pcie-err, mcu-monitor,",
    "err-count, boot-area, vnpu-mode, info-vnpu, vnpu-svm, cpu-num-cfg,",
    "first-power-on-date, proc-mem, phyid-remap, vnpu-cfg-recover, key-manage,",
    "template-info, pkcs-enable, p2p-mem-cfg, pwm-mode, pwm-duty-ratio,",
    "boot-select, topo, hccs, sio-info, spod-info, tls-csr-get, tls-cert,",
    "tls-cert-period, rootkey, hccs-bw, cpu-freq-up, sys-log-info, hccs-credit,",
    "custom-op, custom-op-cfg-recover, custom-op-secverify-enable,",
    "custom-op-secverify-mode, op-timeout, current-fault-event,",
    "custom-op-secverify-cert, multi-die-policy, multi-die-policy-cfg-recover.",
)
KNOWN_TYPES = {t.strip(" ,.") for line in INFO_TYPES for t in line.split(",") if t.strip(" ,.")}
SUPPORTED_TYPES = ("board", "health")

# Error codes shown by `-t health` for a faulty chip (codes in the real 0x80xxxxxx style).
HEALTH_ERRORS = {
    "Warning": (
        "80E18005",
        "node type=HBMC, sensor type=Memory, event state=ECC single-bit error count over threshold",
    ),
    "Alarm": (
        "80E3A203",
        "node type=LPM, sensor type=Chip Hardware, event state=The function of obtaining the current is abnormal",
    ),
    "Critical": ("80CB8009", "node type=AICORE, sensor type=Chip Hardware, event state=AI Core hardware fault"),
    "UNKNOWN": ("NA", "NA"),
}


class UsageError(Exception):
    """Bad command line; the message is the first line npu-smi prints before its help."""


# ---------------------------------------------------------------------------------------------
# Help texts


def info_help() -> str:
    lines = [
        f"Usage: {TOOL} info <watch|proc|-h|-m|-l|-t type> [Options...]",
        "",
        "Commands:",
        "       watch          Show all device's status in scrolling format",
        "       proc           Show device's matrix process status in scrolling format",
        "       -h, --help     Show this help text and exit",
        "       -m             Show all device's mapping information",
        "       -l             Show all device's topology information",
        "       -t type        Show information for type",
        "                      type: " + INFO_TYPES[0],
    ]
    lines += ["                            " + line for line in INFO_TYPES[1:]]
    lines += [
        "",
        "Options:",
        "       -i %d          Card ID",
        "       -c %d          Chip ID",
        "       -p %d          Chip Physical ID",
    ]
    return "\n".join(lines) + "\n"


def top_help(version: str) -> str:
    return (
        f"Usage: {TOOL} [COMMAND] [OPTIONS]\n"
        "\n"
        "Commands:\n"
        "       info           Show device information\n"
        "       set            Set device configuration\n"
        "       clear          Clear device configuration\n"
        "       upgrade        Upgrade firmware\n"
        "       -h, --help     Show this help text and exit\n"
        "       -v, --version  Show the version of npu-smi\n"
        "\n"
        f"{TOOL} version: {version}\n"
    )


# ---------------------------------------------------------------------------------------------
# The `npu-smi info` table


def _pair(used: int, total: int, width: int) -> str:
    """``used / total`` as npu-smi prints it: ``%-5d/ %-<width>d``."""
    return f"{used:<5}/ {total:<{width}}"


def _power(chip: Dict[str, Any]) -> str:
    return "-" if chip.get("power_w") is None else f"{float(chip['power_w']):.1f}"


def _chips_by_npu(state: Dict[str, Any]) -> List[Tuple[int, List[Dict[str, Any]]]]:
    grouped: Dict[int, List[Dict[str, Any]]] = {}
    for chip in state["chips"]:
        grouped.setdefault(int(chip["npu"]), []).append(chip)
    return [(npu, sorted(chips, key=lambda c: c["chip"])) for npu, chips in sorted(grouped.items())]


class _Layout:
    """Widths of one npu-smi table layout (classic <= 25.x, or the 26.x wide one)."""

    def __init__(self, wide: bool) -> None:
        self.wide = wide
        self.inner = 114 if wide else 96  # characters between the outer "|" of a full row

    # rulers
    def dash(self) -> str:
        return "+" + "-" * self.inner + "+"

    def cols(self, ch: str) -> str:
        return "+" + ch * 27 + "+" + ch * 15 + "+" + ch * (self.inner - 44) + "+"

    def full(self, text: str) -> str:
        return "|" + f" {text}".ljust(self.inner) + "|"

    def version(self, tool_version: str, driver_version: str) -> str:
        if self.wide:
            return f"| {TOOL} {tool_version:<35} Version: {driver_version:<59} |"
        return f"| {TOOL} {tool_version:<24} Version: {driver_version:<52} |"

    def headers(self, a3: bool) -> List[str]:
        if self.wide:
            third1 = " Power(W)             Temp(C)                 Hugepages-Usage(page)   "
            third2 = " AICore(%)            Memory-Usage(MB)        HBM-Usage(MB)           "
        else:
            third1 = " Power(W)    Temp(C)           Hugepages-Usage(page)"
            third2 = " AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        "
        second = " Chip  Phy-ID              " if a3 else " Chip                      "
        return [
            "| NPU   Name                | Health        |" + third1 + "|",
            "|" + second + "| Bus-Id        |" + third2 + "|",
        ]

    def proc_header(self) -> str:
        if self.wide:
            return (
                "| NPU     Chip              | Process id    | Process name       | Process memory(MB)    "
                "| Process id in container |"
            )
        return "| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |"

    def proc_row(self, npu: int, chip: int, pid: int, name: str, mem: int, cpid: str) -> str:
        head = f"| {npu:<7} {chip:<18}| {pid:<13} |"
        if self.wide:
            return head + f" {name:<18} | {mem:<21} | {cpid:<23} |"
        return head + f" {name:<24} | {mem:<23} |"


def _chip_rows(lay: _Layout, chip: Dict[str, Any], hbm_used: int, a3: bool) -> List[str]:
    hp = _pair(int(chip.get("hugepages_used", 0)), int(chip.get("hugepages_total", 0)), 13)
    mem = _pair(int(chip.get("memory_used_mb", 0)), int(chip.get("memory_total_mb", 0)), 10)
    hbm = _pair(hbm_used, int(chip["hbm_total_mb"]), 13)
    if lay.wide:
        third1 = f" {_power(chip):<20} {chip['temp_c']:<23} {hp.rstrip():<23} "
        third2 = f" {chip['aicore_pct']:<20} {mem.rstrip():<23} {hbm.rstrip():<23} "
    else:
        third1 = f" {_power(chip):<11} {chip['temp_c']:<17} {hp} "
        third2 = f" {chip['aicore_pct']:<11} {mem} {hbm} "
    first = f"| {chip['npu']:<5} {chip['name']:<20}| {chip['health']:<13} |" + third1 + "|"
    if a3:
        second = f"| {chip['chip']:<5} {chip['phy_id']:<20}| {chip['bus_id']:<13} |" + third2 + "|"
    else:
        second = f"| {chip['chip']:<26}| {chip['bus_id']:<13} |" + third2 + "|"
    return [first, second]


def render_info(
    state: Dict[str, Any],
    holders: List[Dict[str, Any]],
    *,
    layout: Optional[str] = None,
) -> str:
    """The full ``npu-smi info`` output for ``state`` with ``holders`` (see state.live_holders)."""
    lay = _Layout((layout or state.get("npu_smi_layout", "classic")) == "v26")
    a3 = state["profile"] == "a3"
    out: List[str] = [
        lay.dash(),
        lay.version(state["npu_smi_version"], state["driver_version"]),
        lay.cols("-"),
        *lay.headers(a3),
        lay.cols("="),
    ]
    groups = _chips_by_npu(state)
    for _npu, chips in groups:
        for i, chip in enumerate(chips):
            out += _chip_rows(lay, chip, st.hbm_used_mb(chip, holders), a3)
            if i != len(chips) - 1:
                out.append(lay.dash())
        out.append(lay.cols("="))
    out += [lay.cols("-"), lay.proc_header(), lay.cols("=")]
    by_logic = {c["logic_id"]: c for c in state["chips"]}
    for npu, chips in groups:
        rows: List[str] = []
        for chip in chips:
            for h in holders:
                if h["logic_id"] != chip["logic_id"] or h["logic_id"] not in by_logic:
                    continue
                cpid = str(h["container_pid"]) if h.get("in_container") else "NA"
                rows.append(lay.proc_row(npu, chip["chip"], h["pid"], h["process_name"], h["memory_mb"], cpid))
        out += rows or [lay.full(f"No running processes found in NPU {npu}")]
        out.append(lay.cols("="))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# -m, -l, -t board, -t health


def _kv(key: str, value: object) -> str:
    return f"\t{key:<30} : {value}"


def render_mapping(state: Dict[str, Any]) -> str:
    a3 = state["profile"] == "a3"
    lines: List[str] = []
    if a3:
        lines.append(f"\t{'NPU ID':<30} {'Chip ID':<30} {'Chip Logic ID':<30} {'Chip Phy-ID':<30} {'Chip Name':<30}")
    else:
        lines.append(f"\t{'NPU ID':<30} {'Chip ID':<30} {'Chip Logic ID':<30} {'Chip Name':<30}")
    for npu, chips in _chips_by_npu(state):
        for chip in chips:
            if a3:
                lines.append(
                    f"\t{npu:<30} {chip['chip']:<30} {chip['logic_id']:<30} {chip['phy_id']:<30} {chip['name']}"
                )
            else:
                lines.append(f"\t{npu:<30} {chip['chip']:<30} {chip['logic_id']:<30} Ascend {chip['name']}")
        mcu = len(chips)
        if a3:
            lines.append(f"\t{npu:<30} {mcu:<30} {'-':<30} {'-':<30} {'Mcu':<30}")
        else:
            lines.append(f"\t{npu:<30} {mcu:<30} {'-':<30} {'Mcu':<30}")
    return "\n".join(lines) + "\n"


def render_list(state: Dict[str, Any]) -> str:
    groups = _chips_by_npu(state)
    out = _kv("Total Count", len(groups)) + "\n\n"
    for npu, chips in groups:
        out += _kv("NPU ID", npu) + "\n" + _kv("Chip Count", len(chips)) + "\n\n"
    return out


def _npu_chips(state: Dict[str, Any], npu: int) -> List[Dict[str, Any]]:
    for n, chips in _chips_by_npu(state):
        if n == npu:
            return chips
    raise UsageError(f"The npu id {npu} is invalid.")


def _one_chip(state: Dict[str, Any], npu: int, chip_id: int) -> Dict[str, Any]:
    for chip in _npu_chips(state, npu):
        if chip["chip"] == chip_id:
            return chip
    raise UsageError(f"The chip id {chip_id} of npu id {npu} is invalid.")


def render_board(state: Dict[str, Any], npu: int, chip_id: Optional[int] = None) -> str:
    # Only `-t board` needs the profile tables: `info`, one process per query, skips them.
    from ascend_sim import profiles

    info = profiles.profile_info(state["profile"])
    if chip_id is not None:
        chip = _one_chip(state, npu, chip_id)
        lines = [
            _kv("NPU ID", npu),
            _kv("Chip ID", chip_id),
            _kv("Chip Type", "Ascend"),
            _kv("Chip Name", chip["name"]),
            _kv("Chip Version", "V1"),
            _kv("Board ID", info["board_id"]),
            _kv("PCB ID", "NA"),
            _kv("BOM ID", "1"),
            _kv("VDie ID", chip.get("vdie_id", "NA")),
            _kv("NDie ID", "00000000 00000000 00000000 00000000 00000000"),
            _kv("Chip Position ID", chip["chip"]),
            _kv("PCIe Bus Info", chip["bus_id"]),
            _kv("Firmware Version", state.get("firmware_version", "NA")),
        ]
        return "\n".join(lines) + "\n"
    chips = _npu_chips(state, npu)
    first = chips[0]
    lines = [
        _kv("NPU ID", npu),
        _kv("Product Name", info["product_name"]),
        _kv("Model", info["model"]),
        _kv("Manufacturer", "Huawei"),
        _kv("Serial Number", first.get("serial_number", "NA")),
        _kv("Software Version", state["driver_version"]),
        _kv("Firmware Version", state.get("firmware_version", "NA")),
        _kv("Compatibility", "OK"),
        _kv("Board ID", info["board_id"]),
        _kv("PCB ID", "A"),
        _kv("BOM ID", "1"),
        _kv("PCIe Bus Info", first["bus_id"]),
        _kv("Slot ID", npu),
        _kv("Class ID", "NA"),
        _kv("PCI Vendor ID", "0x19E5"),
        _kv("PCI Device ID", info["pci_device_id"]),
        _kv("Subsystem Vendor ID", "0x19E5"),
        _kv("Subsystem Device ID", info["subsystem_device_id"]),
        _kv("Chip Count", len(chips)),
    ]
    return "\n".join(lines) + "\n"


def _health_lines(chip: Dict[str, Any]) -> List[str]:
    code, text = HEALTH_ERRORS.get(chip["health"], ("NA", "NA"))
    return [_kv("Health Status", chip["health"]), _kv("Error Code", code), _kv("Error Information", text)]


def render_health(state: Dict[str, Any], npu: int, chip_id: Optional[int] = None) -> str:
    if chip_id is not None:
        return "\n".join(_health_lines(_one_chip(state, npu, chip_id))) + "\n"
    chips = _npu_chips(state, npu)
    out = _kv("NPU ID", npu) + "\n" + _kv("Chip Count", len(chips)) + "\n\n"
    for chip in chips:
        out += "\n".join([*_health_lines(chip), _kv("Chip ID", chip["chip"])]) + "\n\n"
    return out


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_info_args(args: Sequence[str]) -> Dict[str, Any]:
    opts: Dict[str, Any] = {"type": None, "i": None, "c": None, "m": False, "l": False, "h": False}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            opts["h"] = True
        elif arg == "-m":
            opts["m"] = True
        elif arg == "-l":
            opts["l"] = True
        elif arg in ("-t", "-i", "-c", "-p"):
            if i + 1 >= len(args):
                raise UsageError(f"Error parameter of {arg}")
            value = args[i + 1]
            if arg == "-t":
                if value not in KNOWN_TYPES:
                    raise UsageError("Error parameter of -t")
                opts["type"] = value
            else:
                if not value.isdigit():
                    raise UsageError(f"Error parameter of {arg}")
                opts[arg[1]] = int(value)
            i += 1
        elif arg in ("watch", "proc"):
            raise UsageError(f"Command {arg} is not supported in this environment.")
        else:
            raise UsageError(f"Error parameter of {arg}")
        i += 1
    return opts


def run(argv: Sequence[str], out: TextIO, err: TextIO, directory: Optional[Path] = None) -> int:
    args = list(argv)
    try:
        state = st.load_state(directory)
    except st.StateError:
        print(DCMI_INIT_FAILED, file=out)
        return 1
    if not args or args[0] in ("-h", "--help"):
        out.write(top_help(state["npu_smi_version"]))
        return 0 if args else 1
    if args[0] in ("-v", "--version"):
        print(f"{TOOL} version: {state['npu_smi_version']}", file=out)
        return 0
    if args[0] != "info":
        print(f"Error command: {args[0]}", file=out)
        out.write(top_help(state["npu_smi_version"]))
        return 1
    if state["faults"].get("npu_smi_broken"):
        print(DCMI_INIT_FAILED, file=out)
        return 1
    try:
        opts = _parse_info_args(args[1:])
        if opts["h"]:
            out.write(info_help())
            return 0
        if opts["m"]:
            out.write(render_mapping(state))
            return 0
        if opts["l"]:
            out.write(render_list(state))
            return 0
        if opts["type"] is not None:
            if opts["type"] not in SUPPORTED_TYPES:
                raise UsageError(f"This device does not support querying {opts['type']}.")
            if opts["i"] is None:
                raise UsageError("Error parameter of -i")
            render = render_board if opts["type"] == "board" else render_health
            out.write(render(state, opts["i"], opts["c"]))
            return 0
        if opts["i"] is not None or opts["c"] is not None:
            raise UsageError("Error parameter of -i" if opts["i"] is not None else "Error parameter of -c")
        out.write(render_info(state, st.live_holders(directory)))
        return 0
    except UsageError as exc:
        print(str(exc), file=out)
        if str(exc).startswith("Error parameter"):
            out.write(info_help())
        return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    os.umask(0o022)
    sys.exit(main())
