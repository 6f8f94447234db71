#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: npu_smi_info
short_description: Read the Ascend NPU chips and their processes from C(npu-smi info)
version_added: 0.1.0
description:
  - Runs C(npu-smi info) and returns one entry per chip (health, power, temperature, AI Core
    usage, HBM usage, PCIe bus id), one entry per process holding a chip, the npu-smi and
    driver versions, and a summary of unhealthy and busy chips.
  - Reads the classic table of npu-smi 23.x to 25.x on Atlas 800I A2 (one C(910B*) chip per
    NPU) and Atlas 800 A3 (two C(Ascend910) dies per NPU, with a Phy-ID column), and the wider
    table of npu-smi 26.x whose process table has a C(Process id in container) column.
  - Read-only; never reports a change. Optional checks fail the task naming each offending
    chip, with the parsed facts in the failure result too.
  - Fails showing npu-smi's return code and output when it exits non-zero (for example
    C(dcmi module initialize failed. ret is -8005) in a container without the NPU devices),
    and names the line number and text of any table line it cannot read; it never skips a
    chip or process row it does not understand.
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  npu_smi_path:
    description:
      - Path of the C(npu-smi) binary.
      - A bare name is looked up in E(PATH), then in C(/usr/local/bin) (where the Ascend
        driver installs it, and which a non-login E(PATH) may lack).
    type: str
    default: npu-smi
  min_chips:
    description:
      - Fail unless npu-smi lists at least this many chips (V(8) on an Atlas 800I A2, V(16) on
        an Atlas 800 A3).
    type: int
  expected_chips:
    description:
      - Chip indexes that must be listed; O(require_healthy) and O(require_no_processes) then
        look at these chips only.
      - A chip's index is its position in npu-smi's chip table, counting from V(0). On a host
        where every chip is visible this is the logical device id (C(npu-smi info -m)) that
        E(ASCEND_RT_VISIBLE_DEVICES) and vLLM use, for example V(0) to V(15) on an A3.
    type: list
    elements: int
  require_healthy:
    description:
      - Fail unless every chip (of O(expected_chips), if given) reports C(OK) health.
        C(Warning), C(Alarm), C(Critical), C(UNKNOWN) and any other value fail.
    type: bool
    default: false
  require_no_processes:
    description:
      - Fail if any process holds a chip (of O(expected_chips), if given), naming the chip, the
        pid, the process name and its memory, for example before starting a vLLM instance on
        chips that must be free.
    type: bool
    default: false
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads; it runs the same query and checks in check mode.
  diff_mode:
    support: none
    details: The module changes nothing, so there is no difference to show.
  platform:
    support: full
    platforms: posix
    details: Linux hosts with the Ascend NPU driver (C(npu-smi)), or containers with its devices and libraries mounted.
notes:
  - Needs the permissions npu-smi needs, usually root. In a container, the NPU device files
    (C(/dev/davinci*), C(/dev/davinci_manager), C(/dev/hisi_hdc), C(/dev/devmm_svm)) and the
    driver libraries must be mounted, otherwise npu-smi fails with C(ret is -8005).
  - Values npu-smi does not print are V(null) - the power of an A3's second die (printed
    C(-)), the Phy-ID on an A2. Temperature, AI Core and HBM must be numbers; a chip row
    without them fails the task rather than being guessed at.
  - Atlas 300I / 310 series cards (no HBM-Usage column) are not supported.
  - A process started in a container may show an empty RV(processes[].name).
seealso:
  - name: vLLM-Ascend installation (check the NPUs with npu-smi info)
    description: The check this module automates before a deployment.
    link: https://docs.vllm.ai/projects/ascend/en/latest/installation.html
"""

EXAMPLES = r"""
- name: Read the NPU chips
  ascend.vllm.npu_smi_info:
  register: npu

- name: Gate a deployment on 16 healthy, idle A3 chips
  ascend.vllm.npu_smi_info:
    min_chips: 16
    require_healthy: true
    require_no_processes: true

- name: Only chips 0-7 must be healthy and free (the others serve another instance)
  ascend.vllm.npu_smi_info:
    expected_chips: [0, 1, 2, 3, 4, 5, 6, 7]
    require_healthy: true
    require_no_processes: true

- name: Use npu-smi from a non-standard location
  ascend.vllm.npu_smi_info:
    npu_smi_path: /usr/local/Ascend/driver/tools/npu-smi

- name: Show the chips that are not OK
  ansible.builtin.debug:
    msg: "{{ npu.summary.unhealthy_chips }}"

- name: HBM in use on each chip, in MB
  ansible.builtin.debug:
    msg: "{{ npu.chips | map(attribute='hbm_used_mb') | list }}"
