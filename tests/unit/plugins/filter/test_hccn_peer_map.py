from __future__ import annotations

from ansible_collections.ascend.vllm.plugins.filter.hccn_peer_map import hccn_peer_map


def _devices(ips: list[str | None]) -> list[dict]:
    return [{"device": i, "ip": ip} for i, ip in enumerate(ips)]


def test_device_n_pings_device_n_of_every_peer() -> None:
    by_host = {
        "prefill-1": _devices(["10.20.0.10", "10.20.0.11"]),
        "decode-1": _devices(["10.20.1.10", "10.20.1.11"]),
        "decode-2": _devices(["10.20.2.10", "10.20.2.11"]),
    }
    assert hccn_peer_map(by_host, "prefill-1") == {
        0: ["10.20.1.10", "10.20.2.10"],
        1: ["10.20.1.11", "10.20.2.11"],
    }
    assert hccn_peer_map(by_host, "decode-2") == {0: ["10.20.1.10", "10.20.0.10"], 1: ["10.20.1.11", "10.20.0.11"]}


def test_peer_devices_without_address_or_missing_are_left_out() -> None:
    by_host = {
        "a3": _devices(["10.20.0.10", "10.20.0.11", "10.20.0.12"]),
        "a2": _devices([None, "10.20.1.11"]),
    }
    assert hccn_peer_map(by_host, "a3") == {1: ["10.20.1.11"]}
    assert hccn_peer_map(by_host, "a2") == {0: ["10.20.0.10"], 1: ["10.20.0.11"]}


def test_single_host_has_nothing_to_ping() -> None:
    assert hccn_peer_map({"only": _devices(["10.20.0.10"])}, "only") == {}
