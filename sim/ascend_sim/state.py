"""The simulated Ascend driver: one state directory per node.

Layout of the directory (``state_dir()``; ``/usr/local/dcmi/ascend-sim`` on a node, which is
bind-mounted into every vLLM container together with ``/usr/local/dcmi``):

``state.json``
    ``{"schema": 1, "profile", "node_index", "npu_smi_version", "driver_version",
    "firmware_version", "npu_smi_layout": "classic"|"v26", "chips": [chip...],
    "hccn": [device...], "faults": {...}}`` (see ``init_state``). Written atomically
    (temporary file + rename), so readers never need a lock.
``state.lock``
    The lock file ``update_state`` and ``acquire_chips`` serialize on (``fcntl.flock``).
``leases/<owner>-<pid>-<token>.json``
    One file per chip holder (a simulated vLLM process): ``{"owner", "pid", "process_name",
    "chips": [logic ids], "memory_mb_each", "created"}``. The holder keeps an exclusive
    ``flock`` on it for as long as it lives; a lease whose lock anyone else can take is stale
    (its holder died without releasing) and is ignored and removed, like a driver freeing the
    memory of a dead process.

Foreign chip holders (processes the fault CLI pretends exist) live in
``state["faults"]["foreign_processes"]``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

# npu-smi and hccn_tool (zipapps, one process per query: a preflight runs dozens per node)
# import this module, so it imports only what reading the state needs; what only a writer or
# a rare function needs (profiles, copy) is imported where it is used.

DEFAULT_STATE_DIR = "/usr/local/dcmi/ascend-sim"
STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
LEASES_DIR = "leases"
SCHEMA = 1

HEALTH_VALUES = ("OK", "Warning", "Alarm", "Critical", "UNKNOWN")
LAYOUTS = ("classic", "v26")
DEFAULT_NETMASK = "255.255.0.0"
DEVICE_IP_PREFIX = "10.20"
DEVICE_IP_HOST_OFFSET = 10


class ChipError(Exception):
    """A chip cannot be used; the message names the chip and the reason."""


class StateError(Exception):
    """The state directory is missing or unreadable (no simulated driver on this node)."""


# ---------------------------------------------------------------------------------------------
# Directory, load, save


def state_dir() -> Path:
    """The state directory: env ``ASCEND_SIM_STATE_DIR`` or ``/usr/local/dcmi/ascend-sim``."""
    return Path(os.environ.get("ASCEND_SIM_STATE_DIR") or DEFAULT_STATE_DIR)


def _dir(directory: Optional[Path]) -> Path:
    return Path(directory) if directory is not None else state_dir()


def default_faults() -> Dict[str, Any]:
    return {
        "foreign_processes": [],  # [{logic_id, pid, process_name, memory_mb}]
        "unreachable": [],  # peer device IPs this node cannot reach
        "npu_smi_broken": False,  # npu-smi fails with a dcmi initialisation error
        "port_holders": {},  # "PORT" -> pid of a background listener
        "hidden_weights": [],  # weights directories renamed to PATH + ".sim-hidden"
    }


def device_ips(count: int, *, node_index: int = 0, device_ip_base: Optional[str] = None) -> List[str]:
    """Device IPs of a node: ``device_ip_base`` + device index.

    Default base: ``10.20.<node_index>.10`` -- node 0 gets 10.20.0.10..25, node 1
    10.20.1.10..25, and so on: one /24 block per node inside 10.20.0.0/16, so with the /16
    netmask every device IP of the cluster is on one subnet.
    """
    if device_ip_base is None:
        if not 0 <= node_index <= 255:
            raise ValueError(f"node_index {node_index} out of range 0-255")
        device_ip_base = f"{DEVICE_IP_PREFIX}.{node_index}.{DEVICE_IP_HOST_OFFSET}"
    base = ipaddress.IPv4Address(device_ip_base)
    return [str(base + i) for i in range(count)]


def default_hccn(count: int, *, node_index: int = 0, device_ip_base: Optional[str] = None) -> List[Dict[str, Any]]:
    ips = device_ips(count, node_index=node_index, device_ip_base=device_ip_base)
    network = ipaddress.IPv4Network(f"{ips[0]}/{DEFAULT_NETMASK}", strict=False)
    gateway = str(network.network_address + 1)
    return [
        {
            "device": i,
            "ip": ip,
            "netmask": DEFAULT_NETMASK,
            "gateway": gateway,
            "netdetect": gateway,
            "link": "UP",
            "net_health": "Success",
            "tls": False,
            "mac": f"78:b4:6a:{node_index & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}",
        }
        for i, ip in enumerate(ips)
    ]


def new_state(profile: str, *, node_index: int = 0, device_ip_base: Optional[str] = None) -> Dict[str, Any]:
    """A fresh, healthy state (not written anywhere)."""
    from ascend_sim import profiles

    profile = profile.lower()
    chips = profiles.default_chips(profile)
    return {
        "schema": SCHEMA,
        "profile": profile,
        "node_index": node_index,
        "device_ip_base": device_ip_base,
        "npu_smi_version": profiles.DEFAULT_NPU_SMI_VERSION,
        "driver_version": profiles.DEFAULT_DRIVER_VERSION,
        "firmware_version": profiles.DEFAULT_FIRMWARE_VERSION,
        "npu_smi_layout": "classic",
        "chips": chips,
        "hccn": default_hccn(len(chips), node_index=node_index, device_ip_base=device_ip_base),
        "faults": default_faults(),
    }


def _unique_suffix() -> str:
    """8 random hex digits, what ``secrets.token_hex(4)`` gives, without importing ``secrets``
    (hmac, hashlib, random: ~5 ms at every start of npu-smi and hccn_tool)."""
    return os.urandom(4).hex()


def _write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_unique_suffix()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _ensure_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LEASES_DIR).mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(directory / LEASES_DIR, 0o777)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    _ensure_dir(directory)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def init_state(
    profile: str,
    *,
    node_index: int = 0,
    device_ip_base: Optional[str] = None,
    directory: Optional[Path] = None,
) -> Dict[str, Any]:
    """Write a fresh ``state.json`` for ``profile`` ("a3" or "a2") and return it."""
    directory = _dir(directory)
    state = new_state(profile, node_index=node_index, device_ip_base=device_ip_base)
    with _locked(directory):
        _write_json_atomic(directory / STATE_FILE, state)
    return state


def load_state(directory: Optional[Path] = None) -> Dict[str, Any]:
    directory = _dir(directory)
    path = directory / STATE_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except FileNotFoundError:
        raise StateError(f"no simulated Ascend driver state at {path}") from None
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {path}: {exc}") from None
    faults = state.setdefault("faults", {})
    for key, value in default_faults().items():
        faults.setdefault(key, value)
    state.setdefault("npu_smi_layout", "classic")
    return state


def update_state(mutator: Callable[[Dict[str, Any]], None], directory: Optional[Path] = None) -> Dict[str, Any]:
    """Read-modify-write ``state.json`` under an exclusive lock; returns the new state."""
    directory = _dir(directory)
    with _locked(directory):
        state = load_state(directory)
        mutator(state)
        _write_json_atomic(directory / STATE_FILE, state)
    return state


# ---------------------------------------------------------------------------------------------
# Chips


def chip_label(chip: Dict[str, Any]) -> str:
    """``chip 3 (NPU 1 chip 1)`` on A3, ``chip 3 (NPU 3)`` on A2."""
    if chip.get("phy_id") is not None:
        return f"chip {chip['logic_id']} (NPU {chip['npu']} chip {chip['chip']})"
    return f"chip {chip['logic_id']} (NPU {chip['npu']})"


def find_chip(state: Dict[str, Any], logic_id: int) -> Dict[str, Any]:
    for chip in state["chips"]:
        if chip["logic_id"] == logic_id:
            return chip
    ids = [c["logic_id"] for c in state["chips"]]
    span = f"{min(ids)}-{max(ids)}" if ids else "none"
    raise ChipError(f"chip {logic_id} does not exist: this {state['profile'].upper()} node has chips {span}")


def hbm_used_mb(chip: Dict[str, Any], holders: List[Dict[str, Any]]) -> int:
    """HBM in use on ``chip``: its idle base plus what every holder of it holds."""
    held = sum(int(h["memory_mb"]) for h in holders if h["logic_id"] == chip["logic_id"])
    return min(int(chip["hbm_base_mb"]) + held, int(chip["hbm_total_mb"]))


# ---------------------------------------------------------------------------------------------
# Leases


class Lease:
    """Chips held by one process; the hold lasts while the lease file's flock is held.

    Dropping the object does not free the chips (its descriptor stays open, like a driver
    context): they are freed by ``release()`` or when the process -- and every child that
    inherited the descriptor by fork -- has exited.
    """

    def __init__(self, path: Path, fd: int, record: Dict[str, Any]) -> None:
        self.path = path
        self._fd: Optional[int] = fd
        self.record = record

    @property
    def logic_ids(self) -> List[int]:
        return list(self.record["chips"])

    @property
    def active(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the chips back (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease({self.path.name}, chips={self.logic_ids}, active={self.active})"


def _proc_lock_pids() -> Dict[Tuple[int, int], int]:
    """``(dev, inode) -> pid`` of every FLOCK in /proc/locks, pids as seen from here.

    The kernel prints lock owners' pids in the reader's pid namespace, so npu-smi on the node
    sees the node pid of a vLLM process that took its lease inside a container.
    """
    result: Dict[Tuple[int, int], int] = {}
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.readlines()
    except OSError:
        return result
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2b:5678 0 EOF"; blocked waiters have "->" first
        if len(parts) < 6 or parts[1] == "->" or parts[1] != "FLOCK":
            continue
        try:
            pid = int(parts[4])
            major, minor, inode = parts[5].split(":")
            dev = os.makedev(int(major, 16), int(minor, 16))
            result[(dev, int(inode))] = pid
        except ValueError:
            continue
    return result


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _lease_is_live(path: Path) -> Optional[bool]:
    """True if some process holds the lease's lock, False if stale, None if it vanished."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return True
            raise
        return False
    finally:
        os.close(fd)


