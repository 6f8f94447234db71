"""playbooks/monitoring.yml on the shared 1P2D deployment: a real Prometheus (Debian's package)
scraping every vLLM rank, the PD proxy and the NPU hosts; every panel of the Grafana dashboard
answered by it while traffic goes through the proxy; a re-run changes nothing.

The Prometheus host is the default one (no group monitoring): the proxy host, node4.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.integration.day2.conftest import Day2, explain
from tests.sim_cluster import ROOT, node

pytestmark = pytest.mark.docker

DASHBOARD = ROOT / "roles" / "monitoring" / "files" / "grafana" / "ascend-vllm-dashboard.json"
# What Grafana puts for $__rate_interval with the role's 15 s scrape interval: 4 x 15 s.
RATE_INTERVAL = "1m"
DATA_DEADLINE = 240.0


def prometheus(day2: Day2) -> Dict[str, Any]:
    return day2.plan["monitoring"]["prometheus"][0]


def api(day2: Day2, path: str, **params: str) -> Dict[str, Any]:
    """Prometheus's HTTP API, asked from its own host (as an operator's curl would be)."""
    entry = prometheus(day2)
    url = f"http://127.0.0.1:{entry['port']}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    answer = json.loads(node(entry["host"], "curl", "-fsS", url).stdout)
    assert answer["status"] == "success", answer
    return answer["data"]


def panel_queries() -> List[Dict[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        {"panel": p["title"], "ref": t["refId"], "expr": t["expr"].replace("$__rate_interval", RATE_INTERVAL)}
        for p in dashboard["panels"]
        if p["type"] != "row"
        for t in p["targets"]
    ]


def has_data(result: List[Dict[str, Any]]) -> bool:
    """At least one series with a number (a quantile over no observation is NaN: no data)."""
    return any(math.isfinite(float(series["value"][1])) for series in result)


class Traffic:
    """Chat requests through the proxy, one after the other, until stopped."""

    def __init__(self, url: str, model: str) -> None:
        self.url, self.model = url, model
        self.sent = self.ok = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            body = {
                "model": self.model,
                "messages": [{"role": "user", "content": f"Count to {self.sent % 7 + 3}, please."}],
                "max_tokens": 16,
                "stream": self.sent % 2 == 1,
            }
            request = urllib.request.Request(
                self.url + "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            self.sent += 1
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    answer.read()
                    self.ok += answer.status == 200
            except OSError:
                pass
            self.stop.wait(1.0)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(90)


def test_monitoring_check_mode_on_fresh_hosts_changes_nothing(day2: Day2) -> None:
    res = day2.playbook("playbooks/monitoring.yml", "--check", "--diff")
    assert res.returncode == 0, explain(res)
    changed = [int(n) for n in re.findall(r"changed=(\d+)", res.stdout)]
    assert any(changed), res.stdout[-3000:]
    assert "prometheus package would be installed" in res.stdout
    for index in (1, 2, 3, 4):
        assert node(day2.node(index), "dpkg-query", "-W", "prometheus", check=False).returncode != 0


def test_prometheus_scrapes_every_target_and_answers_every_panel(day2: Day2) -> None:
    res = day2.playbook("playbooks/monitoring.yml")
    assert res.returncode == 0, explain(res)
    assert "targets up after" in res.stdout + res.stderr

    plan = day2.plan
    expected = {(j["job"], t["target"]) for j in plan["monitoring"]["scrape"] for t in j["targets"]}
    # 4 decode + 2 prefill ranks, the proxy, the node exporters of the 3 NPU hosts
    assert len(expected) == 10 and prometheus(day2)["host"] == day2.node(4)
    active = api(day2, "/api/v1/targets", state="active")["activeTargets"]
    states = {(t["scrapePool"], t["discoveredLabels"]["__address__"]): t for t in active}
    assert set(states) == expected
    down = [f"{k}: {t['health']} {t['lastError']}" for k, t in states.items() if t["health"] != "up"]
    assert not down, down
    Path(ROOT / "tests" / "output").mkdir(exist_ok=True)
    (ROOT / "tests" / "output" / "monitoring-targets.json").write_text(json.dumps(active, indent=1))

    queries = panel_queries()
    empty = queries
    started = time.monotonic()
    with Traffic(plan["endpoints"][0], plan["served_model_name"]) as traffic:
        while empty and time.monotonic() - started < DATA_DEADLINE:
            time.sleep(5)
            empty = [q for q in empty if not has_data(api(day2, "/api/v1/query", query=q["expr"])["result"])]
    assert traffic.ok > 0, f"no request through the proxy succeeded ({traffic.sent} sent)"
    assert not empty, f"panels whose query returned no data after {DATA_DEADLINE:.0f} s:\n" + "\n".join(
        f"  {q['panel']} ({q['ref']}): {q['expr']}" for q in empty
    )
    print(f"every one of {len(queries)} panel queries answered after {time.monotonic() - started:.0f} s")

    # The NPU series come from the simulated npu-smi of the NPU hosts: 16 chips each.
    chips = api(day2, "/api/v1/query", query="count by (host) (ascend_npu_chip_healthy)")["result"]
    assert {c["metric"]["host"]: c["value"][1] for c in chips} == {day2.node(i): "16" for i in (1, 2, 3)}
    # vLLM's own labels survive next to the plan's: engine = the DP rank.
    ranks = api(day2, "/api/v1/query", query="vllm:num_requests_running")["result"]
    assert {(r["metric"]["instance"], r["metric"]["rank"], r["metric"]["engine"]) for r in ranks} == {
        ("prefill0", "0", "0"),
        ("prefill0", "1", "1"),
        ("decode0", "0", "0"),
        ("decode0", "1", "1"),
        ("decode1", "0", "0"),
        ("decode1", "1", "1"),
    }


def test_a_rerun_changes_nothing_and_the_deployment_still_serves(day2: Day2) -> None:
    again = day2.playbook("playbooks/monitoring.yml")
    assert again.returncode == 0, explain(again)
    changed = [int(n) for n in re.findall(r"changed=(\d+)", again.stdout)]
    assert changed and not any(changed), again.stdout[-3000:]
    proxy = day2.plan["hosts"][day2.node(4)]["proxy"]
    health = json.loads(node(day2.node(4), "curl", "-fsS", f"http://127.0.0.1:{proxy['port']}/health").stdout)
    assert health["decode"] == {"healthy": 4, "total": 4} and health["prefill"] == {"healthy": 2, "total": 2}
