# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight's pure part: records, what to read, the parsers, the ping plan and every problem.

The records are shaped like the plan's for an A3 1P1D deployment (a3-node1 prefill with two
DP ranks of TP 8, a3-node2 decode) and a single-node A3; the facts are what
ascend.vllm.preflight_facts returns there, its chip tables parsed from the npu-smi fixtures.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.preflight import (
    Settings,
    collect_problems,
    docker_unknown_names,
    fabric_devices,
    gather_targets,
    normalize_records,
    parse_ip_addr,
    parse_proc_net_tcp,
    parse_version_info,
    ping_plan,
    summary,
)
from tests.unit.plugins.preflight_cases import (
    DRAFT,
    IMAGE,
    MODEL,
    D,
    P,
    facts_for,
    fixture,
    hccn_devices,
    ping_result,
    port,
    prefill_records,
    records_of,
    running,
    single_records,
)

SETTINGS = Settings(disk_paths=["/var/lib/docker"], min_free_disk_gb=50, image_must_exist=True)


def problems(
    host: str,
    raw: Dict[str, Any],
    facts: Dict[str, Any],
    settings: Settings = SETTINGS,
    ping: Optional[Dict[str, Any]] = None,
    peers: Optional[Dict[str, Any]] = None,
) -> List[str]:
    return collect_problems(host, records_of(raw), facts, settings, ping=ping, peer_devices=peers)


def pd_ok(facts: Dict[str, Any]) -> List[str]:
    """The problems of the prefill host when its pings to the decode host all pass."""
    return problems(P, prefill_records(), facts, ping=ping_result(1, 2), peers={D: hccn_devices(2)})


# --- healthy hosts --------------------------------------------------------------------------


def test_healthy_prefill_host_has_no_problem() -> None:
    facts = facts_for(prefill_records())
    assert pd_ok(facts) == []
    assert summary(P, records_of(prefill_records()), facts, 16) == (
        "a3-node1: 2 server(s) on chips 0-15, 5 port range(s); none running; images present; "
        "NPU network: 16 device(s), NIC enp189s0f0, 16 fabric ping(s)"
    )


def test_single_node_host_skips_every_network_check() -> None:
    raw = single_records()
    facts = facts_for(raw)
    assert facts["hccn"] is None and facts["interfaces"] is None
    assert problems("a3-single", raw, facts) == []
    targets = gather_targets(records_of(raw))
    assert (targets["hccn_devices"], targets["hccn_conf"], targets["interfaces"]) == ([], None, False)


def test_rerun_with_our_containers_running_passes() -> None:
    """Our own running containers hold their chips (VLLMWorker processes) and listen on their ports."""
    facts = running(facts_for(prefill_records(), npu="a3_busy_mixed_health.txt"), "vllm-prefill0-dp0")
    facts["listening"]["ports"] += [
        {"address": "0.0.0.0", "port": 7000},
        {"address": "192.0.2.11", "port": 18003},
        {"address": "0.0.0.0", "port": 13389},
    ]
    found = pd_ok(facts)
    # Chips 0-7 are dp0's: their processes and its ports are not conflicts. Health still counts.
    assert found == [
        "a3-node1: npu 2 chip 1 (index 5): health Warning (chip of vllm-prefill0-dp0)",
        "a3-node1: npu 4 chip 0 (index 8): health Alarm (chip of vllm-prefill0-dp1)",
        "a3-node1: npu 5 chip 1 (index 11): health Critical (chip of vllm-prefill0-dp1)",
        "a3-node1: npu 6 chip 0 (index 12): health UNKNOWN (chip of vllm-prefill0-dp1)",
    ]


# --- chips, driver, weights, image, ports, disk ---------------------------------------------


