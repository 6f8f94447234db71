# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight of one vLLM host: what to read for its plan records, and what is wrong in what was read.

Pure functions, no Ansible imports. Three callers share them:

* ``plugins/modules/preflight_facts.py`` (on the host) asks :func:`normalize_records` and
  :func:`gather_targets` what to read, reads it in one round trip, and uses the parsers here
  (``/proc/net/tcp``, ``ip -j addr``, the docker CLI's answers, ``version.info``);
* ``plugins/action/preflight_check.py`` (on the controller) builds the fabric pings with
  :func:`ping_plan` from this host's and its fabric peers' facts, then
  :func:`collect_problems` turns everything into one list of problems, each naming the host
  and the chip, device, port, path, NIC or variable;
* the unit tests, on realistic records and facts.

The records are the plan's (the role's options): ``servers`` (one per vLLM container on the
host: name = container name, role, chips, weights, container.image), ``ports`` (every TCP
range the host will bind: first, last, what, variable, owner = the container that binds it)
and ``network`` (empty on single-node hosts; on PD hosts nic, ip, devices, hccn_conf,
fabric_peers).

A re-run must pass: a container of ours that is already running owns its ports and its chips
(the listeners and the processes on them are its own), so those two checks skip what it owns.
npu-smi cannot tell reliably which container a process belongs to (a containerised process
may show no name, and npu-smi 23-25 prints host pids only), so the exemption is per chip of
the running server, not per process - as kolla-ansible's prechecks skip the ports of their
own running containers.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.hccn import check_ip, check_link, check_net_health, peer_map
from ansible_collections.ascend.vllm.plugins.module_utils.npu_smi import (
    check_expected_chips,
    check_healthy,
    check_no_processes,
)

ROLES = ("single", "prefill", "decode")
PD_ROLES = ("prefill", "decode")
GIB = 1024**3
# /proc/net/tcp{,6} "st" of a listening socket (TCP_LISTEN).
TCP_LISTEN = "0A"
_VERSION_LINE_RE = re.compile(r"(?m)^Version=(.*)$")
_NUMERIC_VERSION_RE = re.compile(r"^[0-9]+(?:\.[0-9]+)*")
# What the docker CLI prints for each name it does not know (20.10 to 27.x wordings).
_NO_SUCH_RE = re.compile(r"No such (?:container|image|object): (\S+)")


# ---------------------------------------------------------------------------------------------
# The records


@dataclass
class Records:
    """The usable records and what is wrong with the others (each naming the variable)."""

    servers: List[Dict[str, Any]] = field(default_factory=list)
    ports: List[Dict[str, Any]] = field(default_factory=list)
    network: Optional[Dict[str, Any]] = None
    problems: List[str] = field(default_factory=list)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(v) and v >= 0 for v in value)


def _server(where: str, record: Any, problems: List[str]) -> Optional[Dict[str, Any]]:
    if not isinstance(record, Mapping):
        problems.append(f"{where}: a server record must be a mapping, got {record!r}")
        return None
    name = record.get("name")
    if _is_str(name):
        where = f"{where} ({name})"
    wrong = []
    if not _is_str(name):
        wrong.append(f"'name' must be the container name, got {name!r}")
    if record.get("role") not in ROLES:
        wrong.append(f"'role' must be one of {', '.join(ROLES)}, got {record.get('role')!r}")
    if not _int_list(record.get("chips")):
        wrong.append(f"'chips' must be a list of chip indexes, got {record.get('chips')!r}")
    weights = record.get("weights", [])
    if not (
        isinstance(weights, list)
        and all(isinstance(w, Mapping) and _is_str(w.get("what")) and _is_str(w.get("path")) for w in weights)
    ):
        wrong.append(f"'weights' must be a list of {{what, path}}, got {weights!r}")
    container = record.get("container")
    image = container.get("image") if isinstance(container, Mapping) else None
    if not _is_str(image):
        wrong.append(f"'container.image' must be an image name, got {image!r}")
    if wrong:
        problems.extend(f"{where}: {w}" for w in wrong)
        return None
    return {
        "name": name,
        "role": record["role"],
        "chips": sorted(set(record["chips"])),
        "weights": [{"what": w["what"], "path": w["path"]} for w in weights],
        "image": image,
    }


