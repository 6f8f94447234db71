# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan-shaped preflight records and the facts ascend.vllm.preflight_facts returns for them.

An A3 1P1D deployment - a3-node1 prefill (DP 2 x TP 8, the DP master), a3-node2 decode - and
a single-node A3; the chip tables are parsed from the npu-smi fixtures. Shared by the tests of
the pure collection and of the action plugin.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ansible_collections.ascend.vllm.plugins.module_utils.npu_smi import parse_npu_smi_info
from ansible_collections.ascend.vllm.plugins.module_utils.preflight import (
    Records,
    gather_targets,
    normalize_records,
    parse_ip_addr,
)
from tests.unit.plugins.modules.fake_tools import fixture

IMAGE = "quay.io/ascend/vllm-ascend:v0.11.0rc0-a3"
MODEL = "/root/.cache/MiniMax-M2.7-w8a8-QuaRot"
DRAFT = "/root/.cache/MiniMax-M2.7-eagle-model-short"
P, D = "a3-node1", "a3-node2"


def server(name: str, role: str, chips: List[int], draft: bool = False) -> Dict[str, Any]:
    weights = [{"what": "model", "path": MODEL}]
    if draft:
        weights.append({"what": "EAGLE3 draft model", "path": DRAFT})
    return {"name": name, "role": role, "chips": chips, "weights": weights, "container": {"image": IMAGE}}


def port(first: int, last: int, what: str, variable: str, owner: str) -> Dict[str, Any]:
    return {"first": first, "last": last, "what": what, "variable": variable, "owner": owner}


def prefill_records() -> Dict[str, Any]:
    """a3-node1: prefill DP 2 x TP 8, the DP master (rpc port), Mooncake kv ranges per rank."""
    return {
        "servers": [
            server("vllm-prefill0-dp0", "prefill", list(range(8))),
            server("vllm-prefill0-dp1", "prefill", list(range(8, 16))),
        ],
        "ports": [
            port(7000, 7000, "HTTP port", "ascend_prefill_port", "vllm-prefill0-dp0"),
            port(7001, 7001, "HTTP port", "ascend_prefill_port", "vllm-prefill0-dp1"),
            port(18000, 18007, "Mooncake kv ports", "ascend_prefill_kv_port", "vllm-prefill0-dp0"),
            port(18008, 18015, "Mooncake kv ports", "ascend_prefill_kv_port", "vllm-prefill0-dp1"),
            port(13389, 13389, "DP rpc port", "ascend_dp_rpc_port", "vllm-prefill0-dp0"),
        ],
        "network": {
            "nic": "enp189s0f0",
            "ip": "192.0.2.11",
            "devices": list(range(16)),
            "hccn_conf": "/etc/hccn.conf",
            "fabric_peers": [D],
        },
    }


def single_records() -> Dict[str, Any]:
    return {
        "servers": [server("vllm-single", "single", list(range(16)), draft=True)],
        "ports": [port(8000, 8000, "HTTP port", "ascend_http_port", "vllm-single")],
        "network": {},
    }


def records_of(raw: Dict[str, Any]) -> Records:
    return normalize_records(raw["servers"], raw["ports"], raw["network"])


def hccn_devices(node: int, count: int = 16) -> List[Dict[str, Any]]:
    return [
        {
            "device": i,
            "link": "UP",
            "net_health": "Success",
            "ip": f"10.20.{node}.{10 + i}",
            "netmask": "255.255.0.0",
            "tls_enabled": None,
            "ping": [],
            "error": None,
        }
        for i in range(count)
    ]


def facts_for(raw: Dict[str, Any], node: int = 1, npu: str = "a3_idle.txt") -> Dict[str, Any]:
    """What preflight_facts returns on a healthy host with nothing of ours running yet."""
    records = records_of(raw)
    targets = gather_targets(records)
    pd = records.network is not None
    return {
        "changed": False,
        "npu": dict(parse_npu_smi_info(fixture("npu_smi", npu)), error=None),
        "driver_version_file": {"path": "/usr/local/Ascend/driver/version.info", "version": "25.2.3", "error": None},
        "docker": {
            "error": None,
            "containers": [{"name": n, "exists": False, "running": False} for n in targets["containers"]],
            "images": [{"name": IMAGE, "present": True}],
        },
        "weights": [
            {"path": p, "config_json": f"{p}/config.json", "missing": False, "error": None} for p in targets["weights"]
        ],
        "disk": [{"path": "/var/lib/docker", "free_bytes": 800 * 1024**3, "error": None}],
        "listening": {"error": None, "ports": [{"address": "0.0.0.0", "port": 22}, {"address": "::", "port": 22}]},
        "hccn": {"error": None, "devices": hccn_devices(node)} if pd else None,
        "hccn_conf": {"path": "/etc/hccn.conf", "exists": True} if pd else None,
        "interfaces": (
            {"error": None, "interfaces": parse_ip_addr(fixture("preflight", "ip_addr.json"))} if pd else None
        ),
    }


def running(facts: Dict[str, Any], *names: str) -> Dict[str, Any]:
    for state in facts["docker"]["containers"]:
        if state["name"] in names:
            state.update(exists=True, running=True)
    return facts


def ping_result(node: int, peer_node: int, failing: Optional[Dict[int, int]] = None) -> Dict[str, Any]:
    """hccn_info's answer to device N pinging device N of the peer; ``failing`` device -> received."""
    failing = failing or {}
    devices = []
    for i in range(16):
        received = failing.get(i, 3)
        devices.append(
            {
                "device": i,
                "link": None,
                "net_health": None,
                "ip": None,
                "netmask": None,
                "tls_enabled": None,
                "ping": [
                    {
                        "address": f"10.20.{peer_node}.{10 + i}",
                        "reachable": received == 3,
                        "transmitted": 3,
                        "received": received,
                        "loss_pct": round(100.0 * (3 - received) / 3, 2),
                    }
                ],
            }
        )
    return {"changed": False, "devices": devices}