def test_held_chips_and_used_ports_of_servers_not_running() -> None:
    facts = facts_for(prefill_records(), npu="a3_busy_mixed_health.txt")
    facts["npu"]["chips"] = [dict(c, health="OK") for c in facts["npu"]["chips"]]
    facts["listening"]["ports"] += [
        {"address": "0.0.0.0", "port": 7001},
        {"address": "::", "port": 7001},
        {"address": "192.0.2.11", "port": 18003},
    ]
    of_dp0 = "(chip of vllm-prefill0-dp0)"
    assert pd_ok(facts) == [
        f"a3-node1: npu 0 chip 0 (index 0): held by pid 1774110 'VLLMWorker_DP0' using 56684 MB {of_dp0}",
        f"a3-node1: npu 0 chip 0 (index 0): held by pid 1774390 'python3' using 131 MB {of_dp0}",
        f"a3-node1: npu 0 chip 1 (index 1): held by pid 1777209 'VLLMWorker_DP1' using 56690 MB {of_dp0}",
        f"a3-node1: npu 1 chip 1 (index 3): held by pid 1780022 'python3' using 4210 MB {of_dp0}",
        f"a3-node1: npu 3 chip 0 (index 6): held by pid 1790001 (name not shown) using 49800 MB {of_dp0}",
        f"a3-node1: npu 3 chip 1 (index 7): held by pid 1790002 (name not shown) using 49812 MB {of_dp0}",
        "a3-node1: port 7001 (HTTP port of vllm-prefill0-dp1, ascend_prefill_port) is already in use by another "
        "process (listening on 0.0.0.0, ::)",
        "a3-node1: port 18003 (Mooncake kv ports of vllm-prefill0-dp0, ascend_prefill_kv_port) is already in use "
        "by another process (listening on 192.0.2.11)",
    ]


def test_chip_missing_from_an_a2() -> None:
    raw = single_records()
    raw["servers"][0]["chips"] = [6, 7, 8, 9]
    assert problems("a2-node1", raw, facts_for(raw, npu="a2_idle.txt")) == [
        "a2-node1: chip index 8 not found: npu-smi lists 8 chip(s) (indexes 0-7) (chip of vllm-single)",
        "a2-node1: chip index 9 not found: npu-smi lists 8 chip(s) (indexes 0-7) (chip of vllm-single)",
    ]


def test_npu_smi_error_is_one_problem() -> None:
    raw = single_records()
    facts = facts_for(raw)
    facts["npu"] = {
        "error": "'/usr/local/bin/npu-smi info' failed (rc=255): dcmi module initialize failed. ret is -8005"
    }
    facts["driver_version_file"]["version"] = "25.2.3"
    assert problems("n1", raw, facts) == [
        "n1: npu-smi: '/usr/local/bin/npu-smi info' failed (rc=255): dcmi module initialize failed. ret is -8005"
    ]


@pytest.mark.parametrize(
    ("npu_version", "file_version", "file_error", "expected"),
    [
        ("23.0.rc3", None, None, "n1: driver version 23.0.rc3 is older than 24.1.0 (preflight_min_driver_version)"),
        (None, "22.0.4", None, "n1: driver version 22.0.4 is older than 24.1.0 (preflight_min_driver_version)"),
        (None, "24.1.0.rc1", None, None),
        ("25.2.3", None, None, None),
        ("rc5", None, None, "n1: driver version 'rc5' is not a version number (preflight_min_driver_version)"),
        (
            None,
            None,
            None,
            "n1: driver version unknown: npu-smi prints none and /usr/local/Ascend/driver/version.info has no "
            "Version= line (preflight_driver_version_file)",
        ),
        (
            None,
            None,
            "No such file or directory",
            "n1: driver version unknown: npu-smi prints none and /usr/local/Ascend/driver/version.info No such "
            "file or directory (preflight_driver_version_file)",
        ),
    ],
)
def test_driver_version(
    npu_version: Optional[str], file_version: Optional[str], file_error: Optional[str], expected: Optional[str]
) -> None:
    raw = single_records()
    facts = facts_for(raw)
    facts["npu"]["driver_version"] = npu_version
    facts["driver_version_file"].update(version=file_version, error=file_error)
    settings = Settings(min_driver_version="24.1.0", disk_paths=["/var/lib/docker"])
    assert problems("n1", raw, facts, settings) == ([expected] if expected else [])


def test_driver_check_skipped_without_minimum_or_without_servers() -> None:
    raw = single_records()
    facts = facts_for(raw)
    facts["npu"]["driver_version"] = "1.0"
    assert problems("n1", raw, facts, Settings(min_driver_version="", disk_paths=["/var/lib/docker"])) == []
    # A proxy-only host: a port, no server, no NPU to read.
    proxy = {
        "servers": [],
        "ports": [port(8009, 8009, "proxy port", "ascend_proxy_port", "vllm-pd-proxy")],
        "network": {},
    }
    proxy_facts = dict(facts_for(proxy), npu=None, driver_version_file=None)
    assert gather_targets(records_of(proxy))["npu"] is False
    assert problems("proxy1", proxy, proxy_facts) == []


