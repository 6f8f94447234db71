# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action ascend.vllm.evaluation_report: lm-eval's scores, the Markdown report and the gate
(documented in plugins/modules/evaluation_report.py)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.ascend.vllm.plugins.module_utils.evaluation import (
    EvaluationError,
    gate_failures,
    gate_scores,
    load_results,
    markdown,
    results_file,
    scores,
    table_lines,
)

display = Display()

ARGUMENT_SPEC: Dict[str, Any] = {
    "endpoints": {"type": "list", "elements": "str", "required": True},
    "results_dir": {"type": "path", "required": True},
    "report": {"type": "path"},
    "title": {"type": "str", "default": "Accuracy evaluation"},
    "facts": {"type": "dict", "default": {}},
    "threshold": {"type": "float"},
    "metrics": {"type": "list", "elements": "str", "default": []},
}


def run_folder(results_dir: str, index: int) -> str:
    """Where lm-eval's output for the ``index``-th endpoint (from 0) goes."""
    return os.path.join(results_dir, f"endpoint-{index + 1}")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = False  # there are no results to read in check mode

    def run(self, tmp: Any = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars or {})
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        threshold = args["threshold"]
        if threshold is not None and not 0 <= threshold <= 1:
            raise AnsibleActionFail(f"threshold must lie in [0, 1] (a score), got {threshold}")
        runs: List[Dict[str, Any]] = []
        failures: List[str] = []
        try:
            for index, endpoint in enumerate(args["endpoints"]):
                path = results_file(run_folder(args["results_dir"], index))
                found = scores(load_results(path))
                if not found:
                    raise EvaluationError(f"{path} holds no score")
                gated = gate_scores(found, args["metrics"])
                failed = gate_failures(gated, threshold, endpoint)
                failures += failed
                runs.append(
                    {
                        "endpoint": endpoint,
                        "results": path,
                        "scores": found,
                        "gated": gated,
                        "failures": failed,
                        "threshold_set": threshold is not None,
                    }
                )
        except EvaluationError as exc:
            raise AnsibleActionFail(str(exc)) from None
        report = args["report"] or os.path.join(args["results_dir"], "report.md")
        facts = [(str(k), str(v)) for k, v in args["facts"].items()]
        facts.append(("results folder", args["results_dir"]))
        if threshold is not None:
            gated_on = ", ".join(args["metrics"]) or "the first metric of each task"
            facts.append(("threshold", f"{threshold:g} on {gated_on}"))
        text = markdown(args["title"], facts, runs)
        os.makedirs(os.path.dirname(report) or ".", exist_ok=True)
        with open(report, "w", encoding="utf-8") as handle:
            handle.write(text)
        lines = table_lines(runs)
        display.display("\n".join([*lines, f"Report: {report}"]))
        result.update(
            changed=True,
            report=report,
            lines=lines,
            scores=[
                {"endpoint": r["endpoint"], "task": s.task, "metric": s.metric, "value": s.value, "stderr": s.stderr}
                for r in runs
                for s in r["scores"]
            ],
            gate_failures=failures,
        )
        if failures:
            message = "accuracy gate failed: " + "; ".join(failures)
            result.update(failed=True, msg=f"{message} (report: {report})")
        return result
