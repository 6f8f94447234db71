# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""health_targets over records of a real plan."""

from __future__ import annotations

from ansible_collections.ascend.vllm.plugins.filter.health_targets import health_targets
from tests.unit.plugins.module_utils.plan_helpers import ok, plan


def servers(site: str, **extra: object) -> list[dict]:
    document = ok(plan(site, **extra))
    return document["hosts"][next(iter(document["hosts"]))]["servers"]


def test_pd_ranks() -> None:
    assert health_targets(servers("a3")) == [
        {"name": "vllm-prefill0-dp0", "url": "http://127.0.0.1:7000/health", "what": "prefill0 rank 0, port 7000"},
        {"name": "vllm-prefill0-dp1", "url": "http://127.0.0.1:7001/health", "what": "prefill0 rank 1, port 7001"},
    ]


def test_single_node_server() -> None:
    assert health_targets(servers("a2")) == [
        {"name": "vllm-single", "url": "http://127.0.0.1:8000/health", "what": "single0, port 8000"}
    ]
