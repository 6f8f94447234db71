"""playbooks/facts.yml against the simulated cluster, as an operator runs it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.sim_cluster import ROOT, SimCluster, sim

pytestmark = pytest.mark.docker


def run_facts(inventory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), "playbooks/facts.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_facts_shows_every_chip_and_reaches_every_peer_device(sim_cluster: SimCluster) -> None:
    res = run_facts(sim_cluster.inventory)
    assert res.returncode == 0, res.stdout + res.stderr
    for node in sim_cluster.nodes:
        assert re.search(rf"^{node}\s+: ok=5\s+changed=0\s+unreachable=0\s+failed=0", res.stdout, re.M), res.stdout
    # Each node's 16 NICs reached the same device of the one peer.
    assert res.stdout.count("  1/1") == 32, res.stdout


def test_facts_fails_naming_the_unhealthy_chip_and_changes_nothing(sim_cluster: SimCluster) -> None:
    node2 = sim_cluster.nodes[1]
    sim("fault", "--name-prefix", sim_cluster.prefix, "node2", "chip-health", "5", "Alarm")
    try:
        res = run_facts(sim_cluster.inventory)
    finally:
        sim("fault", "--name-prefix", sim_cluster.prefix, "node2", "clear")
    assert res.returncode != 0
    assert f"fatal: [{node2}]" in res.stdout
    assert "npu 2 chip 1 (index 5): health Alarm" in res.stdout
    assert f"fatal: [{sim_cluster.nodes[0]}]" not in res.stdout