def _port(where: str, record: Any, problems: List[str]) -> Optional[Dict[str, Any]]:
    if not isinstance(record, Mapping):
        problems.append(f"{where}: a port record must be a mapping, got {record!r}")
        return None
    first, last = record.get("first"), record.get("last")
    wrong = []
    if not (_is_int(first) and _is_int(last) and 1 <= first <= last <= 65535):
        wrong.append(f"'first' and 'last' must be ports with first <= last, got {first!r} and {last!r}")
    for key in ("what", "variable", "owner"):
        if not _is_str(record.get(key)):
            wrong.append(f"'{key}' must be a non-empty string, got {record.get(key)!r}")
    if wrong:
        problems.extend(f"{where}: {w}" for w in wrong)
        return None
    return {key: record[key] for key in ("first", "last", "what", "variable", "owner")}


def _network(record: Any, problems: List[str]) -> Optional[Dict[str, Any]]:
    if record is None or (isinstance(record, Mapping) and not record):
        return None
    where = "preflight_network"
    if not isinstance(record, Mapping):
        problems.append(f"{where} must be a mapping (empty on single-node hosts), got {record!r}")
        return None
    wrong = []
    for key in ("nic", "hccn_conf"):
        if not _is_str(record.get(key)):
            wrong.append(f"'{key}' must be a non-empty string, got {record.get(key)!r}")
    try:
        ipaddress.ip_address(str(record.get("ip")))
    except ValueError:
        wrong.append(f"'ip' must be an IP address, got {record.get('ip')!r}")
    # A prefill/decode host always has devices to check and hosts of the other role to reach.
    if not (_int_list(record.get("devices")) and record["devices"]):
        wrong.append(f"'devices' must be a non-empty list of device indexes, got {record.get('devices')!r}")
    peers = record.get("fabric_peers")
    if not (isinstance(peers, list) and peers and all(_is_str(p) for p in peers)):
        wrong.append(f"'fabric_peers' must be a non-empty list of inventory hostnames, got {peers!r}")
    if wrong:
        problems.extend(f"{where}: {w}" for w in wrong)
        return None
    return {
        "nic": record["nic"],
        "ip": str(ipaddress.ip_address(str(record["ip"]))),
        "devices": sorted(set(record["devices"])),
        "hccn_conf": record["hccn_conf"],
        "fabric_peers": list(dict.fromkeys(peers)),
    }


def normalize_records(servers: Any, ports: Any, network: Any) -> Records:
    """Check the records' shape; keep the usable ones, one problem per unusable field."""
    records = Records()
    for i, record in enumerate(servers or []):
        server = _server(f"preflight_servers[{i}]", record, records.problems)
        if server is not None:
            records.servers.append(server)
    for i, record in enumerate(ports or []):
        port = _port(f"preflight_ports[{i}]", record, records.problems)
        if port is not None:
            records.ports.append(port)
    records.network = _network(network, records.problems)
    pd_servers = [s["name"] for s in records.servers if s["role"] in PD_ROLES]
    if pd_servers and not network:
        records.problems.append(
            f"preflight_network is empty, but {', '.join(pd_servers)} are prefill/decode servers: their NPU "
            "network (device links and IPs, hccn.conf, the NIC, the fabric pings) would not be checked"
        )
    return records


def _unique(values: Iterable[Any]) -> List[Any]:
    return list(dict.fromkeys(values))


