"""The simulated cluster end to end: 2 A3 nodes brought up by ``sim/ascend-sim``.

The cluster is the session's ``sim_cluster`` (tests/sim_cluster.py): Docker needed, images
built first if missing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

from tests.sim_cluster import PREFIX, SimCluster, node, sim

pytestmark = pytest.mark.docker

NODE1 = f"{PREFIX}-node1"
NODE2 = f"{PREFIX}-node2"
# The tag ``sim/ascend-sim build`` gives it (sim/ascend_sim_host/config.py): ASCEND_SIM_TAG or the version.
VLLM_IMAGE = f"ascend-sim/vllm-ascend:{os.environ.get('ASCEND_SIM_TAG') or '0.1.0'}"
HCCN_TOOL = "/usr/local/Ascend/driver/tools/hccn_tool"
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"  # what the plan preloads on x86_64
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


def test_vllm_image_has_the_jemalloc_the_plan_preloads(cluster: List[str]) -> None:
    preloaded = ["docker", "run", "--rm", "-e", f"LD_PRELOAD={JEMALLOC}", VLLM_IMAGE, "cat", "/proc/self/maps"]
    res = node(NODE1, *preloaded)
    assert "ld.so" not in res.stderr, res.stderr  # "ERROR: ld.so: object ... cannot be preloaded"
    assert JEMALLOC in res.stdout  # mapped into the process, not only present
    # It is the image's, not the host's: the node has none (host_tuning installs none either).
    assert node(NODE1, "test", "-e", JEMALLOC, check=False).returncode != 0


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
    # Only that device went away and came back: the peer's other devices still answer.
    assert hccn_ping(NODE1, 1, device_ip(NODE2, 1)).returncode == 0
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


def _start_vllm(name: str, role: str, port: int, kv_port: int) -> None:
    """A simulated vLLM instance on a node, launched the way the seed's PD scripts do."""
    kv_config = {
        "kv_connector": "MooncakeConnectorV1",
        "kv_role": role,
        "kv_port": str(kv_port),
        "engine_id": "0" if role == "kv_producer" else "1",
        "kv_connector_extra_config": {
            "use_ascend_direct": True,
            "prefill": {"dp_size": 1, "tp_size": 2},
            "decode": {"dp_size": 1, "tp_size": 2},
        },
    }
    devices = ["--device=/dev/davinci0", "--device=/dev/davinci1", "--device=/dev/davinci_manager"]
    devices += ["--device=/dev/devmm_svm", "--device=/dev/hisi_hdc"]
    mounts = ["/usr/local/dcmi:/usr/local/dcmi", "/usr/local/bin/npu-smi:/usr/local/bin/npu-smi"]
    mounts += ["/root/.cache:/root/.cache"]
    cmd = ["docker", "run", "-d", "--name", f"pd-{role}", "--net=host", "--ipc=host", *devices]
    cmd += [f"-v={m}" for m in mounts]
    cmd += ["-e", "ASCEND_RT_VISIBLE_DEVICES=0,1", "-e", "VLLM_SIM_LOAD_SECONDS=0.5", VLLM_IMAGE]
    cmd += ["vllm", "serve", "/root/.cache/MiniMax-M2.7-w8a8-QuaRot", "--served-model-name", "minimax"]
    cmd += ["--port", str(port), "--tensor-parallel-size", "2", "--quantization", "ascend"]
    cmd += ["--kv-transfer-config", json.dumps(kv_config)]
    node(name, *cmd)


def _wait_healthy(name: str, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if node(name, "curl", "-sf", f"http://127.0.0.1:{port}/health", check=False).returncode == 0:
            return
        time.sleep(0.5)
    logs = node(name, "docker", "logs", "--tail", "30", f"pd-{'kv_producer' if port == 7000 else 'kv_consumer'}")
    pytest.fail(f"{name}: vLLM on port {port} not healthy within 60 s:\n{logs.stdout}{logs.stderr}")


def _post(name: str, url: str, body: dict) -> dict:
    out = node(name, "curl", "-sS", "-f", "-H", "Content-Type: application/json", "-d", json.dumps(body), url)
    return json.loads(out.stdout)


def test_prefill_on_one_node_decode_on_the_other_over_mooncake(cluster: List[str]) -> None:
    _start_vllm(NODE1, "kv_producer", 7000, 36000)
    _start_vllm(NODE2, "kv_consumer", 7100, 36100)
    try:
        _wait_healthy(NODE1, 7000)
        _wait_healthy(NODE2, 7100)
        # The chips the instances hold show up in the node's npu-smi, as on a real host.
        assert "vllm" in node(NODE1, "npu-smi", "info").stdout.lower()
        request = {"model": "minimax", "messages": [{"role": "user", "content": "Hello, who are you?"}]}
        prefill_params = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                          "remote_block_ids": None, "remote_host": None, "remote_port": None}  # fmt: skip
        prefill = _post(
            NODE1,
            "http://127.0.0.1:7000/v1/chat/completions",
            {**request, "max_tokens": 1, "min_tokens": 1, "kv_transfer_params": prefill_params},
        )
        params = prefill["kv_transfer_params"]
        node1_ip = node(NODE1, "hostname", "-i").stdout.split()[0]
        assert params["do_remote_prefill"] is True
        assert (params["remote_host"], params["remote_port"]) == (node1_ip, 36000)
        decoded = _post(
            NODE2,
            "http://127.0.0.1:7100/v1/chat/completions",
            {**request, "max_tokens": 16, "kv_transfer_params": params},
        )
        assert decoded["choices"][0]["message"]["content"]
        assert decoded["usage"]["completion_tokens"] > 1
        # The blocks were pulled from node1 and freed there: the same params cannot decode twice.
        again = node(
            NODE2,
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
            "-d", json.dumps({**request, "max_tokens": 16, "kv_transfer_params": params}),
            "http://127.0.0.1:7100/v1/chat/completions",
            check=False,
        )  # fmt: skip
        assert again.stdout != "200", again.stdout
    finally:
        node(NODE1, "docker", "rm", "-f", "pd-kv_producer", check=False)
        node(NODE2, "docker", "rm", "-f", "pd-kv_consumer", check=False)


def test_weights_missing_fault_on_image_layer_weights(cluster: List[str]) -> None:
    weights = "/root/.cache/MiniMax-M2.7-w8a8-QuaRot"
    sim("fault", "--name-prefix", PREFIX, "node1", "weights-missing", weights)
    try:
        assert node(NODE1, "test", "-e", f"{weights}/config.json", check=False).returncode != 0
    finally:
        sim("fault", "--name-prefix", PREFIX, "node1", "weights-restore", weights)
    assert node(NODE1, "test", "-f", f"{weights}/config.json").returncode == 0
