# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What host_tuning reads of a host, and how it compares it, on realistic hosts.

The comparisons decide which keys the role hands to ansible.posix.sysctl at all, so some tests
hold them against that module's own code: a key said to match that the module would still
change would never be tuned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict

import pytest

from ansible_collections.ansible.posix.plugins.modules.sysctl import SysctlModule
from ansible_collections.ascend.vllm.plugins.module_utils import host_tuning
from ansible_collections.ascend.vllm.plugins.module_utils.host_tuning import (
    command_output,
    file_mode,
    governors_to_change,
    inspect,
    is_systemd,
    live_matches,
    parse_sysctl_file,
    sysctl_path,
    sysctl_value,
)
from tests.unit.plugins.fake_host import SYSCTL_HEADER, FakeHost

SYSCTL_FILE = "/etc/sysctl.d/90-ascend-vllm.conf"
MIGRATION_KEY = "kernel.sched_migration_cost_ns"
MIGRATION_FILE = "/sys/kernel/debug/sched/migration_cost_ns"
WANTED = {"vm.swappiness": 0, "kernel.numa_balancing": 0, MIGRATION_KEY: 50000}
GOVERNOR_UNIT = "ascend-vllm-cpu-governor.service"
DEBUGFS_UNIT = "ascend-vllm-sched-debugfs.service"

# A sysctl.d file as hosts have them: the role's header, an operator's comments (both styles),
# blank lines, other keys, spacing around "=", a value of several words, a key set twice (the
# last line wins), and a line that is not an assignment.
HAND_EDITED = (
    SYSCTL_HEADER + "\n"
    "; tuned by hand for the 2025 benchmark\n"
    "vm.swappiness = 10\n"
    "net.core.somaxconn=4096\n"
    "   # indented comment = not a key\n"
    "net.ipv4.tcp_rmem =\t4096 131072   6291456\n"
    "kernel.numa_balancing=1\n"
    "kernel.numa_balancing = 0\n"
    "this line is no assignment\n"
)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    fake = FakeHost(tmp_path)
    monkeypatch.setattr(host_tuning, "writable", fake.writable)
    return fake


def look(host: FakeHost, **kwargs: Any) -> Dict[str, Any]:
    args: Dict[str, Any] = dict(sysctls=WANTED, sysctl_file=SYSCTL_FILE, debugfs={MIGRATION_KEY: MIGRATION_FILE})
    args.update(cpu_governor="performance", units=[GOVERNOR_UNIT, DEBUGFS_UNIT])
    args.update(kwargs)
    return inspect(str(host.root), **args)


def by_key(records: Any) -> Dict[str, Dict[str, Any]]:
    return {record["key"]: record for record in records}


# --- the comparisons, against ansible.posix.sysctl's own --------------------------------------


@pytest.mark.parametrize(
    "given",
    ["0", "1", "50000", "yes", "No", "ON", "off", "True", "false", "t", "F", " 600 ", "4096\t131072 6291456", "0.5"],
)
def test_sysctl_value_is_what_ansible_posix_sysctl_writes(given: str) -> None:
    # The role passes every value through "| string" (Jinja renders True as "True").
    assert sysctl_value(given) == SysctlModule._parse_value(None, given)  # type: ignore[arg-type]


@pytest.mark.parametrize("given, expected", [(0, "0"), (50000, "50000"), (True, "1"), (False, "0"), (0.5, "0.5")])
def test_sysctl_value_of_yaml_values(given: Any, expected: str) -> None:
    assert sysctl_value(given) == expected


def test_sysctl_file_is_read_as_ansible_posix_sysctl_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "90-ascend-vllm.conf"
    path.write_text(HAND_EDITED, encoding="utf-8")
    module = SysctlModule.__new__(SysctlModule)  # its file reader only, without running it
    module.sysctl_file, module.file_lines, module.file_values = str(path), [], {}
    module.read_sysctl_file()
    assert parse_sysctl_file(HAND_EDITED) == module.file_values
    assert parse_sysctl_file(HAND_EDITED) == {
        "vm.swappiness": "10",
        "net.core.somaxconn": "4096",
        "net.ipv4.tcp_rmem": "4096 131072   6291456",
        "kernel.numa_balancing": "0",
    }


def test_sysctl_file_of_only_comments_sets_nothing() -> None:
    assert parse_sysctl_file(SYSCTL_HEADER) == {}
    assert parse_sysctl_file("") == {}


