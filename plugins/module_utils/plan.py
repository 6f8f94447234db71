# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment plan: inventory variables -> one record per vLLM instance. Pure computation.

``build_plan(hostvars, groups)`` takes each host's ``ascend_*`` variables (plain data) and the
inventory groups (``single``, ``prefill``, ``decode``, ``proxy``) and returns::

    {"scenario": name, "mode": "single" | "pd", "model": name,
     "instances": [record, ...], "proxies": [proxy, ...],
     "errors": [issue, ...], "warnings": [issue, ...], "table": [line, ...]}

An issue is ``{"host", "variable", "message", "text"}``: every problem names the host (or the
group) and the inventory variable to change. A record describes one vLLM instance - one
container; for PD one DP rank - down to its ``vllm serve`` argv and its container (see
``_record``; documented in plugins/filter/vllm_plan.py). Roles consume records as they are and
never re-derive topology, ports or flags.

Topology. Single node: one instance per host of ``single``, with vLLM's in-process data
parallelism (``--data-parallel-size N`` in one process, as the seed's recipes do). PD: each DP
rank is its own instance with ``--data-parallel-rank``; the ranks of a role meet at the first
host of the role's group (``--data-parallel-address`` = its ``ascend_local_ip``, one shared
``--data-parallel-rpc-port``) and fill the role's hosts in inventory order, ``dp_local`` per host
(default: as many as the host's free chips hold). Chips go to instances in the order of the
host's ``ascend_chips``, prefill first when a host serves both roles.

Where the plan deliberately differs from the seed (vLLM-Ascend's MiniMax-M2 guide):

- Prefill ``kv_port``: the seed's 35880 lies inside the ports Mooncake picks at random on a
  16-chip host, [20000, 20000 + 1000 x chips) = [20000, 36000), so a start can fail at random
  ("address already in use"). The plan refuses kv ports in that range; the sample inventories
  use 18000 (prefill) and 19000 (decode), below it and below Linux's ephemeral range.
- DP launch: the seed's ``launch_online_dp.py`` ``join()``s each rank's process before
  starting the next, so while rank 0 serves, rank 1 never starts and the DP group never
  completes. The plan starts every rank (one container each).
- ``--data-parallel-size`` is always written for single-node instances (the seed's A2 recipe
  leaves vLLM's default of 1 implicit); flags are spelt with ``-`` (``--speculative-config``).
- ``LD_PRELOAD`` / ``LD_LIBRARY_PATH`` are prepended to the image's values at container start
  (``env_prepend``), as the seed's ``:$LD_PRELOAD`` does; ``unset http_proxy ...`` becomes
  empty ``*_proxy`` variables (an empty value means "no proxy" to Python and curl).
- The seed's ``sysctl`` and ``cpufreq`` lines are host tuning (``ascend_sysctls``,
  ``ascend_cpu_governor``), not part of an instance.
"""

from __future__ import annotations

import ipaddress
import posixpath
import shlex
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.plan_catalogue import (
    MODE_ROLES,
    OVERRIDE_KEYS,
    Model,
    RoleSpec,
    normalize_scenario,
    resolve_model,
    resolve_scenario,
    role_spec,
    scenario_mode,
)
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import (
    CoerceError,
    HostView,
    Issues,
    env_value,
    format_chips,
    plain,
    render_flags,
    to_bool,
    to_chip_ids,
    to_int,
    to_mapping,
    to_str,
    to_str_list,
)
from ansible_collections.ascend.vllm.plugins.module_utils.text_table import format_rows

GROUPS = ("single", "prefill", "decode", "proxy")
CHIPS_PER_HARDWARE = {"a3": 16, "a2": 8}
JEMALLOC = {
    "aarch64": "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "x86_64": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
}
# Mooncake's transfer engine listens on random ports in [20000, 20000 + 1000 x chips) of a host.
MOONCAKE_PORT_BASE = 20000
MOONCAKE_PORTS_PER_CHIP = 1000
# Linux's default net.ipv4.ip_local_port_range: outgoing connections and every "bind to a free
# port" (vLLM does that for its internal sockets) land here, so a fixed port in it can be taken
# by someone else when the instance starts.
EPHEMERAL_PORTS = (32768, 60999)
KV_CONNECTOR = "MooncakeConnectorV1"
KV_ROLE = {"prefill": "kv_producer", "decode": "kv_consumer"}
# The seed's engine ids; vLLM appends "_dp<rank>" per DP rank itself.
ENGINE_ID = {"prefill": "0", "decode": "1"}
# PD processes on every host must hash alike (the seed sets it on both roles; vLLM-Ascend's KV
# pool guide asks for one PYTHONHASHSEED on all nodes).
PD_ENV = {"PYTHONHASHSEED": "0"}
PLAN_OWNED_ENV = {"ASCEND_RT_VISIBLE_DEVICES": "ascend_chips (the plan gives chips to instances)"}
TABLE_COLUMNS = ("Host", "Role", "DP rank", "TP", "Chips", "Port", "KV ports", "Container")


# --- hosts -----------------------------------------------------------------------------------


class Host(NamedTuple):
    """What the plan needs of one host, coerced (errors recorded by its view)."""

    name: str
    view: HostView
    hardware: Optional[str]
    chips_per_node: int
    chips: List[int]
    ip: Optional[str]
    nic: Optional[str]


def _ip_address(value: Any) -> str:
    text = to_str(value).strip()
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise CoerceError(f"{text!r} is not an IP address") from None
    return text


def read_host(view: HostView, needs_network: bool) -> Host:
    """A host's hardware, usable chips and (for PD ranks, which need them) IP and NIC."""
    hardware = view.choice("ascend_hardware", tuple(CHIPS_PER_HARDWARE))
    default_chips = CHIPS_PER_HARDWARE.get(hardware or "", 0)
    per_node = view.get(
        "ascend_chips_per_node", lambda v: to_int(v, minimum=1, maximum=64), required=False, default=default_chips
    )
    if hardware and per_node != default_chips:
        message = f"{per_node} chips on {hardware} hardware, which has {default_chips}"
        view.issues.warn(view.name, "ascend_chips_per_node", message)
    chips = view.get("ascend_chips", to_chip_ids, required=False)
    chips = list(range(per_node)) if chips is None else chips
    missing = [c for c in chips if c >= per_node]
    if missing:
        message = f"chips {missing} do not exist (ascend_chips_per_node is {per_node})"
        view.issues.error(view.name, "ascend_chips", message)
    ip = view.get("ascend_local_ip", _ip_address, required=needs_network)
    nic = view.get("ascend_nic_name", to_str, required=needs_network)
    return Host(view.name, view, hardware, per_node, [c for c in chips if c < per_node], ip, nic)


# --- instances -------------------------------------------------------------------------------


class Instance(NamedTuple):
    host: Host
    spec: RoleSpec
    chips: List[int]
    port: int
    port_var: str
    dp_rank: Optional[int] = None
    dp_local_rank: Optional[int] = None
    kv_port: Optional[int] = None
    dp_address: Optional[str] = None
    dp_rpc_port: Optional[int] = None

    @property
    def role(self) -> str:
        return self.spec.role

    @property
    def kv_range(self) -> Optional[Tuple[int, int]]:
        """Mooncake side-channel ports of this rank: kv_port + dp_rank x tp ... + tp - 1."""
        if self.kv_port is None or self.dp_rank is None:
            return None
        first = self.kv_port + self.dp_rank * self.spec.tp
        return first, first + self.spec.tp - 1

    @property
    def label(self) -> str:
        return self.role if self.dp_rank is None else f"{self.role} DP rank {self.dp_rank}"


def _world_note(spec: RoleSpec) -> str:
    return f" x {spec.world // spec.tp} (pipeline / prefill-context parallel)" if spec.world != spec.tp else ""


def place_single(hosts: List[Host], specs: Mapping[str, RoleSpec], issues: Issues) -> List[Instance]:
    """One instance per host; its in-process DP ranks take tp x dp chips."""
    instances = []
    for host in hosts:
        spec = specs[host.name]
        need = spec.world * spec.dp
        if need > len(host.chips):
            message = (
                f"tp {spec.tp} x dp {spec.dp}{_world_note(spec)} needs {need} chips; the host has "
                f"{len(host.chips)} (ascend_chips / ascend_chips_per_node)"
            )
            issues.error(host.name, f"{spec.origin['tp']} / {spec.origin['dp']}", message)
            continue
        port = host.view.port("ascend_single_port")
        if port is not None:
            instances.append(Instance(host, spec, host.chips[:need], port, "ascend_single_port"))
    return instances


def _topology_agrees(role: str, hosts: List[Host], specs: Mapping[str, RoleSpec], issues: Issues) -> None:
    """All DP ranks of a role form one DP group: tp, dp, dp_local and chips per rank agree."""
    ref = specs[hosts[0].name]
    for host in hosts[1:]:
        spec = specs[host.name]
        for key in ("tp", "dp", "dp_local", "world"):
            mine, theirs = getattr(spec, key), getattr(ref, key)
            if mine != theirs:
                variable = spec.origin.get(key, "--pipeline-parallel-size / --prefill-context-parallel-size")
                message = (
                    f"{key} {mine} differs from {theirs} on {hosts[0].name}, the first host of group {role}: "
                    "all DP ranks of a role share one topology"
                )
                issues.error(host.name, variable, message)


def place_pd(
    role: str, hosts: List[Host], specs: Mapping[str, RoleSpec], used: Dict[str, int], issues: Issues
) -> List[Instance]:
    """The DP ranks of one role over its hosts, in inventory order, after the chips ``used``."""
    ref, master = specs[hosts[0].name], hosts[0]
    rpc_port = master.view.port(f"ascend_{role}_dp_rpc_port")
    instances: List[Instance] = []
    rank = 0
    for host in hosts:
        free = host.chips[used.get(host.name, 0) :]
        capacity = len(free) // ref.world
        count = min(capacity if ref.dp_local is None else ref.dp_local, ref.dp - rank)
        if ref.dp_local is not None and ref.dp_local > capacity:
            message = (
                f"dp_local {ref.dp_local} x tp {ref.tp}{_world_note(ref)} needs {ref.dp_local * ref.world} chips; "
                f"{len(free)} are free on the host (ascend_chips / ascend_chips_per_node)"
            )
            issues.error(host.name, ref.origin["dp_local"], message)
            continue
        if count <= 0:
            message = f"runs no {role} instance: all {ref.dp} DP ranks fit on the hosts before it"
            issues.warn(host.name, f"groups.{role}", message)
            continue
        port, kv_port = host.view.port(f"ascend_{role}_port"), host.view.port(f"ascend_{role}_kv_port")
        for local in range(count):
            chips = free[local * ref.world : (local + 1) * ref.world]
            instances.append(
                Instance(
                    host,
                    specs[host.name],
                    chips,
                    (port or 0) + local,
                    f"ascend_{role}_port",
                    dp_rank=rank + local,
                    dp_local_rank=local,
                    kv_port=kv_port,
                    dp_address=master.ip,
                    dp_rpc_port=rpc_port,
                )
            )
        rank += count
        used[host.name] = used.get(host.name, 0) + count * ref.world
    if rank < ref.dp:
        message = (
            f"dp {ref.dp} ranks of tp {ref.tp}{_world_note(ref)} do not fit: the group's hosts hold {rank}; "
            f"add hosts to group {role}, lower dp, or free chips (ascend_chips)"
        )
        issues.error(f"group {role} ({', '.join(h.name for h in hosts)})", ref.origin["dp"], message)
    return instances


# --- what an instance runs ---------------------------------------------------------------------


def kv_transfer_config(role: str, kv_port: int, sizes: Mapping[str, Tuple[int, int]]) -> Dict[str, Any]:
    """The Mooncake ``--kv-transfer-config`` of a prefill or decode rank.

    One function for both roles, given the same (tp, dp) of each side: the producer's and the
    consumer's view of the topology agree by construction. ``kv_port`` is text, as in the seed
    (vLLM's KVTransferConfig accepts both).
    """
    return {
        "kv_connector": KV_CONNECTOR,
        "kv_role": KV_ROLE[role],
        "kv_port": str(kv_port),
        "engine_id": ENGINE_ID[role],
        "kv_connector_extra_config": {
            "use_ascend_direct": True,
            "prefill": {"dp_size": sizes["prefill"][1], "tp_size": sizes["prefill"][0]},
            "decode": {"dp_size": sizes["decode"][1], "tp_size": sizes["decode"][0]},
        },
    }


def serve_argv(inst: Instance, model: Model, served: str, bind: str, sizes: Mapping[str, Tuple[int, int]]) -> List[str]:
    """The complete ``vllm serve`` argv: the plan's own flags, then the merged ones."""
    spec = inst.spec
    owned: Dict[str, Any] = {
        "served-model-name": served,
        "host": bind,
        "port": inst.port,
        "tensor-parallel-size": spec.tp,
        "data-parallel-size": spec.dp,
    }
    if inst.dp_rank is not None:
        owned["data-parallel-rank"] = inst.dp_rank
        owned["data-parallel-address"] = inst.dp_address
        owned["data-parallel-rpc-port"] = inst.dp_rpc_port
    kv = {} if inst.kv_port is None else {"kv-transfer-config": kv_transfer_config(spec.role, inst.kv_port, sizes)}
    return ["vllm", "serve", model.path, *render_flags(owned), *render_flags(spec.flags.values), *render_flags(kv)]


def instance_env(inst: Instance, pd: bool, issues: Issues) -> Dict[str, str]:
    """hardware < scenario layers < the plan's (PD: network, hash seed, proxies; chips) < ascend_env_extra."""
    env, host = inst.spec.env.copy(), inst.host
    if pd:
        network = {"HCCL_IF_IP": host.ip, "GLOO_SOCKET_IFNAME": host.nic}
        network.update(TP_SOCKET_IFNAME=host.nic, HCCL_SOCKET_IFNAME=host.nic)
        env.add("ascend_local_ip / ascend_nic_name", network)
        env.add("plan (PD)", PD_ENV)
        cleared = host.view.get("ascend_proxy_env_clear", to_str_list, required=False, default=[])
        env.add("ascend_proxy_env_clear", dict.fromkeys(cleared, ""))
    extra = inst.spec.env_extra
    for name, why in PLAN_OWNED_ENV.items():
        for variable in (env.origin.get(name), "ascend_env_extra" if name in extra else None):
            if variable:
                issues.error(host.name, variable, f"{name} is set by the plan; set {why} instead")
    env.add("plan", {"ASCEND_RT_VISIBLE_DEVICES": ",".join(map(str, inst.chips))})
    env.add("ascend_env_extra", {k: v for k, v in extra.items() if k not in PLAN_OWNED_ENV})
    out: Dict[str, str] = {}
    for name, value in env.values.items():
        try:
            text = env_value(value)
        except CoerceError as exc:
            issues.error(host.name, f"{env.origin.get(name, 'env')}.{name}", str(exc))
            continue
        if text is not None:
            out[str(name)] = text
    return out


def env_prepend(inst: Instance, pd: bool) -> Dict[str, str]:
    """Paths put in front of the image's own ``LD_PRELOAD`` / ``LD_LIBRARY_PATH`` at start."""
    view = inst.host.view
    prepend: Dict[str, str] = {}
    if view.get("ascend_jemalloc_preload", to_bool, required=False, default=True):
        arch = view.choice("ascend_cpu_arch", tuple(JEMALLOC), default="aarch64")
        prepend["LD_PRELOAD"] = view.get("ascend_jemalloc_path", to_str, required=False, default=JEMALLOC[arch])
    if pd:
        mooncake = view.get("ascend_mooncake_lib_dir", to_str)
        if mooncake:
            prepend["LD_LIBRARY_PATH"] = mooncake
    return prepend


def start_command(argv: List[str], prepend: Mapping[str, str]) -> List[str]:
    """The container command: ``argv`` behind a /bin/sh that prepends paths to the image's env.

    ``docker run -e LD_LIBRARY_PATH=...`` would replace the image's value (which carries the
    CANN libraries); ``"${VAR:+:$VAR}"`` keeps it, as the seed's ``:$LD_LIBRARY_PATH`` does.
    ``exec`` makes vLLM the container's main process, so ``docker stop`` reaches it.
    """
    if not prepend:
        return list(argv)
    exports = "; ".join(f'export {k}={shlex.quote(v)}"${{{k}:+:${k}}}"' for k, v in prepend.items())
    return ["/bin/sh", "-c", f'{exports}; exec "$@"', argv[0], *argv]


def container(inst: Instance, name: str, env: Dict[str, str], command: List[str], model: Model) -> Dict[str, Any]:
    """The container of an instance: every chip of the host, as the seed's docker run has them
    (ASCEND_RT_VISIBLE_DEVICES picks the instance's), the driver mounts and the weights."""
    view = inst.host.view
    devices = [f"/dev/davinci{i}" for i in range(inst.host.chips_per_node)]
    devices += view.get("ascend_device_nodes", to_str_list, default=[])
    models_dir = view.get("ascend_models_dir", to_str, default="")
    volumes = [*view.get("ascend_driver_mounts", to_str_list, default=[]), f"{models_dir}:{models_dir}"]
    for path in (model.path, model.eagle3):
        # Weights outside ascend_models_dir (an absolute catalogue path) are mounted on their own.
        if path and not posixpath.normpath(path).startswith(posixpath.normpath(models_dir) + "/"):
            volumes.append(f"{posixpath.normpath(path)}:{posixpath.normpath(path)}:ro")
    volumes += view.get("ascend_container_mounts_extra", to_str_list, required=False, default=[])
    return {
        "name": name,
        "image": view.get("ascend_vllm_image", to_str),
        "user": view.get("ascend_container_user", to_str, required=False),
        "devices": devices,
        "volumes": volumes,
        "shm_size": view.get("ascend_container_shm_size", to_str, required=False),
        "ipc_mode": view.choice("ascend_container_ipc_mode", ("private", "shareable", "host"), default="private"),
        "network_mode": "host",  # HCCL, Mooncake and the DP group address the host's own IPs and ports
        "env": env,
        "command": command,
    }


def _record(inst: Instance, model: Model, pd: bool, sizes: Mapping[str, Tuple[int, int]], issues: Issues):
    view, host = inst.host.view, inst.host
    served = view.get("ascend_served_model_name", to_str, required=False, default=model.served_name)
    bind = view.get("ascend_serve_host", to_str, required=False, default="0.0.0.0")
    argv = serve_argv(inst, model, served, bind, sizes)
    env = instance_env(inst, pd, issues)
    _warn_fused_mc2_on_a2(inst, env, issues)
    prepend = env_prepend(inst, pd)
    prefix = view.get("ascend_container_name_prefix", to_str, required=False, default="vllm")
    name = f"{prefix}-{inst.role}" + ("" if inst.dp_rank is None else f"-dp{inst.dp_rank}")
    return {
        "name": name,
        "host": host.name,
        "role": inst.role,
        "ip": host.ip,
        "port": inst.port,
        "url": f"http://{host.ip or host.name}:{inst.port}",
        "served_model_name": served,
        "model": model.path,
        "tp": inst.spec.tp,
        "dp_size": inst.spec.dp,
        "dp_rank": inst.dp_rank,
        "dp_local_rank": inst.dp_local_rank,
        "dp_address": inst.dp_address,
        "dp_rpc_port": inst.dp_rpc_port,
        "chips": inst.chips,
        "kv_port": inst.kv_port,
        "kv_ports": list(inst.kv_range) if inst.kv_range else None,
        "engine_id": ENGINE_ID.get(inst.role),
        "env": env,
        "env_prepend": prepend,
        "argv": argv,
        "command_line": shlex.join(argv),
        "container": container(inst, name, env, start_command(argv, prepend), model),
    }


def _warn_fused_mc2_on_a2(inst: Instance, env: Mapping[str, str], issues: Issues) -> None:
    additional = inst.spec.flags.values.get("additional-config")
    fused = env.get("VLLM_ASCEND_ENABLE_FUSED_MC2") == "1" or (
        isinstance(additional, Mapping) and additional.get("enable_fused_mc2") is True
    )
    if fused and inst.host.hardware == "a2":
        issues.warn(inst.host.name, "ascend_scenario", "fused MC2 is on, on A2 hardware (seed 9.2.2: for A3 only)")


def _proxies(names: List[str], views: Mapping[str, HostView], records: List[Dict[str, Any]], issues: Issues):
    """One record per proxy host: where it listens, its image, and every prefill / decode rank."""
    if not names:
        issues.warn("group proxy", "groups", "no proxy host: PD needs a proxy in front of prefill and decode")
    proxies = []
    for name in names:
        port = views[name].port("ascend_proxy_port")
        if port is None:
            continue
        proxy: Dict[str, Any] = {"host": name, "port": port, "image": views[name].get("ascend_vllm_image", to_str)}
        for role in MODE_ROLES["pd"]:
            proxy[role] = [
                {"name": f"{r['host']}/{r['name']}", **{key: r[key] for key in ("host", "ip", "port", "url")}}
                for r in records
                if r["role"] == role
            ]
        proxies.append(proxy)
    return proxies


# --- ports and chips ---------------------------------------------------------------------------


class Claim(NamedTuple):
    """Ports [first, last] a host must have free for one purpose."""

    host: str
    first: int
    last: int
    what: str
    variable: str


def port_claims(instances: List[Instance], proxies: List[Dict[str, Any]]) -> List[Claim]:
    claims = []
    for inst in instances:
        host = inst.host.name
        claims.append(Claim(host, inst.port, inst.port, f"HTTP port of {inst.label}", inst.port_var))
        if inst.kv_range:
            what = f"Mooncake kv ports of {inst.label}"
            claims.append(Claim(host, *inst.kv_range, what, f"ascend_{inst.role}_kv_port"))
        if inst.dp_rpc_port is not None and inst.dp_rank == 0:
            # Bound on the group's first host, which runs rank 0.
            what = f"{inst.role} DP rpc port"
            claims.append(Claim(host, inst.dp_rpc_port, inst.dp_rpc_port, what, f"ascend_{inst.role}_dp_rpc_port"))
    for proxy in proxies:
        claims.append(Claim(proxy["host"], proxy["port"], proxy["port"], "PD proxy port", "ascend_proxy_port"))
    return claims


def _span(claim: Claim) -> str:
    return str(claim.first) if claim.first == claim.last else f"{claim.first}-{claim.last}"


def check_ports(claims: List[Claim], pd_hosts: Mapping[str, int], issues: Issues) -> None:
    """Ports unique per host, none in Mooncake's random range on a PD host (``pd_hosts``: host ->
    chips); a warning for the ephemeral range."""
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
                "connection can hold one when the instance starts"
            )
            issues.warn(claim.host, claim.variable, message)
    for i, one in enumerate(claims):
        for other in claims[i + 1 :]:
            if one.host == other.host and one.first <= other.last and other.first <= one.last:
                message = f"{other.what} ({_span(other)}) overlap {one.what} ({_span(one)}, {one.variable})"
                issues.error(other.host, other.variable, message)


def _check_chips_unique(instances: List[Instance], issues: Issues) -> None:
    """Defence in depth: the placement never shares a chip, and this proves it on the result."""
    owner: Dict[Tuple[str, int], Instance] = {}
    for inst in instances:
        for chip in inst.chips:
            other = owner.setdefault((inst.host.name, chip), inst)
            if other is not inst:
                issues.error(inst.host.name, "ascend_chips", f"chip {chip} given to {other.label} and {inst.label}")


# --- the plan --------------------------------------------------------------------------------


def _agree(views: List[HostView], var: str, issues: Issues) -> Optional[str]:
    """A deployment-wide variable: the same value on every host (one inventory, one deployment)."""
    values = [(v, v.get(var, to_str)) for v in views]
    first, reference = values[0]
    for view, value in values[1:]:
        if None not in (value, reference) and value != reference:
            message = (
                f"{value!r} differs from {reference!r} on {first.name}: one inventory plans one deployment; "
                "set it in group_vars/all or with -e"
            )
            issues.error(view.name, var, message)
    return reference


def _choose_scenario(views: Mapping[str, HostView], members: Mapping[str, List[str]], issues: Issues):
    """The scenario (as the first host of single/prefill/decode sees it) and the groups it uses."""
    candidates = [h for g in ("single", "prefill", "decode") for h in members[g]]
    if not candidates:
        issues.error("inventory", "groups", "no host in the groups single, prefill or decode")
        return None
    first = views[candidates[0]]
    name = first.get("ascend_scenario", to_str)
    catalogue = _catalogue(first, "ascend_scenarios")
    if name is None or catalogue is None:
        return None
    try:
        mode = scenario_mode(resolve_scenario(catalogue, name))
    except CoerceError as exc:
        issues.error(first.name, f"ascend_scenarios.{name}", str(exc))
        return None
    for role in MODE_ROLES[mode]:
        if not members[role]:
            issues.error(f"group {role}", "groups", f"scenario {name} needs hosts in group {role}")
    return name, mode


def _catalogue(view: HostView, var: str) -> Optional[Dict[str, Any]]:
    catalogue = view.get(var, to_mapping)
    if catalogue == {}:
        view.issues.error(view.name, var, "the catalogue is empty")
    return catalogue or None


def _model(view: HostView, name: Optional[str]) -> Optional[Model]:
    models_dir = view.get("ascend_models_dir", to_str)
    catalogue = _catalogue(view, "ascend_models")
    if name is None or models_dir is None or catalogue is None:
        return None
    try:
        return resolve_model(catalogue, name, models_dir)
    except CoerceError as exc:
        view.issues.error(view.name, f"ascend_models.{name}" if name in catalogue else "ascend_model", str(exc))
        return None


def _spec(host: Host, role: str, scenario: str, model: Model) -> Optional[RoleSpec]:
    view = host.view
    try:
        base = resolve_scenario(view.get("ascend_scenarios", to_mapping, default={}), scenario)
    except CoerceError as exc:
        view.issues.error(view.name, f"ascend_scenarios.{scenario}", str(exc))
        return None
    try:
        raw = view.get("ascend_scenario_overrides", to_mapping, required=False, default={})
        overrides = normalize_scenario(raw, OVERRIDE_KEYS, "overrides")
    except CoerceError as exc:
        view.issues.error(view.name, "ascend_scenario_overrides", str(exc))
        return None
    written_for = base.get("hardware")
    if written_for and host.hardware and str(written_for) != host.hardware:
        message = f"scenario {scenario} is written for {written_for} hosts; this host is {host.hardware}"
        view.issues.warn(view.name, "ascend_scenario", message)
    return role_spec(view, role, scenario, base, overrides, model)


def build_plan(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Any]) -> Dict[str, Any]:
    """The plan of the deployment the inventory describes (see the module docstring)."""
    issues = Issues()
    members = {g: [str(h) for h in (groups.get(g) or [])] for g in GROUPS}
    views = {h: HostView(h, plain(hostvars.get(h) or {}), issues) for g in GROUPS for h in members[g]}
    result: Dict[str, Any] = {"scenario": None, "mode": None, "model": None, "instances": [], "proxies": []}
    chosen = _choose_scenario(views, members, issues)
    if chosen is None or issues.errors:
        return _finish(result, issues)
    scenario, mode = chosen
    roles = MODE_ROLES[mode]
    deployment_groups = (*roles, "proxy") if mode == "pd" else roles
    deployment = list(dict.fromkeys(h for g in deployment_groups for h in members[g]))
    model_name = _agree([views[h] for h in deployment], "ascend_model", issues)
    _agree([views[h] for h in deployment], "ascend_scenario", issues)
    result.update(scenario=scenario, mode=mode, model=model_name)

    # PD ranks need their host's IP and NIC (HCCL, the DP address); a proxy-only host does not.
    hosts = {h: read_host(views[h], mode == "pd" and any(h in members[r] for r in roles)) for h in deployment}
    models: Dict[str, Model] = {}
    specs: Dict[str, Dict[str, RoleSpec]] = {role: {} for role in roles}
    for role in roles:
        for name in members[role]:
            model = models.get(name) or _model(views[name], model_name)
            spec = _spec(hosts[name], role, scenario, model) if model else None
            if spec is not None:
                models[name], specs[role][name] = model, spec
    if issues.errors:
        return _finish(result, issues)

    if mode == "single":
        instances = place_single([hosts[h] for h in members["single"]], specs["single"], issues)
    else:
        instances, used = [], {}
        for role in roles:
            _topology_agrees(role, [hosts[h] for h in members[role]], specs[role], issues)
            instances += place_pd(role, [hosts[h] for h in members[role]], specs[role], used, issues)
        _check_prefill_tp(members, specs, issues)
    sizes = {role: (spec.tp, spec.dp) for role in roles for spec in [specs[role][members[role][0]]]}
    result["instances"] = [_record(i, models[i.host.name], mode == "pd", sizes, issues) for i in instances]
    result["proxies"] = _proxies(members["proxy"], views, result["instances"], issues) if mode == "pd" else []
    pd_hosts = {i.host.name: i.host.chips_per_node for i in instances} if mode == "pd" else {}
    check_ports(port_claims(instances, result["proxies"]), pd_hosts, issues)
    _check_chips_unique(instances, issues)
    return _finish(result, issues)


