#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done by the action plugin of the same name (plugins/action/benchmark_report.py),
# on the controller; this file documents it for ansible-doc.

from __future__ import annotations

DOCUMENTATION = r"""
module: benchmark_report
short_description: Write the report of vllm bench serve results, optionally against a baseline
version_added: 0.2.0
description:
  - Runs on the controller. Reads the result JSON files that C(vllm bench serve --save-result)
    wrote (one per endpoint benchmarked), writes C(report.md) (the run's settings and one
    Markdown table, a column per endpoint - throughputs, TTFT / TPOT / ITL mean, median and
    percentiles, speculative-decoding acceptance when the server reported it) and
    C(report.png) (a plot of the throughputs and of the latency statistics) into
    O(report_dir), and prints the table.
  - With O(baseline), compares each result with that earlier result, metric by metric in its
    direction - a throughput must be at least O(tolerance) x the baseline's, a latency at most
    the baseline's / O(tolerance) - adds the comparison to the report, and then fails naming
    each regressed metric with the baseline, the measured value, the limit and the tolerance.
  - With O(check_only), only checks that the report can be made (O(tolerance) in range, the
    baseline readable and a result, matplotlib importable when O(plot) is set), so a playbook
    fails before it spends time benchmarking.
options:
  results:
    description: The result files, each C({name, path}); C(name) heads the file's column.
    type: list
    elements: dict
    default: []
  report_dir:
    description: The folder of the report on the controller (created if absent).
    type: path
  title:
    description: The report's title.
    type: str
    default: vllm bench serve
  settings:
    description: What was run (scenario, endpoint, lengths, rate...), listed above the table.
    type: dict
    default: {}
  baseline:
    description: A result file of an earlier run, on the controller, to compare with; unset for none.
    type: path
  tolerance:
    description: The share of the baseline's performance a run must keep, in (0, 1].
    type: float
    default: 0.97
  plot:
    description: Write C(report.png); needs matplotlib in the Python that runs C(ansible-playbook).
    type: bool
    default: true
  check_only:
    description:
      - Only check O(workload), O(tolerance), the baseline and matplotlib; read no result, write
        nothing. Returns O(report_dir) made absolute.
    type: bool
    default: false
  workload:
    description:
      - The benchmark's options to validate, keys C(input_len), C(output_len), C(num_prompts),
        C(timeout) (positive integers), C(request_rate) (a positive number or C(inf)),
        C(max_concurrency) (a positive integer or null), C(label) (letters, digits, C(.), C(_),
        C(-)). A problem fails naming the variable C(benchmark_<key>).
    type: dict
    default: {}
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  check_mode:
    support: none
    details: Writes the report in check mode too (it changes no host); use O(check_only) to write nothing.
  diff_mode:
    support: none
    details: It changes no host.
  platform:
    support: full
    platforms: all
    details: Runs on the controller only; it contacts no host.
author:
  - ascend.vllm contributors (@ascend-vllm)
"""

EXAMPLES = r"""
- name: Write the report of the run, against last week's
  ascend.vllm.benchmark_report:
    results:
      - name: proxy ascend-node3:8009
        path: benchmark-results/20261203T140000Z-a3_pd_1p1d_200k/ascend-node3-8009.json
    report_dir: benchmark-results/20261203T140000Z-a3_pd_1p1d_200k
    title: MiniMax-M2.7, a3_pd_1p1d_200k
    settings: {input_len: 200, output_len: 128, num_prompts: 200, request_rate: 1}
    baseline: baselines/a3_pd_1p1d_200k.json
    tolerance: 0.97
  run_once: true
"""

RETURN = r"""
report_dir:
  description: O(report_dir), absolute.
  returned: with O(check_only) and O(report_dir)
  type: str
report:
  description: The Markdown report written.
  returned: unless O(check_only)
  type: str
plot:
  description: The PNG written, or null without O(plot).
  returned: unless O(check_only)
  type: str
table:
  description: The results table, as Markdown lines (also printed).
  returned: unless O(check_only)
  type: list
  elements: str
regressions:
  description: One line per regressed metric (empty without a baseline or when none regressed).
  returned: unless O(check_only)
  type: list
  elements: str
"""
