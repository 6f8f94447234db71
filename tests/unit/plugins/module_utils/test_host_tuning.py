# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What host_tuning reads of a host, how it compares it, and what the role makes of it (the
findings its tasks act on, the warnings it shows), on realistic hosts.

The comparisons decide which keys the role hands to ansible.posix.sysctl at all, so some tests
hold them against that module's own code: a key said to match that the module would still
change would never be tuned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ansible_collections.ansible.posix.plugins.modules.sysctl import SysctlModule
from ansible_collections.ascend.vllm.plugins.filter.host_tuning_findings import FilterModule as FindingsFilter
from ansible_collections.ascend.vllm.plugins.filter.host_tuning_warnings import FilterModule as WarningsFilter
from ansible_collections.ascend.vllm.plugins.module_utils import host_tuning
from ansible_collections.ascend.vllm.plugins.module_utils.host_tuning import (
    command_output,
    file_mode,
    findings,
    governors_to_change,
    inspect,
    is_systemd,
    live_matches,
    parse_sysctl_file,
    sysctl_path,
    sysctl_value,
    tuning_warnings,
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


# --- what the role makes of it: findings and warnings ---------------------------------------------
# The inspections below come from inspect() on fake hosts; the registered results have the shapes
# ansible-core 2.21 gives the role's loops (captured from ansible.posix.sysctl 2.2.2 and command
# loops with the role's failed_when): a refusal let through is "failed: false" with
# failed_when_result and keeps the module's msg (sysctl) or rc and stderr (command); an item the
# loop's when skipped has skip_reason and no msg or rc.

KERNEL_6_8 = "6.8.0-49-generic"
READ_ONLY_TAIL = (
    " is read-only here (a container, or a locked-down host);"
    " it takes effect at the next boot where /proc/sys is writable"
)
MIGRATION_EFFECT = (
    "the effect on serving is minor: the scheduler keeps its current value (500000 ns by default), so it moves a"
    " thread that ran recently to an idle CPU a little less readily"
)
MIGRATION_NOT_SET = (
    f"{MIGRATION_KEY}=50000 not set and not persisted: this kernel ({KERNEL_6_8}) has no such sysctl (Linux 5.13 moved"
    " it to debugfs), and "
)
NO_CPUFREQ = (
    "CPU governor performance not set and not persisted: no cpufreq on this host (/sys/devices/system/cpu/cpu0/cpufreq"
    " is absent: a VM, a container, or frequency scaling owned by the firmware)"
)
# The task that did not run at all (its block skipped), and a loop over nothing.
TASK_SKIPPED = {"changed": False, "failed": False, "skipped": True, "skip_reason": "Conditional result was False"}
NO_ITEMS = {"changed": False, "failed": False, "results": [], "skipped": True, "skip_reason": "No items in the list"}


def loop_result(*items: Dict[str, Any]) -> Dict[str, Any]:
    changed = any(item.get("changed") for item in items)
    return {"changed": changed, "failed": False, "msg": "All items completed", "results": list(items)}


def skipped_item(record: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "ansible_loop_var": "item",
        "changed": False,
        "failed": False,
        "false_condition": "not item.matches",
        "item": record,
        "skip_reason": "Conditional result was False",
        "skipped": True,
    }


def sysctl_applied(record: Dict[str, Any]) -> Dict[str, Any]:
    args = {"name": record["key"], "value": record["value"], "sysctl_file": SYSCTL_FILE, "sysctl_set": True}
    return {
        "ansible_loop_var": "item",
        "changed": True,
        "failed": False,
        "item": record,
        "invocation": {"module_args": args},
    }


def sysctl_refused(record: Dict[str, Any], error: str) -> Dict[str, Any]:
    return {
        "ansible_loop_var": "item",
        "changed": False,
        "failed": False,
        "failed_when_result": False,
        "item": record,
        "msg": f"setting {record['key']} failed: {error}\n",
    }


def setter_ran(record: Dict[str, Any], rc: int = 0, stdout: str = "", stderr: str = "") -> Dict[str, Any]:
    result = {
        "ansible_loop_var": "item",
        "changed": bool(stdout),
        "cmd": ["/bin/sh", "-c", "...", "sh", record["path"], record["value"], "apply"],
        "failed": False,
        "item": record,
        "rc": rc,
        "stdout": stdout,
        "stdout_lines": stdout.splitlines(),
        "stderr": stderr,
        "stderr_lines": stderr.splitlines(),
    }
    if rc:
        result.update(failed_when_result=False, msg="non-zero return code")
    return result


def tell(found: Dict[str, Any], check_mode: bool = False, **kwargs: Any) -> List[str]:
    args: Dict[str, Any] = dict(sysctls=WANTED, sysctl_file=SYSCTL_FILE, cpu_governor="performance")
    args.update(check_mode=check_mode, sysctl_results=TASK_SKIPPED, debugfs_results=TASK_SKIPPED)
    args.update(kwargs)
    return tuning_warnings(found, **args)


def simulated_node(host: FakeHost) -> None:
    """A node as the CI simulates them: read-only /proc/sys, no debugfs, no cpufreq, no
    CONFIG_NUMA_BALANCING, systemd."""
    host.kernel(KERNEL_6_8)
    host.systemd()
    host.sysctl("vm.swappiness", "60", writable=False)
    host.cpus_without_cpufreq(2)


def debugfs_host(host: FakeHost, systemd: bool = True, **write: Any) -> None:
    """Linux 6.8 with the scheduler key in debugfs, the other keys tuned, cpufreq at performance."""
    host.kernel(KERNEL_6_8)
    if systemd:
        host.systemd()
    for key in ("vm.swappiness", "kernel.numa_balancing"):
        host.sysctl(key, "0")
    host.write(SYSCTL_FILE, "vm.swappiness=0\nkernel.numa_balancing=0\n")
    host.write(MIGRATION_FILE, "500000\n", **write)
    host.cpufreq({0: "performance", 1: "performance"})


def test_a_tuned_host_has_nothing_to_say_and_nothing_left_to_do(host: FakeHost) -> None:
    host.kernel("5.10.0-182.0.0.95.oe2203sp3.aarch64")
    host.systemd()
    for key, value in WANTED.items():
        host.sysctl(key, str(value))
    host.write(SYSCTL_FILE, "".join(f"{k}={v}\n" for k, v in WANTED.items()))
    host.cpufreq({0: "performance", 1: "performance"})
    info = look(host)
    sysctl_live = loop_result(*(skipped_item(record) for record in info["sysctls"]))

    found = findings(info, "performance", sysctl_live, TASK_SKIPPED)

    assert [record["key"] for record in found["sysctl_writable"]] == list(WANTED)
    assert found["sysctl_present"] == found["sysctl_writable"]
    assert found["sysctl_unapplied"] == [] and found["sysctl_missing"] == []
    assert found["debugfs"] == [] and found["debugfs_set"] == []
    assert found["governor_ok"] is True
    assert tell(info, sysctl_results=sysctl_live) == []
    assert tell(info, check_mode=True, sysctl_results=sysctl_live) == []


@pytest.mark.parametrize("check_mode, persisted", [(False, "persisted"), (True, "would be persisted")])
def test_a_simulated_node_says_everything_in_the_order_of_the_tasks(
    host: FakeHost, check_mode: bool, persisted: str
) -> None:
    simulated_node(host)
    info = look(host)

    assert tell(info, check_mode, sysctl_results=NO_ITEMS, debugfs_results=NO_ITEMS) == [
        f"vm.swappiness=0 {persisted} in {SYSCTL_FILE} but not applied now: /proc/sys/vm/swappiness" + READ_ONLY_TAIL,
        f"kernel.numa_balancing is not a sysctl of this kernel ({KERNEL_6_8}): neither persisted nor applied:"
        " the kernel is built without CONFIG_NUMA_BALANCING (nothing to turn off)",
        MIGRATION_NOT_SET
        + f"{MIGRATION_FILE} is absent (debugfs not mounted, a container, or a kernel without it); "
        + MIGRATION_EFFECT,
        NO_CPUFREQ,
    ]
    found = findings(info, "performance", NO_ITEMS, NO_ITEMS)
    assert [record["key"] for record in found["sysctl_unapplied"]] == ["vm.swappiness"]
    assert found["sysctl_writable"] == [] and found["debugfs_writable"] == []
    assert found["governor_ok"] is False


def test_values_are_shown_as_the_inventory_gives_them(host: FakeHost) -> None:
    """The wanted value as given (True, not the 1 that is written), in run and check mode alike."""
    wanted = {"net.ipv4.ip_forward": True, "net.ipv4.tcp_rmem": "4096 131072 6291456"}
    host.sysctl("net.ipv4.ip_forward", "0", writable=False)
    host.sysctl("net.ipv4.tcp_rmem", "4096 87380 6291456", writable=False)
    messages = tell(look(host, sysctls=wanted), sysctls=wanted, cpu_governor=None)
    assert [message.split(" persisted in ")[0] for message in messages] == [
        "net.ipv4.ip_forward=True",
        "net.ipv4.tcp_rmem=4096 131072 6291456",
    ]


def test_a_refused_sysctl_is_persisted_only_and_reported_with_the_kernels_answer(host: FakeHost) -> None:
    """/proc/sys looks writable but the kernel refuses kernel.numa_balancing (a user namespace);
    vm.swappiness is applied, kernel.sched_migration_cost_ns is read-only (Linux 5.10)."""
    host.kernel("5.10.0-182.0.0.95.oe2203sp3.aarch64")
    host.systemd()
    host.sysctl("vm.swappiness", "60")
    host.sysctl("kernel.numa_balancing", "1")
    host.sysctl(MIGRATION_KEY, "500000", writable=False)
    host.cpufreq({0: "performance"})
    info = look(host)
    swappiness, numa, migration = info["sysctls"]
    error = 'setting key "kernel.numa_balancing": Operation not permitted'
    sysctl_live = loop_result(sysctl_applied(swappiness), sysctl_refused(numa, f"sysctl: {error}"))

    found = findings(info, "performance", sysctl_live, TASK_SKIPPED)

    assert found["sysctl_writable"] == [swappiness, numa]
    # Read-only keys first, then the refused ones: the task that persists them loops over both.
    assert found["sysctl_unapplied"] == [migration, numa]
    assert tell(info, sysctl_results=sysctl_live) == [
        f"{MIGRATION_KEY}=50000 persisted in {SYSCTL_FILE} but not applied now:"
        " /proc/sys/kernel/sched_migration_cost_ns" + READ_ONLY_TAIL,
        f"kernel.numa_balancing=0 persisted in {SYSCTL_FILE} but the kernel refused to apply it now"
        f" (setting kernel.numa_balancing failed: sysctl: {error})",
    ]


def test_a_missing_sysctl_without_a_hint(host: FakeHost) -> None:
    host.kernel(KERNEL_6_8)
    wanted = {"net.ipv4.tcp_tw_recycle": 1}
    assert tell(look(host, sysctls=wanted), sysctls=wanted, cpu_governor="") == [
        f"net.ipv4.tcp_tw_recycle is not a sysctl of this kernel ({KERNEL_6_8}): neither persisted nor applied"
    ]


def test_a_missing_debugfs_key_is_not_reported_as_a_missing_sysctl(host: FakeHost) -> None:
    simulated_node(host)
    found = findings(look(host), "performance")
    assert [record["key"] for record in found["sysctl_missing"]] == ["kernel.numa_balancing"]
    assert [record["key"] for record in found["debugfs"]] == [MIGRATION_KEY]
    # Without a debugfs file to fall back to, the scheduler key is a missing sysctl like any other.
    found = findings(look(host, debugfs={}), "performance")
    assert [record["key"] for record in found["sysctl_missing"]] == ["kernel.numa_balancing", MIGRATION_KEY]


def test_debugfs_read_only(host: FakeHost) -> None:
    debugfs_host(host, writable=False)
    info = look(host)
    found = findings(info, "performance", NO_ITEMS, NO_ITEMS)
    assert found["debugfs_writable"] == [] and found["debugfs_set"] == []
    assert tell(info, sysctl_results=NO_ITEMS, debugfs_results=NO_ITEMS) == [
        MIGRATION_NOT_SET
        + f"{MIGRATION_FILE} is read-only here (debugfs mounted read-only, or kernel lockdown); "
        + MIGRATION_EFFECT
    ]


def test_debugfs_refused_by_the_kernel(host: FakeHost) -> None:
    """Lockdown: the file looks writable, the setter's write is refused."""
    debugfs_host(host)
    info = look(host)
    (record,) = info["debugfs"]
    error = f"/bin/sh: 1: cannot create {MIGRATION_FILE}: Operation not permitted"
    debugfs_live = loop_result(setter_ran(record, rc=1, stdout=f"{MIGRATION_FILE}: 500000 -> 50000", stderr=error))

    found = findings(info, "performance", NO_ITEMS, debugfs_live)

    assert found["debugfs_writable"] == [record]
    assert found["debugfs_refused"] == debugfs_live["results"]
    assert found["debugfs_set"] == []
    assert tell(info, sysctl_results=NO_ITEMS, debugfs_results=debugfs_live) == [
        MIGRATION_NOT_SET + f"the kernel refused access to {MIGRATION_FILE} ({error}); " + MIGRATION_EFFECT
    ]


def test_debugfs_set_is_what_the_boot_unit_sets(host: FakeHost) -> None:
    debugfs_host(host)
    info = look(host)
    (record,) = info["debugfs"]
    for debugfs_live in (loop_result(setter_ran(record, stdout=f"{MIGRATION_FILE}: 500000 -> 50000")), TASK_SKIPPED):
        assert findings(info, "performance", NO_ITEMS, debugfs_live)["debugfs_set"] == [record]
        assert tell(info, sysctl_results=NO_ITEMS, debugfs_results=debugfs_live) == []


@pytest.mark.parametrize("check_mode, verb", [(False, "set"), (True, "would be set")])
def test_debugfs_and_governor_set_without_systemd_are_not_persisted(
    host: FakeHost, check_mode: bool, verb: str
) -> None:
    debugfs_host(host, systemd=False)
    host.write("/proc/1/comm", "tini\n", writable=False)
    info = look(host)
    (record,) = info["debugfs"]
    debugfs_live = loop_result(setter_ran(record, stdout=f"{MIGRATION_FILE}: 500000 -> 50000"))
    assert tell(info, check_mode, sysctl_results=NO_ITEMS, debugfs_results=debugfs_live) == [
        f"{MIGRATION_KEY}=50000 {verb} now in {MIGRATION_FILE} but not persisted across reboots:"
        " the service manager is tini, not systemd",
        "CPU governor performance set now but not persisted across reboots: the service manager is tini, not systemd",
    ]


def test_an_unknown_service_manager(host: FakeHost) -> None:
    host.cpufreq({0: "powersave"})
    assert tell(look(host, sysctls={}), sysctls={}) == [
        "CPU governor performance set now but not persisted across reboots: the service manager is unknown, not systemd"
    ]


@pytest.mark.parametrize(
    "offered, writable, reason",
    [
        ("powersave schedutil", True, "the cpufreq driver offers only powersave, schedutil"),
        (None, True, "the cpufreq driver offers only no governor"),
        (
            "performance powersave",
            False,
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor is read-only here"
            " (a container, or a locked-down host)",
        ),
    ],
    ids=["not-offered", "none-offered", "read-only"],
)
def test_a_governor_that_cannot_be_set(host: FakeHost, offered: Any, writable: bool, reason: str) -> None:
    host.systemd()
    host.cpufreq({0: "powersave", 1: "powersave"}, offered=offered, writable=writable)
    info = look(host, sysctls={})
    assert findings(info, "performance")["governor_ok"] is False
    assert tell(info, sysctls={}) == [f"CPU governor performance not set and not persisted: {reason}"]


@pytest.mark.parametrize("governor", [None, ""])
def test_no_governor_wanted_no_governor_message(host: FakeHost, governor: Any) -> None:
    simulated_node(host)
    messages = tell(look(host, cpu_governor=governor), cpu_governor=governor)
    assert len(messages) == 3 and not [message for message in messages if "governor" in message]
    # Set on a host without cpufreq: that one message more.
    assert tell(look(host))[-1] == NO_CPUFREQ


def test_the_filters_are_the_module_utils_functions() -> None:
    assert FindingsFilter().filters() == {"host_tuning_findings": findings}
    assert WarningsFilter().filters() == {"host_tuning_warnings": tuning_warnings}


def test_a_skipped_inspection_finds_nothing(host: FakeHost) -> None:
    """The role skipped on a host (a proxy-only host of a PD plan): its loops are evaluated
    before their ``when`` and must get empty lists, not a KeyError."""
    skipped = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}
    found = host_tuning.findings(skipped, "performance")
    assert found["governor_ok"] is False
    assert all(found[key] == [] for key in host_tuning.FINDING_LISTS)
    assert set(found) == {*host_tuning.FINDING_LISTS, "governor_ok"}
    # Every list a real inspection returns is covered.
    assert set(host_tuning.findings(look(host), "performance")) == set(found)
    assert host_tuning.tuning_warnings(skipped, WANTED, SYSCTL_FILE, "performance") == []