def _check_prefill_tp(members: Mapping[str, List[str]], specs: Mapping[str, Mapping[str, RoleSpec]], issues: Issues):
    prefill, decode = specs["prefill"][members["prefill"][0]], specs["decode"][members["decode"][0]]
    if prefill.tp < decode.tp:
        message = (
            f"prefill tp {prefill.tp} is smaller than decode tp {decode.tp} ({decode.origin['tp']}); "
            "Mooncake needs prefill tp >= decode tp"
        )
        issues.error(f"group prefill ({', '.join(members['prefill'])})", prefill.origin["tp"], message)


def plan_table(records: List[Mapping[str, Any]]) -> List[str]:
    """The instances as fixed-width lines for operators."""
    rows = [
        (
            r["host"],
            r["role"],
            f"all {r['dp_size']} in-process" if r["dp_rank"] is None else f"{r['dp_rank']}/{r['dp_size']}",
            r["tp"],
            format_chips(r["chips"]),
            r["port"],
            "-" if not r["kv_ports"] else "-".join(map(str, r["kv_ports"])),
            r["name"],
        )
        for r in records
    ]
    return format_rows(TABLE_COLUMNS, rows)


def _finish(result: Dict[str, Any], issues: Issues) -> Dict[str, Any]:
    result.update(errors=issues.errors, warnings=issues.warnings, table=plan_table(result["instances"]))
    return result
