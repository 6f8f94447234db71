# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsers and checks for ``hccn_tool`` output (the NPU RoCE NIC tool of the Ascend driver).

Pure functions, no Ansible imports: ``plugins/modules/hccn_info.py`` and
``plugins/modules/preflight_facts.py`` run the commands (through ``query_device``, given their
module's ``run_command``) and these turn their text into data. The formats are those printed by the tool itself
(``TOOL_PRINT_INFO`` calls in the driver's ``hccn_tool`` sources) and shown in Huawei /
vLLM-Ascend / MindIE documentation:

``-link -g``        ``link status: UP`` or ``link status: DOWN``
``-net_health -g``  ``net health status: Success`` (or ``Socket fail``, ``Receive timeout``,
                    ``Unreachable``, ``Time exceeded``, ``Fault``, ``Init``, ``Thread error``,
                    ``Detect ip set``, ``Unknown``)
``-ip -g``          ``ipaddr:10.0.0.11`` and ``netmask:255.255.255.0``; with no address set the
                    tool exits non-zero printing ``Get ipconf failed, because no ip was preset
                    there!``
``-tls -g``         ``dev_id:0, tls switch[0](0:disable, 1:enable), tls preconfigured[1](...),
                    tls alarm time threshold[60]days`` then certificate lines (older drivers
                    omit ``tls preconfigured``; newer ones start with ``device 0,``); a NIC
                    without certificates makes the tool exit non-zero printing ``No
                    certificate found, please set certs firstly!`` and no switch
``-ping -g address A``  ``device 0 PING A``, one ``recv seq=0,time=0.067000ms`` or
                    ``recv time out seq=0`` line per packet, then
                    ``3 packets transmitted, 3 received, 0.00% packet loss``. Any lost packet
                    makes the tool exit non-zero although the output is complete.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# Every value the driver's net-health table knows (g_net_health_status); for documentation
# and tests: parse_net_health reports any value so a newer driver's wording is not an error.
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
NET_HEALTH_OK = "Success"

# Error texts hccn_tool prints, with a non-zero exit, when there is nothing to report: `-ip -g`
# on a NIC without an address, `-tls -g` on a NIC without certificates. They are answers
# (null), not failures.
IP_NOT_PRESET = "no ip was preset"
TLS_NO_CERT = "No certificate found"

_LINK_RE = re.compile(r"^link status:\s*(\S+)\s*$", re.IGNORECASE)
_NET_HEALTH_RE = re.compile(r"^net health status:\s*(.*?)\s*$", re.IGNORECASE)
_IPADDR_RE = re.compile(r"^ipaddr:\s*(\S+)\s*$")
_NETMASK_RE = re.compile(r"^netmask:\s*(\S+)\s*$")
_TLS_SWITCH_RE = re.compile(r"\btls switch\[(\d+)\]")
# "device 0 PING 10.0.0.2" (classic); "device 0 dev eth0 PING 10.0.0.1 to 10.0.0.2" (newer tool).
_PING_HEADER_RE = re.compile(r"^device \d+ (?:dev \S+ )?PING6? (?:\S+ to )?(\S+)\s*$")
_PING_REPLY_RE = re.compile(r"^recv seq[=:]\d+")
_PING_LOST_RE = re.compile(r"^(?:recv time out|pkt send fail) seq[=:]\s*\d+")
_PING_SUMMARY_RE = re.compile(
    r"^(\d+) packets transmitted, (\d+) received, ([0-9.]+)% packet loss",
)
# Per-packet errors the driver itself treats as "ping failed" (dsmi_ping_fun).
_PING_ERRORS = ("Destination Host Unreachable", "Message too long")
_HCCN_CONF_ADDRESS_RE = re.compile(r"^\s*address_(\d+)\s*=\s*(\S*)\s*$")


class HccnParseError(ValueError):
    """Output that does not have the expected form; ``line`` is the text that did not fit."""

    def __init__(self, what: str, line: str) -> None:
        self.what = what
        self.line = line
        super().__init__(f"unrecognised {what} output: {line!r}")


# (argv) -> (rc, stdout, stderr): a module's run_command.
RunCommand = Callable[[List[str]], Tuple[int, str, str]]


class HccnCommandError(Exception):
    """A query of one device failed, or answered what the parser does not recognise.

    ``str()`` names the device, the command line and its output; ``details`` are the extra
    fields of the module failure (device, cmd, rc, stdout, stderr).
    """

    def __init__(self, msg: str, **details: Any) -> None:
        self.details = details
        super().__init__(msg)


def _lines(text: str) -> List[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _first_line(text: str) -> str:
    lines = _lines(text)
    return lines[0] if lines else ""


def parse_link(text: str) -> str:
    """``hccn_tool -i N -link -g`` -> ``"UP"`` or ``"DOWN"``."""
    for line in _lines(text):
        match = _LINK_RE.match(line)
        if match:
            state = match.group(1).upper()
            if state not in ("UP", "DOWN"):
                raise HccnParseError("link", line)
            return state
    raise HccnParseError("link", _first_line(text))


def parse_net_health(text: str) -> str:
    """``hccn_tool -i N -net_health -g`` -> the status text, e.g. ``"Success"`` or ``"Fault"``."""
    for line in _lines(text):
        match = _NET_HEALTH_RE.match(line)
        if match:
            if not match.group(1):
                raise HccnParseError("net_health", line)
            return match.group(1)
    raise HccnParseError("net_health", _first_line(text))


def _ipv4(value: str, what: str, line: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise HccnParseError(what, line) from None


def parse_ip(text: str) -> Tuple[Optional[str], Optional[str]]:
    """``hccn_tool -i N -ip -g`` -> ``(ip, netmask)``; ``(None, None)`` when no address is set.

    The tool prints one ipaddr/netmask pair per RoCE port; the NPU NIC has one, so the first
    pair is the answer.
    """
    if IP_NOT_PRESET in (text or ""):
        return None, None
    ip = netmask = None
    for line in _lines(text):
        match = _IPADDR_RE.match(line)
        if match and ip is None:
            ip = _ipv4(match.group(1), "ip", line)
            continue
        match = _NETMASK_RE.match(line)
        if match and netmask is None:
            netmask = _ipv4(match.group(1), "ip", line)
    if ip is None or netmask is None:
        raise HccnParseError("ip", _first_line(text))
    return ip, netmask


def parse_tls(text: str) -> Optional[bool]:
    """``hccn_tool -i N -tls -g`` -> whether TLS is enabled (``tls switch[1]``); None without certificates."""
    if TLS_NO_CERT in (text or ""):
        return None
    for line in _lines(text):
        match = _TLS_SWITCH_RE.search(line)
        if match:
            if match.group(1) not in ("0", "1"):
                raise HccnParseError("tls", line)
            return match.group(1) == "1"
    raise HccnParseError("tls", _first_line(text))


def parse_ping(text: str) -> Dict[str, Any]:
    """``hccn_tool -i N -ping -g address A`` -> ``{address, reachable, transmitted, received, loss_pct}``.

    ``reachable`` means every packet came back: HCCL and Mooncake need a clean path, and the
    Ascend guides treat only ``0.00% packet loss`` as connected. Without the summary line
    (the tool can stop after a per-packet error) the counts come from the per-packet lines.
    """
    address = None
    replies = lost = 0
    summary = None
    for line in _lines(text):
        match = _PING_HEADER_RE.match(line)
        if match:
            address = match.group(1)
            continue
        if _PING_REPLY_RE.match(line):
            replies += 1
            continue
        if _PING_LOST_RE.match(line) or any(err in line for err in _PING_ERRORS):
            lost += 1
            continue
        match = _PING_SUMMARY_RE.match(line)
        if match:
            summary = (int(match.group(1)), int(match.group(2)), float(match.group(3)))
    if summary is not None:
        transmitted, received, loss_pct = summary
    elif address is not None and lost:
        transmitted, received = replies + lost, replies
        loss_pct = round(100.0 * lost / transmitted, 2)
    else:
        raise HccnParseError("ping", _first_line(text))
    return {
        "address": address,
        "reachable": transmitted > 0 and received == transmitted,
        "transmitted": transmitted,
        "received": received,
        "loss_pct": loss_pct,
    }


def parse_hccn_conf(text: str) -> List[int]:
    """``/etc/hccn.conf`` -> the sorted device indices that have an ``address_N=`` line."""
    devices = set()
    for line in (text or "").splitlines():
        match = _HCCN_CONF_ADDRESS_RE.match(line)
        if match and match.group(2):
            devices.add(int(match.group(1)))
    return sorted(devices)


def _failed(device: int, argv: List[str], rc: int, out: str, err: str) -> HccnCommandError:
    output = "\n".join(part.strip() for part in (out, err) if part.strip())
    cmd = shlex.join(argv)
    return HccnCommandError(
        f"device {device}: '{cmd}' failed (rc={rc}): {output or '(no output)'}",
        device=device,
        cmd=cmd,
        rc=rc,
        stdout=out,
        stderr=err,
    )


def _parsed(device: int, argv: List[str], parser: Callable[[str], Any], text: str) -> Any:
    try:
        return parser(text)
    except HccnParseError as exc:
        cmd = shlex.join(argv)
        raise HccnCommandError(
            f"device {device}: unrecognised output of '{cmd}': {exc.line!r}", device=device, cmd=cmd, stdout=text
        ) from None


def query(
    run: RunCommand, tool: str, device: int, args: List[str], parser: Callable[[str], Any], answer_on_error: str = ""
) -> Any:
    """Run ``hccn_tool -i device *args`` and parse its output; raises :class:`HccnCommandError`.

    A non-zero exit is an error unless the output contains ``answer_on_error`` (an error text
    that is an answer, such as "no ip was preset").
    """
    argv = [tool, "-i", str(device), *args]
    rc, out, err = run(argv)
    if rc != 0 and not (answer_on_error and answer_on_error in out + err):
        raise _failed(device, argv, rc, out, err)
    return _parsed(device, argv, parser, out if rc == 0 else out + err)


def ping(run: RunCommand, tool: str, device: int, address: str) -> Dict[str, Any]:
    """``hccn_tool -i device -ping -g address A`` -> the :func:`parse_ping` result for ``address``."""
    argv = [tool, "-i", str(device), "-ping", "-g", "address", address]
    rc, out, err = run(argv)
    # A lost packet makes hccn_tool exit non-zero after a complete report, so the report
    # is read first; the exit code is the failure only when there is no report.
    try:
        result = parse_ping(out)
    except HccnParseError:
        if rc != 0:
            raise _failed(device, argv, rc, out, err) from None
        result = _parsed(device, argv, parse_ping, out)
    result["address"] = address
    return result


def query_device(
    run: RunCommand,
    tool: str,
    device: int,
    *,
    status: bool = True,
    tls: bool = True,
    addresses: Sequence[str] = (),
) -> Dict[str, Any]:
    """One device's link, net health, IP and TLS (``status``) and its pings of ``addresses``.

    Without ``status`` only the pings run and the status fields are None. Raises
    :class:`HccnCommandError` on the first query that fails.
    """
    link = net_health = ip = netmask = tls_enabled = None
    if status:
        link = query(run, tool, device, ["-link", "-g"], parse_link)
        net_health = query(run, tool, device, ["-net_health", "-g"], parse_net_health)
        ip, netmask = query(run, tool, device, ["-ip", "-g"], parse_ip, answer_on_error=IP_NOT_PRESET)
        if tls:
            tls_enabled = query(run, tool, device, ["-tls", "-g"], parse_tls, answer_on_error=TLS_NO_CERT)
    return {
        "device": device,
        "link": link,
        "net_health": net_health,
        "ip": ip,
        "netmask": netmask,
        "tls_enabled": tls_enabled,
        "ping": [ping(run, tool, device, address) for address in addresses],
    }


def _queried(devices: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    # Devices queried for pings only have no status (None) to judge.
    return [d for d in devices if d["link"] is not None]


def check_link(devices: List[Dict[str, Any]]) -> List[str]:
    """One problem per device whose link is not UP."""
    return [f"device {d['device']}: link {d['link']}" for d in _queried(devices) if d["link"] != "UP"]


def check_net_health(devices: List[Dict[str, Any]]) -> List[str]:
    """One problem per device whose net health is not ``Success``."""
    return [
        f"device {d['device']}: net health {d['net_health']} (expected {NET_HEALTH_OK})"
        for d in _queried(devices)
        if d["net_health"] != NET_HEALTH_OK
    ]


def check_ip(devices: List[Dict[str, Any]]) -> List[str]:
    """One problem per device without an IPv4 address (``-ip -g``: no ip was preset)."""
    return [f"device {d['device']}: no IP address" for d in _queried(devices) if d["ip"] is None]


def check_ping(devices: List[Dict[str, Any]]) -> List[str]:
    """One problem per ping that lost a packet."""
    return [
        f"device {d['device']}: ping {p['address']} failed ({p['transmitted']} sent, {p['received']} received)"
        for d in devices
        for p in d["ping"]
        if not p["reachable"]
    ]


def summarize(devices: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The ``summary`` return value: what is wrong, whether or not a check was asked for."""
    return {
        "total": len(devices),
        "link_down": [d["device"] for d in _queried(devices) if d["link"] != "UP"],
        "unhealthy": [d["device"] for d in _queried(devices) if d["net_health"] != NET_HEALTH_OK],
        "no_ip": [d["device"] for d in _queried(devices) if d["ip"] is None],
        "tls_enabled": [d["device"] for d in devices if d["tls_enabled"]],
        "unreachable": [
            {"device": d["device"], "address": p["address"]} for d in devices for p in d["ping"] if not p["reachable"]
        ],
        "problems": check_link(devices) + check_net_health(devices) + check_ping(devices),
    }


def peer_map(devices_by_host: Dict[str, Optional[List[Dict[str, Any]]]], local_host: str) -> Dict[int, List[str]]:
    """Local device N -> the IPs of device N of every other host (hosts in name order).

    ``devices_by_host`` maps each host to the devices its hccn query returned. Peer devices
    without an address are left out (their host reports them); local devices with no peer
    address are omitted.
    """
    local_devices = [d["device"] for d in devices_by_host.get(local_host) or []]
    peers: Dict[int, List[str]] = {}
    for device in local_devices:
        addresses = [
            peer_device["ip"]
            for host, devices in sorted(devices_by_host.items())
            if host != local_host
            for peer_device in devices or []
            if peer_device["device"] == device and peer_device.get("ip")
        ]
        if addresses:
            peers[device] = addresses
    return peers
