# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ascend.vllm.preflight_check action plugin: the facts it finds, the pings it runs, its one failure.

The plugin runs with task_vars as Ansible passes them (this host's registered facts, and
hostvars for its fabric peers); the module it runs on the host for the pings
(ascend.vllm.hccn_info) is replaced by a recorder that answers like it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional
from unittest.mock import MagicMock

from ansible_collections.ascend.vllm.plugins.action.preflight_check import ActionModule
from tests.unit.plugins.preflight_cases import (
    D,
    P,
    facts_for,
    ping_result,
    prefill_records,
    single_records,
)

FACTS_VAR = "__preflight_facts"


class Recorder:
    """Stands for _execute_module: records each call and returns the given answer."""

    def __init__(self, answer: Optional[Dict[str, Any]] = None) -> None:
        self.answer = answer or {}
        self.calls: List[Dict[str, Any]] = []

    def __call__(self, module_name: str, module_args: Dict[str, Any], task_vars: Dict[str, Any]) -> Dict[str, Any]:
        self.calls.append({"module_name": module_name, "module_args": module_args})
        return self.answer


def run(
    host: str,
    raw: Dict[str, Any],
    task_vars: Dict[str, Any],
    recorder: Recorder,
    check_mode: bool = False,
    **options: Any,
) -> Dict[str, Any]:
    task = MagicMock()
    task.args = dict(
        facts_var=FACTS_VAR,
        servers=raw["servers"],
        ports=raw["ports"],
        network=raw["network"],
        disk_paths=["/var/lib/docker"],
        **options,
    )
    task.async_val = 0
    task.check_mode = check_mode
    connection = MagicMock()
    connection._shell.tmpdir = None
    action = ActionModule(task, connection, MagicMock(), loader=None, templar=None, shared_loader_obj=None)
    action._execute_module = recorder  # type: ignore[method-assign]
    return action.run(task_vars=dict(task_vars, inventory_hostname=host))


def prefill_vars(decode_facts: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    hostvars: Dict[str, Dict[str, Any]] = {P: {}, D: {}}
    if decode_facts is not None:
        hostvars[D][FACTS_VAR] = decode_facts
    return {FACTS_VAR: facts_for(prefill_records(), node=1), "hostvars": hostvars}


def test_prefill_host_pings_device_n_of_the_decode_host_and_passes() -> None:
    recorder = Recorder(ping_result(1, 2))
    result = run(P, prefill_records(), prefill_vars(facts_for(prefill_records(), node=2)), recorder)
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is False and result["problems"] == []
    assert recorder.calls == [
        {
            "module_name": "ascend.vllm.hccn_info",
            "module_args": {
                "hccn_tool_path": "/usr/local/Ascend/driver/tools/hccn_tool",
                "devices": list(range(16)),
                "status": False,
                "ping": {str(i): [f"10.20.2.{10 + i}"] for i in range(16)},
            },
        }
    ]
    assert result["pinged"] == 16 and len(result["ping"]) == 16
    assert result["msg"].endswith("NPU network: 16 device(s), NIC enp189s0f0, 16 fabric ping(s)")


def test_failures_are_one_list_naming_the_host() -> None:
    facts = prefill_vars(facts_for(prefill_records(), node=2))
    facts[FACTS_VAR]["hccn"]["devices"][4]["net_health"] = "Fault"
    recorder = Recorder(ping_result(1, 2, failing={11: 0}))
    result = run(P, prefill_records(), facts, recorder, check_mode=True)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == [
        "preflight: 2 problem(s) on a3-node1",
        "a3-node1: device 4: net health Fault (expected Success)",
        "a3-node1: device 11: ping 10.20.2.21 (device 11 of a3-node2) failed (3 sent, 0 received)",
    ]
    assert result["problems"] == result["msg"][1:]


def test_decode_peer_outside_the_play_is_a_problem_and_nothing_is_pinged() -> None:
    recorder = Recorder()
    result = run(P, prefill_records(), prefill_vars(None), recorder)
    assert recorder.calls == []
    assert result["problems"] == [
        "a3-node1: fabric peer a3-node2 (preflight_network.fabric_peers) has no NPU network facts in this play "
        "(not in the play, or its preflight failed before them): its devices were not pinged"
    ]
    # A peer that is not even in the inventory is the same problem.
    task_vars = prefill_vars(None)
    del task_vars["hostvars"][D]
    assert run(P, prefill_records(), task_vars, recorder)["problems"] == result["problems"]


def test_single_node_host_pings_nothing() -> None:
    recorder = Recorder()
    raw = single_records()
    result = run("a3-single", raw, {FACTS_VAR: facts_for(raw), "hostvars": {}}, recorder, min_free_disk_gb=1000)
    assert recorder.calls == []
    assert "pinged" in result and result["pinged"] == 0 and "ping" not in result
    assert result["msg"] == [
        "preflight: 1 problem(s) on a3-single",
        "a3-single: /var/lib/docker has 800.0 GiB free, less than 1000 GiB (preflight_min_free_disk_gb)",
    ]


def test_without_facts_the_host_fails_saying_so() -> None:
    raw = single_records()
    result = run("a3-single", raw, {"hostvars": {}}, Recorder())
    assert result["problems"] == [
        "a3-single: cannot read the host: no facts in __preflight_facts (run ascend.vllm.preflight_facts first)"
    ]


def test_no_records_is_a_warning() -> None:
    empty = {"servers": [], "ports": [], "network": {}}
    result = run("a3-single", empty, {FACTS_VAR: facts_for(empty), "hostvars": {}}, Recorder())
    assert not result.get("failed")
    assert result["warnings"] == [
        "a3-single: no server or port records (preflight_servers, preflight_ports): nothing checked"
    ]
