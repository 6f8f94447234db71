# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``ascend.vllm.host_tuning`` needs to know about a host, read in one pass.

``plugins/modules/host_tuning_info.py`` calls :func:`inspect`; the role then acts only on what
differs, so a re-run on a tuned host costs one module execution instead of one per key and
file. Every path is read below ``root`` (``/`` on a host; a fake tree in the tests) and
reported without it.

The comparisons decide which keys the role hands to ``ansible.posix.sysctl``, so they must say
"differs" whenever that module would change something: :func:`sysctl_value`,
:func:`parse_sysctl_file` and :func:`live_matches` follow its own normalisation, file reading
and comparison (ansible.posix 2.x). Saying "differs" too often only costs a module run.
"""

from __future__ import annotations

import glob
import grp
import hashlib
import os
import pwd
import re
import stat
from typing import Any, Dict, Iterable, List, Mapping, Optional

from ansible.module_utils.parsing.convert_bool import BOOLEANS_FALSE, BOOLEANS_TRUE

PROC_SYS = "/proc/sys"
CPU_DIR = "/sys/devices/system/cpu"
CPU0_CPUFREQ = CPU_DIR + "/cpu0/cpufreq"
UNIT_DIR = "/etc/systemd/system"
# sd_booted(3): systemd runs the host when this directory exists.
SYSTEMD_RUNTIME = "/run/systemd/system"
PID1_NAME = "/proc/1/comm"
KERNEL_RELEASE = "/proc/sys/kernel/osrelease"


def sysctl_value(value: Any) -> str:
    """The value ansible.posix.sysctl writes for ``value``: booleans and their words as 1 / 0
    (its _parse_value, with the same constants), anything else as its text, stripped (the role
    passes values through ``| string``)."""
    text = str(value)
    if text.lower() in BOOLEANS_TRUE:
        return "1"
    if text.lower() in BOOLEANS_FALSE:
        return "0"
    return text.strip()


def sysctl_path(key: str) -> str:
    """``/proc/sys`` file of a dotted key, as the role has always named it."""
    return PROC_SYS + "/" + key.replace(".", "/")


def parse_sysctl_file(text: str) -> Dict[str, str]:
    """Key to value of a sysctl.d file as ansible.posix.sysctl reads it: ``#`` and ``;`` lines,
    blank lines and lines without ``=`` ignored, key and value stripped, the last line of a key
    wins (the module rewrites the file when that one differs)."""
    values = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def live_matches(live: Optional[str], wanted: str) -> bool:
    """Whether the running value already is ``wanted``: ansible.posix.sysctl compares the words
    (``4096\\t87380`` is ``4096 87380``); an unreadable value never matches."""
    return live is not None and live.split() == wanted.split()


def command_output(text: Optional[str]) -> Optional[str]:
    """A file's content as the role's shell setters see it, ``$(cat file)``: trailing newlines
    dropped, nothing else."""
    return None if text is None else text.rstrip("\n")


def cpu_number(name: str) -> int:
    """``cpu12`` -> 12, so CPUs sort as numbers, not as text."""
    return int(name[3:])


def governors_to_change(current: Mapping[str, Optional[str]], governor: str) -> List[str]:
    """The CPUs whose governor is not ``governor`` (an unreadable one included), by number."""
    return sorted((cpu for cpu, value in current.items() if value != governor), key=cpu_number)


def file_mode(st_mode: int) -> str:
    """Permissions as the template module takes them: ``0644``."""
    return f"{stat.S_IMODE(st_mode):04o}"


def is_systemd(pid1: Optional[str], booted: bool) -> bool:
    """Whether systemd manages the host: PID 1 is systemd, or systemd's runtime directory
    exists (sd_booted(3); PID 1 may show as ``init``). Either way PID 1's name is then never
    another service manager's, which the role names when it cannot persist."""
    return pid1 == "systemd" or (booted and pid1 in (None, "init"))


