# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compute the deployment plan (one record per vLLM instance) from the inventory."""

from __future__ import annotations

DOCUMENTATION = r"""
name: vllm_plan
short_description: Compute the vLLM deployment plan from the inventory
version_added: 0.1.0
description:
  - Turns the inventory (each host's C(ascend_*) variables and the groups C(single), C(prefill),
    C(decode), C(proxy)) into one record per vLLM instance - host, role, DP rank, chips, ports,
    environment, the complete C(vllm serve) argv and the container to run it in - plus the PD
    proxies, and validates all of it first.
  - Pure computation; no host is contacted. Errors and warnings name the host (or group) and the
    inventory variable to change.
  - The variables are documented in C(inventories/a3/group_vars/all/*.yml); deviations from
    vLLM-Ascend's MiniMax-M2 guide are listed at the top of its C(scenario.yml).
positional: _input, groups
options:
  _input:
    description:
      - The hosts' variables, host name to variables. C(hostvars) itself, or a plain dict.
      - Only the C(ascend_*) variables of hosts in the four groups are read.
    type: dict
    required: true
  groups:
    description: The inventory groups (C(groups)), group name to host names.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Compute the plan
  ansible.builtin.set_fact:
    plan: "{{ hostvars | ascend.vllm.vllm_plan(groups) }}"

- name: Stop on any inventory error
  ansible.builtin.fail:
    msg: "{{ plan.errors | map(attribute='text') | list }}"
  when: plan.errors | length > 0
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    scenario:
      description: The chosen scenario (C(ascend_scenario)).
      type: str
    mode:
      description: C(single) (one instance per host of group C(single)) or C(pd).
      type: str
    model:
      description: The chosen catalogue entry (C(ascend_model)).
      type: str
    instances:
      description:
        - One record per vLLM instance (a container; for PD one DP rank).
        - Keys C(name), C(host), C(role) (single, prefill, decode), C(ip), C(port), C(url),
          C(served_model_name), C(model), C(tp), C(dp_size), C(dp_rank) (null for single, whose DP
          is in-process), C(dp_local_rank), C(dp_address), C(dp_rpc_port), C(chips), C(kv_port),
          C(kv_ports) (first and last Mooncake side-channel port), C(engine_id), C(env),
          C(env_prepend) (paths put in front of the image's variable of that name), C(argv)
          (C(vllm serve ...)), C(command_line) (argv shell-quoted) and C(container) (C(name),
          C(image), C(user), C(devices), C(volumes), C(shm_size), C(ipc_mode), C(network_mode),
          C(env), C(command)).
      type: list
      elements: dict
    proxies:
      description: PD only, one per host of group C(proxy) - C(host), C(port), C(image) (the
        vLLM-Ascend image the proxy runs from), and the C(prefill) and C(decode) endpoints
        (C(name) as C(host/instance name), C(host), C(ip), C(port), C(url)), every DP rank.
      type: list
      elements: dict
    errors:
      description: Problems that stop a deployment; each C(host), C(variable), C(message), C(text).
      type: list
      elements: dict
    warnings:
      description: Doubtful but valid choices, same shape as C(errors).
      type: list
      elements: dict
    table:
      description: The instances as fixed-width text lines for operators.
      type: list
      elements: str
"""

from typing import Any, Dict, List, Mapping

from ansible_collections.ascend.vllm.plugins.module_utils.plan import GROUPS, build_plan

_PREFIX = "ascend_"


def _inventory_vars(hostvars: Mapping[str, Any], groups: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The ``ascend_*`` variables of the hosts in the plan's groups, templated one by one.

    Reading only these keys (``hostvars[host]`` templates lazily, per key) keeps an unrelated
    variable that cannot be templated on the controller from breaking the plan.
    """
    names: List[str] = list(dict.fromkeys(h for g in GROUPS for h in (groups.get(g) or [])))
    return {
        name: {key: hostvars[name][key] for key in hostvars[name] if str(key).startswith(_PREFIX)}
        for name in names
        if name in hostvars
    }


def vllm_plan(hostvars: Mapping[str, Any], groups: Mapping[str, Any]) -> Dict[str, Any]:
    return build_plan(_inventory_vars(hostvars, groups), groups)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"vllm_plan": vllm_plan}
