#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: hccn_info
short_description: Query the NPU RoCE NICs with hccn_tool (link, health, IP, TLS, ping)
version_added: 0.1.0
description:
  - Runs C(hccn_tool) for each NPU network interface used by HCCL and by Mooncake KV transfer
    and returns, per device, the link state (C(-link -g)), the network health (C(-net_health -g)),
    the IPv4 address and netmask (C(-ip -g)) and the TLS switch (C(-tls -g)).
  - Optionally pings peer device IPs from the NPU NIC (C(-ping -g address IP)), the connectivity
    test of the vLLM-Ascend multi-node guide.
  - The devices are queried at the same time, one thread per device running its queries and
    then its pings in turn, so that 16 devices pinging one peer each take about as long as one
    ping. One device's NIC never runs two commands at once.
  - Read-only; never reports a change. Optional checks fail the task and name each offending
    device; the facts are returned in the failure result too.
  - Fails naming the device, the command line, its return code and its output when a query
    command fails, and names the device, the command and the line when the output is not
    recognised. Two non-zero exits are results, not failures - C(-ip -g) on a NIC without an
    address (RV(devices[].ip) is V(null)) and C(-ping) when a packet is lost (the tool exits
    non-zero then).
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  hccn_tool_path:
    description:
      - Path of the C(hccn_tool) binary. A bare name is looked up in E(PATH).
    type: str
    default: /usr/local/Ascend/driver/tools/hccn_tool
  devices:
    description:
      - Device indices (C(hccn_tool -i N)) to query.
      - When neither O(devices) nor O(device_count) is given, the devices are those with an
        C(address_N=) line in O(hccn_conf), the file C(hccn_tool -ip -s) writes.
    type: list
    elements: int
  device_count:
    description:
      - Query devices C(0) to O(device_count) - 1 (for example V(8) on an Atlas 800I A2,
        V(16) on an Atlas 800 A3).
    type: int
  hccn_conf:
    description:
      - The NIC configuration file read to discover the devices when neither O(devices) nor
        O(device_count) is given.
    type: path
    default: /etc/hccn.conf
  status:
    description:
      - Query each device's link, net health and IPv4 address (and TLS, see O(tls)).
      - V(false) runs only the pings of O(ping), for a caller that has read the status already
        (the role C(ascend.vllm.preflight) does, with M(ascend.vllm.preflight_facts)).
        RV(devices[].link), RV(devices[].net_health), RV(devices[].ip), RV(devices[].netmask)
        and RV(devices[].tls_enabled) are then V(null), and RV(summary) judges the pings only.
    type: bool
    default: true
  tls:
    description:
      - Query the TLS switch. With V(false) C(-tls -g) is not run and RV(devices[].tls_enabled)
        is V(null) (for drivers without the TLS sub-command).
    type: bool
    default: true
  ping:
    description:
      - Peer IPv4 addresses to ping from the NPU NICs with C(hccn_tool -i N -ping -g address IP).
      - A list (or a comma-separated string) pings every address from every queried device.
      - A mapping of device index to a list of addresses (or one address) pings only from those
        devices, for example each local device to the same device of the peer node. Its keys
        must be among the queried devices.
      - Each ping sends the tool's default three packets; a peer is reachable only when all
        of them come back.
    type: raw
  require_link_up:
    description:
      - "Fail unless every queried device reports C(link status: UP)."
    type: bool
    default: false
  require_net_health:
    description:
      - "Fail unless every queried device reports C(net health status: Success)."
    type: bool
    default: false
  require_ping:
    description:
      - Fail unless every ping of O(ping) received all its packets. Requires O(ping).
    type: bool
    default: false
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads; it runs the same queries and pings in check mode.
  diff_mode:
    support: none
    details: The module changes nothing, so there is no difference to show.
  platform:
    support: full
    platforms: posix
    details: Linux hosts with the Ascend NPU driver (C(hccn_tool)).
notes:
  - IPv4 only (C(-ip -g), C(-ping -g address)); IPv6 device addresses (C(-inet6)) are not queried.
  - Requires root on most driver versions, like C(hccn_tool) itself.
seealso:
  - name: vLLM-Ascend, PD-colocated with Mooncake (Verify Multi-Node Communication Environment)
    description: The hccn_tool checks this module automates.
    link: https://docs.vllm.ai/projects/ascend/en/latest/tutorials/features/pd_colocated_mooncake_multi_instance/
