"""One simulated PD deployment that every day-2 test shares (CI time is spent once).

Five A3 nodes: node1 prefill, node2 and node3 the two decode instances (scenario
a3_pd_1p2d_200k: two independent DP2 x TP8 groups), node4 the PD proxy, node5 spare (scale out
adds it). Deployed once with playbooks/pd_1p2d.yml; tests run the day-2 playbooks against it
and must leave it serving as they found it, except tests/integration/day2/test_zz_teardown.py,
which runs last (pytest takes files in name order) and tears it down.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
import yaml

from tests.sim_cluster import ROOT, SimCluster, cluster_session

SCENARIO = "a3_pd_1p2d_200k"


@dataclass
class Day2:
    cluster: SimCluster
    inventory: Path
    plan_dir: Path

    @property
    def plan(self) -> Dict[str, Any]:
        return json.loads((self.plan_dir / "plan.json").read_text())

    def node(self, index: int) -> str:
        return self.cluster.nodes[index - 1]

    def playbook(self, playbook: str, *extra: str, timeout: float = 1200) -> subprocess.CompletedProcess:
        """``ansible-playbook <playbook> -i <the cluster>`` from the repository root."""
        argv = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), playbook, "-i", str(self.inventory)]
        argv += ["-e", f"plan_dir={self.plan_dir}", *extra]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)

    def set_groups(self, **groups: list[int]) -> None:
        """Rewrite the inventory's groups (node indexes), as an operator edits hosts.yml."""
        path = self.inventory / "hosts.yml"
        inventory = yaml.safe_load(path.read_text())
        children = inventory["all"]["children"]
        for group, members in groups.items():
            children[group] = {"hosts": {self.node(i): None for i in members}} if members else {}
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))


def explain(res: subprocess.CompletedProcess) -> str:
    """What a failed playbook run said: every failure line with what follows it, then its end."""
    lines = res.stdout.splitlines()
    failures = [
        "\n".join(lines[i : i + 6]) for i, line in enumerate(lines) if line.startswith(("fatal:", "failed:", "ERROR!"))
    ]
    return "\n".join(failures) + "\n...\n" + res.stdout[-3000:] + res.stderr[-2000:]


def _write_inventory(cluster: SimCluster) -> None:
    path = cluster.inventory / "hosts.yml"
    inventory = yaml.safe_load(path.read_text())
    for values in inventory["all"]["hosts"].values():
        # A host var: it wins over the simulator's group_vars/all.yml (its 1P1D scenario).
        values["ascend_scenario"] = SCENARIO
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))


@pytest.fixture(scope="session")
def day2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day2]:
    for cluster in cluster_session(tmp_path_factory.mktemp("day2"), nodes=5, name="day2"):
        _write_inventory(cluster)
        deployment = Day2(cluster, cluster.inventory, cluster.inventory.parent / "plan")
        deployment.set_groups(prefill=[1], decode=[2, 3], proxy=[4], single=[])
        done = deployment.playbook("playbooks/pd_1p2d.yml")
        assert done.returncode == 0, explain(done)
        yield deployment
