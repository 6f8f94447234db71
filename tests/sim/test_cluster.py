"""The simulated cluster end to end: 2 A3 nodes brought up by ``sim/ascend-sim``.

The cluster is the session's ``sim_cluster`` (tests/sim_cluster.py): Docker needed, images
built first if missing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import List

import pytest

from tests.sim_cluster import PREFIX, SimCluster, node, sim

pytestmark = pytest.mark.docker

NODE1 = f"{PREFIX}-node1"
NODE2 = f"{PREFIX}-node2"
VLLM_IMAGE = "ascend-sim/vllm-ascend:0.1.0"
HCCN_TOOL = "/usr/local/Ascend/driver/tools/hccn_tool"
CHIP_ROW = re.compile(r"^\| \d+\s+Ascend910\s+\|", re.MULTILINE)


@pytest.fixture
def cluster(sim_cluster: SimCluster) -> List[str]:
    return sim_cluster.nodes


def device_ip(name: str, device: int) -> str:
    conf = node(name, "cat", "/etc/hccn.conf").stdout
    match = re.search(rf"^address_{device}=(\S+)$", conf, re.MULTILINE)
    assert match, conf
    return match.group(1)


def hccn_ping(name: str, device: int, ip: str) -> subprocess.CompletedProcess:
    return node(name, HCCN_TOOL, "-i", str(device), "-ping", "-g", "address", ip, check=False)


def test_status_and_up_is_idempotent(cluster: List[str]) -> None:
    status = sim("status", "--name-prefix", PREFIX).stdout
    for name in cluster:
        assert re.search(rf"{name}\s+\S+\s+A3\s+running\s+\S+\s+yes", status), status
    again = sim("up", "--profile", "a3", "--nodes", "2", "--name-prefix", PREFIX)
    assert "already up" in again.stdout


def test_npu_smi_on_node_shows_16_chips(cluster: List[str]) -> None:
    out = node(NODE1, "npu-smi", "info").stdout
    assert len(CHIP_ROW.findall(out)) == 16, out


def test_davinci_devices_are_char_devices(cluster: List[str]) -> None:
    out = node(
        NODE1, "stat", "-c", "%F %t", "/dev/davinci15", "/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"
    )
    assert out.stdout.splitlines() == ["character special file 1"] * 4
    assert node(NODE1, "test", "-e", "/dev/davinci16", check=False).returncode != 0


def test_container_started_like_the_seed_sees_the_npus(cluster: List[str]) -> None:
    devices = [f"--device=/dev/davinci{i}" for i in range(16)]
    devices += ["--device=/dev/davinci_manager", "--device=/dev/devmm_svm", "--device=/dev/hisi_hdc"]
    mounts = [
        "/usr/local/dcmi:/usr/local/dcmi",
        f"{HCCN_TOOL}:{HCCN_TOOL}",
        "/usr/local/bin/npu-smi:/usr/local/bin/npu-smi",
        "/usr/local/Ascend/driver/lib64/:/usr/local/Ascend/driver/lib64/",
        "/usr/local/Ascend/driver/version.info:/usr/local/Ascend/driver/version.info",
        "/etc/ascend_install.info:/etc/ascend_install.info",
        "/root/.cache:/root/.cache",
    ]
    script = (
        "npu-smi info && "
        f"{HCCN_TOOL} -i 0 -link -g && "
        "test -f /root/.cache/MiniMax-M2.7-w8a8-QuaRot/config.json && "
        "command -v vllm"
    )
    cmd = ["docker", "run", "--rm", "--net=host", "--ipc=host", "--shm-size=1g", *devices]
    cmd += [f"-v={m}" for m in mounts]
    out = node(NODE1, *cmd, VLLM_IMAGE, "bash", "-c", script).stdout
    assert len(CHIP_ROW.findall(out)) == 16, out
    assert "link status: UP" in out
    assert "/usr/local/bin/vllm" in out


def test_hccn_ping_between_nodes_and_faults(cluster: List[str]) -> None:
    peer = device_ip(NODE2, 0)
    assert hccn_ping(NODE1, 0, peer).returncode == 0
    # An unreachable peer (fault table of the pinging node), then a local link down.
    sim("fault", "--name-prefix", PREFIX, "node1", "unreachable", peer)
    try:
        assert hccn_ping(NODE1, 0, peer).returncode != 0
    finally:
        sim("fault", "--name-prefix", PREFIX, "node1", "reachable", peer)
    assert hccn_ping(NODE1, 0, peer).returncode == 0
    sim("fault", "--name-prefix", PREFIX, "node1", "link", "0", "DOWN")
    try:
        assert "link status: DOWN" in node(NODE1, HCCN_TOOL, "-i", "0", "-link", "-g").stdout
        assert hccn_ping(NODE1, 0, peer).returncode != 0
    finally:
        sim("fault", "--name-prefix", PREFIX, "node1", "link", "0", "UP")
    # The peer's link down: its device IP stops answering, and comes back with the link.
    sim("fault", "--name-prefix", PREFIX, "node2", "link", "0", "DOWN")
    try:
        assert hccn_ping(NODE1, 0, peer).returncode != 0
    finally:
        sim("fault", "--name-prefix", PREFIX, "node2", "link", "0", "UP")
    assert hccn_ping(NODE1, 0, peer).returncode == 0
    # A device IP nobody has: the ping really goes out and times out.
    assert hccn_ping(NODE1, 1, "10.20.250.250").returncode != 0


def test_sysctl_vm_read_only_net_writable(cluster: List[str]) -> None:
    before = Path("/proc/sys/vm/swappiness").read_text().strip()
    res = node(NODE1, "sysctl", "-w", "vm.swappiness=0", check=False)
    assert res.returncode != 0
    assert "permission denied" in res.stderr.lower() or "read-only" in res.stderr.lower(), res.stderr
    assert Path("/proc/sys/vm/swappiness").read_text().strip() == before
    assert node(NODE1, "sysctl", "-w", "net.ipv4.tcp_keepalive_time=600").returncode == 0
    assert node(NODE1, "sysctl", "-n", "net.ipv4.tcp_keepalive_time").stdout.strip() == "600"
    # A privileged container inside the node gets a fresh procfs: the node's runc wrapper
    # keeps it read-only there too (net.* still writable).
    inner = ["docker", "run", "--rm", "--privileged", VLLM_IMAGE, "sysctl", "-w"]
    res = node(NODE1, *inner, "vm.swappiness=0", check=False)
    assert res.returncode != 0, res.stdout
    assert node(NODE1, *inner, "net.ipv4.tcp_keepalive_time=700").returncode == 0
    assert Path("/proc/sys/vm/swappiness").read_text().strip() == before


def test_inventory_matches_cluster(cluster: List[str]) -> None:
    text = sim("inventory", "--name-prefix", PREFIX).stdout
    assert "ansible_connection: community.docker.docker" in text
    for group, host in (("prefill", NODE1), ("decode", NODE2), ("single", NODE1)):
        assert re.search(rf"^    {group}:\n      hosts:\n        {host}:$", text, re.MULTILINE), text
