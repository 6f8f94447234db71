# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment plan: the inventory's choices + the shipped catalogue -> one document. Pure.

``build_plan(hostvars, groups, catalogue)`` takes each host's ``ascend_*`` variables (plain
data), the inventory groups (``single``, ``prefill``, ``decode``, ``proxy``, and the optional
``monitoring``) and the catalogue
(catalogue/: models, recipes, defaults) and returns ``{"plan": document, "errors": [...],
"warnings": [...], "table": [...]}``. The document is the plan's public contract, schema
``ascend.vllm/plan`` version 1, described in docs/plan.md: its instances, and per host the
servers (one record per ``vllm serve`` container) with their argv, environment, container,
weights and every port they bind, the PD proxy, the network and host tuning; and what
Prometheus scrapes (plan_monitoring). ``plan`` is None
while there are errors. An issue is ``{"host", "variable", "message", "text"}``: every problem
names the host (or the group) and the inventory variable to change.

The parts: plan_recipes (which recipe and image), plan_catalogue (scenarios, models, what a
role runs as on a host), plan_placement (instances, servers, chips and ports), plan_render
(argv, env, containers), plan_checks (ports, chips, pairing).
"""

from __future__ import annotations

import difflib
import shlex
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.ascend.vllm.plugins.module_utils.plan_auth import KEY_FILE, Auth, read_auth
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
from ansible_collections.ascend.vllm.plugins.module_utils.plan_checks import (
    Claim,
    check_chips_unique,
    check_ips_unique,
    check_ports,
    check_prefill_tp,
    check_speculative_pairing,
    server_claims,
)
from ansible_collections.ascend.vllm.plugins.module_utils.plan_flags import ServeOptions, serve_options
from ansible_collections.ascend.vllm.plugins.module_utils.plan_monitoring import monitoring_record
from ansible_collections.ascend.vllm.plugins.module_utils.plan_placement import (
    Host,
    Server,
    place_pd_role,
    place_single,
    read_host,
    topology_agrees,
)
from ansible_collections.ascend.vllm.plugins.module_utils.plan_recipes import (
    ImageChoice,
    Recipe,
    choose,
    model_catalogue,
    resolve_recipes,
    scenario_catalogue,
)
from ansible_collections.ascend.vllm.plugins.module_utils.plan_render import (
    ContainerSettings,
    container,
    container_settings,
    env_prepend,
    serve_argv,
    server_env,
    weights,
)
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import (
    CoerceError,
    HostView,
    Issues,
    format_chips,
    plain,
    to_abs_path,
    to_bool,
    to_mapping,
    to_str,
    url_address,
)
from ansible_collections.ascend.vllm.plugins.module_utils.text_table import format_rows

SCHEMA = "ascend.vllm/plan"
SCHEMA_VERSION = 1
# monitoring: the hosts that run Prometheus (plan_monitoring); optional.
GROUPS = ("single", "prefill", "decode", "proxy", "monitoring")
PREFIX = "ascend_"
TABLE_COLUMNS = ("Host", "Instance", "DP rank", "TP", "Chips", "Port", "KV ports", "Container")
# Deployment-wide variables: one inventory plans one deployment.
DEPLOYMENT_WIDE = (
    "ascend_scenario",
    "ascend_model",
    "ascend_recipe",
    "ascend_vllm_image",
    "ascend_vllm_image_mirror",
    "ascend_vllm_image_repository",
    "ascend_vllm_image_tag",
)


def inventory_hosts(groups: Mapping[str, Any]) -> List[str]:
    """The hosts of the plan's groups, in group then inventory order, each once."""
    return list(dict.fromkeys(str(h) for g in GROUPS for h in (groups.get(g) or [])))