@pytest.mark.parametrize(
    "live, wanted",
    [
        ("0\n", "0"),
        ("60\n", "0"),
        ("4096\t131072\t6291456\n", "4096 131072 6291456"),
        ("4096\t131072\t6291456\n", "4096 131072"),
        ("", "0"),
        ("600\n", "600"),
    ],
)
def test_live_values_compare_as_ansible_posix_sysctl_compares_them(live: str, wanted: str) -> None:
    assert live_matches(live, wanted) is SysctlModule._values_is_equal(None, live, wanted)  # type: ignore[arg-type]


def test_an_unreadable_live_value_never_matches() -> None:
    assert live_matches(None, "0") is False


def test_paths_and_shell_like_reads() -> None:
    assert sysctl_path("net.ipv4.tcp_keepalive_time") == "/proc/sys/net/ipv4/tcp_keepalive_time"
    assert command_output("500000\n") == "500000"
    assert command_output("a b\n\n") == "a b"
    assert command_output(None) is None
    assert file_mode(0o100644) == "0644"
    assert file_mode(0o104755) == "4755"


def test_governors_to_change_by_cpu_number() -> None:
    current = {"cpu10": "powersave", "cpu2": "performance", "cpu1": "schedutil", "cpu0": None, "cpu11": "performance"}
    assert governors_to_change(current, "performance") == ["cpu0", "cpu1", "cpu10"]
    assert governors_to_change({}, "performance") == []


# --- inspecting a host ---------------------------------------------------------------------------


def test_a_tuned_kunpeng_host_matches_everywhere(host: FakeHost) -> None:
    """An Atlas 800 A3 on openEuler 22.03 (Linux 5.10: the scheduler key is still a sysctl)."""
    host.kernel("5.10.0-182.0.0.95.oe2203sp3.aarch64")
    host.systemd()
    for key, value in WANTED.items():
        host.sysctl(key, str(value))
    host.write(SYSCTL_FILE, SYSCTL_HEADER + "".join(f"{k}={v}\n" for k, v in WANTED.items()))
    host.cpufreq({cpu: "performance" for cpu in range(12)})
    governor_unit = host.unit(GOVERNOR_UNIT, "[Unit]\nDescription=governor\n")

    found = look(host)

    assert found["kernel"] == "5.10.0-182.0.0.95.oe2203sp3.aarch64"
    assert (found["systemd"], found["service_manager"]) == (True, "systemd")
    assert found["sysctl_file"] == {"path": SYSCTL_FILE, "exists": True}
    for record in found["sysctls"]:
        assert record["exists"] and record["writable"], record
        assert record["live_matches"] and record["persisted_matches"], record
    assert [r["key"] for r in found["sysctls"]] == list(WANTED)
    # The scheduler key is read in debugfs too; the role looks there only when the sysctl is absent.
    assert [(r["key"], r["exists"]) for r in found["debugfs"]] == [(MIGRATION_KEY, False)]
    cpufreq = found["cpufreq"]
    assert cpufreq["present"] and cpufreq["writable"] and "performance" in cpufreq["governors"]
    assert list(cpufreq["current"]) == [f"cpu{n}" for n in range(12)]
    assert cpufreq["to_change"] == []
    unit = found["units"][GOVERNOR_UNIT]
    assert unit["checksum"] == hashlib.sha1(governor_unit.read_bytes()).hexdigest()
    assert (unit["exists"], unit["enabled"], unit["mode"], unit["owner"]) == (True, True, "0644", "root")
    assert found["units"][DEBUGFS_UNIT] == {
        "path": f"/etc/systemd/system/{DEBUGFS_UNIT}",
        "exists": False,
        "enabled": False,
        "checksum": None,
        "mode": None,
        "owner": None,
        "group": None,
    }


def test_a_fresh_host_differs_where_the_role_must_act(host: FakeHost) -> None:
    """Ubuntu 22.04 (Linux 5.15): no sysctl file yet, the kernel's defaults, the scheduler key
    in debugfs at its default, every CPU at schedutil."""
    host.kernel("5.15.0-125-generic")
    host.systemd()
    host.sysctl("vm.swappiness", "60")
    host.sysctl("kernel.numa_balancing", "1")
    host.write(MIGRATION_FILE, "500000\n")
    host.cpufreq({cpu: "schedutil" for cpu in range(4)})

    found = look(host)

    assert found["sysctl_file"]["exists"] is False
    sysctls = by_key(found["sysctls"])
    assert sysctls["vm.swappiness"] == {
        "key": "vm.swappiness",
        "value": "0",
        "path": "/proc/sys/vm/swappiness",
        "exists": True,
        "writable": True,
        "live": "60",
        "live_matches": False,
        "persisted": None,
        "persisted_matches": False,
    }
    assert sysctls[MIGRATION_KEY]["exists"] is False
    assert found["debugfs"] == [
        {
            "key": MIGRATION_KEY,
            "value": "50000",
            "path": MIGRATION_FILE,
            "exists": True,
            "writable": True,
            "current": "500000",
            "matches": False,
        }
    ]
    assert found["cpufreq"]["to_change"] == ["cpu0", "cpu1", "cpu2", "cpu3"]
    assert not found["units"][GOVERNOR_UNIT]["exists"]


