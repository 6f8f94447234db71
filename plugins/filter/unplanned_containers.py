# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Our containers on a host that the plan no longer runs."""

from __future__ import annotations

DOCUMENTATION = r"""
name: unplanned_containers
short_description: Our containers on a host that the plan does not run (scale in, teardown)
version_added: 0.2.0
description:
  - Our containers carry the label C(ascend.vllm.role) (C(prefill), C(decode), C(single) from the
    role C(vllm_server); C(proxy) from the role C(pd_proxy)); any other container is ignored.
  - Returns those of the input that the host's plan record does not name; every one of ours for a
    host the plan no longer has (C(none)), as after removing it from its groups, or for a teardown.
options:
  _input:
    description: The C(containers) of C(community.docker.docker_host_info) with C(verbose_output).
    type: list
    elements: dict
    required: true
  host_record:
    description: The plan's C(hosts.<name>) of this host, or C(none).
    type: dict
"""

EXAMPLES = r"""
- name: Our containers the plan no longer has
  ansible.builtin.set_fact:
    leftovers: >-
      {{ found.containers
         | ascend.vllm.unplanned_containers(ascend_plan.hosts[inventory_hostname] | default(none)) }}
"""

RETURN = r"""
_value:
  description: One C({name, role, what, state}) per container to remove, in name order.
  type: list
  elements: dict
"""

from typing import Any, Dict

from ansible_collections.ascend.vllm.plugins.module_utils.our_containers import unplanned


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"unplanned_containers": unplanned}