def test_weights_missing_or_unusable() -> None:
    raw = single_records()
    facts = facts_for(raw)
    facts["weights"][0].update(missing=True)
    facts["weights"][1].update(error="not valid JSON (Expecting value: line 1 column 1 (char 0))")
    assert problems("n1", raw, facts) == [
        f"n1: model of vllm-single missing: no {MODEL}/config.json",
        f"n1: EAGLE3 draft model of vllm-single: cannot use {DRAFT}/config.json: not valid JSON (Expecting "
        "value: line 1 column 1 (char 0))",
    ]


def test_image_absent_or_engine_down() -> None:
    raw = single_records()
    facts = facts_for(raw)
    facts["docker"]["images"][0]["present"] = False
    assert problems("n1", raw, facts) == [f"n1: image {IMAGE} not present (preflight_image_must_exist)"]
    # vllm_image loads it later: only mentioned in the summary.
    assert problems("n1", raw, facts, Settings(disk_paths=["/var/lib/docker"])) == []
    assert "images absent (vllm_image loads or pulls them): " + IMAGE in summary("n1", records_of(raw), facts, 0)
    down = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    facts["docker"] = {"error": down, "containers": [], "images": []}
    assert problems("n1", raw, facts) == [
        f"n1: cannot query the Docker engine about our containers and images: {down}",
    ]


def test_listening_ports_unreadable() -> None:
    raw = single_records()
    facts = facts_for(raw)
    facts["listening"] = {"error": "cannot read /proc/net/tcp: [Errno 13] Permission denied", "ports": []}
    assert problems("n1", raw, facts) == [
        "n1: cannot list the listening TCP ports: cannot read /proc/net/tcp: [Errno 13] Permission denied"
    ]


def test_disk_low_or_missing() -> None:
    raw = single_records()
    facts = facts_for(raw)
    facts["disk"] = [
        {"path": "/var/lib/docker", "free_bytes": int(12.34 * 1024**3), "error": None},
        {"path": "/data/weights", "free_bytes": None, "error": "No such file or directory"},
    ]
    settings = Settings(disk_paths=["/var/lib/docker", "/data/weights"], min_free_disk_gb=50)
    assert problems("n1", raw, facts, settings) == [
        "n1: /var/lib/docker has 12.3 GiB free, less than 50 GiB (preflight_min_free_disk_gb)",
        "n1: cannot measure the free disk space of /data/weights (preflight_disk_paths): No such file or directory",
    ]
    assert problems("n1", raw, facts, Settings(disk_paths=["/var/lib/docker"], min_free_disk_gb=0)) == []


# --- the NPU network of a PD host -----------------------------------------------------------


def test_device_link_health_ip_and_query_errors() -> None:
    facts = facts_for(prefill_records())
    devices = facts["hccn"]["devices"]
    devices[3]["link"] = "DOWN"
    devices[5]["net_health"] = "Receive timeout"
    devices[9].update(ip=None, netmask=None)
    devices[12] = {
        "device": 12,
        "link": None,
        "net_health": None,
        "ip": None,
        "netmask": None,
        "error": "device 12: '/usr/local/Ascend/driver/tools/hccn_tool -i 12 -link -g' failed (rc=1): "
        "Get link status failed!",
    }
    assert pd_ok(facts) == [
        "a3-node1: device 12: '/usr/local/Ascend/driver/tools/hccn_tool -i 12 -link -g' failed (rc=1): "
        "Get link status failed!",
        "a3-node1: device 3: link DOWN",
        "a3-node1: device 5: net health Receive timeout (expected Success)",
        "a3-node1: device 9: no IP address",
    ]


def test_only_the_devices_of_the_plan_count() -> None:
    raw = prefill_records()
    raw["network"]["devices"] = list(range(8))
    facts = facts_for(raw)
    facts["hccn"]["devices"][12]["link"] = "DOWN"
    assert problems(P, raw, facts, ping=ping_result(1, 2), peers={D: hccn_devices(2)}) == []


