# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of ascend.vllm.pd_proxy_backends: rounds of the module, progress lines, one failure.

A drain waits for the longest request in flight (minutes for a long decode), and a module
cannot print while it runs: this calls the module for ``report_interval`` seconds at a time and
prints what each round left to wait for. The documentation is the module's.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.ascend.vllm.plugins.module_utils.pd_proxy_backends import (
    ARGUMENT_SPEC,
    failure_message,
    progress_line,
)

MODULE = "ascend.vllm.pd_proxy_backends"

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp  # unused (ActionBase warns about it)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        host = str(task_vars.get("inventory_hostname", ""))
        changed = False
        changed_backends: list = []
        started = args.get("started")
        while True:
            round_args = dict(args, started=started, round_seconds=args["report_interval"])
            answer = self._execute_module(module_name=MODULE, module_args=round_args, task_vars=task_vars)
            if answer.get("failed") or "done" not in answer:
                answer["msg"] = f"{host}: {answer.get('msg', 'the module failed')}"
                result.update(answer)
                return result
            started = answer["started"]
            changed = changed or answer["changed"]
            changed_backends += answer["changed_backends"]
            answer.update(changed=changed, changed_backends=changed_backends)
            if answer["done"]:
                result.update(answer)
                return result
            if answer["timed_out"]:
                message = failure_message(host, answer["wait_for"], answer["pending"], args["timeout"])
                result.update(answer, failed=True, msg=message)
                return result
            # stderr: the stdout of a machine-readable callback (ansible.posix.json) stays JSON.
            display.display(progress_line(host, answer["wait_for"], answer["pending"], answer["elapsed"]), stderr=True)
