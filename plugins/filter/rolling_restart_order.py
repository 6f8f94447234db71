# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The instances a rolling restart takes, in order, or why it refuses."""

from __future__ import annotations

DOCUMENTATION = r"""
name: rolling_restart_order
short_description: The instances (DP groups) a rolling restart takes, in plan order, or why it refuses
version_added: 0.2.0
description:
  - From the plan (C(ascend_plan)), the PD instances to restart one at a time, in plan order,
    optionally only those of one role or only the named ones.
  - Refuses (an empty order and a message) when a role being rolled has a single instance and
    downtime is not accepted (while it restarts, nothing of that role serves), when a named
    instance is not in the plan, and for a single-node plan.
options:
  _input:
    description: The plan.
    type: dict
    required: true
  role:
    description: Only the instances of this role (V(prefill) or V(decode)); empty for both.
    type: str
    default: ""
  instances:
    description: Only these instances (C(decode1), ...); empty for all.
    type: list
    elements: str
    default: []
  accept_downtime:
    description: Restart a role's only instance anyway.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Decide what rolls
  ansible.builtin.set_fact:
    roll: "{{ ascend_plan | ascend.vllm.rolling_restart_order(role='decode') }}"
"""

RETURN = r"""
_value:
  description: C(order), the instance names in restart order, and C(refusal), empty or why not.
  type: dict
"""

from typing import Any, Dict, Mapping, Sequence, Union

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.ascend.vllm.plugins.module_utils.rolling_restart import roll_order


def rolling_restart_order(
    plan: Mapping[str, Any],
    role: str = "",
    instances: Union[str, Sequence[str], None] = (),
    accept_downtime: Any = False,
) -> Dict[str, Any]:
    # -e rolling_restart_instances=decode0,decode1 arrives as one string.
    names = (
        [n.strip() for n in instances.split(",") if n.strip()] if isinstance(instances, str) else list(instances or [])
    )
    return roll_order(plan, role or "", names, boolean(accept_downtime, strict=False))


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"rolling_restart_order": rolling_restart_order}
