# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ascend.vllm.host_tuning tells the operator this host did not allow."""

from __future__ import annotations

DOCUMENTATION = r"""
name: host_tuning_warnings
short_description: The messages of what a host did not let the host_tuning role do
version_added: 0.2.0
description:
  - Turns the result of M(ascend.vllm.host_tuning_info) and the results of the role's write tasks
    into one message per thing the role C(ascend.vllm.host_tuning) could not do on the host, in
    the order of its tasks - kernel parameters persisted but not applied (read-only
    C(/proc/sys), or refused by the kernel), parameters this kernel lacks, debugfs scheduler
    parameters not set (file absent, read-only or refused), debugfs parameters or the CPU
    governor set but not persisted (no systemd), and a governor that cannot be set.
  - Sorts the inspection as P(ascend.vllm.host_tuning_findings#filter) does.
  - The role publishes the list as C(host_tuning_warnings) and shows it with M(ascend.vllm.warn).
positional: _input, sysctls, sysctl_file, cpu_governor, check_mode, sysctl_results, debugfs_results
options:
  _input:
    description: The result of M(ascend.vllm.host_tuning_info).
    type: dict
    required: true
  sysctls:
    description: The wanted kernel parameters, key to value; messages show each value as given here.
    type: dict
    required: true
  sysctl_file:
    description: The file that persists them.
    type: str
    required: true
  cpu_governor:
    description: The wanted CPU governor; empty or V(null) for none (no governor message).
    type: str
  check_mode:
    description: Whether the run is a check (C(ansible_check_mode)); the messages then say what would be done.
    type: bool
    default: false
  sysctl_results:
    description:
      - The registered result of the loop that sets the writable keys with M(ansible.posix.sysctl);
        an item with a C(msg) is a refusal, reported with it. V(null) if it did not run.
    type: dict
  debugfs_results:
    description:
      - The registered result of the loop that sets the debugfs files with a command; an item with
        a non-zero C(rc) is a refusal, reported with its C(stderr). V(null) if it did not run.
    type: dict
"""

EXAMPLES = r"""
- name: Publish what this host did not allow
  ansible.builtin.set_fact:
    host_tuning_warnings: >-
      {{ __host_tuning_info | ascend.vllm.host_tuning_warnings(
           sysctls=host_tuning_sysctls, sysctl_file=host_tuning_sysctl_file,
           cpu_governor=host_tuning_cpu_governor, check_mode=ansible_check_mode,
           sysctl_results=__host_tuning_sysctl_live | default(none),
           debugfs_results=__host_tuning_debugfs_live | default(none)) }}
"""

RETURN = r"""
_value:
  description: One message per finding; empty when the host allowed everything.
  type: list
  elements: str
  sample:
    - >-
      vm.swappiness=0 persisted in /etc/sysctl.d/90-ascend-vllm.conf but not applied now:
      /proc/sys/vm/swappiness is read-only here (a container, or a locked-down host); it takes
      effect at the next boot where /proc/sys is writable
"""

from typing import Any, Dict

from ansible_collections.ascend.vllm.plugins.module_utils.host_tuning import tuning_warnings


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"host_tuning_warnings": tuning_warnings}
