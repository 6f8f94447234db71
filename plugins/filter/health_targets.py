# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ascend.vllm.container_health waits for, from the plan's server records."""

from __future__ import annotations

DOCUMENTATION = r"""
name: health_targets
short_description: The containers and health URLs of a host's vLLM servers
version_added: 0.2.0
description:
  - Turns server records of the plan (C(ascend_plan.hosts[inventory_hostname].servers), see
    docs/plan.md) into the C(containers) of M(ascend.vllm.container_health) - each container's
    name, its C(/health) URL on the node itself, and what it serves, for the messages (for
    example C(prefill0 rank 1, port 7001)).
options:
  _input:
    description: Server records of the plan (each with C(container.name) and C(port)).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Wait until the host's servers are healthy
  ascend.vllm.container_health:
    containers: "{{ ascend_plan.hosts[inventory_hostname].servers | ascend.vllm.health_targets }}"
"""

RETURN = r"""
_value:
  description: One C({name, url, what}) per record.
  type: list
  elements: dict
"""

from typing import Any, Dict, List, Mapping


def what(record: Mapping[str, Any]) -> str:
    """``prefill0 rank 1, port 7001``, ``single0, port 8000``: a server as operators name it."""
    owner = record.get("instance") or record.get("role") or "single"
    rank = "" if record.get("dp_rank") is None else f" rank {record['dp_rank']}"
    return f"{owner}{rank}, port {record['port']}"


def health_targets(records: List[Mapping[str, Any]]) -> List[Dict[str, str]]:
    return [
        {"name": r["container"]["name"], "url": f"http://127.0.0.1:{r['port']}/health", "what": what(r)}
        for r in records
    ]


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"health_targets": health_targets}
