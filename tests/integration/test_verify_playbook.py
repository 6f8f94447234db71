"""playbooks/verify.yml against an instance started by hand from the plan's own container record.

This pins the contract between the plan and the simulated cluster: the record, run as is on a
node (devices, mounts, env, command), serves, and verify.yml proves it (health, models, chat,
the seed's tool call, streaming).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.sim_cluster import ROOT, SimCluster, node

pytestmark = pytest.mark.docker

PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")


def playbook(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PLAYBOOK, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def docker_run_argv(container: dict) -> list[str]:
    argv = ["docker", "run", "-d", "--name", container["name"], "--network", container["network_mode"]]
    argv += ["--ipc", container["ipc_mode"], "--shm-size", container["shm_size"], "-u", container["user"]]
    for device in container["devices"]:
        argv += ["--device", device]
    for volume in container["volumes"]:
        argv += ["-v", volume]
    for key, value in {**container["env"], "VLLM_SIM_LOAD_SECONDS": "1"}.items():
        argv += ["-e", f"{key}={value}"]
    return [*argv, container["image"], *container["command"]]


def test_verify_passes_on_the_planned_single_node_instance(sim_cluster: SimCluster, tmp_path: Path) -> None:
    plan = playbook("playbooks/plan.yml", "-i", str(sim_cluster.inventory), "-e", f"plan_dir={tmp_path}")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    (instance,) = json.loads((tmp_path / "plan.json").read_text())["instances"]
    host = sim_cluster.nodes[0]
    assert (instance["host"], instance["role"], instance["chips"]) == (host, "single", list(range(16)))

    node(host, "sh", "-c", shlex.join(docker_run_argv(instance["container"])))
    try:
        verify = playbook("playbooks/verify.yml", "-i", str(sim_cluster.inventory), "-e", f"plan_dir={tmp_path}")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert re.search(r'tool call get_current_weather\(\{"city":\s+"上海"\}\)', verify.stdout), verify.stdout
        assert re.search(rf"^{host}\s+: ok=2\s+changed=0\s+unreachable=0\s+failed=0", verify.stdout, re.M)
    finally:
        node(host, "docker", "rm", "-f", instance["container"]["name"], check=False)

    # With the instance gone, verify fails on that host instead of passing or hanging.
    gone = playbook(
        "playbooks/verify.yml", "-i", str(sim_cluster.inventory), "-e", f"plan_dir={tmp_path}",
        "-e", "ascend_verify_health_timeout=3",
    )  # fmt: skip
    assert gone.returncode != 0
    assert re.search(rf"^failed: \[{host}\] \(item=vllm-single :8000\)", gone.stdout, re.M), gone.stdout
    assert "health: GET http://127.0.0.1:8000/health: not healthy after waiting" in gone.stdout
