"""The hccn_tool parsers and checks over fixtures written from the tool's real output formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.hccn import (
    NET_HEALTH_VALUES,
    HccnCommandError,
    HccnParseError,
    check_ip,
    check_link,
    check_net_health,
    check_ping,
    parse_hccn_conf,
    parse_ip,
    parse_link,
    parse_net_health,
    parse_ping,
    parse_tls,
    query_device,
    summarize,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hccn"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# --- link -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "state"), [("link_up.txt", "UP"), ("link_down.txt", "DOWN")])
def test_parse_link(name: str, state: str) -> None:
    assert parse_link(fixture(name)) == state


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("link status: FLAPPING\n", "link status: FLAPPING"),
        ("Get invalid device id.\n", "Get invalid device id."),
        ("", ""),
    ],
)
def test_parse_link_rejects(text: str, line: str) -> None:
    with pytest.raises(HccnParseError) as exc:
        parse_link(text)
    assert exc.value.line == line
    assert exc.value.what == "link"
    assert repr(line) in str(exc.value)


# --- net health -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("net_health_success.txt", "Success"),
        ("net_health_fault.txt", "Fault"),
        ("net_health_receive_timeout.txt", "Receive timeout"),
    ],
)
def test_parse_net_health(name: str, status: str) -> None:
    assert parse_net_health(fixture(name)) == status


@pytest.mark.parametrize("status", NET_HEALTH_VALUES)
def test_parse_net_health_every_driver_value(status: str) -> None:
    assert parse_net_health(f"net health status: {status}\n") == status


@pytest.mark.parametrize("text", ["net health status:\n", "link status: UP\n"])
def test_parse_net_health_rejects(text: str) -> None:
    with pytest.raises(HccnParseError) as exc:
        parse_net_health(text)
    assert exc.value.line == text.strip()


# --- ip ---------------------------------------------------------------------------------


def test_parse_ip() -> None:
    assert parse_ip(fixture("ip.txt")) == ("192.168.100.103", "255.255.255.0")


def test_parse_ip_not_preset_is_null() -> None:
    assert parse_ip(fixture("ip_not_preset.txt")) == (None, None)


def test_parse_ip_takes_the_first_pair() -> None:
    text = "ipaddr:10.0.0.11\nnetmask:255.255.0.0\nipaddr:10.1.0.11\nnetmask:255.255.255.0\n"
    assert parse_ip(text) == ("10.0.0.11", "255.255.0.0")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("ipaddr:192.168.100.300\nnetmask:255.255.255.0\n", "ipaddr:192.168.100.300"),
        ("ipaddr:192.168.100.3\n", "ipaddr:192.168.100.3"),
        ("Command execute failed!\n", "Command execute failed!"),
    ],
)
def test_parse_ip_rejects(text: str, line: str) -> None:
    with pytest.raises(HccnParseError) as exc:
        parse_ip(text)
    assert exc.value.line == line


# --- tls --------------------------------------------------------------------------------


def test_parse_tls_disabled_with_certificates() -> None:
    assert parse_tls(fixture("tls_disabled.txt")) is False


def test_parse_tls_enabled_legacy_format() -> None:
    assert parse_tls(fixture("tls_enabled_legacy.txt")) is True


def test_parse_tls_newer_device_prefix() -> None:
    text = (
        "device 2, tls switch[1](0:disable, 1:enable), tls preconfigured[0](0:non-preset, 1:preset),"
        " tls alarm time threshold[30]days\n"
    )
    assert parse_tls(text) is True


def test_parse_tls_without_certificate_is_null() -> None:
    assert parse_tls(fixture("tls_no_cert.txt")) is None


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("dev_id:0, tls switch[2](0:disable, 1:enable)\n", "dev_id:0, tls switch[2](0:disable, 1:enable)"),
        ("dev_id:0, [pub cert] info:\n", "dev_id:0, [pub cert] info:"),
    ],
)
def test_parse_tls_rejects(text: str, line: str) -> None:
    with pytest.raises(HccnParseError) as exc:
        parse_tls(text)
    assert exc.value.line == line


# --- ping -------------------------------------------------------------------------------


def test_parse_ping_all_received() -> None:
    assert parse_ping(fixture("ping_ok.txt")) == {
        "address": "192.168.100.201",
        "reachable": True,
        "transmitted": 3,
        "received": 3,
        "loss_pct": 0.0,
    }


def test_parse_ping_timeout() -> None:
    assert parse_ping(fixture("ping_timeout.txt")) == {
        "address": "10.0.0.7",
        "reachable": False,
        "transmitted": 3,
        "received": 0,
        "loss_pct": 100.0,
    }


def test_parse_ping_partial_loss_is_not_reachable() -> None:
    result = parse_ping(fixture("ping_partial.txt"))
    assert result["reachable"] is False
    assert (result["transmitted"], result["received"], result["loss_pct"]) == (3, 2, 33.33)


def test_parse_ping_without_summary_counts_packet_lines() -> None:
    text = "device 1 PING 10.0.0.9\nrecv seq=0,time=0.1ms\nDestination Host Unreachable\n"
    assert parse_ping(text) == {
        "address": "10.0.0.9",
        "reachable": False,
        "transmitted": 2,
        "received": 1,
        "loss_pct": 50.0,
    }


def test_parse_ping_newer_header_and_colon_seq() -> None:
    text = (
        "device 0 dev eth0 PING 10.0.0.1 to 10.0.0.2\n"
        "recv seq:0,time=0.2ms\n"
        "recv time out seq:1\n"
        "2 packets transmitted, 1 received, 50.00% packet loss\n"
    )
    result = parse_ping(text)
    assert (result["address"], result["transmitted"], result["received"]) == ("10.0.0.2", 2, 1)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("device 0 PING 10.0.0.2\n", "device 0 PING 10.0.0.2"),
        ("Get unknown option!\n", "Get unknown option!"),
        ("", ""),
    ],
)
def test_parse_ping_rejects(text: str, line: str) -> None:
    with pytest.raises(HccnParseError) as exc:
        parse_ping(text)
    assert exc.value.line == line


# --- /etc/hccn.conf ---------------------------------------------------------------------


def test_parse_hccn_conf() -> None:
    assert parse_hccn_conf(fixture("hccn_conf_a2.txt")) == [0, 1, 2, 3, 4, 5, 6, 7]


def test_parse_hccn_conf_sorts_and_skips_empty_addresses() -> None:
    text = "address_10=10.0.0.10\naddress_2=10.0.0.2\naddress_3=\nnetmask_4=255.0.0.0\n# address_5=1.1.1.1\n"
    assert parse_hccn_conf(text) == [2, 10]


# --- checks and summary -----------------------------------------------------------------


def _device(device: int, **overrides: object) -> dict:
    facts = {
        "device": device,
        "link": "UP",
        "net_health": "Success",
        "ip": f"10.0.0.{device + 1}",
        "netmask": "255.255.255.0",
        "tls_enabled": False,
        "ping": [],
    }
    facts.update(overrides)
    return facts


def _ping(address: str, received: int, transmitted: int = 3) -> dict:
    return {
        "address": address,
        "reachable": received == transmitted,
        "transmitted": transmitted,
        "received": received,
        "loss_pct": round(100.0 * (transmitted - received) / transmitted, 2),
    }


def test_checks_on_healthy_devices_are_empty() -> None:
    devices = [_device(0, ping=[_ping("10.0.1.1", 3)]), _device(1)]
    assert check_link(devices) == []
    assert check_net_health(devices) == []
    assert check_ping(devices) == []


def test_checks_name_each_offending_device() -> None:
    devices = [
        _device(0),
        _device(3, link="DOWN"),
        _device(4, net_health="Receive timeout"),
        _device(5, ping=[_ping("10.0.0.6", 3), _ping("10.0.0.7", 0)]),
    ]
    assert check_link(devices) == ["device 3: link DOWN"]
    assert check_net_health(devices) == ["device 4: net health Receive timeout (expected Success)"]
    assert check_ping(devices) == ["device 5: ping 10.0.0.7 failed (3 sent, 0 received)"]


def test_summarize() -> None:
    devices = [
        _device(0, tls_enabled=True),
        _device(1, link="DOWN", net_health="Fault", ip=None, netmask=None),
        _device(2, ping=[_ping("10.0.0.9", 2)]),
    ]
    assert summarize(devices) == {
        "total": 3,
        "link_down": [1],
        "unhealthy": [1],
        "no_ip": [1],
        "tls_enabled": [0],
        "unreachable": [{"device": 2, "address": "10.0.0.9"}],
        "problems": [
            "device 1: link DOWN",
            "device 1: net health Fault (expected Success)",
            "device 2: ping 10.0.0.9 failed (3 sent, 2 received)",
        ],
    }


# --- queries through a run_command ----------------------------------------------------------


class FakeRun:
    """A module's run_command answering from a table of argv tails; logs every argv."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        return self.answers[tuple(argv[1:])]


