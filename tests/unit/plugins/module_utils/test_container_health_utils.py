# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container health wait's judging and messages, on real ``docker inspect`` output.

The fixtures (tests/unit/fixtures/docker_inspect/) are ``docker inspect --type container``
of containers made for them on a Docker 20.10 engine (CLI 28):

* running.json: ``sleep 600`` with ``--restart unless-stopped``;
* running_restarted_by_hand.json: the same container after ``docker restart`` (RestartCount
  stays 0, StartedAt is later);
* running_after_a_restart.json: ``--restart on-failure``, failed once, then runs (RestartCount 1);
* restarting.json: ``--restart always`` with a command that exits 1 (caught between two
  restarts: Status restarting, and Running true);
* exited.json: exited with code 2 (vLLM's argparse error code);
* exited_killed.json: a Python process over its ``--memory`` limit, killed with SIGKILL (137;
  this engine does not set OOMKilled);
* created.json: ``docker create``, never started.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.container_health import (
    EXITED,
    GONE,
    GONE_STATE,
    HEALTHY,
    RESTARTED,
    TIMEOUT,
    WAITING,
    ContainerState,
    DockerError,
    answer_text,
    container_result,
    failure_lines,
    healthy_line,
    inspect_states,
    judge,
    log_tail,
    progress_line,
    reason,
    state_of,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "docker_inspect"
RUNNING_STARTED_AT = "2026-12-03T09:11:12.428006568Z"


def record(name: str) -> Dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())[0]


def state(name: str) -> ContainerState:
    return state_of(record(name))


# -- reading docker inspect ----------------------------------------------------------------------


def test_states_of_the_real_records() -> None:
    assert state("running") == ContainerState("running", 0, 0, RUNNING_STARTED_AT, False, "")
    assert state("exited") == ContainerState("exited", 0, 2, "2026-12-03T09:11:12.959554441Z", False, "")
    assert state("exited_killed").exit_code == 137
    # Between two restarts docker says Running: true; the status is what counts.
    assert record("restarting")["State"]["Running"] is True
    assert (state("restarting").status, state("restarting").restarts, state("restarting").exit_code) == (
        "restarting",
        6,
        1,
    )
    assert state("running_after_a_restart").restarts == 1
    assert state("created").status == "created"
    by_hand = state("running_restarted_by_hand")
    assert by_hand.restarts == 0 and by_hand.started_at != RUNNING_STARTED_AT


def test_inspect_maps_names_ids_and_missing_containers() -> None:
    records = [record("running"), record("exited")]
    stderr = "Error response from daemon: No such container: vllm-gone\n"
    states = inspect_states(["chfx-exited", "vllm-gone", "chfx-running"], 1, records, stderr)
    assert states["chfx-running"].status == "running"
    assert states["chfx-exited"].exit_code == 2
    assert states["vllm-gone"] == GONE_STATE
    # By id, and the older client's wording of a missing one.
    by_id = inspect_states([record("running")["Id"], "old"], 1, records, "Error: No such object: old\n")
    assert by_id[record("running")["Id"]].status == "running" and by_id["old"].status == GONE


def test_inspect_raises_on_another_docker_error() -> None:
    stderr = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"
    with pytest.raises(DockerError, match="Cannot connect to the Docker daemon"):
        inspect_states(["vllm-single"], 1, [], stderr)
    # Not listed and not reported missing: something else is wrong, not "gone".
    with pytest.raises(DockerError, match="did not list vllm-single"):
        inspect_states(["vllm-single"], 0, [], "")


def test_inspect_ignores_warnings_of_a_successful_run() -> None:
    states = inspect_states(["chfx-running"], 0, [record("running")], "WARNING: Error loading config file\n")
    assert states["chfx-running"].status == "running"


# -- judging -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture, answered, elapsed, verdict",
    [
        ("running", True, 3, HEALTHY),
        ("running", False, 3, WAITING),
        ("running", False, 600, TIMEOUT),
        # A 200 from a running container counts, even if it was restarted long ago.
        ("running_after_a_restart", True, 3, HEALTHY),
        ("running_after_a_restart", False, 3, RESTARTED),
        ("restarting", False, 3, RESTARTED),
        ("exited", False, 3, EXITED),
        ("exited_killed", False, 3, EXITED),
        ("created", False, 3, EXITED),
        # Something else answers on its port while it is not running: not healthy.
        ("exited", True, 3, EXITED),
        # A failure is seen before the deadline's verdict.
        ("exited", False, 900, EXITED),
    ],
)
def test_judge(fixture: str, answered: bool, elapsed: float, verdict: str) -> None:
    st = state(fixture)
    assert judge(st, answered, st.started_at, elapsed, 600) == verdict


def test_judge_a_container_started_again_since_the_wait_saw_it() -> None:
    st = state("running_restarted_by_hand")
    assert judge(st, False, RUNNING_STARTED_AT, 3, 600) == RESTARTED
    assert judge(st, True, RUNNING_STARTED_AT, 3, 600) == HEALTHY
    assert judge(GONE_STATE, True, None, 3, 600) == GONE


# -- texts ---------------------------------------------------------------------------------------


