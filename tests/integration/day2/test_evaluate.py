"""playbooks/evaluate.yml with the real lm-eval against the shared 1P2D deployment, from the
controller through the PD proxy: the bundled generative and multiple-choice (loglikelihood)
samples with batches of prompts, the results folder, and the score gate failing."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Dict

import pytest

from tests.integration.day2.conftest import Day2, explain
from tests.sim_cluster import ROOT, node

pytestmark = pytest.mark.docker

SAMPLE_TASKS = ["ascend_sample_arith", "ascend_sample_choice"]


def lm_eval() -> str:
    """lm_eval on the controller: $ASCEND_LM_EVAL, a venv of the checkout's (.venv-eval, .venv), or PATH's."""
    venvs = [str(ROOT / venv / "bin" / "lm_eval") for venv in (".venv-eval", ".venv")]
    candidates = (os.environ.get("ASCEND_LM_EVAL"), *venvs, shutil.which("lm_eval"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    # `make venv` (and so `make test` and CI) builds .venv-eval: a missing evaluator is an error.
    pytest.fail("lm_eval is not on the controller: run `make venv` (it builds .venv-eval) or set ASCEND_LM_EVAL")


def proxy_requests(day2: Day2) -> Dict[str, float]:
    """Backend requests the proxy made so far, per phase (pd_proxy_backend_requests_total)."""
    proxy = day2.plan["hosts"][day2.node(4)]["proxy"]
    text = node(day2.node(4), "curl", "-fsS", f"http://127.0.0.1:{proxy['port']}/metrics").stdout
    counts = {"prefill": 0.0, "decode": 0.0}
    for line in text.splitlines():
        found = re.match(r'pd_proxy_backend_requests_total\{.*phase="(\w+)".*\} (\S+)$', line)
        if found:
            counts[found.group(1)] += float(found.group(2))
    return counts


def evaluate(day2: Day2, results: Path, *extra: str):
    return day2.playbook(
        "playbooks/evaluate.yml",
        "-e",
        f"evaluate_lm_eval={lm_eval()}",
        "-e",
        f"evaluate_results_dir={results}",
        *extra,
        timeout=1800,
    )


def test_generative_and_loglikelihood_samples_in_batches_through_the_proxy(day2: Day2, tmp_path: Path) -> None:
    before = proxy_requests(day2)
    settings = {"evaluate_tasks": SAMPLE_TASKS, "evaluate_batch_size": 3, "evaluate_concurrency": 2}
    run = evaluate(day2, tmp_path, "-e", json.dumps(settings), "-e", "evaluate_threshold=0")
    assert run.returncode == 0, explain(run)
    after = proxy_requests(day2)

    [folder] = tmp_path.iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z-a3_pd_1p2d_200k", folder.name), folder.name
    [results] = (folder / "endpoint-1").rglob("results_*.json")
    document = json.loads(results.read_text())
    assert document["n-samples"]["ascend_sample_arith"]["effective"] == 10
    assert document["n-samples"]["ascend_sample_choice"]["effective"] == 8
    accuracy = document["results"]["ascend_sample_choice"]["acc,none"]
    assert 0 <= accuracy <= 1
    assert document["config"]["model_args"]["base_url"] == day2.plan["endpoints"][0] + "/v1/completions"
    report = (folder / "report.md").read_text()
    assert "| ascend_sample_choice | acc,none | " in report and "- passed" in report
    assert "ascend_sample_arith" in run.stdout  # the scores are printed

    # Each of the 10 generative prompts was one PD pass (lm-eval sent them 3 to a request);
    # the 32 loglikelihood prompts (8 questions x 4 choices) went to the prefill instance alone.
    assert after["decode"] - before["decode"] == 10
    assert after["prefill"] - before["prefill"] >= 10 + 32 / 3


def test_the_gate_fails_naming_task_metric_score_and_threshold(day2: Day2, tmp_path: Path) -> None:
    settings = {"evaluate_tasks": ["ascend_sample_choice"], "evaluate_batch_size": 4}
    settings["evaluate_threshold_metrics"] = ["acc"]
    run = evaluate(day2, tmp_path, "-e", json.dumps(settings), "-e", "evaluate_threshold=0.95")
    assert run.returncode != 0
    [results] = tmp_path.glob("*/endpoint-1/*/results_*.json")
    score = json.loads(results.read_text())["results"]["ascend_sample_choice"]["acc,none"]
    assert score < 0.95
    endpoint = day2.plan["endpoints"][0]
    message = f"{endpoint}: task ascend_sample_choice, metric acc,none: score {score:.4f} is below the threshold 0.95"
    assert message in run.stdout, run.stdout[-3000:]
    assert "- FAILED: " + message in next(tmp_path.glob("*/report.md")).read_text()


def test_the_deployment_still_serves(day2: Day2) -> None:
    proxy = day2.plan["hosts"][day2.node(4)]["proxy"]
    health = json.loads(node(day2.node(4), "curl", "-fsS", f"http://127.0.0.1:{proxy['port']}/health").stdout)
    assert health["decode"] == {"healthy": 4, "total": 4} and health["prefill"] == {"healthy": 2, "total": 2}
