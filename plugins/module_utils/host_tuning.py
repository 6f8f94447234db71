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