def gather_targets(records: Records, check_image: bool = True) -> Dict[str, Any]:
    """What ``preflight_facts`` reads on the host for these records.

    npu-smi and the driver version only where servers run (a proxy-only host may have no
    NPU); the containers that own servers or ports; the images; the weights; the listening
    ports when the host binds any; the NPU network of a PD host.
    """
    network = records.network
    return {
        "npu": bool(records.servers),
        "containers": _unique([s["name"] for s in records.servers] + [p["owner"] for p in records.ports]),
        "images": _unique(s["image"] for s in records.servers) if check_image else [],
        "weights": _unique(w["path"] for s in records.servers for w in s["weights"]),
        "listening": bool(records.ports),
        "hccn_devices": network["devices"] if network else [],
        "hccn_conf": network["hccn_conf"] if network else None,
        "interfaces": network is not None,
    }


# ---------------------------------------------------------------------------------------------
# Parsers of what the module reads


def _proc_net_address(text: str) -> str:
    """``0100007F`` (IPv4) or 32 hex digits (IPv6): the kernel prints each 32-bit word in host
    (little-endian on x86_64 and aarch64) byte order."""
    raw = bytes.fromhex(text)
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, swapped)


def parse_proc_net_tcp(text: str) -> List[Dict[str, Any]]:
    """``/proc/net/tcp`` or ``/proc/net/tcp6`` -> the listening sockets ``[{address, port}]``."""
    listening = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != TCP_LISTEN:
            continue
        address, port = fields[1].split(":")
        listening.append({"address": _proc_net_address(address), "port": int(port, 16)})
    return listening