def test_hccn_tool_missing_and_hccn_conf_missing() -> None:
    facts = facts_for(prefill_records())
    facts["hccn"] = {
        "error": "hccn_tool not found or not executable at /usr/local/Ascend/driver/tools/hccn_tool "
        "(set hccn_tool_path)",
        "devices": [],
    }
    facts["hccn_conf"]["exists"] = False
    assert pd_ok(facts) == [
        "a3-node1: hccn_tool: hccn_tool not found or not executable at /usr/local/Ascend/driver/tools/hccn_tool "
        "(set hccn_tool_path)",
        "a3-node1: /etc/hccn.conf missing (preflight_network.hccn_conf): the NPU NICs' IP configuration "
        "(hccn_tool -i N -ip -s writes it) is not on this host",
    ]


def test_nic_missing() -> None:
    raw = prefill_records()
    raw["network"]["nic"] = "enp61s0f0"
    assert problems(P, raw, facts_for(raw), ping=ping_result(1, 2), peers={D: hccn_devices(2)}) == [
        "a3-node1: NIC enp61s0f0 (preflight_network.nic) does not exist; this host has lo, enp189s0f0, "
        "enp189s0f1, docker0; 192.0.2.11 is on enp189s0f0"
    ]


def test_nic_without_the_ip_or_down() -> None:
    raw = prefill_records()
    raw["network"].update(nic="enp189s0f1", ip="192.0.2.99")
    assert problems(P, raw, facts_for(raw), ping=ping_result(1, 2), peers={D: hccn_devices(2)}) == [
        "a3-node1: NIC enp189s0f1 does not carry 192.0.2.99 (preflight_network.ip); its addresses: none",
        "a3-node1: NIC enp189s0f1 (preflight_network.nic) is DOWN",
    ]
    raw["network"].update(nic="enp189s0f0", ip="172.17.0.1")
    assert problems(P, raw, facts_for(raw), ping=ping_result(1, 2), peers={D: hccn_devices(2)}) == [
        "a3-node1: NIC enp189s0f0 does not carry 172.17.0.1 (preflight_network.ip); its addresses: "
        "192.0.2.11/24, fe80::b605:5dff:fe3a:11e0/64; 172.17.0.1 is on docker0"
    ]


def test_ping_plan_pairs_device_n_with_device_n_of_each_peer() -> None:
    facts = facts_for(prefill_records())
    facts["hccn"]["devices"][2]["ip"] = None
    decode = hccn_devices(2, count=8)
    decode[4]["ip"] = None
    plan = ping_plan(P, facts, {D: decode, "a3-node3": hccn_devices(3, count=2)})
    assert plan[0] == ["10.20.2.10", "10.20.3.10"]
    assert plan[2] == ["10.20.2.12"]  # a local device without IP still pings: its ping shows it
    assert 4 not in plan and plan[5] == ["10.20.2.15"] and 8 not in plan
    # A peer without facts (outside the play) adds nothing; neither does an hccn error at home.
    assert ping_plan(P, facts, {D: None}) == {}
    assert ping_plan(P, dict(facts, hccn={"error": "x", "devices": []}), {D: decode}) == {}


def test_failed_pings_name_the_peer_device() -> None:
    facts = facts_for(prefill_records())
    found = problems(
        P, prefill_records(), facts, ping=ping_result(1, 2, failing={3: 0, 7: 2}), peers={D: hccn_devices(2)}
    )
    assert found == [
        "a3-node1: device 3: ping 10.20.2.13 (device 3 of a3-node2) failed (3 sent, 0 received)",
        "a3-node1: device 7: ping 10.20.2.17 (device 7 of a3-node2) failed (3 sent, 2 received)",
    ]


def test_peer_outside_the_play_and_failed_ping_module() -> None:
    facts = facts_for(prefill_records())
    assert problems(P, prefill_records(), facts, ping=None, peers={D: None}) == [
        "a3-node1: fabric peer a3-node2 (preflight_network.fabric_peers) has no NPU network facts in this play "
        "(not in the play, or its preflight failed before them): its devices were not pinged"
    ]
    failed = {"failed": True, "msg": "hccn_tool not found or not executable at /x/hccn_tool (set hccn_tool_path)"}
    assert problems(P, prefill_records(), facts, ping=failed, peers={D: hccn_devices(2)}) == [
        "a3-node1: cannot ping the fabric peers' devices: hccn_tool not found or not executable at /x/hccn_tool "
        "(set hccn_tool_path)"
    ]