def test_a_locked_down_container_like_the_simulated_nodes(host: FakeHost) -> None:
    """/proc/sys read-only but net.*, the file already persisting the keys, no cpufreq, no
    debugfs, a kernel without CONFIG_NUMA_BALANCING."""
    host.kernel("6.8.0-49-generic")
    host.systemd()
    host.sysctl("vm.swappiness", "60", writable=False)
    host.sysctl("net.ipv4.tcp_keepalive_time", "600")
    host.write(SYSCTL_FILE, SYSCTL_HEADER + "vm.swappiness=0\nnet.ipv4.tcp_keepalive_time=600\n")
    host.cpus_without_cpufreq(2)
    wanted = dict(WANTED, **{"net.ipv4.tcp_keepalive_time": 600})

    found = look(host, sysctls=wanted)

    sysctls = by_key(found["sysctls"])
    swappiness = sysctls["vm.swappiness"]
    assert (swappiness["exists"], swappiness["writable"], swappiness["live"]) == (True, False, "60")
    assert (swappiness["live_matches"], swappiness["persisted_matches"]) == (False, True)
    assert sysctls["kernel.numa_balancing"]["exists"] is False
    assert sysctls["kernel.numa_balancing"]["persisted"] is None
    net = sysctls["net.ipv4.tcp_keepalive_time"]
    assert net["writable"] and net["live_matches"] and net["persisted_matches"]
    assert found["debugfs"][0]["exists"] is False and found["debugfs"][0]["current"] is None
    assert found["cpufreq"] == {
        "path": "/sys/devices/system/cpu/cpu0/cpufreq",
        "present": False,
        "writable": False,
        "governors": [],
        "current": {},
        "to_change": [],
    }


def test_persisted_values_come_from_the_last_line_of_each_key(host: FakeHost) -> None:
    host.sysctl("vm.swappiness", "10")
    host.sysctl("kernel.numa_balancing", "0")
    host.write(SYSCTL_FILE, HAND_EDITED)
    sysctls = by_key(look(host)["sysctls"])
    assert (sysctls["vm.swappiness"]["persisted"], sysctls["vm.swappiness"]["persisted_matches"]) == ("10", False)
    assert sysctls["vm.swappiness"]["live_matches"] is False
    numa = sysctls["kernel.numa_balancing"]
    assert (numa["persisted"], numa["persisted_matches"], numa["live_matches"]) == ("0", True, True)


def test_boolean_words_compare_as_the_sysctl_module_writes_them(host: FakeHost) -> None:
    host.sysctl("net.ipv4.ip_forward", "1")
    host.write(SYSCTL_FILE, "net.ipv4.ip_forward=1\n")
    (record,) = look(host, sysctls={"net.ipv4.ip_forward": "yes"})["sysctls"]
    assert (record["value"], record["live_matches"], record["persisted_matches"]) == ("1", True, True)


def test_multi_word_values_match_whatever_the_spacing(host: FakeHost) -> None:
    host.write("/proc/sys/net/ipv4/tcp_rmem", "4096\t131072\t6291456\n")
    host.write(SYSCTL_FILE, "net.ipv4.tcp_rmem = 4096 131072 6291456\n")
    (record,) = look(host, sysctls={"net.ipv4.tcp_rmem": "4096 131072 6291456"})["sysctls"]
    assert record["live"] == "4096\t131072\t6291456"
    assert record["live_matches"] and record["persisted_matches"]


def test_no_sysctl_file_given_persists_nothing(host: FakeHost) -> None:
    host.sysctl("vm.swappiness", "0")
    found = look(host, sysctls={"vm.swappiness": 0}, sysctl_file=None)
    assert found["sysctl_file"] == {"path": None, "exists": False}
    assert found["sysctls"][0]["persisted"] is None and not found["sysctls"][0]["persisted_matches"]


def test_a_sysctl_file_that_is_a_directory_exists_but_persists_nothing(host: FakeHost) -> None:
    host.path(SYSCTL_FILE).mkdir(parents=True)
    found = look(host, sysctls={"vm.swappiness": 0})
    assert found["sysctl_file"]["exists"] is True
    assert found["sysctls"][0]["persisted"] is None


