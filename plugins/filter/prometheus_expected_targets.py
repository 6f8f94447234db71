# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ascend.vllm.prometheus_targets waits for, from the plan's monitoring record."""

from __future__ import annotations

DOCUMENTATION = r"""
name: prometheus_expected_targets
short_description: Every scrape target of the plan's monitoring record, flat
version_added: 0.2.0
description:
  - Turns the plan's C(monitoring) record (C(ascend_plan.monitoring), see docs/plan.md) into
    the C(targets) of M(ascend.vllm.prometheus_targets) - each target's job, C(address:port)
    and labels, in the record's order.
options:
  _input:
    description: The plan's monitoring record (its C(scrape) jobs).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Wait until Prometheus scrapes every target of the plan
  ascend.vllm.prometheus_targets:
    url: http://127.0.0.1:9090
    targets: "{{ ascend_plan.monitoring | ascend.vllm.prometheus_expected_targets }}"
"""

RETURN = r"""
_value:
  description: One C({job, target, labels}) per target.
  type: list
  elements: dict
"""

from typing import Any, Dict

from ansible_collections.ascend.vllm.plugins.module_utils.prometheus import expected_targets


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"prometheus_expected_targets": expected_targets}
