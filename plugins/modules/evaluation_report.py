#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done by the action plugin of the same name (plugins/action/evaluation_report.py),
# on the controller; this file documents it for ansible-doc.

from __future__ import annotations

DOCUMENTATION = r"""
module: evaluation_report
short_description: Read lm-eval's results, write a Markdown report and gate on a score
version_added: 0.2.0
description:
  - For each endpoint, reads the newest C(results_*.json) lm-eval left in its folder and every
    score in it (task, metric and filter, value, standard error, samples, few-shot count).
  - Writes O(report), a Markdown report - O(title), O(facts), then per endpoint a table of every
    score and the verdict - and prints the scores.
  - With O(threshold), each task's gate metric (the first of O(metrics) it has, or else the
    first metric lm-eval lists for the task) must reach it (or not exceed it, for a metric where
    lower is better); otherwise the task fails after writing the report, naming the endpoint,
    task, metric, score and threshold of each failure.
  - Runs on the controller only; contacts no host.
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  endpoints:
    description: The endpoints evaluated, in order; lm-eval's output for the Nth is C(endpoint-N) in O(results_dir).
    type: list
    elements: str
    required: true
  results_dir:
    description: The evaluation's folder, holding C(endpoint-1), C(endpoint-2)... (lm-eval's C(--output_path) each).
    type: path
    required: true
  report:
    description: The Markdown file to write (its folder is created); by default C(report.md) in O(results_dir).
    type: path
  title:
    description: The report's title.
    type: str
    default: Accuracy evaluation
  facts:
    description: Name -> value lines at the top of the report (scenario, model, tasks...).
    type: dict
    default: {}
  threshold:
    description: The score each task's gate metric must reach, in [0, 1]; none means no gate.
    type: float
  metrics:
    description:
      - The gate metrics, as lm-eval names them (C(exact_match,strict-match)) or by name alone
        (C(acc)); each task is judged on the first of them it has, and a task with none of them
        fails naming the metrics it has.
      - By default each task's first metric.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  check_mode:
    support: none
    details: There are no results to read in check mode.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: all
    details: Runs on the controller only.
"""

EXAMPLES = r"""
- name: Report the scores and fail below 0.9
  ascend.vllm.evaluation_report:
    endpoints: [http://192.0.2.11:8009]
    results_dir: /srv/evaluations/20261203T120000Z-a3_pd_1p1d_200k
    facts:
      scenario: a3_pd_1p1d_200k
    threshold: 0.9
    metrics: ["exact_match,strict-match"]
"""

RETURN = r"""
report:
  description: The path of the Markdown report.
  returned: always
  type: str
lines:
  description: The scores as printed (aligned columns).
  returned: always
  type: list
  elements: str
scores:
  description: Every score read.
  returned: always
  type: list
  elements: dict
  sample:
    - {endpoint: "http://192.0.2.11:8009", task: gsm8k, metric: "exact_match,strict-match", value: 0.93, stderr: 0.007}
gate_failures:
  description: One message per gate metric that missed the threshold (empty when it passed or without a threshold).
  returned: always
  type: list
  elements: str
"""