def test_fabric_devices_of_a_peer() -> None:
    assert fabric_devices(None) is None
    assert fabric_devices({"hccn": None}) is None
    assert fabric_devices({"hccn": {"error": "hccn_tool not found", "devices": []}}) is None
    assert fabric_devices(facts_for(prefill_records(), node=2)) == hccn_devices(2)


# --- every problem at once, the records, a failed read --------------------------------------


def test_one_host_every_problem_at_once_in_a_stable_order() -> None:
    facts = facts_for(prefill_records(), npu="a3_busy_mixed_health.txt")
    facts["npu"]["driver_version"] = "1.0"
    facts["weights"][0]["missing"] = True
    facts["listening"]["ports"].append({"address": "0.0.0.0", "port": 7000})
    facts["disk"][0]["free_bytes"] = 1024**3
    facts["hccn"]["devices"][6]["link"] = "DOWN"
    facts["hccn_conf"]["exists"] = False
    found = problems(P, prefill_records(), facts, ping=ping_result(1, 2, failing={6: 0}), peers={D: hccn_devices(2)})
    assert all(p.startswith("a3-node1: ") for p in found)
    kinds = [
        "health Warning",
        "held by pid 1774110",
        "driver version 1.0",
        "model of vllm-prefill0-dp0 missing",
        "model of vllm-prefill0-dp1 missing",
        "port 7000 (HTTP port of vllm-prefill0-dp0",
        "/var/lib/docker has 1.0 GiB free",
        "device 6: link DOWN",
        "/etc/hccn.conf missing",
        "device 6: ping 10.20.2.16 (device 6 of a3-node2) failed",
    ]
    positions = [next(i for i, p in enumerate(found) if kind in p) for kind in kinds]
    assert positions == sorted(positions)
    assert len(found) == len(set(found))


def test_malformed_records_name_the_variable_and_the_rest_is_still_checked() -> None:
    raw = prefill_records()
    raw["servers"].append({"name": "vllm-prefill0-dp2", "role": "prefil", "chips": "0-7", "container": {}})
    raw["servers"].append("vllm-prefill0-dp3")
    raw["ports"].append(port(18020, 18016, "Mooncake kv ports", "ascend_prefill_kv_port", "vllm-prefill0-dp2"))
    raw["ports"].append({"first": 7002, "last": 7002, "what": "HTTP port", "variable": "", "owner": None})
    facts = facts_for(prefill_records())
    facts["hccn"]["devices"][1]["link"] = "DOWN"
    dp2 = "a3-node1: preflight_servers[2] (vllm-prefill0-dp2)"
    assert problems(P, raw, facts, ping=ping_result(1, 2), peers={D: hccn_devices(2)}) == [
        f"{dp2}: 'role' must be one of single, prefill, decode, got 'prefil'",
        f"{dp2}: 'chips' must be a list of chip indexes, got '0-7'",
        f"{dp2}: 'container.image' must be an image name, got None",
        "a3-node1: preflight_servers[3]: a server record must be a mapping, got 'vllm-prefill0-dp3'",
        "a3-node1: preflight_ports[5]: 'first' and 'last' must be ports with first <= last, got 18020 and 18016",
        "a3-node1: preflight_ports[6]: 'variable' must be a non-empty string, got ''",
        "a3-node1: preflight_ports[6]: 'owner' must be a non-empty string, got None",
        "a3-node1: device 1: link DOWN",
    ]


def test_malformed_network_and_pd_server_without_network() -> None:
    raw = prefill_records()
    raw["network"] = {"nic": "enp189s0f0", "ip": "192.0.2.311", "devices": [0, -1], "hccn_conf": "/etc/hccn.conf"}
    assert normalize_records(raw["servers"], raw["ports"], raw["network"]).problems == [
        "preflight_network: 'ip' must be an IP address, got '192.0.2.311'",
        "preflight_network: 'devices' must be a non-empty list of device indexes, got [0, -1]",
        "preflight_network: 'fabric_peers' must be a non-empty list of inventory hostnames, got None",
    ]
    raw["network"].update(ip="192.0.2.11", devices=[], fabric_peers=[])
    assert normalize_records(raw["servers"], raw["ports"], raw["network"]).problems == [
        "preflight_network: 'devices' must be a non-empty list of device indexes, got []",
        "preflight_network: 'fabric_peers' must be a non-empty list of inventory hostnames, got []",
    ]
    assert normalize_records(raw["servers"], raw["ports"], {}).problems == [
        "preflight_network is empty, but vllm-prefill0-dp0, vllm-prefill0-dp1 are prefill/decode servers: their "
        "NPU network (device links and IPs, hccn.conf, the NIC, the fabric pings) would not be checked"
    ]


