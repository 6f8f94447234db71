# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the role ascend.vllm.monitoring ships: rules (promtool), the scrape configuration a plan
gives (promtool), the Grafana dashboard's queries, and the NPU collector package run from its zip.

promtool comes with Debian's prometheus package (tools/promtool.sh installs it; `make test` does
and sets ASCEND_REQUIRE_PROMTOOL=1, so CI never skips these).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest
import yaml

from ansible_collections.ascend.vllm.plugins.module_utils.npu_metrics import npu_textfile
from ansible_collections.ascend.vllm.plugins.module_utils.npu_smi import parse_npu_smi_info
from ansible_collections.ascend.vllm.plugins.module_utils.prometheus import prometheus_config
from ansible_collections.ascend.vllm.plugins.module_utils.pyz import build_zip
from tests.unit.plugins.module_utils.plan_helpers import ok, plan

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "monitoring"
RULES = ROLE / "files" / "rules" / "ascend-vllm.rules.yml"
DASHBOARD = ROLE / "files" / "grafana" / "ascend-vllm-dashboard.json"
NPU_SMI = ROOT / "tests" / "unit" / "fixtures" / "npu_smi"
sys.path.insert(0, str(ROOT / "sim"))


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("ASCEND_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool not found: run tools/promtool.sh (installs Debian's prometheus)")
        pytest.skip("promtool absent (tools/promtool.sh installs it)")
    return found


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_checks_the_rules() -> None:
    done = run(promtool(), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    done = run(promtool(), "test", "rules", "ascend-vllm.rules.test.yml", cwd=ROOT / "tests" / "promtool")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_the_role_promises_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert alerts >= {
        "AscendVllmTargetDown",
        "AscendPdProxyBackendErrors",
        "AscendVllmTtftP99High",
        "AscendVllmKvCacheNearlyFull",
        "AscendVllmRequestsWaiting",
    }
    tests = yaml.safe_load((ROOT / "tests" / "promtool" / "ascend-vllm.rules.test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert tested == alerts


@pytest.mark.parametrize("site", ["a3", "a2"])
def test_promtool_accepts_the_configuration_a_plan_gives(site: str, tmp_path: Path) -> None:
    record = ok(plan(site))["monitoring"]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(record, [str(RULES)], "15s", "10s", "15s"), sort_keys=False))
    done = run(promtool(), "check", "config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr


# --- the dashboard ------------------------------------------------------------------------------

# PromQL words that are no metric: functions, aggregations, keywords.
PROMQL = {
    "sum", "min", "max", "avg", "count", "by", "without", "or", "and", "unless", "on", "ignoring",
    "rate", "irate", "increase", "histogram_quantile", "time", "bool", "offset",
}  # fmt: skip


def metric_names(expr: str) -> Set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL and not re.fullmatch(r"[0-9.e]+", w)}


def panel_queries() -> List[Dict[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            queries.append({"panel": panel["title"], "expr": target["expr"]})
    return queries


def exported_names() -> Set[str]:
    """Every series a scrape of the deployment or the rules produce."""
    from ascend_sim.vllm.metrics import Metrics

    names = {"up"}
    for line in Metrics("m").render().splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line)[0])
    proxy = (ROOT / "proxy" / "ascend_pd_proxy" / "metrics.py").read_text()
    for name in re.findall(r'"(pd_proxy_[a-z_]+)"', proxy):
        names |= {name, f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    npu = npu_textfile(parse_npu_smi_info((NPU_SMI / "a3_busy_mixed_health.txt").read_text()))
    names |= {re.split(r"[{ ]", line)[0] for line in npu.splitlines() if line and not line.startswith("#")}
    names |= {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}
    return names


def test_every_panel_queries_series_the_deployment_exports() -> None:
    known = exported_names()
    queries = panel_queries()
    assert len(queries) >= 20
    for query in queries:
        unknown = metric_names(query["expr"]) - known
        assert not unknown, f"panel {query['panel']!r} queries {sorted(unknown)}, which nothing exports"


def test_the_dashboard_covers_what_operators_watch() -> None:
    used = set().union(*(metric_names(q["expr"]) for q in panel_queries()))
    assert used >= {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "pd_proxy_requests_total",
        "pd_proxy_backend_requests_total",
        "backend:pd_proxy_backend_errors:ratio_rate5m",
        "ascend_npu_chip_healthy",
        "ascend_npu_hbm_used_bytes",
        "ascend_npu_aicore_utilization_ratio",
    }


def test_metric_names_reads_promql() -> None:
    expr = 'histogram_quantile(0.5, sum by (instance, le) (rate(vllm:x_bucket{a="b"}[$__rate_interval]))) or up * 0'
    assert metric_names(expr) == {"vllm:x_bucket", "up"}


# --- the NPU collector, as the timer runs it --------------------------------------------------


def fake_npu_smi(tmp_path: Path, fixture: str, rc: int = 0) -> Path:
    tool = tmp_path / "npu-smi"
    tool.write_text(f"#!/bin/sh\ncat {NPU_SMI / fixture}\nexit {rc}\n")
    tool.chmod(0o755)
    return tool


def collect(tmp_path: Path, tool: Path) -> subprocess.CompletedProcess:
    package = tmp_path / "ascend_npu_exporter.zip"
    package.write_bytes(build_zip(str(ROLE / "files" / "ascend_npu_exporter")))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(package)}
    argv = [sys.executable, "-m", "ascend_npu_exporter", "--output", str(tmp_path / "ascend_npu.prom"), "--npu-smi"]
    return subprocess.run([*argv, str(tool)], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_collector_zip_reads_npu_smi_and_writes_the_textfile(tmp_path: Path) -> None:
    done = collect(tmp_path, fake_npu_smi(tmp_path, "a3_busy_mixed_health.txt"))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "ascend_npu.prom").read_text()
    assert text == npu_textfile(parse_npu_smi_info((NPU_SMI / "a3_busy_mixed_health.txt").read_text()))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ascend_npu.")] == []


def test_a_failing_npu_smi_is_exported_as_such(tmp_path: Path) -> None:
    done = collect(tmp_path, fake_npu_smi(tmp_path, "dcmi_init_failed_8005.txt", rc=255))
    assert done.returncode == 0
    assert "dcmi module initialize failed" in done.stderr
    assert (tmp_path / "ascend_npu.prom").read_text() == npu_textfile(None)
