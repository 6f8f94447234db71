# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endpoint probe's /health wait: retries, deadline, attempt timeouts, what is not retried."""

from __future__ import annotations

from typing import Any, List, Tuple

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.endpoint_probe import ProbeError, health_outcome, wait_healthy
from tests.unit.plugins.module_utils.endpoint_probe_helpers import BASE


class FakeTime:
    """A clock that only ``sleep`` and attempts advance."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(time: FakeTime, answers: List[Tuple[str, str, Any]], cost: float = 0.0):
    """An attempt function answering from ``answers``; each attempt takes ``cost`` seconds."""
    timeouts: List[float] = []

    def attempt(timeout: float) -> Tuple[str, str, Any]:
        timeouts.append(timeout)
        time.now += cost
        return answers.pop(0) if len(answers) > 1 else answers[0]

    attempt.timeouts = timeouts  # type: ignore[attr-defined]
    return attempt


REFUSED = ("retry", "connection refused ([Errno 111] Connection refused)", None)
OK = ("ok", "HTTP 200", None)


def wait(time: FakeTime, attempt: Any, health_timeout: float = 10, interval: float = 2, timeout: float = 5) -> Any:
    return wait_healthy(
        attempt,
        BASE + "/health",
        health_timeout=health_timeout,
        interval=interval,
        timeout=timeout,
        clock=time.clock,
        sleep=time.sleep,
    )


def test_health_at_once() -> None:
    time = FakeTime()
    attempt = scripted(time, [OK], cost=0.004)
    assert wait(time, attempt) == {"waited_s": 0.004, "attempts": 1}
    assert attempt.timeouts == [5]
    assert time.sleeps == []


def test_health_retries_refused_connections_until_up() -> None:
    time = FakeTime()
    attempt = scripted(time, [REFUSED, REFUSED, REFUSED, OK])
    assert wait(time, attempt) == {"waited_s": 6.0, "attempts": 4}
    assert time.sleeps == [2, 2, 2]


def test_health_deadline_says_how_long_and_the_last_error() -> None:
    time = FakeTime()
    attempt = scripted(time, [("retry", "HTTP 503", b""), REFUSED], cost=0.1)
    with pytest.raises(ProbeError) as exc:
        wait(time, attempt, health_timeout=5, interval=2)
    err = exc.value
    assert err.step == "health"
    # attempts at 0, 2.1, 4.2 and one last at the deadline (5.0)
    assert str(err) == (
        f"health: GET {BASE}/health: not healthy after waiting 5.1 s (health_timeout=5 s, 4 attempts); "
        "last error: connection refused ([Errno 111] Connection refused)"
    )
    assert [round(s, 3) for s in time.sleeps] == [2, 2, 0.7]
    # each attempt gets `timeout`, but no further than the deadline (at least 0.5 s)
    assert [round(t, 3) for t in attempt.timeouts] == [5, 2.9, 0.8, 0.5]


def test_health_last_error_with_body() -> None:
    time = FakeTime()
    attempt = scripted(time, [("retry", "HTTP 503", b"Service Unavailable")])
    with pytest.raises(ProbeError) as exc:
        wait(time, attempt, health_timeout=1, interval=1)
    assert str(exc.value).endswith("last error: HTTP 503 - response: Service Unavailable")


def test_health_timeout_zero_is_one_attempt() -> None:
    time = FakeTime()
    attempt = scripted(time, [REFUSED])
    with pytest.raises(ProbeError, match=r"not healthy after one attempt \(health_timeout=0\); last error: conn"):
        wait(time, attempt, health_timeout=0, timeout=7)
    assert attempt.timeouts == [7]
    assert time.sleeps == []
    assert wait(FakeTime(), scripted(FakeTime(), [OK]), health_timeout=0)["attempts"] == 1


def test_health_4xx_is_not_retried() -> None:
    time = FakeTime()
    attempt = scripted(time, [("fail", "HTTP 404", b'{"detail":"Not Found"}')])
    with pytest.raises(ProbeError) as exc:
        wait(time, attempt)
    assert str(exc.value) == f'health: GET {BASE}/health: HTTP 404 (not retried) - response: {{"detail":"Not Found"}}'
    assert time.sleeps == []


@pytest.mark.parametrize(
    ("status", "outcome"), [(200, "ok"), (404, "fail"), (401, "fail"), (503, "retry"), (502, "retry")]
)
def test_health_outcome(status: int, outcome: str) -> None:
    assert health_outcome(status) == outcome
