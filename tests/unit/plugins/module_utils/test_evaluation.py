# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lm-eval's results read and judged (module_utils/evaluation.py), the lm_eval argv (filter
lm_eval_argv) and the action evaluation_report, on a results file lm-eval 0.4.13 wrote for the
bundled sample against the simulator (tests/unit/fixtures/evaluation/results_sample.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict
from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleActionFail, AnsibleFilterError

from ansible_collections.ascend.vllm.plugins.action.evaluation_report import ActionModule
from ansible_collections.ascend.vllm.plugins.filter.lm_eval_argv import lm_eval_argv_filter
from ansible_collections.ascend.vllm.plugins.module_utils import evaluation as ev

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "evaluation" / "results_sample.json"

# gsm8k as lm-eval reports it, lower-is-better perplexity beside it, and a stderr lm-eval could not compute.
GSM8K: Dict[str, Any] = {
    "results": {
        "gsm8k": {
            "alias": "gsm8k",
            "exact_match,strict-match": 0.9212,
            "exact_match_stderr,strict-match": 0.0074,
            "exact_match,flexible-extract": 0.9310,
            "exact_match_stderr,flexible-extract": "N/A",
        },
        "wikitext": {"alias": "wikitext", "word_perplexity,none": 9.5, "word_perplexity_stderr,none": "N/A"},
    },
    "higher_is_better": {"gsm8k": {"exact_match": True}, "wikitext": {"word_perplexity": False}},
    "n-samples": {"gsm8k": {"original": 1319, "effective": 200}},
    "n-shot": {"gsm8k": 5, "wikitext": 0},
}


def test_scores_of_a_real_results_file() -> None:
    found = ev.scores(ev.load_results(str(SAMPLE)))
    assert [(s.task, s.metric, s.value) for s in found] == [
        ("ascend_sample_arith", "exact_match,strict-match", 0.0),
        ("ascend_sample_arith", "exact_match,flexible-extract", 0.0),
        ("ascend_sample_choice", "acc,none", 0.125),
        ("ascend_sample_choice", "acc_norm,none", 0.125),
    ]  # "sample_len" and "alias" describe the task: not scores
    assert found[2].samples == 8 and found[2].shots == 0 and found[2].stderr == 0.125


def test_gate_metrics_first_by_default_or_the_first_named_the_task_has() -> None:
    found = ev.scores(GSM8K)
    assert [(s.task, s.metric) for s in ev.gate_scores(found, [])] == [
        ("gsm8k", "exact_match,strict-match"),
        ("wikitext", "word_perplexity,none"),
    ]
    chosen = ev.gate_scores(found, ["exact_match,flexible-extract", "word_perplexity"])
    assert [s.metric for s in chosen] == ["exact_match,flexible-extract", "word_perplexity,none"]
    assert chosen[0].stderr is None  # "N/A"
    wanted = r"task wikitext has none of the gate metrics acc, exact_match \(it has word_perplexity,none\)"
    with pytest.raises(ev.EvaluationError, match=wanted):
        ev.gate_scores(found, ["acc", "exact_match"])


def test_gate_failures_name_endpoint_task_metric_score_and_threshold() -> None:
    gated = ev.gate_scores(ev.scores(GSM8K), [])
    assert ev.gate_failures(gated, None, "http://p:8009") == []
    assert ev.gate_failures(gated, 0.9, "http://p:8009") == [
        "http://p:8009: task wikitext, metric word_perplexity,none: score 9.5000 is above the threshold 0.9"
    ]
    assert ev.gate_failures(gated, 0.95, "http://p:8009")[0] == (
        "http://p:8009: task gsm8k, metric exact_match,strict-match: score 0.9212 is below the threshold 0.95"
    )


def test_results_file_is_the_newest_one_nested_below(tmp_path: Path) -> None:
    model = tmp_path / "MiniMax-M2.7"
    model.mkdir()
    for stamp in ("2026-12-03T10-00-00.1", "2026-12-03T11-00-00.1"):
        shutil.copy(SAMPLE, model / f"results_{stamp}.json")
    (model / "samples_x.jsonl").write_text("")
    assert ev.results_file(str(tmp_path)).endswith("results_2026-12-03T11-00-00.1.json")
    with pytest.raises(ev.EvaluationError, match="no lm-eval results"):
        ev.results_file(str(tmp_path / "nothing"))
    (model / "results_bad.json").write_text("[1]")
    with pytest.raises(ev.EvaluationError, match="has no 'results' object"):
        ev.load_results(str(model / "results_bad.json"))


SETTINGS: Dict[str, Any] = {
    "lm_eval": "/opt/lm-eval/bin/lm_eval",
    "endpoint": "http://10.0.0.4:8009/",
    "model": "MiniMax-M2.7",
    "tasks": ["gsm8k", "ascend_sample_choice"],
    "output_path": "/srv/eval/run/endpoint-1",
    "include_paths": ["/srv/eval/run/tasks"],
    "batch_size": 8,
    "concurrency": 4,
    "max_gen_toks": 256,
    "max_length": 2048,
    "request_timeout": 600,
    "seed": 1234,
    "num_fewshot": None,
    "limit": None,
}


def test_lm_eval_argv() -> None:
    argv = lm_eval_argv_filter(SETTINGS)
    assert argv[:4] == ["/opt/lm-eval/bin/lm_eval", "run", "--model", "local-completions"]
    model_args = dict(pair.split("=", 1) for pair in argv[argv.index("--model_args") + 1].split(","))
    assert model_args == {
        "model": "MiniMax-M2.7",
        "base_url": "http://10.0.0.4:8009/v1/completions",
        "tokenizer_backend": "remote",
        "tokenized_requests": "True",
        "num_concurrent": "4",
        "max_retries": "3",
        "timeout": "600",
        "max_gen_toks": "256",
        "max_length": "2048",
    }
    assert argv[argv.index("--tasks") + 1] == "gsm8k,ascend_sample_choice"
    assert argv[argv.index("--batch_size") + 1] == "8"
    assert argv[argv.index("--include_path") + 1] == "/srv/eval/run/tasks"
    assert "--limit" not in argv and "--num_fewshot" not in argv
    more = lm_eval_argv_filter({**SETTINGS, "limit": 200.0, "num_fewshot": 5})
    assert more[more.index("--limit") + 1] == "200" and more[more.index("--num_fewshot") + 1] == "5"
    assert lm_eval_argv_filter({**SETTINGS, "limit": 0.25})[-1] == "0.25"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a whole number of at least 1, got 0"),
        ({"concurrency": "4"}, "concurrency must be a whole number"),
        ({"limit": -1}, "limit must be a count or a fraction above 0"),
        ({"tasks": []}, "tasks must be a non-empty list"),
        ({"tasks": ["a,b"]}, "tasks must be a non-empty list of task names without commas"),
        ({"model": "a,b"}, "model 'a,b' holds a comma"),
        ({"endpoint": "10.0.0.4:8009"}, "is not an http(s) URL"),
    ],
)
def test_lm_eval_argv_refuses_naming_the_setting(change: Dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=None) as refused:
        lm_eval_argv_filter({**SETTINGS, **change})
    assert message in str(refused.value)


