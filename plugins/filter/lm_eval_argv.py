# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lm-eval command line of one endpoint's evaluation (role ascend.vllm.evaluate)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: lm_eval_argv
short_description: The lm_eval argv that evaluates one endpoint with local-completions
version_added: 0.2.0
description:
  - Builds C(lm_eval run --model local-completions ...) for one endpoint - its
    C(/v1/completions), the server's own tokenizer (C(tokenizer_backend=remote)), prompts as
    token ids, concurrency, timeouts, lengths, tasks, batch size, seed, output folder, include
    paths, few-shot count and limit.
  - Fails naming the setting at fault (a non-positive size, a comma where lm-eval splits on
    commas, an endpoint that is not an http(s) URL).
options:
  _input:
    description:
      - The settings - C(lm_eval), C(endpoint), C(model), C(tasks), C(output_path),
        C(include_paths), C(batch_size), C(concurrency), C(max_gen_toks), C(max_length),
        C(request_timeout), C(seed), and optionally C(num_fewshot) and C(limit).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Run lm-eval
  ansible.builtin.command:
    argv: "{{ settings | ascend.vllm.lm_eval_argv }}"
"""

RETURN = r"""
_value:
  description: The argv, program first.
  type: list
  elements: str
"""

from typing import Any, Dict, List, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ascend.vllm.plugins.module_utils.evaluation import EvaluationError, lm_eval_argv


def lm_eval_argv_filter(settings: Mapping[str, Any]) -> List[str]:
    try:
        return lm_eval_argv(settings)
    except EvaluationError as exc:
        raise AnsibleFilterError(f"lm_eval_argv: {exc}") from None


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"lm_eval_argv": lm_eval_argv_filter}
