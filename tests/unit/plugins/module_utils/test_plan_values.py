# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Coercion of inventory values (typed YAML, -e strings, AWX survey strings), merging, flags."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import (
    CoerceError,
    Issues,
    deep_merge,
    env_value,
    flag_name,
    format_chips,
    normalize_flags,
    plain,
    render_flags,
    to_bool,
    to_chip_ids,
    to_float,
    to_int,
    to_mapping,
    to_str_list,
)


@pytest.mark.parametrize(("value", "expected"), [(4, 4), ("4", 4), (" 16 ", 16), ("+2", 2), (8.0, 8), ("-1", -1)])
def test_to_int_accepts_ints_and_survey_strings(value: Any, expected: int) -> None:
    assert to_int(value) == expected


@pytest.mark.parametrize("value", [True, "true", "4.5", 4.5, "four", "", None, "--5", [4]])
def test_to_int_refuses_what_is_not_an_integer(value: Any) -> None:
    with pytest.raises(CoerceError, match=r"not an integer|boolean"):
        to_int(value)


def test_to_int_bounds() -> None:
    assert to_int("1", minimum=1) == 1
    with pytest.raises(CoerceError, match="below the minimum 1"):
        to_int("0", minimum=1)
    with pytest.raises(CoerceError, match="above the maximum 65535"):
        to_int(70000, maximum=65535)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("true", True), ("True", True), ("yes", True), ("1", True), (1, True),
     (False, False), ("false", False), ("FALSE", False), ("no", False), ("0", False), (0, False)],
)  # fmt: skip
def test_to_bool(value: Any, expected: bool) -> None:
    assert to_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, "", [True]])
def test_to_bool_refuses(value: Any) -> None:
    with pytest.raises(CoerceError, match="not a boolean"):
        to_bool(value)


def test_to_float() -> None:
    assert to_float("0.85") == 0.85
    assert to_float(1) == 1.0
    for bad in ("high", True, None):
        with pytest.raises(CoerceError):
            to_float(bad)


def test_to_mapping_takes_dicts_and_json_text() -> None:
    assert to_mapping({"a": 1}) == {"a": 1}
    assert to_mapping('{"single": {"tp": "8"}}') == {"single": {"tp": "8"}}
    assert to_mapping("") == {}
    assert to_mapping(None) == {}
    with pytest.raises(CoerceError, match="neither a mapping nor JSON"):
        to_mapping("{tp: 8")
    with pytest.raises(CoerceError, match="not a mapping"):
        to_mapping("[1, 2]")


def test_to_str_list() -> None:
    assert to_str_list(["a", "b"]) == ["a", "b"]
    assert to_str_list("http_proxy, https_proxy") == ["http_proxy", "https_proxy"]
    assert to_str_list('["a"]') == ["a"]
    assert to_str_list("") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [([0, 1], [0, 1]), ("0-3,8", [0, 1, 2, 3, 8]), ("[2, 3]", [2, 3]), (["4", "5"], [4, 5]), ("7", [7])],
)
def test_to_chip_ids(value: Any, expected: list[int]) -> None:
    assert to_chip_ids(value) == expected


@pytest.mark.parametrize(
    ("value", "match"), [("0,0", "more than once"), ("5-2", "backwards"), ("a-b", "not an integer")]
)
def test_to_chip_ids_refuses(value: str, match: str) -> None:
    with pytest.raises(CoerceError, match=match):
        to_chip_ids(value)


def test_format_chips() -> None:
    assert format_chips([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert format_chips([5]) == "5"
    assert format_chips([]) == "-"


def test_deep_merge_merges_nested_keys_and_null_removes() -> None:
    base = {"a": {"x": 1, "y": 2}, "b": 1, "c": [1]}
    merged = deep_merge(base, {"a": {"y": 3, "x": None}, "b": None, "c": [2]})
    assert merged == {"a": {"y": 3}, "c": [2]}
    assert base == {"a": {"x": 1, "y": 2}, "b": 1, "c": [1]}, "inputs are not modified"


def test_flag_names_are_canonical() -> None:
    assert flag_name("--speculative_config") == "speculative-config"
    assert flag_name("max_num_seqs") == "max-num-seqs"
    assert flag_name("-tp") == "tensor-parallel-size"
    assert flag_name("pcp") == "prefill-context-parallel-size"


def test_normalize_flags_reads_survey_strings() -> None:
    flags = normalize_flags(
        {"enforce_eager": "true", "--async-scheduling": "False", "additional_config": '{"a": true}', "seed": "1024"}
    )
    assert flags == {"enforce-eager": True, "async-scheduling": False, "additional-config": {"a": True}, "seed": "1024"}
    with pytest.raises(CoerceError, match=r"--compilation-config: .* not valid JSON"):
        normalize_flags({"compilation-config": "{bad"})


def test_render_flags() -> None:
    argv = render_flags(
        {"enforce-eager": True, "async-scheduling": False, "seed": None, "max-num-seqs": 16,
         "gpu-memory-utilization": 0.85, "compilation-config": {"cudagraph_mode": "FULL_DECODE_ONLY"},
         "served-model-name": ["a", "b"]}
    )  # fmt: skip
    assert argv == [
        "--enforce-eager",
        "--max-num-seqs", "16",
        "--gpu-memory-utilization", "0.85",
        "--compilation-config", '{"cudagraph_mode": "FULL_DECODE_ONLY"}',
        "--served-model-name", "a", "b",
    ]  # fmt: skip


def test_env_value() -> None:
    assert env_value("AIV") == "AIV"
    assert env_value(1024) == "1024"
    assert env_value(None) is None
    with pytest.raises(CoerceError, match="quote the value"):
        env_value(True)
    with pytest.raises(CoerceError, match="not a string"):
        env_value({"a": 1})


def test_plain_drops_subclasses() -> None:
    class Tagged(str):
        pass

    value = plain({"a": (Tagged("x"), 1, True, None, 0.5)})
    assert value == {"a": ["x", 1, True, None, 0.5]}
    assert type(value["a"][0]) is str


def test_issues_name_host_and_variable_once() -> None:
    issues = Issues()
    issues.error("node1", "ascend_x", "bad")
    issues.error("node1", "ascend_x", "bad")
    issues.warn("node2", "ascend_y", "odd")
    expected = {"host": "node1", "variable": "ascend_x", "message": "bad", "text": "node1: ascend_x: bad"}
    assert issues.errors == [expected]
    assert issues.warnings[0]["text"] == "node2: ascend_y: odd"
