# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of ascend.vllm.prometheus_targets: rounds of the module, progress lines, one failure.

A module cannot print while it runs, so this calls it for ``report_interval`` seconds at a time
and prints what each round found. The documentation is the module's.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.ascend.vllm.plugins.module_utils.prometheus import (
    TARGETS_ARGUMENT_SPEC,
    failure_message,
    progress_line,
)

MODULE = "ascend.vllm.prometheus_targets"

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp  # unused (ActionBase warns about it)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=TARGETS_ARGUMENT_SPEC)
        host = str(task_vars.get("inventory_hostname", ""))
        if self._task.check_mode:
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result
        began = time.monotonic()
        while True:
            left = args["timeout"] - (time.monotonic() - began)
            round_args = dict(args, round_seconds=max(0.0, min(args["report_interval"], left)))
            answer = self._execute_module(module_name=MODULE, module_args=round_args, task_vars=task_vars)
            if "targets" not in answer:  # bad options: the module's own failure
                result.update(answer)
                return result
            states = answer["targets"]
            elapsed = time.monotonic() - began
            if answer["up"]:
                display.display(progress_line(host, states, elapsed), stderr=True)
                result.update(changed=False, targets=states, up=True, msg=f"{len(states)} target(s) up")
                return result
            if elapsed >= args["timeout"]:
                message = failure_message(host, args["url"], states, args["timeout"])
                result.update(failed=True, changed=False, targets=states, up=False, msg=message)
                return result
            display.display(progress_line(host, states, elapsed), stderr=True)