def report(args: Dict[str, Any]) -> Dict[str, Any]:
    task = SimpleNamespace(args=args, async_val=0, check_mode=False, action="ascend.vllm.evaluation_report")
    action = ActionModule(task, MagicMock(), MagicMock(), loader=None, templar=None)  # type: ignore[arg-type]
    return action.run(task_vars={})


def run_folder(tmp_path: Path, count: int = 1) -> Path:
    for index in range(count):
        target = tmp_path / f"endpoint-{index + 1}" / "MiniMax-M2.7"
        target.mkdir(parents=True)
        shutil.copy(SAMPLE, target / "results_2026-12-03T13-44-18.1.json")
    return tmp_path


def test_report_without_gate(tmp_path: Path) -> None:
    folder = str(run_folder(tmp_path))
    result = report({"endpoints": ["http://a:8009"], "results_dir": folder, "facts": {"scenario": "s"}})
    assert not result.get("failed") and result["gate_failures"] == []
    text = (tmp_path / "report.md").read_text()
    assert "| scenario | s |" in text and "## http://a:8009" in text and "- no gate" in text
    assert "| ascend_sample_choice | acc,none | 0.1250 | 0.1250 | 8 | 0 |  |" in text  # nothing gated
    assert len(result["scores"]) == 4
    assert result["lines"][0].split() == ["endpoint", "task", "metric", "score", "stderr"]


def test_the_gate_fails_after_writing_the_report(tmp_path: Path) -> None:
    args = {
        "endpoints": ["http://a:8009", "http://b:8009"],
        "results_dir": str(run_folder(tmp_path, 2)),
        "threshold": 0.1,
        "metrics": ["acc", "exact_match,flexible-extract"],
    }
    result = report(args)
    assert result["failed"] is True
    assert result["gate_failures"] == [
        f"http://{h}:8009: task ascend_sample_arith, metric exact_match,flexible-extract: score 0.0000 is below "
        "the threshold 0.1"
        for h in "ab"
    ]
    assert result["msg"].startswith("accuracy gate failed: http://a:8009: task ascend_sample_arith")
    text = (tmp_path / "report.md").read_text()
    assert "| ascend_sample_choice | acc,none | 0.1250 | 0.1250 | 8 | 0 | yes |" in text
    assert text.count("- FAILED: ") == 2
    assert not report({**args, "threshold": 0.0}).get("failed")


def test_report_refuses_missing_results_and_a_bad_threshold(tmp_path: Path) -> None:
    with pytest.raises(AnsibleActionFail, match=r"no lm-eval results .* under .*endpoint-1"):
        report({"endpoints": ["http://a:8009"], "results_dir": str(tmp_path)})
    with pytest.raises(AnsibleActionFail, match=r"threshold must lie in \[0, 1\]"):
        report({"endpoints": ["http://a:8009"], "results_dir": str(run_folder(tmp_path)), "threshold": 90})
    json.loads(SAMPLE.read_text())  # the fixture stays a real lm-eval document
