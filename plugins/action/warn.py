# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ascend.vllm.warn: show messages as Ansible warnings (documented in plugins/modules/warn.py)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def warning_messages(msg: Any) -> List[str]:
    """The messages to show for ``msg``: a string or a list of strings, empty ones left out.

    Anything else is refused: a number or a dict shown as a warning would not be what was meant,
    and ``type: list`` would split a lone string at its commas.
    """
    if not isinstance(msg, list):
        if not isinstance(msg, str):
            raise AnsibleActionFail(f"msg must be a string or a list of strings, not {_type_name(msg)}")
        msg = [msg]
    bad = [f"item {index} is {_type_name(item)}" for index, item in enumerate(msg) if not isinstance(item, str)]
    if bad:
        raise AnsibleActionFail("msg must be a string or a list of strings: " + ", ".join(bad))
    return [item for item in msg if item.strip()]


def _type_name(value: Any) -> str:
    """The builtin type's name (templated values are tagged subclasses of int, dict...)."""
    return next(cls.__name__ for cls in type(value).__mro__ if cls.__module__ == "builtins")


class ActionModule(ActionBase):
    """Return each message as a task warning, which every callback shows as ``[WARNING]: ...``."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        # [1]: the validated arguments ([0] is the validation result, already acted upon).
        args = self.validate_argument_spec(argument_spec={"msg": {"type": "raw", "required": True}})[1]
        result = super().run(tmp, task_vars)
        messages = warning_messages(args["msg"])
        result.update(changed=False, messages=messages)
        if messages:
            # The task result's warnings are what the callbacks print as "[WARNING]: ..." (and
            # what AWX records as warnings), unlike a debug task's output.
            result["warnings"] = list(messages)
        else:
            result.update(skipped=True, skipped_reason="No message to show")
        return result
