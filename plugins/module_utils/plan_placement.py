# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Placement: which host runs which server, on which chips and ports.

An *instance* is what clients are balanced over: a single-node server, or one PD data-parallel
group (its DP ranks run every forward pass together under expert parallelism). A *server* is
one ``vllm serve`` process in its own container: the single-node server, or one DP rank.

Single node: one instance per host of group ``single``, with vLLM's in-process data
parallelism. PD: a role (prefill, decode) has ``instances`` independent DP groups; instance k's
ranks fill the role's hosts in inventory order, after the chips earlier instances took,
``dp_local`` per host (default: as many as the host's free chips hold). Chips go in the order
of the host's ``ascend_chips``, prefill first when a host serves both roles.

The group, not the scenario, has the last word on how many instances a role runs: hosts of a
role's group left untouched by the scenario's ``instances`` (and in no other PD role's group)
carry more instances of the same topology, each on hosts of its own, in inventory order. So a
host added to group ``decode`` is one more decode instance (scale out), and the records of the
instances before it do not change: a re-run leaves their containers alone.

Ports are allocated so that no two servers of a deployment can collide: a server's HTTP port is
its role's port plus the number of the role's servers placed on the host before it; instance k
of a role has the role's kv_port plus the kv ports of the instances before it (dp x tp each; a
rank listens on ``kv_port + rank x tp ... + tp - 1``) and the role's DP rpc port plus k.
"""

from __future__ import annotations

import ipaddress
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.plan_catalogue import RoleSpec
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import (
    CoerceError,
    HostView,
    Issues,
    to_chip_ids,
    to_int,
    to_str,
)

CHIPS_PER_HARDWARE = {"a3": 16, "a2": 8}


class Host(NamedTuple):
    """What the plan needs of one host, coerced (errors recorded by its view)."""

    name: str
    view: HostView
    hardware: Optional[str]
    chips_per_node: int
    chips: List[int]
    ip: Optional[str]
    nic: Optional[str]


def _ip_address(value: object) -> str:
    text = to_str(value).strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise CoerceError(f"{text!r} is not an IP address") from None
    if address.version != 4:
        # HCCL_IF_IP, vLLM's DP address and the proxy's backend URLs are written as IPv4 here.
        raise CoerceError(f"{text!r} is an IPv6 address; give the host's IPv4 address on ascend_nic_name")
    return text


def _nic_name(value: object) -> str:
    """A Linux interface name (the kernel's rules: 1-15 bytes, no '/', ':' or white space).
    HCCL, Gloo and the TP sockets bind by this name; preflight checks that it exists."""
    text = to_str(value)
    wrong = len(text.encode()) > 15 or text in ("", ".", "..") or any(c in text for c in "/: \t\n")
    if wrong:
        raise CoerceError(f"{text!r} cannot be a network interface name (1-15 characters, no '/', ':' or spaces)")
    return text


def read_host(view: HostView, needs_network: bool) -> Host:
    """A host's hardware, usable chips and (for PD servers, which need them) IP and NIC."""
    hardware = view.choice("ascend_hardware", tuple(CHIPS_PER_HARDWARE))
    default_chips = CHIPS_PER_HARDWARE.get(hardware or "", 0)
    per_node = view.get(
        "ascend_chips_per_node", lambda v: to_int(v, minimum=1, maximum=64), default=default_chips or None
    )
    per_node = per_node or default_chips
    if hardware and per_node != default_chips:
        message = f"{per_node} chips on {hardware} hardware, which has {default_chips}"
        view.issues.warn(view.name, "ascend_chips_per_node", message)
    chips = view.get("ascend_chips", lambda v: to_chip_ids(v, limit=per_node), required=False)
    chips = list(range(per_node)) if chips is None else chips
    ip = view.get("ascend_local_ip", _ip_address, required=needs_network)
    nic = view.get("ascend_nic_name", _nic_name, required=needs_network)
    return Host(view.name, view, hardware, per_node, chips, ip, nic)


class Instance(NamedTuple):
    """One instance: a single-node server, or a PD DP group of ``spec.dp`` ranks."""

    name: str  # single0, prefill0, decode1, ...
    role: str
    index: int  # among the instances of its role
    spec: RoleSpec
    master: Host  # PD: the host of rank 0, where the group meets (--data-parallel-address)
    kv_port: Optional[int]
    dp_rpc_port: Optional[int]
    engine_id: Optional[str]


class Server(NamedTuple):
    """One ``vllm serve`` process (one container): a single-node server or one DP rank."""

    instance: Instance
    host: Host
    spec: RoleSpec  # as the server's own host reads the scenario (flags and env may differ per host)
    chips: List[int]
    port: int
    dp_rank: Optional[int] = None  # None: single node, whose DP ranks are in-process
    dp_local_rank: Optional[int] = None

    @property
    def role(self) -> str:
        return self.instance.role

    @property
    def kv_range(self) -> Optional[Tuple[int, int]]:
        """Mooncake side-channel ports of this rank: kv_port + dp_rank x tp ... + tp - 1."""
        if self.instance.kv_port is None or self.dp_rank is None:
            return None
        first = self.instance.kv_port + self.dp_rank * self.spec.tp
        return first, first + self.spec.tp - 1

    @property
    def label(self) -> str:
        return self.instance.name if self.dp_rank is None else f"{self.instance.name} DP rank {self.dp_rank}"


def _room(hosts: Sequence[Host], spec: RoleSpec) -> int:
    """How many DP ranks of ``spec`` the (unused) ``hosts`` hold."""
    per_host = [len(h.chips) // spec.world for h in hosts]
    if spec.dp_local is None:
        return sum(per_host)
    return sum(spec.dp_local for n in per_host if n >= spec.dp_local)


def world_note(spec: RoleSpec) -> str:
    return f" x {spec.world // spec.tp} (pipeline / prefill-context parallel)" if spec.world != spec.tp else ""


def place_single(hosts: List[Host], specs: Mapping[str, RoleSpec], issues: Issues) -> List[Server]:
    """One instance per host; its in-process DP ranks take tp x dp chips."""
    servers = []
    for index, host in enumerate(hosts):
        spec = specs[host.name]
        need = spec.world * spec.dp
        if need > len(host.chips):
            message = (
                f"tp {spec.tp} x dp {spec.dp}{world_note(spec)} needs {need} chips; the host has "
                f"{len(host.chips)} (ascend_chips / ascend_chips_per_node)"
            )
            issues.error(host.name, f"{spec.origin['tp']} / {spec.origin['dp']}", message)
            continue
        port = host.view.port("ascend_single_port")
        if port is not None:
            instance = Instance(f"single{index}", "single", index, spec, host, None, None, None)
            servers.append(Server(instance, host, spec, host.chips[:need], port))
    return servers


def topology_agrees(role: str, hosts: List[Host], specs: Mapping[str, RoleSpec], issues: Issues) -> None:
    """The role's instances share one topology: instances, tp, dp, dp_local and chips per rank."""
    ref = specs[hosts[0].name]
    for host in hosts[1:]:
        spec = specs[host.name]
        for key in ("instances", "tp", "dp", "dp_local", "world"):
            mine, theirs = getattr(spec, key), getattr(ref, key)
            if mine != theirs:
                variable = spec.origin.get(key, "--pipeline-parallel-size / --prefill-context-parallel-size")
                message = (
                    f"{key} {mine} differs from {theirs} on {hosts[0].name}, the first host of group {role}: "
                    "the instances of a role share one topology"
                )
                issues.error(host.name, variable, message)


class PortBases(NamedTuple):
    """A role's first HTTP port per host, first kv port and first DP rpc port (per host var)."""

    http: Dict[str, Optional[int]]
    kv: Optional[int]
    rpc: Optional[int]


def place_pd_role(
    role: str,
    hosts: List[Host],
    specs: Mapping[str, RoleSpec],
    used: Dict[str, int],
    first_engine_id: int,
    issues: Issues,
    grow_on: Sequence[str] = (),
) -> List[Server]:
    """The instances of one role over its hosts, in inventory order, after the chips ``used``.

    The scenario's ``instances`` first; then, while the untouched hosts among ``grow_on`` hold a
    whole DP group, one more instance each (the group decides the role's size).
    """
    ref, first = specs[hosts[0].name], hosts[0]
    bases = PortBases(
        {h.name: h.view.port(f"ascend_{role}_port") for h in hosts},
        first.view.port(f"ascend_{role}_kv_port"),
        first.view.port(f"ascend_{role}_dp_rpc_port"),
    )
    servers: List[Server] = []
    on_host: Dict[str, int] = {}  # servers of this role per host so far: the next HTTP port
    busy = set()
    index = 0
    while True:
        extra = index >= ref.instances
        candidates = hosts
        if extra:
            # Only whole hosts nobody uses yet: an added instance never shares a host it was not given.
            candidates = [h for h in hosts if h.name in grow_on and h.name not in busy and not used.get(h.name)]
            if _room(candidates, ref) < ref.dp:
                break
        placed: List[Tuple[Host, List[int], int]] = []  # host, chips, local rank
        for host in candidates:
            free = host.chips[used.get(host.name, 0) :]
            capacity = len(free) // ref.world
            left = ref.dp - len(placed)
            if capacity == 0 or left == 0:
                continue
            count = min(capacity if ref.dp_local is None else ref.dp_local, left)
            if count > capacity:
                message = (
                    f"dp_local {ref.dp_local} x tp {ref.tp}{world_note(ref)} needs {count * ref.world} chips; "
                    f"{len(free)} are free on the host for {role}{index} (ascend_chips / ascend_chips_per_node)"
                )
                issues.error(host.name, ref.origin["dp_local"], message)
                used[host.name] = len(host.chips)
                continue
            for local in range(count):
                placed.append((host, free[local * ref.world : (local + 1) * ref.world], local))
            used[host.name] = used.get(host.name, 0) + count * ref.world
            busy.add(host.name)
        if len(placed) < ref.dp:
            message = (
                f"{role}{index}: dp {ref.dp} ranks of tp {ref.tp}{world_note(ref)} do not fit; the group's hosts "
                f"hold {len(placed)} more; add hosts to group {role}, lower dp or instances, or free chips "
                "(ascend_chips)"
            )
            issues.error(f"group {role} ({', '.join(h.name for h in hosts)})", ref.origin["dp"], message)
            break
        kv = None if bases.kv is None else bases.kv + index * ref.dp * ref.tp
        rpc = None if bases.rpc is None else bases.rpc + index
        instance = Instance(f"{role}{index}", role, index, ref, placed[0][0], kv, rpc, str(first_engine_id + index))
        for rank, (host, chips, local) in enumerate(placed):
            port = (bases.http[host.name] or 0) + on_host.get(host.name, 0)
            on_host[host.name] = on_host.get(host.name, 0) + 1
            servers.append(Server(instance, host, specs[host.name], chips, port, rank, local))
        index += 1
    for host in hosts:
        if host.name not in busy:
            message = f"runs no {role} server: the role's {ref.instances} instance(s) fit on the hosts before it"
            issues.warn(host.name, f"groups.{role}", message)
    return servers
