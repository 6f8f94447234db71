# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render hccn_info devices as a text table for operators."""

from __future__ import annotations

DOCUMENTATION = r"""
name: hccn_table
short_description: Render hccn_info devices as a text table
version_added: 0.1.0
description:
  - Turns the C(devices) returned by M(ascend.vllm.hccn_info) into a list of fixed-width lines,
    one per NPU NIC, for C(ansible.builtin.debug) output.
options:
  _input:
    description: The C(devices) list returned by M(ascend.vllm.hccn_info).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Show the NICs of each host
  ansible.builtin.debug:
    msg: "{{ hccn.devices | ascend.vllm.hccn_table }}"
"""

RETURN = r"""
_value:
  description: A header line followed by one line per device.
  type: list
  elements: str
"""

from typing import Any

from ansible_collections.ascend.vllm.plugins.module_utils.text_table import format_rows

_COLUMNS = ("Device", "IP", "Netmask", "Link", "Net health", "TLS", "Peers reached")


def _tls(enabled: bool | None) -> str:
    return "-" if enabled is None else ("on" if enabled else "off")


def _peers(pings: list[dict[str, Any]]) -> str:
    if not pings:
        return "-"
    return f"{sum(1 for p in pings if p['reachable'])}/{len(pings)}"


def hccn_table(devices: list[dict[str, Any]]) -> list[str]:
    rows = [
        (
            d["device"],
            d.get("ip") or "-",
            d.get("netmask") or "-",
            d["link"],
            d["net_health"],
            _tls(d.get("tls_enabled")),
            _peers(d.get("ping") or []),
        )
        for d in devices
    ]
    return format_rows(_COLUMNS, rows)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"hccn_table": hccn_table}
