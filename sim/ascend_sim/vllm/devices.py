"""Which chips a simulated vLLM process uses, and holding them.

Like the real runtime: ``ASCEND_RT_VISIBLE_DEVICES`` (comma-separated chip logic ids; unset
means every chip of the node) is the list the process may use; it takes the first
``tp x pp x pcp x local-DP-ranks`` of them, and each must have its device node
``/dev/davinciN`` (plus ``davinci_manager``, ``devmm_svm``, ``hisi_hdc``) -- a container
started without ``--device`` for a chip fails at ``aclrtSetDevice``. The chips are then taken
in the simulated driver (``ascend_sim.state.acquire_chips``) with ``gpu_memory_utilization x
HBM`` each, so ``npu-smi`` shows them busy; a missing, unhealthy or already-held chip is a
startup error naming the chip, as HCCL/ACL would fail. The lease is released on exit (and
the driver frees it if the process dies).

``ASCEND_SIM_SKIP_DEVICE_CHECK=1`` skips the ``/dev`` check (unit tests on a dev machine only).
"""

from __future__ import annotations

import os
from pathlib import Path

from ascend_sim import state as driver
from ascend_sim.vllm.config import StartupError

CONTROL_DEVICES = ("davinci_manager", "devmm_svm", "hisi_hdc")
PROCESS_NAME = "VLLM::EngineCore"


def visible_devices(all_ids: list[int]) -> list[int]:
    """The chip ids named by ``ASCEND_RT_VISIBLE_DEVICES`` (all chips when unset)."""
    raw = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
    if raw is None:
        return list(all_ids)
    ids: list[int] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            ids.append(int(part))
        except ValueError:
            raise StartupError(
                "RuntimeError",
                f"ASCEND_RT_VISIBLE_DEVICES={raw!r} is invalid: {part!r} is not a device id "
                "(aclInit failed, error code 100000)",
            ) from None
    return ids


def _check_device_nodes(chips: list[int], dev_dir: Path) -> None:
    if os.environ.get("ASCEND_SIM_SKIP_DEVICE_CHECK") == "1":
        return
    for name in CONTROL_DEVICES:
        if not (dev_dir / name).exists():
            raise StartupError(
                "RuntimeError",
                f"aclInit failed, error code 507008: {dev_dir / name} does not exist "
                "(start the container with --device for davinci_manager, devmm_svm and hisi_hdc)",
            )
    for chip in chips:
        if not (dev_dir / f"davinci{chip}").exists():
            raise StartupError(
                "RuntimeError",
                f"npu_set_device: aclrtSetDevice(device {chip}) failed, error code 507033: "
                f"{dev_dir}/davinci{chip} does not exist in this container "
                f"(is --device {dev_dir}/davinci{chip} missing?)",
            )


def select_chips(
    needed: int, *, directory: Path | None = None, visible: list[int] | None = None, dev_dir: Path = Path("/dev")
) -> list[int]:
    """The chips this process will use: the first ``needed`` visible ones, checked.

    ``visible`` replaces ``ASCEND_RT_VISIBLE_DEVICES`` (servers embedded in one process).
    """
    try:
        st = driver.load_state(directory)
    except driver.StateError as exc:
        raise StartupError("RuntimeError", f"aclInit failed, error code 507008: no NPU driver found ({exc})") from None
    all_ids = [int(c["logic_id"]) for c in st["chips"]]
    if visible is None:
        visible = visible_devices(all_ids)
    if len(visible) < needed:
        shown = os.environ.get("ASCEND_RT_VISIBLE_DEVICES", "<unset>")
        raise StartupError(
            "ValueError",
            f"World size ({needed}) is larger than the number of available NPUs ({len(visible)}): "
            f"ASCEND_RT_VISIBLE_DEVICES={shown}",
        )
    chips = visible[:needed]
    _check_device_nodes(chips, dev_dir)
    return chips


def acquire(chips: list[int], gpu_memory_utilization: float, *, directory: Path | None = None) -> driver.Lease:
    """Hold ``chips`` with ``utilization x HBM`` each; a ChipError becomes an HCCL-like error."""
    try:
        st = driver.load_state(directory)
        totals = [int(driver.find_chip(st, c)["hbm_total_mb"]) for c in chips]
        memory = int(gpu_memory_utilization * min(totals))
        return driver.acquire_chips(
            chips, memory, owner="vllm", pid=os.getpid(), process_name=PROCESS_NAME, directory=directory
        )
    except driver.ChipError as exc:
        raise StartupError(
            "RuntimeError",
            f"InitHcclComm failed: HCCL error code EI0006 on device {_chip_in(str(exc), chips)}: {exc}",
        ) from None
    except driver.StateError as exc:
        raise StartupError("RuntimeError", f"aclInit failed, error code 507008: no NPU driver found ({exc})") from None


def _chip_in(message: str, chips: list[int]) -> str:
    """The chip id a ChipError message is about (its text starts with ``chip N``)."""
    words = message.split()
    if len(words) > 1 and words[0] == "chip" and words[1].isdigit():
        return words[1]
    return ",".join(str(c) for c in chips)
