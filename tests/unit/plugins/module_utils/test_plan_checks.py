# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan's rules: every problem an inventory can have is an error naming the host (or the
group) and the variable to change - the tests check both - and no value makes it crash."""

from __future__ import annotations

import copy
import time

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.plan_checks import Claim, check_ports
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import Issues
from tests.unit.plugins.module_utils.plan_helpers import (
    CATALOGUE,
    SINGLE,
    V021,
    argv_flags,
    build_plan,
    by_name,
    has_error,
    ok,
    plan,
    servers,
    site,
)

# --- validation: each error names host and variable -----------------------------------------


def test_tp_too_large_for_the_host() -> None:
    result = plan(**SINGLE, ascend_scenario_overrides={"single": {"tp": 8}})
    has_error(result, "a3-node1", "ascend_scenario_overrides.single.tp", "needs 32 chips; the host has 16")


def test_context_parallel_counts_chips() -> None:
    result = plan(ascend_scenario="a3_single_long", ascend_chips="0-7", **V021)
    has_error(result, "a3-node1", "ascend_scenarios.a3_single_long.single.tp", "x 2 (pipeline / prefill-context")


def test_pd_group_too_small() -> None:
    result = plan(ascend_scenario="a3_pd_short_throughput", **V021)
    has_error(result, "group decode (a3-node2)", "ascend_scenarios.a3_pd_short_throughput.decode.dp", "hold 16 more")
    result = plan(ascend_scenario="a3_pd_1p2d_200k")
    has_error(result, "group decode (a3-node2)", "ascend_scenarios.a3_pd_1p2d_200k.decode.dp", "decode1: dp 2 ranks")


def test_dp_local_too_large() -> None:
    result = plan(node3=True, ascend_scenario_overrides={"decode": {"dp": 4, "dp_local": 3}})
    has_error(result, "a3-node2", "ascend_scenario_overrides.decode.dp_local", "needs 24 chips")


def test_instances_only_for_pd_roles() -> None:
    result = plan(**SINGLE, ascend_scenario_overrides={"single": {"instances": 2}})
    has_error(result, "a3-node1", "ascend_scenario_overrides.single.instances", "list more hosts instead")


def test_chips_bad_values() -> None:
    has_error(plan(ascend_chips="0,1,1"), "a3-node1", "ascend_chips", "more than once")
    has_error(plan(ascend_chips="14-17"), "a3-node1", "ascend_chips", "chip 17 does not exist")


def test_pathological_chip_range_fails_fast() -> None:
    started = time.monotonic()
    has_error(plan(ascend_chips="0-999999999999"), "a3-node1", "ascend_chips", "does not exist")
    assert time.monotonic() - started < 2, "the range was expanded"


def test_http_ports_unique_per_host() -> None:
    groups = {"prefill": ["a3-node1"], "decode": ["a3-node1"]}
    overrides = {"prefill": {"dp": 1}, "decode": {"dp": 1}}
    result = plan(groups=groups, ascend_scenario_overrides=overrides, ascend_decode_port=7000,
                  ascend_decode_dp_rpc_port=12321)  # fmt: skip
    has_error(result, "a3-node1", "ascend_decode_port", "overlap HTTP port of prefill0")
    # Both DP groups would meet on a3-node1 at 12321.
    has_error(result, "a3-node1", "ascend_decode_dp_rpc_port", "overlap DP rpc port of prefill0")


def test_kv_ports_overlap_on_a_host() -> None:
    groups = {"prefill": ["a3-node1"], "decode": ["a3-node1"]}
    overrides = {"prefill": {"dp": 1}, "decode": {"dp": 1}}
    result = plan(groups=groups, ascend_scenario_overrides=overrides, ascend_decode_kv_port=18004)
    has_error(result, "a3-node1", "ascend_decode_kv_port", "(18004-18011) overlap Mooncake kv ports of prefill0")


def test_kv_ports_overlap_http_port() -> None:
    result = plan(ascend_prefill_kv_port=6995)
    has_error(result, "a3-node1", "ascend_prefill_kv_port", "overlap HTTP port of prefill0 DP rank 0")


def test_kv_port_in_mooncake_range_is_refused() -> None:
    # The guide's prefill kv_port.
    has_error(plan(ascend_prefill_kv_port=35880), "a3-node1", "ascend_prefill_kv_port", "fall in [20000, 36000)")


def test_mooncake_range_depends_on_the_host_chips() -> None:
    def run(port: int, chips: int) -> list[dict[str, str]]:
        issues = Issues()
        check_ports([Claim("h", port, port + 7, "kv ports", "ascend_prefill_kv_port", None)], {"h": chips}, issues)
        return issues.errors

    assert run(27993, 8) and not run(28000, 8)
    assert run(35993, 16) and not run(36000, 16)
    assert run(19993, 8) and not run(19992, 8)
    assert not run(25000, 0), "only hosts running PD servers have Mooncake"


def test_port_overlaps_are_found_in_any_order() -> None:
    issues = Issues()
    claims = [
        Claim("h", 10, 20, "a", "va", None),
        Claim("h", 30, 40, "b", "vb", None),
        Claim("h", 15, 15, "c", "vc", None),
    ]
    check_ports(claims, {}, issues)
    assert [(e["variable"], e["message"]) for e in issues.errors] == [("vc", "c (15) overlap a (10-20, va)")]


def test_ephemeral_ports_warn() -> None:
    # The guide's decode kv_port.
    result = plan(ascend_decode_kv_port=56900)
    ok(result)
    assert any(w["variable"] == "ascend_decode_kv_port" and "ephemeral" in w["message"] for w in result["warnings"])


def test_ports_past_65535() -> None:
    has_error(plan(ascend_decode_kv_port=65530), "a3-node2", "ascend_decode_kv_port", "beyond port 65535")


def test_prefill_tp_smaller_than_decode_tp() -> None:
    result = plan(ascend_scenario_overrides={"prefill": {"tp": 4, "dp": 4}})
    has_error(result, "group prefill (a3-node1)", "ascend_scenario_overrides.prefill.tp", "prefill tp 4 is smaller")


def test_eagle3_with_c8_is_refused() -> None:
    result = plan(**SINGLE, ascend_model="minimax-m2.7-w8a8c8")
    has_error(result, "a3-node1", "ascend_scenarios.a3_single_short.single.serve_args", "not supported with C8")
    has_error(result, "a3-node1", "with ascend_model")
    document = ok(
        plan(**SINGLE, ascend_model="minimax-m2.7-w8a8c8", ascend_serve_args_extra={"speculative-config": False})
    )
    assert "speculative-config" not in argv_flags(servers(document)[0]["argv"])
    assert [w["what"] for w in servers(document)[0]["weights"]] == ["model"]


def test_plan_owned_flags_and_env_are_refused() -> None:
    result = plan(**SINGLE, ascend_serve_args_extra={"tensor_parallel_size": 8, "-dp": 2})
    has_error(result, "a3-node1", "ascend_serve_args_extra", "--tensor-parallel-size is written by the plan")
    has_error(result, "a3-node1", "ascend_serve_args_extra", "--data-parallel-size is written by the plan")
    result = plan(ascend_env_extra={"ASCEND_RT_VISIBLE_DEVICES": "0,1"})
    has_error(result, "a3-node1", "ascend_env_extra", "ASCEND_RT_VISIBLE_DEVICES is set by the plan")
    overrides = {"decode": {"serve_args": {"kv_transfer_config": {"kv_port": 1}}}}
    result = plan(ascend_scenario_overrides=overrides)
    has_error(result, "a3-node2", "ascend_scenario_overrides.decode.serve_args", "--kv-transfer-config is written")


def test_contradicting_flags() -> None:
    result = plan(ascend_serve_args_extra={"enable-prefix-caching": True})
    has_error(result, "a3-node2", "ascend_scenarios.a3_pd_1p1d_200k.decode.serve_args", "contradicts")


def test_flag_values_checked() -> None:
    has_error(plan(ascend_serve_args_extra={"gpu_memory_utilization": "high"}), "a3-node1", "ascend_serve_args_extra")
    has_error(plan(ascend_serve_args_extra={"gpu-memory-utilization": 1.5}), "a3-node1", "", "out of range")
    has_error(plan(ascend_serve_args_extra={"max-num-seqs": "0"}), "a3-node1", "ascend_serve_args_extra", "at least 1")


def test_missing_and_unknown_settings() -> None:
    hostvars, groups = site()
    for values in hostvars.values():
        del values["ascend_scenario"]
    has_error(build_plan(hostvars, groups, CATALOGUE), "a3-node1", "ascend_scenario", "not set")
    has_error(plan(ascend_scenario="a3_tiny"), "a3-node1", "ascend_scenarios.a3_tiny", "known: a2_single")
    has_error(plan(ascend_model="gpt"), "a3-node1", "ascend_model", "no model 'gpt'")
    has_error(plan(ascend_hardware="a5"), "a3-node1", "ascend_hardware", "not one of a3, a2")
    has_error(plan(ascend_scenario_overrides={"decode": {"tpp": 4}}), "a3-node1", "ascend_scenario_overrides", "tpp")


def test_misspelled_variables_are_refused_with_a_suggestion() -> None:
    result = plan(ascend_prefil_port=7000)
    has_error(result, "a3-node1", "ascend_prefil_port", "did you mean ascend_prefill_port?")
    has_error(plan(ascend_frobnicate=1), "a3-node1", "ascend_frobnicate", "catalogue/defaults.yml lists them all")
    # Playbook options and the published plan are not the plan's inputs.
    ok(plan(ascend_verify_health_timeout=30, ascend_plan={"x": 1}, ascend_pd_shape={"prefill": 1}))


def test_models_dir_must_be_absolute() -> None:
    has_error(plan(ascend_models_dir="models"), "a3-node1", "ascend_models_dir", "not an absolute path")


def test_ipv6_local_ip_is_refused() -> None:
    hostvars, groups = site()
    hostvars["a3-node2"]["ascend_local_ip"] = "2001:db8::12"
    has_error(build_plan(hostvars, groups, CATALOGUE), "a3-node2", "ascend_local_ip", "IPv6")


def test_site_scenarios_and_models_add_and_replace() -> None:
    scenarios = {"my_pd": {"extends": "a3_pd_1p1d_200k", "decode": {"serve_args": {"max-num-seqs": 8}}}}
    models = {"my-weights": {"path": "/data/mine", "served_name": "mine", "quantization": "ascend", "eagle3": None}}
    result = plan(ascend_scenarios=scenarios, ascend_scenario="my_pd", ascend_models=models, ascend_model="my-weights",
                  ascend_serve_args_extra={"speculative-config": False})  # fmt: skip
    document = ok(result)
    decode = by_name(document)["a3-node2/vllm-decode0-dp0"]
    assert argv_flags(decode["argv"])["max-num-seqs"] == "8" and decode["model"] == "/data/mine"
    assert "/data/mine:/data/mine:ro" in decode["container"]["volumes"]
    # The same messages as for the shipped entries.
    bad = {"my_pd": {"extends": "a3_pd_1p1d_200k", "decode": {"tp_size": 8}}}
    has_error(plan(ascend_scenarios=bad, ascend_scenario="my_pd"), "a3-node1", "ascend_scenarios.my_pd",
              "unknown key(s) tp_size")  # fmt: skip


def test_extends_loop() -> None:
    scenarios = {"loop_a": {"extends": "loop_b"}, "loop_b": {"extends": "loop_a"}}
    has_error(plan(ascend_scenarios=scenarios, ascend_scenario="loop_a"), "a3-node1", "ascend_scenarios.loop_a", "loop")


def test_no_hosts_in_the_mode_groups() -> None:
    has_error(plan(groups={"decode": []}), "group decode", "groups", "needs hosts in group decode")
    has_error(plan(groups={"single": [], "prefill": [], "decode": []}), "inventory", "groups")
    has_error(plan(groups={"proxy": []}), "group proxy", "groups", "no proxy host")


def test_deployment_wide_variables_must_agree() -> None:
    hostvars, groups = site(node3=True, ascend_scenario="a3_pd_long_latency", ascend_recipe="v0.21")
    hostvars["a3-node3"]["ascend_model"] = "minimax-m2.5-w8a8"
    has_error(build_plan(hostvars, groups, CATALOGUE), "a3-node3", "ascend_model", "differs from 'minimax-m2.7-w8a8'")


def test_role_topology_must_agree() -> None:
    hostvars, groups = site(node3=True, ascend_scenario="a3_pd_long_latency", ascend_recipe="v0.21")
    hostvars["a3-node3"]["ascend_scenario_overrides"] = {"decode": {"tp": 4}}
    result = build_plan(hostvars, groups, CATALOGUE)
    has_error(result, "a3-node3", "ascend_scenario_overrides.decode.tp", "differs from 8 on a3-node2")


def test_pd_hosts_need_an_ip() -> None:
    hostvars, groups = site()
    del hostvars["a3-node2"]["ascend_local_ip"]
    hostvars["a3-node1"]["ascend_local_ip"] = "node-one"
    result = build_plan(hostvars, groups, CATALOGUE)
    has_error(result, "a3-node2", "ascend_local_ip", "not set")
    has_error(result, "a3-node1", "ascend_local_ip", "not an IP address")


def test_env_values_must_be_text() -> None:
    has_error(plan(ascend_env_extra={"VLLM_USE_MODELSCOPE": True}), "a3-node1", "ascend_env_extra.VLLM_USE_MODELSCOPE")


def test_fused_mc2_on_a2_warns() -> None:
    result = plan("a2", ascend_env_extra={"VLLM_ASCEND_ENABLE_FUSED_MC2": "1"})
    ok(result)
    assert any("fused MC2" in w["message"] and w["host"] == "a2-node1" for w in result["warnings"])


JUNK = (None, "x", -1, True, [], {"x": {"y": None}}, '{"single": 1}', "0-99999999999")


@pytest.mark.parametrize("scenario", ["a3_single_short", "a3_pd_1p2d_200k"])
def test_no_value_makes_the_plan_crash(scenario: str) -> None:
    """Whatever a variable holds, the plan reports errors; it never raises (Ansible would show a
    traceback instead of host and variable)."""
    hostvars, groups = site(node3=True, ascend_scenario=scenario)
    paths = [(name,) for name in sorted(CATALOGUE["defaults"])]
    paths += [("ascend_scenario_overrides", role, key) for role in ("single", "decode") for key in ("tp", "instances")]
    paths += [("ascend_serve_args_extra", flag) for flag in ("speculative-config", "prefill-context-parallel-size")]
    paths += [("ascend_models", "minimax-m2.7-w8a8", "path"), ("ascend_scenarios", scenario)]
    for path in paths:
        for value in JUNK:
            broken = copy.deepcopy(hostvars)
            for values in broken.values():
                target = values
                for key in path[:-1]:
                    target = target.setdefault(key, {}) if isinstance(target.get(key, {}), dict) else {}
                target[path[-1]] = value
            result = build_plan(broken, groups, CATALOGUE)
            assert isinstance(result["errors"], list) and isinstance(result["table"], list), (path, value)