def test_answer_text_and_log_lines() -> None:
    assert answer_text(200, b"") == "HTTP 200"
    assert answer_text(503, b'{"status": "loading"}\n') == 'HTTP 503: {"status": "loading"}\\n'
    assert answer_text(503, b"x" * 500).startswith("HTTP 503: " + "x" * 200 + "... [300 more")
    lines = log_tail("INFO start\nTraceback (most recent call last):\n" + "y" * 1500 + "\n")
    assert lines[:2] == ["INFO start", "Traceback (most recent call last):"]
    assert lines[2] == "y" * 1000 + " [cut]"


def result(fixture: str, verdict: str, elapsed: float = 42.7, **extra: Any) -> Dict[str, Any]:
    spec = {"name": "vllm-prefill-dp0", "url": "http://127.0.0.1:7000/health", "what": "prefill rank 0, port 7000"}
    st = GONE_STATE if fixture == "gone" else state(fixture)
    out = container_result(spec, st, verdict, elapsed, "connection refused ([Errno 111] Connection refused)", None)
    out.update(extra)
    return out


def test_progress_and_healthy_lines() -> None:
    assert progress_line("a3-node1", result("running", WAITING, 30.4), 1800) == (
        "a3-node1: vllm-prefill-dp0 (prefill rank 0, port 7000): not healthy after 30s of 1800s; running, "
        "0 restarts; last answer: connection refused ([Errno 111] Connection refused)"
    )
    assert "1 restart;" in progress_line("h", result("running_after_a_restart", WAITING), 60)
    assert healthy_line("a3-node1", result("running", HEALTHY, 95.9)) == (
        "a3-node1: vllm-prefill-dp0 (prefill rank 0, port 7000): healthy after 95s"
    )
    assert healthy_line("h", dict(result("running", HEALTHY, 1), what="")) == "h: vllm-prefill-dp0: healthy after 1s"


URL = "http://127.0.0.1:7000/health"


@pytest.mark.parametrize(
    "fixture, verdict, extra, expected",
    [
        (
            "running",
            TIMEOUT,
            {},
            f"did not answer {URL} with 200 within 1800s; still running, last answer: "
            "connection refused ([Errno 111] Connection refused)",
        ),
        ("exited", EXITED, {}, f"stopped before it answered {URL} with 200 (42s into the wait): exited, exit code 2"),
        (
            "exited_killed",
            EXITED,
            {"oom_killed": True},
            f"stopped before it answered {URL} with 200 (42s into the wait): exited, exit code 137 "
            "(killed by SIGKILL), out of memory",
        ),
        (
            "created",
            EXITED,
            {"docker_error": "error gathering device information while adding custom device"},
            f"stopped before it answered {URL} with 200 (42s into the wait): created, exit code 0; "
            "Docker: error gathering device information while adding custom device",
        ),
        (
            "restarting",
            RESTARTED,
            {},
            f"exited and Docker restarted it 6 times before it answered {URL} with 200 (42s into the wait); "
            "now restarting, last exit code 1",
        ),
        # Running again: its ExitCode is 0 and says nothing, so none is shown.
        (
            "running_after_a_restart",
            RESTARTED,
            {},
            f"exited and Docker restarted it 1 time before it answered {URL} with 200 (42s into the wait); now running",
        ),
        (
            "running_restarted_by_hand",
            RESTARTED,
            {},
            f"was started again before it answered {URL} with 200 (42s into the wait); now running",
        ),
        ("gone", GONE, {}, f"was removed before it answered {URL} with 200 (42s into the wait)"),
    ],
)
def test_reasons(fixture: str, verdict: str, extra: Dict[str, Any], expected: str) -> None:
    assert reason(result(fixture, verdict, **extra), 1800) == expected


def test_failure_lines_name_host_container_url_reason_and_logs() -> None:
    failed = result("exited", EXITED, logs=["loading weights", "error: unrecognized arguments: --no-such-flag"])
    gone = dict(
        result("gone", GONE),
        name="vllm-prefill-dp1",
        what="prefill rank 1, port 7001",
        url="http://127.0.0.1:7001/health",
    )
    loading = dict(result("running", WAITING), name="vllm-decode-dp0", what="decode rank 0, port 7100")
    healthy = dict(result("running", HEALTHY), name="vllm-decode-dp1")
    lines = failure_lines("a3-node1", [failed, healthy, gone, loading], 1800, 20)
    assert lines == [
        "a3-node1: container vllm-prefill-dp0 (prefill rank 0, port 7000) stopped before it answered "
        f"{URL} with 200 (42s into the wait): exited, exit code 2",
        "Last 20 log lines (docker logs --tail 20 vllm-prefill-dp0):",
        "loading weights",
        "error: unrecognized arguments: --no-such-flag",
        # No logs of a removed container.
        "a3-node1: container vllm-prefill-dp1 (prefill rank 1, port 7001) was removed before it answered "
        "http://127.0.0.1:7001/health with 200 (42s into the wait)",
        "a3-node1: still loading when the wait stopped: vllm-decode-dp0 (decode rank 0, port 7100)",
    ]


def test_failure_lines_without_host_or_logs() -> None:
    lines = failure_lines(None, [result("exited", EXITED)], 60, 5)
    assert lines[0].startswith("container vllm-prefill-dp0 (prefill rank 0, port 7000) stopped before")
    assert lines[1:] == ["Last 5 log lines (docker logs --tail 5 vllm-prefill-dp0):", "(no log lines)"]
    assert len(failure_lines("h", [result("exited", EXITED)], 60, 0)) == 1
