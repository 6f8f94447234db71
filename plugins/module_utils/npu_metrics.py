# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``npu-smi info``, as parsed by npu_smi.py, in the Prometheus text format. Pure.

The node exporter's textfile collector publishes the file this renders (the role
``monitoring`` runs ``python3 -m ascend_npu_exporter`` from a systemd timer, and that package
carries this module and npu_smi.py), so the NPUs are scraped with the host. No import: the
module is copied into that package as it is.

Series, per chip (labels ``device``: the chip's index in npu-smi's table, the logical id that
``ASCEND_RT_VISIBLE_DEVICES`` and the plan's ``chips`` use; ``npu``, ``chip``):

- ``ascend_npu_chip_healthy`` 1 when npu-smi says ``OK``, else 0 (label ``health``: what it says)
- ``ascend_npu_hbm_used_bytes``, ``ascend_npu_hbm_total_bytes`` (npu-smi prints MiB)
- ``ascend_npu_aicore_utilization_ratio`` (npu-smi prints percent)
- ``ascend_npu_temperature_celsius``, ``ascend_npu_power_watts`` (absent for a chip whose power
  npu-smi does not print: an A3's second die)
- ``ascend_npu_processes``: processes holding the chip

and per host ``ascend_npu_smi_up`` (1 when npu-smi was read, else 0 and no chip series:
a stale health value must not look fine) and ``ascend_npu_chips``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

MIB = 1024 * 1024

# name -> help text; the order of the file.
HELP = {
    "ascend_npu_smi_up": "1 when npu-smi info was read on the last run, 0 when it failed (no chip series then).",
    "ascend_npu_chips": "Chips npu-smi info lists.",
    "ascend_npu_chip_healthy": "1 when npu-smi reports the chip's health OK, else 0; label health is what it reports.",
    "ascend_npu_hbm_used_bytes": "HBM in use on the chip.",
    "ascend_npu_hbm_total_bytes": "HBM of the chip.",
    "ascend_npu_aicore_utilization_ratio": "AICore utilization of the chip, 0 to 1.",
    "ascend_npu_temperature_celsius": "Chip temperature.",
    "ascend_npu_power_watts": "NPU power draw, reported on its first chip.",
    "ascend_npu_processes": "Processes holding the chip.",
}


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[Tuple[str, Any]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs) + "}"


def _number(value: float) -> str:
    return repr(float(value))


def _holders(chip: Mapping[str, Any], processes: Sequence[Mapping[str, Any]]) -> int:
    # A process row without a chip column belongs to every chip of its NPU (as npu_smi reads it).
    return sum(1 for p in processes if p["npu"] == chip["npu"] and p.get("chip") in (None, chip["chip"]))


def npu_textfile(info: Optional[Mapping[str, Any]]) -> str:
    """The textfile for ``info`` (``parse_npu_smi_info``'s result), or for a failed read (None)."""
    samples: Dict[str, List[str]] = {name: [] for name in HELP}
    samples["ascend_npu_smi_up"].append(f"ascend_npu_smi_up {_number(1 if info is not None else 0)}")
    if info is not None:
        chips = info["chips"]
        processes = info.get("processes") or []
        samples["ascend_npu_chips"].append(f"ascend_npu_chips {_number(len(chips))}")
        for index, chip in enumerate(chips):
            ids: List[Tuple[str, Any]] = [("device", index), ("npu", chip["npu"]), ("chip", chip["chip"])]
            health = _labels([*ids, ("health", chip["health"]), ("name", chip["name"])])
            samples["ascend_npu_chip_healthy"].append(
                f"ascend_npu_chip_healthy{health} {_number(chip['health'] == 'OK')}"
            )
            values = {
                "ascend_npu_hbm_used_bytes": chip["hbm_used_mb"] * MIB,
                "ascend_npu_hbm_total_bytes": chip["hbm_total_mb"] * MIB,
                "ascend_npu_aicore_utilization_ratio": chip["aicore_pct"] / 100,
                "ascend_npu_temperature_celsius": chip["temp_c"],
                "ascend_npu_power_watts": chip["power_w"],
                "ascend_npu_processes": _holders(chip, processes),
            }
            for name, value in values.items():
                if value is not None:
                    samples[name].append(f"{name}{_labels(ids)} {_number(value)}")
    lines: List[str] = []
    for name, text in HELP.items():
        if samples[name]:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", *samples[name]]
    return "\n".join(lines) + "\n"
