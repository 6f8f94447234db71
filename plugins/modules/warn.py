# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done on the controller by the action plugin
# plugins/action/warn.py (as ansible.builtin.debug does it).

from __future__ import annotations

DOCUMENTATION = r"""
module: warn
short_description: Show messages as Ansible warnings
version_added: 0.1.0
description:
  - Shows each message of O(msg) as an Ansible warning - the C([WARNING]) line that
    C(ansible-playbook), AWX and the other callbacks already treat as a warning - instead of
    the task output of M(ansible.builtin.debug), which reads like any other result.
  - Never reports a change, and fails only when O(msg) is not a string or a list of strings.
    With no message (an empty list, or only blank strings) the task is skipped, so a list of
    findings can be passed as it is.
  - Runs on the controller and does not connect to the host.
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  msg:
    description:
      - The message, or a list of messages, one warning each.
      - Empty (or blank) strings are left out.
      - Elements that are not strings (numbers, dicts) fail the task rather than being shown as
        something other than what was meant.
    type: raw
    required: true
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  check_mode:
    support: full
    details: The warnings are shown in check mode too; nothing is changed either way.
  diff_mode:
    support: none
    details: Nothing is changed, so there is no difference to show.
  platform:
    support: full
    platforms: all
    details: Runs on the controller only; the host's OS does not matter.
notes:
  - Ansible shows an identical warning only once per run. When the same message can come from
    several hosts, put the host's name in it (see the examples) so that no host's is lost.
  - A warning does not change the play's outcome or the recap's counts; a check that must
    stop the play is M(ansible.builtin.assert) or M(ansible.builtin.fail).
seealso:
  - module: ansible.builtin.debug
  - module: ansible.builtin.assert
"""

EXAMPLES = r"""
- name: Warn once
  ascend.vllm.warn:
    msg: The NPU driver is older than the image expects

- name: Warn about each finding, naming the host (skipped when there is none)
  ascend.vllm.warn:
    msg: "{{ findings | map('regex_replace', '^', inventory_hostname ~ ': ') }}"
"""

RETURN = r"""
messages:
  description: The messages shown as warnings, in order (empty strings left out).
  returned: always
  type: list
  elements: str
  sample:
    - "ascend-node1: kernel.sched_migration_cost_ns is not set"
"""
