#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done by the action plugin of the same name (plugins/action/summary.py), on the
# controller; this file documents it for ansible-doc.

from __future__ import annotations

DOCUMENTATION = r"""
module: summary
short_description: Print a deployment's closing summary table
version_added: 0.2.0
description:
  - Prints, once, one line per instance of the plan (role, hosts, chips, HTTP and kv ports, how
    many of its servers answered C(/health), what requests through the endpoint measured - the
    time to first token first) and one per PD proxy, then the endpoint URL(s). Used at the end
    of C(playbooks/verify.yml).
  - Runs on the controller; contacts no host; never reports a change.
options:
  plan:
    description: The plan (the fact C(ascend_plan) the role M(ascend.vllm.plan) publishes).
    type: dict
    required: true
  probes:
    description:
      - The loop results of M(ascend.vllm.endpoint_probe) over server records (each server's
        health, or the whole check for a single-node server) and over proxy records (the
        requests through the proxy); each result's C(item) is the record probed.
    type: list
    elements: dict
    default: []
  health:
    description:
      - Host -> the result of M(ascend.vllm.container_health) over that host's servers (a
        server it found healthy counts as healthy); hosts without one may map to null.
    type: dict
    default: {}
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  check_mode:
    support: full
    details: Prints the same in check mode; nothing is changed either way.
  diff_mode:
    support: none
    details: It changes nothing on any host.
  platform:
    support: full
    platforms: all
    details: Runs on the controller only; it contacts no host.
author:
  - ascend.vllm contributors (@ascend-vllm)
"""

EXAMPLES = r"""
- name: Print the summary
  ascend.vllm.summary:
    plan: "{{ ascend_plan }}"
    probes: "{{ server_probes.results + proxy_probes.results }}"
  run_once: true
"""

RETURN = r"""
lines:
  description: The lines printed.
  returned: always
  type: list
  elements: str
"""
