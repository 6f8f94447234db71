# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parser and checks for the ``npu-smi info`` table (the Ascend driver's NPU status tool).

Pure functions, no Ansible imports: ``plugins/modules/npu_smi_info.py`` runs the tool and
these turn its text into data. The layouts read are the ones real machines print (pastes in
vLLM-Ascend, MindIE, llama.cpp and other public issues and tests):

* a version header ``| npu-smi 25.2.0   Version: 25.2.0 |`` (tool, then driver version; very
  old tools print no ``Version:``);
* the chip table: two header rows, then two rows per chip::

    | NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|
    | Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |
    +===========================+===============+====================================================+
    | 0     Ascend910           | OK            | 178.5       36                0    / 0             |
    | 0     0                   | 0000:9D:00.0  | 0           0    / 0          3416 / 65536         |

  Atlas 800I A2 (910B*): one chip per NPU, the second header is ``Chip`` alone and the chip
  row prints no Phy-ID. Atlas 800 A3 (Ascend910): two dies per NPU, ``Chip  Phy-ID``, and the
  second die prints power as ``-`` (the NPU's power is reported on die 0);
* the process table: ``| NPU  Chip | Process id | Process name | Process memory(MB) |``, then
  per NPU either process rows or ``| No running processes found in NPU 3 |``. npu-smi 26.x
  prints a wider table with a fifth ``Process id in container`` column. A process started in
  a container may show an empty name.

Column widths differ between releases (23.x, 24.x/25.x, 26.x), so rows are split on ``|`` and
read by their content, never by character offsets. A table row that cannot be read raises
:class:`NpuSmiParseError` naming its line: silently dropping a chip or a process would make
the health and idleness checks pass on a machine where they should fail.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

HEALTHY = "OK"
# What npu-smi prints for a value it does not have: "-" for the power of an A3's second die,
# "NA" for the power of Atlas 300I (310P) cards.
NOT_PRINTED = ("-", "NA")

CHIP_KEYS = (
    "npu",
    "chip",
    "phy_id",
    "name",
    "health",
    "power_w",
    "temp_c",
    "aicore_pct",
    "hbm_used_mb",
    "hbm_total_mb",
    "bus_id",
)
PROCESS_KEYS = ("npu", "chip", "pid", "name", "memory_mb")

_SEPARATOR_RE = re.compile(r"^\+[-=+]+\+$")
_VERSION_RE = re.compile(r"^npu-smi\s+(?P<tool>\S+)(?:\s+Version:\s*(?P<driver>\S+))?$")
_NO_PROCESS_RE = re.compile(r"^No running processes found in NPU\s+(?P<npu>\d+)$")
_NPU_NAME_RE = re.compile(r"^(?P<npu>\d+)\s+(?P<name>\S.*)$")
_CHIP_PHY_RE = re.compile(r"^(?P<chip>\d+)(?:\s+(?P<phy>\d+|-|NA))?$")
# Power(W) Temp(C) Hugepages-Usage(page). Temperature, AICore and HBM are required integers:
# the pastes show "-"/"NA" only for power (and Bus-Id "NA" on 310 cards), so anything else there
# means a layout this parser does not know, which must not be guessed at.
_POWER_TEMP_RE = re.compile(r"^(?P<power>\d+(?:\.\d+)?|-|NA)\s+(?P<temp>-?\d+)\s+\d+\s*/\s*\d+$")
# AICore(%) Memory-Usage(MB) HBM-Usage(MB); a five-digit used value eats the space: "53444/ 65536".
_AICORE_HBM_RE = re.compile(r"^(?P<aicore>\d+)\s+\d+\s*/\s*\d+\s+(?P<used>\d+)\s*/\s*(?P<total>\d+)$")
_NPU_CHIP_RE = re.compile(r"^(?P<npu>\d+)(?:\s+(?P<chip>\d+))?$")
_INT_RE = re.compile(r"^\d+$")


class NpuSmiParseError(ValueError):
    """``npu-smi info`` output that does not have the expected form.

    ``line_no`` (1-based) and ``line`` name the offending line; both are ``None`` when the
    problem is the output as a whole (no table, a table cut short).
    """

    def __init__(self, message: str, line_no: Optional[int] = None, line: Optional[str] = None) -> None:
        self.message = message
        self.line_no = line_no
        self.line = line
        where = f"line {line_no}: " if line_no is not None else ""
        text = f"{where}{message}"
        if line is not None:
            text += f": {line!r}"
        super().__init__(text)


class NpuSmiCommandError(Exception):
    """``npu-smi info`` failed or printed what the parser cannot read.

    ``str()`` names the command and why; ``details`` are the extra fields of the module
    failure (cmd, rc, stdout, stderr).
    """

    def __init__(self, msg: str, **details: Any) -> None:
        self.details = details
        super().__init__(msg)


def _cells(line: str) -> List[str]:
    return [cell.strip() for cell in line[1:-1].split("|")]


def _is_chip_header_1(cells: Sequence[str]) -> bool:
    return len(cells) >= 3 and cells[0].startswith("NPU") and cells[1] == "Health"


def _is_chip_header_2(cells: Sequence[str]) -> bool:
    return len(cells) >= 3 and cells[0].startswith("Chip") and cells[1] == "Bus-Id"


def _is_process_header(cells: Sequence[str]) -> bool:
    return len(cells) >= 4 and cells[0].startswith("NPU") and cells[1] == "Process id"


class _Parser:
    """One pass over the lines; the headers switch between the chip and the process table."""

    def __init__(self) -> None:
        self.tool_version: Optional[str] = None
        self.driver_version: Optional[str] = None
        self.section = "start"  # start -> chip_header -> chips -> processes
        self.chips: List[Dict[str, Any]] = []
        self.processes: List[Dict[str, Any]] = []
        self.pending: Optional[Tuple[int, str, Dict[str, Any]]] = None  # a chip's first row
        self.process_columns = 0
        self.npus_in_process_table: List[int] = []

    def feed(self, line_no: int, line: str) -> None:
        if not line or _SEPARATOR_RE.match(line):
            if line:
                self._expect_no_pending()
            return
        if not (line.startswith("|") and line.endswith("|")):
            if line.startswith(("|", "+")):
                raise NpuSmiParseError("unrecognised table line", line_no, line)
            # Text outside the table (a driver warning printed before it) is not a row.
            return
        cells = _cells(line)
        if self._header(line_no, line, cells):
            return
        if self.section == "chips":
            self._chip_row(line_no, line, cells)
        elif self.section == "processes":
            self._process_row(line_no, line, cells)
        else:
            raise NpuSmiParseError("unrecognised row outside the chip and process tables", line_no, line)

    def _header(self, line_no: int, line: str, cells: List[str]) -> bool:
        version = _VERSION_RE.match(cells[0]) if len(cells) == 1 else None
        if version:
            if self.tool_version is not None:
                raise NpuSmiParseError("a second npu-smi version header", line_no, line)
            self.tool_version = version.group("tool")
            self.driver_version = version.group("driver")
            return True
        if _is_chip_header_1(cells):
            self._expect_no_pending()
            if self.section != "start":
                raise NpuSmiParseError("a second chip table header", line_no, line)
            self.section = "chip_header"
            return True
        if _is_chip_header_2(cells):
            if self.section != "chip_header":
                raise NpuSmiParseError("chip table header row out of place", line_no, line)
            if "HBM-Usage" not in cells[2]:
                # Atlas 300I/310 cards print DDR Memory-Usage only; there is no HBM to report.
                raise NpuSmiParseError("chip table without an HBM-Usage column is not supported", line_no, line)
            self.section = "chips"
            return True
        if self.section == "chip_header":
            raise NpuSmiParseError("expected the second chip table header (Chip | Bus-Id | ...)", line_no, line)
        if _is_process_header(cells):
            self._expect_no_pending()
            if self.section != "chips":
                raise NpuSmiParseError("process table header before the chip table", line_no, line)
            self.section = "processes"
            self.process_columns = len(cells)
            return True
        return False

    def _expect_no_pending(self) -> None:
        if self.pending is not None:
            line_no, line = self.pending[0], self.pending[1]
            raise NpuSmiParseError("chip row without its second line (Chip / Bus-Id / HBM-Usage)", line_no, line)

    def _chip_row(self, line_no: int, line: str, cells: List[str]) -> None:
        if len(cells) != 3:
            raise NpuSmiParseError(f"chip row with {len(cells)} columns, expected 3", line_no, line)
        if self.pending is None:
            self.pending = (line_no, line, _first_chip_row(line_no, line, cells))
            return
        first = self.pending[2]
        self.pending = None
        chip = dict(first, **_second_chip_row(line_no, line, cells))
        for seen in self.chips:
            if (seen["npu"], seen["chip"]) == (chip["npu"], chip["chip"]):
                raise NpuSmiParseError(f"npu {chip['npu']} chip {chip['chip']} listed twice", line_no, line)
        self.chips.append({key: chip[key] for key in CHIP_KEYS})

    def _process_row(self, line_no: int, line: str, cells: List[str]) -> None:
        if len(cells) == 1:
            idle = _NO_PROCESS_RE.match(cells[0])
            if not idle:
                raise NpuSmiParseError("unrecognised line in the process table", line_no, line)
            self.npus_in_process_table.append(int(idle.group("npu")))
            return
        if len(cells) != self.process_columns:
            raise NpuSmiParseError(
                f"process row with {len(cells)} columns, the header has {self.process_columns}", line_no, line
            )
        process = _process(line_no, line, cells)
        self.npus_in_process_table.append(process["npu"])
        self.processes.append(process)

    def finish(self) -> Dict[str, Any]:
        self._expect_no_pending()
        if self.tool_version is None:
            raise NpuSmiParseError("no 'npu-smi <version>' header: this is not npu-smi info output")
        if self.section in ("start", "chip_header"):
            raise NpuSmiParseError("no chip table (NPU / Name / Health header) in the output")
        if self.section != "processes":
            raise NpuSmiParseError("the output ends before the process table (cut short?)")
        missing = sorted({c["npu"] for c in self.chips} - set(self.npus_in_process_table))
        if missing:
            # npu-smi lists every NPU of the chip table in the process table, idle or not.
            listed = ", ".join(str(n) for n in missing)
            raise NpuSmiParseError(f"the process table has no entry for NPU {listed} (output cut short?)")
        return {
            "npu_smi_version": self.tool_version,
            "driver_version": self.driver_version,
            "chips": self.chips,
            "processes": self.processes,
        }


def _first_chip_row(line_no: int, line: str, cells: List[str]) -> Dict[str, Any]:
    npu_name = _NPU_NAME_RE.match(cells[0])
    if not npu_name:
        raise NpuSmiParseError("expected '<NPU> <Name>' in the first column of a chip row", line_no, line)
    health = cells[1]
    if not health or " " in health:
        raise NpuSmiParseError("expected one Health word in the second column of a chip row", line_no, line)
    power_temp = _POWER_TEMP_RE.match(cells[2])
    if not power_temp:
        raise NpuSmiParseError("expected 'Power(W) Temp(C) used / total' in the third column", line_no, line)
    power = power_temp.group("power")
    return {
        "npu": int(npu_name.group("npu")),
        "name": npu_name.group("name"),
        "health": health,
        "power_w": None if power in NOT_PRINTED else float(power),
        "temp_c": int(power_temp.group("temp")),
    }


def _second_chip_row(line_no: int, line: str, cells: List[str]) -> Dict[str, Any]:
    chip_phy = _CHIP_PHY_RE.match(cells[0])
    if not chip_phy:
        raise NpuSmiParseError("expected '<Chip> [Phy-ID]' in the first column of a chip row", line_no, line)
    bus_id = cells[1]
    if not bus_id or " " in bus_id:
        raise NpuSmiParseError("expected a Bus-Id in the second column of a chip row", line_no, line)
    usage = _AICORE_HBM_RE.match(cells[2])
    if not usage:
        raise NpuSmiParseError(
            "expected 'AICore used / total used / total' (AICore, Memory-Usage, HBM-Usage) in the third column",
            line_no,
            line,
        )
    phy = chip_phy.group("phy")
    return {
        "chip": int(chip_phy.group("chip")),
        "phy_id": int(phy) if phy is not None and phy not in NOT_PRINTED else None,
        "bus_id": bus_id,
        "aicore_pct": int(usage.group("aicore")),
        "hbm_used_mb": int(usage.group("used")),
        "hbm_total_mb": int(usage.group("total")),
    }


def _process(line_no: int, line: str, cells: List[str]) -> Dict[str, Any]:
    npu_chip = _NPU_CHIP_RE.match(cells[0])
    if not npu_chip:
        raise NpuSmiParseError("expected '<NPU> [Chip]' in the first column of a process row", line_no, line)
    if not _INT_RE.match(cells[1]):
        raise NpuSmiParseError("expected a numeric Process id", line_no, line)
    if not _INT_RE.match(cells[3]):
        raise NpuSmiParseError("expected a numeric Process memory(MB)", line_no, line)
    # 26.x: "Process id in container" is a pid, or NA for a process started on the host.
    if len(cells) > 4 and not (_INT_RE.match(cells[4]) or cells[4] in NOT_PRINTED):
        raise NpuSmiParseError("expected a pid or NA as Process id in container", line_no, line)
    chip = npu_chip.group("chip")
    return {
        "npu": int(npu_chip.group("npu")),
        "chip": int(chip) if chip is not None else None,
        "pid": int(cells[1]),
        "name": cells[2],
        "memory_mb": int(cells[3]),
    }


def parse_npu_smi_info(text: str) -> Dict[str, Any]:
    """Read the output of ``npu-smi info``.

    Returns ``{npu_smi_version, driver_version, chips, processes}``, chips and processes in
    the order npu-smi prints them. Raises :class:`NpuSmiParseError` on anything it cannot read.
    """
    parser = _Parser()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        parser.feed(line_no, raw.strip())
    return parser.finish()


def read_npu_smi_info(run: Callable[[List[str]], Tuple[int, str, str]], tool: str) -> Dict[str, Any]:
    """Run ``tool info`` with ``run`` (a module's run_command) and parse it.

    Raises :class:`NpuSmiCommandError` on a non-zero exit (showing npu-smi's output, such as
    ``dcmi module initialize failed. ret is -8005``) and on output it cannot read.
    """
    argv = [tool, "info"]
    cmd = shlex.join(argv)
    rc, out, err = run(argv)
    if rc != 0:
        output = "\n".join(part.strip() for part in (out, err) if part.strip())
        raise NpuSmiCommandError(
            f"'{cmd}' failed (rc={rc}): {output or '(no output)'}", cmd=cmd, rc=rc, stdout=out, stderr=err
        )
    try:
        return parse_npu_smi_info(out)
    except NpuSmiParseError as exc:
        raise NpuSmiCommandError(
            f"cannot read the output of '{cmd}': {exc}", cmd=cmd, rc=rc, stdout=out, stderr=err
        ) from None


# ---------------------------------------------------------------------------------------------
# Summary and checks. A chip's index is its position in the chip table (0-based): the logical
# device id that ASCEND_RT_VISIBLE_DEVICES and vLLM use, on a host where every chip is visible.


def chip_label(chips: Sequence[Dict[str, Any]], index: int) -> str:
    chip = chips[index]
    return f"npu {chip['npu']} chip {chip['chip']} (index {index})"


def _holds(process: Dict[str, Any], chip: Dict[str, Any]) -> bool:
    # A process row without a chip column belongs to every chip of its NPU.
    return process["npu"] == chip["npu"] and process["chip"] in (None, chip["chip"])


def _indexes_of(process: Dict[str, Any], chips: Sequence[Dict[str, Any]]) -> List[int]:
    return [i for i, chip in enumerate(chips) if _holds(process, chip)]


def summarize(chips: Sequence[Dict[str, Any]], processes: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Counts, the chips whose health is not OK, and the chips that processes hold."""
    unhealthy = [
        {"index": i, "npu": c["npu"], "chip": c["chip"], "health": c["health"]}
        for i, c in enumerate(chips)
        if c["health"] != HEALTHY
    ]
    busy = []
    for i, chip in enumerate(chips):
        holders = [p for p in processes if _holds(p, chip)]
        if holders:
            busy.append(
                {
                    "index": i,
                    "npu": chip["npu"],
                    "chip": chip["chip"],
                    "pids": sorted({p["pid"] for p in holders}),
                    "memory_mb": sum(p["memory_mb"] for p in holders),
                }
            )
    return {
        "chip_count": len(chips),
        "npu_count": len({c["npu"] for c in chips}),
        "process_count": len(processes),
        "unhealthy_chips": unhealthy,
        "busy_chips": busy,
    }


def check_expected_chips(chips: Sequence[Dict[str, Any]], expected: Iterable[int]) -> List[str]:
    """One problem per expected chip index that npu-smi does not list."""
    count = len(chips)
    listed = f"indexes 0-{count - 1}" if count else "no chip"
    return [
        f"chip index {index} not found: npu-smi lists {count} chip(s) ({listed})"
        for index in sorted(set(expected))
        if not 0 <= index < count
    ]


def check_min_chips(chips: Sequence[Dict[str, Any]], min_chips: int) -> List[str]:
    if len(chips) >= min_chips:
        return []
    return [f"npu-smi lists {len(chips)} chip(s), expected at least {min_chips}"]


def _selected(chips: Sequence[Dict[str, Any]], indexes: Optional[Iterable[int]]) -> List[int]:
    if indexes is None:
        return list(range(len(chips)))
    return sorted({i for i in indexes if 0 <= i < len(chips)})


def check_healthy(chips: Sequence[Dict[str, Any]], indexes: Optional[Iterable[int]] = None) -> List[str]:
    """One problem per chip (of ``indexes``, default all) whose health is not OK."""
    return [
        f"{chip_label(chips, i)}: health {chips[i]['health']}"
        for i in _selected(chips, indexes)
        if chips[i]["health"] != HEALTHY
    ]


def check_no_processes(
    chips: Sequence[Dict[str, Any]],
    processes: Sequence[Dict[str, Any]],
    indexes: Optional[Iterable[int]] = None,
) -> List[str]:
    """One problem per process holding a chip (of ``indexes``, default all)."""
    selected = set(_selected(chips, indexes))
    problems = []
    for process in processes:
        held = [i for i in _indexes_of(process, chips) if i in selected]
        if not held and indexes is None:
            # Not in the chip table at all: still a process on an NPU, so still busy.
            problems.append(f"npu {process['npu']}: {_describe(process)}")
        problems += [f"{chip_label(chips, i)}: {_describe(process)}" for i in held]
    return problems


def _describe(process: Dict[str, Any]) -> str:
    name = f"'{process['name']}'" if process["name"] else "(name not shown)"
    return f"held by pid {process['pid']} {name} using {process['memory_mb']} MB"


def run_checks(
    facts: Dict[str, Any],
    min_chips: Optional[int] = None,
    require_healthy: bool = False,
    require_no_processes: bool = False,
    expected_chips: Optional[Sequence[int]] = None,
) -> List[str]:
    """Every problem the requested checks find, in a stable order."""
    chips, processes = facts["chips"], facts["processes"]
    problems: List[str] = []
    if min_chips is not None:
        problems += check_min_chips(chips, min_chips)
    if expected_chips is not None:
        problems += check_expected_chips(chips, expected_chips)
    if require_healthy:
        problems += check_healthy(chips, expected_chips)
    if require_no_processes:
        problems += check_no_processes(chips, processes, expected_chips)
    return problems
