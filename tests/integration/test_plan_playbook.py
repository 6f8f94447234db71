# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/plan.yml and the plan step of every deployment playbook, through real ansible-playbook.

Runs from the repository root, whose ansible.cfg resolves ascend.vllm.* to this checkout
(.build/collections, made by tests/conftest.py). The sample inventories' hosts do not exist:
a run that tried to reach one would fail, so these runs also prove that planning (and refusing
a plan) contacts no host.
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


def run(playbook: str | Path, site: str, *extra: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    argv = [str(PLAYBOOK), str(playbook), "-i", str(ROOT / "inventories" / site), *extra]
    # ANSIBLE_NOCOLOR keeps the recap parseable; no -v: the output is what operators see.
    env = {
        "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "HOME": str(Path.home()),
        "PWD": str(cwd),  # what a shell sets
    }
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def recap(output: str) -> dict[str, dict[str, int]]:
    rows = re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M)
    assert rows, output
    return {host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)} for host, counts in rows}


@pytest.fixture(scope="module")
def a3_1p2d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """inventories/a3 with a third host in group decode, planning the 1P2D scenario."""
    root = tmp_path_factory.mktemp("site")
    site = root / "a3-1p2d"
    (site / "group_vars").mkdir(parents=True)
    (site / "group_vars" / "all.yml").write_text((ROOT / "inventories/a3/group_vars/all.yml").read_text())
    hosts = (ROOT / "inventories/a3/hosts.yml").read_text()
    hosts = hosts.replace(
        "  children:", "    a3-node3:\n      ansible_host: 192.0.2.13\n      ascend_local_ip: 192.0.2.13\n  children:"
    )
    hosts = hosts.replace(
        "    decode:\n      hosts:\n        a3-node2:",
        "    decode:\n      hosts:\n        a3-node2:\n        a3-node3:",
    )
    (site / "hosts.yml").write_text(hosts)
    plan_dir = root / "out"
    result = run("playbooks/plan.yml", str(site), "-e", f"plan_dir={plan_dir}", "-e", "ascend_scenario=a3_pd_1p2d_200k")
    return site, plan_dir, result


def test_plan_writes_both_files_and_shows_the_plan_once(a3_1p2d) -> None:
    _, plan_dir, result = a3_1p2d
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap(result.stdout).values())
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert (plan["scenario"], plan["mode"], plan["shape"]) == ("a3_pd_1p2d_200k", "pd", {"prefill": 1, "decode": 2})
    servers = [s for record in plan["hosts"].values() for s in record["servers"]]
    assert len(servers) == 6
    lines = (plan_dir / "serve-commands.txt").read_text().splitlines()
    assert len(lines) == 2 * len(servers)
    for comment, line, server in zip(lines[::2], lines[1::2], servers):
        assert comment == f"# {server['host']} {server['name']} ({server['instance']})"
        assert shlex.split(line) == server["argv"] and line.startswith("vllm serve ")
    # The table: a header and one line per server, e.g. the second decode instance's last rank.
    assert re.search(r"a3-node3\s+decode1\s+1/2\s+8\s+8-15\s+7101\s+19024-19031\s+vllm-decode1-dp1", result.stdout)
    assert result.stdout.count("Scenario a3_pd_1p2d_200k") == 1
    assert "Recipe v0.23 (vLLM-Ascend 0.23.0)" in result.stdout


def test_plan_matches_the_unit_tested_computation(a3_1p2d) -> None:
    """What Ansible passes the action (hostvars, extra vars) is what the unit tests' loader reads."""
    site, plan_dir, _ = a3_1p2d
    written = json.loads((plan_dir / "plan.json").read_text())
    hostvars, groups = (
        inventory.load_inventory(site.name, {"ascend_scenario": "a3_pd_1p2d_200k"})
        if False
        else (
            None,
            None,
        )
    )
    hostvars, groups = _load(site, {"ascend_scenario": "a3_pd_1p2d_200k"})
    expected = build_plan(hostvars, groups, inventory.catalogue())
    assert written == json.loads(json.dumps(expected["plan"]))


def _load(site: Path, extra: dict[str, Any]):
    old = inventory.INVENTORIES
    inventory.INVENTORIES = site.parent
    try:
        return inventory.load_inventory(site.name, extra)
    finally:
        inventory.INVENTORIES = old


def test_second_run_changes_nothing(a3_1p2d) -> None:
    site, plan_dir, first = a3_1p2d
    assert first.returncode == 0
    before = {p.name: p.read_text() for p in plan_dir.iterdir()}
    again = run("playbooks/plan.yml", str(site), "-e", f"plan_dir={plan_dir}", "-e", "ascend_scenario=a3_pd_1p2d_200k")
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(r["changed"] == 0 for r in recap(again.stdout).values())
    assert {p.name: p.read_text() for p in plan_dir.iterdir()} == before


