# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The keys of the inventory as the playbooks pass them: the proxy's inbound keys as a list, and
the key a client presents to the plan's endpoint (one definition for verify, benchmark and
evaluate)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: endpoint_api_key
short_description: The API key a client of the plan's endpoint sends
version_added: 0.2.0
description:
  - The plan (C(ascend_plan), docs/plan.md) records only whether its endpoint requires a key
    (C(auth)); the keys come from the inventory. A PD endpoint is the proxy, which takes any of
    C(ascend_proxy_api_keys) (the first is used); a single-node endpoint is the server itself,
    which takes C(ascend_vllm_api_key). An empty string when the endpoint requires no key.
  - Tasks that send the result must be C(no_log) when it is not empty.
options:
  _input:
    description: The plan.
    type: dict
    required: true
  vllm_api_key:
    description: C(ascend_vllm_api_key).
    type: str
    required: true
  proxy_api_keys:
    description: C(ascend_proxy_api_keys) (a list, or one key as a string).
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Benchmark the endpoint
  ansible.builtin.include_role:
    name: ascend.vllm.benchmark
  vars:
    benchmark_api_key: >-
      {{ ascend_plan | ascend.vllm.endpoint_api_key(ascend_vllm_api_key | default(''),
                                                    ascend_proxy_api_keys | default([])) }}
"""

RETURN = r"""
_value:
  description: The key, or an empty string.
  type: str
"""

from typing import Any, Dict, List, Mapping

from ansible_collections.ascend.vllm.plugins.module_utils.plan_auth import key_list


def api_keys(value: Any) -> List[str]:
    """``ascend_proxy_api_keys`` as the list the proxy takes (a string is one key); the plan has
    validated it."""
    return [str(key) for key in key_list(value)]


def endpoint_api_key(plan: Mapping[str, Any], vllm_api_key: Any, proxy_api_keys: Any) -> str:
    if plan.get("mode") == "pd":
        keys = api_keys(proxy_api_keys)
        return keys[0] if keys else ""
    return str(vllm_api_key or "")


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"endpoint_api_key": endpoint_api_key, "api_keys": api_keys}
