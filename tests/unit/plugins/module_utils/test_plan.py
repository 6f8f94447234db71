# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan over the sample inventories and the shipped catalogue: topology, recipes, records.

The rules that refuse an inventory are in test_plan_checks.py.
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.plan import check_shape, serve_commands
from ansible_collections.ascend.vllm.plugins.module_utils.plan_render import entrypoint, kv_transfer_config
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

# --- the sample inventories ----------------------------------------------------------------


def test_a3_sample_is_the_guide_1p1d_on_the_newest_recipe() -> None:
    document = ok(plan())
    assert (document["schema"], document["schema_version"]) == ("ascend.vllm/plan", 1)
    assert (document["scenario"], document["mode"], document["shape"]) == (
        "a3_pd_1p1d_200k",
        "pd",
        {"prefill": 1, "decode": 1},
    )
    assert document["recipe"]["name"] == "v0.23" and "newest recipe" in document["recipe"]["why"]
    assert document["image"] == "quay.io/ascend/vllm-ascend:v0.23.0-a3"
    assert document["endpoints"] == ["http://192.0.2.11:8009"]
    rows = [(s["host"], s["instance"], s["dp_rank"], s["port"], s["kv_ports"], s["chips"]) for s in servers(document)]
    assert rows == [
        ("a3-node1", "prefill0", 0, 7000, [18000, 18007], list(range(0, 8))),
        ("a3-node1", "prefill0", 1, 7001, [18008, 18015], list(range(8, 16))),
        ("a3-node2", "decode0", 0, 7100, [19000, 19007], list(range(0, 8))),
        ("a3-node2", "decode0", 1, 7101, [19008, 19015], list(range(8, 16))),
    ]
    assert [s["name"] for s in servers(document)] == [
        "vllm-prefill0-dp0",
        "vllm-prefill0-dp1",
        "vllm-decode0-dp0",
        "vllm-decode0-dp1",
    ]


def test_a3_single_node_server_record() -> None:
    document = ok(plan(**SINGLE))
    (server,) = servers(document)
    assert (server["host"], server["role"], server["name"], server["port"]) == (
        "a3-node1",
        "single",
        "vllm-single",
        8000,
    )
    assert server["chips"] == list(range(16))
    assert server["dp_rank"] is None and server["dp_size"] == 4 and server["tp"] == 4
    env = server["container"]["env"]
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == ",".join(map(str, range(16)))
    assert (env["HCCL_OP_EXPANSION_MODE"], env["VLLM_ENGINE_READY_TIMEOUT_S"]) == ("AIV", "1800")
    assert "HCCL_IF_IP" not in env and "http_proxy" not in env, "PD-only env"
    assert server["env_prepend"] == {"LD_PRELOAD": "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2"}
    assert server["argv"][:3] == ["vllm", "serve", "/root/.cache/MiniMax-M2.7-w8a8-QuaRot"]
    flags = argv_flags(server["argv"])
    assert flags["tool-call-parser"] == "minimax_m2" and flags["enable-auto-tool-choice"] is True
    assert flags["speculative-config"]["model"] == "/root/.cache/MiniMax-M2.7-eagle-model-short"
    # v0.23 drops FlashComm1 (deprecated and ignored).
    assert "enable_flashcomm1" not in flags["additional-config"]
    assert "kv-transfer-config" not in flags and "data-parallel-rank" not in flags
    assert server["url"] == "http://192.0.2.11:8000"
    assert server["weights"] == [
        {"what": "model", "path": "/root/.cache/MiniMax-M2.7-w8a8-QuaRot"},
        {"what": "speculative draft model (eagle3)", "path": "/root/.cache/MiniMax-M2.7-eagle-model-short"},
    ]
    assert document["hosts"]["a3-node1"]["proxy"] is None and document["hosts"]["a3-node1"]["network"] == {}
    assert document["endpoints"] == ["http://192.0.2.11:8000"]


