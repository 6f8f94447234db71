#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: preflight_facts
short_description: Read in one go what a vLLM host's preflight needs to know
version_added: 0.1.0
description:
  - Reads, for the plan records of the vLLM servers, ports and NPU network of this host, what
    the role C(ascend.vllm.preflight) checks, in one round trip - C(npu-smi info) (chips,
    health, processes, driver version) and the driver's C(version.info); whether the owner
    containers of the servers and ports exist and run, and whether the images are present
    (the C(docker) CLI); each weights directory's C(config.json); the free space of
    O(disk_paths); the listening TCP ports (C(/proc/net/tcp) and C(/proc/net/tcp6)); and on a
    prefill/decode host the link, net health and IP of each NPU device (C(hccn_tool)), whether
    the C(hccn.conf) exists, and the addresses of every network interface (C(ip -j addr)).
  - The queries run at the same time (threads), one per tool and one per NPU device.
  - Only reads, and never fails on what it reads - a missing tool, a failing command, a missing
    file are returned as C(error) texts, so that the caller can report every problem of the
    host at once (M(ascend.vllm.preflight_check) does).
  - Only records that have the expected shape are read for; the checks of the record shapes
    are M(ascend.vllm.preflight_check)'s.
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  servers:
    description:
      - The plan's server records on this host, one per vLLM container. Keys read are C(name)
        (the container name), C(role) (V(single), V(prefill) or V(decode)), C(chips) (chip
        indexes), C(weights) (a list of C(what) and C(path)) and C(container.image).
    type: list
    elements: dict
    default: []
  ports:
    description:
      - The TCP port ranges this host will bind, each with C(first), C(last), C(what),
        C(variable) and C(owner) (the container that binds it). Any listening port makes the
        module read the listening sockets; the owners are looked up like the servers'
        containers.
    type: list
    elements: dict
    default: []
  network:
    description:
      - Empty on a single-node host. On a prefill/decode host C(nic), C(ip), C(devices) (the
        NPU device indexes the servers use), C(hccn_conf) and C(fabric_peers).
    type: dict
    default: {}
  check_image:
    description:
      - Look up the servers' images in the Docker engine.
    type: bool
    default: true
  disk_paths:
    description:
      - Paths whose file system's free space to read.
    type: list
    elements: path
    default: []
  npu_smi_path:
    description:
      - Path of C(npu-smi); a bare name is looked up in E(PATH), then in the directories the
        Ascend driver installs into.
    type: str
    default: npu-smi
  driver_version_file:
    description:
      - The driver's C(version.info), read along with C(npu-smi info) (some npu-smi releases
        print no driver version).
    type: path
    default: /usr/local/Ascend/driver/version.info
  hccn_tool_path:
    description:
      - Path of C(hccn_tool); a bare name is looked up like O(npu_smi_path).
    type: str
    default: /usr/local/Ascend/driver/tools/hccn_tool
  docker_path:
    description:
      - Path of the C(docker) CLI; a bare name is looked up like O(npu_smi_path).
    type: str
    default: docker
  ip_path:
    description:
      - Path of iproute2's C(ip); a bare name is looked up like O(npu_smi_path).
    type: str
    default: ip
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads; it reads the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - Needs the permissions C(npu-smi), C(hccn_tool) and the Docker engine need, usually root.
  - The listening ports are those of the module's network namespace - the host's, where the
    vLLM containers run with C(--network host).
seealso:
  - module: ascend.vllm.preflight_check
  - module: ascend.vllm.npu_smi_info
  - module: ascend.vllm.hccn_info
"""

EXAMPLES = r"""
- name: Read what the preflight of this host needs
  ascend.vllm.preflight_facts:
    servers:
      - name: vllm-prefill0-dp0
        role: prefill
        chips: [0, 1, 2, 3, 4, 5, 6, 7]
        weights:
          - {what: model, path: /root/.cache/MiniMax-M2.7-w8a8-QuaRot}
        container: {image: "quay.io/ascend/vllm-ascend:v0.11.0rc0-a3"}
    ports:
      - {first: 7000, last: 7000, what: HTTP port, variable: ascend_http_port, owner: vllm-prefill0-dp0}
      - {first: 20000, last: 20007, what: Mooncake kv ports, variable: ascend_kv_port_base, owner: vllm-prefill0-dp0}
    network:
      nic: enp189s0f0
      ip: 192.0.2.11
      devices: [0, 1, 2, 3, 4, 5, 6, 7]
      hccn_conf: /etc/hccn.conf
      fabric_peers: [a3-node2]
    disk_paths: [/var/lib/docker, /root/.cache]
  register: preflight_facts

