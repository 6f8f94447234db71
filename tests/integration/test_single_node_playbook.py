"""playbooks/single_node.yml on the simulated cluster: plan, preflight, tuning, image, server, verify."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.sim_cluster import ROOT, SimCluster, node

pytestmark = pytest.mark.docker


def single_node(inventory: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "playbooks/single_node.yml", "-i", inventory, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def recap(output: str, host: str) -> dict[str, int]:
    match = re.search(rf"^{host}\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M)
    assert match, output
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def test_deploys_verifies_and_rerun_changes_nothing(sim_cluster: SimCluster, tmp_path) -> None:
    inventory, host = str(sim_cluster.inventory), sim_cluster.nodes[0]
    plan_dir = f"plan_dir={tmp_path}"
    try:
        # --check on a node that has never been deployed to: reports changes, makes none.
        check = single_node(inventory, "-e", plan_dir, "--check")
        assert recap(check.stdout, host)["failed"] == 0, check.stdout + check.stderr
        assert node(host, "docker", "ps", "-aq", "--filter", "name=vllm-single").stdout.strip() == ""
        assert node(host, "test", "-e", "/etc/sysctl.d/90-ascend-vllm.conf", check=False).returncode != 0

        first = single_node(inventory, "-e", plan_dir)
        assert first.returncode == 0, first.stdout + first.stderr
        assert recap(first.stdout, host)["changed"] > 0
        # verify.yml ran last and the seed's tool call came back parsed.
        assert re.search(r'tool call get_current_weather\(\{"city":\s+"上海"\}\)', first.stdout), first.stdout
        assert "true" in node(host, "docker", "inspect", "-f", "{{.State.Running}}", "vllm-single").stdout

        again = single_node(inventory, "-e", plan_dir)
        assert again.returncode == 0, again.stdout + again.stderr
        assert recap(again.stdout, host)["changed"] == 0, again.stdout
    finally:
        node(host, "docker", "rm", "-f", "vllm-single", check=False)