def test_container_record_per_recipe() -> None:
    v023 = servers(ok(plan(**SINGLE)))[0]["container"]
    assert v023["name"] == "vllm-single" and v023["image"] == "quay.io/ascend/vllm-ascend:v0.23.0-a3"
    assert v023["devices"][:16] == [f"/dev/davinci{i}" for i in range(16)]
    assert v023["devices"][16:] == ["/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"]
    # v0.23: --ipc host, no shm size, the whole driver directory and /usr/local/sbin.
    assert (v023["network_mode"], v023["ipc_mode"], v023["shm_size"]) == ("host", "host", None)
    assert "/usr/local/Ascend/driver:/usr/local/Ascend/driver" in v023["volumes"]
    assert "/usr/local/sbin:/usr/local/sbin" in v023["volumes"]
    assert "/root/.cache:/root/.cache" in v023["volumes"]
    assert v023["entrypoint"][:2] == ["/bin/sh", "-c"]
    v021 = servers(ok(plan(**SINGLE, **V021)))[0]["container"]
    assert (v021["ipc_mode"], v021["shm_size"]) == ("private", "1g")
    assert "/usr/local/bin/npu-smi:/usr/local/bin/npu-smi" in v021["volumes"]
    assert v021["image"] == "quay.io/ascend/vllm-ascend:v0.21.0rc1-a3"


def test_a2_sample_one_server_per_single_host() -> None:
    document = ok(plan("a2"))
    assert [(s["host"], s["chips"], s["tp"], s["dp_size"]) for s in servers(document)] == [
        ("a2-node1", list(range(8)), 8, 1),
        ("a2-node2", list(range(8)), 8, 1),
    ]
    assert document["image"] == "quay.io/ascend/vllm-ascend:v0.23.0"
    env = servers(document)[0]["container"]["env"]
    assert (env["HCCL_INTRA_PCIE_ENABLE"], env["HCCL_INTRA_ROCE_ENABLE"], env["HCCL_BUFFSIZE"]) == ("1", "0", "512")
    assert [i["name"] for i in document["instances"]] == ["single0", "single1"]


def _recipe_scenarios(recipe: str) -> list[str]:
    from ansible_collections.ascend.vllm.plugins.module_utils.plan_recipes import resolve_recipes

    return sorted(resolve_recipes(CATALOGUE["recipes"])[recipe].scenarios)


@pytest.mark.parametrize("recipe", ["v0.21", "v0.23"])
def test_every_scenario_of_every_recipe_plans(recipe: str) -> None:
    for scenario in _recipe_scenarios(recipe):
        document = ok(plan(node3=True, ascend_scenario=scenario, ascend_recipe=recipe))
        assert servers(document), scenario


def test_withdrawn_scenario_names_the_reason() -> None:
    result = plan(ascend_scenario="a3_single_long")
    has_error(result, "a3-node1", "ascend_scenario", "withdrawn in recipe v0.23")
    assert ok(plan(ascend_scenario="a3_single_long", **V021))["recipe"]["name"] == "v0.21"


@pytest.mark.parametrize("model", sorted(CATALOGUE["models"]))
def test_every_catalogue_model_plans(model: str) -> None:
    # C8 weights cannot take the catalogue's EAGLE3 (see test_eagle3_with_c8_is_refused).
    extra = {"ascend_serve_args_extra": {"speculative-config": False}} if CATALOGUE["models"][model]["c8"] else {}
    document = ok(plan(ascend_model=model, **extra))
    assert servers(document)[0]["model"].startswith("/root/.cache/MiniMax-M2")


# --- recipes and the image ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "recipe", "image"),
    [
        ({}, "v0.23", "quay.io/ascend/vllm-ascend:v0.23.0-a3"),
        ({"ascend_vllm_image_tag": "v0.21.0rc1-a3"}, "v0.21", "quay.io/ascend/vllm-ascend:v0.21.0rc1-a3"),
        ({"ascend_vllm_image_tag": "v0.22.1rc1-a3"}, "v0.21", "quay.io/ascend/vllm-ascend:v0.22.1rc1-a3"),
        ({"ascend_vllm_image_tag": "v0.24.0-a3"}, "v0.23", "quay.io/ascend/vllm-ascend:v0.24.0-a3"),
        (
            {"ascend_vllm_image_mirror": "m.daocloud.io/"},
            "v0.23",
            "m.daocloud.io/quay.io/ascend/vllm-ascend:v0.23.0-a3",
        ),
        (
            {"ascend_vllm_image": "registry.local:5000/ascend/vllm:v0.21.0"},
            "v0.21",
            "registry.local:5000/ascend/vllm:v0.21.0",
        ),
        ({"ascend_recipe": "v0.21"}, "v0.21", "quay.io/ascend/vllm-ascend:v0.21.0rc1-a3"),
    ],
)
def test_recipe_follows_the_image(extra: dict[str, str], recipe: str, image: str) -> None:
    document = ok(plan(**extra))
    assert (document["recipe"]["name"], document["image"]) == (recipe, image)
    assert all(s["container"]["image"] == image for s in servers(document))