- name: Chips whose health is not OK
  ansible.builtin.debug:
    msg: "{{ preflight_facts.npu.chips | rejectattr('health', 'equalto', 'OK') | list }}"
"""

RETURN = r"""
npu:
  description:
    - What C(npu-smi info) printed (see M(ascend.vllm.npu_smi_info) for the fields), or its
      C(error). V(null) on a host without servers.
  returned: always
  type: dict
  contains:
    error:
      description:
        - Why npu-smi could not be read (not found, its exit code and output, an unreadable
          table); V(null) when read.
      type: str
    chips:
      description: One entry per chip, the list index being the chip index.
      type: list
      elements: dict
    processes:
      description: One entry per process holding a chip.
      type: list
      elements: dict
    driver_version:
      description: The driver version of npu-smi's header; V(null) when not printed.
      type: str
    npu_smi_version:
      description: The npu-smi version.
      type: str
driver_version_file:
  description: The C(Version=) of O(driver_version_file), or its C(error). V(null) on a host without servers.
  returned: always
  type: dict
  contains:
    path:
      description: The file read.
      type: str
    version:
      description: Its C(Version=) value; V(null) when it has none or cannot be read.
      type: str
    error:
      description: Why it could not be read; V(null) when read.
      type: str
docker:
  description:
    - What the Docker engine knows of the owner containers of the servers and ports, and of the
      servers' images.
  returned: always
  type: dict
  contains:
    error:
      description:
        - Why the Docker engine could not be asked (no C(docker) CLI, the engine is down);
          V(null) when it answered.
      type: str
    containers:
      description: One entry per container asked for.
      type: list
      elements: dict
      sample: [{name: vllm-prefill0-dp0, exists: true, running: true}]
    images:
      description: One entry per image (none when O(check_image=false)).
      type: list
      elements: dict
      sample: [{name: "quay.io/ascend/vllm-ascend:v0.11.0rc0-a3", present: true}]
weights:
  description: One entry per weights directory of the servers.
  returned: always
  type: list
  elements: dict
  sample:
    - {path: /root/.cache/MiniMax-M2.7-w8a8-QuaRot, config_json: /root/.cache/MiniMax-M2.7-w8a8-QuaRot/config.json,
       missing: false, error: null}
  contains:
    path:
      description: The directory.
      type: str
    config_json:
      description: The C(config.json) looked for.
      type: str
    missing:
      description: Whether C(config.json) does not exist.
      type: bool
    error:
      description:
        - Why an existing C(config.json) is unusable (unreadable, not a JSON object); V(null) when usable.
      type: str
disk:
  description: One entry per path of O(disk_paths).
  returned: always
  type: list
  elements: dict
  sample: [{path: /var/lib/docker, free_bytes: 1073741824000, error: null}]
  contains:
    path:
      description: The path.
      type: str
    free_bytes:
      description: Bytes available to unprivileged users on its file system (what C(df) shows as available).
      type: int
    error:
      description: Why it could not be measured; V(null) when measured.
      type: str
listening:
  description: The listening TCP sockets; V(null) when no port is planned on this host.
  returned: always
  type: dict
  contains:
    error:
      description: Why they could not be read; V(null) when read.
      type: str
    ports:
      description: One entry per listening socket.
      type: list
      elements: dict
      sample: [{address: 0.0.0.0, port: 8000}, {address: "::", port: 22}]
hccn:
  description: The NPU devices of O(network) (V(null) on a single-node host).
  returned: always
  type: dict
  contains:
    error:
      description: Why hccn_tool could not be run at all; V(null) otherwise.
      type: str
    devices:
      description:
        - One entry per device, with the fields of M(ascend.vllm.hccn_info)'s RV(ascend.vllm.hccn_info#module:devices)
          (TLS not queried) and C(error), the failure of its queries (V(null) when they answered).
      type: list
      elements: dict
      sample: [{device: 0, link: UP, net_health: Success, ip: 10.20.1.10, netmask: 255.255.0.0, error: null}]
hccn_conf:
  description: Whether the C(hccn_conf) of O(network) exists; V(null) on a single-node host.
  returned: always
  type: dict
  sample: {path: /etc/hccn.conf, exists: true}
