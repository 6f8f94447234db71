# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PD proxy configuration's instances, from the plan's backend records."""

from __future__ import annotations

DOCUMENTATION = r"""
name: pd_proxy_instances
short_description: The PD proxy configuration's instances of one phase, from the plan's backend records
version_added: 0.2.0
description:
  - Each rank's C(url) and C(name), and its C(group), the plan's instance (the DP group, as
    C(decode1)). The proxy serves a group whole or not at all, since the ranks of a group run every
    forward pass together; M(ascend.vllm.pd_proxy_backends) sends the same fields to the admin API.
options:
  _input:
    description: The plan's C(hosts.<proxy host>.proxy.prefill) or C(.decode).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: The decode instances of the proxy configuration
  ansible.builtin.set_fact:
    decode_instances: "{{ ascend_plan.hosts[inventory_hostname].proxy.decode | ascend.vllm.pd_proxy_instances }}"
"""

RETURN = r"""
_value:
  description: One C({url, name, group}) per rank, in the record's order.
  type: list
  elements: dict
"""

from typing import Any, Dict

from ansible_collections.ascend.vllm.plugins.module_utils.pd_proxy_backends import proxy_instances


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"pd_proxy_instances": proxy_instances}
