"""The simulated ``hccn_tool`` (``/usr/local/Ascend/driver/tools/hccn_tool``).

Output lines are those of the real tool as documented by Huawei / captured in the field:
``link status: UP``, ``net health status: Success``, ``ipaddr:...`` + ``netmask:...``,
``netdetect address: ...``, ``default gateway:..., Iface:ethN``, the TLS line
``dev_id:0, tls switch[0](0:disable, 1:enable), tls preconfigured[...]...`` and the ping
report ``device 0 PING <ip>`` / ``recv seq=0,time=0.067000ms`` / ``recv time out seq=1`` /
``3 packets transmitted, 3 received, 0.00% packet loss``.

``-ping`` really pings: it runs the system ``ping`` (env ``ASCEND_SIM_PING`` or the ``ping``
argument of ``run`` names another executable, for tests) against the peer device IP, which
the node image assigns as a secondary address of each node's eth0. A local link DOWN or an
"unreachable" fault entry fails the ping without sending anything.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO

from ascend_sim import state as st

TOOL = "hccn_tool"
COMMANDS = ("-link", "-net_health", "-ip", "-tls", "-ping", "-netdetect", "-gateway")
NET_HEALTH_VALUES = (
    "Success",
    "Socket fail",
    "Receive timeout",
    "Unreachable",
    "Time exceeded",
    "Fault",
    "Init",
    "Thread error",
    "Detect ip set",
    "Unknown",
)
DEFAULT_PKT = 3
PING_TIMEOUT_S = 1

_ICMP_RE = re.compile(r"icmp_seq=(\d+).*?time=([\d.]+)\s*ms")


def usage() -> str:
    return (
        f"Usage: {TOOL} -i <device_id> <command> -g [options]\n"
        "\n"
        "Commands:\n"
        "       -link -g                          Get the link status of the network port\n"
        "       -net_health -g                    Get the network health status\n"
        "       -ip -g                            Get the IP address and netmask\n"
        "       -netdetect -g                     Get the network detection IP address\n"
        "       -gateway -g                       Get the default gateway\n"
        "       -tls -g                           Get the TLS switch and certificate information\n"
        "       -ping -g address <ip> [pkt <n>]   Ping a peer device IP from this device\n"
    )


class HccnError(Exception):
    pass


def _parse(args: Sequence[str]) -> Dict[str, Any]:
    device: Optional[int] = None
    command: Optional[str] = None
    get = False
    extra: Dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-i":
            if i + 1 >= len(args) or not args[i + 1].lstrip("-").isdigit():
                raise HccnError("Invalid parameter: -i requires a device id.")
            device = int(args[i + 1])
            i += 2
            continue
        if arg == "-g":
            get = True
        elif arg in COMMANDS:
            if command is not None:
                raise HccnError(f"Invalid parameter: {arg}")
            command = arg
        elif arg in ("address", "pkt") and i + 1 < len(args):
            extra[arg] = args[i + 1]
            i += 2
            continue
        elif arg in ("-h", "--help"):
            return {"help": True}
        elif arg == "-s":
            raise HccnError("The simulated hccn_tool only supports queries (-g).")
        else:
            raise HccnError(f"Invalid parameter: {arg}")
        i += 1
    if command is None or not get:
        raise HccnError("")
    if device is None:
        raise HccnError("Invalid parameter: please specify the device id with -i.")
    return {"device": device, "command": command, "extra": extra}


def _ping_lines(ip: str, pkt: int, ping: str) -> List[Optional[float]]:
    """Per packet: round-trip time in ms, or None when no reply came back."""
    # Only -ping runs a program: the other queries, one process each, skip importing subprocess.
    import subprocess

    cmd = [ping, "-c", str(pkt), "-i", "0.2", "-W", str(PING_TIMEOUT_S), ip]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=pkt * (PING_TIMEOUT_S + 1) + 5)
    except (OSError, subprocess.TimeoutExpired):
        return [None] * pkt
    times: Dict[int, float] = {}
    for line in proc.stdout.splitlines():
        m = _ICMP_RE.search(line)
        if m:
            times[int(m.group(1))] = float(m.group(2))
    # iputils numbers icmp_seq from 1, hccn_tool's seq from 0
    return [times.get(seq + 1) for seq in range(pkt)]


def render_ping(device: int, ip: str, results: List[Optional[float]]) -> str:
    lines = [f"device {device} PING {ip}"]
    for seq, rtt in enumerate(results):
        lines.append(f"recv time out seq={seq}" if rtt is None else f"recv seq={seq},time={rtt:.6f}ms")
    sent = len(results)
    received = sum(1 for r in results if r is not None)
    loss = 100.0 * (sent - received) / sent if sent else 0.0
    lines.append(f"{sent} packets transmitted, {received} received, {loss:.2f}% packet loss")
    return "\n".join(lines) + "\n"


def run(
    argv: Sequence[str],
    out: TextIO,
    err: TextIO,
    directory: Optional[Path] = None,
    ping: Optional[str] = None,
) -> int:
    try:
        opts = _parse(list(argv))
    except HccnError as exc:
        if str(exc):
            print(str(exc), file=out)
        out.write(usage())
        return 1
    if opts.get("help"):
        out.write(usage())
        return 0
    try:
        state = st.load_state(directory)
    except st.StateError:
        print("hccn_tool: dsmi init failed, please check the driver. ret=-8005", file=out)
        return 1
    device = int(opts["device"])
    count = len(state["hccn"])
    if not 0 <= device < count:
        print(f"device id [{device}] is invalid, the valid range is [0, {count - 1}].", file=out)
        return 1
    dev = state["hccn"][device]
    command = opts["command"]
    extra: Dict[str, str] = opts["extra"]
    if command == "-link":
        print(f"link status: {dev['link']}", file=out)
    elif command == "-net_health":
        print(f"net health status: {dev['net_health']}", file=out)
    elif command == "-ip":
        if not dev.get("ip"):
            print("Get ipconf failed, because no ip was preset there!", file=out)
            return 1
        print(f"ipaddr:{dev['ip']}", file=out)
        print(f"netmask:{dev['netmask']}", file=out)
    elif command == "-netdetect":
        print(f"netdetect address: {dev['netdetect']}", file=out)
    elif command == "-gateway":
        print(f"default gateway:{dev['gateway']}, Iface:eth{device}", file=out)
    elif command == "-tls":
        print(
            f"dev_id:{device}, tls switch[{1 if dev.get('tls') else 0}](0:disable, 1:enable), "
            "tls preconfigured[0](0:non-preset, 1:preset), tls alarm time threshold[60]days",
            file=out,
        )
    elif command == "-ping":
        return _ping(device, dev, state, extra, out, ping)
    return 0


def _ping(
    device: int,
    dev: Dict[str, Any],
    state: Dict[str, Any],
    extra: Dict[str, str],
    out: TextIO,
    ping: Optional[str],
) -> int:
    ip = extra.get("address")
    if not ip or not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", ip):
        print("Invalid parameter: -ping requires 'address <ipv4 address>'.", file=out)
        out.write(usage())
        return 1
    try:
        pkt = int(extra.get("pkt", DEFAULT_PKT))
    except ValueError:
        pkt = 0
    if not 1 <= pkt <= 1000:
        print("Invalid parameter: pkt must be in the range [1, 1000].", file=out)
        return 1
    unreachable = ip in state["faults"].get("unreachable", [])
    if dev["link"] != "UP" or unreachable:
        results: List[Optional[float]] = [None] * pkt
    else:
        results = _ping_lines(ip, pkt, ping or os.environ.get("ASCEND_SIM_PING") or "ping")
    out.write(render_ping(device, ip, results))
    return 0 if all(r is not None for r in results) else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