def _live_leases(directory: Path, *, remove_stale: bool = True) -> List[Tuple[Path, Dict[str, Any]]]:
    leases_dir = directory / LEASES_DIR
    found: List[Tuple[Path, Dict[str, Any]]] = []
    try:
        entries = sorted(leases_dir.iterdir())
    except FileNotFoundError:
        return found
    for path in entries:
        if path.name.startswith(".") or path.suffix != ".json":
            continue
        live = _lease_is_live(path)
        if live is None:
            continue
        if not live:
            if remove_stale:
                with contextlib.suppress(OSError):
                    path.unlink()
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append((path, record))
    return found


def live_holders(directory: Optional[Path] = None) -> List[Dict[str, Any]]:
    """Everything holding chip memory now, one entry per (holder, chip).

    ``[{logic_id, pid, process_name, memory_mb, owner, container_pid, in_container, foreign}]``,
    sorted by logic_id then pid. ``container_pid`` is the pid the holder recorded (its own
    view). ``pid`` is the same, unless the holder lives in another pid namespace (a vLLM
    container without ``--pid=host``, ``in_container`` True): then it is the holder's pid as
    seen from here, which the kernel tells through /proc/locks -- what the two pid columns of
    npu-smi 26.x ("Process id", "Process id in container") show.
    """
    directory = _dir(directory)
    holders: List[Dict[str, Any]] = []
    leases = _live_leases(directory)
    my_ns = _pid_namespace()
    lock_pids: Optional[Dict[Tuple[int, int], int]] = None
    for path, record in leases:
        pid = int(record.get("pid", 0))
        in_container = bool(record.get("pid_ns") and my_ns and record["pid_ns"] != my_ns)
        if in_container:
            if lock_pids is None:
                lock_pids = _proc_lock_pids()
            try:
                st = path.stat()
                pid = lock_pids.get((st.st_dev, st.st_ino), 0) or pid
            except OSError:
                pass
        for logic_id in record.get("chips", []):
            holders.append(
                {
                    "logic_id": int(logic_id),
                    "pid": pid,
                    "container_pid": int(record.get("pid", 0)),
                    "process_name": str(record.get("process_name", "")),
                    "memory_mb": int(record.get("memory_mb_each", 0)),
                    "owner": str(record.get("owner", "")),
                    "in_container": in_container,
                    "foreign": False,
                }
            )
    try:
        state = load_state(directory)
    except StateError:
        state = None
    if state is not None:
        for proc in state["faults"].get("foreign_processes", []):
            holders.append(
                {
                    "logic_id": int(proc["logic_id"]),
                    "pid": int(proc["pid"]),
                    "container_pid": int(proc["pid"]),
                    "process_name": str(proc.get("process_name", "python3")),
                    "memory_mb": int(proc["memory_mb"]),
                    "owner": "foreign",
                    "in_container": False,
                    "foreign": True,
                }
            )
    holders.sort(key=lambda h: (h["logic_id"], h["pid"]))
    return holders


