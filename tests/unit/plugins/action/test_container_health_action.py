# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side of ascend.vllm.container_health: its rounds, progress lines and failure.

``_execute_module`` is replaced by a script of module answers, shaped as the module returns
them (tests/unit/plugins/modules/test_container_health.py runs the module itself): two
prefill ranks of an A3 node loading their weights in parallel, one slower than the other.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.ascend.vllm.plugins.action import container_health as action

HOST = "a3-node1"
STARTED = 1796291400.0
STARTED_AT = "2026-12-03T09:11:12.428006568Z"
DP0 = {"name": "vllm-prefill-dp0", "url": "http://127.0.0.1:7000/health", "what": "prefill rank 0, port 7000"}
DP1 = {"name": "vllm-prefill-dp1", "url": "http://127.0.0.1:7001/health", "what": "prefill rank 1, port 7001"}


def entry(spec: Dict[str, str], verdict: str, elapsed: float, **extra: Any) -> Dict[str, Any]:
    """One container of a module answer."""
    out = {
        **spec,
        "verdict": verdict,
        "healthy": verdict == "healthy",
        "elapsed": elapsed,
        "state": "running",
        "restarts": 0,
        "exit_code": 0,
        "oom_killed": False,
        "docker_error": "",
        "started_at": STARTED_AT,
        "answer": "HTTP 200" if verdict == "healthy" else "connection refused ([Errno 111] Connection refused)",
        "logs": [],
    }
    out.update(extra)
    return out


def answer(*containers: Dict[str, Any], failed: bool = False) -> Dict[str, Any]:
    out: Dict[str, Any] = {"changed": False, "started": STARTED, "containers": list(containers)}
    if failed:
        out.update(failed=True, msg="(the module's message)")
    return out


