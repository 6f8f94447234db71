# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of ascend.vllm.container_health: rounds of the module, progress lines, one failure.

A module cannot print while it runs, and a wait for vLLM to load takes minutes, so this calls
the module (which polls on the node) for ``report_interval`` seconds at a time and prints what
each round found before the next one. The documentation is the module's.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.ascend.vllm.plugins.module_utils.container_health import (
    ARGUMENT_SPEC,
    HEALTHY,
    WAITING,
    failure_lines,
    healthy_line,
    progress_line,
)

MODULE = "ascend.vllm.container_health"

display = Display()


def _show(line: str) -> None:
    # stderr: the stdout of a machine-readable callback (ansible.posix.json) must stay JSON.
    display.display(line, stderr=True)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp  # unused (ActionBase warns about it)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if self._task.check_mode:
            # The module returns at once: nothing was started that could become healthy.
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result
        result.update(self._wait(args, str(task_vars.get("inventory_hostname", "")), task_vars))
        return result

    def _wait(self, args: Mapping[str, Any], host: str, task_vars: Dict[str, Any]) -> Dict[str, Any]:
        """Rounds of the module until all are healthy, one failed, or the deadline passed."""
        order = [c["name"] for c in args["containers"]]
        pending: List[Dict[str, Any]] = [dict(c) for c in args["containers"]]
        latest: Dict[str, Mapping[str, Any]] = {}
        started = args["started"]
        while pending:
            round_args = dict(args, containers=pending, started=started, round_seconds=args["report_interval"])
            answer = self._execute_module(module_name=MODULE, module_args=round_args, task_vars=task_vars)
            if "containers" not in answer:  # bad options, no docker CLI: the module's own failure
                return answer
            # The first round fixed the start on the node's clock; the later ones keep it.
            started = answer["started"]
            for found in answer["containers"]:
                latest[found["name"]] = found
                if found["verdict"] == HEALTHY:
                    _show(healthy_line(host, found))
            results = [latest[name] for name in order]
            if answer.get("failed"):
                return {
                    "failed": True,
                    "changed": False,
                    # One string: Ansible shows its lines as lines (a list would print as a repr).
                    "msg": "\n".join(failure_lines(host, results, args["timeout"], args["log_lines"])),
                    "started": started,
                    "containers": results,
                }
            # A container seen starting again later has restarted: keep the first StartedAt.
            pending = [
                dict(c, started_at=latest[c["name"]]["started_at"])
                for c in pending
                if latest[c["name"]]["verdict"] == WAITING
            ]
            for c in pending:
                _show(progress_line(host, latest[c["name"]], args["timeout"]))
        results = [latest[name] for name in order]
        return {
            "changed": False,
            "msg": f"{len(results)} container(s) healthy",
            "started": started,
            "containers": results,
            "elapsed": {r["name"]: r["elapsed"] for r in results},
        }