def test_failed_facts_task_is_reported_with_the_record_problems() -> None:
    raw = single_records()
    raw["ports"][0]["owner"] = ""
    failed = {"failed": True, "msg": "Failed to create temporary directory. In some cases..."}
    assert problems("n1", raw, failed) == [
        "n1: preflight_ports[0]: 'owner' must be a non-empty string, got ''",
        "n1: cannot read the host: Failed to create temporary directory. In some cases...",
    ]


def test_gather_targets_for_a_prefill_host() -> None:
    raw = prefill_records()
    raw["ports"].append(port(8009, 8009, "proxy port", "ascend_proxy_port", "vllm-pd-proxy"))
    raw["servers"][1]["weights"].append({"what": "EAGLE3 draft model", "path": DRAFT})
    targets = gather_targets(records_of(raw))
    assert targets == {
        "npu": True,
        "containers": ["vllm-prefill0-dp0", "vllm-prefill0-dp1", "vllm-pd-proxy"],
        "images": [IMAGE],
        "weights": [MODEL, DRAFT],
        "listening": True,
        "hccn_devices": list(range(16)),
        "hccn_conf": "/etc/hccn.conf",
        "interfaces": True,
    }
    assert gather_targets(records_of(raw), check_image=False)["images"] == []


# --- parsers --------------------------------------------------------------------------------


def test_parse_proc_net_tcp_keeps_listeners_only() -> None:
    assert parse_proc_net_tcp(fixture("preflight", "proc_net_tcp.txt")) == [
        {"address": "0.0.0.0", "port": 22},
        {"address": "127.0.0.53", "port": 53},
        {"address": "0.0.0.0", "port": 7000},
        {"address": "192.0.2.11", "port": 18003},
    ]
    assert parse_proc_net_tcp(fixture("preflight", "proc_net_tcp6.txt")) == [
        {"address": "::", "port": 22},
        {"address": "::1", "port": 8000},
    ]


def test_parse_ip_addr() -> None:
    interfaces = parse_ip_addr(fixture("preflight", "ip_addr.json"))
    assert [i["name"] for i in interfaces] == ["lo", "enp189s0f0", "enp189s0f1", "docker0"]
    assert interfaces[1] == {
        "name": "enp189s0f0",
        "operstate": "UP",
        "addresses": ["192.0.2.11/24", "fe80::b605:5dff:fe3a:11e0/64"],
    }
    assert interfaces[2]["addresses"] == []


def test_parse_version_info() -> None:
    text = "Version=25.2.3\nascendhal_version=7.35.23\naicpu_version=1.0\ntdt_version=1.0\nlog_version=1.0\n"
    assert parse_version_info(text) == "25.2.3"
    assert parse_version_info("package_version=x\n") is None


@pytest.mark.parametrize(
    ("rc", "stderr", "unknown", "error"),
    [
        (0, "", [], None),
        (1, "Error: No such container: vllm-prefill0-dp1\n", ["vllm-prefill0-dp1"], None),
        (
            1,
            "Error response from daemon: No such image: quay.io/ascend/vllm-ascend:v0.11.0rc0-a3\n",
            ["quay.io/ascend/vllm-ascend:v0.11.0rc0-a3"],
            None,
        ),
        (1, "Error: No such object: a\nError: No such object: b\n", ["a", "b"], None),
        (
            1,
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
            [],
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
        ),
        (1, "", [], "exit code 1"),
    ],
)
def test_docker_unknown_names(rc: int, stderr: str, unknown: List[str], error: Optional[str]) -> None:
    assert docker_unknown_names(rc, stderr) == (unknown, error)


def test_records_are_not_changed() -> None:
    raw = prefill_records()
    before = copy.deepcopy(raw)
    pd_ok(facts_for(raw))
    assert raw == before