class Run:
    """The action plugin with a scripted module: what it was called with, what it printed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: List[Dict[str, Any]], check_mode: bool = False):
        self.answers = list(answers)
        self.calls: List[Dict[str, Any]] = []
        self.lines: List[str] = []
        monkeypatch.setattr(action.display, "display", self._display)
        self.check_mode = check_mode

    def _display(self, msg: str, stderr: bool = False, **_: Any) -> None:
        assert stderr, "progress goes to stderr"
        self.lines.append(msg)

    def _execute_module(
        self, module_name: str, module_args: Dict[str, Any], task_vars: Optional[Dict[str, Any]] = None
    ) -> Dict[str, Any]:
        assert module_name == "ascend.vllm.container_health"
        self.calls.append(copy.deepcopy(module_args))
        return self.answers.pop(0)

    def __call__(self, **args: Any) -> Dict[str, Any]:
        task = SimpleNamespace(
            args=args, check_mode=self.check_mode, async_val=0, action="ascend.vllm.container_health", diff=False
        )
        connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
        plugin = action.ActionModule(task, connection, None, None, None)
        plugin._execute_module = self._execute_module  # type: ignore[method-assign]
        return plugin.run(task_vars={"inventory_hostname": HOST})


def test_rounds_until_all_healthy_with_one_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(
        monkeypatch,
        [
            answer(entry(DP0, "waiting", 30.2), entry(DP1, "waiting", 30.2)),
            answer(entry(DP0, "healthy", 41.7), entry(DP1, "waiting", 60.4)),
            answer(entry(DP1, "healthy", 75.0)),
        ],
    )
    result = run(containers=[DP0, DP1], timeout=1800, delay=5, report_interval=30, log_lines=50)
    assert not result.get("failed") and result["changed"] is False
    assert result["elapsed"] == {"vllm-prefill-dp0": 41.7, "vllm-prefill-dp1": 75.0}
    assert [c["name"] for c in result["containers"]] == ["vllm-prefill-dp0", "vllm-prefill-dp1"]
    assert run.lines == [
        "a3-node1: vllm-prefill-dp0 (prefill rank 0, port 7000): not healthy after 30s of 1800s; running, "
        "0 restarts; last answer: connection refused ([Errno 111] Connection refused)",
        "a3-node1: vllm-prefill-dp1 (prefill rank 1, port 7001): not healthy after 30s of 1800s; running, "
        "0 restarts; last answer: connection refused ([Errno 111] Connection refused)",
        "a3-node1: vllm-prefill-dp0 (prefill rank 0, port 7000): healthy after 41s",
        "a3-node1: vllm-prefill-dp1 (prefill rank 1, port 7001): not healthy after 60s of 1800s; running, "
        "0 restarts; last answer: connection refused ([Errno 111] Connection refused)",
        "a3-node1: vllm-prefill-dp1 (prefill rank 1, port 7001): healthy after 75s",
    ]
    # Rounds of report_interval; the first fixes the start on the node, the later ones keep it
    # and the StartedAt first seen, and ask only for the containers not yet healthy.
    assert [c["round_seconds"] for c in run.calls] == [30, 30, 30]
    assert [c["started"] for c in run.calls] == [None, STARTED, STARTED]
    assert [[x["name"] for x in c["containers"]] for c in run.calls] == [
        ["vllm-prefill-dp0", "vllm-prefill-dp1"],
        ["vllm-prefill-dp0", "vllm-prefill-dp1"],
        ["vllm-prefill-dp1"],
    ]
    assert run.calls[0]["containers"][0].get("started_at") is None
    assert run.calls[2]["containers"][0]["started_at"] == STARTED_AT
    assert run.calls[0]["timeout"] == 1800 and run.calls[0]["log_lines"] == 50


def test_one_failure_fails_once_naming_host_container_url_reason_and_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    logs = ["INFO loading", "vllm serve: error: unrecognized arguments: --no-such-flag"]
    run = Run(
        monkeypatch,
        [
            answer(entry(DP0, "waiting", 30.0), entry(DP1, "waiting", 30.0)),
            answer(
                entry(DP0, "waiting", 38.0),
                entry(DP1, "exited", 38.0, state="exited", exit_code=2, logs=logs),
                failed=True,
            ),
        ],
    )
    result = run(containers=[DP0, DP1], timeout=1800, log_lines=20)
    assert result["failed"] is True and result["changed"] is False
    # One string, a line each.
    assert result["msg"].splitlines() == [
        "a3-node1: container vllm-prefill-dp1 (prefill rank 1, port 7001) stopped before it answered "
        "http://127.0.0.1:7001/health with 200 (38s into the wait): exited, exit code 2",
        "Last 20 log lines (docker logs --tail 20 vllm-prefill-dp1):",
        *logs,
        "a3-node1: still loading when the wait stopped: vllm-prefill-dp0 (prefill rank 0, port 7000)",
    ]
    assert len(run.calls) == 2
    # No progress line after the failing round.
    assert len(run.lines) == 2


def test_timeout_keeps_healthy_results_of_earlier_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(
        monkeypatch,
        [
            answer(entry(DP0, "healthy", 12.0), entry(DP1, "waiting", 30.0)),
            answer(
                entry(DP1, "timeout", 60.0, answer='HTTP 503: {"status": "loading"}', logs=["INFO shard 3/9"]),
                failed=True,
            ),
        ],
    )
    result = run(containers=[DP0, DP1], timeout=60, report_interval=30, log_lines=1)
    assert result["failed"] is True
    assert result["msg"].splitlines()[0] == (
        "a3-node1: container vllm-prefill-dp1 (prefill rank 1, port 7001) did not answer "
        'http://127.0.0.1:7001/health with 200 within 60s; still running, last answer: HTTP 503: {"status": "loading"}'
    )
    assert result["msg"].splitlines()[1:] == [
        "Last 1 log lines (docker logs --tail 1 vllm-prefill-dp1):",
        "INFO shard 3/9",
    ]
    assert [c["verdict"] for c in result["containers"]] == ["healthy", "timeout"]


def test_restart_and_gone_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(
        monkeypatch,
        [
            answer(
                entry(DP0, "restarted", 20.0, state="restarting", restarts=3, exit_code=1, logs=["RuntimeError: boom"]),
                entry(DP1, "gone", 20.0, state="gone", exit_code=None),
                failed=True,
            )
        ],
    )
    msg = run(containers=[DP0, DP1], timeout=600)["msg"]
    assert msg.splitlines() == [
        "a3-node1: container vllm-prefill-dp0 (prefill rank 0, port 7000) exited and Docker restarted it 3 times "
        "before it answered http://127.0.0.1:7000/health with 200 (20s into the wait); now restarting, "
        "last exit code 1",
        "Last 50 log lines (docker logs --tail 50 vllm-prefill-dp0):",
        "RuntimeError: boom",
        "a3-node1: container vllm-prefill-dp1 (prefill rank 1, port 7001) was removed before it answered "
        "http://127.0.0.1:7001/health with 200 (20s into the wait)",
    ]


def test_a_module_error_is_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    error = {"failed": True, "msg": "docker not found: 'docker' is neither in PATH nor in /usr/bin (set PATH)"}
    run = Run(monkeypatch, [error])
    assert run(containers=[DP0])["msg"] == error["msg"]
    assert run.lines == []


def test_check_mode_calls_the_module_once(monkeypatch: pytest.MonkeyPatch) -> None:
    said = {"changed": False, "started": STARTED, "msg": "not waited for in check mode: nothing was started"}
    run = Run(monkeypatch, [said], check_mode=True)
    result = run(containers=[DP0, DP1])
    assert result["msg"] == said["msg"] and not result.get("failed")
    assert len(run.calls) == 1 and run.lines == []


def test_bad_options_fail_before_any_round(monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(monkeypatch, [])
    with pytest.raises(AnsibleActionFail, match="containers"):
        run(containers=[{"url": "http://127.0.0.1:7000/health"}])
    with pytest.raises(AnsibleActionFail, match="no_such_option"):
        run(containers=[DP0], no_such_option=1)
    assert run.calls == []