def _unknown_variables(view: HostView, known: Sequence[str], foreign: Sequence[str]) -> None:
    for name in view.raw:
        if not name.startswith(PREFIX) or name in known or any(name.startswith(f) for f in foreign):
            continue
        # Compared without the common prefix, which would make every name look alike.
        suffixes = {k[len(PREFIX) :]: k for k in known}
        close = difflib.get_close_matches(name[len(PREFIX) :], list(suffixes), n=1, cutoff=0.75)
        hint = f"; did you mean {suffixes[close[0]]}?" if close else " (catalogue/defaults.yml lists them all)"
        view.issues.error(view.name, name, f"is not a variable of ascend.vllm{hint}")


def _agree(views: List[HostView], var: str, issues: Issues) -> None:
    """A deployment-wide variable: the same value on every host."""
    first = views[0]
    reference = first.raw.get(var)
    for view in views[1:]:
        value = view.raw.get(var)
        if value != reference and value not in (None, "") and reference not in (None, ""):
            message = (
                f"{value!r} differs from {reference!r} on {first.name}: one inventory plans one deployment; "
                "set it in group_vars/all or with -e"
            )
            issues.error(view.name, var, message)


class Choices:
    """The deployment-wide choices, as the first host of single / prefill / decode sees them."""

    def __init__(self, view: HostView, catalogue: Mapping[str, Any], members: Mapping[str, List[str]]) -> None:
        self.ok = False
        issues = view.issues
        try:
            self.recipes: Dict[str, Recipe] = resolve_recipes(catalogue["recipes"])
        except CoerceError as exc:
            issues.error("catalogue", "recipes", str(exc))
            return
        hardware = view.choice("ascend_hardware", ("a3", "a2")) or "a3"
        image = choose(view, self.recipes, hardware)
        name = view.get("ascend_scenario", to_str)
        if image is None or name is None:
            return
        self.image: ImageChoice = image
        self.recipe = image.recipe
        self.scenario = name
        scenarios = scenario_catalogue(view, self.recipe)
        if name in self.recipe.withdrawn and name not in scenarios:
            issues.error(
                view.name,
                "ascend_scenario",
                f"{name} is withdrawn in recipe {self.recipe.name}: {self.recipe.withdrawn[name]}",
            )
            return
        try:
            self.base = resolve_scenario(scenarios, name)
            self.mode = scenario_mode(self.base)
        except CoerceError as exc:
            issues.error(view.name, f"ascend_scenarios.{name}", f"{exc} (recipe {self.recipe.name})")
            return
        for role in MODE_ROLES[self.mode]:
            if not members[role]:
                issues.error(f"group {role}", "groups", f"scenario {name} needs hosts in group {role}")
        self.ok = True


def _spec(host: Host, role: str, choices: Choices, model: Model, options: Optional[ServeOptions]) -> Optional[RoleSpec]:
    view, recipe = host.view, choices.recipe
    try:
        raw = view.get("ascend_scenario_overrides", to_mapping, required=False) or {}
        overrides = normalize_scenario(raw, OVERRIDE_KEYS, "overrides")
    except CoerceError as exc:
        view.issues.error(view.name, "ascend_scenario_overrides", str(exc))
        return None
    written_for = choices.base.get("hardware")
    if written_for and host.hardware and str(written_for) != host.hardware:
        message = f"scenario {choices.scenario} is written for {written_for} hosts; this host is {host.hardware}"
        view.issues.warn(view.name, "ascend_scenario", message)
    hardware_env = recipe.hardware.get(host.hardware or "", {}).get("env") or {}
    if view.has("ascend_hardware_env"):
        hardware_env = view.get("ascend_hardware_env", to_mapping) or {}
        origin = "ascend_hardware_env"
    else:
        origin = f"recipe {recipe.name} hardware {host.hardware} env"
    env_base = [(origin, hardware_env), (f"recipe {recipe.name} env", recipe.env)]
    return role_spec(view, role, choices.scenario, choices.base, overrides, model, env_base, options)


