"""Default device tables of the simulated node profiles.

``a3``: an Atlas A3 server (e.g. Atlas 800T/800I A3): 8 NPU modules of 2 dies each, shown
by npu-smi as 16 chips named ``Ascend910`` (NPU 0..7, chip 0 and 1, Phy-ID 0..15, the
module's power only on chip 0), 64 GB HBM per die.
``a2``: an Atlas 800I A2 server: 8 single-die ``910B3`` chips, 64 GB HBM each.

Everything here is idle-machine data; load (HBM used, processes) comes from the leases and
fault table in the state directory.
"""

from __future__ import annotations

from typing import Any, Dict, List

PROFILES = ("a3", "a2")

DEFAULT_NPU_SMI_VERSION = "25.2.0"
DEFAULT_DRIVER_VERSION = "25.2.0"
DEFAULT_FIRMWARE_VERSION = "7.7.0.6.236"

# PCI bus ids in davinci order, as `npu-smi info` prints them on real servers
# (A3: vllm-ascend issue #4930, npu-smi 25.2.3; A2 910B3: npu-smi 26.1.0 capture).
_A3_BUS_IDS = [
    "0000:9D:00.0",
    "0000:9F:00.0",
    "0000:99:00.0",
    "0000:9B:00.0",
    "0000:95:00.0",
    "0000:97:00.0",
    "0000:91:00.0",
    "0000:93:00.0",
    "0000:8D:00.0",
    "0000:8F:00.0",
    "0000:89:00.0",
    "0000:8B:00.0",
    "0000:85:00.0",
    "0000:87:00.0",
    "0000:81:00.0",
    "0000:83:00.0",
]
_A2_BUS_IDS = [
    "0000:C1:00.0",
    "0000:C2:00.0",
    "0000:81:00.0",
    "0000:82:00.0",
    "0000:01:00.0",
    "0000:02:00.0",
    "0000:41:00.0",
    "0000:42:00.0",
]

# Idle readings, varied a little per chip so the tables look like a real machine.
_A3_BASE_MB = [3416, 3195, 3415, 3193, 3412, 3196, 3414, 3194, 3413, 3192, 3411, 3197, 3416, 3195, 3410, 3193]
_A2_BASE_MB = [3386, 3383, 3384, 3381, 3385, 3382, 3387, 3380]
_TEMPS = [36, 37, 35, 36, 38, 37, 36, 35, 37, 36, 38, 36, 35, 37, 36, 38]
_A3_POWER = [166.2, 171.4, 168.9, 165.0, 172.3, 167.7, 169.1, 170.6]
_A2_POWER = [93.6, 91.8, 95.2, 92.4, 94.1, 90.9, 96.0, 92.7]

PROFILE_INFO: Dict[str, Dict[str, Any]] = {
    "a3": {
        "description": "Atlas A3 (8 NPUs x 2 dies, Ascend910)",
        "chip_name": "Ascend910",
        "npu_count": 8,
        "chips_per_npu": 2,
        "hbm_total_mb": 65536,
        "board_id": "0xb0",
        "product_name": "IT22SMDC",
        "model": "NA",
        "pci_device_id": "0xD803",
        "subsystem_device_id": "0x3005",
        "aicore_count": 24,
    },
    "a2": {
        "description": "Atlas 800I A2 (8 NPUs, 910B3)",
        "chip_name": "910B3",
        "npu_count": 8,
        "chips_per_npu": 1,
        "hbm_total_mb": 65536,
        "board_id": "0x65",
        "product_name": "IT21HMDB02-B2",
        "model": "NA",
        "pci_device_id": "0xD802",
        "subsystem_device_id": "0x3003",
        "aicore_count": 20,
    },
}


def chip_count(profile: str) -> int:
    info = profile_info(profile)
    return int(info["npu_count"]) * int(info["chips_per_npu"])


def profile_info(profile: str) -> Dict[str, Any]:
    try:
        return PROFILE_INFO[profile]
    except KeyError:
        raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}") from None


def default_chips(profile: str) -> List[Dict[str, Any]]:
    """The chip records of an idle, healthy node of this profile, in logic-id order."""
    info = profile_info(profile)
    per_npu = int(info["chips_per_npu"])
    chips: List[Dict[str, Any]] = []
    for logic_id in range(chip_count(profile)):
        npu, chip = divmod(logic_id, per_npu)
        if profile == "a3":
            power = _A3_POWER[npu] if chip == 0 else None
            bus_id = _A3_BUS_IDS[logic_id]
            base = _A3_BASE_MB[logic_id]
            phy_id: Any = logic_id
        else:
            power = _A2_POWER[npu]
            bus_id = _A2_BUS_IDS[logic_id]
            base = _A2_BASE_MB[logic_id]
            phy_id = None
        chips.append(
            {
                "logic_id": logic_id,
                "npu": npu,
                "chip": chip,
                "phy_id": phy_id,
                "name": info["chip_name"],
                "bus_id": bus_id,
                "health": "OK",
                "power_w": power,
                "temp_c": _TEMPS[logic_id],
                "aicore_pct": 0,
                "aicpu_pct": 0,
                "ctrlcpu_pct": 3,
                "memory_used_mb": 0,
                "memory_total_mb": 0,
                "hbm_total_mb": int(info["hbm_total_mb"]),
                "hbm_base_mb": base,
                "hugepages_used": 0,
                "hugepages_total": 0,
                "serial_number": f"SIM{profile.upper()}{logic_id:04d}{npu:02d}{chip}",
                "vdie_id": f"{0x5A3B0000 + logic_id:08X} 2E8A13CE 30140A04 C1C4{logic_id:04X} 10A30200",
            }
        )
    return chips
