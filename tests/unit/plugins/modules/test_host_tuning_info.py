# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ascend.vllm.host_tuning_info, run in-process against a fake host root (tests/unit/plugins/fake_host.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from ansible_collections.ascend.vllm.plugins.module_utils import host_tuning
from ansible_collections.ascend.vllm.plugins.modules import host_tuning_info
from tests.unit.plugins.fake_host import SYSCTL_HEADER, FakeHost
from tests.unit.plugins.modules.module_runner import module_failed, module_ok

SYSCTL_FILE = "/etc/sysctl.d/90-ascend-vllm.conf"
MIGRATION_KEY = "kernel.sched_migration_cost_ns"
MIGRATION_FILE = "/sys/kernel/debug/sched/migration_cost_ns"
UNITS = ["ascend-vllm-cpu-governor.service", "ascend-vllm-sched-debugfs.service"]
# What the role passes (roles/host_tuning/tasks/main.yml) with the scenario's keys.
ROLE_ARGS: Dict[str, Any] = {
    "sysctls": {
        "vm.swappiness": 0,
        "kernel.numa_balancing": 0,
        MIGRATION_KEY: 50000,
        "net.ipv4.tcp_keepalive_time": 600,
    },
    "sysctl_file": SYSCTL_FILE,
    "debugfs": {MIGRATION_KEY: MIGRATION_FILE},
    "cpu_governor": "performance",
    "units": UNITS,
}


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    fake = FakeHost(tmp_path)
    monkeypatch.setattr(host_tuning_info, "ROOT", str(tmp_path))
    monkeypatch.setattr(host_tuning, "writable", fake.writable)
    return fake


def simulated_node(host: FakeHost, tuned: bool) -> None:
    """What the Molecule nodes look like: /proc/sys read-only but net.*, a kernel without the
    scheduler sysctl, fake cpufreq and debugfs; ``tuned`` after a converge."""
    host.kernel("6.8.0-49-generic")
    host.systemd()
    host.sysctl("vm.swappiness", "60", writable=False)
    host.sysctl("kernel.numa_balancing", "1", writable=False)
    host.sysctl("net.ipv4.tcp_keepalive_time", "600" if tuned else "7200")
    host.cpufreq(
        {0: "performance", 1: "performance"} if tuned else {0: "powersave", 1: "powersave"}, "performance powersave"
    )
    host.write(MIGRATION_FILE, "50000\n" if tuned else "500000\n")
    if tuned:
        lines = "vm.swappiness=0\nkernel.numa_balancing=0\nnet.ipv4.tcp_keepalive_time=600\n"
        host.write(SYSCTL_FILE, SYSCTL_HEADER + lines)
        for unit in UNITS:
            host.unit(unit, f"# {unit}\n")


def test_a_converged_simulated_node_needs_nothing_but_the_warnings(host: FakeHost) -> None:
    simulated_node(host, tuned=True)
    result = module_ok(host_tuning_info.main, ROLE_ARGS)
    assert result["changed"] is False
    # What the role acts on: nothing differs but the live values of the read-only keys.
    sysctls = {r["key"]: r for r in result["sysctls"]}
    assert [k for k, r in sysctls.items() if r["exists"] and not r["persisted_matches"]] == []
    assert [k for k, r in sysctls.items() if r["writable"] and not r["live_matches"]] == []
    assert [k for k, r in sysctls.items() if r["exists"] and not r["writable"]] == [
        "vm.swappiness",
        "kernel.numa_balancing",
    ]
    assert [r["matches"] for r in result["debugfs"]] == [True]
    assert result["cpufreq"]["to_change"] == []
    assert all(unit["enabled"] and unit["exists"] for unit in result["units"].values())
    assert result["kernel"] == "6.8.0-49-generic" and result["systemd"] is True


def test_a_fresh_simulated_node_differs_everywhere_the_role_writes(host: FakeHost) -> None:
    simulated_node(host, tuned=False)
    result = module_ok(host_tuning_info.main, ROLE_ARGS)
    assert result["sysctl_file"]["exists"] is False
    net = next(r for r in result["sysctls"] if r["key"] == "net.ipv4.tcp_keepalive_time")
    assert (net["live"], net["live_matches"], net["persisted_matches"]) == ("7200", False, False)
    assert result["debugfs"][0]["current"] == "500000"
    assert result["cpufreq"]["to_change"] == ["cpu0", "cpu1"]
    assert not any(unit["exists"] for unit in result["units"].values())


def test_reads_nothing_but_the_root_it_is_given(host: FakeHost) -> None:
    """Pointed at an empty tree, nothing of this machine shows through."""
    result = module_ok(host_tuning_info.main, ROLE_ARGS)
    assert result["kernel"] is None and result["systemd"] is False
    assert not any(r["exists"] for r in result["sysctls"])
    assert result["cpufreq"]["present"] is False and result["cpufreq"]["current"] == {}


def test_check_mode_reads_the_same(host: FakeHost) -> None:
    simulated_node(host, tuned=False)
    assert module_ok(host_tuning_info.main, dict(ROLE_ARGS, _ansible_check_mode=True)) == module_ok(
        host_tuning_info.main, ROLE_ARGS
    )


def test_defaults_describe_the_host_only(host: FakeHost) -> None:
    host.systemd()
    result = module_ok(host_tuning_info.main, {})
    assert (result["sysctls"], result["debugfs"], result["units"]) == ([], [], {})
    assert result["service_manager"] == "systemd"


def test_a_bad_option_fails(host: FakeHost) -> None:
    assert "units" in module_failed(host_tuning_info.main, {"units": {"a": 1}})["msg"]


def test_result_is_what_return_documents(host: FakeHost) -> None:
    simulated_node(host, tuned=True)
    result = module_ok(host_tuning_info.main, ROLE_ARGS)
    documented = yaml.safe_load(host_tuning_info.RETURN)
    assert set(result) - {"changed", "invocation"} == set(documented)
    for name in ("sysctls", "debugfs"):
        for record in result[name]:
            assert set(record) == set(documented[name]["contains"]), name
    assert set(result["cpufreq"]) == set(documented["cpufreq"]["contains"])
    assert set(result["sysctl_file"]) == set(documented["sysctl_file"]["contains"])
    for unit in result["units"].values():
        assert set(unit) == set(documented["units"]["sample"][UNITS[0]])
