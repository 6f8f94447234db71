# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The model and scenario catalogues, and what one role runs as on one host.

``role_spec`` merges, for one host and one role (single, prefill or decode), every layer that
can set the topology, the ``vllm serve`` flags and the environment, remembering which variable
set each value, so that an error can name it. Flags the plan writes itself (ports, parallel
sizes, DP ranks, kv-transfer-config...) are refused in every layer. Nothing here imports Ansible.
"""

from __future__ import annotations

import posixpath
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.plan_flags import ServeOptions
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import (
    CoerceError,
    HostView,
    Issues,
    Layered,
    deep_merge,
    normalize_flags,
    to_bool,
    to_int,
    to_mapping,
    to_str,
)

# ascend_num_speculative_tokens' ceiling: EAGLE3 heads are trained to draft a few tokens (the
# guide runs 1 and 3); a larger number is a typo, and only costs NPU time when it is not.
MAX_SPECULATIVE_TOKENS = 8
MODE_ROLES = {"single": ("single",), "pd": ("prefill", "decode")}
ROLES = ("single", "prefill", "decode")
SCENARIO_KEYS = ("description", "extends", "hardware", "env", "serve_args", *ROLES)
OVERRIDE_KEYS = ("env", "serve_args", *ROLES)
ROLE_KEYS = ("instances", "tp", "dp", "dp_local", "env", "serve_args")
MODEL_KEYS = (
    "description",
    "path",
    "served_name",
    "quantization",
    "c8",
    "eagle3",
    "trust_remote_code",
    "tool_call_parser",
    "reasoning_parser",
)
# Flags the plan writes itself, and what the operator sets instead.
PLAN_OWNED_FLAGS = {
    "model": "ascend_model",
    "served-model-name": "ascend_served_model_name",
    "host": "ascend_serve_host",
    "port": "ascend_<role>_port",
    "tensor-parallel-size": "the scenario's tp",
    "data-parallel-size": "the scenario's dp",
    "data-parallel-rank": "the scenario's dp (the plan numbers the ranks)",
    "data-parallel-start-rank": "the scenario's dp_local",
    "data-parallel-size-local": "the scenario's dp_local",
    "data-parallel-address": "ascend_local_ip of the first host of the role's group",
    "data-parallel-rpc-port": "ascend_<role>_dp_rpc_port",
    "kv-transfer-config": "ascend_<role>_kv_port and the scenario's tp / dp",
    "enable-tokenizer-info-endpoint": "nothing: playbooks/evaluate.yml needs it on every server",
}


# --- scenarios ---------------------------------------------------------------------------------


def _check_keys(entry: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
    unknown = [str(k) for k in entry if k not in allowed]
    if unknown:
        raise CoerceError(f"{what}: unknown key(s) {', '.join(unknown)} (known: {', '.join(allowed)})")


def normalize_scenario(entry: Any, keys: Sequence[str], what: str) -> Dict[str, Any]:
    """A scenario (or overrides) entry, keys checked, flag names in canonical spelling."""
    entry = to_mapping(entry)
    _check_keys(entry, keys, what)
    sections = [entry]
    for role in ROLES:
        if role in entry:
            entry[role] = to_mapping(entry[role])
            _check_keys(entry[role], ROLE_KEYS, f"{what}.{role}")
            sections.append(entry[role])
    for section in sections:
        if "serve_args" in section:
            section["serve_args"] = normalize_flags(to_mapping(section["serve_args"]))
        if "env" in section:
            section["env"] = to_mapping(section["env"])
    return entry


def resolve_scenario(catalogue: Mapping[str, Any], name: str) -> Dict[str, Any]:
    """The named scenario with its ``extends`` chain merged in, parent first."""
    chain = []
    current: Optional[str] = name
    while current:
        if current in chain:
            raise CoerceError(f"scenario 'extends' loop: {' -> '.join([*chain, current])}")
        if current not in catalogue:
            raise CoerceError(f"no scenario {current!r} in the catalogue (known: {', '.join(sorted(catalogue))})")
        chain.append(current)
        parent = to_mapping(catalogue[current]).get("extends")
        current = to_str(parent) if parent else None
    merged: Dict[str, Any] = {}
    for entry in reversed(chain):
        merged = deep_merge(merged, normalize_scenario(catalogue[entry], SCENARIO_KEYS, f"scenario {entry}"))
    merged.pop("extends", None)
    return merged


def scenario_mode(scenario: Mapping[str, Any]) -> str:
    roles = {r for r in ROLES if r in scenario}
    for mode, mode_roles in MODE_ROLES.items():
        if roles == set(mode_roles):
            return mode
    raise CoerceError("a scenario has either a 'single' section or both 'prefill' and 'decode' sections")


# --- models -----------------------------------------------------------------------------------


class Model(NamedTuple):
    name: str
    path: str
    served_name: str
    quantization: Optional[str]
    c8: bool
    eagle3: Optional[str]
    trust_remote_code: bool
    tool_call_parser: Optional[str]
    reasoning_parser: Optional[str]


def resolve_model(catalogue: Mapping[str, Any], name: str, models_dir: str) -> Model:
    """The named weights; relative paths are taken under ``ascend_models_dir``."""
    if name not in catalogue:
        raise CoerceError(f"no model {name!r} in ascend_models (known: {', '.join(sorted(catalogue))})")
    entry = to_mapping(catalogue[name])
    _check_keys(entry, MODEL_KEYS, f"model {name}")

    def text(key: str) -> Optional[str]:
        value = entry.get(key)
        return to_str(value) if value not in (None, "") else None

    path, eagle3 = text("path"), text("eagle3")
    if path is None:
        raise CoerceError(f"model {name}: 'path' is not set")
    return Model(
        name=name,
        path=posixpath.join(models_dir, path),
        served_name=text("served_name") or name,
        quantization=text("quantization"),
        c8=to_bool(entry.get("c8", False)),
        eagle3=posixpath.join(models_dir, eagle3) if eagle3 else None,
        trust_remote_code=to_bool(entry.get("trust_remote_code", True)),
        tool_call_parser=text("tool_call_parser"),
        reasoning_parser=text("reasoning_parser"),
    )


def model_flags(model: Model, tool_calling: bool) -> Dict[str, Any]:
    flags: Dict[str, Any] = {"quantization": model.quantization, "trust-remote-code": model.trust_remote_code}
    if tool_calling:
        # The seed's "to test with curl and tool calling" additions. The verify playbook needs
        # them, and in PD the proxy sends each request (with its tools) to prefill as well.
        flags.update(
            {
                "enable-auto-tool-choice": bool(model.tool_call_parser),
                "tool-call-parser": model.tool_call_parser,
                "reasoning-parser": model.reasoning_parser,
            }
        )
    return flags


# --- one role on one host ---------------------------------------------------------------------


class RoleSpec(NamedTuple):
    role: str
    instances: int  # PD: independent DP groups of the role; single: 1
    tp: int
    dp: int
    dp_local: Optional[int]
    world: int  # chips of one DP rank: tp x pipeline x prefill-context parallel sizes
    origin: Dict[str, str]  # instances / tp / dp / dp_local -> the variable that set it
    flags: Layered
    env: Layered
    env_extra: Dict[str, Any]


def _sizes(view: HostView, role: str, scenario: str, base: Mapping[str, Any], overrides: Mapping[str, Any]):
    """instances, tp, dp, dp_local of a role (overrides first) and the variable each came from."""
    sizes: Dict[str, Optional[int]] = {}
    origin: Dict[str, str] = {}
    for key in ("instances", "tp", "dp", "dp_local"):
        sizes[key] = None
        for variable, section in (
            (f"ascend_scenario_overrides.{role}.{key}", overrides.get(role) or {}),
            (f"ascend_scenarios.{scenario}.{role}.{key}", base.get(role) or {}),
        ):
            if section.get(key) not in (None, ""):
                origin[key] = variable
                try:
                    sizes[key] = to_int(section[key], minimum=1)
                except CoerceError as exc:
                    view.issues.error(view.name, variable, str(exc))
                    return None
                break
        if key in ("tp", "dp") and sizes[key] is None:
            view.issues.error(view.name, f"ascend_scenarios.{scenario}.{role}.{key}", "not set")
            return None
    if role == "single" and sizes["instances"] not in (None, 1):
        message = "a single-node scenario runs one instance per host of group single; list more hosts instead"
        view.issues.error(view.name, origin["instances"], message)
        return None
    sizes["instances"] = sizes["instances"] or 1
    origin.setdefault("instances", f"ascend_scenarios.{scenario}.{role}.instances")
    return sizes, origin


def _layers(role: str, scenario: str, base: Mapping[str, Any], overrides: Mapping[str, Any], key: str):
    """(variable, mapping) of the scenario's and the overrides' ``key`` (serve_args or env), low first."""
    return [
        (f"ascend_scenarios.{scenario}.{key}", base.get(key) or {}),
        (f"ascend_scenarios.{scenario}.{role}.{key}", (base.get(role) or {}).get(key) or {}),
        (f"ascend_scenario_overrides.{key}", overrides.get(key) or {}),
        (f"ascend_scenario_overrides.{role}.{key}", (overrides.get(role) or {}).get(key) or {}),
    ]


def role_spec(
    view: HostView,
    role: str,
    scenario: str,
    base: Mapping[str, Any],
    overrides: Mapping[str, Any],
    model: Model,
    env_base: Sequence[Tuple[str, Mapping[str, Any]]],
    options: Optional[ServeOptions] = None,
) -> Optional[RoleSpec]:
    """What ``role`` runs as on the host of ``view``: topology, flags and env with their origins.

    Flags, low to high: the model entry < scenario < role < overrides < role overrides <
    ascend_serve_args_extra. Env: ``env_base`` (the hardware's and the recipe's, each with the
    variable or recipe that set it) < the same scenario layers; the plan's own variables and
    ascend_env_extra come on top per server.
    """
    sized = _sizes(view, role, scenario, base, overrides)
    if sized is None:
        return None
    sizes, origin = sized
    flags = Layered()
    flags.add(
        f"ascend_models.{model.name}",
        model_flags(model, view.get("ascend_tool_calling", to_bool, required=False, default=True)),
    )
    layers = _layers(role, scenario, base, overrides, "serve_args")
    try:
        extra = normalize_flags(view.get("ascend_serve_args_extra", to_mapping, required=False, default={}))
        layers.append(("ascend_serve_args_extra", extra))
    except CoerceError as exc:
        view.issues.error(view.name, "ascend_serve_args_extra", str(exc))
    layers += _scalar_flag_layers(view)
    for variable, layer in layers:
        for name in layer:
            if name in PLAN_OWNED_FLAGS:
                hint = PLAN_OWNED_FLAGS[name].replace("<role>", role)
                view.issues.error(view.name, variable, f"--{name} is written by the plan; set {hint} instead")
        flags.add(variable, {k: v for k, v in layer.items() if k not in PLAN_OWNED_FLAGS})
    _speculative_tokens(view, flags)
    _speculative(view.name, flags, model, view.issues)
    _check_flag_values(view.name, flags, view.issues, options)

    env = Layered()
    for variable, layer in env_base:
        env.add(variable, layer)
    for variable, layer in _layers(role, scenario, base, overrides, "env"):
        env.add(variable, layer)

    world = sizes["tp"]
    for name in ("pipeline-parallel-size", "prefill-context-parallel-size"):
        # `is` and not `in (None, False)`: 0 == False in Python, and 0 is a value to refuse, not "unset".
        if flags.values.get(name) is not None and flags.values.get(name) is not False:
            try:
                world *= to_int(flags.values[name], minimum=1)
            except CoerceError as exc:
                if options is None:  # otherwise vLLM's option table has reported it
                    view.issues.error(view.name, flags.origin.get(name, name), f"--{name}: {exc}")
    return RoleSpec(
        role=role,
        instances=sizes["instances"],
        tp=sizes["tp"],
        dp=sizes["dp"],
        dp_local=sizes["dp_local"],
        world=world,
        origin=origin,
        flags=flags,
        env=env,
        env_extra=view.get("ascend_env_extra", to_mapping, required=False, default={}),
    )


def _scalar_flag_layers(view: HostView) -> List[Tuple[str, Dict[str, Any]]]:
    """The one-value shortcuts for a scenario's flags (an AWX survey answers one field at a time,
    never a mapping): ``ascend_max_model_len`` is ``--max-model-len``, last word like
    ascend_serve_args_extra. Unset or blank keeps the scenario's value."""
    layers: List[Tuple[str, Dict[str, Any]]] = []
    max_model_len = view.get("ascend_max_model_len", lambda v: to_int(v, minimum=1), required=False)
    if max_model_len is not None:
        layers.append(("ascend_max_model_len", {"max-model-len": max_model_len}))
    return layers


