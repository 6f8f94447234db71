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


def docker_run_argv(server: dict) -> list[str]:
    """``docker run`` of a server record, written by hand from the record alone."""
    container = server["container"]
    argv = ["docker", "run", "-d", "--name", container["name"], "--network", container["network_mode"]]
    argv += ["--ipc", container["ipc_mode"], "-u", container["user"]]
    argv += ["--shm-size", container["shm_size"]] if container["shm_size"] else []
    for device in container["devices"]:
        argv += ["--device", device]
    for volume in container["volumes"]:
        argv += ["-v", volume]
    for key, value in {**container["env"], "VLLM_SIM_LOAD_SECONDS": "1"}.items():
        argv += ["-e", f"{key}={value}"]
    entrypoint = container["entrypoint"] or []
    argv += ["--entrypoint", entrypoint[0]] if entrypoint else []
    return [*argv, container["image"], *entrypoint[1:], *server["argv"]]


SINGLE = ("-e", "ascend_scenario=a3_single_short")


def test_verify_passes_on_the_planned_single_node_server(sim_cluster: SimCluster, tmp_path: Path) -> None:
    inventory = str(sim_cluster.inventory)
    plan = playbook("playbooks/plan.yml", "-i", inventory, "-e", f"plan_dir={tmp_path}", *SINGLE)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    host = sim_cluster.nodes[0]
    (server,) = json.loads((tmp_path / "plan.json").read_text())["hosts"][host]["servers"]
    assert (server["role"], server["chips"]) == ("single", list(range(16)))

    node(host, "sh", "-c", shlex.join(docker_run_argv(server)))
    try:
        verify = playbook("playbooks/verify.yml", "-i", inventory, "-e", f"plan_dir={tmp_path}", *SINGLE)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert 'Tool call: get_current_weather({"city": "上海"})' in verify.stdout, verify.stdout
        assert re.search(
            r"^single0\s+single\s+" + host + r"\s+0-15\s+8000\s+-\s+1/1 healthy\s+TTFT", verify.stdout, re.M
        )
        assert re.search(rf"^{host}\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", verify.stdout, re.M)
    finally:
        node(host, "docker", "rm", "-f", server["container"]["name"], check=False)

    # With the server gone, verify fails on that host instead of passing or hanging.
    gone = playbook(
        "playbooks/verify.yml", "-i", inventory, "-e", f"plan_dir={tmp_path}", *SINGLE,
        "-e", "ascend_verify_health_timeout=3",
    )  # fmt: skip
    assert gone.returncode != 0
    assert re.search(rf"^failed: \[{host}\] \(item=vllm-single :8000\)", gone.stdout, re.M), gone.stdout
    assert "health: GET http://127.0.0.1:8000/health: not healthy after waiting" in gone.stdout
