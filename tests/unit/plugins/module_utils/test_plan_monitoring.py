# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan's monitoring record: where Prometheus runs, the exporters, every scrape target."""

from __future__ import annotations

from typing import Any

from tests.unit.plugins.module_utils.plan_helpers import CATALOGUE, build_plan, has_error, ok, plan, servers, site


def targets(document: dict[str, Any], job: str) -> list[tuple[str, dict[str, str]]]:
    jobs = {j["job"]: j for j in document["monitoring"]["scrape"]}
    assert jobs[job]["metrics_path"] == "/metrics"
    return [(t["target"], t["labels"]) for t in jobs[job]["targets"]]


def test_pd_every_rank_the_proxy_and_the_npu_hosts_are_scraped_from_the_proxy_host() -> None:
    document = ok(plan())
    monitoring = document["monitoring"]
    # No group monitoring: Prometheus goes to the first proxy host.
    assert monitoring["prometheus"] == [
        {"host": "a3-node1", "ip": "192.0.2.11", "port": 9090, "url": "http://192.0.2.11:9090"}
    ]
    assert targets(document, "vllm") == [
        ("192.0.2.11:7000", {"instance": "prefill0", "role": "prefill", "rank": "0", "host": "a3-node1",
                             "server": "vllm-prefill0-dp0"}),
        ("192.0.2.11:7001", {"instance": "prefill0", "role": "prefill", "rank": "1", "host": "a3-node1",
                             "server": "vllm-prefill0-dp1"}),
        ("192.0.2.12:7100", {"instance": "decode0", "role": "decode", "rank": "0", "host": "a3-node2",
                             "server": "vllm-decode0-dp0"}),
        ("192.0.2.12:7101", {"instance": "decode0", "role": "decode", "rank": "1", "host": "a3-node2",
                             "server": "vllm-decode0-dp1"}),
    ]  # fmt: skip
    # The same addresses the servers' and the proxy's own records give.
    assert [t for t, _ in targets(document, "vllm")] == [s["url"].removeprefix("http://") for s in servers(document)]
    assert targets(document, "pd_proxy") == [
        ("192.0.2.11:8009", {"instance": "proxy", "role": "proxy", "host": "a3-node1", "server": "vllm-pd-proxy"})
    ]
    assert targets(document, "node") == [
        ("192.0.2.11:9100", {"instance": "a3-node1", "role": "node", "host": "a3-node1"}),
        ("192.0.2.12:9100", {"instance": "a3-node2", "role": "node", "host": "a3-node2"}),
    ]
    assert [(e["host"], e["target"]) for e in monitoring["exporters"]] == [
        ("a3-node1", "192.0.2.11:9100"),
        ("a3-node2", "192.0.2.12:9100"),
    ]
    # Not in the hosts' ports: preflight wants those free before a deployment, and the node
    # exporter outlives one.
    assert all(p["first"] not in (9090, 9100) for h in document["hosts"].values() for p in h["ports"])


def test_group_monitoring_names_the_prometheus_hosts_even_outside_the_deployment() -> None:
    hostvars, groups = site()
    hostvars["a3-mon"] = {"ascend_local_ip": "192.0.2.50", "ascend_prometheus_port": "9091"}
    groups["monitoring"] = ["a3-mon"]
    document = ok(build_plan(hostvars, groups, CATALOGUE))
    assert document["monitoring"]["prometheus"] == [
        {"host": "a3-mon", "ip": "192.0.2.50", "port": 9091, "url": "http://192.0.2.50:9091"}
    ]
    # A monitoring host is not an NPU host: no exporter there, and not a deployment host.
    assert "a3-mon" not in document["hosts"]
    assert "a3-mon" not in {e["host"] for e in document["monitoring"]["exporters"]}


def test_a_typo_on_a_monitoring_host_is_refused() -> None:
    hostvars, groups = site()
    hostvars["a3-mon"] = {"ascend_prometheus_prot": 9091}
    groups["monitoring"] = ["a3-mon"]
    has_error(build_plan(hostvars, groups, CATALOGUE), "a3-mon", "ascend_prometheus_prot", "ascend_prometheus_port")


def test_single_node_scrapes_each_server_without_a_rank_from_the_first_single_host() -> None:
    document = ok(plan("a2"))
    hosts = list(document["hosts"])
    assert [p["host"] for p in document["monitoring"]["prometheus"]] == hosts[:1]
    vllm = targets(document, "vllm")
    assert [labels["host"] for _, labels in vllm] == hosts
    assert all(labels["role"] == "single" and "rank" not in labels for _, labels in vllm)
    assert "pd_proxy" not in {j["job"] for j in document["monitoring"]["scrape"]}


def test_monitoring_ports_that_collide_with_the_deployment_name_host_and_variable() -> None:
    has_error(plan(ascend_node_exporter_port=7001), "a3-node1", "ascend_node_exporter_port", "HTTP port of prefill0")
    has_error(plan(ascend_prometheus_port=8009), "a3-node1", "ascend_prometheus_port", "PD proxy port")
    has_error(plan(ascend_prometheus_port=9100), "a3-node1", "ascend_prometheus_port", "node exporter port")
    has_error(plan(ascend_prometheus_port="http"), "a3-node1", "ascend_prometheus_port")