def test_query_device_reads_status_and_pings() -> None:
    run = FakeRun(
        {
            ("-i", "2", "-link", "-g"): (0, fixture("link_up.txt"), ""),
            ("-i", "2", "-net_health", "-g"): (0, fixture("net_health_success.txt"), ""),
            ("-i", "2", "-ip", "-g"): (1, fixture("ip_not_preset.txt"), ""),
            ("-i", "2", "-ping", "-g", "address", "10.0.0.9"): (1, fixture("ping_partial.txt"), ""),
        }
    )
    device = query_device(run, "/t/hccn_tool", 2, tls=False, addresses=["10.0.0.9"])
    assert device == {
        "device": 2,
        "link": "UP",
        "net_health": "Success",
        "ip": None,
        "netmask": None,
        "tls_enabled": None,
        "ping": [{"address": "10.0.0.9", "reachable": False, "transmitted": 3, "received": 2, "loss_pct": 33.33}],
    }
    assert check_ip([device]) == ["device 2: no IP address"]
    assert run.calls[0] == ["/t/hccn_tool", "-i", "2", "-link", "-g"]


def test_query_device_errors_name_device_command_and_output() -> None:
    run = FakeRun({("-i", "1", "-link", "-g"): (3, "", "Get link status failed!\n")})
    with pytest.raises(HccnCommandError) as exc:
        query_device(run, "/t/hccn_tool", 1)
    assert str(exc.value) == "device 1: '/t/hccn_tool -i 1 -link -g' failed (rc=3): Get link status failed!"
    assert exc.value.details == {
        "device": 1,
        "cmd": "/t/hccn_tool -i 1 -link -g",
        "rc": 3,
        "stdout": "",
        "stderr": "Get link status failed!\n",
    }
    run = FakeRun({("-i", "1", "-link", "-g"): (0, "link status: TESTING\n", "")})
    with pytest.raises(HccnCommandError, match=r"^device 1: unrecognised output of '/t/hccn_tool -i 1 -link -g': "):
        query_device(run, "/t/hccn_tool", 1)


def test_status_less_devices_are_not_judged() -> None:
    device = {"device": 0, "link": None, "net_health": None, "ip": None, "netmask": None, "tls_enabled": None}
    assert check_link([dict(device, ping=[])]) == check_net_health([dict(device, ping=[])]) == []
    assert check_ip([dict(device, ping=[])]) == []
    assert summarize([dict(device, ping=[])])["no_ip"] == []
