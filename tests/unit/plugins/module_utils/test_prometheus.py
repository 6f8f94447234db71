# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""prometheus.yml from the plan, and the targets' state read from Prometheus's API."""

from __future__ import annotations

import copy
from typing import Any, Dict

from ansible_collections.ascend.vllm.plugins.module_utils.prometheus import (
    MISSING,
    UNKNOWN,
    UP,
    describe,
    expected_targets,
    failure_message,
    progress_line,
    prometheus_config,
    target_states,
)
from tests.unit.plugins.module_utils.plan_helpers import ok, plan

RULES = ["/etc/prometheus/ascend-vllm/ascend-vllm.rules.yml"]


def active(job: str, address: str, labels: Dict[str, str], health: str = "up", error: str = "") -> Dict[str, Any]:
    """One entry of /api/v1/targets's activeTargets, as Prometheus 2.42 answers."""
    return {
        "discoveredLabels": {
            "__address__": address,
            "__metrics_path__": "/metrics",
            "__scheme__": "http",
            "__scrape_interval__": "15s",
            "__scrape_timeout__": "10s",
            "job": job,
            **labels,
        },
        "labels": {"job": job, **labels},
        "scrapePool": job,
        "scrapeUrl": f"http://{address}/metrics",
        "globalUrl": f"http://{address}/metrics",
        "lastError": error,
        "lastScrape": "2026-12-03T13:40:01.123Z",
        "lastScrapeDuration": 0.0031,
        "health": health,
        "scrapeInterval": "15s",
        "scrapeTimeout": "10s",
    }


def test_the_configuration_scrapes_every_target_of_the_plan_with_its_labels() -> None:
    record = ok(plan())["monitoring"]
    config = prometheus_config(record, RULES, "15s", "10s", "30s")
    assert config["global"] == {"scrape_interval": "15s", "scrape_timeout": "10s", "evaluation_interval": "30s"}
    assert config["rule_files"] == RULES
    assert [j["job_name"] for j in config["scrape_configs"]] == ["vllm", "pd_proxy", "node"]
    vllm = config["scrape_configs"][0]
    assert vllm["metrics_path"] == "/metrics"
    assert vllm["static_configs"][3] == {
        "targets": ["192.0.2.12:7101"],
        "labels": {
            "instance": "decode0",
            "role": "decode",
            "rank": "1",
            "host": "a3-node2",
            "server": "vllm-decode0-dp1",
        },
    }
    scraped = [t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert scraped == [t["target"] for t in expected_targets(record)]
    assert len(scraped) == 4 + 1 + 2


def test_the_proxy_is_asked_for_its_own_series_only() -> None:
    """Its /metrics relays the instances' spec-decode counters (for `vllm bench serve`); Prometheus
    scrapes the instances themselves and would count those twice."""
    config = prometheus_config(ok(plan())["monitoring"], RULES, "15s", "10s", "30s")
    params = {job["job_name"]: job.get("params") for job in config["scrape_configs"]}
    assert params == {"vllm": None, "pd_proxy": {"relay": ["false"]}, "node": None}


def test_states_name_what_is_not_up_and_what_prometheus_does_not_scrape() -> None:
    record = ok(plan())["monitoring"]
    expected = expected_targets(record)
    answer = {"status": "success", "data": {"activeTargets": [], "droppedTargets": []}}
    for target in expected:
        answer["data"]["activeTargets"].append(active(target["job"], target["target"], target["labels"]))
    down = answer["data"]["activeTargets"][3]
    down.update(
        health="down",
        lastError='Get "http://192.0.2.12:7101/metrics": dial tcp 192.0.2.12:7101: connect: connection refused',
    )
    answer["data"]["activeTargets"][5].update(health="unknown")
    del answer["data"]["activeTargets"][6]  # node a3-node2: an old configuration
    states = target_states(answer, expected)
    assert [s["health"] for s in states] == [UP, UP, UP, "down", UP, UNKNOWN, MISSING]
    assert describe(states[3]) == "vllm decode0 rank 1 (vllm-decode0-dp1 on a3-node2, 192.0.2.12:7101)"
    assert describe(states[4]) == "pd_proxy proxy (vllm-pd-proxy on a3-node1, 192.0.2.11:8009)"
    line = progress_line("a3-node1", states, 12.4)
    assert line.startswith("a3-node1: Prometheus: 4/7 targets up after 12 s; waiting for vllm decode0 rank 1")
    assert "connection refused" in line
    message = failure_message("a3-node1", "http://127.0.0.1:9090", states, 120)
    lines = message.splitlines()
    assert lines[0] == "a3-node1: 3 of 7 Prometheus targets not up after 120 s (http://127.0.0.1:9090):"
    assert lines[3] == (
        "  - node a3-node2 (a3-node2, 192.0.2.12:9100) missing: not in Prometheus's active targets "
        "(is its configuration the new one?)"
    )


def test_a_target_of_another_job_on_the_same_address_is_not_taken_for_ours() -> None:
    record = ok(plan())["monitoring"]
    expected = expected_targets(record)[:1]
    other = copy.deepcopy(expected[0])
    answer = {"data": {"activeTargets": [active("someone_else", other["target"], {})]}}
    assert target_states(answer, expected)[0]["health"] == MISSING
