# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad inputs the plan used to accept: each refused, naming the host and the variable.

(The same classes run through the real playbook against a simulated cluster in
tests/integration/test_faults_inputs.py, which records them in the fault matrix.)
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
from plan_helpers import CATALOGUE, argv_flags, has_error, ok, plan, servers, site

from ansible_collections.ascend.vllm.plugins.module_utils import plan_values
from ansible_collections.ascend.vllm.plugins.module_utils.plan import build_plan
from ansible_collections.ascend.vllm.plugins.module_utils.plan_flags import ServeOptions
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import CoerceError, to_chip_ids, url_address

ROOT = Path(__file__).resolve().parents[4]
EXTRA = "ascend_serve_args_extra"


def test_the_option_table_is_vllm_0_33s_and_knows_every_shipped_flag() -> None:
    table = json.loads((ROOT / "catalogue" / "vllm-serve-options.json").read_text())
    assert table["vllm_version"] == "0.33.0"
    options = ServeOptions(CATALOGUE["serve_options"])
    assert "max-model-len" in options.by_name and "speculative-config" in options.by_name
    # Every shipped scenario plans cleanly: the recipes use only flags vLLM has, with valid values.
    for scenario in ("a3_pd_1p1d_200k", "a3_pd_1p2d_200k", "a3_pd_long_throughput", "a3_single_short"):
        for recipe in ("v0.21", "v0.23"):
            ok(plan(ascend_scenario=scenario, ascend_recipe=recipe, node3="1p2d" in scenario))


@pytest.mark.parametrize(
    ("flags", "text"),
    [
        ({"max-modle-len": 1000}, "did you mean --max-model-len?"),
        ({"enable_prefix_cachin": True}, "did you mean --enable-prefix-caching?"),
        ({"frobnicate": 1}, "is not an option of vllm serve (vLLM 0.33.0)"),
        ({"max-model-len": 0}, "must be at least 1"),
        ({"max-model-len": -5}, "must be at least 1"),
        ({"max-model-len": "lots"}, "is not a size"),
        ({"max-num-seqs": 0}, "must be at least 1"),  # the integer 0, once read as "unset"
        ({"max-num-batched-tokens": 1.5}, "not an integer"),
        ({"max-num-batched-tokens": float("inf")}, "not a finite number"),
        ({"gpu-memory-utilization": 0}, "out of range"),
        ({"gpu-memory-utilization": "nan"}, "not a finite number"),
        ({"gpu-memory-utilization": float("-inf")}, "not a finite number"),
        ({"cpu-offload-gb": -1}, "must not be negative"),
        ({"dtype": "float8"}, "is not one of auto, bfloat16"),
        ({"quantization": "asend"}, "did you mean ascend?"),
        ({"enforce-eager": "sometimes"}, "given to a switch"),
        ({"max-num-seqs": True}, "needs a value"),
    ],
)
def test_serve_flags_are_checked_against_vllms_option_table(flags, text) -> None:
    has_error(plan(**{EXTRA: flags}), "a3-node1", EXTRA, text)


def test_the_variable_that_set_a_bad_flag_is_named() -> None:
    overrides = {"decode": {"serve_args": {"max_num_seqs": 0}}}
    has_error(plan(ascend_scenario_overrides=overrides), "a3-node2", "ascend_scenario_overrides.decode.serve_args")


@pytest.mark.parametrize(
    "flags",
    [
        {"max-model-len": "auto"},
        {"max-model-len": -1},
        {"max-model-len": "128k"},
        {"max-num-batched-tokens": "16K"},
        {"no-enable-prefix-caching": True},  # vLLM maps --no-<flag> onto the flag's "off" spelling
        {"max_num_seqs": "32"},
        {"speculative-config": False},
    ],
)
def test_valid_spellings_pass(flags) -> None:
    ok(plan(**{EXTRA: flags}))


def test_two_hosts_with_one_ip() -> None:
    hostvars, groups = site()
    hostvars["a3-node2"]["ascend_local_ip"] = hostvars["a3-node1"]["ascend_local_ip"]
    has_error(
        build_plan(hostvars, groups, CATALOGUE), "a3-node2", "ascend_local_ip", "also the ascend_local_ip of a3-node1"
    )


