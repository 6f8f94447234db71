"""Verify ascend.vllm.preflight on the simulated nodes (see ../molecule.yml).

Preflight only reads, so what there is to verify is what it reports. From here the scenario's
converge.yml runs again on the converged nodes:
  * healthy, in --check (which runs every check and ping too): it passes on all three nodes;
  * with our own containers running (listening on their ports, holding HBM on their chips, as
    a running vLLM does): the re-run passes, in --check;
  * with faults injected: one failure per host names the host and each chip, device, port,
    path, NIC and version; the same listeners and chip holders without our containers fail;
  * the prefill node alone (its fabric peer outside the play): it fails naming the peer.
Every run must change nothing on the nodes: no task reports a change, and what a node holds
(simulated driver state, files, containers, images, listeners) is the same before and after.
Each test leaves the nodes healthy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest
import testinfra
import testinfra.utils.ansible_runner

from tests.molecule_playbook import changed_tasks, failure_text, run_playbook

CONVERGE = Path(__file__).resolve().parent.parent / "converge.yml"
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
SINGLE = RUNNER.get_hosts("single")[0]
PREFILL = RUNNER.get_hosts("prefill")[0]
DECODE = RUNNER.get_hosts("decode")[0]
NODE_INDEX = {PREFILL: 1, DECODE: 2, SINGLE: 3}

IMAGE = "ascend-sim/vllm-ascend:0.1.0"
MODEL = "/root/.cache/MiniMax-M2.7-w8a8-QuaRot"
DRAFT = "/root/.cache/MiniMax-M2.7-eagle-model-short"
HCCN_CONF = "/etc/hccn.conf"
HIDDEN = ".molecule-hidden"

# What a node holds that a read-only role must leave as it is. The simulated driver's state
# (chips, HBM holders, device network, faults), the files preflight reads, our containers and
# images, the listeners.
SNAPSHOT = " ; ".join(
    [
        "sha256sum /usr/local/dcmi/ascend-sim/state.json /usr/local/Ascend/driver/version.info /etc/hccn.conf*",
        "ls -la --time-style=full-iso /root/.cache /etc /usr/local/dcmi/ascend-sim/leases",
        "docker ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.State}} {{.Image}}'",
        "docker images -q --no-trunc",
        "ss -ltnH | awk '{print $4}' | sort",
    ]
)


def node(name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"docker://{name}")


def fault(name: str, *args: str) -> None:
    node(name).check_output("ascend-sim-fault " + " ".join(args))


def set_device_ip(name: str, device: int, ip: str) -> None:
    """A device without IP (or with its IP back). ascend-sim-fault has no such fault, so this
    edits the simulated driver's state through the simulator's own state API."""
    code = f"from ascend_sim import state as st; st.update_state(lambda s: s['hccn'][{device}].update(ip={ip!r}))"
    node(name).check_output(f'python3 -c "{code}"')


def snapshot(names: List[str]) -> Dict[str, str]:
    return {name: node(name).check_output(SNAPSHOT) for name in names}


def converge(names: List[str], *args: str) -> tuple[int, dict]:
    """Run the converge playbook on ``names``; it must change nothing, whatever it finds."""
    before = snapshot(names)
    rc, report = run_playbook(CONVERGE, "--limit", ",".join(names), *args)
    for name in names:
        assert changed_tasks(report, name) == [], f"{name}: a task reported a change"
    assert snapshot(names) == before, "preflight changed something on a node"
    return rc, report


def assert_fails_naming(names: List[str], expected: Dict[str, List[str]], *args: str) -> None:
    rc, report = converge(names, *args)
    assert rc != 0, "preflight passed"
    for name, wanted in expected.items():
        text = failure_text(report, name)
        missing = [e for e in wanted if e not in text]
        assert missing == [], f"{name}: not named: {missing}; the failure was:\n{text}"
        # One failure per host, listing everything.
        assert text.startswith("preflight: ") and text.count("preflight: ") == 1, text


def network_faults(faults: Dict[str, Dict[str, str]]) -> str:
    # JSON, so that the value is a mapping (key=value would make it a string).
    return json.dumps({"preflight_molecule_network_faults": faults})


@pytest.fixture
def restore() -> Iterator[Callable[[str, str], None]]:
    """Undo, after the test (pass or fail), what it did to the nodes: faults, containers,
    device IPs, the hidden hccn.conf."""
    undo: List[tuple[str, str]] = []
    yield lambda name, command: undo.append((name, command))
    for name, command in reversed(undo):
        node(name).run(command)
    for name in NODE_INDEX:
        node(name).run("ascend-sim-fault clear")


# --- passes ---------------------------------------------------------------------------------


def test_healthy_nodes_pass_in_check_mode() -> None:
    rc, report = converge([SINGLE, PREFILL, DECODE], "--check")
    assert rc == 0, "\n".join(failure_text(report, name) for name in NODE_INDEX)


def test_single_node_rerun_with_our_container_passes(restore: Callable[[str, str], None]) -> None:
    host = node(SINGLE)
    restore(SINGLE, "docker rm -f vllm-single")
    # A stand-in vLLM: our server's container name, listening on its port, holding its chips.
    host.check_output(f"docker run -d --name vllm-single --network host {IMAGE} python3 -m http.server 8000")
    for chip in (0, 1):
        fault(SINGLE, "hbm-holder", str(chip), "30000", "--name", "vllm")
    host.check_output("timeout 30 sh -c 'until curl -s -o /dev/null http://127.0.0.1:8000/; do sleep 0.5; done'")
    rc, report = converge([SINGLE], "--check")
    assert rc == 0, failure_text(report, SINGLE)


def test_pd_rerun_with_our_containers_passes(restore: Callable[[str, str], None]) -> None:
    """The prefill ranks run: rank 0 listens on its HTTP port, a kv port and the DP rpc port,
    rank 1 on its HTTP port; both hold their chips."""
    listeners = {"vllm-prefill0-dp0": (7000, 18003, 13389), "vllm-prefill0-dp1": (7001,)}
    for container, ports in listeners.items():
        restore(PREFILL, f"docker rm -f {container}")
        servers = " & ".join(f"python3 -m http.server {port}" for port in ports)
        node(PREFILL).check_output(f"docker run -d --name {container} --network host {IMAGE} sh -c '{servers} & wait'")
    for chip in (0, 7, 8, 15):
        fault(PREFILL, "hbm-holder", str(chip), "30000", "--name", "vllm")
    for port in (7000, 18003, 13389, 7001):
        node(PREFILL).check_output(
            f"timeout 30 sh -c 'until curl -s -o /dev/null http://127.0.0.1:{port}/; do sleep 0.5; done'"
        )
    rc, report = converge([PREFILL, DECODE], "--check")
    assert rc == 0, failure_text(report, PREFILL) + failure_text(report, DECODE)


# --- failures -------------------------------------------------------------------------------


def test_single_node_one_failure_names_every_fault(restore: Callable[[str, str], None]) -> None:
    fault(SINGLE, "chip-health", "1", "Critical")
    fault(SINGLE, "hbm-holder", "0", "30000", "--name", "foreign")
    fault(SINGLE, "port-hold", "8000")
    fault(SINGLE, "weights-missing", MODEL)
    fault(SINGLE, "weights-missing", DRAFT)
    fault(SINGLE, "driver-version", "1.0")
    s = SINGLE
    assert_fails_naming(
        [SINGLE],
        {
            SINGLE: [
                f"{s}: npu 0 chip 1 (index 1): health Critical (chip of vllm-single)",
                f"{s}: npu 0 chip 0 (index 0): held by pid 4242 'foreign' using 30000 MB (chip of vllm-single)",
                f"{s}: port 8000 (HTTP port of vllm-single, ascend_http_port) is already in use by another process",
                f"{s}: EAGLE3 draft model of vllm-single missing: no {DRAFT}/config.json",
                f"{s}: model of vllm-single missing: no {MODEL}/config.json",
                f"{s}: driver version 1.0 is older than 23.0.0 (preflight_min_driver_version)",
            ]
        },
    )


def test_single_node_same_holders_without_our_container_fail(restore: Callable[[str, str], None]) -> None:
    for chip in (0, 1):
        fault(SINGLE, "hbm-holder", str(chip), "30000", "--name", "vllm")
    fault(SINGLE, "port-hold", "8000")
    s = SINGLE
    assert_fails_naming(
        [SINGLE],
        {
            SINGLE: [
                f"{s}: npu 0 chip 0 (index 0): held by pid 4242 'vllm'",
                f"{s}: npu 0 chip 1 (index 1): held by pid 4243 'vllm'",
                f"{s}: port 8000 (HTTP port of vllm-single, ascend_http_port) is already in use",
            ]
        },
    )


def test_pd_one_failure_per_host_names_every_fault(restore: Callable[[str, str], None]) -> None:
    p, d = PREFILL, DECODE
    # Prefill: a chip, a foreign holder, the weights, a port, a device's link and IP,
    # hccn.conf, the NIC, the driver.
    fault(p, "chip-health", "9", "Critical")
    fault(p, "hbm-holder", "2", "30000", "--name", "foreign")
    fault(p, "weights-missing", MODEL)
    fault(p, "port-hold", "7001")
    fault(p, "link", "5", "DOWN")
    set_device_ip(p, 12, "")
    node(p).check_output(f"mv {HCCN_CONF} {HCCN_CONF}{HIDDEN}")
    restore(p, f"mv {HCCN_CONF}{HIDDEN} {HCCN_CONF}")
    fault(p, "driver-version", "1.0")
    # Decode: net health, a prefill device it cannot reach, the NIC's address.
    fault(d, "net-health", "6", "Fault")
    fault(d, "unreachable", "10.20.1.13")
    try:
        assert_fails_naming(
            [p, d],
            {
                p: [
                    f"{p}: npu 4 chip 1 (index 9): health Critical (chip of vllm-prefill0-dp1)",
                    f"{p}: npu 1 chip 0 (index 2): held by pid 4242 'foreign' using 30000 MB "
                    "(chip of vllm-prefill0-dp0)",
                    f"{p}: driver version 1.0 is older than 23.0.0 (preflight_min_driver_version)",
                    f"{p}: model of vllm-prefill0-dp0 missing: no {MODEL}/config.json",
                    f"{p}: model of vllm-prefill0-dp1 missing: no {MODEL}/config.json",
                    f"{p}: port 7001 (HTTP port of vllm-prefill0-dp1, ascend_prefill_port) is already in use by "
                    "another process (listening on 0.0.0.0)",
                    f"{p}: device 5: link DOWN",
                    f"{p}: device 12: no IP address",
                    f"{p}: {HCCN_CONF} missing (preflight_network.hccn_conf)",
                    f"{p}: NIC eth9 (preflight_network.nic) does not exist; this host has lo, ",
                    "; 172.30.250.11 is on eth0",
                    f"{p}: device 5: ping 10.20.2.15 (device 5 of {d}) failed (3 sent, 0 received)",
                    f"{p}: /var/lib/docker has ",
                ],
                d: [
                    f"{d}: device 6: net health Fault (expected Success)",
                    f"{d}: device 3: ping 10.20.1.13 (device 3 of {p}) failed (3 sent, 0 received)",
                    # The prefill device whose link is DOWN is unreachable from here too.
                    f"{d}: device 5: ping 10.20.1.15 (device 5 of {p}) failed (3 sent, 0 received)",
                    f"{d}: NIC eth0 does not carry 172.30.250.99 (preflight_network.ip); its addresses: "
                    "172.30.250.12/24",
                    f"{d}: /var/lib/docker has ",
                    "GiB free, less than 100000 GiB (preflight_min_free_disk_gb)",
                ],
            },
            "-e",
            network_faults({p: {"nic": "eth9"}, d: {"ip": "172.30.250.99"}}),
            "-e",
            "preflight_min_free_disk_gb=100000",
        )
    finally:
        set_device_ip(p, 12, f"10.20.{NODE_INDEX[p]}.22")


def test_prefill_node_alone_fails_naming_its_fabric_peer() -> None:
    assert_fails_naming(
        [PREFILL],
        {
            PREFILL: [
                f"{PREFILL}: fabric peer {DECODE} (preflight_network.fabric_peers) has no NPU network facts in this "
                "play (not in the play, or its preflight failed before them): its devices were not pinged"
            ]
        },
    )
