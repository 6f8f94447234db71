# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The API keys in the plan: ascend_vllm_api_key and ascend_proxy_api_keys are validated, each
problem naming the host and the variable and never the value, and the plan records only whether
a key is required (``auth``), never a key: plan.json is written to disk and shown."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from plan_helpers import CATALOGUE, has_error, ok, plan, servers, site

from ansible_collections.ascend.vllm.plugins.module_utils.plan import build_plan
from ansible_collections.ascend.vllm.plugins.module_utils.plan_auth import KEY_FILE, KEY_MOUNT, to_api_key, to_api_keys
from ansible_collections.ascend.vllm.plugins.module_utils.plan_render import entrypoint
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import CoerceError

KEY = "sk-instances-0123456789"
CLIENT = "sk-clients-9876543210"
SINGLE = {"ascend_scenario": "a3_single_short"}


def everything(result: dict[str, Any]) -> str:
    """All a run could show or write: the plan, its table, every error and warning."""
    return json.dumps(result, default=str)


def test_keys_are_recorded_as_flags_only() -> None:
    result = plan(ascend_vllm_api_key=KEY, ascend_proxy_api_keys=[CLIENT, "sk-second"])
    document = ok(result)
    assert {s["auth"] for s in servers(document)} == {True}
    (proxy,) = [h["proxy"] for h in document["hosts"].values() if h["proxy"]]
    assert proxy["auth"] is True
    assert {b["auth"] for b in proxy["prefill"] + proxy["decode"]} == {True}
    assert result["warnings"] == []
    shown = everything(result)
    assert KEY not in shown and CLIENT not in shown and "sk-second" not in shown


def test_without_keys_nothing_requires_one() -> None:
    document = ok(plan())
    assert {s["auth"] for s in servers(document)} == {False}
    (proxy,) = [h["proxy"] for h in document["hosts"].values() if h["proxy"]]
    assert proxy["auth"] is False and {b["auth"] for b in proxy["prefill"] + proxy["decode"]} == {False}


def test_an_empty_key_or_list_means_no_key() -> None:
    document = ok(plan(ascend_vllm_api_key="", ascend_proxy_api_keys=[]))
    assert {s["auth"] for s in servers(document)} == {False}


def test_a_single_node_server_records_its_key_and_proxy_keys_are_ignored_with_a_warning() -> None:
    result = plan(**SINGLE, ascend_vllm_api_key=KEY, ascend_proxy_api_keys=[CLIENT])
    assert {s["auth"] for s in servers(ok(result))} == {True}
    (warning,) = result["warnings"]
    assert warning["variable"] == "ascend_proxy_api_keys" and "no proxy" in warning["message"]
    assert KEY not in everything(result) and CLIENT not in everything(result)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("two words", "contains whitespace"),
        ("tab\there", "contains whitespace"),
        ("brk\n", "contains whitespace"),
        ("   ", "is empty"),
        (True, "is not a string"),
        (["a-list"], "is not a string"),
        ({"key": "x"}, "is not a string"),
    ],
)
def test_a_bad_instance_key_is_refused_naming_host_and_variable_not_the_value(value: Any, text: str) -> None:
    result = plan(ascend_vllm_api_key=value)
    has_error(result, "a3-node1", "ascend_vllm_api_key", text)
    has_error(result, "a3-node2", "ascend_vllm_api_key", text)
    if isinstance(value, str) and value.strip():
        assert json.dumps(value)[1:-1] not in everything(result)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"a": CLIENT}, "not a list of keys"),
        (42, "not a list of keys"),
        ("bad key", "entry 0 contains whitespace"),
        ([CLIENT, ""], "entry 1 is empty"),
        (["good", "bad key"], "entry 1 contains whitespace"),
        ([None], "entry 0 is not a string"),
        ([7, False], "entry 1 is not a string"),
    ],
)
def test_bad_proxy_keys_are_refused_naming_the_proxy_host_and_the_entry(value: Any, text: str) -> None:
    result = plan(ascend_vllm_api_key=KEY, ascend_proxy_api_keys=value)
    has_error(result, "a3-node1", "ascend_proxy_api_keys", text)
    assert CLIENT not in everything(result) and "bad key" not in everything(result)


