"""The simulated cluster as tests use it: one cluster per test session, brought up by
``sim/ascend-sim`` and named after the test process (concurrent runs do not meet), removed at
the end; clusters left by test runs that died are removed first. Needs a Docker engine
(``tools/docker-engine.sh``); builds the images first if they are missing (~2 min cold).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "sim" / "ascend-sim"
TEST_PREFIX = "ascend-sim-test-"
PREFIX = f"{TEST_PREFIX}{os.getpid()}"


@dataclass
class SimCluster:
    prefix: str
    nodes: List[str]
    inventory: Path  # an Ansible inventory directory of exactly this cluster


def docker_up() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def sim(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and res.returncode != 0:
        pytest.fail(f"ascend-sim {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def node(name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["docker", "exec", name, *cmd], capture_output=True, text=True, timeout=300, check=False)
    if check and res.returncode != 0:
        pytest.fail(f"{name}: {' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def remove_orphans() -> None:
    """Clusters of earlier test runs whose process is gone."""
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True).stdout.split()
    if not ids:
        return
    networks = json.loads(subprocess.run(["docker", "network", "inspect", *ids], capture_output=True, text=True).stdout)
    for net in networks:
        cluster = (net.get("Labels") or {}).get("ascend-sim.cluster", "")
        pid = cluster[len(TEST_PREFIX) :].split("-", 1)[0]
        if cluster.startswith(TEST_PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            sim("down", "--name-prefix", cluster, check=False)


def cluster_session(tmp_dir: Path, nodes: int = 2, name: str = "") -> Iterator[SimCluster]:
    """A cluster of ``nodes`` A3 nodes for the test session (``name`` tells two apart)."""
    if not docker_up():
        pytest.skip("no Docker engine answering `docker info` (start one with tools/docker-engine.sh)")
    remove_orphans()
    prefix = f"{PREFIX}-{name}" if name else PREFIX
    started = time.monotonic()
    up = sim("up", "--profile", "a3", "--nodes", str(nodes), "--name-prefix", prefix)
    print(f"\n{up.stdout}(up took {time.monotonic() - started:.1f} s)")
    # The cluster's hosts, with the simulator inventory's group_vars (hardware, model, scenario...).
    inventory = tmp_dir / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(ROOT / "inventories" / "sim" / "group_vars")
    sim("inventory", "--name-prefix", prefix, "--write", str(inventory / "hosts.yml"))
    try:
        yield SimCluster(prefix, [f"{prefix}-node{i}" for i in range(1, nodes + 1)], inventory)
    finally:
        sim("down", "--name-prefix", prefix, check=False)
