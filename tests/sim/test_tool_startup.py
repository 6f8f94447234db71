"""What npu-smi and hccn_tool cost at each start: one process per query (a preflight runs
dozens per node), so their common paths import only what they need."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from .conftest import SIM

# Imported only by the commands (or the state writers) that need them.
NOT_AT_STARTUP = ["secrets", "subprocess", "copy", "ascend_sim.profiles"]


def modules_after(module: str, argv: List[str], state_dir: Path) -> List[str]:
    """Which of NOT_AT_STARTUP a fresh interpreter has imported after ``module.main(argv)``."""
    code = (
        f"import sys; sys.path.insert(0, {str(SIM)!r})\n"
        f"from ascend_sim import {module} as tool\n"
        f"rc = tool.main({argv!r})\n"
        f"print(__import__('json').dumps([rc, [m for m in {NOT_AT_STARTUP!r} if m in sys.modules]]))\n"
    )
    # -I -S: no site, no user paths; what is imported is the tool's own doing.
    res = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"ASCEND_SIM_STATE_DIR": str(state_dir)},
    )
    rc, imported = json.loads(res.stdout.splitlines()[-1])
    assert rc == 0, res.stdout
    return imported


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("hccn_tool", ["-i", "0", "-link", "-g"]),
        ("hccn_tool", ["-i", "3", "-ip", "-g"]),
        ("hccn_tool", ["-i", "15", "-net_health", "-g"]),
        ("npu_smi", ["info"]),
        ("npu_smi", ["info", "-t", "health", "-i", "0"]),
    ],
)
def test_queries_import_only_what_they_need(a3: Path, module: str, argv: List[str]) -> None:
    assert modules_after(module, argv, a3) == []