def test_v0_23_pd_recipe_differs_from_v0_21_as_the_guide_says() -> None:
    new, old = (by_name(ok(plan(**extra))) for extra in ({}, V021))
    for name in ("a3-node1/vllm-prefill0-dp0", "a3-node2/vllm-decode0-dp0"):
        flags_new, flags_old = argv_flags(new[name]["argv"]), argv_flags(old[name]["argv"])
        assert (flags_old["gpu-memory-utilization"], flags_new["gpu-memory-utilization"]) == ("0.85", "0.75")
        assert "VLLM_ASCEND_ENABLE_FLASHCOMM1" in old[name]["container"]["env"]
        assert "VLLM_ASCEND_ENABLE_FLASHCOMM1" not in new[name]["container"]["env"]
    prefill, decode = (argv_flags(new[n]["argv"]) for n in ("a3-node1/vllm-prefill0-dp0", "a3-node2/vllm-decode0-dp0"))
    assert prefill["speculative-config"]["num_speculative_tokens"] == 1
    assert decode["speculative-config"]["num_speculative_tokens"] == 3
    assert "async-scheduling" not in decode and "async-scheduling" in argv_flags(
        old["a3-node2/vllm-decode0-dp0"]["argv"]
    )
    assert decode["additional-config"] == {"enable_cpu_binding": True, "recompute_scheduler_enable": True}


def test_a_placeholder_tag_is_refused_and_a_moving_tag_warns() -> None:
    # Nothing can pull a placeholder: refused before the image step, where hosts are already tuned.
    has_error(plan(ascend_vllm_image_tag="CHANGE-ME", ascend_recipe="v0.23"), "a3-node1", "ascend_vllm_image_tag")
    result = plan(ascend_vllm_image_tag="latest", ascend_recipe="v0.23")
    ok(result)
    assert any("moves" in w["message"] for w in result["warnings"]), result["warnings"]


def test_a_tag_that_is_no_version_gets_the_newest_recipe_with_a_warning() -> None:
    result = plan(ascend_vllm_image="ascend-sim/vllm-ascend:sim")
    assert ok(result)["recipe"]["name"] == "v0.23"
    assert any(
        w["variable"] == "ascend_vllm_image" and "no vLLM-Ascend release tag" in w["message"]
        for w in result["warnings"]
    )


def test_unknown_recipe_and_mismatching_recipe() -> None:
    has_error(plan(ascend_recipe="v9"), "a3-node1", "ascend_recipe", "known: v0.21, v0.23")
    result = plan(ascend_recipe="v0.21", ascend_vllm_image_tag="v0.23.0-a3")
    ok(result)
    assert any(w["variable"] == "ascend_recipe" and "may not match" in w["message"] for w in result["warnings"])


# --- PD ----------------------------------------------------------------------------------------


def test_pd_flags_data_parallel_group_and_kv_transfer() -> None:
    document = ok(plan())
    for server in servers(document):
        f, role = argv_flags(server["argv"]), server["role"]
        assert f["data-parallel-size"] == "2" and f["tensor-parallel-size"] == "8"
        assert f["data-parallel-rank"] == str(server["dp_rank"])
        assert f["data-parallel-address"] == ("192.0.2.11" if role == "prefill" else "192.0.2.12")
        assert f["data-parallel-rpc-port"] == {"prefill": "12321", "decode": "12421"}[role]
        kv = f["kv-transfer-config"]
        assert kv["kv_role"] == {"prefill": "kv_producer", "decode": "kv_consumer"}[role]
        assert kv["engine_id"] == {"prefill": "0", "decode": "1"}[role]
        assert kv["kv_port"] == {"prefill": "18000", "decode": "19000"}[role]
        assert kv["kv_connector_extra_config"] == {
            "use_ascend_direct": True,
            "prefill": {"dp_size": 2, "tp_size": 8},
            "decode": {"dp_size": 2, "tp_size": 8},
        }


