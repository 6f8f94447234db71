# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the plan's tests share: the sample inventories with the shipped catalogue, and readers
of the plan's result (its errors, its servers, the flags of an argv)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

from ansible_collections.ascend.vllm.plugins.module_utils.plan import build_plan

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "plan"
_spec = importlib.util.spec_from_file_location("plan_inventory", FIXTURES / "inventory.py")
inventory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inventory)
CATALOGUE = inventory.catalogue()
V021 = {"ascend_recipe": "v0.21"}


def site(name: str = "a3", node3: bool = False, **extra: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """A sample inventory's (hostvars, groups); ``node3`` adds a third A3 host to group decode."""
    hostvars, groups = inventory.load_inventory(name, {})
    if node3:
        hostvars["a3-node3"] = {**hostvars["a3-node1"], "ansible_host": "192.0.2.13", "ascend_local_ip": "192.0.2.13"}
        groups["decode"] = [*groups["decode"], "a3-node3"]
    for values in hostvars.values():
        values.update(copy.deepcopy(extra))
    return hostvars, groups


def plan(name: str = "a3", groups: dict[str, list[str]] | None = None, node3: bool = False, **extra: Any):
    hostvars, inv_groups = site(name, node3, **extra)
    inv_groups.update(groups or {})
    return build_plan(hostvars, inv_groups, CATALOGUE)


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["errors"] == [], [e["text"] for e in result["errors"]]
    assert result["plan"] is not None
    return result["plan"]


def errors(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    assert result["errors"], "expected errors"
    assert result["plan"] is None, "a plan with errors is never published"
    return [(e["host"], e["variable"], e["message"]) for e in result["errors"]]


def has_error(result: dict[str, Any], host: str, variable: str, text: str = "") -> None:
    found = errors(result)
    assert any(h == host and variable in v and text in m for h, v, m in found), found


def servers(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for record in document["hosts"].values() for s in record["servers"]]


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{s['host']}/{s['name']}": s for s in servers(document)}


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


SINGLE = {"ascend_scenario": "a3_single_short"}
