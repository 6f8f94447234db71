#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_tuning_info
short_description: Read a host's kernel parameters, debugfs scheduler files, cpufreq and boot units in one pass
version_added: 0.2.0
description:
  - Reads, in one module run, everything the role C(ascend.vllm.host_tuning) decides on, so
    that the role acts only on what differs and a re-run on a tuned host costs one module
    execution.
  - For each key of O(sysctls), its C(/proc/sys) file (whether it exists and is writable, the
    running value) and the value O(sysctl_file) persists for it, each compared with the wanted
    value the way M(ansible.posix.sysctl) compares them.
  - For each key of O(sysctls) that O(debugfs) maps to a file (the scheduler parameters Linux
    5.13 moved from sysctl to debugfs), that file (exists, writable, value).
  - cpufreq - whether CPU 0 has a C(scaling_governor) and it is writable, the governors its
    driver offers, every CPU's governor, and the CPUs not at O(cpu_governor).
  - Whether systemd is the service manager, the name of PID 1, the kernel release, and, for
    each unit of O(units), its file under C(/etc/systemd/system) (SHA-1, mode, owner, group)
    and whether it is enabled.
  - Read-only; never reports a change. A file that cannot be read is reported with a V(null)
    value, never as a failure.
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  sysctls:
    description:
      - Kernel parameters, key (dotted, as for C(sysctl)) to the wanted value.
      - A key's C(/proc/sys) file is the key with every C(.) replaced by C(/).
    type: dict
    default: {}
  sysctl_file:
    description:
      - The C(/etc/sysctl.d) file whose values RV(sysctls[].persisted) reports.
      - Without it, no key is reported as persisted.
    type: path
  debugfs:
    description:
      - Key of O(sysctls) to the debugfs file that holds it on kernels without the sysctl, for
        example C(kernel.sched_migration_cost_ns) to C(/sys/kernel/debug/sched/migration_cost_ns).
      - Only keys that are also in O(sysctls) are read.
    type: dict
    default: {}
  cpu_governor:
    description:
      - The governor wanted on every CPU; RV(cpufreq.to_change) lists the CPUs at another one.
      - Empty or unset, RV(cpufreq.to_change) is empty; cpufreq is still described.
    type: str
  units:
    description:
      - Names of systemd units whose files under C(/etc/systemd/system) are described in RV(units).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads; it reads the same in check mode.
  diff_mode:
    support: none
    details: The module changes nothing, so there is no difference to show.
  platform:
    support: full
    platforms: posix
    details: Linux (C(/proc/sys), C(/sys), systemd's C(/run/systemd/system)).
notes:
  - Needs root to read debugfs (C(/sys/kernel/debug) is mode 0700).
  - A file is writable when its mode and its mount allow it (C(access(2))); a kernel that still
    refuses the write (lockdown, a security module) shows only when it is written.
  - The comparisons follow M(ansible.posix.sysctl) 2.x; where they say a value differs that
    module still decides whether anything changes.
seealso:
  - module: ansible.posix.sysctl
"""

EXAMPLES = r"""
- name: Read what the tuning role decides on
  ascend.vllm.host_tuning_info:
    sysctls:
      vm.swappiness: 0
      kernel.sched_migration_cost_ns: 50000
    sysctl_file: /etc/sysctl.d/90-ascend-vllm.conf
    debugfs:
      kernel.sched_migration_cost_ns: /sys/kernel/debug/sched/migration_cost_ns
    cpu_governor: performance
    units:
      - ascend-vllm-cpu-governor.service
  register: tuning

- name: Keys whose running value is not the wanted one
  ansible.builtin.debug:
    msg: "{{ tuning.sysctls | selectattr('exists') | rejectattr('live_matches') | map(attribute='key') }}"

- name: CPUs not at the performance governor
  ansible.builtin.debug:
    msg: "{{ tuning.cpufreq.to_change }}"
"""

RETURN = r"""
kernel:
  description: The kernel release (C(/proc/sys/kernel/osrelease)); V(null) if unreadable.
  returned: always
  type: str
  sample: 6.8.0-49-generic
systemd:
  description:
    - Whether systemd manages the host - PID 1 is C(systemd), or it is C(init) or unreadable and
      C(/run/systemd/system) is a directory (the test of sd_booted(3)).
  returned: always
  type: bool
  sample: true
service_manager:
  description: The name of PID 1 (C(/proc/1/comm)), the service manager; V(null) if unreadable.
  returned: always
  type: str
  sample: systemd
sysctl_file:
  description: O(sysctl_file) and whether it exists.
  returned: always
  type: dict
  contains:
    path:
      description: O(sysctl_file).
      type: str
      sample: /etc/sysctl.d/90-ascend-vllm.conf
    exists:
      description: Whether it exists.
      type: bool
      sample: true
sysctls:
  description: One entry per key of O(sysctls), in its order.
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: The key.
      type: str
      sample: vm.swappiness
    value:
      description:
        - The wanted value as M(ansible.posix.sysctl) writes it.
        - Booleans and their words as C(1) or C(0), anything else stripped.
      type: str
      sample: "0"
    path:
      description: The key's C(/proc/sys) file.
      type: str
      sample: /proc/sys/vm/swappiness
    exists:
      description: Whether this kernel has the key.
      type: bool
      sample: true
    writable:
      description: Whether the file may be written (mode and mount; V(false) on a read-only C(/proc/sys)).
      type: bool
      sample: false
    live:
      description: The running value, stripped; V(null) when absent or unreadable.
      type: str
      sample: "60"
    live_matches:
      description: Whether the running value has the same words as RV(sysctls[].value).
      type: bool
      sample: false
    persisted:
      description: The value O(sysctl_file) sets for the key (its last line for it); V(null) when none.
      type: str
      sample: "0"
    persisted_matches:
      description: Whether RV(sysctls[].persisted) is RV(sysctls[].value).
      type: bool
      sample: true
debugfs:
  description: One entry per key of O(sysctls) that O(debugfs) maps to a file, in the order of O(sysctls).
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: The key.
      type: str
      sample: kernel.sched_migration_cost_ns
    value:
      description: The wanted value, as text.
      type: str
      sample: "50000"
    path:
      description: The debugfs file.
      type: str
      sample: /sys/kernel/debug/sched/migration_cost_ns
    exists:
      description: Whether the file exists (debugfs mounted, a kernel that has it).
      type: bool
      sample: true
    writable:
      description: Whether the file may be written (mode and mount).
      type: bool
      sample: true
    current:
      description: Its value without trailing newlines; V(null) when absent or unreadable.
      type: str
      sample: "500000"
    matches:
      description: Whether RV(debugfs[].current) is RV(debugfs[].value).
      type: bool
      sample: false
cpufreq:
  description: CPU frequency scaling.
  returned: always
  type: dict
  contains:
    path:
      description: CPU 0's cpufreq directory.
      type: str
      sample: /sys/devices/system/cpu/cpu0/cpufreq
    present:
      description: Whether CPU 0 has a C(scaling_governor) (none in most VMs and containers).
      type: bool
      sample: true
    writable:
      description: Whether CPU 0's C(scaling_governor) may be written.
      type: bool
      sample: true
    governors:
      description: The governors CPU 0's driver offers (C(scaling_available_governors)).
      type: list
      elements: str
      sample: [performance, powersave]
    current:
      description: Each CPU's governor, by CPU number; V(null) for one that cannot be read.
      type: dict
      sample: {cpu0: powersave, cpu1: performance}
    to_change:
      description: The CPUs whose governor is not O(cpu_governor), by number.
      type: list
      elements: str
      sample: [cpu0]
units:
  description: Unit name to its file under C(/etc/systemd/system), for each of O(units).
  returned: always
  type: dict
  sample:
    ascend-vllm-cpu-governor.service:
      path: /etc/systemd/system/ascend-vllm-cpu-governor.service
      exists: true
      checksum: a4b6e83136cdc31b5ab3fd102113a0855d5ed8c7
      mode: "0644"
      owner: root
      group: root
      enabled: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend.vllm.plugins.module_utils.host_tuning import inspect

# Where the host's file systems start. The unit tests point it at a fake tree.
ROOT = "/"


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            sysctls=dict(type="dict", default={}),
            sysctl_file=dict(type="path"),
            debugfs=dict(type="dict", default={}),
            cpu_governor=dict(type="str"),
            units=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    found = inspect(
        ROOT,
        sysctls=params["sysctls"],
        sysctl_file=params["sysctl_file"],
        debugfs=params["debugfs"],
        cpu_governor=params["cpu_governor"],
        units=params["units"],
    )
    module.exit_json(changed=False, **found)


if __name__ == "__main__":
    main()
