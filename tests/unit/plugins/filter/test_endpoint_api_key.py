# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The key clients of the plan's endpoint send: the proxy's first inbound key in PD, the
instances' key on a single node, nothing when unset."""

from __future__ import annotations

from ansible_collections.ascend.vllm.plugins.filter.endpoint_api_key import api_keys, endpoint_api_key


def test_pd_clients_present_the_first_proxy_key_not_the_instances_key() -> None:
    assert endpoint_api_key({"mode": "pd"}, "sk-instances", ["sk-one", "sk-two"]) == "sk-one"
    assert endpoint_api_key({"mode": "pd"}, "sk-instances", []) == ""
    assert endpoint_api_key({"mode": "pd"}, "sk-instances", "sk-one") == "sk-one"


def test_proxy_keys_are_a_list_a_string_being_one_key() -> None:
    assert api_keys("sk-one") == ["sk-one"] and api_keys(["a", "b"]) == ["a", "b"]
    assert api_keys("") == [] and api_keys(None) == []


def test_single_node_clients_present_the_instances_key() -> None:
    assert endpoint_api_key({"mode": "single"}, "sk-instances", ["sk-one"]) == "sk-instances"
    assert endpoint_api_key({"mode": "single"}, "", []) == ""
    assert endpoint_api_key({"mode": "single"}, None, []) == ""
