"""What Molecule verifiers check against plan.json: the containers a deployment runs.

Used by molecule/single_node and molecule/pd: each server record of the plan (docs/plan.md)
must be a running container on its host whose image, command, entrypoint, environment,
devices, mounts and namespaces are the record's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import testinfra


def node(name: str):
    """A simulated node, reached through the Docker engine like Ansible reaches it."""
    return testinfra.get_host(f"docker://{name}")


def load_plan(ephemeral: Path) -> Dict[str, Any]:
    """plan.json as the scenario's converge wrote it (plan_dir = <ephemeral>/plan)."""
    return json.loads((ephemeral / "plan" / "plan.json").read_text())


def servers(plan: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    for host, record in plan["hosts"].items():
        for server in record["servers"]:
            yield host, server


def bind(text: str) -> Tuple[str, str, str]:
    """A src:dst[:mode] bind without Docker's spelling differences (trailing "/", implicit rw)."""
    src, dst, *mode = text.split(":")
    return src.rstrip("/"), dst.rstrip("/"), ("ro" if mode == ["ro"] else "rw")


def inspect(host, container: str) -> Dict[str, Any]:
    return json.loads(host.check_output(f"docker inspect {container}"))[0]


def assert_runs_as_planned(host, server: Dict[str, Any]) -> None:
    planned = server["container"]
    info = inspect(host, planned["name"])
    config, host_config = info["Config"], info["HostConfig"]
    assert info["State"]["Running"], planned["name"]
    assert config["Image"] == planned["image"]
    assert config["Cmd"] == server["argv"]
    assert config["Entrypoint"] == planned["entrypoint"]
    assert config["User"] == planned["user"]
    assert host_config["NetworkMode"] == planned["network_mode"]
    assert host_config["IpcMode"] == planned["ipc_mode"]
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert [d["PathOnHost"] for d in host_config["Devices"]] == planned["devices"]
    assert {bind(v) for v in planned["volumes"]} <= {bind(b) for b in host_config["Binds"]}
    env = dict(e.split("=", 1) for e in config["Env"])
    for key, value in planned["env"].items():
        assert env.get(key) == value, key
    assert config["Labels"]["ascend.vllm.server"] == planned["name"]
    assert config["Labels"]["ascend.vllm.instance"] == server["instance"]
    assert config["Labels"]["ascend.vllm.role"] == server["role"]


def metric(text: str, name: str) -> float:
    """The sum of one Prometheus metric's samples in a /metrics text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in "{ ":
            total += float(line.rsplit(" ", 1)[1])
    return total


def curl_json(host, url: str, body: Dict[str, Any] | None = None) -> Tuple[Dict[str, str], Any]:
    """(response headers, decoded JSON body) of a GET, or of a POST of ``body``, from ``host``."""
    data = "" if body is None else f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'"
    out = host.check_output(f"curl -sS -D - {data} {url}")
    head, _, payload = out.replace("\r\n", "\n").partition("\n\n")
    headers: Dict[str, str] = {}
    for line in head.splitlines()[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return headers, json.loads(payload)
