# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which peer device IPs each local NPU NIC should reach (the multi-node fabric check)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: hccn_peer_map
short_description: Map each local NPU device to the same device's IP on every peer host
version_added: 0.1.0
description:
  - Builds the O(ascend.vllm.hccn_info#module:ping) mapping for the multi-node fabric check.
    Device N of this host pings device N of every other host, the pairing HCCL and Mooncake
    use between prefill and decode nodes.
  - Devices without an address on a peer are left out (M(ascend.vllm.hccn_info) reports them
    on that peer).
positional: _input, local_host
options:
  _input:
    description:
      - Host name to the C(devices) list M(ascend.vllm.hccn_info) returned on that host.
    type: dict
    required: true
  local_host:
    description: The host the mapping is for; its own addresses are not pinged.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Ping device N of every peer from device N of this host
  ascend.vllm.hccn_info:
    ping: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, ['hccn', 'devices'])))
              | ascend.vllm.hccn_peer_map(inventory_hostname) }}"
    require_ping: true
"""

RETURN = r"""
_value:
  description: Local device index to the list of peer IPs it should reach; devices with no peers are omitted.
  type: dict
"""

from typing import Any

from ansible_collections.ascend.vllm.plugins.module_utils.hccn import peer_map


def hccn_peer_map(devices_by_host: dict[str, list[dict[str, Any]]], local_host: str) -> dict[int, list[str]]:
    return peer_map(devices_by_host, local_host)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"hccn_peer_map": hccn_peer_map}