def test_debugfs_read_only_or_unreadable(host: FakeHost) -> None:
    host.write(MIGRATION_FILE, "50000\n", writable=False)
    (record,) = look(host)["debugfs"]
    assert (record["exists"], record["writable"], record["matches"]) == (True, False, True)
    # Lockdown: the file is there but reading it is refused; the value then matches nothing.
    host.path(MIGRATION_FILE).unlink()
    host.path(MIGRATION_FILE).mkdir()
    (record,) = look(host)["debugfs"]
    assert (record["exists"], record["current"], record["matches"]) == (True, None, False)


def test_debugfs_only_for_wanted_keys(host: FakeHost) -> None:
    host.write(MIGRATION_FILE, "500000\n")
    assert look(host, sysctls={"vm.swappiness": 0})["debugfs"] == []
    assert look(host, debugfs={})["debugfs"] == []


@pytest.mark.parametrize(
    "offered, writable",
    [("powersave", True), ("performance powersave", False), (None, True)],
    ids=["governor-not-offered", "read-only", "no-available-governors-file"],
)
def test_cpufreq_that_cannot_take_the_governor(host: FakeHost, offered: Any, writable: bool) -> None:
    host.cpufreq({0: "powersave", 1: "powersave"}, offered=offered, writable=writable)
    cpufreq = look(host)["cpufreq"]
    assert cpufreq["present"] is True
    assert cpufreq["writable"] is writable
    assert cpufreq["governors"] == (offered or "").split()
    assert cpufreq["to_change"] == ["cpu0", "cpu1"]


def test_cpufreq_without_a_wanted_governor_changes_no_cpu(host: FakeHost) -> None:
    host.cpufreq({0: "powersave"})
    cpufreq = look(host, cpu_governor=None)["cpufreq"]
    assert cpufreq["current"] == {"cpu0": "powersave"} and cpufreq["to_change"] == []


def test_only_cpus_with_cpufreq_are_listed(host: FakeHost) -> None:
    """Offline or hot-plugged CPUs without cpufreq, and cpufreq's own directories, are left out,
    as the role's setter leaves them out."""
    host.cpufreq({0: "performance", 1: "performance"})
    host.cpus_without_cpufreq(4)
    host.path("/sys/devices/system/cpu/cpufreq/scaling_governor").parent.mkdir(parents=True, exist_ok=True)
    assert list(look(host)["cpufreq"]["current"]) == ["cpu0", "cpu1"]


def test_units_enabled_by_wants_or_requires_links(host: FakeHost) -> None:
    host.unit(GOVERNOR_UNIT, "x\n", targets=("graphical",))
    host.unit(DEBUGFS_UNIT, "y\n", enabled=False)
    units = look(host)["units"]
    assert units[GOVERNOR_UNIT]["enabled"] is True
    assert units[DEBUGFS_UNIT]["enabled"] is False and units[DEBUGFS_UNIT]["exists"] is True
    requires = host.path(f"/etc/systemd/system/multi-user.target.requires/{DEBUGFS_UNIT}")
    requires.parent.mkdir(parents=True)
    requires.symlink_to(f"/etc/systemd/system/{DEBUGFS_UNIT}")
    assert look(host)["units"][DEBUGFS_UNIT]["enabled"] is True


def test_unit_mode_is_reported_as_the_template_task_takes_it(host: FakeHost) -> None:
    host.unit(GOVERNOR_UNIT, "x\n").chmod(0o600)
    assert look(host)["units"][GOVERNOR_UNIT]["mode"] == "0600"


def test_without_systemd_the_service_manager_is_pid_1(host: FakeHost) -> None:
    host.write("/proc/1/comm", "tini\n", writable=False)
    found = look(host)
    assert (found["systemd"], found["service_manager"]) == (False, "tini")


@pytest.mark.parametrize(
    "pid1, booted, expected",
    [
        ("systemd", True, True),
        ("systemd", False, True),  # systemctl enable works on the files without the runtime directory
        ("init", True, True),  # /sbin/init as a link to systemd
        (None, True, True),
        ("init", False, False),  # sysvinit
        ("tini", True, False),  # a container's init beside the host's /run: not ours to enable units for
        ("bash", True, False),
        (None, False, False),
    ],
)
def test_systemd_is_pid_1_or_booted_under_an_anonymous_init(pid1: Any, booted: bool, expected: bool) -> None:
    assert is_systemd(pid1, booted) is expected


def test_an_empty_root_reports_nothing_found(host: FakeHost) -> None:
    found = look(host)
    assert (found["kernel"], found["systemd"], found["service_manager"]) == (None, False, None)
    assert [r["exists"] for r in found["sysctls"]] == [False, False, False]