def _speculative_tokens(view: HostView, flags: Layered) -> None:
    """``ascend_num_speculative_tokens``: the scenario's ``num_speculative_tokens`` replaced on
    every server that decodes speculatively (0 turns speculative decoding off). A scenario
    without speculative decoding gets no method from a number alone: that is an error."""
    variable = "ascend_num_speculative_tokens"
    tokens = view.get(variable, lambda v: to_int(v, minimum=0, maximum=MAX_SPECULATIVE_TOKENS), required=False)
    if tokens is None:
        return
    if tokens == 0:
        flags.add(variable, {"speculative-config": None})
        return
    spec = flags.values.get("speculative-config")
    if not isinstance(spec, Mapping):
        view.issues.error(
            view.name,
            variable,
            f"{tokens} speculative tokens, but this host's servers run no speculative decoding "
            f"(--speculative-config is {spec!r}); leave it unset or 0, or choose a scenario with EAGLE3",
        )
        return
    flags.add(variable, {"speculative-config": {"num_speculative_tokens": tokens}})


def _speculative(host: str, flags: Layered, model: Model, issues: Issues) -> None:
    """Fill in the model's EAGLE3 head; refuse EAGLE3 with C8 weights (unsupported, seed FAQ)."""
    spec = flags.values.get("speculative-config")
    if spec is None or spec is False:
        return
    variable = flags.origin.get("speculative-config", "speculative-config")
    if not isinstance(spec, Mapping):
        issues.error(host, variable, f"--speculative-config must be a mapping, got {spec!r}")
        return
    draft = spec.get("model")
    if draft not in (None, "") and not str(draft).startswith("/"):
        # weights are read from the host (preflight checks them, the container mounts them);
        # a relative path would be looked up inside the container, from its working directory.
        message = (
            f"--speculative-config model {draft!r} is not an absolute path: give the draft model's directory on "
            "the hosts, or leave it out and set the model entry's eagle3 (relative to ascend_models_dir)"
        )
        issues.error(host, variable, message)
        return
    if str(spec.get("method", "")).lower() not in ("eagle3", "eagle"):
        return
    if model.c8:
        issues.error(
            host,
            f"{variable} with ascend_model",
            f"EAGLE3 speculative decoding is not supported with C8 (int8 KV cache) weights ({model.name}); "
            "drop it with ascend_serve_args_extra: {speculative-config: false} or choose W8A8 weights",
        )
    elif "model" not in spec:
        if model.eagle3 is None:
            issues.error(host, f"ascend_models.{model.name}.eagle3", f"not set, and {variable} asks for EAGLE3")
        else:
            flags.values["speculative-config"] = {**spec, "model": model.eagle3}


def _check_flag_values(host: str, flags: Layered, issues: Issues, options: Optional[ServeOptions]) -> None:
    """Flags vLLM does not have, and values it would reject at start (vLLM's option table),
    each naming the variable that set the flag; then switches that contradict each other."""
    if options is not None:
        for name, problem in options.problems(flags.values).items():
            issues.error(host, flags.origin.get(name, name), problem)
    for name, value in flags.values.items():
        for negative, positive in (("no-", ""), ("disable-", "enable-")):
            opposite = positive + name[len(negative) :]
            if value and name.startswith(negative) and flags.values.get(opposite):
                where = flags.origin.get(opposite, opposite)
                issues.error(host, flags.origin.get(name, name), f"--{name} contradicts --{opposite} (from {where})")