def test_an_ipv6_host_name_is_bracketed_in_every_url() -> None:
    hostvars, groups = site()
    hostvars["2001:db8::11"] = {k: v for k, v in hostvars.pop("a3-node1").items() if k != "ascend_local_ip"}
    groups = {"single": ["2001:db8::11"]}
    document = ok(_single(hostvars, groups))
    (server,) = servers(document)
    assert server["url"] == "http://[2001:db8::11]:8000"
    targets = [t["target"] for job in document["monitoring"]["scrape"] for t in job["targets"]]
    assert "[2001:db8::11]:8000" in targets and "[2001:db8::11]:9100" in targets
    assert document["monitoring"]["prometheus"][0]["url"] == "http://[2001:db8::11]:9090"
    assert url_address("192.0.2.1") == "192.0.2.1" and url_address("a3-node1") == "a3-node1"


def _single(hostvars, groups):
    for values in hostvars.values():
        values["ascend_scenario"] = "a3_single_short"
    return build_plan(hostvars, groups, CATALOGUE)


@pytest.mark.parametrize(
    ("variable", "value", "text"),
    [
        ("ascend_nic_name", "enp1s0/1", "cannot be a network interface name"),
        ("ascend_nic_name", "a-very-long-interface0", "cannot be a network interface name"),
        ("ascend_container_shm_size", "lots", "is not a size"),
        ("ascend_container_shm_size", "0g", "not above zero"),
        ("ascend_hccn_conf", "etc/hccn.conf", "not an absolute path"),
        ("ascend_jemalloc_path", "libjemalloc.so.2", "not an absolute path"),
        ("ascend_mooncake_lib_dir", "mooncake", "not an absolute path"),
        ("ascend_models_dir", "models", "not an absolute path"),
        ("ascend_vllm_image_tag", "<tag>", "looks like a placeholder"),
    ],
)
def test_malformed_host_values(variable, value, text) -> None:
    has_error(plan(**{variable: value}), "a3-node1", variable, text)


def test_good_sizes_pass() -> None:
    for size in ("64g", "512m", "1073741824", "16GiB"):
        ok(plan(ascend_container_shm_size=size))


def test_a_relative_draft_model_is_refused() -> None:
    flags = {"speculative-config": {"method": "eagle3", "num_speculative_tokens": 3, "model": "eagle-head"}}
    has_error(plan(**{EXTRA: flags}), "a3-node1", EXTRA, "not an absolute path")


def test_speculation_must_pair_prefill_and_decode() -> None:
    # The guide's own pairing (1 token on prefill, 3 on decode) is fine.
    document = ok(plan())
    assert {s["role"] for s in servers(document) if "speculative-config" in argv_flags(s["argv"])} == {
        "prefill",
        "decode",
    }
    off = {"decode": {"serve_args": {"speculative-config": False}}}
    has_error(plan(ascend_scenario_overrides=off), "group decode (a3-node2)", "ascend_scenario_overrides", "(off)")
    other = {"decode": {"serve_args": {"speculative-config": {"method": "ngram", "num_speculative_tokens": 3}}}}
    has_error(
        plan(ascend_scenario_overrides=other), "group decode (a3-node2)", "ascend_scenario_overrides", "method ngram"
    )


def test_a_huge_chip_range_fails_before_any_range_is_built(monkeypatch) -> None:
    """Linear in the text, not in the range: the bound is checked before expanding anything."""
    built = []

    def counting_range(*args):
        built.append(args)
        return builtins.range(*args)

    monkeypatch.setattr(plan_values, "range", counting_range, raising=False)
    with pytest.raises(CoerceError, match="chip 1000000000000 does not exist"):
        to_chip_ids("0-1000000000000", limit=16)
    with pytest.raises(CoerceError, match="does not exist"):
        to_chip_ids("0-3," * 1000 + "99999999999999999", limit=16)
    assert built == [], "a range was expanded before its bound was checked"
    has_error(plan(ascend_chips="0-1000000000000"), "a3-node1", "ascend_chips", "does not exist")
