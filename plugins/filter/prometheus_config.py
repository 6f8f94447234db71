# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""prometheus.yml from the plan's monitoring record."""

from __future__ import annotations

DOCUMENTATION = r"""
name: prometheus_config
short_description: The Prometheus configuration that scrapes every target of the plan
version_added: 0.2.0
description:
  - Turns the plan's C(monitoring) record (C(ascend_plan.monitoring), see docs/plan.md) into
    the document of C(prometheus.yml) - the global intervals, the rule files, and one scrape job
    per job of the record (C(vllm), C(pd_proxy), C(node)) with one static config per target,
    carrying the plan's labels (C(instance), C(role), C(rank), C(host), C(server)).
options:
  _input:
    description: The plan's monitoring record (its C(scrape) jobs).
    type: dict
    required: true
  rule_files:
    description: Absolute paths of the rule files Prometheus loads.
    type: list
    elements: str
    required: true
  scrape_interval:
    description: How often every target is scraped (a Prometheus duration).
    type: str
    required: true
  scrape_timeout:
    description: How long one scrape may take.
    type: str
    required: true
  evaluation_interval:
    description: How often the rules are evaluated.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Write prometheus.yml
  ansible.builtin.copy:
    content: >-
      {{ ascend_plan.monitoring | ascend.vllm.prometheus_config(['/etc/prometheus/ascend-vllm/ascend-vllm.rules.yml'],
         '15s', '10s', '15s') | to_nice_yaml(indent=2) }}
    dest: /etc/prometheus/prometheus.yml
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The C(prometheus.yml) document.
  type: dict
"""

from typing import Any, Dict

from ansible_collections.ascend.vllm.plugins.module_utils.prometheus import prometheus_config


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"prometheus_config": prometheus_config}