"""

RETURN = r"""
chips:
  description: One entry per chip, in the order npu-smi lists them (so the list index is the chip index).
  returned: success, and in the failure result of a check
  type: list
  elements: dict
  contains:
    npu:
      description: The NPU (card) id, C(npu-smi -i).
      type: int
      sample: 0
    chip:
      description: The chip id on that NPU, C(npu-smi -c); V(0) and V(1) on an A3.
      type: int
      sample: 1
    phy_id:
      description: The chip's physical id; V(null) where npu-smi prints none (Atlas 800I A2).
      type: int
      sample: 1
    name:
      description: The chip name as printed.
      type: str
      sample: Ascend910
    health:
      description: The health as printed; C(OK) is healthy.
      type: str
      sample: OK
    power_w:
      description: Power in watts; V(null) where npu-smi prints C(-) (an A3's second die).
      type: float
      sample: 178.5
    temp_c:
      description: Temperature in degrees Celsius.
      type: int
      sample: 36
    aicore_pct:
      description: AI Core usage in percent.
      type: int
      sample: 0
    hbm_used_mb:
      description: HBM in use, in MB.
      type: int
      sample: 3416
    hbm_total_mb:
      description: HBM size, in MB.
      type: int
      sample: 65536
    bus_id:
      description: The PCIe bus id as printed.
      type: str
      sample: "0000:9D:00.0"
processes:
  description: One entry per process row of the process table, in the order printed.
  returned: success, and in the failure result of a check
  type: list
  elements: dict
  contains:
    npu:
      description: The NPU id.
      type: int
      sample: 0
    chip:
      description: The chip id on that NPU; V(null) when the row names only the NPU.
      type: int
      sample: 0
    pid:
      description: The process id (a host pid).
      type: int
      sample: 1774110
    name:
      description: The process name; empty when npu-smi cannot see it (a process in another container).
      type: str
      sample: python3
    memory_mb:
      description: Device memory the process holds, in MB.
      type: int
      sample: 56684
npu_smi_version:
  description: The npu-smi version of the table header.
  returned: success, and in the failure result of a check
  type: str
  sample: 25.2.3
driver_version:
  description: The C(Version:) of the table header (the driver version); V(null) when not printed.
  returned: success, and in the failure result of a check
  type: str
  sample: 25.2.3
summary:
  description: What stands out across all chips, whether or not a check was asked for.
  returned: success, and in the failure result of a check
  type: dict
  contains:
    chip_count:
      description: Number of chips listed.
      type: int
      sample: 16
    npu_count:
      description: Number of NPUs (cards) listed.
      type: int
      sample: 8
    process_count:
      description: Number of process rows.
      type: int
      sample: 2
    unhealthy_chips:
      description: The chips whose health is not C(OK).
      type: list
      elements: dict
      sample: [{index: 5, npu: 2, chip: 1, health: Warning}]
      contains:
        index:
          description: The chip index (position in RV(chips)).
          type: int
        npu:
          description: The NPU id.
          type: int
        chip:
          description: The chip id on that NPU.
          type: int
        health:
          description: The health as printed.
          type: str
    busy_chips:
      description: The chips that at least one process holds.
      type: list
      elements: dict
      sample: [{index: 0, npu: 0, chip: 0, pids: [1774110], memory_mb: 56684}]
      contains:
        index:
          description: The chip index (position in RV(chips)).
          type: int
        npu:
          description: The NPU id.
          type: int
        chip:
          description: The chip id on that NPU.
          type: int
        pids:
          description: The pids holding the chip, sorted.
          type: list
          elements: int
        memory_mb:
          description: Device memory those processes hold, in MB.
          type: int
problems:
  description: One line per failed check, naming the chip (and the process holding it).
  returned: when a check fails
  type: list
  elements: str
  sample:
    - "npu 2 chip 1 (index 5): health Warning"
    - "npu 0 chip 0 (index 0): held by pid 1774110 'python3' using 56684 MB"
cmd:
  description: The command run.
  returned: when npu-smi fails or its output cannot be read
  type: str
  sample: /usr/local/bin/npu-smi info
rc:
  description: The return code of npu-smi.
  returned: when npu-smi fails or its output cannot be read
  type: int
  sample: 255
stdout:
  description: What npu-smi printed.
  returned: when npu-smi fails or its output cannot be read
  type: str
stderr:
  description: What npu-smi printed on standard error.
  returned: when npu-smi fails or its output cannot be read
  type: str
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend.vllm.plugins.module_utils.npu_smi import (
    NpuSmiCommandError,
    read_npu_smi_info,
    run_checks,
    summarize,
)
from ansible_collections.ascend.vllm.plugins.module_utils.tools import find_tool, reading_run


def _validate(module: AnsibleModule) -> None:
    params = module.params
    if params["min_chips"] is not None and params["min_chips"] < 0:
        module.fail_json(msg=f"min_chips must be 0 or more, got {params['min_chips']}")
    negative = [i for i in params["expected_chips"] or [] if i < 0]
    if negative:
        module.fail_json(msg=f"expected_chips are chip indexes (0 or more), got {negative}")


def _read(module: AnsibleModule, tool: str) -> Dict[str, Any]:
    try:
        return read_npu_smi_info(reading_run(module), tool)
    except NpuSmiCommandError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    return {}  # not reached: fail_json exits


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            npu_smi_path=dict(type="str", default="npu-smi"),
            min_chips=dict(type="int"),
            expected_chips=dict(type="list", elements="int"),
            require_healthy=dict(type="bool", default=False),
            require_no_processes=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    _validate(module)
    params = module.params
    parsed = _read(module, find_tool(module, params["npu_smi_path"], "npu_smi_path", "npu-smi"))
    facts = dict(parsed, summary=summarize(parsed["chips"], parsed["processes"]))

    problems = run_checks(
        parsed,
        min_chips=params["min_chips"],
        require_healthy=params["require_healthy"],
        require_no_processes=params["require_no_processes"],
        expected_chips=params["expected_chips"],
    )
    if problems:
        module.fail_json(msg="; ".join(problems), problems=problems, **facts)

    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