def test_relative_plan_dir_is_taken_from_where_ansible_playbook_runs(tmp_path: Path) -> None:
    result = run(ROOT / "playbooks/plan.yml", "a2", "-e", "plan_dir=out", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plan.json", "serve-commands.txt"]
    plan: dict[str, Any] = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert list(plan["hosts"]) == ["a2-node1", "a2-node2"]
    assert not (ROOT / "playbooks" / "out").exists()


def test_survey_strings_from_extra_vars(tmp_path: Path) -> None:
    # key=value extra vars are strings, as survey answers are; the JSON text has no spaces
    # because key=value splits on them.
    overrides = json.dumps({"single": {"tp": "8", "dp": "2"}}, separators=(",", ":"))
    result = run(
        "playbooks/plan.yml",
        "a3",
        "-e",
        f"plan_dir={tmp_path}",
        "-e",
        "ascend_scenario=a3_single_short",
        "-e",
        f"ascend_scenario_overrides={overrides}",
        "-e",
        "ascend_tool_calling=false",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [x for x in (tmp_path / "serve-commands.txt").read_text().splitlines() if not x.startswith("#")]
    assert "--tensor-parallel-size 8 --data-parallel-size 2" in line and "--tool-call-parser" not in line


def test_problems_fail_naming_host_and_variable_and_write_nothing(tmp_path: Path) -> None:
    plan_dir = tmp_path / "out"
    bad = {"ascend_scenario_overrides": {"decode": {"tp": 32}}, "ascend_prefill_kv_port": 35880}
    result = run("playbooks/plan.yml", "a3", "-e", f"plan_dir={plan_dir}", "-e", json.dumps(bad))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "nothing was changed on any host" in output
    assert "a3-node1: ascend_prefill_kv_port:" in output and "[20000, 36000)" in output
    assert "ascend_scenario_overrides.decode.tp" in output
    assert not plan_dir.exists()


def test_warnings_are_ansible_warnings(tmp_path: Path) -> None:
    result = run("playbooks/plan.yml", "a3", "-e", f"plan_dir={tmp_path}", "-e", "ascend_vllm_image_tag=latest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        r"\[WARNING\]: a3-node1: ascend_vllm_image_tag: the image tag 'latest' moves",
        result.stderr + result.stdout,
    )


def test_every_host_gets_the_plan_and_a_second_import_reuses_it(tmp_path: Path) -> None:
    playbook = tmp_path / "twice.yml"
    playbook.write_text(
        f"""---
- name: First plan
  ansible.builtin.import_playbook: {ROOT}/playbooks/plan.yml
- name: Second plan (skipped)
  ansible.builtin.import_playbook: {ROOT}/playbooks/plan.yml
- name: Read the published plan on every host
  hosts: all
  gather_facts: false
  tasks:
    - name: Show what this host runs
      ansible.builtin.debug:
        msg: >-
          HOST {{{{ inventory_hostname }}}} RUNS
          {{{{ ascend_plan.hosts[inventory_hostname].servers | map(attribute='name') | join(',') }}}}
"""
    )
    result = run(playbook, "a3", "-e", f"plan_dir={tmp_path / 'out'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("Scenario a3_pd_1p1d_200k") == 1
    assert "HOST a3-node1 RUNS vllm-prefill0-dp0,vllm-prefill0-dp1" in result.stdout
    assert "HOST a3-node2 RUNS vllm-decode0-dp0,vllm-decode0-dp1" in result.stdout


@pytest.mark.parametrize(
    ("playbook", "extra", "message"),
    [
        ("pd_1p1d.yml", [], None),
        (
            "playbooks/single_node.yml",
            [],
            "playbooks/single_node.yml deploys a single-node scenario; a3_pd_1p1d_200k is a PD one",
        ),
        (
            "playbooks/pd_1p2d.yml",
            [],
            "playbooks/pd_1p2d.yml deploys 1 prefill and 2 decode instance(s); "
            "scenario a3_pd_1p1d_200k has 1 prefill and 1 decode",
        ),
        (
            "playbooks/pd_1p1d.yml",
            ["-e", "ascend_scenario=a3_single_short"],
            "playbooks/pd_1p1d.yml deploys a prefill/decode (PD) scenario; a3_single_short is a single-node one",
        ),
    ],
)
def test_deployment_playbooks_refuse_a_plan_of_another_shape(
    tmp_path: Path, playbook: str, extra: list[str], message: str | None
) -> None:
    result = run(playbook, "a3", "-e", f"plan_dir={tmp_path}", *extra)
    output = result.stdout + result.stderr
    if message is None:
        # The accepted plan goes on to preflight, which must reach the (non-existent) hosts.
        assert "Scenario a3_pd_1p1d_200k (PD, 1 prefill + 1 decode instance(s))" in output
        assert "UNREACHABLE" in output or "unreachable=1" in output, output
    else:
        assert result.returncode != 0 and message in output, output
        assert "unreachable=1" not in output and "UNREACHABLE" not in output
