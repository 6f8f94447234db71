# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rolling_restart_order and unplanned_containers over real plans."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.ascend.vllm.plugins.filter.rolling_restart_order import rolling_restart_order
from ansible_collections.ascend.vllm.plugins.filter.unplanned_containers import FilterModule
from tests.unit.plugins.module_utils.plan_helpers import ok, plan

unplanned_containers = FilterModule().filters()["unplanned_containers"]
P1D2 = ok(plan(node3=True, ascend_scenario="a3_pd_1p2d_200k"))
P1D1 = ok(plan())


def test_every_group_in_plan_order_with_downtime_accepted() -> None:
    assert rolling_restart_order(P1D2, accept_downtime="true") == {
        "order": ["prefill0", "decode0", "decode1"],
        "refusal": "",
    }


def test_two_decode_groups_roll_without_downtime() -> None:
    assert rolling_restart_order(P1D2, role="decode")["order"] == ["decode0", "decode1"]
    assert rolling_restart_order(P1D2, instances="decode1")["order"] == ["decode1"]
    assert rolling_restart_order(P1D2, instances=["decode1", "decode0"])["order"] == ["decode0", "decode1"]


@pytest.mark.parametrize(
    ("plan_", "options", "text"),
    [
        (P1D2, {"role": "prefill"}, "prefill has one instance (prefill0)"),
        (P1D2, {}, "rolling_restart_accept_downtime=true"),
        (P1D1, {"role": "decode"}, "decode has one instance (decode0)"),
        (P1D2, {"instances": "decode7"}, "decode7 not in the plan (it has prefill0, decode0, decode1)"),
        (P1D2, {"role": "both"}, "choose prefill or decode"),
        (P1D2, {"role": "prefill", "instances": "decode0"}, "nothing to restart"),
        ({"mode": "single"}, {}, "needs a PD deployment"),
    ],
)
def test_refusals_name_the_role_and_the_way_out(plan_: dict, options: dict[str, Any], text: str) -> None:
    result = rolling_restart_order(plan_, **options)
    assert result["order"] == [] and text in result["refusal"], result


def _container(name: str, **labels: str) -> dict[str, Any]:
    return {"Names": [f"/{name}"], "Labels": labels, "State": "running"}


def test_unplanned_containers_are_ours_only_and_not_in_the_host_record() -> None:
    found = [
        _container("vllm-decode0-dp0", **{"ascend.vllm.role": "decode", "ascend.vllm.instance": "decode0"}),
        _container("vllm-decode2-dp1", **{"ascend.vllm.role": "decode", "ascend.vllm.instance": "decode2"}),
        _container("vllm-pd-proxy", **{"ascend.vllm.role": "proxy"}),
        _container("someone-elses"),
    ]
    node2 = P1D2["hosts"]["a3-node2"]
    assert [c["name"] for c in unplanned_containers(found, node2)] == ["vllm-decode2-dp1", "vllm-pd-proxy"]
    # A host the plan no longer has (taken out of its groups), or a teardown: every one of ours.
    assert unplanned_containers(found, None) == [
        {"name": "vllm-decode0-dp0", "role": "decode", "what": "decode0", "state": "running"},
        {"name": "vllm-decode2-dp1", "role": "decode", "what": "decode2", "state": "running"},
        {"name": "vllm-pd-proxy", "role": "proxy", "what": "proxy", "state": "running"},
    ]
    proxy_host = next(h for h in P1D2["hosts"].values() if h["proxy"])
    assert "vllm-pd-proxy" not in [c["name"] for c in unplanned_containers(found, proxy_host)]
