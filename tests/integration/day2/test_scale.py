"""Scale out and in by the inventory: node5 added to group decode and pd.yml re-run, then removed.

Under steady load through the proxy: no request may fail, the containers already running are
left alone (same ids, not restarted), the proxy is not restarted (it learns of the new ranks
and forgets the removed ones by SIGHUP), and after the removal node5 runs nothing of ours.
"""

from __future__ import annotations

from typing import Dict

import pytest

from tests.integration.day2.conftest import Day2, explain
from tests.integration.day2.load import SteadyLoad
from tests.integration.day2.test_rolling_restart import proxy_health
from tests.sim_cluster import node

pytestmark = pytest.mark.docker


def ours(day2: Day2, index: int) -> Dict[str, str]:
    """Our containers on node ``index``: name -> id and StartedAt."""
    listed = node(day2.node(index), "docker", "ps", "-aq", "--filter", "label=ascend.vllm.role").stdout.split()
    if not listed:
        return {}
    out = node(day2.node(index), "docker", "inspect", "-f", "{{.Name}} {{.Id}} {{.State.StartedAt}}", *listed).stdout
    return {line.split()[0].lstrip("/"): " ".join(line.split()[1:]) for line in out.splitlines()}


def test_a_decode_host_added_then_removed_under_load(day2: Day2) -> None:
    before = {i: ours(day2, i) for i in (1, 2, 3, 4)}
    assert ours(day2, 5) == {}
    restored = False
    try:
        day2.set_groups(decode=[2, 3, 5])
        with SteadyLoad(day2.plan["endpoints"][0], day2.plan["served_model_name"]) as grow:
            grow.wait_for(10)
            grown = day2.playbook("playbooks/pd.yml")
            grow.wait_for(grow.total + 10)
        print(f"\nscale out (node5 added to decode) under load: {grow.summary()}")
        assert grown.returncode == 0, explain(grown)
        assert grow.failed == 0, grow.failures[:5]
        assert day2.plan["shape"] == {"prefill": 1, "decode": 3}
        assert {i: ours(day2, i) for i in (1, 2, 3, 4)} == before  # nothing else restarted, proxy included
        assert sorted(ours(day2, 5)) == ["vllm-decode2-dp0", "vllm-decode2-dp1"]
        assert proxy_health(day2)["decode"] == {"healthy": 6, "total": 6}

        day2.set_groups(decode=[2, 3])
        with SteadyLoad(day2.plan["endpoints"][0], day2.plan["served_model_name"]) as shrink:
            shrink.wait_for(10)
            shrunk = day2.playbook("playbooks/pd.yml")
            shrink.wait_for(shrink.total + 10)
        restored = shrunk.returncode == 0
        print(f"scale in (node5 taken out of decode) under load: {shrink.summary()}")
        assert shrunk.returncode == 0, explain(shrunk)
        assert shrink.failed == 0, shrink.failures[:5]
        assert day2.plan["shape"] == {"prefill": 1, "decode": 2}
        assert ours(day2, 5) == {}
        assert {i: ours(day2, i) for i in (1, 2, 3, 4)} == before
        assert proxy_health(day2)["decode"] == {"healthy": 4, "total": 4}
    finally:
        if not restored:  # leave the shared deployment as it was found
            day2.set_groups(decode=[2, 3])
            day2.playbook("playbooks/pd.yml")
