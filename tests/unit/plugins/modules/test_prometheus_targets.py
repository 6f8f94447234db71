# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ascend.vllm.prometheus_targets: the module against a fake /api/v1/targets over real HTTP, and
its action plugin's rounds, progress lines and failure with scripted module answers."""

from __future__ import annotations

import copy
import http.server
import json
import threading
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Optional

import pytest

from ansible_collections.ascend.vllm.plugins.action import prometheus_targets as action
from ansible_collections.ascend.vllm.plugins.modules import prometheus_targets as module
from tests.unit.plugins.modules.module_runner import module_ok

HOST = "node4"
RANK = {
    "job": "vllm",
    "target": "172.30.1.12:7101",
    "labels": {"instance": "decode0", "role": "decode", "rank": "1", "host": "node2", "server": "vllm-decode0-dp1"},
}
NODE = {"job": "node", "target": "172.30.1.11:9100", "labels": {"instance": "node1", "role": "node", "host": "node1"}}
REFUSED = 'Get "http://172.30.1.12:7101/metrics": dial tcp 172.30.1.12:7101: connect: connection refused'


def active(target: Dict[str, Any], health: str, error: str = "") -> Dict[str, Any]:
    """An activeTargets entry as Prometheus 2.42 (Debian 12) answers it."""
    address = target["target"]
    return {
        "discoveredLabels": {
            "__address__": address,
            "__metrics_path__": "/metrics",
            "__scheme__": "http",
            "__scrape_interval__": "15s",
            "__scrape_timeout__": "10s",
            "job": target["job"],
            **target["labels"],
        },
        "labels": {"job": target["job"], **target["labels"]},
        "scrapePool": target["job"],
        "scrapeUrl": f"http://{address}/metrics",
        "globalUrl": f"http://{address}/metrics",
        "lastError": error,
        "lastScrape": "2026-12-03T14:06:16.642941267Z",
        "lastScrapeDuration": 0.051048022,
        "health": health,
        "scrapeInterval": "15s",
        "scrapeTimeout": "10s",
    }