def writable(path: str) -> bool:
    """Whether ``path`` may be written: its mode and its mount (a read-only ``/proc/sys`` says
    no), as the stat module's ``writeable`` and ``[ -w ]`` answer."""
    return os.access(path, os.W_OK)


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _read(path: str) -> Optional[str]:
    """The file's text, or None where it cannot be read (absent, a directory, refused)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _sha1(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha1(handle.read(), usedforsecurity=False).hexdigest()
    except OSError:
        return None


def _name(lookup: Any, ident: int) -> str:
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def inspect_sysctls(root: str, wanted: Mapping[str, Any], sysctl_file: Optional[str]) -> Dict[str, Any]:
    """Each wanted key's ``/proc/sys`` file (exists, writable, live value) and the value
    ``sysctl_file`` persists for it."""
    persisted: Dict[str, str] = {}
    file_exists = False
    if sysctl_file:
        real = _under(root, sysctl_file)
        file_exists = os.path.exists(real)
        if os.path.isfile(real):
            persisted = parse_sysctl_file(_read(real) or "")
    records = []
    for key, value in wanted.items():
        path = sysctl_path(key)
        real = _under(root, path)
        exists = os.path.exists(real)
        live = _read(real) if exists else None
        want = sysctl_value(value)
        records.append(
            {
                "key": key,
                "value": want,
                "path": path,
                "exists": exists,
                "writable": exists and writable(real),
                "live": None if live is None else live.strip(),
                "live_matches": live_matches(live, want),
                "persisted": persisted.get(key),
                "persisted_matches": persisted.get(key) == want,
            }
        )
    return {"sysctl_file": {"path": sysctl_file, "exists": file_exists}, "sysctls": records}


def inspect_debugfs(root: str, wanted: Mapping[str, Any], files: Mapping[str, str]) -> List[Dict[str, Any]]:
    """The debugfs file of each wanted key that has one in ``files``: exists, writable, its value."""
    records = []
    for key, value in wanted.items():
        if key not in files:
            continue
        path = files[key]
        real = _under(root, path)
        exists = os.path.exists(real)
        current = command_output(_read(real)) if exists else None
        records.append(
            {
                "key": key,
                "value": str(value),
                "path": path,
                "exists": exists,
                "writable": exists and writable(real),
                "current": current,
                "matches": current == str(value),
            }
        )
    return records


def inspect_cpufreq(root: str, governor: Optional[str]) -> Dict[str, Any]:
    """cpufreq as the role sees it: CPU 0's ``scaling_governor`` (present, writable), the
    governors CPU 0's driver offers, every CPU's governor, and the CPUs not at ``governor``."""
    cpu0 = _under(root, CPU0_CPUFREQ)
    present = os.path.exists(os.path.join(cpu0, "scaling_governor"))
    offered = _read(os.path.join(cpu0, "scaling_available_governors")) if present else None
    current: Dict[str, Optional[str]] = {}
    pattern = os.path.join(glob.escape(_under(root, CPU_DIR)), "cpu[0-9]*", "cpufreq", "scaling_governor")
    for path in glob.glob(pattern):
        cpu = os.path.basename(os.path.dirname(os.path.dirname(path)))
        if re.fullmatch(r"cpu[0-9]+", cpu):
            current[cpu] = command_output(_read(path))
    return {
        "path": CPU0_CPUFREQ,
        "present": present,
        "writable": present and writable(os.path.join(cpu0, "scaling_governor")),
        "governors": (offered or "").split(),
        "current": {cpu: current[cpu] for cpu in sorted(current, key=cpu_number)},
        "to_change": governors_to_change(current, governor) if governor else [],
    }


def _unit_enabled(root: str, name: str) -> bool:
    """``systemctl enable`` links the unit into ``<target>.wants`` (or ``.requires``) under
    /etc/systemd/system, from its [Install] section."""
    unit_dir = _under(root, UNIT_DIR)
    return any(
        glob.glob(os.path.join(glob.escape(unit_dir), f"*.{kind}", glob.escape(name))) for kind in ("wants", "requires")
    )


def inspect_units(root: str, names: Iterable[str]) -> Dict[str, Dict[str, Any]]:
    """Each unit file under /etc/systemd/system: exists, SHA-1 of its content (as the
    ``hash('sha1')`` filter gives it for the rendered template), mode, owner, group, enabled."""
    units = {}
    for name in names:
        path = f"{UNIT_DIR}/{name}"
        real = _under(root, path)
        record = dict(path=path, exists=os.path.exists(real), enabled=_unit_enabled(root, name))
        record.update(checksum=None, mode=None, owner=None, group=None)
        if os.path.isfile(real):
            st = os.stat(real)
            record.update(mode=file_mode(st.st_mode), owner=_name(pwd.getpwuid, st.st_uid))
            record.update(group=_name(grp.getgrgid, st.st_gid), checksum=_sha1(real))
        units[name] = record
    return units


def inspect(
    root: str,
    sysctls: Mapping[str, Any],
    sysctl_file: Optional[str],
    debugfs: Mapping[str, str],
    cpu_governor: Optional[str],
    units: Iterable[str],
) -> Dict[str, Any]:
    """Everything the role decides on, in one result (see the module's RETURN)."""
    pid1 = (_read(_under(root, PID1_NAME)) or "").strip() or None
    kernel = _read(_under(root, KERNEL_RELEASE))
    result = {
        "kernel": kernel.strip() if kernel else None,
        "systemd": is_systemd(pid1, os.path.isdir(_under(root, SYSTEMD_RUNTIME))),
        "service_manager": pid1,
        "debugfs": inspect_debugfs(root, sysctls, debugfs),
        "cpufreq": inspect_cpufreq(root, cpu_governor),
        "units": inspect_units(root, units),
    }
    result.update(inspect_sysctls(root, sysctls, sysctl_file))
    return result


# --- what the role makes of the inspection ------------------------------------------------------
# The filters ascend.vllm.host_tuning_findings and ascend.vllm.host_tuning_warnings call these on
# the controller, with the module's result and the results the role's write tasks registered.

# Why a sysctl key can be missing, shown in its warning.
SYSCTL_HINTS = {
    "kernel.numa_balancing": "the kernel is built without CONFIG_NUMA_BALANCING (nothing to turn off)",
}

# What leaving a debugfs scheduler key at the kernel's value means, shown when the role could not
# set it (no sysctl, and the debugfs file absent, read-only or refused).
DEBUGFS_EFFECTS = {
    "kernel.sched_migration_cost_ns": (
        "the effect on serving is minor: the scheduler keeps its current value (500000 ns by"
        " default), so it moves a thread that ran recently to an idle CPU a little less readily"
    ),
}


FINDING_LISTS = (
    "sysctl_present",
    "sysctl_writable",
    "sysctl_readonly",
    "sysctl_refused",
    "sysctl_unapplied",
    "sysctl_missing",
    "debugfs",
    "debugfs_writable",
    "debugfs_refused",
    "debugfs_set",
)


def _loop_results(registered: Optional[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The items of a registered loop result; none for a task that has not run, or was skipped
    as a whole (its result then has no ``results``)."""
    return list((registered or {}).get("results") or [])


def findings(
    info: Mapping[str, Any],
    cpu_governor: Optional[str] = None,
    sysctl_results: Optional[Mapping[str, Any]] = None,
    debugfs_results: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """What the inspection ``info`` found, sorted the way the role acts on it, and what the
    kernel refused once the write tasks ran.

    ``sysctl_results`` is the registered loop of the task that sets the writable keys
    (ansible.posix.sysctl): a refusal it let through keeps the module's ``msg``, which no other
    item has (a success returns only ``changed``; a skipped item only ``skip_reason``).
    ``debugfs_results`` is the registered loop of the debugfs setter (a command): a refusal it
    let through has a non-zero ``rc``; a skipped item has none.

    A skipped inspection (the role skipped on this host, e.g. a proxy-only host) finds nothing:
    Ansible evaluates a task's ``loop`` before its ``when``, so the role's loops meet it.
    """
    if info.get("skipped"):
        empty: Dict[str, Any] = {key: [] for key in FINDING_LISTS}
        empty["governor_ok"] = False
        return empty
    sysctls = info["sysctls"]
    present = [record for record in sysctls if record["exists"]]
    readonly = [record for record in present if not record["writable"]]
    refused = [result for result in _loop_results(sysctl_results) if "msg" in result]
    absent = [record["key"] for record in sysctls if not record["exists"]]
    # The keys the role looks for in debugfs: the module reports a file for each of them.
    in_debugfs = [record["key"] for record in info["debugfs"]]
    debugfs = [record for record in info["debugfs"] if record["key"] in absent]
    debugfs_writable = [record for record in debugfs if record["exists"] and record["writable"]]
    debugfs_refused = [result for result in _loop_results(debugfs_results) if "rc" in result and result["rc"] != 0]
    debugfs_refused_keys = [result["item"]["key"] for result in debugfs_refused]
    cpufreq = info["cpufreq"]
    return {
        "sysctl_present": present,
        "sysctl_writable": [record for record in present if record["writable"]],
        "sysctl_readonly": readonly,
        "sysctl_refused": refused,
        "sysctl_unapplied": readonly + [result["item"] for result in refused],
        "sysctl_missing": [record for record in sysctls if not record["exists"] and record["key"] not in in_debugfs],
        "debugfs": debugfs,
        "debugfs_writable": debugfs_writable,
        "debugfs_refused": debugfs_refused,
        "debugfs_set": [record for record in debugfs_writable if record["key"] not in debugfs_refused_keys],
        "governor_ok": bool(cpufreq["present"] and cpufreq["writable"] and cpu_governor in cpufreq["governors"]),
    }


def _not_systemd(info: Mapping[str, Any]) -> str:
    return f"the service manager is {info.get('service_manager') or 'unknown'}, not systemd"


def _debugfs_reason(record: Mapping[str, Any], refused: List[Mapping[str, Any]]) -> str:
    """Why a debugfs key was not set: its file absent, read-only, or the kernel's refusal."""
    path = record["path"]
    if not record["exists"]:
        return f"{path} is absent (debugfs not mounted, a container, or a kernel without it)"
    if not record["writable"]:
        return f"{path} is read-only here (debugfs mounted read-only, or kernel lockdown)"
    refusal = next((result.get("stderr", "") for result in refused if result["item"]["key"] == record["key"]), "")
    return f"the kernel refused access to {path} ({refusal.strip()})"


def _governor_reason(cpufreq: Mapping[str, Any]) -> str:
    """Why the governor was not set: no cpufreq, read-only, or not offered by the driver."""
    path = cpufreq["path"]
    if not cpufreq["present"]:
        return (
            f"no cpufreq on this host ({path} is absent: a VM, a container, or frequency scaling owned by the firmware)"
        )
    if not cpufreq["writable"]:
        return f"{path}/scaling_governor is read-only here (a container, or a locked-down host)"
    return "the cpufreq driver offers only " + (", ".join(cpufreq["governors"]) or "no governor")


def tuning_warnings(
    info: Mapping[str, Any],
    sysctls: Mapping[str, Any],
    sysctl_file: str,
    cpu_governor: Optional[str] = None,
    check_mode: bool = False,
    sysctl_results: Optional[Mapping[str, Any]] = None,
    debugfs_results: Optional[Mapping[str, Any]] = None,
) -> List[str]:
    """What this host did not allow, one message per finding, in the order of the role's tasks:
    keys persisted but not applied (read-only, refused), keys this kernel lacks, debugfs keys
    not set, debugfs keys set but not persisted, the governor. ``sysctls`` is the role's wanted
    dict: messages show each value as given, not as written."""
    if info.get("skipped"):
        return []
    found = findings(info, cpu_governor, sysctl_results, debugfs_results)
    kernel = info["kernel"]
    out = []
    persisted = " would be persisted in " if check_mode else " persisted in "
    for record in found["sysctl_readonly"]:
        key = record["key"]
        out.append(
            f"{key}={sysctls[key]}{persisted}{sysctl_file} but not applied now: {record['path']} is read-only"
            " here (a container, or a locked-down host); it takes effect at the next boot where /proc/sys is writable"
        )
    for result in found["sysctl_refused"]:
        key = result["item"]["key"]
        out.append(
            f"{key}={sysctls[key]} persisted in {sysctl_file} but the kernel refused to apply it now"
            f" ({result['msg'].strip()})"
        )
    for record in found["sysctl_missing"]:
        key = record["key"]
        hint = f": {SYSCTL_HINTS[key]}" if key in SYSCTL_HINTS else ""
        out.append(f"{key} is not a sysctl of this kernel ({kernel}): neither persisted nor applied{hint}")
    set_keys = [record["key"] for record in found["debugfs_set"]]
    for record in found["debugfs"]:
        if record["key"] in set_keys:
            continue
        out.append(
            f"{record['key']}={record['value']} not set and not persisted: this kernel ({kernel}) has no such"
            f" sysctl (Linux 5.13 moved it to debugfs), and {_debugfs_reason(record, found['debugfs_refused'])};"
            f" {DEBUGFS_EFFECTS[record['key']]}"
        )
    if not info["systemd"]:
        for record in found["debugfs_set"]:
            out.append(
                f"{record['key']}={record['value']}{' would be set' if check_mode else ' set'} now in"
                f" {record['path']} but not persisted across reboots: {_not_systemd(info)}"
            )
    if not cpu_governor:
        return out
    if not found["governor_ok"]:
        out.append(f"CPU governor {cpu_governor} not set and not persisted: {_governor_reason(info['cpufreq'])}")
    elif not info["systemd"]:
        out.append(f"CPU governor {cpu_governor} set now but not persisted across reboots: {_not_systemd(info)}")
    return out
