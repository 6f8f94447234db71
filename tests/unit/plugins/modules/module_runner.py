"""Run a module's main() in-process and catch its result, as Ansible would receive it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

ROOT = Path(__file__).resolve().parents[4]


class ModuleExit(Exception):
    def __init__(self, result: Dict[str, Any], failed: bool) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


def _exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
    raise ModuleExit(kwargs, failed=False)


def _fail_json(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
    raise ModuleExit(dict(kwargs, msg=msg, failed=True), failed=True)


def run_module(main: Callable[[], None], args: Dict[str, Any]) -> ModuleExit:
    with patch_module_args(args), pytest.MonkeyPatch.context() as mp:
        mp.setattr(basic.AnsibleModule, "exit_json", _exit_json)
        mp.setattr(basic.AnsibleModule, "fail_json", _fail_json)
        with pytest.raises(ModuleExit) as exc:
            main()
    return exc.value


def module_ok(main: Callable[[], None], args: Dict[str, Any]) -> Dict[str, Any]:
    done = run_module(main, args)
    assert not done.failed, done.result["msg"]
    return done.result


def module_failed(main: Callable[[], None], args: Dict[str, Any]) -> Dict[str, Any]:
    done = run_module(main, args)
    assert done.failed, done.result
    return done.result


def adhoc_failure(module: str, args: str, tmp_path: Path) -> Dict[str, Any]:
    """Run ``ansible localhost -m ascend.vllm.<module> -a ARGS -o`` (the real CLI, the collection
    resolved from this checkout) where the module is expected to fail; return its result."""
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="true",
        ANSIBLE_DEPRECATION_WARNINGS="false",
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", f"ascend.vllm.{module}", "-a", args, "-o"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # -o prints "localhost | FAILED! => {...}" on one line (after a note that the task failed).
    line = next(line for line in proc.stdout.splitlines() if line.startswith("localhost | FAILED! => "))
    return json.loads(line.split(" => ", 1)[1])
