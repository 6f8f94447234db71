# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action ascend.vllm.summary: print the deployment's closing summary table once."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.ascend.vllm.plugins.module_utils.summary import summary_lines

display = Display()

ARGUMENT_SPEC: Dict[str, Any] = {
    "plan": {"type": "dict", "required": True},
    "probes": {"type": "list", "elements": "dict", "default": []},
    "health": {"type": "dict", "default": {}},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars or {})
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        lines = summary_lines(args["plan"], args["probes"], args["health"])
        display.display("\n".join(lines))
        result.update(changed=False, lines=lines)
        return result
