# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""reading_run: a command whose whole output ansible-core's run_command lost is asked again."""

from __future__ import annotations

from typing import List, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.tools import LOST_OUTPUT_RETRIES, reading_run


class Module:
    """A module whose run_command gives the answers queued, logging each argv."""

    def __init__(self, *answers: Tuple[int, str, str]) -> None:
        self.answers = list(answers)
        self.calls: List[List[str]] = []

    def run_command(self, argv: List[str]) -> Tuple[int, str, str]:
        self.calls.append(argv)
        return self.answers.pop(0)


def test_an_answer_is_taken_as_it_is() -> None:
    module = Module((0, "link status: UP\n", ""))
    assert reading_run(module)(["hccn_tool", "-i", "0", "-link", "-g"]) == (0, "link status: UP\n", "")
    assert len(module.calls) == 1


def test_a_failure_that_says_why_is_not_retried() -> None:
    module = Module((1, "[]\n", "Error: No such container: vllm-decode-dp0\n"))
    assert reading_run(module)(["docker", "container", "inspect", "vllm-decode-dp0"])[0] == 1
    assert len(module.calls) == 1


def test_a_silent_failure_is_asked_again() -> None:
    # What a busy host made of a failing `docker inspect`: its stderr lost, the exit code kept.
    module = Module((1, "", ""), (1, "[]\n", "Error: No such container: vllm-decode-dp0\n"))
    answer = reading_run(module)(["docker", "container", "inspect", "vllm-decode-dp0"])
    assert answer == (1, "[]\n", "Error: No such container: vllm-decode-dp0\n")
    assert len(module.calls) == 2


def test_lost_output_is_asked_again() -> None:
    module = Module((0, "", ""), (0, " \n", ""), (0, "link status: UP\n", ""))
    assert reading_run(module)(["hccn_tool", "-i", "15", "-link", "-g"]) == (0, "link status: UP\n", "")
    assert module.calls == [["hccn_tool", "-i", "15", "-link", "-g"]] * 3


def test_retries_are_bounded() -> None:
    module = Module(*[(0, "", "")] * (LOST_OUTPUT_RETRIES + 1))
    assert reading_run(module)(["ip", "-j", "addr", "show"]) == (0, "", "")
    assert len(module.calls) == LOST_OUTPUT_RETRIES + 1