def _holder_text(holder: Dict[str, Any]) -> str:
    return f"pid {holder['pid']} ({holder['process_name']}) holds {holder['memory_mb']} MB"


def acquire_chips(
    logic_ids: List[int],
    memory_mb_each: int,
    *,
    owner: str,
    pid: int,
    process_name: str,
    directory: Optional[Path] = None,
) -> Lease:
    """Take ``logic_ids`` for this process, ``memory_mb_each`` MB of HBM on each.

    Raises ChipError naming the first chip that does not exist, is not healthy (health other
    than "OK"), is already held by a live lease or a foreign process, or lacks the memory.
    The returned Lease keeps the chips until ``release()`` or the process's death.
    """
    directory = _dir(directory)
    ids = [int(i) for i in logic_ids]
    if not ids:
        raise ChipError("no chips requested")
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ChipError(f"chip {dupes[0]} requested more than once")
    if memory_mb_each < 0:
        raise ChipError(f"negative memory request: {memory_mb_each} MB")
    with _locked(directory):
        state = load_state(directory)
        holders = live_holders(directory)
        for logic_id in ids:
            chip = find_chip(state, logic_id)
            label = chip_label(chip)
            if chip["health"] != "OK":
                raise ChipError(f"{label}: health is {chip['health']}")
            held = [h for h in holders if h["logic_id"] == logic_id]
            if held:
                raise ChipError(f"{label} is in use: {_holder_text(held[0])}")
            free = int(chip["hbm_total_mb"]) - int(chip["hbm_base_mb"])
            if memory_mb_each > free:
                raise ChipError(
                    f"{label}: out of memory: {memory_mb_each} MB requested, {free} MB free "
                    f"of {chip['hbm_total_mb']} MB"
                )
        record = {
            "owner": owner,
            "pid": int(pid),
            "process_name": process_name,
            "chips": ids,
            "memory_mb_each": int(memory_mb_each),
            "created": time.time(),
            "pid_ns": _pid_namespace(),
        }
        safe_owner = "".join(c if c.isalnum() or c in "-_." else "_" for c in owner)[:64] or "holder"
        name = f"{safe_owner}-{int(pid)}-{_unique_suffix()}.json"
        leases_dir = directory / LEASES_DIR
        tmp = leases_dir / f".{name}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
            os.fchmod(fd, 0o644)
            final = leases_dir / name
            os.replace(tmp, final)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    return Lease(final, fd, record)


