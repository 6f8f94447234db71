"""The simulated hccn_tool: query outputs, and ping through an injectable ping executable."""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from ascend_sim import hccn_tool
from ascend_sim import state as st

FAKE_PING = """#!{python}
# Stand-in for iputils ping: answers for the IPs listed in ALIVE, records its argv.
import sys, time
args = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(" ".join(args) + "\\n")
count = int(args[args.index("-c") + 1])
ip = args[-1]
print(f"PING {{ip}} ({{ip}}) 56(84) bytes of data.")
alive = ip in {alive!r}
for seq in range(1, count + 1):
    if alive and not (ip == {flaky!r} and seq == 2):
        print(f"64 bytes from {{ip}}: icmp_seq={{seq}} ttl=64 time=0.0{{seq}}5 ms")
got = sum(1 for s in range(1, count + 1) if alive and not (ip == {flaky!r} and s == 2))
print()
print(f"--- {{ip}} ping statistics ---")
print(f"{{count}} packets transmitted, {{got}} received, {{100 - 100 * got // count}}% packet loss, time 2003ms")
sys.exit(0 if got else 1)
"""


@pytest.fixture
def fake_ping(tmp_path: Path) -> Tuple[str, Path]:
    log = tmp_path / "ping.log"
    path = tmp_path / "ping"
    path.write_text(
        FAKE_PING.format(python=sys.executable, log=str(log), alive=["10.20.1.10", "10.20.1.11"], flaky="10.20.1.11")
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path), log


def hccn(directory: Path, *args: str, ping: Optional[str] = None) -> Tuple[int, str]:
    out = io.StringIO()
    rc = hccn_tool.run(list(args), out, out, directory, ping=ping)
    return rc, out.getvalue()


