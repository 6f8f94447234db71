#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done by the action plugin of the same name (plugins/action/plan.py), on the
# controller; this file documents it for ansible-doc.

from __future__ import annotations

DOCUMENTATION = r"""
module: plan
short_description: Compute the vLLM-Ascend deployment plan from the inventory and the catalogue
version_added: 0.2.0
description:
  - Turns the inventory's choices (each host's C(ascend_*) variables and the groups C(single),
    C(prefill), C(decode), C(proxy)) and the catalogue shipped with the collection (models,
    recipes per vLLM-Ascend version, defaults) into the deployment plan, schema
    C(ascend.vllm/plan) version 1 (docs/plan.md) - every instance, and per host every server with
    its chips, ports, environment, complete C(vllm serve) argv and container, the PD proxy, the
    network and host tuning.
  - Validates everything first. On any problem it fails with all of them, each naming the host
    (or group) and the variable to change; nothing on any host has been touched at that point.
    Doubtful but valid choices are Ansible warnings.
  - Prints the plan once (the chosen recipe and why, the image, the endpoint, one line per
    server) and writes C(plan.json) and C(serve-commands.txt) to O(dir) when they differ.
  - Runs on the controller only; it contacts no host. Use it once per play with C(run_once),
    as the role C(ascend.vllm.plan) does; the plan then becomes the fact C(ascend_plan) of every
    host of the play.
options:
  dir:
    description:
      - Directory for C(plan.json) and C(serve-commands.txt); relative to the directory
        C(ansible-playbook) was started in. Empty writes nothing.
    type: str
    default: plan-out
  require_mode:
    description: Fail unless the chosen scenario is of this mode.
    type: str
    choices: [single, pd]
  require_shape:
    description:
      - Fail unless the scenario has this many instances per role, for example
        C(prefill=1) and C(decode=2) as a dict. An instance is one PD data-parallel group.
    type: dict
  purpose:
    description: What deploys the plan, for the messages of O(require_mode) and O(require_shape).
    type: str
    default: this playbook
  show:
    description: Print the plan.
    type: bool
    default: true
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  check_mode:
    support: full
    details: In check mode the files are not written; changed says whether they would change.
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
- name: Compute, show and write the plan once for the play
  ascend.vllm.plan:
    dir: plan-out
    require_mode: pd
    require_shape: {prefill: 1, decode: 1}
    purpose: playbooks/pd_1p1d.yml
  run_once: true
  register: plan
"""

RETURN = r"""
published:
  description:
    - Whether the action published the plan itself as the ephemeral fact C(ascend_plan) of the
      task's hosts (ansible-core 2.19 and later). Otherwise the plan is returned in RV(plan) for a
      C(set_fact) to publish.
  returned: success
  type: bool
plan:
  description: The plan document (docs/plan.md).
  returned: success, when RV(published) is false
  type: dict
  contains:
    schema:
      description: V(ascend.vllm/plan).
      type: str
    schema_version:
      description: V(1).
      type: int
    scenario:
      description: The chosen scenario.
      type: str
    mode:
      description: V(single) or V(pd).
      type: str
    instances:
      description: One per instance (a single-node server, or a PD data-parallel group).
      type: list
      elements: dict
    hosts:
      description: Per host, its servers, proxy, ports, network and tuning.
      type: dict
table:
  description: The plan as the fixed-width lines it prints.
  returned: success
  type: list
  elements: str
errors:
  description: Every problem found, each naming the host and the variable.
  returned: failure
  type: list
  elements: str
"""
