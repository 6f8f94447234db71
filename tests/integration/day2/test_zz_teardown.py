"""playbooks/teardown.yml, last of the day-2 suite (file-name order): it removes the deployment.

Without teardown_confirm it refuses and changes nothing; --check changes nothing and says what
it would remove; then it removes every container of ours and the proxy's files, keeps the
weights and the image, reverts the host tuning on request, and a second run changes nothing.
"""

from __future__ import annotations

import re
from typing import Dict, List

import pytest

from tests.integration.day2.conftest import Day2, explain
from tests.sim_cluster import node

pytestmark = pytest.mark.docker

NODES = (1, 2, 3, 4, 5)
CONFIRM = ("-e", "teardown_confirm=true", "-e", "teardown_revert_host_tuning=true")


def containers(day2: Day2) -> Dict[int, List[str]]:
    """Every container of every node (ours or not), ``id name``."""
    return {
        i: node(day2.node(i), "docker", "ps", "-a", "--format", "{{.ID}} {{.Names}}").stdout.split("\n") for i in NODES
    }


def changed(result_stdout: str) -> List[int]:
    return [int(n) for n in re.findall(r"changed=(\d+)", result_stdout)]


def test_teardown_refuses_without_confirmation_and_changes_nothing(day2: Day2) -> None:
    before = containers(day2)
    refused = day2.playbook("playbooks/teardown.yml")
    assert refused.returncode != 0
    said = " ".join(refused.stdout.split())  # the callback wraps long messages
    assert "Teardown refused, nothing changed" in said and "-e teardown_confirm=true" in said
    assert containers(day2) == before


def test_teardown_removes_ours_keeps_weights_and_image_and_is_idempotent(day2: Day2) -> None:
    plan = day2.plan
    # A container that is not ours, on a node that runs ours: it must survive.
    node(day2.node(2), "docker", "run", "-d", "--name", "not-ours", "--entrypoint", "sleep", plan["image"], "600")
    before = containers(day2)
    checked = day2.playbook("playbooks/teardown.yml", *CONFIRM, "--check")
    assert checked.returncode == 0, explain(checked)
    assert any(changed(checked.stdout)) and containers(day2) == before

    done = day2.playbook("playbooks/teardown.yml", *CONFIRM)
    assert done.returncode == 0, explain(done)
    for i in NODES:
        host = day2.node(i)
        assert node(host, "docker", "ps", "-aq", "--filter", "label=ascend.vllm.role").stdout.split() == [], host
        assert node(host, "test", "-e", "/etc/ascend-vllm/pd-proxy", check=False).returncode == 1, host
        assert node(host, "test", "-e", "/etc/sysctl.d/90-ascend-vllm.conf", check=False).returncode == 1, host
    for host, record in plan["hosts"].items():
        for server in record["servers"]:
            for weights in server["weights"]:
                node(host, "test", "-f", f"{weights['path']}/config.json")  # the weights stay
        node(host, "docker", "image", "inspect", plan["image"])  # so does the image
    assert "not-ours" in node(day2.node(2), "docker", "ps", "--format", "{{.Names}}").stdout

    again = day2.playbook("playbooks/teardown.yml", *CONFIRM)
    assert again.returncode == 0, explain(again)
    assert changed(again.stdout) and not any(changed(again.stdout)), again.stdout[-3000:]
    node(day2.node(2), "docker", "rm", "-f", "not-ours")