def _model(view: HostView, catalogue: Mapping[str, Any]) -> Optional[Model]:
    name = view.get("ascend_model", to_str)
    models_dir = view.get("ascend_models_dir", to_str)
    if models_dir is not None and not models_dir.startswith("/"):
        view.issues.error(view.name, "ascend_models_dir", f"{models_dir!r} is not an absolute path")
        return None
    models = model_catalogue(view, catalogue["models"])
    if name is None or models_dir is None:
        return None
    try:
        return resolve_model(models, name, models_dir)
    except CoerceError as exc:
        view.issues.error(view.name, f"ascend_models.{name}" if name in models else "ascend_model", str(exc))
        return None


def _place(choices: Choices, members: Mapping[str, List[str]], hosts: Dict[str, Host], specs, issues: Issues):
    if choices.mode == "single":
        return place_single([hosts[h] for h in members["single"]], specs["single"], issues)
    servers: List[Server] = []
    used: Dict[str, int] = {}
    engine_ids = 0
    for role in MODE_ROLES["pd"]:
        role_hosts = [hosts[h] for h in members[role]]
        topology_agrees(role, role_hosts, specs[role], issues)
        others = {h for other in MODE_ROLES["pd"] if other != role for h in members[other]}
        grow_on = [h for h in members[role] if h not in others]
        placed = place_pd_role(role, role_hosts, specs[role], used, engine_ids, issues, grow_on)
        servers += placed
        engine_ids += len({s.instance.name for s in placed})
    prefill, decode = specs["prefill"][members["prefill"][0]], specs["decode"][members["decode"][0]]
    check_prefill_tp(prefill, decode, members["prefill"], issues)
    check_speculative_pairing(prefill, decode, members["decode"], issues)
    return servers


def build_plan(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Any], catalogue: Mapping[str, Any]):
    """The plan of the deployment the inventory describes (see the module docstring)."""
    issues = Issues()
    defaults = catalogue["defaults"]
    members = {g: [str(h) for h in (groups.get(g) or [])] for g in GROUPS}
    views = {h: HostView(h, plain(hostvars.get(h) or {}), issues, defaults) for h in inventory_hosts(groups)}
    for view in views.values():
        _unknown_variables(view, list(defaults), catalogue.get("foreign", []))
    candidates = [h for g in ("single", "prefill", "decode") for h in members[g]]
    if not candidates:
        issues.error("inventory", "groups", "no host in the groups single, prefill or decode")
        return _finish(None, issues)
    if issues.errors:
        return _finish(None, issues)
    choices = Choices(views[candidates[0]], catalogue, members)
    if not choices.ok or issues.errors:
        return _finish(None, issues)
    roles = MODE_ROLES[choices.mode]
    deployment = list(dict.fromkeys(h for g in (*roles, "proxy") for h in members[g]))
    if choices.mode == "single":
        deployment = list(members["single"])
    for var in DEPLOYMENT_WIDE:
        _agree([views[h] for h in deployment], var, issues)
    auth = read_auth(views, deployment, members["proxy"], choices.mode == "pd")

    # PD servers need their host's IP and NIC (HCCL, the DP address); a proxy-only host does not.
    pd = choices.mode == "pd"
    hosts = {h: read_host(views[h], pd and any(h in members[r] for r in roles)) for h in deployment}
    check_ips_unique(hosts, issues)
    models: Dict[str, Model] = {}
    options = serve_options(catalogue)
    specs: Dict[str, Dict[str, RoleSpec]] = {role: {} for role in roles}
    for role in roles:
        for name in members[role]:
            model = models.get(name) or _model(views[name], catalogue)
            spec = _spec(hosts[name], role, choices, model, options) if model else None
            if spec is not None:
                models[name], specs[role][name] = model, spec
    if issues.errors:
        return _finish(None, issues)
    servers = _place(choices, members, hosts, specs, issues)
    check_chips_unique(servers, issues)
    document = _render(choices, members, hosts, specs, models, servers, auth, issues)
    if not issues.errors:
        document["monitoring"] = monitoring_record(document, members, views, issues)
    return _finish(None if issues.errors else document, issues)


