# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ascend.vllm.host_tuning acts on, sorted from its one inspection of the host."""

from __future__ import annotations

DOCUMENTATION = r"""
name: host_tuning_findings
short_description: Sort what host_tuning_info found the way the host_tuning role acts on it
version_added: 0.2.0
description:
  - Sorts the result of M(ascend.vllm.host_tuning_info) into what the role
    C(ascend.vllm.host_tuning) acts on - the keys to set now, the keys it can only persist, the
    debugfs files to set, whether the governor can be set - and, once the role's write tasks have
    run, what the kernel refused to them.
  - The same sorting makes the messages of P(ascend.vllm.host_tuning_warnings#filter).
positional: _input, cpu_governor, sysctl_results, debugfs_results
options:
  _input:
    description: The result of M(ascend.vllm.host_tuning_info).
    type: dict
    required: true
  cpu_governor:
    description: The wanted CPU governor; empty or V(null) for none.
    type: str
  sysctl_results:
    description:
      - The registered result of the loop that sets the writable keys with M(ansible.posix.sysctl),
        with a C(failed_when) that lets the kernel's refusals through; V(null) before it runs.
      - An item with a C(msg) is a refusal.
    type: dict
  debugfs_results:
    description:
      - The registered result of the loop that sets the debugfs files with a command, with a
        C(failed_when) that lets the kernel's refusals through; V(null) before it runs.
      - An item with a non-zero C(rc) is a refusal.
    type: dict
"""

EXAMPLES = r"""
- name: Apply the kernel parameters that /proc/sys lets us write
  ansible.posix.sysctl:
    name: "{{ item.key }}"
    value: "{{ host_tuning_sysctls[item.key] | string }}"
  loop: "{{ (__host_tuning_info | ascend.vllm.host_tuning_findings).sysctl_writable }}"
"""

RETURN = r"""
_value:
  description: The records of the inspection (and the refused loop items), sorted.
  type: dict
  contains:
    sysctl_present:
      description: Records of RV(ascend.vllm.host_tuning_info#module:sysctls) whose key this kernel has.
      type: list
      elements: dict
    sysctl_writable:
      description: The present keys whose C(/proc/sys) file is writable.
      type: list
      elements: dict
    sysctl_readonly:
      description: The present keys whose C(/proc/sys) file is read-only.
      type: list
      elements: dict
    sysctl_refused:
      description: The items of O(sysctl_results) the kernel refused.
      type: list
      elements: dict
    sysctl_unapplied:
      description: The records of the keys to persist without applying - read-only, then refused.
      type: list
      elements: dict
    sysctl_missing:
      description: The records of keys this kernel lacks that have no debugfs file to fall back to.
      type: list
      elements: dict
    debugfs:
      description: Records of RV(ascend.vllm.host_tuning_info#module:debugfs) whose key has no sysctl here.
      type: list
      elements: dict
    debugfs_writable:
      description: Of those, the files that exist and are writable.
      type: list
      elements: dict
    debugfs_refused:
      description: The items of O(debugfs_results) the kernel refused.
      type: list
      elements: dict
    debugfs_set:
      description: The writable debugfs files the kernel did not refuse - what the boot unit sets.
      type: list
      elements: dict
    governor_ok:
      description: Whether cpufreq is present, writable and offers O(cpu_governor).
      type: bool
"""

from typing import Any, Dict

from ansible_collections.ascend.vllm.plugins.module_utils.host_tuning import findings


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"host_tuning_findings": findings}
