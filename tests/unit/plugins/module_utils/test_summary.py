# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment summary over a real plan and endpoint_probe results shaped as the module returns them."""

from __future__ import annotations

from typing import Any

from ansible_collections.ascend.vllm.plugins.module_utils.summary import classify, summary_lines
from tests.unit.plugins.module_utils.plan_helpers import ok, plan


def plan_of(site: str, **extra: Any) -> dict[str, Any]:
    return ok(plan(site, **extra))


def health_only(server: dict[str, Any]) -> dict[str, Any]:
    return {"item": server, "changed": False, "health_wait_s": 0.2, "health_attempts": 1, "models": ["MiniMax-M2.7"]}


FULL = {
    "health_wait_s": 0.01,
    "models": ["MiniMax-M2.7"],
    "chat": {
        "latency_s": 1.25,
        "completion_tokens": 12,
        "finish_reason": "stop",
        "content_excerpt": "<think>Hi</think>\n I am   MiniMax.",
    },
    "tool_call": {
        "name": "get_current_weather",
        "arguments": {"city": "上海"},
        "latency_s": 0.8,
        "finish_reason": "tool_calls",
    },
    "stream": {"ttft_s": 0.0631, "total_s": 0.5, "chunks": 9, "completion_tokens": 8, "finish_reason": "stop"},
}


def test_pd_summary_one_row_per_instance_and_the_proxy() -> None:
    plan = plan_of("a3")
    ranks = [s for record in plan["hosts"].values() for s in record["servers"]]
    proxy = plan["hosts"]["a3-node1"]["proxy"]
    probes = [health_only(s) for s in ranks] + [{"item": proxy, **FULL}, {"skipped": True, "item": ranks[0]}]
    lines = summary_lines(plan, probes)
    assert lines[0] == "Deployment summary: scenario a3_pd_1p1d_200k, model MiniMax-M2.7"
    table = {line.split()[0]: line for line in lines[3:6]}
    assert table["prefill0"].split()[1:7] == ["prefill", "a3-node1", "0-15", "7000-7001", "18000-18015", "2/2"]
    assert table["decode0"].split()[1:7] == ["decode", "a3-node2", "0-15", "7100-7101", "19000-19015", "2/2"]
    assert "TTFT 0.063 s, chat 1.250 s, tool call get_current_weather" in table["proxy"]
    assert "Endpoint: http://192.0.2.11:8009/v1 (OpenAI API, model MiniMax-M2.7)" in lines
    assert "Chat answer (stop): <think>Hi</think> I am MiniMax." in lines
    assert 'Tool call: get_current_weather({"city": "上海"})' in lines


def test_an_unhealthy_rank_shows_in_its_instance_row() -> None:
    plan = plan_of("a3")
    ranks = [s for record in plan["hosts"].values() for s in record["servers"]]
    probes = [health_only(ranks[0]), {"item": ranks[1], "failed": True, "step": "health"}]
    row = next(line for line in summary_lines(plan, probes) if line.startswith("prefill0"))
    assert " 1/2 healthy " in row


def test_single_node_rows_carry_their_own_probe() -> None:
    plan = plan_of("a2")
    servers = [s for record in plan["hosts"].values() for s in record["servers"]]
    lines = summary_lines(plan, [{"item": servers[0], **FULL}, health_only(servers[1])])
    rows = {line.split()[0]: line for line in lines if line.startswith("single")}
    assert "TTFT 0.063 s" in rows["single0"] and rows["single1"].rstrip().endswith("healthy")
    assert [line for line in lines if line.startswith("Endpoint:")] == [
        "Endpoint: http://a2-node1:8000/v1 (OpenAI API, model MiniMax-M2.7)",
        "Endpoint: http://a2-node2:8000/v1 (OpenAI API, model MiniMax-M2.7)",
    ]


def test_classify_ignores_skipped_and_unknown_items() -> None:
    plan = plan_of("a3")
    proxy = plan["hosts"]["a3-node1"]["proxy"]
    servers, proxies = classify([{"skipped": True, "item": proxy}, {"item": "text"}, {"item": proxy, **FULL}])
    assert servers == {} and list(proxies) == ["http://192.0.2.11:8009"]


def test_pd_rank_health_from_container_health_results() -> None:
    plan = plan_of("a3")
    ranks = plan["hosts"]["a3-node1"]["servers"]
    health = {
        "a3-node1": {"containers": [{"name": r["container"]["name"], "healthy": True} for r in ranks]},
        "a3-node2": {
            "containers": [
                {"name": "vllm-decode0-dp0", "healthy": True},
                {"name": "vllm-decode0-dp1", "healthy": False},
            ]
        },
        "a3-node3": None,
    }
    rows = {line.split()[0]: line for line in summary_lines(plan, [], health)[3:5]}
    assert " 2/2 healthy " in rows["prefill0"] and " 1/2 healthy " in rows["decode0"]
