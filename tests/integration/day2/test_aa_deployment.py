"""The shared day-2 deployment itself: 1P2D on five simulated nodes, serving through the proxy."""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.day2.conftest import Day2, explain
from tests.sim_cluster import node

pytestmark = pytest.mark.docker


def test_one_prefill_and_two_decode_instances_behind_the_proxy(day2: Day2) -> None:
    plan = day2.plan
    assert plan["shape"] == {"prefill": 1, "decode": 2}
    assert [(i["name"], i["hosts"]) for i in plan["instances"]] == [
        ("prefill0", [day2.node(1)]),
        ("decode0", [day2.node(2)]),
        ("decode1", [day2.node(3)]),
    ]
    proxy = plan["hosts"][day2.node(4)]["proxy"]
    health = json.loads(node(day2.node(4), "curl", "-fsS", f"http://127.0.0.1:{proxy['port']}/health").stdout)
    assert health["decode"] == {"healthy": 4, "total": 4} and health["prefill"] == {"healthy": 2, "total": 2}


def test_a_rerun_changes_nothing(day2: Day2) -> None:
    again = day2.playbook("playbooks/pd_1p2d.yml")
    assert again.returncode == 0, explain(again)
    changed = [int(n) for n in re.findall(r"changed=(\d+)", again.stdout)]
    assert changed and not any(changed), again.stdout[-3000:]
