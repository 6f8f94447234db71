# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ascend.vllm.preflight_facts, run in-process against fake npu-smi, hccn_tool, docker and ip.

The weights, disk paths and hccn.conf are real files under tmp_path; the listening ports are
this machine's own /proc/net/tcp, where a test opens a listener of its own.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from ansible_collections.ascend.vllm.plugins.modules import preflight_facts
from tests.unit.plugins.modules.fake_tools import FakeDocker, FakeHccnTool, FakeNpuSmi, fake_printer, fixture
from tests.unit.plugins.modules.module_runner import module_ok

IMAGE = "quay.io/ascend/vllm-ascend:v0.11.0rc0-a3"


class Host:
    """A fake A3 host: tools, weights and files under tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.npu_smi = FakeNpuSmi(tmp_path / "bin", "a3_idle.txt")
        self.hccn = FakeHccnTool(tmp_path, count=16)
        self.docker = FakeDocker(tmp_path / "docker")
        self.docker.image(IMAGE)
        self.ip = fake_printer(tmp_path / "ip", "ip", fixture("preflight", "ip_addr.json"))
        self.model = self.weights("MiniMax-M2.7-w8a8-QuaRot", {"model_type": "minimax_m2", "num_hidden_layers": 62})
        self.hccn_conf = tmp_path / "hccn.conf"
        self.hccn_conf.write_text("address_0=10.20.1.10\nnetmask_0=255.255.0.0\n", encoding="utf-8")
        self.version_info = tmp_path / "version.info"
        self.version_info.write_text("Version=25.2.3\nascendhal_version=7.35.23\n", encoding="utf-8")

    def weights(self, name: str, config: Any) -> Path:
        path = self.root / "cache" / name
        path.mkdir(parents=True)
        if config is not None:
            (path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config), "utf-8")
        return path

    def args(self, **records: Any) -> Dict[str, Any]:
        self.hccn.save()
        self.docker.save()
        return dict(
            npu_smi_path=str(self.npu_smi.path),
            hccn_tool_path=str(self.hccn.path),
            docker_path=str(self.docker.path),
            ip_path=str(self.ip),
            driver_version_file=str(self.version_info),
            disk_paths=[str(self.root)],
            **records,
        )


def prefill_server(name: str, chips: list, *weights: Path) -> Dict[str, Any]:
    return {
        "name": name,
        "role": "prefill",
        "chips": chips,
        "weights": [{"what": "model", "path": str(w)} for w in weights],
        "container": {"image": IMAGE},
    }


def network(host: Host, devices: list) -> Dict[str, Any]:
    return {
        "nic": "enp189s0f0",
        "ip": "192.0.2.11",
        "devices": devices,
        "hccn_conf": str(host.hccn_conf),
        "fabric_peers": ["a3-node2"],
    }


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port this test listens on (the host's /proc/net/tcp shows it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    return module_ok(preflight_facts.main, args)


def test_prefill_host_everything_in_one_call(host: Host, listener: int) -> None:
    host.docker.container("vllm-prefill0-dp0", running=True)
    host.hccn.set(3, "link", (0, fixture("hccn", "link_down.txt")))
    host.hccn.set(9, "ip", (1, fixture("hccn", "ip_not_preset.txt")))
    draft = host.weights("MiniMax-M2.7-eagle-model-short", None)
    broken = host.weights("MiniMax-M2.5-w8a8-QuaRot", '{"model_type": "minimax_m2",')
    result = run(
        host.args(
            servers=[
                prefill_server("vllm-prefill0-dp0", list(range(8)), host.model, draft),
                prefill_server("vllm-prefill0-dp1", list(range(8, 16)), host.model, broken),
            ],
            ports=[
                {"first": listener, "last": listener, "what": "HTTP port", "variable": "v", "owner": "vllm-pd-proxy"}
            ],
            network=network(host, list(range(16))),
        )
    )
    assert result["changed"] is False
    assert len(result["npu"]["chips"]) == 16 and result["npu"]["error"] is None
    assert result["npu"]["driver_version"] == "25.2.3"
    assert result["driver_version_file"] == {"path": str(host.version_info), "version": "25.2.3", "error": None}
    assert result["docker"] == {
        "error": None,
        "containers": [
            {"name": "vllm-prefill0-dp0", "exists": True, "running": True},
            {"name": "vllm-prefill0-dp1", "exists": False, "running": False},
            {"name": "vllm-pd-proxy", "exists": False, "running": False},
        ],
        "images": [{"name": IMAGE, "present": True}],
    }
    model, no_config, truncated = result["weights"]
    assert model == {
        "path": str(host.model),
        "config_json": f"{host.model}/config.json",
        "missing": False,
        "error": None,
    }
    assert no_config == {"path": str(draft), "config_json": f"{draft}/config.json", "missing": True, "error": None}
    assert (truncated["path"], truncated["missing"]) == (str(broken), False)
    assert truncated["error"].startswith("not valid JSON (")
    assert result["disk"][0]["path"] == str(host.root) and result["disk"][0]["free_bytes"] > 0
    assert {"address": "127.0.0.1", "port": listener} in result["listening"]["ports"]
    devices = result["hccn"]["devices"]
    assert [d["device"] for d in devices] == list(range(16))
    assert devices[3]["link"] == "DOWN" and devices[9]["ip"] is None and devices[0]["ip"] == "192.168.100.101"
    assert all(d["error"] is None for d in devices)
    assert result["hccn_conf"] == {"path": str(host.hccn_conf), "exists": True}
    assert [i["name"] for i in result["interfaces"]["interfaces"]] == ["lo", "enp189s0f0", "enp189s0f1", "docker0"]
    # Three queries per device, no TLS, no ping; one docker call per kind; npu-smi once.
    assert all(len(calls) == 3 for calls in host.hccn.calls_by_device().values())
    assert host.npu_smi.calls() == ["info"]
    assert [call[:2] for call in host.docker.calls()] in (
        [["container", "inspect"], ["image", "inspect"]],
        [["image", "inspect"], ["container", "inspect"]],
    )


def test_single_node_host_reads_no_network(host: Host) -> None:
    server = dict(prefill_server("vllm-single", [0, 1], host.model), role="single")
    result = run(host.args(servers=[server], _ansible_check_mode=True))
    assert (result["hccn"], result["hccn_conf"], result["interfaces"], result["listening"]) == (None, None, None, None)
    assert host.hccn.calls() == []
    assert result["docker"]["containers"] == [{"name": "vllm-single", "exists": False, "running": False}]


def test_proxy_only_host_reads_no_npu(host: Host, listener: int) -> None:
    port = {"first": 8009, "last": 8009, "what": "proxy port", "variable": "ascend_proxy_port", "owner": "pd-proxy"}
    result = run(host.args(ports=[port]))
    assert (result["npu"], result["driver_version_file"]) == (None, None)
    assert host.npu_smi.calls() == []
    assert result["docker"] == {
        "error": None,
        "containers": [{"name": "pd-proxy", "exists": False, "running": False}],
        "images": [],
    }
    assert {"address": "127.0.0.1", "port": listener} in result["listening"]["ports"]


def test_what_cannot_be_read_is_returned_not_failed(host: Host) -> None:
    host.docker.table["down"] = True
    missing = host.root / "nowhere"
    args = host.args(
        servers=[prefill_server("vllm-prefill0-dp0", [0], host.model)],
        network=dict(network(host, [0, 1]), hccn_conf=str(missing / "hccn.conf")),
    )
    args.update(
        npu_smi_path=str(missing / "npu-smi"),
        hccn_tool_path="hccn_tool_nowhere",
        ip_path=str(missing / "ip"),
        driver_version_file=str(missing / "version.info"),
        disk_paths=[str(missing)],
    )
    result = run(args)
    assert result["npu"] == {"error": f"npu-smi not found or not executable at {missing}/npu-smi (set npu_smi_path)"}
    assert result["driver_version_file"]["error"] == "No such file or directory"
    down = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    assert result["docker"] == {"error": down, "containers": [], "images": []}
    assert result["hccn"]["devices"] == []
    assert result["hccn"]["error"].startswith("hccn_tool not found: 'hccn_tool_nowhere' is neither in PATH nor in ")
    assert result["hccn_conf"]["exists"] is False
    assert result["interfaces"]["error"] == f"ip (iproute2) not found or not executable at {missing}/ip (set ip_path)"
    assert result["disk"] == [{"path": str(missing), "free_bytes": None, "error": "No such file or directory"}]


def test_failing_tools_are_errors_per_query(host: Host, tmp_path: Path) -> None:
    host.npu_smi = FakeNpuSmi(tmp_path / "bin2", "dcmi_init_failed_8005.txt", rc=255)
    host.hccn.set(1, "net_health", (3, "Get device health status failed!\n"))
    result = run(host.args(servers=[prefill_server("p0", [0, 1], host.model)], network=network(host, [0, 1])))
    assert result["npu"]["error"].startswith(f"'{host.npu_smi.path} info' failed (rc=255): ")
    device = result["hccn"]["devices"][1]
    assert (
        device["error"]
        == f"device 1: '{host.hccn.path} -i 1 -net_health -g' failed (rc=3): Get device health status failed!"
    )
    assert (device["link"], device["ip"]) == (None, None)
    assert result["hccn"]["devices"][0]["error"] is None


def test_unknown_image_is_absent(host: Host) -> None:
    server = prefill_server("p0", [0], host.model)
    server["container"]["image"] = "registry.example/vllm-ascend:missing"
    result = run(host.args(servers=[server]))
    assert result["docker"]["images"] == [{"name": "registry.example/vllm-ascend:missing", "present": False}]
    result = run(host.args(servers=[server], check_image=False))
    assert result["docker"]["images"] == []
    # Two container lookups, and one image lookup: none with check_image=false.
    kinds = sorted(call[0] for call in host.docker.calls())
    assert kinds == ["container", "container", "image"]


def test_queries_run_at_the_same_time(host: Host, tmp_path: Path) -> None:
    host.npu_smi = FakeNpuSmi(tmp_path / "slow", "a3_idle.txt", delay=1)
    host.docker.table["delay"] = 1
    for device in range(4):
        host.hccn.set(device, "link", (0, fixture("hccn", "link_up.txt"), 1))
    started = time.monotonic()
    result = run(
        host.args(servers=[prefill_server("p0", [0, 1, 2, 3], host.model)], network=network(host, [0, 1, 2, 3]))
    )
    elapsed = time.monotonic() - started
    # One after the other: npu-smi 1 s, docker twice 1 s, four devices 1 s each: 7 s at least.
    assert elapsed < 4, f"took {elapsed:.1f} s"
    assert all(d["link"] == "UP" for d in result["hccn"]["devices"])


def test_malformed_records_are_skipped_not_failed(host: Host) -> None:
    result = run(host.args(servers=[{"name": "p0", "chips": "0-7"}], ports=[{"first": 1}], network={"nic": "eth0"}))
    assert result["npu"] is None and result["hccn"] is None and result["listening"] is None
    assert result["docker"] == {"error": None, "containers": [], "images": []}


def test_a_silent_docker_failure_names_the_command() -> None:
    def silent(argv: list) -> tuple:
        return 1, "", ""

    _unknown, error, _out = preflight_facts._docker_inspect(silent, ["docker", "container", "inspect", "a", "b"])
    assert error == "'docker container inspect ...' exited 1: nothing on stdout or stderr"
    down = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    assert preflight_facts._docker_inspect(lambda argv: (1, "", down), ["docker", "image", "inspect", IMAGE])[1] == down