def _render(
    choices: Choices, members, hosts: Dict[str, Host], specs, models, servers: List[Server], auth: Auth, issues: Issues
):
    roles = MODE_ROLES[choices.mode]
    pd = choices.mode == "pd"
    sizes = {role: (specs[role][members[role][0]].tp, specs[role][members[role][0]].dp) for role in roles}
    roles_of = {h: {s.role for s in servers if s.host.name == h} for h in hosts}
    settings: Dict[str, ContainerSettings] = {}
    records: Dict[str, List[Dict[str, Any]]] = {h: [] for h in hosts}
    claims: List[Claim] = []
    for server in servers:
        host = server.host
        if host.name not in settings:
            recipe_container = choices.recipe.hardware.get(host.hardware or "", {}).get("container") or {}
            settings[host.name] = container_settings(host, recipe_container)
        record = _server_record(
            choices, server, models[host.name], len(roles_of[host.name]) > 1, settings[host.name], sizes, auth, issues
        )
        records[host.name].append(record)
        claims += server_claims(server, record["name"])
    proxies = _proxies(members["proxy"] if pd else [], hosts, records, choices, auth, issues)
    for proxy in proxies.values():
        claims.append(
            Claim(proxy["host"], proxy["port"], proxy["port"], "PD proxy port", "ascend_proxy_port", proxy["name"])
        )
    pd_hosts = {s.host.name: s.host.chips_per_node for s in servers} if pd else {}
    check_ports(claims, pd_hosts, issues)
    host_records = {}
    for name, host in hosts.items():
        host_records[name] = {
            "ip": host.ip,
            "nic": host.nic,
            "hardware": host.hardware,
            "roles": sorted(roles_of[name]) + (["proxy"] if name in proxies else []),
            "servers": records[name],
            "proxy": proxies.get(name),
            "ports": [c.record() for c in claims if c.host == name],
            "network": _network(name, host, roles_of, servers) if pd and roles_of[name] else {},
            # Files the host's containers load from the image itself (the preloaded jemalloc).
            "image_files": sorted(
                {r["env_prepend"]["LD_PRELOAD"] for r in records[name] if "LD_PRELOAD" in r["env_prepend"]}
            ),
            "tuning": {
                "sysctls": host.view.get("ascend_sysctls", to_mapping, required=False) or {},
                "cpu_governor": host.view.get("ascend_cpu_governor", to_str, required=False) or "",
            },
        }
    instances = []
    for server in servers:
        inst = server.instance
        if not instances or instances[-1]["name"] != inst.name:
            instances.append(
                {
                    "name": inst.name,
                    "role": inst.role,
                    "index": inst.index,
                    "tp": inst.spec.tp,
                    "dp_size": inst.spec.dp,
                    "hosts": [],
                    "dp_address": inst.master.ip if pd else None,
                    "dp_rpc_port": inst.dp_rpc_port,
                    "engine_id": inst.engine_id,
                    "kv_port": inst.kv_port,
                    "servers": [],
                }
            )
        if server.host.name not in instances[-1]["hosts"]:
            instances[-1]["hosts"].append(server.host.name)
        instances[-1]["servers"].append(f"{server.host.name}/{_container_name(server)}")
    first_view = hosts[next(iter(hosts))].view
    served = first_view.get("ascend_served_model_name", to_str, required=False)
    model = next(iter(models.values()))
    endpoints = [p["url"] for p in proxies.values()] if pd else [r["url"] for rs in records.values() for r in rs]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "scenario": choices.scenario,
        "description": " ".join(str(choices.base.get("description", "")).split()),
        "mode": choices.mode,
        # What was placed: the scenario's instances, or more when the groups hold more (scale out).
        "shape": {role: sum(i["role"] == role for i in instances) for role in roles},
        "model": model.name,
        "served_model_name": served or model.served_name,
        "tool_calling": bool(first_view.get("ascend_tool_calling", to_bool)),
        "recipe": {
            "name": choices.recipe.name,
            "vllm_ascend": ".".join(map(str, choices.recipe.version)),
            "why": choices.image.why,
        },
        "image": choices.image.image,
        "endpoints": endpoints,
        "instances": instances,
        "hosts": host_records,
    }