def calls(log: Path) -> List[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_queries(a3: Path) -> None:
    assert hccn(a3, "-i", "0", "-link", "-g") == (0, "link status: UP\n")
    assert hccn(a3, "-i", "15", "-net_health", "-g") == (0, "net health status: Success\n")
    assert hccn(a3, "-i", "3", "-ip", "-g") == (0, "ipaddr:10.20.0.13\nnetmask:255.255.0.0\n")
    assert hccn(a3, "-i", "3", "-netdetect", "-g") == (0, "netdetect address: 10.20.0.1\n")
    assert hccn(a3, "-i", "3", "-gateway", "-g") == (0, "default gateway:10.20.0.1, Iface:eth3\n")
    assert hccn(a3, "-g", "-tls", "-i", "2") == (
        0,
        "dev_id:2, tls switch[0](0:disable, 1:enable), tls preconfigured[0](0:non-preset, 1:preset), "
        "tls alarm time threshold[60]days\n",
    )


def test_queries_follow_the_state(a2: Path, mutate) -> None:
    def faults(state: dict) -> None:
        state["hccn"][1]["link"] = "DOWN"
        state["hccn"][2]["net_health"] = "Receive timeout"
        state["hccn"][3]["tls"] = True

    mutate(faults)
    assert hccn(a2, "-i", "1", "-link", "-g") == (0, "link status: DOWN\n")
    assert hccn(a2, "-i", "2", "-net_health", "-g") == (0, "net health status: Receive timeout\n")
    assert hccn(a2, "-i", "3", "-tls", "-g")[1].startswith("dev_id:3, tls switch[1](0:disable, 1:enable)")
    mutate(lambda s: s["hccn"][4].update(ip=None))
    assert hccn(a2, "-i", "4", "-ip", "-g") == (1, "Get ipconf failed, because no ip was preset there!\n")


def test_device_out_of_range_and_bad_usage(a2: Path) -> None:
    rc, text = hccn(a2, "-i", "8", "-link", "-g")
    assert rc != 0 and text == "device id [8] is invalid, the valid range is [0, 7].\n"
    rc, text = hccn(a2, "-i", "0", "-link")
    assert rc != 0 and "Usage: hccn_tool -i <device_id> <command> -g" in text
    rc, text = hccn(a2, "-i", "0", "-bogus", "-g")
    assert rc != 0 and text.startswith("Invalid parameter: -bogus\n")
    rc, text = hccn(a2, "-i", "0", "-ping", "-g")
    assert rc != 0 and text.startswith("Invalid parameter: -ping requires 'address <ipv4 address>'.")


def test_no_state_is_a_driver_error(state_dir: Path) -> None:
    rc, text = hccn(state_dir, "-i", "0", "-link", "-g")
    assert rc != 0 and "dsmi init failed" in text


def test_ping_success(a3: Path, fake_ping: Tuple[str, Path]) -> None:
    ping, log = fake_ping
    rc, text = hccn(a3, "-i", "0", "-ping", "-g", "address", "10.20.1.10", ping=ping)
    assert rc == 0
    assert text == (
        "device 0 PING 10.20.1.10\n"
        "recv seq=0,time=0.015000ms\n"
        "recv seq=1,time=0.025000ms\n"
        "recv seq=2,time=0.035000ms\n"
        "3 packets transmitted, 3 received, 0.00% packet loss\n"
    )
    (call,) = calls(log)
    assert call.split()[:2] == ["-c", "3"] and call.split()[-1] == "10.20.1.10"


def test_ping_loss_and_pkt(a3: Path, fake_ping: Tuple[str, Path]) -> None:
    ping, log = fake_ping
    rc, text = hccn(a3, "-i", "4", "-ping", "-g", "address", "10.20.1.11", "pkt", "5", ping=ping)
    assert rc != 0
    lines = text.splitlines()
    assert lines[0] == "device 4 PING 10.20.1.11"
    assert lines[2] == "recv time out seq=1"
    assert len(lines) == 7
    assert lines[-1] == "5 packets transmitted, 4 received, 20.00% packet loss"
    assert calls(log)[0].split()[:2] == ["-c", "5"]


def test_ping_unreachable_peer(a3: Path, fake_ping: Tuple[str, Path]) -> None:
    ping, _ = fake_ping
    rc, text = hccn(a3, "-i", "0", "-ping", "-g", "address", "10.20.9.10", ping=ping)
    assert rc != 0
    assert text.splitlines()[1:] == [
        "recv time out seq=0",
        "recv time out seq=1",
        "recv time out seq=2",
        "3 packets transmitted, 0 received, 100.00% packet loss",
    ]


def test_ping_fails_without_sending_when_link_down_or_fault(
    a3: Path, mutate, fake_ping: Tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ping, log = fake_ping
    monkeypatch.setenv("ASCEND_SIM_PING", ping)  # the environment variable works as well
    mutate(lambda s: s["hccn"][2].update(link="DOWN"))
    rc, text = hccn(a3, "-i", "2", "-ping", "-g", "address", "10.20.1.10")
    assert rc != 0 and "0 received, 100.00% packet loss" in text
    assert calls(log) == []
    mutate(lambda s: s["faults"]["unreachable"].append("10.20.1.10"))
    rc, text = hccn(a3, "-i", "0", "-ping", "-g", "address", "10.20.1.10")
    assert rc != 0 and "recv time out seq=0" in text
    assert calls(log) == []
    rc, _ = hccn(a3, "-i", "0", "-ping", "-g", "address", "10.20.1.11", "pkt", "1")
    assert rc == 0 and len(calls(log)) == 1  # other peers still go through ping


@pytest.mark.skipif(shutil.which("ping") is None, reason="iputils-ping not installed")
def test_real_ping_of_loopback(a2: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("ping may need privileges")
    rc, text = hccn(a2, "-i", "0", "-ping", "-g", "address", "127.0.0.1", "pkt", "2")
    assert rc == 0, text
    assert text.endswith("2 packets transmitted, 2 received, 0.00% packet loss\n")


def test_round_trip_through_the_collection_parser(a3: Path, mutate, fake_ping: Tuple[str, Path]) -> None:
    parser = pytest.importorskip("ansible_collections.ascend.vllm.plugins.module_utils.hccn")
    ping, _ = fake_ping
    mutate(lambda s: s["hccn"][5].update(link="DOWN", net_health="Fault", tls=True))
    for device in (0, 5):
        dev = st.load_state(a3)["hccn"][device]
        assert parser.parse_link(hccn(a3, "-i", str(device), "-link", "-g")[1]) == dev["link"]
        assert parser.parse_net_health(hccn(a3, "-i", str(device), "-net_health", "-g")[1]) == dev["net_health"]
        assert parser.parse_ip(hccn(a3, "-i", str(device), "-ip", "-g")[1]) == (dev["ip"], dev["netmask"])
        assert parser.parse_tls(hccn(a3, "-i", str(device), "-tls", "-g")[1]) is dev["tls"]
    ok = parser.parse_ping(hccn(a3, "-i", "0", "-ping", "-g", "address", "10.20.1.10", ping=ping)[1])
    assert ok == {"address": "10.20.1.10", "reachable": True, "transmitted": 3, "received": 3, "loss_pct": 0.0}
    bad = parser.parse_ping(hccn(a3, "-i", "5", "-ping", "-g", "address", "10.20.1.10", ping=ping)[1])
    assert bad["reachable"] is False and bad["received"] == 0 and bad["loss_pct"] == 100.0
    conf = st.render_hccn_conf(st.load_state(a3))
    assert parser.parse_hccn_conf(conf) == list(range(16))