class FakePrometheus(http.server.ThreadingHTTPServer):
    def __init__(self, answers: List[List[Dict[str, Any]]]) -> None:
        self.answers = answers  # one activeTargets list per request; the last one repeats
        self.paths: List[str] = []
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakePrometheus

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        targets = self.server.answers.pop(0) if len(self.server.answers) > 1 else self.server.answers[0]
        body = json.dumps({"status": "success", "data": {"activeTargets": targets, "droppedTargets": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prometheus(request: pytest.FixtureRequest) -> Iterator[FakePrometheus]:
    server = FakePrometheus(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.mark.parametrize(
    "prometheus",
    [[[active(RANK, "unknown"), active(NODE, "up")], [active(RANK, "down", REFUSED), active(NODE, "up")],
      [active(RANK, "up"), active(NODE, "up")]]],
    indirect=True,
)  # fmt: skip
def test_the_module_polls_until_every_target_is_up(prometheus: FakePrometheus) -> None:
    url = f"http://127.0.0.1:{prometheus.server_port}"
    result = module_ok(module.main, {"url": url, "targets": [RANK, NODE], "delay": 0.05, "round_seconds": 5})
    assert result["up"] is True and result["changed"] is False
    assert [t["health"] for t in result["targets"]] == ["up", "up"]
    assert prometheus.paths == ["/api/v1/targets?state=active"] * 3


@pytest.mark.parametrize("prometheus", [[[active(RANK, "down", REFUSED)]]], indirect=True)
def test_a_round_ends_with_what_is_not_up(prometheus: FakePrometheus) -> None:
    url = f"http://127.0.0.1:{prometheus.server_port}"
    result = module_ok(module.main, {"url": url, "targets": [RANK, NODE], "delay": 0.05, "round_seconds": 0.3})
    assert result["up"] is False
    assert [(t["health"], t["error"]) for t in result["targets"]] == [
        ("down", REFUSED),
        ("missing", "not in Prometheus's active targets (is its configuration the new one?)"),
    ]


def test_a_prometheus_that_does_not_answer_leaves_every_target_unknown() -> None:
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as closed:
        port = closed.server_port  # bound, then closed: nothing listens
    url = f"http://127.0.0.1:{port}"
    result = module_ok(module.main, {"url": url, "targets": [NODE], "delay": 0.05, "round_seconds": 0.1})
    assert result["up"] is False and result["targets"][0]["health"] == "unknown"
    assert result["targets"][0]["error"].startswith(f"Prometheus at {url} does not answer: ")


# --- the action plugin ------------------------------------------------------------------------


def state(target: Dict[str, Any], health: str, error: str = "") -> Dict[str, Any]:
    return {**target, "health": health, "error": error}


class Run:
    """The action plugin with a scripted module and clock: its calls and its lines."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: List[Dict[str, Any]], clock: List[float]) -> None:
        self.answers, self.clock = list(answers), list(clock)
        self.calls: List[Dict[str, Any]] = []
        self.lines: List[str] = []
        monkeypatch.setattr(action.display, "display", self._display)
        monkeypatch.setattr(action.time, "monotonic", lambda: self.clock.pop(0))

    def _display(self, msg: str, stderr: bool = False, **_: Any) -> None:
        assert stderr, "progress goes to stderr"
        self.lines.append(msg)

    def _execute_module(
        self, module_name: str, module_args: Dict[str, Any], task_vars: Optional[Dict[str, Any]] = None
    ) -> Dict[str, Any]:
        assert module_name == "ascend.vllm.prometheus_targets"
        self.calls.append(copy.deepcopy(module_args))
        return self.answers.pop(0)

    def __call__(self, **args: Any) -> Dict[str, Any]:
        task = SimpleNamespace(
            args=args, check_mode=False, async_val=0, action="ascend.vllm.prometheus_targets", diff=False
        )
        connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
        plugin = action.ActionModule(task, connection, None, None, None)
        plugin._execute_module = self._execute_module  # type: ignore[method-assign]
        return plugin.run(task_vars={"inventory_hostname": HOST})


def test_rounds_with_progress_until_every_target_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [
        {"changed": False, "up": False, "targets": [state(RANK, "down", REFUSED), state(NODE, "up")]},
        {"changed": False, "up": True, "targets": [state(RANK, "up"), state(NODE, "up")]},
    ]
    # start, round 1 (left), after round 1, round 2 (left), after round 2
    run = Run(monkeypatch, answers, [100.0, 100.0, 110.2, 110.2, 113.9])
    result = run(url="http://127.0.0.1:9090", targets=[RANK, NODE], timeout=120, report_interval=10)
    assert not result.get("failed") and result["up"] is True and result["msg"] == "2 target(s) up"
    assert [c["round_seconds"] for c in run.calls] == [10, 10]
    assert run.lines == [
        "node4: Prometheus: 1/2 targets up after 10 s; waiting for vllm decode0 rank 1 (vllm-decode0-dp1 on node2, "
        f"172.30.1.12:7101) down: {REFUSED}",
        "node4: Prometheus: 2/2 targets up after 14 s",
    ]


def test_the_deadline_fails_naming_every_target_not_up(monkeypatch: pytest.MonkeyPatch) -> None:
    down = {"changed": False, "up": False, "targets": [state(RANK, "down", REFUSED), state(NODE, "unknown")]}
    run = Run(monkeypatch, [down, down], [0.0, 0.0, 10.0, 10.0, 15.0])
    result = run(url="http://127.0.0.1:9090", targets=[RANK, NODE], timeout=15, report_interval=10)
    assert result["failed"] is True and result["up"] is False
    # The last round only gets what is left of the timeout.
    assert [c["round_seconds"] for c in run.calls] == [10, 5]
    assert result["msg"].splitlines() == [
        "node4: 2 of 2 Prometheus targets not up after 15 s (http://127.0.0.1:9090):",
        f"  - vllm decode0 rank 1 (vllm-decode0-dp1 on node2, 172.30.1.12:7101) down: {REFUSED}",
        "  - node node1 (node1, 172.30.1.11:9100) unknown",
    ]
