"""Verify ascend.vllm.host_tuning on the simulated nodes (see ../molecule.yml).

The nodes share this machine's kernel with /proc/sys read-only (but net.*), so the role
must persist the sysctl file and warn, and the machine's own values must not move. The
``fresh`` node is never converged: the role runs there in ``--check`` from here, and must
report what it would change while writing nothing - no file of its root file system may
change. jemalloc belongs to the vLLM-Ascend image: the role installs nothing.

This machine's kernel (>= 5.13) has no kernel.sched_migration_cost_ns sysctl: the role sets
it in debugfs instead. ``plain`` has no debugfs (the documented skip, for real); the
``debugfs`` nodes have prepare.yml's fake one on tmpfs at the real path.

A re-run on a converged node must cost one module run on it (the role's inspection) and the
warnings: every other task acts only on what differs, and each module run is a round trip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
import testinfra.utils.ansible_runner

from tests.molecule_playbook import changed_tasks, run_playbook, task_results

SCENARIO = Path(__file__).resolve().parent.parent
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
CONVERGED = sorted(RUNNER.get_hosts("converged"))
CPUFREQ = set(RUNNER.get_hosts("cpufreq"))
DEBUGFS = set(RUNNER.get_hosts("debugfs"))
FRESH = sorted(RUNNER.get_hosts("fresh"))

SYSCTL_FILE = "/etc/sysctl.d/90-ascend-vllm.conf"
# The seed's keys: read-only in the nodes (or absent from this kernel).
SYSCTLS = {"vm.swappiness": "0", "kernel.numa_balancing": "0", "kernel.sched_migration_cost_ns": "50000"}
# Added by converge.yml: per network namespace, writable in the nodes, so applied live.
NET_KEY, NET_VALUE = "net.ipv4.tcp_keepalive_time", "600"
UNIT = "ascend-vllm-cpu-governor.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
OUTPUTS = "/root/host_tuning_outputs.json"
GOVERNOR_FILES = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"
MIGRATION_KEY = "kernel.sched_migration_cost_ns"
MIGRATION_FILE = "/sys/kernel/debug/sched/migration_cost_ns"
MIGRATION_DEFAULT = "500000"  # what prepare.yml writes in the fake debugfs, the kernel's default
SCHED_UNIT = "ascend-vllm-sched-debugfs.service"
SCHED_UNIT_FILE = f"/etc/systemd/system/{SCHED_UNIT}"
JEMALLOC_PACKAGE = "libjemalloc2"
# Written during a run, but not by the role: Ansible's own files, Python's byte-code caches,
# the journal, temporary files.
NOT_THE_ROLES = ("/root/.ansible", "/var/log", "/tmp", "/var/tmp")
ROLE_TASK = "ascend.vllm.host_tuning : "
# Actions that run on the controller alone, so cost no module run on the node.
CONTROLLER_ACTIONS = {
    "ansible.builtin.set_fact",
    "ansible.builtin.validate_argument_spec",
    "ansible.builtin.include_tasks",
    "ansible.builtin.meta",
}


def node(name):
    return testinfra.get_host(f"docker://{name}")


def proc_path(key):
    return "/proc/sys/" + key.replace(".", "/")


def sysctl_lines(host):
    lines = {}
    for line in host.file(SYSCTL_FILE).content_string.splitlines():
        if line.strip() and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            lines[key.strip()] = value.strip()
    return lines


def governors(host):
    out = host.check_output(f"cat {GOVERNOR_FILES}")
    return out.split()


def skip_unless_migration_cost_in_debugfs(host):
    if host.file(proc_path(MIGRATION_KEY)).exists:
        pytest.skip(f"this kernel still has the {MIGRATION_KEY} sysctl (Linux < 5.13)")


def run_converge(limit, *extra):
    """Run converge.yml against `limit` with the JSON callback; return (rc, report)."""
    return run_playbook(SCENARIO / "converge.yml", "-e", f"host_tuning_molecule_hosts={limit}", *extra)


def run_converge_as_operator(limit, *extra):
    """Run converge.yml with the default callback and return the process: what an operator
    sees, warnings included (the JSON callback only records them in each result)."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    cmd = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        INVENTORY,
        str(SCENARIO / "converge.yml"),
        "-e",
        f"host_tuning_molecule_hosts={limit}",
        *extra,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=SCENARIO)


