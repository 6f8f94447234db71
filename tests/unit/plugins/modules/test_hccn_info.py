"""ascend.vllm.hccn_info, run in-process against a fake hccn_tool (a script answering from a table).

The fake answers ``hccn_tool -i N -link|-net_health|-ip|-tls -g`` and
``hccn_tool -i N -ping -g address IP`` with the text (and exit code, and optionally after a
delay) a test puts in its table, and logs every argv, so the tests see exactly what the module
runs and how it reads the answers. Devices are queried concurrently, so the log's order is
fixed within a device only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from ansible_collections.ascend.vllm.plugins.modules import hccn_info
from tests.unit.plugins.modules.fake_tools import FakeHccnTool as FakeTool
from tests.unit.plugins.modules.module_runner import ModuleExit, adhoc_failure, run_module

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "hccn"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def ping_ok(device: int, address: str) -> str:
    return (
        f"device {device} PING {address}\n"
        "recv seq=0,time=0.131000ms\nrecv seq=1,time=0.062000ms\nrecv seq=2,time=0.060000ms\n"
        "3 packets transmitted, 3 received, 0.00% packet loss\n"
    )


@pytest.fixture
def tool(tmp_path: Path) -> FakeTool:
    return FakeTool(tmp_path, count=2)


def run(args: Dict[str, Any], fake: Optional[FakeTool] = None) -> ModuleExit:
    if fake is not None:
        fake.save()
        args = dict({"hccn_tool_path": str(fake.path)}, **args)
    return run_module(hccn_info.main, args)


def ok(args: Dict[str, Any], fake: Optional[FakeTool] = None) -> Dict[str, Any]:
    done = run(args, fake)
    assert not done.failed, done.result["msg"]
    return done.result


def failed(args: Dict[str, Any], fake: Optional[FakeTool] = None) -> Dict[str, Any]:
    done = run(args, fake)
    assert done.failed, done.result
    return done.result


# --- the healthy path -------------------------------------------------------------------


def test_healthy_devices(tool: FakeTool) -> None:
    result = ok({"device_count": 2, "require_link_up": True, "require_net_health": True}, tool)
    assert result["changed"] is False
    assert result["devices"] == [
        {
            "device": 0,
            "link": "UP",
            "net_health": "Success",
            "ip": "192.168.100.101",
            "netmask": "255.255.255.0",
            "tls_enabled": False,
            "ping": [],
        },
        {
            "device": 1,
            "link": "UP",
            "net_health": "Success",
            "ip": "192.168.100.102",
            "netmask": "255.255.255.0",
            "tls_enabled": False,
            "ping": [],
        },
    ]
    assert result["summary"] == {
        "total": 2,
        "link_down": [],
        "unhealthy": [],
        "no_ip": [],
        "tls_enabled": [],
        "unreachable": [],
        "problems": [],
    }
    assert tool.calls_by_device() == {
        "0": [
            ["-i", "0", "-link", "-g"],
            ["-i", "0", "-net_health", "-g"],
            ["-i", "0", "-ip", "-g"],
            ["-i", "0", "-tls", "-g"],
        ],
        "1": [
            ["-i", "1", "-link", "-g"],
            ["-i", "1", "-net_health", "-g"],
            ["-i", "1", "-ip", "-g"],
            ["-i", "1", "-tls", "-g"],
        ],
    }


def test_check_mode_runs_the_same_read_only_queries(tool: FakeTool) -> None:
    result = ok({"devices": [1], "_ansible_check_mode": True}, tool)
    assert result["changed"] is False
    assert [d["device"] for d in result["devices"]] == [1]
    assert len(tool.calls()) == 4


def test_devices_discovered_from_hccn_conf(tmp_path: Path) -> None:
    fake = FakeTool(tmp_path, count=8)
    result = ok({"hccn_conf": str(FIXTURES / "hccn_conf_a2.txt")}, fake)
    assert [d["device"] for d in result["devices"]] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert result["devices"][7]["ip"] == "192.168.100.108"
    assert result["summary"]["total"] == 8


def test_tls_false_skips_the_tls_query(tool: FakeTool) -> None:
    result = ok({"devices": [0], "tls": False}, tool)
    assert result["devices"][0]["tls_enabled"] is None
    assert ["-i", "0", "-tls", "-g"] not in tool.calls()


# --- answers that look like errors --------------------------------------------------------


def test_ip_not_preset_is_null_not_a_failure(tool: FakeTool) -> None:
    tool.set(1, "ip", (1, fixture("ip_not_preset.txt")))
    result = ok({"device_count": 2}, tool)
    assert (result["devices"][1]["ip"], result["devices"][1]["netmask"]) == (None, None)
    assert result["summary"]["no_ip"] == [1]


def test_tls_without_certificate_is_null(tool: FakeTool) -> None:
    tool.set(0, "tls", (1, fixture("tls_no_cert.txt")))
    tool.set(1, "tls", (0, fixture("tls_enabled_legacy.txt")))
    result = ok({"device_count": 2}, tool)
    assert [d["tls_enabled"] for d in result["devices"]] == [None, True]
    assert result["summary"]["tls_enabled"] == [1]


# --- checks -------------------------------------------------------------------------------


def test_link_down_is_reported_without_the_check(tool: FakeTool) -> None:
    tool.set(1, "link", (0, fixture("link_down.txt")))
    result = ok({"device_count": 2}, tool)
    assert result["devices"][1]["link"] == "DOWN"
    assert result["summary"]["link_down"] == [1]
    assert result["summary"]["problems"] == ["device 1: link DOWN"]


def test_require_link_up_fails_naming_the_device(tool: FakeTool) -> None:
    tool.set(1, "link", (0, fixture("link_down.txt")))
    result = failed({"device_count": 2, "require_link_up": True}, tool)
    assert result["msg"] == "device 1: link DOWN"
    assert result["problems"] == ["device 1: link DOWN"]
    # The facts are in the failure result too.
    assert [d["link"] for d in result["devices"]] == ["UP", "DOWN"]
    assert result["summary"]["link_down"] == [1]


def test_require_net_health_fails_naming_the_device(tool: FakeTool) -> None:
    tool.set(0, "net_health", (0, fixture("net_health_fault.txt")))
    result = failed({"device_count": 2, "require_net_health": True, "require_link_up": True}, tool)
    assert result["msg"] == "device 0: net health Fault (expected Success)"
    assert result["summary"]["unhealthy"] == [0]


def test_every_problem_is_named(tool: FakeTool) -> None:
    tool.set(0, "link", (0, fixture("link_down.txt")))
    tool.set(1, "net_health", (0, fixture("net_health_receive_timeout.txt")))
    result = failed({"device_count": 2, "require_net_health": True, "require_link_up": True}, tool)
    assert result["problems"] == [
        "device 0: link DOWN",
        "device 1: net health Receive timeout (expected Success)",
    ]
    assert result["msg"] == "device 0: link DOWN; device 1: net health Receive timeout (expected Success)"


# --- ping ---------------------------------------------------------------------------------


def test_ping_list_from_every_device(tool: FakeTool) -> None:
    tool.set_ping(0, "10.0.0.9", (0, ping_ok(0, "10.0.0.9")))
    tool.set_ping(1, "10.0.0.9", (0, ping_ok(1, "10.0.0.9")))
    tool.set_ping(0, "10.0.0.7", (0, ping_ok(0, "10.0.0.7")))
    # Device 1 gets the fake's default answer for 10.0.0.7: three timeouts, exit code 1.
    result = ok({"device_count": 2, "ping": ["10.0.0.9", "10.0.0.7"]}, tool)
    assert result["devices"][0]["ping"] == [
        {"address": "10.0.0.9", "reachable": True, "transmitted": 3, "received": 3, "loss_pct": 0.0},
        {"address": "10.0.0.7", "reachable": True, "transmitted": 3, "received": 3, "loss_pct": 0.0},
    ]
    assert result["devices"][1]["ping"][1] == {
        "address": "10.0.0.7",
        "reachable": False,
        "transmitted": 3,
        "received": 0,
        "loss_pct": 100.0,
    }
    assert result["summary"]["unreachable"] == [{"device": 1, "address": "10.0.0.7"}]
    assert ["-i", "1", "-ping", "-g", "address", "10.0.0.7"] in tool.calls()


def test_require_ping_fails_naming_device_and_peer(tool: FakeTool) -> None:
    tool.set_ping(0, "10.0.0.9", (0, ping_ok(0, "10.0.0.9")))
    tool.set_ping(1, "10.0.0.9", (1, fixture("ping_partial.txt")))
    result = failed({"device_count": 2, "ping": ["10.0.0.9"], "require_ping": True}, tool)
    assert result["msg"] == "device 1: ping 10.0.0.9 failed (3 sent, 2 received)"
    assert result["devices"][1]["ping"][0]["loss_pct"] == 33.33


def test_ping_mapping_pings_only_from_the_named_devices(tool: FakeTool) -> None:
    tool.set_ping(0, "10.0.1.1", (0, ping_ok(0, "10.0.1.1")))
    tool.set_ping(1, "10.0.1.2", (0, ping_ok(1, "10.0.1.2")))
    tool.set_ping(1, "10.0.1.3", (0, ping_ok(1, "10.0.1.3")))
    # Keys arrive as strings from YAML/JSON mappings; one address or a list.
    result = ok({"device_count": 2, "ping": {"0": "10.0.1.1", 1: ["10.0.1.2", "10.0.1.3"]}, "require_ping": True}, tool)
    assert [p["address"] for p in result["devices"][0]["ping"]] == ["10.0.1.1"]
    assert [p["address"] for p in result["devices"][1]["ping"]] == ["10.0.1.2", "10.0.1.3"]
    pings = {device: [c for c in calls if "-ping" in c] for device, calls in tool.calls_by_device().items()}
    assert pings == {
        "0": [["-i", "0", "-ping", "-g", "address", "10.0.1.1"]],
        "1": [["-i", "1", "-ping", "-g", "address", "10.0.1.2"], ["-i", "1", "-ping", "-g", "address", "10.0.1.3"]],
    }


def test_pings_of_different_devices_run_at_the_same_time(tmp_path: Path) -> None:
    fake = FakeTool(tmp_path, count=8)
    for device in range(8):
        fake.set_ping(device, "10.0.9.9", (0, ping_ok(device, "10.0.9.9"), 1.0))
    started = time.monotonic()
    result = ok({"device_count": 8, "status": False, "ping": ["10.0.9.9"], "require_ping": True}, fake)
    elapsed = time.monotonic() - started
    # One after the other: at least 8 s. Together: one second and the processes' start-up.
    assert elapsed < 4, f"8 pings of 1 s took {elapsed:.1f} s"
    assert [d["device"] for d in result["devices"]] == list(range(8))
    assert all(d["ping"][0]["reachable"] for d in result["devices"])


def test_status_false_runs_only_the_pings(tool: FakeTool) -> None:
    tool.set_ping(1, "10.0.1.2", (0, ping_ok(1, "10.0.1.2")))
    # Device 0 would report link DOWN, had it been asked.
    tool.set(0, "link", (0, fixture("link_down.txt")))
    result = ok({"devices": [0, 1], "status": False, "ping": {"1": "10.0.1.2"}, "require_ping": True}, tool)
    assert tool.calls() == [["-i", "1", "-ping", "-g", "address", "10.0.1.2"]]
    assert result["devices"][0] == {
        "device": 0,
        "link": None,
        "net_health": None,
        "ip": None,
        "netmask": None,
        "tls_enabled": None,
        "ping": [],
    }
    assert result["devices"][1]["ping"][0]["reachable"] is True
    assert result["summary"]["link_down"] == result["summary"]["no_ip"] == result["summary"]["problems"] == []


@pytest.mark.parametrize("check", ["require_link_up", "require_net_health"])
def test_status_checks_need_the_status(tool: FakeTool, check: str) -> None:
    assert (
        failed({"devices": [0], "status": False, check: True}, tool)["msg"]
        == f"{check} needs status=true (the status it checks)"
    )
    assert tool.calls() == []


def test_the_first_failing_device_is_reported_whatever_finishes_first(tmp_path: Path) -> None:
    fake = FakeTool(tmp_path, count=3)
    # Device 1 fails late, device 2 at once: device 1 comes first in the list, so it is named.
    fake.set(1, "link", (3, "Get link status failed!\n", 0.5))
    fake.set(2, "link", (4, "Get link status failed!\n"))
    result = failed({"device_count": 3}, fake)
    assert result["msg"] == f"device 1: '{fake.path} -i 1 -link -g' failed (rc=3): Get link status failed!"
    # Every device ran to its end: no query is left running behind the failure.
    assert len(fake.calls_by_device()["0"]) == 4


def test_ping_comma_separated_string(tool: FakeTool) -> None:
    tool.set_ping(0, "10.0.1.1", (0, ping_ok(0, "10.0.1.1")))
    tool.set_ping(0, "10.0.1.2", (0, ping_ok(0, "10.0.1.2")))
    result = ok({"devices": [0], "ping": "10.0.1.1, 10.0.1.2"}, tool)
    assert [p["address"] for p in result["devices"][0]["ping"]] == ["10.0.1.1", "10.0.1.2"]


@pytest.mark.parametrize(
    ("ping", "msg"),
    [
        ({"5": "10.0.0.1"}, "ping: device 5 is not among the queried devices [0, 1]"),
        ({"eth0": "10.0.0.1"}, "ping: 'eth0' is not a device index"),
        (["10.0.0.300"], "ping: '10.0.0.300' is not an IPv4 address"),
        (42, "ping must be a list of addresses or a mapping of device index to addresses"),
    ],
)
def test_ping_parameter_errors(tool: FakeTool, ping: Any, msg: str) -> None:
    assert failed({"device_count": 2, "ping": ping}, tool)["msg"] == msg
    assert tool.calls() == []


def test_require_ping_needs_ping(tool: FakeTool) -> None:
    assert (
        failed({"device_count": 2, "require_ping": True}, tool)["msg"]
        == "require_ping needs ping (the addresses to ping)"
    )


# --- failures -----------------------------------------------------------------------------


def test_failing_command_names_device_command_rc_and_output(tool: FakeTool) -> None:
    tool.set(1, "net_health", (3, "Get device health status failed!\n"))
    result = failed({"device_count": 2}, tool)
    cmd = f"{tool.path} -i 1 -net_health -g"
    assert result["msg"] == f"device 1: '{cmd}' failed (rc=3): Get device health status failed!"
    assert (result["device"], result["cmd"], result["rc"]) == (1, cmd, 3)


def test_failing_ip_query_other_than_not_preset_fails(tool: FakeTool) -> None:
    tool.set(0, "ip", (1, "Command execute failed!\n"))
    result = failed({"devices": [0]}, tool)
    assert result["msg"] == f"device 0: '{tool.path} -i 0 -ip -g' failed (rc=1): Command execute failed!"


def test_failing_ping_without_a_report_fails(tool: FakeTool) -> None:
    tool.set_ping(0, "10.0.0.9", (2, "Get unknown option!\n"))
    result = failed({"devices": [0], "ping": ["10.0.0.9"]}, tool)
    assert result["msg"] == f"device 0: '{tool.path} -i 0 -ping -g address 10.0.0.9' failed (rc=2): Get unknown option!"


def test_unrecognised_output_names_device_command_and_line(tool: FakeTool) -> None:
    tool.set(1, "link", (0, "link status: TESTING\n"))
    result = failed({"device_count": 2}, tool)
    assert result["msg"] == f"device 1: unrecognised output of '{tool.path} -i 1 -link -g': 'link status: TESTING'"


def test_unknown_device_index_fails(tool: FakeTool) -> None:
    result = failed({"devices": [0, 9]}, tool)
    assert result["msg"] == f"device 9: '{tool.path} -i 9 -link -g' failed (rc=1): Get invalid device id."


def test_missing_binary_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "driver" / "tools" / "hccn_tool"
    result = failed({"hccn_tool_path": str(missing), "device_count": 1})
    assert result["msg"] == f"hccn_tool not found or not executable at {missing} (set hccn_tool_path)"


def test_binary_not_in_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = failed({"hccn_tool_path": "hccn_tool_missing_here", "device_count": 1})
    assert result["msg"].startswith("hccn_tool not found: 'hccn_tool_missing_here' is neither in PATH nor in ")
    assert result["msg"].endswith("(set hccn_tool_path)")


def test_missing_hccn_conf_asks_for_devices(tool: FakeTool, tmp_path: Path) -> None:
    conf = tmp_path / "hccn.conf"
    result = failed({"hccn_conf": str(conf)}, tool)
    assert result["msg"].startswith(f"cannot discover the devices from {conf}: ")
    assert result["msg"].endswith("(set devices or device_count)")


def test_hccn_conf_without_addresses(tool: FakeTool, tmp_path: Path) -> None:
    conf = tmp_path / "hccn.conf"
    conf.write_text("netdetect_0=192.168.1.1\n", encoding="utf-8")
    assert (
        failed({"hccn_conf": str(conf)}, tool)["msg"] == f"no address_N= line in {conf} (set devices or device_count)"
    )


def test_empty_devices_fails(tool: FakeTool) -> None:
    assert failed({"devices": []}, tool)["msg"] == "devices is empty: name at least one device index"
    assert tool.calls() == []


def test_duplicate_devices_are_queried_once(tool: FakeTool) -> None:
    result = ok({"devices": [1, 0, 1], "tls": False}, tool)
    assert [d["device"] for d in result["devices"]] == [1, 0]
    assert len(tool.calls()) == 6


def test_devices_and_device_count_are_exclusive(tool: FakeTool) -> None:
    assert "mutually exclusive" in failed({"devices": [0], "device_count": 2}, tool)["msg"]


# --- wired into Ansible -------------------------------------------------------------------


def test_ansible_adhoc_runs_the_module(tool: FakeTool, tmp_path: Path) -> None:
    tool.set(1, "link", (0, fixture("link_down.txt")))
    tool.save()
    result = adhoc_failure("hccn_info", f"hccn_tool_path={tool.path} devices=0,1 require_link_up=true", tmp_path)
    assert result["msg"] == "device 1: link DOWN"
    assert [d["link"] for d in result["devices"]] == ["UP", "DOWN"]
    assert result["devices"][0]["ip"] == "192.168.100.101"
