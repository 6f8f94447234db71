#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: prometheus_targets
short_description: Wait until Prometheus scrapes every expected target successfully, showing progress
version_added: 0.2.0
description:
  - Polls C(GET /api/v1/targets) of the Prometheus at O(url) every O(delay) seconds until each of
    O(targets) is among its active targets with health C(up), for example right after the role
    C(ascend.vllm.monitoring) wrote a new scrape configuration and reloaded Prometheus.
  - An action plugin on the controller calls the module in rounds of O(report_interval)
    seconds and between two rounds prints one progress line (how many targets are up, and each
    one that is not, with Prometheus's last scrape error), to the controller's stderr.
  - At O(timeout) seconds the task fails with one message naming the host, the Prometheus URL
    and every target not up - its job, the plan's instance, rank, container and host, its
    address, its health (C(down), C(unknown) when not scraped yet, C(missing) when Prometheus
    does not scrape it at all) and the last scrape error.
  - Read-only; never reports a change.
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  url:
    description:
      - Base URL of Prometheus as seen from the host, for example V(http://127.0.0.1:9090). It is
        requested directly, never through a proxy of the environment.
    type: str
    required: true
  targets:
    description:
      - The targets Prometheus must scrape, as the plan's C(monitoring.scrape) jobs list them,
        each C({job, target, labels}) (C(target) being C(address:port)). The filter
        C(ascend.vllm.prometheus_expected_targets) makes this list from the plan's record.
    type: list
    elements: dict
    required: true
  timeout:
    description:
      - Seconds until a target not up fails the task.
    type: float
    default: 120
  delay:
    description:
      - Seconds between two requests to Prometheus.
    type: float
    default: 2
  report_interval:
    description:
      - Seconds between two progress lines (the length of one round of the module).
    type: float
    default: 10
  round_seconds:
    description:
      - How long one call of the module polls; the action plugin sets it from O(report_interval).
    type: float
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  action:
    description: Has a corresponding action plugin, so some of the work runs on the controller.
    support: full
    details:
      - The action plugin calls the module in rounds, prints the progress lines and fails
        with the message; the module polls Prometheus on the host.
  check_mode:
    support: full
    details:
      - Asks Prometheus once and waits for nothing.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
seealso:
  - module: ascend.vllm.container_health
"""

EXAMPLES = r"""
- name: Wait until Prometheus scrapes every target of the plan
  ascend.vllm.prometheus_targets:
    url: http://127.0.0.1:9090
    targets: "{{ ascend_plan.monitoring | ascend.vllm.prometheus_expected_targets }}"
    timeout: 120
"""

RETURN = r"""
targets:
  description:
    - Each expected target with C(health) (C(up), C(down), C(unknown), C(missing)) and
      C(error), Prometheus's last scrape error.
  returned: always
  type: list
  elements: dict
up:
  description: Whether every target was up.
  returned: always
  type: bool
"""

import json
import time
from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.ascend.vllm.plugins.module_utils.prometheus import (
    TARGETS_ARGUMENT_SPEC,
    UNKNOWN,
    UP,
    target_states,
)


def poll(url: str, targets: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    try:
        with open_url(url.rstrip("/") + "/api/v1/targets?state=active", timeout=10, use_proxy=False) as answer:
            data = json.loads(answer.read())
    except Exception as exc:  # Prometheus starting, or reloading: every target is unknown
        return [{**t, "health": UNKNOWN, "error": f"Prometheus at {url} does not answer: {exc}"} for t in targets]
    return target_states(data, targets)


def main() -> None:
    module = AnsibleModule(argument_spec=TARGETS_ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    rounds = 0.0 if module.check_mode else params["round_seconds"] or params["timeout"]
    deadline = time.monotonic() + rounds
    while True:
        states = poll(params["url"], params["targets"])
        up = all(s["health"] == UP for s in states)
        if up or time.monotonic() + params["delay"] > deadline:
            break
        time.sleep(params["delay"])
    module.exit_json(changed=False, targets=states, up=up)


if __name__ == "__main__":
    main()
