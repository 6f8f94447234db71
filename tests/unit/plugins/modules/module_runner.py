"""Run a module's main() in-process and catch its result, as Ansible would receive it."""

from __future__ import annotations

from typing import Any, Callable, Dict

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


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
