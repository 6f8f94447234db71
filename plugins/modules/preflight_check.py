#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The documentation of the action plugin plugins/action/preflight_check.py, which runs on the
# controller (and runs ascend.vllm.hccn_info on the host for the fabric pings).

from __future__ import annotations

DOCUMENTATION = r"""
module: preflight_check
short_description: Judge a vLLM host against its plan records and fail once, listing every problem
version_added: 0.1.0
description:
  - Takes the facts M(ascend.vllm.preflight_facts) read on this host (registered in the
    variable O(facts_var)) and the same plan records, and fails once if anything is wrong,
    with one line per problem, each naming the host and the chip, device, port, path, NIC or
    variable. The problems are those of the role C(ascend.vllm.preflight) - see its
    documentation (C(ansible-doc -t role ascend.vllm.preflight)).
  - On a prefill/decode host (O(network) not empty) it also pings, with
    M(ascend.vllm.hccn_info) on the host, device N of each of the C(fabric_peers) of
    O(network) from device N of this host. The peers' device IPs come from their own facts, read by the same
    M(ascend.vllm.preflight_facts) task earlier in the play (C(hostvars[peer][facts_var])); a
    peer without them (outside the play) is a problem.
  - A container of ours that is already running (a re-run) owns its ports and chips - their
    listeners and processes are not conflicts.
  - With neither O(servers) nor O(ports) there is nothing to check; it warns and passes.
  - Runs on the controller, apart from the pings. Never reports a change; the same in check mode.
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  facts_var:
    description:
      - Name of the variable that holds the result of M(ascend.vllm.preflight_facts), on this
        host and on its fabric peers.
    type: str
    required: true
  servers:
    description: The plan's server records on this host, as given to M(ascend.vllm.preflight_facts).
    type: list
    elements: dict
    default: []
  ports:
    description: The TCP port ranges this host will bind, as given to M(ascend.vllm.preflight_facts).
    type: list
    elements: dict
    default: []
  network:
    description:
      - The NPU network of a prefill/decode host, as given to M(ascend.vllm.preflight_facts);
        empty on a single-node host.
      - A host with prefill or decode servers and an empty O(network) is a problem.
    type: dict
    default: {}
  min_driver_version:
    description:
      - Oldest acceptable NPU driver version; V("") skips the check. Compared on the leading
        numeric part (C(25.2.0) of C(25.2.0.rc1)).
    type: str
    default: "23.0.0"
  driver_version_file:
    description: The driver's C(version.info), named in the problem when no version is found.
    type: str
    default: /usr/local/Ascend/driver/version.info
  image_must_exist:
    description: An absent image is a problem (else it is only reported in the summary).
    type: bool
    default: false
  disk_paths:
    description: The paths whose free space must be at least O(min_free_disk_gb).
    type: list
    elements: str
    default: []
  min_free_disk_gb:
    description: Free space each of O(disk_paths) needs, in GiB; V(0) skips the check.
    type: float
    default: 50
  hccn_tool_path:
    description: Path of C(hccn_tool) on the host, for the pings.
    type: str
    default: /usr/local/Ascend/driver/tools/hccn_tool
attributes:
  action:
    description:
      - Indicates this has a corresponding action plugin so some parts of the options can be
        executed on the controller.
    support: full
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: It only reads; the pings run in check mode too.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
seealso:
  - module: ascend.vllm.preflight_facts
  - module: ascend.vllm.hccn_info
"""

EXAMPLES = r"""
- name: Read the host
  ascend.vllm.preflight_facts:
    servers: "{{ my_servers }}"
    ports: "{{ my_ports }}"
    network: "{{ my_network }}"
    disk_paths: [/var/lib/docker]
  register: my_preflight_facts

- name: Fail once, listing every problem
  ascend.vllm.preflight_check:
    facts_var: my_preflight_facts
    servers: "{{ my_servers }}"
    ports: "{{ my_ports }}"
    network: "{{ my_network }}"
    disk_paths: [/var/lib/docker]
    min_free_disk_gb: 50
"""

RETURN = r"""
problems:
  description: One line per problem, each starting with the host name.
  returned: always
  type: list
  elements: str
  sample:
    - "a3-node1: npu 0 chip 1 (index 1): health Critical (chip of vllm-prefill0-dp0)"
    - "a3-node1: port 7000 (HTTP port of vllm-prefill0-dp0, ascend_http_port) is already in use by another process
      (listening on 0.0.0.0)"
    - "a3-node1: device 3: ping 10.20.2.13 (device 3 of a3-node2) failed (3 sent, 0 received)"
msg:
  description:
    - "On failure, a list - the line C(preflight: N problem(s) on HOST), then RV(problems)."
    - On success, one line on what was checked (servers, chips, what runs already, absent images, pings).
  returned: always
  type: raw
pinged:
  description: How many fabric pings ran.
  returned: always
  type: int
  sample: 16
ping:
  description:
    - The RV(ascend.vllm.hccn_info#module:devices) of the pings, each with its
      RV(ascend.vllm.hccn_info#module:devices[].ping) results.
  returned: when pings ran
  type: list
  elements: dict
"""
