from __future__ import annotations

from ansible_collections.ascend.vllm.plugins.filter.hccn_table import hccn_table


def test_one_line_per_device_with_tls_and_ping_summaries() -> None:
    devices = [
        {"device": 0, "ip": "10.20.1.10", "netmask": "255.255.0.0", "link": "UP", "net_health": "Success",
         "tls_enabled": False, "ping": [{"address": "10.20.2.10", "reachable": True}]},
        {"device": 1, "ip": None, "netmask": None, "link": "DOWN", "net_health": "Socket fail",
         "tls_enabled": None, "ping": [{"address": "10.20.2.11", "reachable": False},
                                       {"address": "10.20.3.11", "reachable": True}]},
    ]  # fmt: skip
    lines = hccn_table(devices)
    assert lines[0].split()[:3] == ["Device", "IP", "Netmask"]
    assert lines[1].split() == ["0", "10.20.1.10", "255.255.0.0", "UP", "Success", "off", "1/1"]
    assert lines[2].split() == ["1", "-", "-", "DOWN", "Socket", "fail", "-", "1/2"]
    assert lines[1].index("UP") == lines[2].index("DOWN")
