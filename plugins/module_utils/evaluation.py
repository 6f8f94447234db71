# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lm-eval's results, read and judged: the scores, the threshold gate and the Markdown report.

lm-eval (``--output_path DIR``) writes ``DIR/<model>/results_<time>.json``; its ``results``
maps each task to ``{"<metric>,<filter>": value, "<metric>_stderr,<filter>": stderr, "alias":
...}``, ``higher_is_better`` each task's metrics to a direction, ``n-samples`` the documents
per task and ``n-shot`` the few-shot count. A task's *gate metric* is the one its gate judges:
the one asked for, or else the first lm-eval lists for it (for gsm8k ``exact_match,strict-match``,
for a multiple-choice task ``acc,none``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

RESULTS_PREFIX = "results_"


class EvaluationError(Exception):
    """The results cannot be read or judged; the message says what and where."""


@dataclass(frozen=True)
class Score:
    task: str
    metric: str  # "<metric>,<filter>" as lm-eval names it
    value: float
    stderr: Optional[float]
    higher_is_better: bool
    samples: Optional[int]
    shots: Optional[int]


def results_file(directory: str) -> str:
    """The newest lm-eval results file under ``directory`` (lm-eval nests it one level down)."""
    found: List[str] = []
    for root, _dirs, files in os.walk(directory):
        found.extend(os.path.join(root, f) for f in files if f.startswith(RESULTS_PREFIX) and f.endswith(".json"))
    if not found:
        raise EvaluationError(f"no lm-eval results ({RESULTS_PREFIX}*.json) under {directory}")
    return max(found, key=lambda path: (os.path.basename(path), path))


def load_results(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"cannot read the lm-eval results {path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict):
        raise EvaluationError(f"{path} has no 'results' object: is it an lm-eval results file?")
    return document


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None  # lm-eval writes "N/A" for a stderr it could not compute
    return float(value)


def scores(document: Mapping[str, Any]) -> List[Score]:
    """Every metric of every task, in lm-eval's order (stderrs attached, not listed)."""
    out: List[Score] = []
    directions = document.get("higher_is_better") or {}
    samples = document.get("n-samples") or {}
    shots = document.get("n-shot") or {}
    for task, metrics in document["results"].items():
        if not isinstance(metrics, dict):
            continue
        for key, raw in metrics.items():
            name, comma, filter_name = key.partition(",")
            value = _number(raw)
            # Scores are "<metric>,<filter>"; other keys ("alias", "sample_len") describe the task.
            if not comma or value is None or name.endswith("_stderr"):
                continue
            stderr = _number(metrics.get(f"{name}_stderr,{filter_name}"))
            direction = (directions.get(task) or {}).get(name, True)
            count = (samples.get(task) or {}).get("effective")
            shot = shots.get(task)
            out.append(
                Score(
                    task=str(task),
                    metric=key,
                    value=value,
                    stderr=stderr,
                    higher_is_better=bool(direction),
                    samples=count if isinstance(count, int) else None,
                    shots=shot if isinstance(shot, int) else None,
                )
            )
    return out


def gate_scores(all_scores: Sequence[Score], metrics: Sequence[str]) -> List[Score]:
    """Each task's gate metric: the first of ``metrics`` the task has (a full ``name,filter`` or a
    name alone), or with no ``metrics`` its first. A task with none of them is an error naming
    what it has: a misspelt metric must not pass the gate unnoticed."""
    by_task: Dict[str, List[Score]] = {}
    for score in all_scores:
        by_task.setdefault(score.task, []).append(score)
    chosen: List[Score] = []
    missing: List[str] = []
    for task, task_scores in by_task.items():
        if not metrics:
            chosen.append(task_scores[0])
            continue
        found = [s for wanted in metrics for s in task_scores if wanted in (s.metric, s.metric.partition(",")[0])]
        if found:
            chosen.append(found[0])
        else:
            have = ", ".join(s.metric for s in task_scores)
            missing.append(f"task {task} has none of the gate metrics {', '.join(metrics)} (it has {have})")
    if missing:
        raise EvaluationError("; ".join(missing))
    return chosen


def gate_failures(gated: Sequence[Score], threshold: Optional[float], label: str) -> List[str]:
    """One line per gate metric on the wrong side of ``threshold`` (none when there is no threshold)."""
    if threshold is None:
        return []
    failures = []
    for score in gated:
        below = score.value < threshold if score.higher_is_better else score.value > threshold
        if below:
            side = "below" if score.higher_is_better else "above"
            failures.append(
                f"{label}: task {score.task}, metric {score.metric}: score {score.value:.4f} is {side} "
                f"the threshold {threshold:g}"
            )
    return failures


def _cell(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown(title: str, facts: Sequence[Sequence[str]], runs: Sequence[Mapping[str, Any]]) -> str:
    """The report: ``facts`` as a two-column table, then per run (endpoint) its scores and verdict.

    A run is ``{"endpoint", "results", "scores": [Score], "gated": [Score], "failures": [str]}``.
    """
    lines = [f"# {title}", "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in facts]
    for run in runs:
        gated = {(s.task, s.metric) for s in run["gated"]} if run.get("threshold_set") else set()
        lines += ["", f"## {run['endpoint']}", "", f"lm-eval results: `{run['results']}`", ""]
        lines += ["| task | metric | score | stderr | samples | shots | gate |", "|" + " --- |" * 7]
        for s in run["scores"]:
            mark = "yes" if (s.task, s.metric) in gated else ""
            shots = "-" if s.shots is None else str(s.shots)
            samples = "-" if s.samples is None else str(s.samples)
            row = f"| {s.task} | {s.metric} | {_cell(s.value)} | {_cell(s.stderr)} | {samples} | {shots} | {mark} |"
            lines.append(row)
        lines.append("")
        verdict = "- passed" if run.get("threshold_set") else "- no gate"
        lines += [f"- FAILED: {f}" for f in run["failures"]] or [verdict]
    return "\n".join(lines) + "\n"


def table_lines(runs: Sequence[Mapping[str, Any]]) -> List[str]:
    """The scores as aligned text lines for the play's output."""
    rows = [("endpoint", "task", "metric", "score", "stderr")]
    for run in runs:
        for s in run["scores"]:
            rows.append((run["endpoint"], s.task, s.metric, _cell(s.value), _cell(s.stderr)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


# --- the lm-eval command --------------------------------------------------------------------------


def lm_eval_argv(settings: Mapping[str, Any]) -> List[str]:
    """The ``lm_eval run`` argv of one endpoint's evaluation.

    ``settings``: ``lm_eval``, ``endpoint`` (``http://host:port``), ``model``, ``tasks``,
    ``output_path``, ``include_paths``, ``batch_size``, ``concurrency``, ``max_gen_toks``,
    ``max_length``, ``request_timeout``, ``seed``, and optional ``num_fewshot``, ``limit``.
    local-completions with the server's own tokenizer (``tokenizer_backend=remote``: it needs
    ``/tokenizer_info``, ``/tokenize`` and ``/detokenize``) and prompts as token ids, so a
    loglikelihood's context length is counted exactly as the server counts it.
    """
    endpoint = str(settings["endpoint"]).rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise EvaluationError(f"endpoint {endpoint!r} is not an http(s) URL")
    for key in ("batch_size", "concurrency", "max_gen_toks", "max_length", "request_timeout"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EvaluationError(f"{key} must be a whole number of at least 1, got {value!r}")
    model_args = {
        "model": settings["model"],
        "base_url": f"{endpoint}/v1/completions",
        "tokenizer_backend": "remote",
        "tokenized_requests": "True",
        "num_concurrent": settings["concurrency"],
        "max_retries": 3,
        "timeout": settings["request_timeout"],
        "max_gen_toks": settings["max_gen_toks"],
        "max_length": settings["max_length"],
    }
    for key, value in model_args.items():
        if "," in str(value):
            raise EvaluationError(f"{key} {value!r} holds a comma, which lm-eval's --model_args cannot carry")
    tasks = [str(t) for t in settings["tasks"]]
    if not tasks or any(not t.strip() or "," in t for t in tasks):
        raise EvaluationError(f"tasks must be a non-empty list of task names without commas, got {tasks!r}")
    argv = [str(settings["lm_eval"]), "run", "--model", "local-completions"]
    argv += ["--model_args", ",".join(f"{k}={v}" for k, v in model_args.items())]
    argv += ["--tasks", ",".join(tasks), "--batch_size", str(settings["batch_size"])]
    argv += ["--output_path", str(settings["output_path"]), "--seed", str(settings["seed"])]
    for path in settings.get("include_paths") or []:
        argv += ["--include_path", str(path)]
    if settings.get("num_fewshot") is not None:
        argv += ["--num_fewshot", str(int(settings["num_fewshot"]))]
    limit = settings.get("limit")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0:
            raise EvaluationError(f"limit must be a count or a fraction above 0, got {limit!r}")
        argv += ["--limit", str(int(limit)) if float(limit).is_integer() and limit >= 1 else repr(float(limit))]
    return argv
