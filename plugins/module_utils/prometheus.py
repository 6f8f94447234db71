# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus for the role ``monitoring``: its configuration from the plan, and its targets' state. Pure.

- ``prometheus_config``: the ``prometheus.yml`` document (as data) that scrapes every target of
  the plan's ``monitoring.scrape`` jobs with their labels, and loads the rule files;
- ``target_states``: what ``GET /api/v1/targets`` says about each expected target, and the
  progress and failure lines that name the targets that are not up.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

UP = "up"
# The options of ascend.vllm.prometheus_targets (the module and its action plugin).
TARGETS_ARGUMENT_SPEC: Dict[str, Any] = {
    "url": {"type": "str", "required": True},
    "targets": {"type": "list", "elements": "dict", "required": True},
    "timeout": {"type": "float", "default": 120},
    "delay": {"type": "float", "default": 2},
    "report_interval": {"type": "float", "default": 10},
    "round_seconds": {"type": "float"},
}
# A target Prometheus has not scraped yet; and one it does not scrape at all (an old config).
UNKNOWN = "unknown"
MISSING = "missing"


def prometheus_config(
    record: Mapping[str, Any],
    rule_files: Sequence[str],
    scrape_interval: str,
    scrape_timeout: str,
    evaluation_interval: str,
) -> Dict[str, Any]:
    """``prometheus.yml`` as data: one static config per target (each has its own labels)."""
    jobs = []
    for job in record.get("scrape") or []:
        config: Dict[str, Any] = {"job_name": job["job"], "metrics_path": job["metrics_path"]}
        if job.get("params"):
            config["params"] = {name: list(values) for name, values in job["params"].items()}
        config["static_configs"] = [
            {"targets": [target["target"]], "labels": dict(target["labels"])} for target in job["targets"]
        ]
        jobs.append(config)
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_timeout,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": list(rule_files),
        "scrape_configs": jobs,
    }


def expected_targets(record: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Every target of the record: ``{job, target, labels}``, in the record's order."""
    return [
        {"job": job["job"], "target": t["target"], "labels": dict(t["labels"])}
        for job in record.get("scrape") or []
        for t in job["targets"]
    ]


def target_states(answer: Mapping[str, Any], expected: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The state of each expected target in ``answer`` (``/api/v1/targets``'s JSON):
    ``{job, target, labels, health, error}``; ``missing`` when Prometheus does not scrape it."""
    seen: Dict[tuple, Mapping[str, Any]] = {}
    for active in (answer.get("data") or {}).get("activeTargets") or []:
        job = active.get("scrapePool") or (active.get("labels") or {}).get("job")
        address = (active.get("discoveredLabels") or {}).get("__address__") or active.get("scrapeUrl", "")
        seen[(job, address)] = active
    states = []
    for target in expected:
        active = seen.get((target["job"], target["target"]))
        if active is None:
            health, error = MISSING, "not in Prometheus's active targets (is its configuration the new one?)"
        else:
            health, error = active.get("health") or UNKNOWN, active.get("lastError") or ""
        states.append({**target, "health": health, "error": error})
    return states


def describe(state: Mapping[str, Any]) -> str:
    """``vllm decode0 rank 1 (vllm-decode0-dp1 on node3, 172.30.0.13:7101)``."""
    labels = state["labels"]
    rank = f" rank {labels['rank']}" if "rank" in labels else ""
    where = f"{labels['server']} on {labels['host']}, " if "server" in labels else f"{labels.get('host', '?')}, "
    return f"{state['job']} {labels.get('instance', '?')}{rank} ({where}{state['target']})"


def progress_line(host: str, states: Sequence[Mapping[str, Any]], elapsed: float) -> str:
    down = [s for s in states if s["health"] != UP]
    line = f"{host}: Prometheus: {len(states) - len(down)}/{len(states)} targets up after {elapsed:.0f} s"
    if down:
        line += "; waiting for " + "; ".join(_why(s) for s in down)
    return line


def _why(state: Mapping[str, Any]) -> str:
    error = f": {state['error']}" if state["error"] else ""
    return f"{describe(state)} {state['health']}{error}"


def failure_message(host: str, url: str, states: Sequence[Mapping[str, Any]], timeout: float) -> str:
    down = [s for s in states if s["health"] != UP]
    lines = [f"{host}: {len(down)} of {len(states)} Prometheus targets not up after {timeout:g} s ({url}):"]
    lines += [f"  - {_why(s)}" for s in down]
    return "\n".join(lines)
