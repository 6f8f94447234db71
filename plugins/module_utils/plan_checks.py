# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks on a placed deployment: ports, chips, and the prefill / decode pairing.

Every problem names the host (or group) and the inventory variable to change.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.plan_catalogue import RoleSpec
from ansible_collections.ascend.vllm.plugins.module_utils.plan_placement import Host, Server
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import Issues

# Mooncake's transfer engine listens on random ports in [20000, 20000 + 1000 x chips) of a host.
MOONCAKE_PORT_BASE = 20000
MOONCAKE_PORTS_PER_CHIP = 1000
# Linux's default net.ipv4.ip_local_port_range: outgoing connections and every "bind to a free
# port" (vLLM does that for its internal sockets) land here, so a fixed port in it can be taken
# by someone else when the server starts.
EPHEMERAL_PORTS = (32768, 60999)


class Claim(NamedTuple):
    """Ports [first, last] a host must have free for one purpose, and the container binding them."""

    host: str
    first: int
    last: int
    what: str
    variable: str
    owner: Optional[str]

    def record(self) -> Dict[str, object]:
        return {
            "first": self.first,
            "last": self.last,
            "what": self.what,
            "variable": self.variable,
            "owner": self.owner,
        }


def server_claims(server: Server, container_name: str) -> List[Claim]:
    """Every port a server binds: HTTP, its rank's kv range, and (rank 0) the group's DP rpc port."""
    host, role = server.host.name, server.role
    port_var = f"ascend_{role}_port"
    claims = [Claim(host, server.port, server.port, f"HTTP port of {server.label}", port_var, container_name)]
    if server.kv_range:
        what = f"Mooncake kv ports of {server.label}"
        claims.append(Claim(host, *server.kv_range, what, f"ascend_{role}_kv_port", container_name))
    if server.instance.dp_rpc_port is not None and server.dp_rank == 0:
        # Bound by rank 0, on the instance's first host.
        what = f"DP rpc port of {server.instance.name}"
        rpc = server.instance.dp_rpc_port
        claims.append(Claim(host, rpc, rpc, what, f"ascend_{role}_dp_rpc_port", container_name))
    return claims


def _span(claim: Claim) -> str:
    return str(claim.first) if claim.first == claim.last else f"{claim.first}-{claim.last}"


def check_ports(claims: List[Claim], pd_hosts: Mapping[str, int], issues: Issues) -> None:
    """Ports unique per host, none in Mooncake's random range on a PD host (``pd_hosts``: host ->
    chips); a warning for the ephemeral range. Sorted per host, so linear after the sort."""
    for claim in claims:
        if claim.last > 65535:
            issues.error(claim.host, claim.variable, f"{claim.what} run to {claim.last}, beyond port 65535")
        chips = pd_hosts.get(claim.host)
        low, high = MOONCAKE_PORT_BASE, MOONCAKE_PORT_BASE + MOONCAKE_PORTS_PER_CHIP * (chips or 0)
        if chips and claim.first < high and claim.last >= low:
            message = (
                f"{claim.what} ({_span(claim)}) fall in [{low}, {high}), the ports Mooncake picks at random on a "
                f"{chips}-chip host, so a start would fail at random; choose ports below {low} or from {high}"
            )
            issues.error(claim.host, claim.variable, message)
        low, high = EPHEMERAL_PORTS
        if claim.first <= high and claim.last >= low:
            message = (
                f"{claim.what} ({_span(claim)}) are in Linux's ephemeral port range {low}-{high}: an outgoing "
                "connection can hold one when the server starts"
            )
            issues.warn(claim.host, claim.variable, message)
    by_host: Dict[str, List[Tuple[int, int, Claim]]] = {}
    for order, claim in enumerate(claims):
        by_host.setdefault(claim.host, []).append((claim.first, order, claim))
    for entries in by_host.values():
        entries.sort()
        reach: Optional[Claim] = None  # the claim reaching furthest so far
        for _first, _order, claim in entries:
            if reach is not None and claim.first <= reach.last:
                one, other = sorted((reach, claim), key=claims.index)
                message = f"{other.what} ({_span(other)}) overlap {one.what} ({_span(one)}, {one.variable})"
                issues.error(other.host, other.variable, message)
            if reach is None or claim.last > reach.last:
                reach = claim


def check_chips_unique(servers: List[Server], issues: Issues) -> None:
    """Defence in depth: the placement never shares a chip, and this proves it on the result."""
    owner: Dict[Tuple[str, int], Server] = {}
    for server in servers:
        for chip in server.chips:
            other = owner.setdefault((server.host.name, chip), server)
            if other is not server:
                issues.error(server.host.name, "ascend_chips", f"chip {chip} given to {other.label} and {server.label}")


def check_prefill_tp(prefill: RoleSpec, decode: RoleSpec, prefill_hosts: List[str], issues: Issues) -> None:
    if prefill.tp < decode.tp:
        message = (
            f"prefill tp {prefill.tp} is smaller than decode tp {decode.tp} ({decode.origin['tp']}); "
            "Mooncake needs prefill tp >= decode tp"
        )
        issues.error(f"group prefill ({', '.join(prefill_hosts)})", prefill.origin["tp"], message)


def check_ips_unique(hosts: Mapping[str, Host], issues: Issues) -> None:
    """One ``ascend_local_ip`` per host: HCCL, the DP group address and the proxy's backend
    URLs would all reach the first host holding it."""
    owner: Dict[str, str] = {}
    for name, host in hosts.items():
        if not host.ip:
            continue
        first = owner.setdefault(host.ip, name)
        if first != name:
            message = f"{host.ip} is also the ascend_local_ip of {first}: two hosts cannot share one address"
            issues.error(name, "ascend_local_ip", message)


def _speculation(spec: RoleSpec) -> Optional[Dict[str, object]]:
    value = spec.flags.values.get("speculative-config")
    if not isinstance(value, Mapping):
        return None
    return {"method": str(value.get("method") or "mtp").lower(), "model": value.get("model")}


def check_speculative_pairing(prefill: RoleSpec, decode: RoleSpec, decode_hosts: List[str], issues: Issues) -> None:
    """Prefill and decode speculate alike: both or neither, with one method and one draft model.

    The decode instance continues the drafts of the request whose KV (the draft layers'
    included) prefill computed; the number of speculative tokens may differ (the guide runs 1
    on prefill and 3 on decode).
    """
    mine, theirs = _speculation(decode), _speculation(prefill)
    if mine == theirs:
        return
    variable = decode.flags.origin.get("speculative-config") or prefill.flags.origin.get(
        "speculative-config", "speculative-config"
    )

    def show(side: Optional[Dict[str, object]]) -> str:
        if side is None:
            return "off"
        return f"method {side['method']}" + (f", model {side['model']}" if side["model"] else "")

    message = (
        f"--speculative-config on decode ({show(mine)}) differs from prefill's ({show(theirs)}): both roles must "
        "use one method and draft model (only num_speculative_tokens may differ)"
    )
    issues.error(f"group decode ({', '.join(decode_hosts)})", variable, message)