def test_pd_env_network_proxies_mounts_and_prepends() -> None:
    decode = by_name(ok(plan()))["a3-node2/vllm-decode0-dp1"]
    env = decode["container"]["env"]
    assert env["HCCL_IF_IP"] == "192.0.2.12"
    assert {env[k] for k in ("GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "HCCL_SOCKET_IFNAME")} == {"enp189s0f0"}
    assert all(env[k] == "" for k in ("http_proxy", "https_proxy", "ftp_proxy", "HTTP_PROXY"))
    assert (env["PYTHONHASHSEED"], env["HCCL_BUFFSIZE"]) == ("0", "2048")
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "8,9,10,11,12,13,14,15"
    assert "HCCL_INTRA_ROCE_ENABLE" not in env, "P and D are on different hosts"
    assert decode["env_prepend"]["LD_LIBRARY_PATH"].endswith("/site-packages/mooncake")
    assert "/etc/hccn.conf:/etc/hccn.conf:ro" in decode["container"]["volumes"]


def test_pd_host_records_ports_network_and_tuning() -> None:
    document = ok(plan())
    node1 = document["hosts"]["a3-node1"]
    assert node1["roles"] == ["prefill", "proxy"]
    ports = [(p["first"], p["last"], p["owner"]) for p in node1["ports"]]
    assert ports == [
        (7000, 7000, "vllm-prefill0-dp0"),
        (18000, 18007, "vllm-prefill0-dp0"),
        (12321, 12321, "vllm-prefill0-dp0"),
        (7001, 7001, "vllm-prefill0-dp1"),
        (18008, 18015, "vllm-prefill0-dp1"),
        (8009, 8009, "vllm-pd-proxy"),
    ]
    assert node1["network"] == {
        "nic": "enp189s0f0",
        "ip": "192.0.2.11",
        "devices": list(range(16)),
        "hccn_conf": "/etc/hccn.conf",
        "fabric_peers": ["a3-node2"],
    }
    assert document["hosts"]["a3-node2"]["network"]["fabric_peers"] == ["a3-node1"]
    assert node1["tuning"] == {
        "sysctls": {"vm.swappiness": 0, "kernel.numa_balancing": 0, "kernel.sched_migration_cost_ns": 50000},
        "cpu_governor": "performance",
    }


def test_pd_proxy_record() -> None:
    document = ok(plan())
    proxy = document["hosts"]["a3-node1"]["proxy"]
    assert (proxy["host"], proxy["port"], proxy["name"], proxy["url"]) == (
        "a3-node1",
        8009,
        "vllm-pd-proxy",
        "http://192.0.2.11:8009",
    )
    assert [(e["ip"], e["port"]) for e in proxy["prefill"]] == [("192.0.2.11", 7000), ("192.0.2.11", 7001)]
    assert [e["url"] for e in proxy["decode"]] == ["http://192.0.2.12:7100", "http://192.0.2.12:7101"]
    # Each backend is named like its server record, so proxy logs and metrics match the plan.
    assert [e["name"] for e in proxy["prefill"]] == ["a3-node1/vllm-prefill0-dp0", "a3-node1/vllm-prefill0-dp1"]
    assert {e["instance"] for e in proxy["decode"]} == {"decode0"}
    assert set(by_name(document)) >= {e["name"] for e in proxy["prefill"] + proxy["decode"]}
    assert proxy["image"] == document["image"]


def test_1p2d_two_decode_instances_are_independent_dp_groups() -> None:
    document = ok(plan(node3=True, ascend_scenario="a3_pd_1p2d_200k"))
    assert document["shape"] == {"prefill": 1, "decode": 2}
    decode = [i for i in document["instances"] if i["role"] == "decode"]
    assert [
        (i["name"], i["hosts"], i["dp_address"], i["dp_rpc_port"], i["engine_id"], i["kv_port"]) for i in decode
    ] == [
        ("decode0", ["a3-node2"], "192.0.2.12", 12421, "1", 19000),
        ("decode1", ["a3-node3"], "192.0.2.13", 12422, "2", 19016),
    ]
    for server in servers(document):
        if server["instance"] == "decode1":
            flags = argv_flags(server["argv"])
            assert flags["data-parallel-address"] == "192.0.2.13" and flags["data-parallel-size"] == "2"
            assert flags["kv-transfer-config"]["engine_id"] == "2"
    proxy = document["hosts"]["a3-node1"]["proxy"]
    assert [e["instance"] for e in proxy["decode"]] == ["decode0", "decode0", "decode1", "decode1"]


def test_two_instances_of_a_role_on_one_host_get_distinct_ports() -> None:
    overrides = {"decode": {"instances": 2, "tp": 4, "dp": 2}}
    document = ok(plan(ascend_scenario_overrides=overrides))
    rows = [(s["instance"], s["port"], s["kv_ports"], s["chips"][0], s["dp_rpc_port"])
            for s in servers(document) if s["role"] == "decode"]  # fmt: skip
    assert rows == [
        ("decode0", 7100, [19000, 19003], 0, 12421),
        ("decode0", 7101, [19004, 19007], 4, 12421),
        ("decode1", 7102, [19008, 19011], 8, 12422),
        ("decode1", 7103, [19012, 19015], 12, 12422),
    ]


@pytest.mark.parametrize(
    ("scenario", "prefill", "decode"),
    [
        # Table 9.1: (tp, dp) per role and the ranks per decode host.
        ("a3_pd_short_throughput", (2, 8), (1, 32, {"a3-node2": 16, "a3-node3": 16})),
        ("a3_pd_short_latency", (4, 4), (4, 8, {"a3-node2": 4, "a3-node3": 4})),
        ("a3_pd_long_throughput", (8, 2), (8, 2, {"a3-node2": 2})),
        ("a3_pd_long_latency", (8, 2), (8, 4, {"a3-node2": 2, "a3-node3": 2})),
    ],
)
def test_table_9_1_rows(scenario: str, prefill: tuple[int, int], decode: tuple[int, int, dict[str, int]]) -> None:
    # One decode host for 1P1D on two hosts: a third one would carry a second decode instance.
    result = plan(node3=len(decode[2]) > 1, ascend_scenario=scenario, **V021)
    document = ok(result)
    pre = [s for s in servers(document) if s["role"] == "prefill"]
    dec = [s for s in servers(document) if s["role"] == "decode"]
    assert {(s["tp"], s["dp_size"]) for s in pre} == {prefill} and len(pre) == prefill[1]
    assert {(s["tp"], s["dp_size"]) for s in dec} == {decode[:2]} and len(dec) == decode[1]
    per_host: dict[str, int] = {}
    for server in dec:
        per_host[server["host"]] = per_host.get(server["host"], 0) + 1
    assert per_host == decode[2]
    assert sorted(s["dp_rank"] for s in dec) == list(range(decode[1]))
    # One decode instance (its "1P2D" counts nodes), EP = tp x dp over every rank.
    assert document["shape"] == {"prefill": 1, "decode": 1}
    assert all(argv_flags(s["argv"])["enable-expert-parallel"] is True for s in servers(document))
    flags = argv_flags(dec[0]["argv"])
    short = "short" in scenario
    assert flags["max-model-len"] == ("32768" if short else "196608")
    assert flags["max-num-seqs"] == ("128" if short else "16")
    assert dec[0]["container"]["env"]["VLLM_ASCEND_ENABLE_FLASHCOMM1"] == "1"
    assert result["warnings"] == []


def _with_decode_hosts(*names: str, **extra: Any) -> dict[str, Any]:
    """The A3 sample plus ``names`` (new A3 hosts) at the end of group decode."""
    hostvars, groups = site("a3", node3=True, **extra)
    for number, name in enumerate(names, start=4):
        ip = f"192.0.2.{10 + number}"
        hostvars[name] = {**hostvars["a3-node1"], "ansible_host": ip, "ascend_local_ip": ip}
        groups["decode"] = [*groups["decode"], name]
    return build_plan(hostvars, groups, CATALOGUE)


def test_a_host_added_to_group_decode_is_one_more_decode_instance_and_changes_no_other_record() -> None:
    before = ok(plan(node3=True, ascend_scenario="a3_pd_1p2d_200k"))
    after = ok(_with_decode_hosts("a3-node4", ascend_scenario="a3_pd_1p2d_200k"))
    assert after["shape"] == {"prefill": 1, "decode": 3}
    added = [i for i in after["instances"] if i["name"] == "decode2"]
    assert [(i["hosts"], i["engine_id"], i["dp_rpc_port"], i["kv_port"]) for i in added] == [
        (["a3-node4"], "3", 12423, 19032)
    ]
    # Scale out leaves every other server as it was: a re-run does not touch their containers.
    for host in ("a3-node1", "a3-node2", "a3-node3"):
        assert after["hosts"][host]["servers"] == before["hosts"][host]["servers"]
    proxy = next(h["proxy"] for h in after["hosts"].values() if h["proxy"])
    assert [b["name"] for b in proxy["decode"]][-2:] == ["a3-node4/vllm-decode2-dp0", "a3-node4/vllm-decode2-dp1"]


def test_a_host_too_small_for_a_whole_dp_group_adds_no_instance_and_warns() -> None:
    # Table 9.1's long-latency decode instance is DP4 over two hosts: one more host holds half of one.
    result = _with_decode_hosts("a3-node4", ascend_scenario="a3_pd_long_latency", **V021)
    assert ok(result)["shape"] == {"prefill": 1, "decode": 1}
    assert [(w["host"], w["variable"]) for w in result["warnings"]] == [("a3-node4", "groups.decode")]


def test_a_host_shared_with_prefill_never_grows_decode() -> None:
    # node1 serves prefill on half its chips; its other half is no whole host for a new decode group.
    result = plan(
        node3=False,
        groups={"decode": ["a3-node2", "a3-node1"]},
        ascend_scenario_overrides={"prefill": {"dp": 1}},
    )
    assert ok(result)["shape"] == {"prefill": 1, "decode": 1}


def test_pd_ports_restart_per_host() -> None:
    document = ok(plan(node3=True, ascend_scenario="a3_pd_short_throughput", **V021))
    rank16 = next(s for s in servers(document) if s["role"] == "decode" and s["dp_rank"] == 16)
    assert (rank16["host"], rank16["port"], rank16["dp_local_rank"], rank16["chips"]) == ("a3-node3", 7100, 0, [0])
    assert rank16["kv_ports"] == [19016, 19016]
    assert argv_flags(rank16["argv"])["data-parallel-address"] == "192.0.2.12"


def test_dp_local_spreads_ranks() -> None:
    result = plan(node3=True, ascend_scenario_overrides={"decode": {"dp_local": 1}})
    document = ok(result)
    rows = [(s["host"], s["dp_rank"], s["port"]) for s in servers(document) if s["role"] == "decode"]
    assert rows == [("a3-node2", 0, 7100), ("a3-node3", 1, 7100)]
    assert result["warnings"] == []


def test_prefill_and_decode_on_one_host() -> None:
    groups = {"prefill": ["a3-node1"], "decode": ["a3-node1"]}
    overrides = {"prefill": {"dp": 1}, "decode": {"dp": 1}}
    document = ok(plan(groups=groups, ascend_scenario_overrides=overrides))
    assert [(s["role"], s["chips"]) for s in servers(document)] == [
        ("prefill", list(range(8))),
        ("decode", list(range(8, 16))),
    ]
    # KV goes between two NPUs of one host over RoCE.
    assert all(s["container"]["env"]["HCCL_INTRA_ROCE_ENABLE"] == "1" for s in servers(document))
    assert document["hosts"]["a3-node1"]["network"]["fabric_peers"] == []


# --- the shape a playbook deploys ----------------------------------------------------------------


def test_check_shape() -> None:
    document = ok(plan())
    assert check_shape(document, "pd", {"prefill": 1, "decode": 1}, "pd_1p1d.yml") == []
    (problem,) = check_shape(document, "single", None, "playbooks/single_node.yml")
    assert "playbooks/single_node.yml deploys a single-node scenario; a3_pd_1p1d_200k is a PD one" in problem
    (problem,) = check_shape(document, "pd", {"prefill": 1, "decode": 2}, "playbooks/pd_1p2d.yml")
    assert "deploys 1 prefill and 2 decode instance(s); scenario a3_pd_1p1d_200k has 1 prefill and 1 decode" in problem
    assert check_shape(ok(plan(**SINGLE)), "pd", None, "pd.yml")[0].startswith("pd.yml deploys a prefill/decode")


# --- survey strings and layered overrides ---------------------------------------------------


def test_survey_strings_are_coerced() -> None:
    document = ok(
        plan(
            **SINGLE,
            ascend_scenario_overrides='{"single": {"tp": "8", "dp": "2"}}',
            ascend_tool_calling="false",
            ascend_serve_args_extra='{"max_num_seqs": "32", "enforce-eager": "true", "async-scheduling": "false"}',
            ascend_single_port="8001",
            ascend_jemalloc_preload="no",
        )
    )
    (server,) = servers(document)
    flags = argv_flags(server["argv"])
    assert (flags["tensor-parallel-size"], flags["data-parallel-size"], flags["port"]) == ("8", "2", "8001")
    assert flags["max-num-seqs"] == "32" and flags["enforce-eager"] is True
    assert "async-scheduling" not in flags and "tool-call-parser" not in flags
    assert server["env_prepend"] == {} and server["container"]["entrypoint"] is None


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
    has_error(plan(**SINGLE, **extra), "a3-node1", variable, text)


def test_overrides_merge_key_by_key() -> None:
    document = ok(
        plan(
            **SINGLE,
            ascend_scenario_overrides={"serve_args": {"max-model-len": 65536}, "env": {"HCCL_BUFFSIZE": "1536"}},
            ascend_serve_args_extra={"additional-config": {"enable_cpu_binding": None, "weight_nz_mode": False}},
            ascend_env_extra={"TASK_QUEUE_ENABLE": None, "EXTRA": 7},
        )
    )
    server = servers(document)[0]
    flags = argv_flags(server["argv"])
    assert flags["max-model-len"] == "65536" and flags["max-num-seqs"] == "48"
    assert flags["additional-config"] == {"enable_fused_mc2": True, "weight_nz_mode": False}
    env = server["container"]["env"]
    assert env["HCCL_BUFFSIZE"] == "1536" and env["EXTRA"] == "7"
    assert "TASK_QUEUE_ENABLE" not in env


def test_served_name_chips_and_arch() -> None:
    document = ok(
        plan(**SINGLE, ascend_served_model_name="minimax",
             ascend_chips=[8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7], ascend_cpu_arch="x86_64")
    )  # fmt: skip
    server = servers(document)[0]
    assert server["served_model_name"] == "minimax" and argv_flags(server["argv"])["served-model-name"] == "minimax"
    assert document["served_model_name"] == "minimax"
    assert server["container"]["env"]["ASCEND_RT_VISIBLE_DEVICES"].startswith("8,9,")
    assert server["env_prepend"]["LD_PRELOAD"] == "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def test_weights_outside_the_models_dir_are_mounted() -> None:
    models = {"minimax-m2.7-w8a8": {**CATALOGUE["models"]["minimax-m2.7-w8a8"], "eagle3": "/data/eagle/"}}
    server = servers(ok(plan(**SINGLE, ascend_models=models)))[0]
    assert "/data/eagle:/data/eagle:ro" in server["container"]["volumes"]
    assert argv_flags(server["argv"])["speculative-config"]["model"] == "/data/eagle/"
    assert server["weights"][1]["path"] == "/data/eagle/"


def test_the_plan_is_deterministic_json_and_leaves_its_input_alone() -> None:
    hostvars, groups = site(node3=True, ascend_scenario="a3_pd_short_latency", ascend_recipe="v0.21")
    before = copy.deepcopy(hostvars)
    first = build_plan(hostvars, groups, CATALOGUE)
    assert first == build_plan(hostvars, groups, CATALOGUE)
    assert hostvars == before
    assert json.loads(json.dumps(first["plan"])) == first["plan"]


def test_each_argv_is_stored_once() -> None:
    document = ok(plan())
    text = json.dumps(document)
    for server in servers(document):
        assert text.count(json.dumps(server["argv"])[1:-1]) == 1, server["name"]


def test_serve_commands_one_line_per_server() -> None:
    document = ok(plan())
    lines = serve_commands(document).splitlines()
    assert lines[0] == "# a3-node1 vllm-prefill0-dp0 (prefill0)"
    assert lines[1].startswith("vllm serve /root/.cache/MiniMax-M2.7-w8a8-QuaRot --served-model-name MiniMax-M2.7")
    assert len(lines) == 2 * len(servers(document))


# --- building blocks -------------------------------------------------------------------------


def test_kv_transfer_config_is_one_function_for_both_roles() -> None:
    sizes = {"prefill": (8, 2), "decode": (4, 4)}
    producer = kv_transfer_config("prefill", 18000, "0", sizes)
    consumer = kv_transfer_config("decode", 19000, "1", sizes)
    assert producer["kv_connector_extra_config"] == consumer["kv_connector_extra_config"]
    assert producer["kv_connector_extra_config"]["decode"] == {"dp_size": 4, "tp_size": 4}
    assert (producer["kv_role"], consumer["kv_role"]) == ("kv_producer", "kv_consumer")


def test_entrypoint_prepends_to_the_image_env() -> None:
    argv = ["printenv", "LD_PRELOAD"]
    command = [*entrypoint({"LD_PRELOAD": "/new/lib.so"}), *argv]
    with_old = subprocess.run(command, env={"LD_PRELOAD": "/old.so"}, capture_output=True, text=True, check=True)
    assert with_old.stdout.strip() == "/new/lib.so:/old.so"
    without = subprocess.run(command, env={}, capture_output=True, text=True, check=True)
    assert without.stdout.strip() == "/new/lib.so"
    assert entrypoint({}) is None


def test_image_files_are_what_the_containers_preload() -> None:
    document = ok(plan())
    assert document["hosts"]["a3-node1"]["image_files"] == ["/usr/lib/aarch64-linux-gnu/libjemalloc.so.2"]
    assert ok(plan(ascend_jemalloc_preload=False))["hosts"]["a3-node2"]["image_files"] == []


# --- the one-value shortcuts an AWX survey fills (ascend_max_model_len, ascend_num_speculative_tokens)


def test_survey_strings_set_max_model_len_and_speculative_tokens_on_every_pd_server() -> None:
    document = ok(plan(ascend_max_model_len="65536", ascend_num_speculative_tokens="2"))
    for server in servers(document):
        flags = argv_flags(server["argv"])
        assert flags["max-model-len"] == "65536", server["name"]
        speculative = flags["speculative-config"]
        # The number replaces the scenario's (v0.23: 1 on prefill, 3 on decode); the method and
        # the model's EAGLE3 head stay.
        assert speculative["num_speculative_tokens"] == 2 and speculative["method"] == "eagle3", server["name"]
        assert speculative["model"].endswith("MiniMax-M2.7-eagle-model-short")


def test_unset_or_blank_shortcuts_keep_the_scenario() -> None:
    before = ok(plan())
    after = ok(plan(ascend_max_model_len="", ascend_num_speculative_tokens=None))
    assert [s["argv"] for s in servers(after)] == [s["argv"] for s in servers(before)]
    flags = {s["instance"]: argv_flags(s["argv"]) for s in servers(before)}
    assert flags["decode0"]["max-model-len"] == "196608"
    assert (
        flags["prefill0"]["speculative-config"]["num_speculative_tokens"],
        flags["decode0"]["speculative-config"]["num_speculative_tokens"],
    ) == (1, 3)


def test_zero_speculative_tokens_turns_speculative_decoding_off() -> None:
    document = ok(plan(**SINGLE, ascend_num_speculative_tokens="0"))
    (server,) = servers(document)
    assert "speculative-config" not in argv_flags(server["argv"])
    assert [w["what"] for w in server["weights"]] == ["model"]


def test_max_model_len_is_the_last_word_over_serve_args_extra() -> None:
    document = ok(plan(**SINGLE, ascend_serve_args_extra={"max-model-len": 8192}, ascend_max_model_len=32768))
    assert argv_flags(servers(document)[0]["argv"])["max-model-len"] == "32768"


@pytest.mark.parametrize(
    ("extra", "variable", "text"),
    [
        ({"ascend_max_model_len": "64k"}, "ascend_max_model_len", "not an integer"),
        ({"ascend_max_model_len": "0"}, "ascend_max_model_len", "below the minimum 1"),
        ({"ascend_max_model_len": "true"}, "ascend_max_model_len", "not an integer"),
        ({"ascend_num_speculative_tokens": "-1"}, "ascend_num_speculative_tokens", "below the minimum 0"),
        ({"ascend_num_speculative_tokens": "9"}, "ascend_num_speculative_tokens", "above the maximum 8"),
        (
            {"ascend_num_speculative_tokens": "3", "ascend_serve_args_extra": {"speculative-config": False}},
            "ascend_num_speculative_tokens",
            "run no speculative decoding",
        ),
    ],
)
def test_shortcut_values_that_cannot_apply_name_the_variable(extra: dict[str, Any], variable: str, text: str) -> None:
    has_error(plan(**SINGLE, **extra), "a3-node1", variable, text)