interfaces:
  description: Every network interface of the host and its addresses; V(null) on a single-node host.
  returned: always
  type: dict
  contains:
    error:
      description: Why they could not be listed; V(null) when listed.
      type: str
    interfaces:
      description: One entry per interface.
      type: list
      elements: dict
      sample: [{name: eth0, operstate: UP, addresses: [192.0.2.11/24]}]
"""

import json
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend.vllm.plugins.module_utils.hccn import HccnCommandError, RunCommand, query_device
from ansible_collections.ascend.vllm.plugins.module_utils.npu_smi import NpuSmiCommandError, read_npu_smi_info
from ansible_collections.ascend.vllm.plugins.module_utils.parallel import map_concurrently
from ansible_collections.ascend.vllm.plugins.module_utils.preflight import (
    docker_unknown_names,
    gather_targets,
    normalize_records,
    parse_ip_addr,
    parse_proc_net_tcp,
    parse_version_info,
)
from ansible_collections.ascend.vllm.plugins.module_utils.tools import locate_tool, reading_run

PROC_NET_TCP = ("/proc/net/tcp", "/proc/net/tcp6")


def _output(rc: int, out: str, err: str) -> str:
    text = "\n".join(part.strip() for part in (out, err) if part.strip())
    return f"exit code {rc}: {text or '(no output)'}"


def _npu(module: AnsibleModule, run: RunCommand) -> Dict[str, Any]:
    tool, error = locate_tool(module, module.params["npu_smi_path"], "npu_smi_path", "npu-smi")
    if tool is None:
        return {"error": error}
    try:
        return dict(read_npu_smi_info(run, tool), error=None)
    except NpuSmiCommandError as exc:
        return {"error": str(exc)}


def _version_file(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return {"path": path, "version": parse_version_info(fh.read()), "error": None}
    except OSError as exc:
        return {"path": path, "version": None, "error": exc.strerror or str(exc)}


def _docker_inspect(run: RunCommand, argv: List[str]) -> Tuple[List[str], Optional[str], str]:
    """Run a ``docker ... inspect``: the names it does not know, an error, and its output.

    ``run`` (tools.reading_run) already asked again when nothing came back; a failure that is
    still silent names the command, not just an exit code.
    """
    rc, out, err = run(argv)
    unknown, error = docker_unknown_names(rc, err)
    if error and not (err or "").strip():
        said = " ".join((out or "").split())[-300:] or "nothing on stdout or stderr"
        error = f"'{' '.join(argv[:3])} ...' exited {rc}: {said}"
    return unknown, error, out


def _containers(run: RunCommand, docker: str, names: List[str]) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    _unknown, error, out = _docker_inspect(run, [docker, "container", "inspect", *names])
    if error:
        return [], error
    try:
        found = {c["Name"].lstrip("/"): c for c in json.loads(out or "[]")}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return [], f"unreadable answer of 'docker container inspect': {exc}"
    states = []
    for name in names:
        state = (found.get(name) or {}).get("State") or {}
        states.append({"name": name, "exists": name in found, "running": bool(state.get("Running"))})
    return states, None


def _images(run: RunCommand, docker: str, names: List[str]) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    # Which of the found images answers which name is not in the answer (tags, digests, short
    # names), but each unknown name is named on standard error.
    unknown, error, _out = _docker_inspect(run, [docker, "image", "inspect", "--format", "{{.Id}}", *names])
    if error:
        return [], error
    return [{"name": name, "present": name not in unknown} for name in names], None


def _weights(path: str) -> Dict[str, Any]:
    config = os.path.join(path, "config.json")
    entry: Dict[str, Any] = {"path": path, "config_json": config, "missing": False, "error": None}
    try:
        with open(config, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, NotADirectoryError):
        entry["missing"] = True
    except OSError as exc:
        entry["error"] = exc.strerror or str(exc)
    except ValueError as exc:
        entry["error"] = f"not valid JSON ({exc})"
    else:
        if not isinstance(data, dict):
            entry["error"] = "not a JSON object"
    return entry


def _disk(path: str) -> Dict[str, Any]:
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return {"path": path, "free_bytes": None, "error": exc.strerror or str(exc)}
    return {"path": path, "free_bytes": st.f_bavail * st.f_frsize, "error": None}


def _listening() -> Dict[str, Any]:
    ports: List[Dict[str, Any]] = []
    for path in PROC_NET_TCP:
        try:
            with open(path, encoding="ascii") as fh:
                ports += parse_proc_net_tcp(fh.read())
        except FileNotFoundError:
            # A kernel without IPv6 has no tcp6.
            if path == PROC_NET_TCP[0]:
                return {"error": f"{path} does not exist", "ports": []}
        except (OSError, ValueError) as exc:
            return {"error": f"cannot read {path}: {exc}", "ports": []}
    return {"error": None, "ports": ports}


def _interfaces(module: AnsibleModule, run: RunCommand) -> Dict[str, Any]:
    tool, error = locate_tool(module, module.params["ip_path"], "ip_path", "ip (iproute2)")
    if tool is None:
        return {"error": error, "interfaces": []}
    rc, out, err = run([tool, "-j", "addr", "show"])
    if rc != 0:
        return {"error": f"'{tool} -j addr show' failed, {_output(rc, out, err)}", "interfaces": []}
    try:
        return {"error": None, "interfaces": parse_ip_addr(out)}
    except (ValueError, KeyError, TypeError) as exc:
        return {"error": f"unreadable answer of '{tool} -j addr show': {exc}", "interfaces": []}


def _hccn_device(run: RunCommand, tool: str, device: int) -> Dict[str, Any]:
    try:
        return dict(query_device(run, tool, device, tls=False), error=None)
    except HccnCommandError as exc:
        failed = {"device": device, "link": None, "net_health": None, "ip": None, "netmask": None, "tls_enabled": None}
        return dict(failed, ping=[], error=str(exc))


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            servers=dict(type="list", elements="dict", default=[]),
            ports=dict(type="list", elements="dict", default=[]),
            network=dict(type="dict", default={}),
            check_image=dict(type="bool", default=True),
            disk_paths=dict(type="list", elements="path", default=[]),
            npu_smi_path=dict(type="str", default="npu-smi"),
            driver_version_file=dict(type="path", default="/usr/local/Ascend/driver/version.info"),
            hccn_tool_path=dict(type="str", default="/usr/local/Ascend/driver/tools/hccn_tool"),
            docker_path=dict(type="str", default="docker"),
            ip_path=dict(type="str", default="ip"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    records = normalize_records(params["servers"], params["ports"], params["network"])
    targets = gather_targets(records, params["check_image"])

    facts: Dict[str, Any] = {
        "npu": None,
        "driver_version_file": None,
        "weights": [_weights(path) for path in targets["weights"]],
        "disk": [_disk(path) for path in params["disk_paths"]],
        "listening": _listening() if targets["listening"] else None,
        "hccn": None,
        "hccn_conf": None,
        "interfaces": None,
    }
    if targets["npu"]:
        facts["driver_version_file"] = _version_file(params["driver_version_file"])
    if targets["hccn_conf"] is not None:
        facts["hccn_conf"] = {"path": targets["hccn_conf"], "exists": os.path.isfile(targets["hccn_conf"])}

    # The commands run together: each job is (the result key, how to get it). The two docker
    # lookups share one section, and each hccn device adds to the list of devices.
    run = reading_run(module)
    jobs: List[Tuple[str, Callable[[], Any]]] = []
    docker, error = locate_tool(module, params["docker_path"], "docker_path", "docker")
    facts["docker"] = {"error": None, "containers": [], "images": []}
    for key in ("containers", "images"):
        if targets[key] and docker is None:
            facts["docker"]["error"] = error
        elif targets[key]:
            query = _containers if key == "containers" else _images
            jobs.append((key, lambda query=query, key=key: query(run, docker, targets[key])))
    if targets["npu"]:
        jobs.append(("npu", lambda: _npu(module, run)))
    if targets["interfaces"]:
        jobs.append(("interfaces", lambda: _interfaces(module, run)))
    if targets["hccn_devices"]:
        hccn_tool, error = locate_tool(module, params["hccn_tool_path"], "hccn_tool_path", "hccn_tool")
        facts["hccn"] = {"error": error, "devices": []}
        if hccn_tool is not None:
            jobs += [
                ("hccn", lambda device=device: _hccn_device(run, hccn_tool, device))
                for device in targets["hccn_devices"]
            ]
    for (key, _job), value in zip(jobs, map_concurrently(lambda job: job[1](), jobs)):
        if key == "hccn":
            facts["hccn"]["devices"].append(value)
        elif key in ("containers", "images"):
            facts["docker"][key], error = value
            facts["docker"]["error"] = facts["docker"]["error"] or error
        else:
            facts[key] = value

    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
