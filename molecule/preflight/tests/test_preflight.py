"""Verify ascend.vllm.preflight on the simulated node (see ../molecule.yml).

Preflight only reads, so what there is to verify is what it reports: from here the role runs
again (the scenario's converge.yml) on the converged node
  1. with one fault injected per check: the single failure names the host and each chip,
     port, path and version;
  2. healthy again, with our own container of the instance running (it listens on the
     instance's port and holds HBM on its chips, as a running vLLM does): it passes, here in
     --check (which runs every check too);
  3. the same listener and chip holders without our container: it fails naming them.
Each test leaves the node healthy (``ascend-sim-fault clear``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import testinfra
import testinfra.utils.ansible_runner

from tests.molecule_playbook import changed_tasks, failure_text, run_playbook

CONVERGE = Path(__file__).resolve().parent.parent / "converge.yml"
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
NODES = sorted(RUNNER.get_hosts("all"))

IMAGE = "ascend-sim/vllm-ascend:0.1.0"
MODEL = "/root/.cache/MiniMax-M2.7-w8a8-QuaRot"
DRAFT = "/root/.cache/MiniMax-M2.7-eagle-model-short"


def node(name):
    return testinfra.get_host(f"docker://{name}")


def fault(host, *args):
    host.check_output("ascend-sim-fault " + " ".join(args))


def assert_fails_naming(name, expected):
    rc, report = run_playbook(CONVERGE, "--limit", name)
    assert rc != 0, "preflight passed"
    text = failure_text(report, name)
    missing = [e for e in expected if e not in text]
    assert missing == [], f"Not named: {missing}; the failure was:\n{text}"


@pytest.fixture
def healthy_after():
    """Clear every fault and our stand-in container after the test, pass or fail."""
    hosts = []
    yield hosts.append
    for host in hosts:
        host.run("docker rm -f vllm-single")
        host.run("ascend-sim-fault clear")


@pytest.mark.parametrize("name", NODES)
def test_healthy_node_passes_and_changes_nothing(name):
    rc, report = run_playbook(CONVERGE, "--limit", name, "--check")
    assert rc == 0, failure_text(report, name)
    assert changed_tasks(report, name) == []


@pytest.mark.parametrize("name", NODES)
def test_one_failure_names_every_fault(name, healthy_after):
    host = node(name)
    healthy_after(host)
    fault(host, "chip-health", "1", "Critical")
    fault(host, "hbm-holder", "0", "30000", "--name", "foreign")
    fault(host, "port-hold", "8000")
    fault(host, "weights-missing", MODEL)
    fault(host, "weights-missing", DRAFT)
    fault(host, "driver-version", "1.0")
    assert_fails_naming(
        name,
        [
            f"{name}: npu 0 chip 1 (index 1): health Critical",
            f"{name}: npu 0 chip 0 (index 0): held by pid",
            f"{name}: port 8000 (HTTP port of vllm-single) is already in use",
            f"{name}: speculative draft model of vllm-single missing: no {DRAFT}/config.json",
            f"{name}: model of vllm-single missing: no {MODEL}/config.json",
            f"{name}: driver version 1.0 is older than",
        ],
    )


@pytest.mark.parametrize("name", NODES)
def test_our_own_container_holding_port_and_chips_passes(name, healthy_after):
    host = node(name)
    healthy_after(host)
    # A stand-in vLLM: our instance's container name, listening on its port.
    host.check_output(f"docker run -d --name vllm-single --network host {IMAGE} python3 -m http.server 8000")
    for chip in (0, 1):
        fault(host, "hbm-holder", str(chip), "30000", "--name", "vllm")
    host.check_output("timeout 30 sh -c 'until curl -s -o /dev/null http://127.0.0.1:8000/; do sleep 0.5; done'")
    rc, report = run_playbook(CONVERGE, "--limit", name, "--check")
    assert rc == 0, failure_text(report, name)


@pytest.mark.parametrize("name", NODES)
def test_same_holders_without_our_container_fail(name, healthy_after):
    host = node(name)
    healthy_after(host)
    for chip in (0, 1):
        fault(host, "hbm-holder", str(chip), "30000", "--name", "vllm")
    fault(host, "port-hold", "8000")
    assert_fails_naming(
        name,
        [
            f"{name}: npu 0 chip 0 (index 0): held by pid",
            f"{name}: npu 0 chip 1 (index 1): held by pid",
            f"{name}: port 8000 (HTTP port of vllm-single) is already in use",
        ],
    )
