"""Verify ascend.vllm.vllm_server on the simulated node (see ../molecule.yml).

The container must run as the hand-written plan record (../vars/instance.yml) says. From
here the role also runs in --check with a changed record (it must report the change and
recreate nothing) and with a record whose vLLM flag is wrong (it must fail naming host,
container and port, and show the container's last log lines).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import testinfra
import testinfra.utils.ansible_runner
import yaml

from tests.molecule_playbook import changed_tasks, failure_text, run_playbook

SCENARIO = Path(__file__).resolve().parent.parent
CONVERGE = SCENARIO / "converge.yml"
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
NODES = sorted(RUNNER.get_hosts("all"))


@pytest.fixture(scope="module")
def record():
    rec = yaml.safe_load((SCENARIO / "vars" / "instance.yml").read_text())["vllm_server_molecule_instance"]
    # The same list the record's Jinja expression gives: every chip of the A3 node, then the
    # management devices.
    rec["container"]["devices"] = [f"/dev/davinci{i}" for i in range(16)] + [
        "/dev/davinci_manager",
        "/dev/devmm_svm",
        "/dev/hisi_hdc",
    ]
    return rec


def node(name):
    return testinfra.get_host(f"docker://{name}")


def inspect(host, container):
    return json.loads(host.check_output(f"docker inspect {container}"))[0]


@pytest.mark.parametrize("name", NODES)
def test_container_runs_as_the_record_says(name, record):
    planned = record["container"]
    info = inspect(node(name), planned["name"])
    config, host_config = info["Config"], info["HostConfig"]
    assert info["State"]["Status"] == "running"
    assert config["Image"] == planned["image"]
    assert config["Cmd"] == record["argv"]
    assert host_config["NetworkMode"] == "host"
    assert host_config["IpcMode"] == "host"
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert [d["PathOnHost"] for d in host_config["Devices"]] == planned["devices"]
    env = dict(e.split("=", 1) for e in config["Env"])
    for key, value in planned["env"].items():
        assert env.get(key) == value, key
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "0,1"
    labels = config["Labels"]
    assert labels["ascend.vllm.server"] == "vllm-single"
    assert labels["ascend.vllm.instance"] == "single0"
    assert labels["ascend.vllm.role"] == "single"
    assert len(labels["ascend.vllm.plan_hash"]) == 64


@pytest.mark.parametrize("name", NODES)
def test_health_answers_200(name, record):
    status = node(name).check_output(
        f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{record['port']}/health"
    )
    assert status == "200"


@pytest.mark.parametrize("name", NODES)
def test_check_mode_with_a_changed_record_reports_it_and_recreates_nothing(name, record):
    host = node(name)
    before = inspect(host, "vllm-single")["Id"]
    changed = json.loads(json.dumps(record))
    changed["container"]["env"]["VLLM_SIM_LOAD_SECONDS"] = "3"
    rc, report = run_playbook(
        CONVERGE, "--check", "--limit", name, "-e", json.dumps({"vllm_server_molecule_instance": changed})
    )
    assert rc == 0, report["stats"]
    assert report["stats"][name]["changed"] == 1, changed_tasks(report, name)
    assert inspect(host, "vllm-single")["Id"] == before


@pytest.mark.parametrize("name", NODES)
def test_bad_flag_fails_naming_host_container_port_with_the_log(name, record):
    bad = {
        "name": "vllm-bad",
        "role": "single",
        "port": 8001,
        "argv": [*record["argv"], "--no-such-flag"],
        "container": dict(record["container"], name="vllm-bad"),
    }
    try:
        rc, report = run_playbook(CONVERGE, "--limit", name, "-e", json.dumps({"vllm_server_records": [bad]}))
        assert rc != 0
        text = failure_text(report, name)
        assert any(name in line and "vllm-bad" in line and "port 8001" in line for line in text.splitlines()), text
        assert "unrecognized arguments" in text, text
    finally:
        node(name).run("docker rm -f vllm-bad")
    # The instance of the scenario was left alone.
    assert inspect(node(name), "vllm-single")["State"]["Status"] == "running"