def _container_name(server: Server) -> str:
    prefix = server.host.view.get("ascend_container_name_prefix", to_str)
    suffix = "single" if server.dp_rank is None else f"{server.instance.name}-dp{server.dp_rank}"
    return f"{prefix}-{suffix}"


def _server_record(
    choices: Choices,
    server: Server,
    model: Model,
    shared: bool,
    settings: ContainerSettings,
    sizes,
    auth: Auth,
    issues: Issues,
) -> Dict[str, Any]:
    view, host, inst = server.host.view, server.host, server.instance
    served = view.get("ascend_served_model_name", to_str, required=False) or model.served_name
    bind = view.get("ascend_serve_host", to_str)
    argv = serve_argv(server, model, served, bind, sizes)
    env = server_env(server, shared, issues)
    _warn_fused_mc2_on_a2(server, env, issues)
    prepend = env_prepend(host, server.dp_rank is not None)
    name = _container_name(server)
    return {
        "name": name,
        "instance": inst.name,
        "host": host.name,
        "role": server.role,
        "ip": host.ip,
        "port": server.port,
        "url": f"http://{url_address(host.ip or host.name)}:{server.port}",
        "served_model_name": served,
        "model": model.path,
        "weights": weights(model, server.spec.flags.values),
        "tp": server.spec.tp,
        "dp_size": server.spec.dp,
        "dp_rank": server.dp_rank,
        "dp_local_rank": server.dp_local_rank,
        "dp_address": inst.master.ip if server.dp_rank is not None else None,
        "dp_rpc_port": inst.dp_rpc_port,
        "chips": server.chips,
        "kv_port": inst.kv_port,
        "kv_ports": list(server.kv_range) if server.kv_range else None,
        "engine_id": inst.engine_id,
        "env_prepend": prepend,
        "argv": argv,
        # Whether the server requires ascend_vllm_api_key, and the file on the host the role
        # vllm_server writes it to (and removes when the key is turned off); the key itself
        # never enters the plan.
        "auth": auth.servers,
        "api_key_file": KEY_FILE,
        "container": container(server, name, choices.image.image, env, prepend, model, settings, auth.secret_files()),
    }


def _warn_fused_mc2_on_a2(server: Server, env: Mapping[str, str], issues: Issues) -> None:
    additional = server.spec.flags.values.get("additional-config")
    fused = env.get("VLLM_ASCEND_ENABLE_FUSED_MC2") == "1" or (
        isinstance(additional, Mapping) and additional.get("enable_fused_mc2") in (True, 1)
    )
    if fused and server.host.hardware == "a2":
        issues.warn(server.host.name, "ascend_scenario", "fused MC2 is on, on A2 hardware (guide 9.2.2: for A3 only)")


def _backend(record: Mapping[str, Any]) -> Dict[str, Any]:
    backend = {"name": f"{record['host']}/{record['name']}"}
    backend.update({key: record[key] for key in ("instance", "host", "ip", "port", "url", "auth")})
    return backend


