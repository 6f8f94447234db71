"""ascend.vllm.warn: in-process against the action plugin, and once through ansible-playbook.

The in-process tests pin what the plugin returns; the playbook run proves what an operator
sees - real ``[WARNING]: ...`` lines, an ``ok`` task that changed nothing, a skip for an empty
list - since that depends on Ansible turning the result's ``warnings`` into warnings.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict
from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.ascend.vllm.plugins.action.warn import ActionModule

ROOT = Path(__file__).resolve().parents[4]


def run_warn(args: Dict[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    task = SimpleNamespace(args=args, async_val=0, check_mode=check_mode, action="ascend.vllm.warn")
    action = ActionModule(task, MagicMock(), MagicMock(), loader=None, templar=None)  # type: ignore[arg-type]
    return action.run(task_vars={})


def test_one_message_is_one_warning_and_no_change() -> None:
    result = run_warn({"msg": "jemalloc is missing"})
    assert result["warnings"] == ["jemalloc is missing"]
    assert result["messages"] == ["jemalloc is missing"]
    assert result["changed"] is False
    assert not result.get("failed") and not result.get("skipped")


def test_a_list_is_one_warning_per_message_in_order_without_blank_ones() -> None:
    result = run_warn({"msg": ["first", "", "  ", "second"]})
    assert result["warnings"] == ["first", "second"]
    assert result["messages"] == ["first", "second"]


def test_a_string_with_commas_stays_one_message() -> None:
    # `type: list` would have split it; the plugin must not.
    assert run_warn({"msg": "a, b, c"})["warnings"] == ["a, b, c"]


@pytest.mark.parametrize("msg", [[], "", ["", " "]])
def test_nothing_to_say_skips_without_warnings(msg: Any) -> None:
    result = run_warn({"msg": msg})
    assert result["skipped"] is True
    assert result["changed"] is False
    assert result["messages"] == []
    assert "warnings" not in result


def test_check_mode_warns_the_same() -> None:
    assert run_warn({"msg": ["x", "y"]}, check_mode=True)["warnings"] == ["x", "y"]


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (["ok", 3, {"a": 1}], "item 1 is int, item 2 is dict"),
        ({"a": 1}, "not dict"),
        (None, "not NoneType"),
    ],
)
def test_anything_but_strings_fails_naming_what_it_got(msg: Any, error: str) -> None:
    with pytest.raises(AnsibleActionFail, match=re.escape(error)):
        run_warn({"msg": msg})


def test_msg_is_required_and_other_options_refused() -> None:
    with pytest.raises(AnsibleActionFail, match="msg"):
        run_warn({})
    with pytest.raises(AnsibleActionFail, match="verbosity"):
        run_warn({"msg": "x", "verbosity": 1})


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Two findings
      ascend.vllm.warn:
        msg: "{{ ['swappiness is read-only', 'no cpufreq'] | map('regex_replace', '^', 'node1: ') }}"
    - name: No finding
      ascend.vllm.warn:
        msg: []
"""


def test_ansible_playbook_prints_warning_lines(tmp_path: Path) -> None:
    playbook = tmp_path / "warn.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="true",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local", str(playbook)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]: node1: swappiness is read-only" in proc.stderr
    assert "[WARNING]: node1: no cpufreq" in proc.stderr
    assert proc.stderr.count("[WARNING]") == 2, proc.stderr
    assert re.search(r"localhost\s+: ok=1\s+changed=0\s+unreachable=0\s+failed=0\s+skipped=1", proc.stdout), proc.stdout
