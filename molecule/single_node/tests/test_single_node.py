"""Verify playbooks/single_node.yml on a simulated node (single_node_a3 / single_node_a2).

The expectations come from the plan the converge step wrote (``plan.json`` in the scenario's
ephemeral directory) and from the inventory, so the same tests hold for A3 and A2: what runs
on the node must be what the plan says, with the hardware's chip count.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

from tests.molecule_plan import assert_runs_as_planned, load_plan, node

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
NODES = sorted(RUNNER.get_hosts("single"))

SYSCTL_FILE = "/etc/sysctl.d/90-ascend-vllm.conf"
TARBALL_COPY_DIR = "/var/tmp/ascend-vllm"


@pytest.fixture(scope="module")
def plan():
    return load_plan(EPHEMERAL)


def inventory(name):
    return RUNNER.get_variables(name)


def server_of(plan, name):
    servers = plan["hosts"][name]["servers"]
    assert len(servers) == 1, servers
    return servers[0]


@pytest.mark.parametrize("name", NODES)
def test_check_mode_on_the_fresh_node_created_nothing(name):
    # Written by side_effect.yml between Molecule's `check` step and converge.
    state = json.loads((EPHEMERAL / f"after-check-{name}.json").read_text())
    assert state["images"] == []
    assert state["containers"] == []
    assert state["files"] == []


@pytest.mark.parametrize("name", NODES)
def test_plan_uses_every_chip_of_the_hardware(name, plan):
    invs = inventory(name)
    assert plan["scenario"] == invs["ascend_scenario"]
    server = server_of(plan, name)
    chips = {"a3": 16, "a2": 8}[invs["ascend_hardware"]]
    assert server["chips"] == list(range(chips))
    assert server["tp"] * (server.get("dp_size") or 1) == chips
    # The node's simulated hardware agrees with the inventory's.
    assert int(node(name).check_output("ls /dev | grep -c '^davinci[0-9]'")) == chips


@pytest.mark.parametrize("name", NODES)
def test_container_runs_as_planned(name, plan):
    assert_runs_as_planned(node(name), server_of(plan, name))


@pytest.mark.parametrize("name", NODES)
def test_instance_serves_on_its_port(name, plan):
    instance = server_of(plan, name)
    host = node(name)
    assert host.socket(f"tcp://0.0.0.0:{instance['port']}").is_listening
    status = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{instance['port']}/health")
    assert status == "200"
    models = json.loads(host.check_output(f"curl -fsS http://127.0.0.1:{instance['port']}/v1/models"))
    assert instance["served_model_name"] in [m["id"] for m in models["data"]]


@pytest.mark.parametrize("name", NODES)
def test_image_loaded_from_the_tarball_and_copy_removed(name, plan):
    host = node(name)
    image = server_of(plan, name)["container"]["image"]
    assert host.run(f"docker image inspect {image}").rc == 0
    assert host.check_output(f"find {TARBALL_COPY_DIR} -name '*.tar' 2>/dev/null || true") == ""


@pytest.mark.parametrize("name", NODES)
def test_sysctls_persisted(name, plan):
    host = node(name)
    sysctl = host.file(SYSCTL_FILE)
    assert sysctl.is_file and sysctl.mode == 0o644
    lines = {}
    for line in sysctl.content_string.splitlines():
        if line.strip() and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            lines[key.strip()] = value.strip()
    for key, value in plan["hosts"][name]["tuning"]["sysctls"].items():
        if host.file("/proc/sys/" + key.replace(".", "/")).exists:
            assert lines.get(key) == str(value), key
