# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side of ascend.vllm.pd_proxy_backends: rounds, progress lines, the failure.

``_execute_module`` is replaced by a script of module answers shaped as run_round returns them
(tests/unit/plugins/module_utils/test_pd_proxy_backends.py runs that against the real proxy).
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

import pytest

from ansible_collections.ascend.vllm.plugins.action import pd_proxy_backends as action

HOST = "a3-proxy"
D1 = {"name": "a3-node3/vllm-decode1-dp0", "url": "http://192.0.2.13:7100", "phase": "decode", "last_error": None}


def answer(done: bool, changed: bool, in_flight: int, elapsed: float, timed_out: bool = False) -> Dict[str, Any]:
    pending = [] if done else [dict(D1, state="removed", in_flight=in_flight)]
    return {
        "changed": changed,
        "done": done,
        "started": 1000.0,
        "wait_for": "drained",
        "changed_backends": [D1["name"]] if changed else [],
        "pending": pending,
        "backends": pending,
        "timed_out": timed_out,
        "elapsed": elapsed,
    }


class Run:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: List[Dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.calls: List[Dict[str, Any]] = []
        self.lines: List[str] = []
        monkeypatch.setattr(action.display, "display", self._display)

    def _display(self, msg: str, stderr: bool = False, **_: Any) -> None:
        assert stderr, "progress goes to stderr"
        self.lines.append(msg)

    def _execute_module(
        self, module_name: str, module_args: Dict[str, Any], task_vars: Optional[Dict[str, Any]] = None
    ) -> Dict[str, Any]:
        assert module_name == "ascend.vllm.pd_proxy_backends"
        self.calls.append(copy.deepcopy(module_args))
        return self.answers.pop(0)

    def __call__(self, **args: Any) -> Dict[str, Any]:
        task = SimpleNamespace(args=args, check_mode=False, async_val=0, action=action.MODULE, diff=False)
        connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
        plugin = action.ActionModule(task, connection, None, None, None)
        plugin._execute_module = self._execute_module  # type: ignore[method-assign]
        return plugin.run(task_vars={"inventory_hostname": HOST})


RECORD = {"decode": [{"name": D1["name"], "url": D1["url"], "instance": "decode1"}]}


def test_rounds_until_drained_keep_the_change_and_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(monkeypatch, [answer(False, True, 2, 10.0), answer(False, False, 1, 20.0), answer(True, False, 0, 24.5)])
    result = run(state="absent", record=RECORD, instances=["decode1"], report_interval=10)
    assert not result.get("failed") and result["changed"] is True
    assert result["changed_backends"] == [D1["name"]]
    assert [c["started"] for c in run.calls] == [None, 1000.0, 1000.0]
    assert [c["round_seconds"] for c in run.calls] == [10, 10, 10]
    assert run.lines == [
        "a3-proxy: 10 s, waiting for 1 backend(s) to drain: decode a3-node3/vllm-decode1-dp0 "
        "(http://192.0.2.13:7100): removed, 2 request(s) in flight",
        "a3-proxy: 20 s, waiting for 1 backend(s) to drain: decode a3-node3/vllm-decode1-dp0 "
        "(http://192.0.2.13:7100): removed, 1 request(s) in flight",
    ]


def test_the_deadline_fails_naming_each_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(monkeypatch, [answer(False, True, 3, 60.0, timed_out=True)])
    result = run(state="absent", record=RECORD, instances=["decode1"], timeout=60)
    assert result["failed"] is True
    assert result["msg"] == (
        "a3-proxy: after 60 s (timeout) these PD proxy backends still have requests in flight:\n"
        "  decode a3-node3/vllm-decode1-dp0 (http://192.0.2.13:7100): removed, 3 request(s) in flight"
    )


def test_a_module_failure_names_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(monkeypatch, [{"failed": True, "msg": "the proxy's admin API is off", "pending": []}])
    result = run()
    assert result["failed"] is True and result["msg"] == "a3-proxy: the proxy's admin API is off"
