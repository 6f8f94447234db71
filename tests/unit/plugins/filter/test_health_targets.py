# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""health_targets over records of a real plan."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ansible_collections.ascend.vllm.plugins.filter.health_targets import health_targets
from ansible_collections.ascend.vllm.plugins.module_utils.plan import build_plan

_spec = importlib.util.spec_from_file_location(
    "plan_inventory", Path(__file__).resolve().parents[2] / "fixtures" / "plan" / "inventory.py"
)
inventory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inventory)


def servers(site: str, **extra: object) -> list[dict]:
    result = build_plan(*inventory.load_inventory(site, extra), inventory.catalogue())
    return result["plan"]["hosts"][next(iter(result["plan"]["hosts"]))]["servers"]


def test_pd_ranks() -> None:
    assert health_targets(servers("a3")) == [
        {"name": "vllm-prefill0-dp0", "url": "http://127.0.0.1:7000/health", "what": "prefill0 rank 0, port 7000"},
        {"name": "vllm-prefill0-dp1", "url": "http://127.0.0.1:7001/health", "what": "prefill0 rank 1, port 7001"},
    ]


def test_single_node_server() -> None:
    assert health_targets(servers("a2")) == [
        {"name": "vllm-single", "url": "http://127.0.0.1:8000/health", "what": "single0, port 8000"}
    ]