def parse_ip_addr(text: str) -> List[Dict[str, Any]]:
    """``ip -j addr show`` -> ``[{name, operstate, addresses: ["a.b.c.d/len", ...]}]``."""
    interfaces = []
    for entry in json.loads(text or "[]"):
        interfaces.append(
            {
                "name": entry["ifname"],
                "operstate": entry.get("operstate", "UNKNOWN"),
                "addresses": [f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", []) if "local" in a],
            }
        )
    return interfaces


def parse_version_info(text: str) -> Optional[str]:
    """The driver's ``version.info`` -> its ``Version=`` value, or None."""
    found = _VERSION_LINE_RE.findall(text or "")
    return found[0].strip() if found else None


def docker_unknown_names(rc: int, stderr: str) -> Tuple[List[str], Optional[str]]:
    """From ``docker container|image inspect NAME...``: the names it does not know, and an error.

    Docker exits non-zero when any name is unknown, printing one "No such ..." line per such
    name; anything else on standard error (the engine is down, permission denied) is an error.
    """
    unknown = _NO_SUCH_RE.findall(stderr or "")
    other = [line for line in (stderr or "").splitlines() if line.strip() and not _NO_SUCH_RE.search(line)]
    if rc != 0 and (other or not unknown):
        return unknown, "\n".join(other) or (stderr or "").strip() or f"exit code {rc}"
    return unknown, None


# ---------------------------------------------------------------------------------------------
# The fabric pings


def fabric_devices(facts: Any) -> Optional[List[Dict[str, Any]]]:
    """The NPU devices a host's ``preflight_facts`` read, or None when it has no such facts."""
    if not isinstance(facts, Mapping):
        return None
    hccn = facts.get("hccn")
    if not isinstance(hccn, Mapping) or hccn.get("error"):
        return None
    return list(hccn.get("devices") or [])


def ping_plan(
    host: str, facts: Mapping[str, Any], peer_devices: Mapping[str, Optional[List[Dict[str, Any]]]]
) -> Dict[int, List[str]]:
    """Device N of this host -> the IPs of device N of each fabric peer (those it has)."""
    by_host: Dict[str, Optional[List[Dict[str, Any]]]] = {host: fabric_devices(facts)}
    by_host.update({peer: devices for peer, devices in peer_devices.items() if peer != host})
    return peer_map(by_host, host)


# ---------------------------------------------------------------------------------------------
# The problems


@dataclass
class Settings:
    """The role's thresholds and switches (the names of its options appear in the problems)."""

    min_driver_version: str = "23.0.0"
    driver_version_file: str = "/usr/local/Ascend/driver/version.info"
    image_must_exist: bool = False
    disk_paths: Sequence[str] = ()
    min_free_disk_gb: float = 50


def _version_tuple(version: str) -> Optional[Tuple[int, ...]]:
    match = _NUMERIC_VERSION_RE.match(version.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else None


def _older(found: Tuple[int, ...], wanted: Tuple[int, ...]) -> bool:
    width = max(len(found), len(wanted))
    return found + (0,) * (width - len(found)) < wanted + (0,) * (width - len(wanted))


def _running(facts: Mapping[str, Any]) -> List[str]:
    containers = (facts.get("docker") or {}).get("containers") or []
    return [c["name"] for c in containers if c.get("running")]


def _read(facts: Mapping[str, Any], key: str, what: str, failed: str) -> Tuple[Optional[Mapping[str, Any]], List[str]]:
    """The facts' section ``key``, or (None, the problem saying why there is nothing to judge)."""
    section = facts.get(key)
    if not isinstance(section, Mapping):
        return None, [f"{what} not read (no {key} facts)"]
    if section.get("error"):
        return None, [f"{failed}: {section['error']}"]
    return section, []


def _chip_problems(records: Records, facts: Mapping[str, Any], running: List[str]) -> List[str]:
    npu, problems = _read(facts, "npu", "the chips were", "npu-smi")
    if npu is None:
        return problems
    chips, processes = npu["chips"], npu["processes"]
    problems = []
    for server in records.servers:
        of = f" (chip of {server['name']})"
        problems += [p + of for p in check_expected_chips(chips, server["chips"])]
        problems += [p + of for p in check_healthy(chips, server["chips"])]
        if server["name"] not in running:
            problems += [p + of for p in check_no_processes(chips, processes, server["chips"])]
    return problems


def _driver_problems(records: Records, facts: Mapping[str, Any], settings: Settings) -> List[str]:
    if not settings.min_driver_version or not records.servers:
        return []
    wanted = _version_tuple(settings.min_driver_version)
    if wanted is None:
        return [f"preflight_min_driver_version {settings.min_driver_version!r} is not a version number"]
    npu = facts.get("npu") if isinstance(facts.get("npu"), Mapping) else {}
    found = npu.get("driver_version")
    version_file = facts.get("driver_version_file") or {}
    if found is None:
        found = version_file.get("version")
    if found is None:
        why = version_file.get("error") or "has no Version= line"
        return [
            f"driver version unknown: npu-smi prints none and {settings.driver_version_file} {why} "
            "(preflight_driver_version_file)"
        ]
    found_tuple = _version_tuple(found)
    if found_tuple is None:
        return [f"driver version {found!r} is not a version number (preflight_min_driver_version)"]
    if _older(found_tuple, wanted):
        return [f"driver version {found} is older than {settings.min_driver_version} (preflight_min_driver_version)"]
    return []


def _weights_problems(records: Records, facts: Mapping[str, Any]) -> List[str]:
    by_path = {w["path"]: w for w in facts.get("weights") or []}
    problems = []
    for server in records.servers:
        for weights in server["weights"]:
            found = by_path.get(weights["path"])
            where = f"{weights['what']} of {server['name']}"
            if found is None:
                problems.append(f"{where}: {weights['path']} was not read (no weights facts)")
            elif found.get("missing"):
                problems.append(f"{where} missing: no {found['config_json']}")
            elif found.get("error"):
                problems.append(f"{where}: cannot use {found['config_json']}: {found['error']}")
    return problems


def _image_problems(facts: Mapping[str, Any], settings: Settings) -> List[str]:
    if not settings.image_must_exist:
        return []
    images = (facts.get("docker") or {}).get("images") or []
    return [f"image {i['name']} not present (preflight_image_must_exist)" for i in images if not i.get("present")]


def _port_problems(records: Records, facts: Mapping[str, Any], running: List[str]) -> List[str]:
    listening, problems = _read(facts, "listening", "the listening ports were", "cannot list the listening TCP ports")
    if listening is None:
        return problems
    addresses: Dict[int, List[str]] = {}
    for socket_ in listening.get("ports") or []:
        addresses.setdefault(socket_["port"], [])
        if socket_["address"] not in addresses[socket_["port"]]:
            addresses[socket_["port"]].append(socket_["address"])
    for claim in records.ports:
        if claim["owner"] in running:
            continue
        for port in range(claim["first"], claim["last"] + 1):
            if port in addresses:
                problems.append(
                    f"port {port} ({claim['what']} of {claim['owner']}, {claim['variable']}) is already in use "
                    f"by another process (listening on {', '.join(addresses[port])})"
                )
    return problems


def _disk_problems(facts: Mapping[str, Any], settings: Settings) -> List[str]:
    if settings.min_free_disk_gb <= 0:
        return []
    by_path = {d["path"]: d for d in facts.get("disk") or []}
    problems = []
    for path in settings.disk_paths:
        disk = by_path.get(path)
        if disk is None or disk.get("error"):
            why = disk["error"] if disk else "not read (no disk facts)"
            problems.append(f"cannot measure the free disk space of {path} (preflight_disk_paths): {why}")
            continue
        free_gb = round(disk["free_bytes"] / GIB, 1)
        if free_gb < settings.min_free_disk_gb:
            problems.append(
                f"{path} has {free_gb} GiB free, less than {settings.min_free_disk_gb:g} GiB "
                "(preflight_min_free_disk_gb)"
            )
    return problems


def _hccn_problems(network: Dict[str, Any], facts: Mapping[str, Any]) -> List[str]:
    hccn, problems = _read(facts, "hccn", "the NPU devices were", "hccn_tool")
    if hccn is None:
        return problems
    devices = [d for d in hccn.get("devices") or [] if d["device"] in network["devices"]]
    failed = [d for d in devices if d.get("error")]
    answered = [d for d in devices if not d.get("error")]
    return [d["error"] for d in failed] + check_link(answered) + check_net_health(answered) + check_ip(answered)


def _hccn_conf_problems(network: Dict[str, Any], facts: Mapping[str, Any]) -> List[str]:
    conf = facts.get("hccn_conf") or {}
    if conf.get("exists"):
        return []
    return [
        f"{network['hccn_conf']} missing (preflight_network.hccn_conf): the NPU NICs' IP configuration "
        "(hccn_tool -i N -ip -s writes it) is not on this host"
    ]


def _nic_problems(network: Dict[str, Any], facts: Mapping[str, Any]) -> List[str]:
    section, problems = _read(facts, "interfaces", "the network interfaces were", "cannot list the network interfaces")
    if section is None:
        return problems
    interfaces = section.get("interfaces") or []
    wanted = ipaddress.ip_address(network["ip"])
    carriers = [i["name"] for i in interfaces if any(ipaddress.ip_interface(a).ip == wanted for a in i["addresses"])]
    on = f"; {network['ip']} is on {', '.join(carriers)}" if carriers else ""
    nic = next((i for i in interfaces if i["name"] == network["nic"]), None)
    if nic is None:
        names = ", ".join(i["name"] for i in interfaces) or "none"
        return [f"NIC {network['nic']} (preflight_network.nic) does not exist; this host has {names}{on}"]
    problems = []
    if network["nic"] not in carriers:
        problems.append(
            f"NIC {network['nic']} does not carry {network['ip']} (preflight_network.ip); "
            f"its addresses: {', '.join(nic['addresses']) or 'none'}{on}"
        )
    if nic["operstate"] == "DOWN":
        problems.append(f"NIC {network['nic']} (preflight_network.nic) is DOWN")
    return problems


def _ping_problems(
    network: Dict[str, Any],
    ping: Optional[Mapping[str, Any]],
    peer_devices: Mapping[str, Optional[List[Dict[str, Any]]]],
) -> List[str]:
    problems = [
        f"fabric peer {peer} (preflight_network.fabric_peers) has no NPU network facts in this play (not in "
        "the play, or its preflight failed before them): its devices were not pinged"
        for peer in network["fabric_peers"]
        if peer_devices.get(peer) is None
    ]
    if ping is None:
        return problems
    if "devices" not in ping:
        return [*problems, f"cannot ping the fabric peers' devices: {ping.get('msg', 'hccn_info failed')}"]
    owner = {
        d["ip"]: f"device {d['device']} of {peer}"
        for peer in network["fabric_peers"]
        for d in peer_devices.get(peer) or []
        if d.get("ip")
    }
    for device in ping["devices"]:
        for result in device["ping"]:
            if not result["reachable"]:
                target = owner.get(result["address"], "a fabric peer")
                problems.append(
                    f"device {device['device']}: ping {result['address']} ({target}) failed "
                    f"({result['transmitted']} sent, {result['received']} received)"
                )
    return problems


def collect_problems(
    host: str,
    records: Records,
    facts: Mapping[str, Any],
    settings: Settings,
    ping: Optional[Mapping[str, Any]] = None,
    peer_devices: Optional[Mapping[str, Optional[List[Dict[str, Any]]]]] = None,
) -> List[str]:
    """Every problem of ``host``, each prefixed with the host name, in a stable order.

    ``facts`` is the ``preflight_facts`` result; ``ping`` the ``hccn_info`` result of the
    fabric pings (None when nothing was pinged); ``peer_devices`` each fabric peer's NPU
    devices (None for a peer without facts in the play).
    """
    if "docker" not in facts:
        # The facts task itself failed (it never fails on what it reads): nothing to judge.
        return [f"{host}: {p}" for p in records.problems] + [
            f"{host}: cannot read the host: {facts.get('msg', 'preflight_facts returned nothing')}"
        ]
    running = _running(facts)
    problems = list(records.problems)
    docker_error = (facts.get("docker") or {}).get("error")
    if docker_error:
        problems.append(f"cannot query the Docker engine about our containers and images: {docker_error}")
    if records.servers:
        problems += _chip_problems(records, facts, running)
    problems += _driver_problems(records, facts, settings)
    problems += _weights_problems(records, facts)
    problems += _image_problems(facts, settings)
    if records.ports:
        problems += _port_problems(records, facts, running)
    problems += _disk_problems(facts, settings)
    network = records.network
    if network is not None:
        problems += _hccn_problems(network, facts)
        problems += _hccn_conf_problems(network, facts)
        problems += _nic_problems(network, facts)
        problems += _ping_problems(network, ping, peer_devices or {})
    return [f"{host}: {p}" for p in _unique(problems)]


def _chip_ranges(chips: Sequence[int]) -> str:
    spans: List[List[int]] = []
    for chip in sorted(set(chips)):
        if spans and chip == spans[-1][1] + 1:
            spans[-1][1] = chip
        else:
            spans.append([chip, chip])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans) or "none"


def summary(host: str, records: Records, facts: Mapping[str, Any], pinged: int) -> str:
    """One line on what was checked, for the log of a passing run."""
    running = [s["name"] for s in records.servers if s["name"] in _running(facts)]
    absent = [i["name"] for i in (facts.get("docker") or {}).get("images") or [] if not i.get("present")]
    parts = [
        f"{host}: {len(records.servers)} server(s) on chips "
        f"{_chip_ranges([c for s in records.servers for c in s['chips']])}, {len(records.ports)} port range(s)",
        "already running (their chips and ports are their own): " + ", ".join(running) if running else "none running",
        "images absent (vllm_image loads or pulls them): " + ", ".join(absent) if absent else "images present",
    ]
    if records.network is not None:
        parts.append(
            f"NPU network: {len(records.network['devices'])} device(s), NIC {records.network['nic']}, "
            f"{pinged} fabric ping(s)"
        )
    return "; ".join(parts)
