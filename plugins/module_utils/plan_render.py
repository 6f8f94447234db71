# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rendering: what a placed server runs - its argv, environment and container - as records.

The records are the plan's public contract (docs/plan.md): roles take them as they are and
never re-derive topology, ports, flags, paths or environment.
"""

from __future__ import annotations

import posixpath
import shlex
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.plan_catalogue import Model
from ansible_collections.ascend.vllm.plugins.module_utils.plan_placement import Host, Server
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import (
    CoerceError,
    Issues,
    env_value,
    render_flags,
    to_abs_path,
    to_bool,
    to_size,
    to_str,
    to_str_list,
)

JEMALLOC = {
    "aarch64": "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "x86_64": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
}
KV_CONNECTOR = "MooncakeConnectorV1"
KV_ROLE = {"prefill": "kv_producer", "decode": "kv_consumer"}
# PD processes on every host must hash alike (the guide sets it on both roles; vLLM-Ascend's KV
# pool guide asks for one PYTHONHASHSEED on all nodes).
PD_ENV = {"PYTHONHASHSEED": "0"}
PLAN_OWNED_ENV = {"ASCEND_RT_VISIBLE_DEVICES": "ascend_chips (the plan gives chips to servers)"}


def kv_transfer_config(role: str, kv_port: int, engine_id: str, sizes: Mapping[str, Tuple[int, int]]) -> Dict[str, Any]:
    """The Mooncake ``--kv-transfer-config`` of a prefill or decode rank.

    One function for both roles, given the same (tp, dp) of each side: the producer's and the
    consumer's view of the topology agree by construction. ``kv_port`` is text, as in the guide
    (vLLM's KVTransferConfig accepts both).
    """
    return {
        "kv_connector": KV_CONNECTOR,
        "kv_role": KV_ROLE[role],
        "kv_port": str(kv_port),
        "engine_id": engine_id,
        "kv_connector_extra_config": {
            "use_ascend_direct": True,
            "prefill": {"dp_size": sizes["prefill"][1], "tp_size": sizes["prefill"][0]},
            "decode": {"dp_size": sizes["decode"][1], "tp_size": sizes["decode"][0]},
        },
    }


def serve_argv(server: Server, model: Model, served: str, bind: str, sizes: Mapping[str, Tuple[int, int]]) -> List[str]:
    """The complete ``vllm serve`` argv: the plan's own flags, then the merged ones."""
    spec, instance = server.spec, server.instance
    owned: Dict[str, Any] = {
        "served-model-name": served,
        "host": bind,
        "port": server.port,
        "tensor-parallel-size": spec.tp,
        "data-parallel-size": spec.dp,
        # lm-eval's local-completions tokenizes with the server's own tokenizer only when
        # /tokenizer_info answers (playbooks/evaluate.yml); it serves the tokenizer's config.
        "enable-tokenizer-info-endpoint": True,
    }
    if server.dp_rank is not None:
        owned["data-parallel-rank"] = server.dp_rank
        owned["data-parallel-address"] = instance.master.ip
        owned["data-parallel-rpc-port"] = instance.dp_rpc_port
    kv = {}
    if instance.kv_port is not None and instance.engine_id is not None:
        kv = {"kv-transfer-config": kv_transfer_config(instance.role, instance.kv_port, instance.engine_id, sizes)}
    return ["vllm", "serve", model.path, *render_flags(owned), *render_flags(spec.flags.values), *render_flags(kv)]


def server_env(server: Server, shares_host_with_other_role: bool, issues: Issues) -> Dict[str, str]:
    """hardware < recipe < scenario layers < the plan's (PD: network, hash seed, proxies,
    intra-host RoCE; chips) < ascend_env_extra."""
    env, host = server.spec.env.copy(), server.host
    if server.dp_rank is not None:
        network = {"HCCL_IF_IP": host.ip, "GLOO_SOCKET_IFNAME": host.nic}
        network.update(TP_SOCKET_IFNAME=host.nic, HCCL_SOCKET_IFNAME=host.nic)
        env.add("ascend_local_ip / ascend_nic_name", network)
        env.add("plan (PD)", PD_ENV)
        cleared = host.view.get("ascend_proxy_env_clear", to_str_list, required=False) or []
        env.add("ascend_proxy_env_clear", dict.fromkeys(cleared, ""))
        if shares_host_with_other_role:
            # A prefill and a decode rank on one host exchange KV over the host's own NPU NICs.
            env.add("plan (P and D on one host)", {"HCCL_INTRA_ROCE_ENABLE": "1"})
    extra = server.spec.env_extra
    for name, why in PLAN_OWNED_ENV.items():
        for variable in (env.origin.get(name), "ascend_env_extra" if name in extra else None):
            if variable:
                issues.error(host.name, variable, f"{name} is set by the plan; set {why} instead")
    env.add("plan", {"ASCEND_RT_VISIBLE_DEVICES": ",".join(map(str, server.chips))})
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


def env_prepend(host: Host, pd: bool) -> Dict[str, str]:
    """Paths put in front of the image's own ``LD_PRELOAD`` / ``LD_LIBRARY_PATH`` at start."""
    view = host.view
    prepend: Dict[str, str] = {}
    if view.get("ascend_jemalloc_preload", to_bool):
        arch = view.choice("ascend_cpu_arch", tuple(JEMALLOC))
        path = view.get("ascend_jemalloc_path", to_abs_path, required=False) or JEMALLOC.get(arch or "", "")
        if path:
            prepend["LD_PRELOAD"] = path
    if pd:
        mooncake = view.get("ascend_mooncake_lib_dir", to_abs_path, required=False)
        if mooncake:
            prepend["LD_LIBRARY_PATH"] = mooncake
    return prepend


def entrypoint(prepend: Mapping[str, str], secret_files: Optional[Mapping[str, str]] = None) -> Optional[List[str]]:
    """A /bin/sh entrypoint that prepends paths to the image's env and reads secrets into the
    environment, then runs the argv (the container's command) as the container's main process;
    None when there is nothing to do.

    ``docker run -e LD_LIBRARY_PATH=...`` would replace the image's value (which carries the
    CANN libraries); ``"${VAR:+:$VAR}"`` keeps it, as the guide's ``:$LD_LIBRARY_PATH`` does.
    ``secret_files`` maps a variable to a file mounted in the container (``VLLM_API_KEY``): read
    at start, so that the value is in the process's environment only, never in the container's
    configuration (``docker inspect`` shows ``Config.Env`` and the command to anyone with access
    to the Docker socket). ``exec`` makes vLLM the main process, so ``docker stop`` reaches it.
    """
    exports = [f'export {k}={shlex.quote(v)}"${{{k}:+:${k}}}"' for k, v in prepend.items()]
    exports += [f'{k}="$(cat {shlex.quote(path)})" || exit 1; export {k}' for k, path in (secret_files or {}).items()]
    if not exports:
        return None
    return ["/bin/sh", "-c", f'{"; ".join(exports)}; exec "$@"', "vllm-start"]


def weights(model: Model, flags: Mapping[str, Any]) -> List[Dict[str, str]]:
    """The directories vLLM loads from the host: the model and the speculative draft model."""
    out = [{"what": "model", "path": model.path}]
    speculative = flags.get("speculative-config")
    if isinstance(speculative, Mapping) and posixpath.isabs(str(speculative.get("model") or "")):
        out.append(
            {"what": f"speculative draft model ({speculative.get('method', 'draft')})", "path": speculative["model"]}
        )
    return out


class ContainerSettings(NamedTuple):
    """A host's container settings: the recipe's for its hardware, or the inventory's."""

    ipc_mode: Optional[str]
    shm_size: Optional[str]
    driver_mounts: List[str]


def container_settings(host: Host, recipe_container: Mapping[str, Any]) -> ContainerSettings:
    view = host.view
    ipc = view.choice(
        "ascend_container_ipc_mode", ("private", "shareable", "host"), default=recipe_container.get("ipc_mode")
    )
    shm = view.get("ascend_container_shm_size", to_size, required=False, default=recipe_container.get("shm_size"))
    mounts = view.get("ascend_driver_mounts", to_str_list, default=recipe_container.get("driver_mounts")) or []
    return ContainerSettings(ipc, shm, mounts)


def container(
    server: Server,
    name: str,
    image: str,
    env: Dict[str, str],
    prepend: Mapping[str, str],
    model: Model,
    settings: ContainerSettings,
    secret_files: Optional[Mapping[str, str]] = None,
) -> Dict[str, Any]:
    """The container of a server: every chip of the host, as the guide's docker run has them
    (ASCEND_RT_VISIBLE_DEVICES picks the server's), the driver mounts and the weights;
    ``secret_files`` maps an environment variable to ``(host file, path in the container)``."""
    view = server.host.view
    devices = [f"/dev/davinci{i}" for i in range(server.host.chips_per_node)]
    devices += view.get("ascend_device_nodes", to_str_list) or []
    models_dir = posixpath.normpath(view.get("ascend_models_dir", to_str) or "/")
    volumes = [*settings.driver_mounts, f"{models_dir}:{models_dir}"]
    for path in (model.path, model.eagle3):
        # Weights outside ascend_models_dir (an absolute catalogue path) are mounted on their own.
        if path and not posixpath.normpath(path).startswith(models_dir + "/"):
            volumes.append(f"{posixpath.normpath(path)}:{posixpath.normpath(path)}:ro")
    if server.dp_rank is not None:
        hccn_conf = view.get("ascend_hccn_conf", to_abs_path, required=False)
        if hccn_conf:
            volumes.append(f"{hccn_conf}:{hccn_conf}:ro")
    volumes += view.get("ascend_container_mounts_extra", to_str_list, required=False) or []
    volumes += [f"{on_host}:{inside}:ro" for on_host, inside in (secret_files or {}).values()]
    return {
        "name": name,
        "image": image,
        "user": view.get("ascend_container_user", to_str, required=False),
        "devices": devices,
        "volumes": volumes,
        "shm_size": settings.shm_size,
        "ipc_mode": settings.ipc_mode,
        "network_mode": "host",  # HCCL, Mooncake and the DP group address the host's own IPs and ports
        "env": env,
        "entrypoint": entrypoint(prepend, {k: inside for k, (_on_host, inside) in (secret_files or {}).items()}),
    }
