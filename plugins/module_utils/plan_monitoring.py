# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan's ``monitoring`` record: what Prometheus scrapes, and where it runs. Pure.

Computed from the rest of the plan (every server and proxy record) and the inventory group
``monitoring``, so that the role ``monitoring`` re-derives no port and no address:

- ``prometheus``: the hosts that run Prometheus (group ``monitoring``; when it is empty, the
  first proxy host of a PD deployment, else the first single-node host) with their port
  (``ascend_prometheus_port``) and URL;
- ``exporters``: every host with NPU servers runs the node exporter
  (``ascend_node_exporter_port``), which also exports the NPUs (npu-smi) through its textfile
  collector;
- ``scrape``: one job per kind of target (``vllm``: every server, one per DP rank; ``pd_proxy``:
  every proxy; ``node``: every exporter), each target ``host:port`` with the labels dashboards
  and alerts group by: ``instance`` (the plan's instance name: ``prefill0``, ``decode1``,
  ``proxy``, or the host for ``node``), ``role``, ``rank`` (a PD server's DP rank), ``host``
  and ``server`` (the container).

The exporter and Prometheus ports are not in a host's ``ports`` (which preflight wants free
before a deployment: these services outlive it), but they must not collide with them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import HostView, Issues, to_str, url_address

JOBS = ("vllm", "pd_proxy", "node")
METRICS_PATH = "/metrics"
# The proxy's /metrics also relays its instances' vLLM speculative-decoding counters (for
# `vllm bench serve`, which reads them through the endpoint); Prometheus scrapes the instances
# themselves, so it asks the proxy for its own series only, or it would count them twice.
PARAMS = {"pd_proxy": {"relay": ["false"]}}


def monitoring_hosts(members: Mapping[str, Sequence[str]], mode: str) -> List[str]:
    """Group ``monitoring``; else the first proxy host (PD) or the first single-node host."""
    chosen = list(members.get("monitoring") or [])
    if chosen:
        return chosen
    fallback = members.get("proxy") if mode == "pd" else members.get("single")
    return list(fallback or [])[:1]


def _address(host: str, hosts: Mapping[str, Mapping[str, Any]], view: Optional[HostView]) -> str:
    if host in hosts and hosts[host].get("ip"):
        return str(hosts[host]["ip"])
    ip = view.get("ascend_local_ip", to_str, required=False) if view is not None else None
    return ip or host


def _target(address: str, port: int, labels: Mapping[str, Any]) -> Dict[str, Any]:
    labels = {k: str(v) for k, v in labels.items() if v is not None}
    return {"target": f"{url_address(address)}:{port}", "labels": labels}


def _collides(host: str, port: int, variable: str, taken: Sequence[Mapping[str, Any]], issues: Issues) -> None:
    for claim in taken:
        if claim["first"] <= port <= claim["last"]:
            span = str(claim["first"]) if claim["first"] == claim["last"] else f"{claim['first']}-{claim['last']}"
            issues.error(host, variable, f"port {port} overlaps {claim['what']} ({span}, {claim['variable']})")


def monitoring_record(
    plan: Mapping[str, Any],
    members: Mapping[str, Sequence[str]],
    views: Mapping[str, HostView],
    issues: Issues,
) -> Dict[str, Any]:
    """The ``monitoring`` record of ``plan`` (see the module docstring); port collisions are errors."""
    hosts = plan["hosts"]
    vllm, proxies, nodes, exporters = [], [], [], []
    for name, record in hosts.items():
        address = _address(name, hosts, views.get(name))
        for server in record["servers"]:
            labels = {
                "instance": server["instance"],
                "role": server["role"],
                "rank": server["dp_rank"],
                "host": name,
                "server": server["name"],
            }
            vllm.append(_target(address, server["port"], labels))
        proxy = record.get("proxy")
        if proxy:
            labels = {"instance": "proxy", "role": "proxy", "host": name, "server": proxy["name"]}
            proxies.append(_target(address, proxy["port"], labels))
        if record["servers"] and name in views:
            port = views[name].port("ascend_node_exporter_port")
            if port is None:
                continue
            _collides(name, port, "ascend_node_exporter_port", record["ports"], issues)
            exporter = {"host": name, "ip": address, "port": port, "target": f"{url_address(address)}:{port}"}
            exporters.append(exporter)
            nodes.append(_target(address, port, {"instance": name, "role": "node", "host": name}))
    prometheus = []
    for name in monitoring_hosts(members, plan["mode"]):
        view = views.get(name)
        port = view.port("ascend_prometheus_port") if view is not None else None
        if port is None:
            continue
        taken = list(hosts[name]["ports"]) if name in hosts else []
        exporter = {"what": "node exporter port", "variable": "ascend_node_exporter_port"}
        taken += [{"first": e["port"], "last": e["port"], **exporter} for e in exporters if e["host"] == name]
        _collides(name, port, "ascend_prometheus_port", taken, issues)
        address = _address(name, hosts, view)
        prometheus.append({"host": name, "ip": address, "port": port, "url": f"http://{url_address(address)}:{port}"})
    targets = {"vllm": vllm, "pd_proxy": proxies, "node": nodes}
    return {
        "prometheus": prometheus,
        "exporters": exporters,
        "scrape": [
            {"job": job, "metrics_path": METRICS_PATH, "params": PARAMS.get(job, {}), "targets": targets[job]}
            for job in JOBS
            if targets[job]
        ],
    }
