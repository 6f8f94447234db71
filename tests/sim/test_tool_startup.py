"""What npu-smi and hccn_tool cost at each start: one process per query (a preflight runs
dozens per node), so their common paths import only what they need, and their zipapps carry
the byte code of the nodes' python3 (sim/images/node/zipapp-bytecode.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from ascend_sim_host.package import write_zipapp

from .conftest import SIM

ADD_BYTECODE = SIM / "images" / "node" / "zipapp-bytecode.py"

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


def loaded_from(zipapp: Path, module: str) -> str:
    """The file a fresh interpreter loads ``module`` from, with ``zipapp`` first on its path."""
    code = f"import sys; sys.path.insert(0, {str(zipapp)!r}); import {module} as m; print(m.__file__)"
    return subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize(
    ("name", "module", "argv"), [("npu-smi", "npu_smi", ["info"]), ("hccn_tool", "hccn_tool", ["-i", "2", "-ip", "-g"])]
)
def test_zipapp_byte_code_is_used_and_changes_no_output(
    a3: Path, tmp_path: Path, name: str, module: str, argv: List[str]
) -> None:
    plain, compiled = tmp_path / "plain" / name, tmp_path / "compiled" / name
    write_zipapp(plain, module)
    write_zipapp(compiled, module)
    added = subprocess.run(
        [sys.executable, str(ADD_BYTECODE), str(compiled)], capture_output=True, text=True, check=True
    )
    assert added.stdout.startswith(f"{compiled}: byte code of ")

    assert loaded_from(plain, "ascend_sim.state").strip().endswith("ascend_sim/state.py")
    assert loaded_from(compiled, "ascend_sim.state").strip().endswith("ascend_sim/state.pyc")
    outputs = [
        subprocess.run([sys.executable, str(app), *argv], capture_output=True, text=True, check=True).stdout
        for app in (plain, compiled)
    ]
    assert outputs[0] == outputs[1] != ""