def _proxies(
    names: List[str], hosts: Mapping[str, Host], records, choices: Choices, auth: Auth, issues: Issues
) -> Dict[str, Dict[str, Any]]:
    """One record per proxy host: where it listens, its image, and every prefill / decode rank."""
    if choices.mode == "pd" and not names:
        issues.error("group proxy", "groups", "no proxy host: PD needs a proxy in front of prefill and decode")
    flat = [r for rs in records.values() for r in rs]
    proxies = {}
    for name in names:
        view = hosts[name].view
        port = view.port("ascend_proxy_port")
        if port is None:
            continue
        proxies[name] = {
            "host": name,
            "name": view.get("ascend_proxy_container_name", to_str),
            "port": port,
            "url": f"http://{url_address(hosts[name].ip or name)}:{port}",
            "image": choices.image.image,
            # Whether clients must present one of ascend_proxy_api_keys (never the keys).
            "auth": auth.proxy,
            "prefill": [_backend(r) for r in flat if r["role"] == "prefill"],
            "decode": [_backend(r) for r in flat if r["role"] == "decode"],
        }
    return proxies


def _network(name: str, host: Host, roles_of: Mapping[str, set], servers: List[Server]) -> Dict[str, Any]:
    """What a PD host's fabric must offer: its NIC and IP, the NPU NICs of its chips, and the
    hosts of the other role it exchanges KV with (checked by preflight)."""
    mine = roles_of[name]
    peers = [h for h, theirs in roles_of.items() if h != name and theirs and (theirs - mine or mine - theirs)]
    return {
        "nic": host.nic,
        "ip": host.ip,
        "devices": sorted({c for s in servers if s.host.name == name for c in s.chips}),
        "hccn_conf": host.view.get("ascend_hccn_conf", to_abs_path, required=False),
        "fabric_peers": peers,
    }


def check_shape(plan: Mapping[str, Any], mode: Optional[str], shape: Optional[Mapping[str, int]], purpose: str):
    """Problems when the plan is not what a playbook deploys (mode, and instances per role)."""
    problems = []
    if mode and plan["mode"] != mode:
        wanted = "single-node" if mode == "single" else "prefill/decode (PD)"
        problems.append(
            f"{purpose} deploys a {wanted} scenario; {plan['scenario']} is a "
            f"{'single-node' if plan['mode'] == 'single' else 'PD'} one: choose another ascend_scenario or playbook"
        )
    elif shape and any(int(plan["shape"].get(role, 0)) != int(count) for role, count in shape.items()):
        want = " and ".join(f"{count} {role}" for role, count in shape.items())
        have = " and ".join(f"{count} {role}" for role, count in plan["shape"].items())
        problems.append(
            f"{purpose} deploys {want} instance(s); scenario {plan['scenario']} has {have}: "
            "choose another ascend_scenario, or run playbooks/pd.yml, which deploys any shape"
        )
    return problems


def plan_table(plan: Mapping[str, Any]) -> List[str]:
    """The servers (and the proxies) as fixed-width lines for operators."""
    rows = []
    for host, record in plan["hosts"].items():
        for s in record["servers"]:
            rank = f"{s['dp_size']} in-process" if s["dp_rank"] is None else f"{s['dp_rank']}/{s['dp_size']}"
            kv = "-" if not s["kv_ports"] else "-".join(map(str, s["kv_ports"]))
            rows.append((host, s["instance"], rank, s["tp"], format_chips(s["chips"]), s["port"], kv, s["name"]))
        if record["proxy"]:
            rows.append((host, "proxy", "-", "-", "-", record["proxy"]["port"], "-", record["proxy"]["name"]))
    return format_rows(TABLE_COLUMNS, rows)


def serve_commands(plan: Mapping[str, Any]) -> str:
    """Each server's complete ``vllm serve`` line, shell-quoted, under a comment naming it."""
    lines = []
    for host, record in plan["hosts"].items():
        for server in record["servers"]:
            lines += [f"# {host} {server['name']} ({server['instance']})", shlex.join(server["argv"])]
    return "\n".join(lines) + "\n"


def _finish(plan: Optional[Dict[str, Any]], issues: Issues) -> Dict[str, Any]:
    return {
        "plan": plan,
        "errors": issues.errors,
        "warnings": issues.warnings,
        "table": plan_table(plan) if plan else [],
    }