# ---------------------------------------------------------------------------------------------
# Files other tools write from the state


def render_version_info(driver_version: str) -> str:
    """``/usr/local/Ascend/driver/version.info`` as the driver package installs it."""
    return (
        f"Version={driver_version}\n"
        f"ascendhal_version=7.35.23\n"
        f"aicpu_version=1.0\n"
        f"tdt_version=1.0\n"
        f"log_version=1.0\n"
        f"prof_version=2.0\n"
        f"dvppkernels_version=1.1\n"
        f"tsfw_version=1.0\n"
        f"Innerversion=V100R001C{driver_version.split('.')[0]}SPC001B220\n"
        f"compatible_version=[V100R001C30],[V100R001C13],[V100R001C15],[V100R001C17],[V100R001C18],"
        f"[V100R001C19],[V100R001C20],[V100R001C21],[V100R001C23],[V100R001C25]\n"
        f"compatible_version_fw=[7.0.0,7.9.99]\n"
        f"package_version={driver_version}\n"
    )


def render_hccn_conf(state: Dict[str, Any]) -> str:
    """``/etc/hccn.conf`` as ``hccn_tool -i N -ip -s ...`` / ``-netdetect -s`` leave it."""
    lines: List[str] = []
    for dev in state["hccn"]:
        i = dev["device"]
        lines.append(f"address_{i}={dev['ip']}")
        lines.append(f"netmask_{i}={dev['netmask']}")
        lines.append(f"netdetect_{i}={dev['netdetect']}")
        lines.append(f"gateway_{i}={dev['gateway']}")
    return "\n".join(lines) + "\n"


def snapshot(state: Dict[str, Any]) -> Dict[str, Any]:
    """A deep copy (for callers that want to mutate a loaded state without writing it)."""
    import copy

    return copy.deepcopy(state)