@pytest.mark.parametrize("name", CONVERGED)
def test_sysctl_file_persists_the_keys_this_kernel_has(name):
    host = node(name)
    f = host.file(SYSCTL_FILE)
    assert f.is_file
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    assert f.content_string.startswith("# Managed by Ansible (ascend.vllm.host_tuning)")
    lines = sysctl_lines(host)
    for key, value in SYSCTLS.items():
        if host.file(proc_path(key)).exists:
            assert lines.get(key) == value, key
        else:
            assert key not in lines, f"{key} is not a sysctl of this kernel but was persisted"
    assert lines.get(NET_KEY) == NET_VALUE


@pytest.mark.parametrize("name", CONVERGED)
def test_writable_sysctl_applied_live(name):
    host = node(name)
    assert host.file(proc_path(NET_KEY)).content_string.strip() == NET_VALUE


@pytest.mark.parametrize("name", CONVERGED)
def test_live_sysctls_of_this_machine_unchanged(name):
    host = node(name)
    assert "ro" in host.mount_point("/proc/sys").options
    before = json.loads((EPHEMERAL / "machine-sysctls.json").read_text())
    for key, value in before.items():
        assert Path(proc_path(key)).read_text().strip() == value, f"this machine's {key} changed"
        assert host.file(proc_path(key)).content_string.strip() == value


@pytest.mark.parametrize("name", CONVERGED)
def test_outputs_and_warnings(name):
    host = node(name)
    outputs = json.loads(host.file(OUTPUTS).content_string)
    warnings = outputs["host_tuning_warnings"]
    for key, value in SYSCTLS.items():
        if host.file(proc_path(key)).exists:
            expected = f"{key}={value} persisted in {SYSCTL_FILE} but not applied now: {proc_path(key)} is read-only"
        elif key == MIGRATION_KEY:
            continue  # set in debugfs, or skipped with its own warning: the tests below
        else:
            expected = f"{key} is not a sysctl of this kernel"
        assert any(w.startswith(expected) for w in warnings), (expected, warnings)
    assert not any(NET_KEY in w for w in warnings), warnings
    governor_warnings = [w for w in warnings if w.startswith("CPU governor")]
    if name in CPUFREQ:
        assert governor_warnings == []
    else:
        assert len(governor_warnings) == 1
        assert "not set and not persisted: no cpufreq on this host" in governor_warnings[0]


@pytest.mark.parametrize("name", CONVERGED)
def test_jemalloc_is_left_to_the_image(name):
    host = node(name)
    assert not host.package(JEMALLOC_PACKAGE).is_installed
    outputs = json.loads(host.file(OUTPUTS).content_string)
    assert outputs["variables"] and not [v for v in outputs["variables"] if "jemalloc" in v], outputs


@pytest.mark.parametrize("name", [n for n in CONVERGED if n not in CPUFREQ])
def test_no_cpufreq_writes_nothing(name):
    host = node(name)
    assert not host.file("/sys/devices/system/cpu/cpu0/cpufreq").exists
    assert not host.file(UNIT_FILE).exists


