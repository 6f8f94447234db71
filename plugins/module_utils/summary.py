# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment's closing summary: one line per instance (and proxy), then the endpoint.

Pure: built from the plan and what verification measured - each server's health on its host
and the endpoint probe (chat, tool call, stream) through the proxy or against the server.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import format_chips
from ansible_collections.ascend.vllm.plugins.module_utils.text_table import format_rows

COLUMNS = ("Instance", "Role", "Host(s)", "Chips", "HTTP ports", "KV ports", "Health", "Through the endpoint")


def _span(values: List[int]) -> str:
    return format_chips(sorted(set(values))).replace(",", ", ") if values else "-"


def probe_text(probe: Optional[Mapping[str, Any]]) -> str:
    """What an endpoint_probe result proved, in a few words (TTFT first)."""
    if not probe:
        return "-"
    if probe.get("failed"):
        return f"FAILED at {probe.get('step', '?')}"
    parts = []
    if probe.get("stream"):
        parts.append(f"TTFT {probe['stream']['ttft_s']:.3f} s")
    if probe.get("chat"):
        parts.append(f"chat {probe['chat']['latency_s']:.3f} s")
    if probe.get("tool_call"):
        parts.append(f"tool call {probe['tool_call']['name']}")
    return ", ".join(parts) or "healthy"


def classify(probes: List[Mapping[str, Any]]) -> Tuple[Dict[str, Mapping[str, Any]], Dict[str, Mapping[str, Any]]]:
    """endpoint_probe loop results -> (by "host/container" for servers, by URL for proxies).

    Each result's ``item`` is the record probed: a server record (it has an ``argv``) or a
    proxy record (it has ``prefill``); skipped results are left out.
    """
    servers: Dict[str, Mapping[str, Any]] = {}
    proxies: Dict[str, Mapping[str, Any]] = {}
    for result in probes:
        item = result.get("item") or {}
        if result.get("skipped") or not isinstance(item, Mapping):
            continue
        if "argv" in item:
            servers[f"{item['host']}/{item['name']}"] = result
        elif "prefill" in item:
            proxies[str(item["url"])] = result
    return servers, proxies


def healthy_servers(
    by_server: Mapping[str, Mapping[str, Any]], health: Mapping[str, Optional[Mapping[str, Any]]]
) -> Set[str]:
    """ "host/container" of every server found healthy: by an endpoint_probe that passed its health
    step, or by a container_health result of its host (``health``: host -> that result)."""
    healthy = {key for key, result in by_server.items() if not result.get("failed") and "health_wait_s" in result}
    for host, result in health.items():
        for container in (result or {}).get("containers") or []:
            if container.get("healthy"):
                healthy.add(f"{host}/{container['name']}")
    return healthy


def summary_lines(
    plan: Mapping[str, Any],
    probes: List[Mapping[str, Any]],
    health: Optional[Mapping[str, Optional[Mapping[str, Any]]]] = None,
) -> List[str]:
    """The table: one row per instance and per proxy, then the endpoint(s)."""
    by_server, by_proxy = classify(probes)
    healthy_set = healthy_servers(by_server, health or {})
    servers: Dict[str, Dict[str, Any]] = {
        f"{host}/{s['name']}": s for host, record in plan["hosts"].items() for s in record["servers"]
    }
    rows = []
    for instance in plan["instances"]:
        members = [servers[key] for key in instance["servers"]]
        healthy = sum(key in healthy_set for key in instance["servers"])
        per_host: Dict[str, List[int]] = {}
        for s in members:
            per_host.setdefault(s["host"], []).extend(s["chips"])
        chips = "; ".join(
            f"{host}: {format_chips(sorted(c))}" if len(per_host) > 1 else format_chips(sorted(c))
            for host, c in per_host.items()
        )
        kv = [p for s in members if s["kv_ports"] for p in range(s["kv_ports"][0], s["kv_ports"][1] + 1)]
        through = probe_text(by_server.get(instance["servers"][0])) if plan["mode"] == "single" else "via the proxy"
        rows.append(
            (
                instance["name"],
                instance["role"],
                ", ".join(instance["hosts"]),
                chips,
                _span([s["port"] for s in members]),
                _span(kv),
                f"{healthy}/{len(members)} healthy",
                through,
            )
        )
    for host, record in plan["hosts"].items():
        proxy = record.get("proxy")
        if proxy:
            backends = f"{len(proxy['prefill'])} P + {len(proxy['decode'])} D ranks"
            rows.append(
                ("proxy", "proxy", host, "-", str(proxy["port"]), "-", backends, probe_text(by_proxy.get(proxy["url"])))
            )
    lines = [f"Deployment summary: scenario {plan['scenario']}, model {plan['served_model_name']}", ""]
    lines += format_rows(COLUMNS, rows)
    lines += ["", *(f"Endpoint: {url}/v1 (OpenAI API, model {plan['served_model_name']})" for url in plan["endpoints"])]
    first = next(iter(by_proxy.values()), None) or next(iter(by_server.values()), None)
    lines += answers(first)
    return lines


def answers(probe: Optional[Mapping[str, Any]]) -> List[str]:
    """What the endpoint answered to the chat request and to the guide's tool call."""
    if not probe or probe.get("failed"):
        return []
    lines = []
    if probe.get("chat"):
        excerpt = " ".join(str(probe["chat"].get("content_excerpt", "")).split())
        lines.append(f"Chat answer ({probe['chat'].get('finish_reason')}): {excerpt}")
    if probe.get("tool_call"):
        call = probe["tool_call"]
        lines.append(f"Tool call: {call['name']}({json.dumps(call['arguments'], ensure_ascii=False)})")
    return lines