def test_one_proxy_key_may_be_a_string_as_an_awx_credential_injects_it() -> None:
    result = plan(ascend_vllm_api_key=KEY, ascend_proxy_api_keys=CLIENT)
    (proxy,) = [h["proxy"] for h in ok(result)["hosts"].values() if h["proxy"]]
    assert proxy["auth"] is True and CLIENT not in everything(result)
    assert to_api_keys(CLIENT) == [CLIENT] and to_api_keys("") == [] and to_api_keys(None) == []


def test_a_number_is_a_key() -> None:
    assert to_api_key(123456) == "123456" and to_api_keys([123, "abc"]) == ["123", "abc"]


def test_coercion_messages_never_quote_the_value() -> None:
    for bad in ("has-a space", "tab\tkey", "brk\nkey", ["ok-key", "x y"]):
        with pytest.raises(CoerceError) as raised:
            to_api_keys(bad) if isinstance(bad, list) else to_api_key(bad)
        assert "key" not in str(raised.value).replace("the key", "").replace("list of keys", "")
        assert "has-a" not in str(raised.value) and "x y" not in str(raised.value)


def test_the_instance_key_is_deployment_wide() -> None:
    hostvars, groups = site()
    hostvars["a3-node1"]["ascend_vllm_api_key"] = KEY
    hostvars["a3-node2"]["ascend_vllm_api_key"] = "sk-another-one"
    result = build_plan(hostvars, groups, CATALOGUE)
    has_error(result, "a3-node2", "ascend_vllm_api_key", "differs from the value on a3-node1")
    assert KEY not in everything(result) and "sk-another-one" not in everything(result)


def test_the_instance_key_set_on_some_hosts_only_is_refused() -> None:
    hostvars, groups = site()
    hostvars["a3-node2"]["ascend_vllm_api_key"] = KEY
    result = build_plan(hostvars, groups, CATALOGUE)
    has_error(result, "a3-node1", "ascend_vllm_api_key", "not set here but set on a3-node2")
    assert KEY not in everything(result)


def test_proxy_keys_without_instance_keys_warn_that_the_instances_can_be_reached_directly() -> None:
    result = plan(ascend_proxy_api_keys=[CLIENT])
    document = ok(result)
    assert {s["auth"] for s in servers(document)} == {False}
    (warning,) = result["warnings"]
    assert warning["host"] == "a3-node1" and "bypasses it" in warning["message"]


def test_instance_keys_without_proxy_keys_warn_that_the_proxy_is_open() -> None:
    result = plan(ascend_vllm_api_key=KEY)
    ok(result)
    (warning,) = result["warnings"]
    assert warning["variable"] == "ascend_proxy_api_keys" and "serves anyone" in warning["message"]


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("ascend_vllm_apikey", "ascend_vllm_api_key"), ("ascend_proxy_api_key", "ascend_proxy_api_keys")],
)
def test_a_misspelt_key_variable_gets_a_did_you_mean(typo: str, meant: str) -> None:
    result = plan(**{typo: KEY})
    has_error(result, "a3-node1", typo, f"did you mean {meant}?")
    assert KEY not in everything(result)


def test_a_keyed_server_reads_its_key_from_a_mounted_file_never_from_its_configuration(tmp_path: Path) -> None:
    document = ok(plan(ascend_vllm_api_key=KEY, ascend_proxy_api_keys=[CLIENT]))
    for server in servers(document):
        assert server["api_key_file"] == KEY_FILE
        assert f"{KEY_FILE}:{KEY_MOUNT}:ro" in server["container"]["volumes"]
        assert "VLLM_API_KEY" not in server["container"]["env"]
        assert KEY_MOUNT in server["container"]["entrypoint"][2]
    unkeyed = ok(plan())
    for server in servers(unkeyed):
        # The file is named still: the role removes a key turned off.
        assert server["api_key_file"] == KEY_FILE and not any(KEY_MOUNT in v for v in server["container"]["volumes"])
        assert server["container"]["entrypoint"] is None or KEY_MOUNT not in server["container"]["entrypoint"][2]


def test_the_entrypoint_exports_the_key_file_and_refuses_to_start_without_it(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    command = [*entrypoint({}, {"VLLM_API_KEY": str(key_file)}), "printenv", "VLLM_API_KEY"]
    started = subprocess.run(command, env={}, capture_output=True, text=True, check=True)
    assert started.stdout.strip() == KEY
    key_file.unlink()
    missing = subprocess.run(command, env={}, capture_output=True, text=True, check=False)
    assert missing.returncode != 0 and KEY not in missing.stdout
