# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action ascend.vllm.benchmark_report: the report of `vllm bench serve` results, on the controller."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.ascend.vllm.plugins.module_utils.benchmark_report import (
    DEFAULT_TOLERANCE,
    ReportError,
    compare,
    load_result,
    markdown_report,
    plot,
    require_matplotlib,
    results_table,
    validate_workload,
)

display = Display()


ARGUMENT_SPEC: Dict[str, Any] = {
    "results": {"type": "list", "elements": "dict", "default": []},
    "report_dir": {"type": "path"},
    "title": {"type": "str", "default": "vllm bench serve"},
    "settings": {"type": "dict", "default": {}},
    "baseline": {"type": "path"},
    "tolerance": {"type": "float", "default": DEFAULT_TOLERANCE},
    "plot": {"type": "bool", "default": True},
    "check_only": {"type": "bool", "default": False},
    "workload": {"type": "dict", "default": {}},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars or {})
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        try:
            return {**result, **self._report(args)}
        except ReportError as exc:
            return {**result, "failed": True, "msg": str(exc)}

    def _report(self, args: Dict[str, Any]) -> Dict[str, Any]:
        tolerance = args["tolerance"]
        problems = validate_workload(args["workload"])
        if not 0 < tolerance <= 1:
            problems.append(f"benchmark_tolerance must be in (0, 1], got {tolerance:g}")
        if problems:
            raise ReportError("; ".join(problems))
        baseline = load_result(args["baseline"], "baseline (benchmark_baseline)") if args["baseline"] else None
        if args["plot"]:
            require_matplotlib()
        if args["check_only"]:
            checked: Dict[str, Any] = {"changed": False}
            if args["report_dir"]:
                checked["report_dir"] = os.path.abspath(args["report_dir"])  # where the results will go
            return checked
        if not args["results"] or not args["report_dir"]:
            raise ReportError("results and report_dir are required unless check_only is set")

        results: List[Tuple[str, Dict[str, Any]]] = []
        for entry in args["results"]:
            if not entry.get("path"):
                raise ReportError(f"a result without a path: {entry}")
            results.append((str(entry.get("name") or entry["path"]), load_result(entry["path"])))
        comparisons = []
        regressions: List[str] = []
        for name, data in results:
            if baseline is None:
                continue
            rows, regressed = compare(data, baseline, tolerance)
            comparisons.append((name, args["baseline"], tolerance, rows))
            regressions += [f"{name}: {r.message(tolerance)}" for r in regressed]

        os.makedirs(args["report_dir"], exist_ok=True)
        png = os.path.join(args["report_dir"], "report.png") if args["plot"] else None
        if png:
            plot(results, args["title"], png)
        report = os.path.join(args["report_dir"], "report.md")
        text = markdown_report(args["title"], args["settings"], results, comparisons, "report.png" if png else None)
        try:
            with open(report, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise ReportError(f"cannot write the report {report}: {exc.strerror or exc}") from None

        table = results_table(results)
        display.display("\n".join([f"Benchmark report: {report}", *table]))
        out: Dict[str, Any] = {"changed": True, "report": report, "plot": png, "table": table}
        out["regressions"] = regressions
        if regressions:
            out["failed"] = True
            out["msg"] = (
                f"{len(regressions)} metric(s) regressed against the baseline {args['baseline']} "
                f"(tolerance {tolerance:g}; report {report}): " + "; ".join(regressions)
            )
        return out
