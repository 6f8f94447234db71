"""The runtime fault matrix's 2P variant: a prefill rank killed when another prefill group can serve.

node5 joins group prefill and pd.yml grows the shared deployment to 2P2D (prefill0 on node1,
prefill1 on node5, each a DP group of two ranks). Under steady load, one rank of prefill1 is
killed: with expert parallelism its sibling rank stalls, so the proxy must hold the whole group
and send every prefill to prefill0. Requests caught in the moment of the kill may get a clear
error; none may be bad (a hang, or HTTP 200 with an empty or cut body), and once the group is
held none may fail at all. The remedy is the operator's: rolling_restart.yml of prefill1 (no
downtime accepted: prefill0 serves meanwhile). The module's fixture shrinks the deployment back
to 1P2D, as test_scale.py does for decode, so the tests after it find it as it was.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.faults import FaultRecorder
from tests.integration.day2.conftest import Day2, explain
from tests.integration.day2.test_faults_runtime import WHOLE, load_on, observed, ranks, roll, wait_health
from tests.sim_cluster import node

pytestmark = [pytest.mark.docker, pytest.mark.fault]

TWO_PREFILL = {**WHOLE, "prefill": {"healthy": 4, "total": 4}}


@pytest.fixture(scope="module")
def two_prefill(day2: Day2) -> Iterator[Day2]:
    try:
        day2.set_groups(prefill=[1, 5])
        grown = day2.playbook("playbooks/pd.yml")
        assert grown.returncode == 0, explain(grown)
        assert day2.plan["shape"] == {"prefill": 2, "decode": 2}
        wait_health(day2, TWO_PREFILL, timeout=90)
        yield day2
    finally:
        day2.set_groups(prefill=[1])
        shrunk = day2.playbook("playbooks/pd.yml")
        assert shrunk.returncode == 0, explain(shrunk)
        wait_health(day2, WHOLE, timeout=90)


def test_a_prefill_rank_killed_with_another_prefill_group(two_prefill: Day2, fault: FaultRecorder) -> None:
    day2 = two_prefill
    fault.describe(
        case="prefill rank killed (2P: another prefill group serves)",
        layer="runtime",
        injected="docker kill of prefill1's rank 1 (node5) under load on 2P2D; its other rank stalls",
        expected="the proxy holds the whole of prefill1 and prefills on prefill0; none bad; no failure once "
        "the group is held; rolling_restart of prefill1 (no downtime) brings it back",
    )
    members = ranks(day2, "prefill1")
    assert [host for host, _name in members] == [day2.node(5)] * 2, members
    victim_host, victim = members[1]
    with load_on(day2) as load:
        load.wait_for(10)
        node(victim_host, "docker", "kill", victim)
        held_after = wait_health(day2, {**WHOLE, "prefill": {"healthy": 2, "total": 4}}, timeout=60)
        failed_by_the_hold = load.failed
        load.wait_for(load.total + 30)
        failed_after_the_hold = load.failed - failed_by_the_hold
    fault.observe(
        observed(
            load,
            f"group held {held_after:.1f} s after the kill; {failed_by_the_hold} failed before the hold, "
            f"{failed_after_the_hold} after",
        )
    )
    print(f"\nprefill rank killed (2P): {fault.row.observed}")
    assert load.bad == 0, load.failures[:5]
    assert set(load.kinds) <= {"error answer", "error event"}, load.kinds
    assert failed_after_the_hold == 0, load.failures[failed_by_the_hold:][:5]
    assert load.succeeded >= 30
    roll(day2, "prefill1")
    wait_health(day2, TWO_PREFILL, timeout=60)
