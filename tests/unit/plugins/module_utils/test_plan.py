# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan over the sample inventories: topology, records, and every validation rule.

Each error must name the host (or group) and the inventory variable to change; the tests
check both, not just that "something" failed.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.plan import (
    Claim,
    build_plan,
    check_ports,
    kv_transfer_config,
    start_command,
)
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import Issues

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "plan"
_spec = importlib.util.spec_from_file_location("plan_inventory", FIXTURES / "inventory.py")
inventory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inventory)


def plan(site: str = "a3", groups: dict[str, list[str]] | None = None, **extra: Any) -> dict[str, Any]:
    hostvars, inv_groups = inventory.load_inventory(site, extra)
    inv_groups.update(groups or {})
    return build_plan(hostvars, inv_groups)


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["errors"] == [], [e["text"] for e in result["errors"]]
    return result


def errors(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    assert result["errors"], "expected errors"
    return [(e["host"], e["variable"], e["message"]) for e in result["errors"]]


def has_error(result: dict[str, Any], host: str, variable: str, text: str = "") -> None:
    found = errors(result)
    assert any(h == host and variable in v and text in m for h, v, m in found), found


def argv_flags(argv: list[str]) -> dict[str, Any]:
    """``--flag value`` pairs of an argv (bare flags -> True; JSON values parsed)."""
    flags: dict[str, Any] = {}
    words = argv[3:]
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        value: Any = True
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            value = words[i + 1]
            if value.startswith("{"):
                value = json.loads(value)
        flags[word[2:]] = value
    return flags


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{r['host']}/{r['name']}": r for r in result["instances"]}


# --- the sample inventories ----------------------------------------------------------------


def test_a3_default_is_one_single_node_instance_on_all_chips() -> None:
    result = ok(plan())
    assert (result["scenario"], result["mode"], result["model"]) == ("a3_single_short", "single", "minimax-m2.7-w8a8")
    (inst,) = result["instances"]
    assert (inst["host"], inst["role"], inst["name"], inst["port"]) == ("a3-node1", "single", "vllm-single", 8000)
    assert inst["chips"] == list(range(16))
    assert inst["dp_rank"] is None and inst["dp_size"] == 4 and inst["tp"] == 4
    assert inst["env"]["ASCEND_RT_VISIBLE_DEVICES"] == ",".join(map(str, range(16)))
    assert inst["env"]["HCCL_OP_EXPANSION_MODE"] == "AIV"
    assert "HCCL_IF_IP" not in inst["env"] and "http_proxy" not in inst["env"], "PD-only env"
    assert inst["env_prepend"] == {"LD_PRELOAD": "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2"}
    assert inst["argv"][:3] == ["vllm", "serve", "/root/.cache/MiniMax-M2.7-w8a8-QuaRot"]
    flags = argv_flags(inst["argv"])
    assert flags["tool-call-parser"] == "minimax_m2" and flags["enable-auto-tool-choice"] is True
    assert flags["speculative-config"]["model"] == "/root/.cache/MiniMax-M2.7-eagle-model-short"
    assert "kv-transfer-config" not in flags and "data-parallel-rank" not in flags
    assert inst["url"] == "http://192.0.2.11:8000"
    assert result["proxies"] == []
    assert result["table"][0].split()[:3] == ["Host", "Role", "DP"]


def test_a3_container_record() -> None:
    container = ok(plan())["instances"][0]["container"]
    assert container["name"] == "vllm-single"
    assert container["image"].startswith("m.daocloud.io/quay.io/ascend/vllm-ascend:")
    assert container["devices"][:16] == [f"/dev/davinci{i}" for i in range(16)]
    assert container["devices"][16:] == ["/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"]
    assert "/root/.cache:/root/.cache" in container["volumes"]
    assert "/usr/local/bin/npu-smi:/usr/local/bin/npu-smi" in container["volumes"]
    assert (container["network_mode"], container["ipc_mode"], container["shm_size"]) == ("host", "private", "1g")
    assert container["env"] == ok(plan())["instances"][0]["env"]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert container["command"][4:] == ok(plan())["instances"][0]["argv"]


def test_a2_default_is_one_instance_per_single_host() -> None:
    result = ok(plan("a2"))
    assert [(i["host"], i["chips"], i["tp"], i["dp_size"]) for i in result["instances"]] == [
        ("a2-node1", list(range(8)), 8, 1),
        ("a2-node2", list(range(8)), 8, 1),
    ]
    env = result["instances"][0]["env"]
    assert (env["HCCL_INTRA_PCIE_ENABLE"], env["HCCL_INTRA_ROCE_ENABLE"], env["HCCL_BUFFSIZE"]) == ("1", "0", "512")
    assert result["instances"][0]["container"]["ipc_mode"] == "host"


@pytest.mark.parametrize("scenario", sorted(inventory.group_vars("a3", "scenario")["ascend_scenarios"]))
def test_every_catalogue_scenario_plans_on_the_a3_inventory(scenario: str) -> None:
    result = ok(plan(ascend_scenario=scenario))
    assert result["instances"]
    if scenario.startswith("a2_"):
        assert any("written for a2" in w["message"] for w in result["warnings"])


@pytest.mark.parametrize("model", sorted(inventory.group_vars("a3", "model")["ascend_models"]))
def test_every_catalogue_model_plans(model: str) -> None:
    c8 = inventory.group_vars("a3", "model")["ascend_models"][model]["c8"]
    # C8 weights cannot take the catalogue's EAGLE3 (see test_eagle3_with_c8_is_refused).
    extra = {"ascend_serve_args_extra": {"speculative-config": False}} if c8 else {}
    result = ok(plan(ascend_model=model, **extra))
    assert result["instances"][0]["model"].startswith("/root/.cache/MiniMax-M2")


def test_a2_and_a3_share_their_catalogues() -> None:
    for name, key in (("model", "ascend_models"), ("scenario", "ascend_scenarios")):
        assert inventory.group_vars("a2", name)[key] == inventory.group_vars("a3", name)[key], name


# --- PD --------------------------------------------------------------------------------------


def test_pd_1p1d_one_instance_per_dp_rank() -> None:
    result = ok(plan(ascend_scenario="a3_pd_1p1d_200k"))
    rows = [(i["host"], i["role"], i["dp_rank"], i["dp_local_rank"], i["port"], i["kv_ports"], i["chips"])
            for i in result["instances"]]  # fmt: skip
    assert rows == [
        ("a3-node1", "prefill", 0, 0, 7000, [18000, 18007], list(range(0, 8))),
        ("a3-node1", "prefill", 1, 1, 7001, [18008, 18015], list(range(8, 16))),
        ("a3-node2", "decode", 0, 0, 7100, [19000, 19007], list(range(0, 8))),
        ("a3-node2", "decode", 1, 1, 7101, [19008, 19015], list(range(8, 16))),
    ]
    # a3-node3 is in group decode but the two decode ranks fit on a3-node2.
    assert [(w["host"], w["variable"]) for w in result["warnings"]] == [("a3-node3", "groups.decode")]
    names = [i["name"] for i in result["instances"]]
    assert names == ["vllm-prefill-dp0", "vllm-prefill-dp1", "vllm-decode-dp0", "vllm-decode-dp1"]


def test_pd_flags_data_parallel_group_and_kv_transfer() -> None:
    result = ok(plan(ascend_scenario="a3_pd_1p1d_200k"))
    flags = {i["name"]: argv_flags(i["argv"]) for i in result["instances"]}
    for name, f in flags.items():
        role = "prefill" if "prefill" in name else "decode"
        assert f["data-parallel-size"] == "2" and f["tensor-parallel-size"] == "8"
        assert f["data-parallel-rank"] == name[-1]
        assert f["data-parallel-address"] == ("192.0.2.11" if role == "prefill" else "192.0.2.12")
        assert f["data-parallel-rpc-port"] == "12321"
        kv = f["kv-transfer-config"]
        assert kv["kv_role"] == {"prefill": "kv_producer", "decode": "kv_consumer"}[role]
        assert kv["engine_id"] == {"prefill": "0", "decode": "1"}[role]
        assert kv["kv_port"] == {"prefill": "18000", "decode": "19000"}[role]
    extra = [f["kv-transfer-config"]["kv_connector_extra_config"] for f in flags.values()]
    assert all(e == extra[0] for e in extra), "both roles see one topology"
    assert extra[0] == {"use_ascend_direct": True, "prefill": {"dp_size": 2, "tp_size": 8},
                        "decode": {"dp_size": 2, "tp_size": 8}}  # fmt: skip


def test_pd_env_network_proxies_and_prepends() -> None:
    result = ok(plan(ascend_scenario="a3_pd_1p1d_200k"))
    decode = by_name(result)["a3-node2/vllm-decode-dp1"]
    env = decode["env"]
    assert env["HCCL_IF_IP"] == "192.0.2.12"
    assert {env[k] for k in ("GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "HCCL_SOCKET_IFNAME")} == {"enp189s0f0"}
    assert all(env[k] == "" for k in ("http_proxy", "https_proxy", "ftp_proxy", "HTTP_PROXY"))
    assert (env["PYTHONHASHSEED"], env["HCCL_BUFFSIZE"], env["VLLM_ASCEND_ENABLE_FLASHCOMM1"]) == ("0", "2048", "0")
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "8,9,10,11,12,13,14,15"
    assert decode["env_prepend"]["LD_LIBRARY_PATH"].endswith("/site-packages/mooncake")


def test_pd_proxy_record() -> None:
    result = ok(plan(ascend_scenario="a3_pd_1p1d_200k"))
    (proxy,) = result["proxies"]
    assert (proxy["host"], proxy["port"]) == ("a3-node1", 8009)
    assert [(e["ip"], e["port"]) for e in proxy["prefill"]] == [("192.0.2.11", 7000), ("192.0.2.11", 7001)]
    assert [e["url"] for e in proxy["decode"]] == ["http://192.0.2.12:7100", "http://192.0.2.12:7101"]
    # Each backend is named like its instance record, so proxy logs and metrics match the plan.
    assert [e["name"] for e in proxy["prefill"]] == ["a3-node1/vllm-prefill-dp0", "a3-node1/vllm-prefill-dp1"]
    assert set(by_name(result)) >= {e["name"] for e in proxy["prefill"] + proxy["decode"]}
    assert proxy["image"] == result["instances"][0]["container"]["image"]


@pytest.mark.parametrize(
    ("scenario", "prefill", "decode"),
    [
        # Table 9.1: (tp, dp) per role and the ranks per decode host.
        ("a3_pd_1p2d_short_throughput", (2, 8), (1, 32, {"a3-node2": 16, "a3-node3": 16})),
        ("a3_pd_1p2d_short_latency", (4, 4), (4, 8, {"a3-node2": 4, "a3-node3": 4})),
        ("a3_pd_1p1d_long_throughput", (8, 2), (8, 2, {"a3-node2": 2})),
        ("a3_pd_1p2d_long_latency", (8, 2), (8, 4, {"a3-node2": 2, "a3-node3": 2})),
    ],
)
def test_table_9_1_rows(scenario: str, prefill: tuple[int, int], decode: tuple[int, int, dict[str, int]]) -> None:
    result = ok(plan(ascend_scenario=scenario))
    pre = [i for i in result["instances"] if i["role"] == "prefill"]
    dec = [i for i in result["instances"] if i["role"] == "decode"]
    assert {(i["tp"], i["dp_size"]) for i in pre} == {prefill} and len(pre) == prefill[1]
    assert {(i["tp"], i["dp_size"]) for i in dec} == {decode[:2]} and len(dec) == decode[1]
    per_host: dict[str, int] = {}
    for inst in dec:
        per_host[inst["host"]] = per_host.get(inst["host"], 0) + 1
    assert per_host == decode[2]
    assert sorted(i["dp_rank"] for i in dec) == list(range(decode[1]))
    # EP = tp x dp over all ranks with --enable-expert-parallel on every instance.
    assert all(argv_flags(i["argv"])["enable-expert-parallel"] is True for i in result["instances"])
    flags = argv_flags(dec[0]["argv"])
    short = "short" in scenario
    assert flags["max-model-len"] == ("32768" if short else "200000")
    assert flags["max-num-seqs"] == ("128" if short else "16")
    assert dec[0]["env"]["VLLM_ASCEND_ENABLE_FLASHCOMM1"] == "1"


def test_pd_last_decode_host_ports_restart_per_host() -> None:
    result = ok(plan(ascend_scenario="a3_pd_1p2d_short_throughput"))
    rank16 = next(i for i in result["instances"] if i["role"] == "decode" and i["dp_rank"] == 16)
    assert (rank16["host"], rank16["port"], rank16["dp_local_rank"], rank16["chips"]) == ("a3-node3", 7100, 0, [0])
    assert rank16["kv_ports"] == [19016, 19016]
    assert argv_flags(rank16["argv"])["data-parallel-address"] == "192.0.2.12"


def test_dp_local_spreads_ranks() -> None:
    overrides = {"decode": {"dp_local": 1}}
    result = ok(plan(ascend_scenario="a3_pd_1p1d_200k", ascend_scenario_overrides=overrides))
    dec = [(i["host"], i["dp_rank"], i["port"]) for i in result["instances"] if i["role"] == "decode"]
    assert dec == [("a3-node2", 0, 7100), ("a3-node3", 1, 7100)]
    assert result["warnings"] == []


def test_prefill_and_decode_on_one_host() -> None:
    groups = {"prefill": ["a3-node1"], "decode": ["a3-node1"]}
    overrides = {"prefill": {"dp": 1}, "decode": {"dp": 1}}
    result = ok(
        plan(
            ascend_scenario="a3_pd_1p1d_200k",
            groups=groups,
            ascend_scenario_overrides=overrides,
            ascend_decode_dp_rpc_port=12322,
        )
    )
    assert [(i["role"], i["chips"]) for i in result["instances"]] == [
        ("prefill", list(range(8))),
        ("decode", list(range(8, 16))),
    ]


# --- validation: each error names host and variable -----------------------------------------


def test_tp_too_large_for_the_host() -> None:
    result = plan(ascend_scenario_overrides={"single": {"tp": 8}})
    has_error(result, "a3-node1", "ascend_scenario_overrides.single.tp", "needs 32 chips; the host has 16")
    assert result["instances"] == []


def test_context_parallel_counts_chips() -> None:
    result = plan(ascend_scenario="a3_single_long", ascend_chips="0-7")
    has_error(result, "a3-node1", "ascend_scenarios.a3_single_long.single.tp", "x 2 (pipeline / prefill-context")


def test_pd_group_too_small() -> None:
    result = plan(ascend_scenario="a3_pd_1p2d_short_throughput", groups={"decode": ["a3-node2"]})
    has_error(result, "group decode (a3-node2)", "ascend_scenarios.a3_pd_1p2d_short_throughput.decode.dp", "hold 16")


def test_dp_local_too_large() -> None:
    result = plan(ascend_scenario="a3_pd_1p1d_200k", ascend_scenario_overrides={"decode": {"dp_local": 3}})
    has_error(result, "a3-node2", "ascend_scenario_overrides.decode.dp_local", "needs 24 chips")


def test_chips_bad_values() -> None:
    has_error(plan(ascend_chips="0,1,1"), "a3-node1", "ascend_chips", "more than once")
    has_error(plan(ascend_chips="14-17"), "a3-node1", "ascend_chips", "[16, 17] do not exist")


def test_http_ports_unique_per_host() -> None:
    groups = {"prefill": ["a3-node1"], "decode": ["a3-node1"]}
    overrides = {"prefill": {"dp": 1}, "decode": {"dp": 1}}
    result = plan(
        ascend_scenario="a3_pd_1p1d_200k", groups=groups, ascend_scenario_overrides=overrides, ascend_decode_port=7000
    )
    has_error(result, "a3-node1", "ascend_decode_port", "overlap HTTP port of prefill DP rank 0")
    # Both DP groups meet on a3-node1 at 12321.
    has_error(result, "a3-node1", "ascend_decode_dp_rpc_port", "overlap prefill DP rpc port")


def test_kv_ports_overlap_on_a_host() -> None:
    groups = {"prefill": ["a3-node1"], "decode": ["a3-node1"]}
    overrides = {"prefill": {"dp": 1}, "decode": {"dp": 1}}
    result = plan(
        ascend_scenario="a3_pd_1p1d_200k",
        groups=groups,
        ascend_scenario_overrides=overrides,
        ascend_decode_dp_rpc_port=12322,
        ascend_decode_kv_port=18004,
    )
    has_error(result, "a3-node1", "ascend_decode_kv_port", "(18004-18011) overlap Mooncake kv ports of prefill")


def test_kv_ports_overlap_http_port() -> None:
    result = plan(ascend_scenario="a3_pd_1p1d_200k", ascend_prefill_kv_port=6995)
    has_error(result, "a3-node1", "ascend_prefill_kv_port", "overlap HTTP port of prefill DP rank 0")


def test_kv_port_in_mooncake_range_is_refused() -> None:
    # The seed's prefill kv_port.
    result = plan(ascend_scenario="a3_pd_1p1d_200k", ascend_prefill_kv_port=35880)
    has_error(result, "a3-node1", "ascend_prefill_kv_port", "fall in [20000, 36000)")


def test_mooncake_range_depends_on_the_host_chips() -> None:
    def run(port: int, chips: int) -> list[dict[str, str]]:
        issues = Issues()
        check_ports([Claim("h", port, port + 7, "kv ports", "ascend_prefill_kv_port")], {"h": chips}, issues)
        return issues.errors

    assert run(27993, 8) and not run(28000, 8)
    assert run(35993, 16) and not run(36000, 16)
    assert run(19993, 8) and not run(19992, 8)
    assert not run(25000, 0), "only hosts running PD instances have Mooncake"


def test_ephemeral_ports_warn() -> None:
    # The seed's decode kv_port.
    result = ok(plan(ascend_scenario="a3_pd_1p1d_200k", ascend_decode_kv_port=56900))
    assert any(w["variable"] == "ascend_decode_kv_port" and "ephemeral" in w["message"] for w in result["warnings"])


def test_ports_past_65535() -> None:
    result = plan(ascend_scenario="a3_pd_1p1d_200k", ascend_decode_kv_port=65530)
    has_error(result, "a3-node2", "ascend_decode_kv_port", "beyond port 65535")


def test_prefill_tp_smaller_than_decode_tp() -> None:
    overrides = {"prefill": {"tp": 4, "dp": 4}}
    result = plan(ascend_scenario="a3_pd_1p1d_200k", ascend_scenario_overrides=overrides)
    has_error(result, "group prefill (a3-node1)", "ascend_scenario_overrides.prefill.tp", "prefill tp 4 is smaller")


def test_eagle3_with_c8_is_refused() -> None:
    result = plan(ascend_model="minimax-m2.7-w8a8c8")
    has_error(result, "a3-node1", "ascend_scenarios.a3_single_short.single.serve_args", "not supported with C8")
    has_error(result, "a3-node1", "with ascend_model")
    result = ok(plan(ascend_model="minimax-m2.7-w8a8c8", ascend_serve_args_extra={"speculative-config": False}))
    assert "speculative-config" not in argv_flags(result["instances"][0]["argv"])


def test_plan_owned_flags_and_env_are_refused() -> None:
    result = plan(ascend_serve_args_extra={"tensor_parallel_size": 8, "-dp": 2})
    has_error(result, "a3-node1", "ascend_serve_args_extra", "--tensor-parallel-size is written by the plan")
    has_error(result, "a3-node1", "ascend_serve_args_extra", "--data-parallel-size is written by the plan")
    result = plan(ascend_env_extra={"ASCEND_RT_VISIBLE_DEVICES": "0,1"})
    has_error(result, "a3-node1", "ascend_env_extra", "ASCEND_RT_VISIBLE_DEVICES is set by the plan")
    overrides = {"decode": {"serve_args": {"kv_transfer_config": {"kv_port": 1}}}}
    result = plan(ascend_scenario="a3_pd_1p1d_200k", ascend_scenario_overrides=overrides)
    has_error(result, "a3-node2", "ascend_scenario_overrides.decode.serve_args", "--kv-transfer-config is written")


def test_contradicting_flags() -> None:
    result = plan(ascend_scenario="a3_pd_1p1d_200k", ascend_serve_args_extra={"enable-prefix-caching": True})
    has_error(result, "a3-node2", "ascend_scenarios.a3_pd_1p1d_200k.decode.serve_args", "contradicts")


def test_flag_values_checked() -> None:
    has_error(plan(ascend_serve_args_extra={"gpu_memory_utilization": "high"}), "a3-node1", "ascend_serve_args_extra")
    has_error(plan(ascend_serve_args_extra={"gpu-memory-utilization": 1.5}), "a3-node1", "", "out of range")
    has_error(plan(ascend_serve_args_extra={"max-num-seqs": "0"}), "a3-node1", "ascend_serve_args_extra", "minimum")


def test_missing_and_unknown_settings() -> None:
    hostvars, groups = inventory.load_inventory("a3")
    for values in hostvars.values():
        del values["ascend_vllm_image"]
    has_error(build_plan(hostvars, groups), "a3-node1", "ascend_vllm_image", "not set")
    has_error(plan(ascend_scenario="a3_tiny"), "a3-node1", "ascend_scenarios.a3_tiny", "known: a2_single")
    has_error(plan(ascend_model="gpt"), "a3-node1", "ascend_model", "no model 'gpt'")
    has_error(plan(ascend_hardware="a5"), "a3-node1", "ascend_hardware", "not one of a3, a2")
    result = plan(ascend_scenario_overrides={"single": {"tpp": 4}})
    has_error(result, "a3-node1", "ascend_scenario_overrides", "unknown key(s) tpp")


def test_extends_loop() -> None:
    scenarios = copy.deepcopy(inventory.group_vars("a3", "scenario")["ascend_scenarios"])
    scenarios["a3_single_short"]["extends"] = "a3_single_long"
    has_error(plan(ascend_scenarios=scenarios), "a3-node1", "ascend_scenarios.a3_single_short", "'extends' loop")


def test_no_hosts_in_the_mode_groups() -> None:
    has_error(plan(groups={"single": []}), "group single", "groups", "needs hosts in group single")
    has_error(plan(groups={"single": [], "prefill": [], "decode": []}), "inventory", "groups")


def test_deployment_wide_variables_must_agree() -> None:
    hostvars, groups = inventory.load_inventory("a3", {})
    hostvars["a3-node3"]["ascend_model"] = "minimax-m2.5-w8a8"
    for name in hostvars:
        hostvars[name]["ascend_scenario"] = "a3_pd_1p2d_long_latency"
    has_error(build_plan(hostvars, groups), "a3-node3", "ascend_model", "differs from 'minimax-m2.7-w8a8' on a3-node1")


def test_dp_group_topology_must_agree() -> None:
    hostvars, groups = inventory.load_inventory("a3", {"ascend_scenario": "a3_pd_1p2d_long_latency"})
    hostvars["a3-node3"]["ascend_scenario_overrides"] = {"decode": {"tp": 4}}
    result = build_plan(hostvars, groups)
    has_error(result, "a3-node3", "ascend_scenario_overrides.decode.tp", "differs from 8 on a3-node2")


def test_pd_hosts_need_an_ip() -> None:
    hostvars, groups = inventory.load_inventory("a3", {"ascend_scenario": "a3_pd_1p1d_200k"})
    del hostvars["a3-node2"]["ascend_local_ip"]
    hostvars["a3-node1"]["ascend_local_ip"] = "node-one"
    result = build_plan(hostvars, groups)
    has_error(result, "a3-node2", "ascend_local_ip", "not set")
    has_error(result, "a3-node1", "ascend_local_ip", "not an IP address")


def test_env_values_must_be_text() -> None:
    has_error(plan(ascend_env_extra={"VLLM_USE_MODELSCOPE": True}), "a3-node1", "ascend_env_extra.VLLM_USE_MODELSCOPE")


def test_fused_mc2_on_a2_warns() -> None:
    result = ok(plan("a2", ascend_env_extra={"VLLM_ASCEND_ENABLE_FUSED_MC2": "1"}))
    assert any("fused MC2" in w["message"] and w["host"] == "a2-node1" for w in result["warnings"])


JUNK = (None, "x", -1, True, [], {"x": {"y": None}}, '{"single": 1}')


def _paths(hostvars: dict[str, Any], scenario: str) -> list[tuple[str, ...]]:
    """Every ascend_* variable, and the nested settings of the chosen scenario and model."""
    values = hostvars["a3-node1"]
    paths = [(k,) for k in sorted(values) if k.startswith("ascend_")]
    entry = values["ascend_scenarios"][scenario]
    for key, value in entry.items():
        paths.append(("ascend_scenarios", scenario, key))
        if isinstance(value, dict) and key in ("single", "prefill", "decode"):
            paths += [("ascend_scenarios", scenario, key, sub) for sub in value]
    paths += [("ascend_models", "minimax-m2.7-w8a8", key) for key in values["ascend_models"]["minimax-m2.7-w8a8"]]
    for flag in ("speculative-config", "prefill-context-parallel-size", "gpu-memory-utilization", "port"):
        paths.append(("ascend_serve_args_extra", flag))
    return paths


@pytest.mark.parametrize("scenario", ["a3_single_short", "a3_pd_1p2d_long_latency"])
def test_no_value_makes_the_plan_crash(scenario: str) -> None:
    """Whatever a variable holds, the plan reports errors; it never raises (Ansible would show a
    traceback instead of host and variable)."""
    hostvars, groups = inventory.load_inventory("a3", {"ascend_scenario": scenario})
    for path in _paths(hostvars, scenario):
        for value in JUNK:
            broken = copy.deepcopy(hostvars)
            for values in broken.values():
                target = values
                for key in path[:-1]:
                    target = target.setdefault(key, {})
                target[path[-1]] = value
            result = build_plan(broken, groups)
            assert isinstance(result["errors"], list) and isinstance(result["table"], list), (path, value)


# --- survey strings and layered overrides ---------------------------------------------------


def test_survey_strings_are_coerced() -> None:
    result = ok(
        plan(
            ascend_scenario_overrides='{"single": {"tp": "8", "dp": "2"}}',
            ascend_tool_calling="false",
            ascend_serve_args_extra='{"max_num_seqs": "32", "enforce-eager": "true", "async-scheduling": "false"}',
            ascend_single_port="8001",
            ascend_jemalloc_preload="no",
        )
    )
    (inst,) = result["instances"]
    flags = argv_flags(inst["argv"])
    assert (flags["tensor-parallel-size"], flags["data-parallel-size"], flags["port"]) == ("8", "2", "8001")
    assert flags["max-num-seqs"] == "32" and flags["enforce-eager"] is True
    assert "async-scheduling" not in flags and "tool-call-parser" not in flags
    assert inst["env_prepend"] == {} and inst["container"]["command"] == inst["argv"]


@pytest.mark.parametrize(
    ("extra", "variable", "text"),
    [
        ({"ascend_single_port": "80x"}, "ascend_single_port", "not an integer"),
        ({"ascend_single_port": "70000"}, "ascend_single_port", "maximum 65535"),
        ({"ascend_tool_calling": "maybe"}, "ascend_tool_calling", "not a boolean"),
        ({"ascend_scenario_overrides": {"single": {"tp": "four"}}}, "ascend_scenario_overrides.single.tp", "four"),
        ({"ascend_scenario_overrides": "{tp"}, "ascend_scenario_overrides", "JSON"),
        ({"ascend_serve_args_extra": "[1]"}, "ascend_serve_args_extra", "not a mapping"),
        ({"ascend_chips_per_node": "sixteen"}, "ascend_chips_per_node", "not an integer"),
        ({"ascend_cpu_arch": "riscv64"}, "ascend_cpu_arch", "not one of aarch64, x86_64"),
    ],
)
def test_values_that_cannot_be_coerced_name_the_variable(extra: dict[str, Any], variable: str, text: str) -> None:
    has_error(plan(**extra), "a3-node1", variable, text)


def test_overrides_merge_key_by_key() -> None:
    result = ok(
        plan(
            ascend_scenario_overrides={"serve_args": {"max-model-len": 65536}, "env": {"HCCL_BUFFSIZE": "1536"}},
            ascend_serve_args_extra={"additional-config": {"enable_cpu_binding": None, "weight_nz_mode": False}},
            ascend_env_extra={"TASK_QUEUE_ENABLE": None, "EXTRA": 7},
        )
    )
    inst = result["instances"][0]
    flags = argv_flags(inst["argv"])
    assert flags["max-model-len"] == "65536" and flags["max-num-seqs"] == "48"
    assert flags["additional-config"] == {"enable_fused_mc2": True, "enable_flashcomm1": True, "weight_nz_mode": False}
    assert inst["env"]["HCCL_BUFFSIZE"] == "1536" and inst["env"]["EXTRA"] == "7"
    assert "TASK_QUEUE_ENABLE" not in inst["env"]


def test_served_name_chips_and_arch() -> None:
    result = ok(
        plan(ascend_served_model_name="minimax", ascend_chips=[8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7],
             ascend_cpu_arch="x86_64")
    )  # fmt: skip
    inst = result["instances"][0]
    assert inst["served_model_name"] == "minimax" and argv_flags(inst["argv"])["served-model-name"] == "minimax"
    assert inst["env"]["ASCEND_RT_VISIBLE_DEVICES"].startswith("8,9,")
    assert inst["env_prepend"]["LD_PRELOAD"] == "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def test_weights_outside_the_models_dir_are_mounted() -> None:
    models = copy.deepcopy(inventory.group_vars("a3", "model")["ascend_models"])
    models["minimax-m2.7-w8a8"]["eagle3"] = "/data/eagle/"
    inst = ok(plan(ascend_models=models))["instances"][0]
    assert "/data/eagle:/data/eagle:ro" in inst["container"]["volumes"]
    assert argv_flags(inst["argv"])["speculative-config"]["model"] == "/data/eagle/"


def test_the_plan_is_deterministic_and_leaves_its_input_alone() -> None:
    hostvars, groups = inventory.load_inventory("a3", {"ascend_scenario": "a3_pd_1p2d_short_latency"})
    before = copy.deepcopy(hostvars)
    assert build_plan(hostvars, groups) == build_plan(hostvars, groups)
    assert hostvars == before


# --- building blocks -------------------------------------------------------------------------


def test_kv_transfer_config_is_one_function_for_both_roles() -> None:
    sizes = {"prefill": (8, 2), "decode": (4, 4)}
    producer, consumer = kv_transfer_config("prefill", 18000, sizes), kv_transfer_config("decode", 19000, sizes)
    assert producer["kv_connector_extra_config"] == consumer["kv_connector_extra_config"]
    assert producer["kv_connector_extra_config"]["decode"] == {"dp_size": 4, "tp_size": 4}
    assert (producer["kv_role"], consumer["kv_role"]) == ("kv_producer", "kv_consumer")


def test_start_command_prepends_to_the_image_env() -> None:
    argv = ["printenv", "LD_PRELOAD"]
    command = start_command(argv, {"LD_PRELOAD": "/new/lib.so"})
    assert command[4:] == argv
    with_old = subprocess.run(command, env={"LD_PRELOAD": "/old.so"}, capture_output=True, text=True, check=True)
    assert with_old.stdout.strip() == "/new/lib.so:/old.so"
    without = subprocess.run(command, env={}, capture_output=True, text=True, check=True)
    assert without.stdout.strip() == "/new/lib.so"
    assert start_command(argv, {}) == argv