@pytest.mark.parametrize("name", [n for n in CONVERGED if n in CPUFREQ])
def test_governor_set_now_and_at_boot(name):
    host = node(name)
    assert set(governors(host)) == {"performance"}
    unit = host.file(UNIT_FILE)
    assert unit.is_file and unit.mode == 0o644
    assert "echo performance >" in unit.content_string
    assert host.run(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    # What a reboot does: the unit sets every CPU again.
    host.check_output(f"for f in {GOVERNOR_FILES}; do echo powersave > $f; done")
    assert set(governors(host)) == {"powersave"}
    host.check_output(f"systemctl restart {UNIT}")
    assert set(governors(host)) == {"performance"}


@pytest.mark.parametrize("name", [n for n in CONVERGED if n in DEBUGFS])
def test_migration_cost_set_in_debugfs_now_and_at_boot(name):
    host = node(name)
    skip_unless_migration_cost_in_debugfs(host)
    assert host.file(MIGRATION_FILE).content_string.strip() == SYSCTLS[MIGRATION_KEY]
    warnings = json.loads(host.file(OUTPUTS).content_string)["host_tuning_warnings"]
    assert not [w for w in warnings if MIGRATION_KEY in w], warnings
    unit = host.file(SCHED_UNIT_FILE)
    assert unit.is_file and (unit.user, unit.mode) == ("root", 0o644)
    assert f"ConditionPathExists={MIGRATION_FILE}" in unit.content_string
    assert host.run(f"systemctl is-enabled {SCHED_UNIT}").stdout.strip() == "enabled"
    # What a reboot does: the kernel starts at its default, the unit sets the value again.
    host.check_output(f"echo {MIGRATION_DEFAULT} > {MIGRATION_FILE}")
    host.check_output(f"systemctl restart {SCHED_UNIT}")
    assert host.file(MIGRATION_FILE).content_string.strip() == SYSCTLS[MIGRATION_KEY]


@pytest.mark.parametrize("name", [n for n in CONVERGED if n not in DEBUGFS])
def test_migration_cost_skipped_with_a_warning_without_debugfs(name):
    host = node(name)
    skip_unless_migration_cost_in_debugfs(host)
    assert not host.file(MIGRATION_FILE).exists
    assert not host.file(SCHED_UNIT_FILE).exists
    warnings = json.loads(host.file(OUTPUTS).content_string)["host_tuning_warnings"]
    mine = [w for w in warnings if MIGRATION_KEY in w]
    assert len(mine) == 1, warnings
    assert mine[0].startswith(f"{MIGRATION_KEY}=50000 not set and not persisted: this kernel (")
    assert f"{MIGRATION_FILE} is absent (debugfs not mounted" in mine[0]
    assert "the effect on serving is minor" in mine[0]


def module_runs(report, name):
    """(task, action, how many times it ran) for each task of the role that ran something for
    `name` but CONTROLLER_ACTIONS: a skipped task ran nothing, a loop ran once per item that
    was not skipped."""
    runs = []
    for task, result in task_results(report, name).items():
        if not task.startswith(ROLE_TASK) or result.get("action") in CONTROLLER_ACTIONS:
            continue
        if "results" in result:
            count = sum(1 for item in result["results"] if not item.get("skipped") and "skip_reason" not in item)
        else:
            count = 0 if result.get("skipped") else 1
        if count:
            runs.append((task.removeprefix(ROLE_TASK), result["action"], count))
    return runs


@pytest.mark.parametrize("name", CONVERGED)
def test_a_rerun_on_a_converged_node_inspects_once_and_warns(name):
    # Not run_converge: its extra variable would show in the outputs file, a change.
    rc, report = run_playbook(SCENARIO / "converge.yml", "--limit", name)
    assert rc == 0, report["stats"]
    assert report["stats"][name]["changed"] == 0, changed_tasks(report, name)
    assert module_runs(report, name) == [
        ("Inspect the kernel parameters, debugfs, cpufreq and boot units", "ascend.vllm.host_tuning_info", 1),
        ("Warn about tuning this host does not allow", "ascend.vllm.warn", 1),
    ]


def files_written_since(host, marker):
    """Files of the node's root file system modified after `marker`, but NOT_THE_ROLES."""
    prune = " -o ".join(f"-path {path}" for path in NOT_THE_ROLES)
    out = host.check_output(f"find / -xdev \\( {prune} -o -name __pycache__ \\) -prune -o -newer {marker} -print")
    return sorted(line for line in out.splitlines() if line != "/")


@pytest.mark.parametrize("name", FRESH)
def test_check_mode_reports_changes_and_writes_nothing(name):
    host = node(name)
    marker = "/tmp/host_tuning_before_check"
    host.check_output(f"touch {marker}")
    rc, report = run_converge(name, "--check")
    assert rc == 0, report["stats"]
    stats = report["stats"][name]
    assert stats["failures"] == 0 and stats["unreachable"] == 0
    tasks = task_results(report, name)
    would_change = {
        "Create the sysctl file with a header",
        "Apply the kernel parameters now and persist them where /proc/sys is writable",
        "Persist the kernel parameters that cannot be applied now",
        "Set the CPU governor on every CPU now",
        "Install the unit that sets the CPU governor at boot",
    }
    migration_in_debugfs = not host.file(proc_path(MIGRATION_KEY)).exists
    if migration_in_debugfs:
        would_change |= {
            "Set the scheduler parameters in debugfs now",
            "Install the unit that sets the debugfs scheduler parameters at boot",
        }
    for task in would_change:
        assert tasks[ROLE_TASK + task].get("changed"), f"--check does not report: {task}"
    assert "cpu0: powersave -> performance" in tasks[ROLE_TASK + "Set the CPU governor on every CPU now"]["stdout"]
    if migration_in_debugfs:
        live = tasks[ROLE_TASK + "Set the scheduler parameters in debugfs now"]["results"][0]
        assert live["stdout"] == f"{MIGRATION_FILE}: {MIGRATION_DEFAULT} -> {SYSCTLS[MIGRATION_KEY]}"
    warn = tasks[ROLE_TASK + "Warn about tuning this host does not allow"]
    assert warn["action"] == "ascend.vllm.warn" and not warn.get("changed")
    assert any(
        w.startswith(f"host_tuning on {name}: vm.swappiness=0 would be persisted in") and "is read-only here" in w
        for w in warn["warnings"]
    ), warn

    assert not [task for task in tasks if "jemalloc" in task], sorted(tasks)

    # Also proves that no package index is refreshed any more (that wrote /var/lib/apt/lists).
    assert files_written_since(host, marker) == []
    assert host.file(proc_path(NET_KEY)).content_string.strip() != NET_VALUE
    assert not host.file(SYSCTL_FILE).exists
    assert not host.file(UNIT_FILE).exists
    assert not host.file(SCHED_UNIT_FILE).exists
    assert not host.package(JEMALLOC_PACKAGE).is_installed
    assert set(governors(host)) == {"powersave"}
    assert host.file(MIGRATION_FILE).content_string.strip() == MIGRATION_DEFAULT
    assert not host.file(OUTPUTS).exists


@pytest.mark.parametrize("name", [n for n in CONVERGED if n not in CPUFREQ])
def test_findings_are_ansible_warnings_naming_the_host(name):
    proc = run_converge_as_operator(name, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("[WARNING]: host_tuning on ")]
    prefix = f"[WARNING]: host_tuning on {name}: "
    assert any(w.startswith(prefix + "vm.swappiness=0 would be persisted in") for w in warnings), proc.stderr
    no_cpufreq = "CPU governor performance not set and not persisted: no cpufreq"
    assert any(w.startswith(prefix + no_cpufreq) for w in warnings), proc.stderr
    # Every finding of the role is one warning, none of them debug output.
    assert len(warnings) == len(json.loads(node(name).file(OUTPUTS).content_string)["host_tuning_warnings"])
    assert "WARNING (host_tuning)" not in proc.stdout + proc.stderr


def test_check_mode_on_converged_nodes_changes_nothing():
    rc, report = run_converge("converged", "--check")
    assert rc == 0, report["stats"]
    for name in CONVERGED:
        changed = [task for task, result in task_results(report, name).items() if result.get("changed")]
        assert changed == [], f"--check on converged {name} reports changes"
        assert report["stats"][name]["failures"] == 0
