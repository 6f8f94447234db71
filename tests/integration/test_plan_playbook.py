# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/plan.yml through real ansible-playbook: files, idempotence, errors, no host contact.

Runs from the repository root, whose ansible.cfg resolves ascend.vllm.* to this checkout
(.build/collections, made by tests/conftest.py). The sample inventories' hosts do not exist:
a run that tried to reach one would fail.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
_spec = importlib.util.spec_from_file_location("plan_inventory", ROOT / "tests/unit/fixtures/plan/inventory.py")
inventory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inventory)


def run_plan(site: str, plan_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [str(PLAYBOOK), "playbooks/plan.yml", "-i", f"inventories/{site}", "-e", f"plan_dir={plan_dir}", *extra]
    # ANSIBLE_NOCOLOR keeps the recap parseable; no -v: the output is what operators see.
    env = {"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1", "HOME": str(Path.home())}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def recap(output: str) -> dict[str, int]:
    match = re.search(r"localhost\s+:\s+(.*)", output)
    assert match, output
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.fixture(scope="module")
def a3_pd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    plan_dir = tmp_path_factory.mktemp("plan") / "out"
    return plan_dir, run_plan("a3", plan_dir, "-e", "ascend_scenario=a3_pd_1p2d_long_latency")


def test_plan_writes_both_files(a3_pd: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    plan_dir, result = a3_pd
    assert result.returncode == 0, result.stdout + result.stderr
    assert recap(result.stdout)["failed"] == 0 and recap(result.stdout)["unreachable"] == 0
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert (plan["scenario"], plan["mode"]) == ("a3_pd_1p2d_long_latency", "pd")
    assert len(plan["instances"]) == 6 and len(plan["proxies"]) == 1
    lines = (plan_dir / "serve-commands.txt").read_text().splitlines()
    assert len(lines) == len(plan["instances"])
    for line, instance in zip(lines, plan["instances"]):
        assert shlex.split(line) == instance["argv"]
        assert line.startswith("vllm serve ")
    # The table: a header and one line per instance, e.g. the second decode host's first rank.
    assert re.search(r"a3-node3\s+decode\s+2/4\s+8\s+0-7\s+7100\s+19016-19023\s+vllm-decode-dp2", result.stdout)


def test_plan_matches_the_unit_tested_computation(a3_pd: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """What Ansible passes the filter (hostvars, extra vars) is what the unit tests' loader reads."""
    plan_dir, _ = a3_pd
    written = json.loads((plan_dir / "plan.json").read_text())
    expected = build_plan(*inventory.load_inventory("a3", {"ascend_scenario": "a3_pd_1p2d_long_latency"}))
    assert written["instances"] == json.loads(json.dumps(expected["instances"]))


def test_second_run_changes_nothing(a3_pd: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    plan_dir, first = a3_pd
    assert first.returncode == 0
    before = {p.name: p.read_text() for p in plan_dir.iterdir()}
    again = run_plan("a3", plan_dir, "-e", "ascend_scenario=a3_pd_1p2d_long_latency")
    assert again.returncode == 0, again.stdout + again.stderr
    assert recap(again.stdout)["changed"] == 0
    assert {p.name: p.read_text() for p in plan_dir.iterdir()} == before


def test_relative_plan_dir_is_taken_from_where_ansible_playbook_runs(tmp_path: Path) -> None:
    env = {
        "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
        "HOME": str(Path.home()),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PWD": str(tmp_path),  # what a shell sets; Ansible itself runs local tasks in the playbook's directory
    }
    argv = [str(PLAYBOOK), str(ROOT / "playbooks/plan.yml"), "-i", str(ROOT / "inventories/a2"), "-e", "plan_dir=out"]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plan.json", "serve-commands.txt"]
    plan: dict[str, Any] = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert [i["host"] for i in plan["instances"]] == ["a2-node1", "a2-node2"]
    assert not (ROOT / "playbooks" / "out").exists()


def test_survey_strings_from_extra_vars(tmp_path: Path) -> None:
    # key=value extra vars are strings, as survey answers are; the JSON text has no spaces
    # because key=value splits on them.
    overrides = json.dumps({"single": {"tp": "8", "dp": "2"}}, separators=(",", ":"))
    result = run_plan("a3", tmp_path, "-e", f"ascend_scenario_overrides={overrides}", "-e", "ascend_tool_calling=false")
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = (tmp_path / "serve-commands.txt").read_text().splitlines()
    assert "--tensor-parallel-size 8 --data-parallel-size 2" in line and "--tool-call-parser" not in line


def test_broken_overrides_fail_naming_host_and_variable_and_write_nothing(tmp_path: Path) -> None:
    plan_dir = tmp_path / "out"
    result = run_plan(
        "a3",
        plan_dir,
        "-e",
        "ascend_scenario=a3_pd_1p1d_200k",
        "-e",
        json.dumps({"ascend_scenario_overrides": {"decode": {"tp": 32}}, "ascend_prefill_kv_port": 35880}),
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "a3-node1: ascend_prefill_kv_port:" in output and "[20000, 36000)" in output
    assert "ascend_scenario_overrides.decode.tp" in output
    assert not plan_dir.exists()