"""

EXAMPLES = r"""
- name: Read every NPU NIC listed in /etc/hccn.conf
  ascend.vllm.hccn_info:
  register: hccn

- name: Gate a deployment on 16 healthy NICs
  ascend.vllm.hccn_info:
    device_count: 16
    require_link_up: true
    require_net_health: true

- name: Ping the decode node's device IPs from every local device
  ascend.vllm.hccn_info:
    devices: [0, 1, 2, 3, 4, 5, 6, 7]
    ping: [10.20.0.20, 10.20.0.21]
    require_ping: true

- name: Ping device N of the peer node from device N of this node
  ascend.vllm.hccn_info:
    devices: [0, 1]
    ping:
      0: 10.20.0.20
      1: [10.20.0.21]
    require_ping: true

- name: Only ping (the devices' status was read by an earlier task)
  ascend.vllm.hccn_info:
    devices: [0, 1]
    status: false
    ping:
      0: 10.20.0.20
      1: 10.20.0.21
  register: fabric

- name: Show the devices whose link is down
  ansible.builtin.debug:
    msg: "{{ hccn.summary.link_down }}"
"""

RETURN = r"""
devices:
  description: One entry per queried device, in the order queried.
  returned: success, and in the failure result of a check
  type: list
  elements: dict
  contains:
    device:
      description: The device index (C(hccn_tool -i)).
      type: int
      sample: 0
    link:
      description: The link state of the NIC; V(null) when O(status=false).
      type: str
      choices: [UP, DOWN]
      sample: UP
    net_health:
      description:
        - The C(net health status) text. C(Success) when the NIC reaches its net-detect address;
          the driver also reports C(Socket fail), C(Receive timeout), C(Unreachable),
          C(Time exceeded), C(Fault), C(Init), C(Thread error), C(Detect ip set) and C(Unknown).
        - V(null) when O(status=false).
      type: str
      sample: Success
    ip:
      description: The IPv4 address of the NIC; V(null) when none is set, or when O(status=false).
      type: str
      sample: 192.168.100.101
    netmask:
      description: The netmask of the NIC; V(null) when no address is set.
      type: str
      sample: 255.255.255.0
    tls_enabled:
      description:
        - Whether TLS is enabled on the NIC (C(tls switch[1])).
        - V(null) when O(tls=false) or O(status=false), and when the NIC has no TLS certificate (the tool then
          prints C(No certificate found) and no switch).
      type: bool
      sample: false
    ping:
      description: One entry per pinged address (empty when this device pings nothing).
      type: list
      elements: dict
      contains:
        address:
          description: The pinged address.
          type: str
          sample: 192.168.100.201
        reachable:
          description: Whether every packet came back (C(0.00% packet loss)).
          type: bool
          sample: true
        transmitted:
          description: Packets sent.
          type: int
          sample: 3
        received:
          description: Packets received.
          type: int
          sample: 3
        loss_pct:
          description: Packet loss in percent.
          type: float
          sample: 0.0
summary:
  description: What is wrong across the queried devices, whether or not a check was asked for.
  returned: success, and in the failure result of a check
  type: dict
  contains:
    total:
      description: Number of devices queried.
      type: int
      sample: 8
    link_down:
      description: Devices whose link is DOWN.
      type: list
      elements: int
      sample: [3]
    unhealthy:
      description: Devices whose net health is not C(Success).
      type: list
      elements: int
      sample: [5]
    no_ip:
      description: Devices without an IPv4 address.
      type: list
      elements: int
      sample: []
    tls_enabled:
      description: Devices with TLS enabled (HCCL needs the same TLS setting on every peer).
      type: list
      elements: int
      sample: []
    unreachable:
      description: Pings that lost a packet.
      type: list
      elements: dict
      sample: [{device: 5, address: 10.0.0.7}]
      contains:
        device:
          description: The device that pinged.
          type: int
        address:
          description: The address it pinged.
          type: str
    problems:
      description:
        - >-
          One line per problem, in the wording of the checks (C(device 3: link DOWN),
          C(device 5: ping 10.0.0.7 failed (3 sent, 0 received))).
      type: list
      elements: str
      sample: ["device 3: link DOWN"]
"""

import ipaddress
from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend.vllm.plugins.module_utils.hccn import (
    HccnCommandError,
    check_link,
    check_net_health,
    check_ping,
    parse_hccn_conf,
    query_device,
    summarize,
)
from ansible_collections.ascend.vllm.plugins.module_utils.parallel import map_concurrently
from ansible_collections.ascend.vllm.plugins.module_utils.tools import find_tool, reading_run


def _discover_devices(module: AnsibleModule) -> List[int]:
    params = module.params
    if params["devices"] is not None:
        if not params["devices"]:
            module.fail_json(msg="devices is empty: name at least one device index")
        return list(dict.fromkeys(params["devices"]))
    if params["device_count"] is not None:
        if params["device_count"] < 1:
            module.fail_json(msg=f"device_count must be at least 1, got {params['device_count']}")
        return list(range(params["device_count"]))
    conf = params["hccn_conf"]
    try:
        with open(conf, encoding="utf-8") as fh:
            devices = parse_hccn_conf(fh.read())
    except OSError as exc:
        module.fail_json(msg=f"cannot discover the devices from {conf}: {exc} (set devices or device_count)")
    if not devices:
        module.fail_json(msg=f"no address_N= line in {conf} (set devices or device_count)")
    return devices


def _ping_plan(module: AnsibleModule, devices: List[int]) -> Dict[int, List[str]]:
    """Normalise O(ping) to {device: [address, ...]}."""
    ping = module.params["ping"]
    if ping is None:
        return {}
    if isinstance(ping, (str, list)):
        # A string is the ad-hoc form ping=10.0.0.1,10.0.0.2.
        addresses = [a.strip() for a in ping.split(",") if a.strip()] if isinstance(ping, str) else ping
        plan = {device: list(addresses) for device in devices}
    elif isinstance(ping, dict):
        plan = {}
        for key, value in ping.items():
            try:
                device = int(key)
            except (TypeError, ValueError):
                module.fail_json(msg=f"ping: {key!r} is not a device index")
            if device not in devices:
                module.fail_json(msg=f"ping: device {device} is not among the queried devices {devices}")
            plan[device] = list(value) if isinstance(value, (list, tuple)) else ([] if value is None else [value])
    else:
        module.fail_json(msg="ping must be a list of addresses or a mapping of device index to addresses")
    for addresses in plan.values():
        for address in addresses:
            try:
                ipaddress.IPv4Address(str(address))
            except ValueError:
                module.fail_json(msg=f"ping: {address!r} is not an IPv4 address")
    return {device: [str(a) for a in addresses] for device, addresses in plan.items()}


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            hccn_tool_path=dict(type="str", default="/usr/local/Ascend/driver/tools/hccn_tool"),
            devices=dict(type="list", elements="int"),
            device_count=dict(type="int"),
            hccn_conf=dict(type="path", default="/etc/hccn.conf"),
            status=dict(type="bool", default=True),
            tls=dict(type="bool", default=True),
            ping=dict(type="raw"),
            require_link_up=dict(type="bool", default=False),
            require_net_health=dict(type="bool", default=False),
            require_ping=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("devices", "device_count")],
        supports_check_mode=True,
    )
    params = module.params
    if params["require_ping"] and not params["ping"]:
        module.fail_json(msg="require_ping needs ping (the addresses to ping)")
    for check in ("require_link_up", "require_net_health"):
        if params[check] and not params["status"]:
            module.fail_json(msg=f"{check} needs status=true (the status it checks)")

    tool = find_tool(module, params["hccn_tool_path"], "hccn_tool_path", "hccn_tool")
    devices = _discover_devices(module)
    plan = _ping_plan(module, devices)

    run = reading_run(module)

    def query(device: int) -> Dict[str, Any]:
        return query_device(
            run,
            tool,
            device,
            status=params["status"],
            tls=params["tls"],
            addresses=plan.get(device, []),
        )

    try:
        facts = map_concurrently(query, devices)
    except HccnCommandError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    summary = summarize(facts)

    problems = []
    if params["require_link_up"]:
        problems += check_link(facts)
    if params["require_net_health"]:
        problems += check_net_health(facts)
    if params["require_ping"]:
        problems += check_ping(facts)
    if problems:
        module.fail_json(msg="; ".join(problems), problems=problems, devices=facts, summary=summary)

    module.exit_json(changed=False, devices=facts, summary=summary)


if __name__ == "__main__":
    main()
