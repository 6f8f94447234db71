# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors caused by a request's content must not eject instances nor be retried everywhere.

A request whose content makes every backend fail (a 500 that the same request reproduces on a
second instance, or a 4xx) says nothing about the instances: before the fix, two such requests
ejected every healthy prefill instance, and every later request got 503.
"""

from __future__ import annotations

from typing import Any, Dict

import pytest
from aiohttp import web

from tests.faults import FaultRecorder
from tests.unit.proxy.fakes import CHAT, FakeBackend, async_test, chat_body, running, vllm_answer

pytestmark = pytest.mark.fault

POISON = "poison"  # the content that makes the fake backends fail


def fails_on_poison(status: int):
    async def handler(backend: FakeBackend, request: web.Request, body: Dict[str, Any]) -> web.StreamResponse:
        if POISON in str(body.get("messages")):
            error = {"message": "EngineCore encountered an issue", "type": "InternalServerError", "code": status}
            return web.json_response({"error": error}, status=status)
        return await vllm_answer(backend, request, body)

    return handler


def poisoned() -> Dict[str, Any]:
    return chat_body(messages=[{"role": "user", "content": f"{POISON} pill"}])


@async_test
async def test_a_500_the_request_reproduces_ejects_no_instance(fault: FaultRecorder) -> None:
    fault.describe(
        case="request content makes every prefill answer 500",
        layer="proxy",
        injected="3 prefill instances answer HTTP 500 to one content; 4 such requests, then a normal one",
        expected="each poisoned request tried on 2 instances only, client 502 naming both; no instance ejected; "
        "the normal request served",
    )

    def poison(prefill: list, _decode: list) -> None:
        for backend in prefill:
            backend.behaviour = fails_on_poison(500)

    async with running(3, 1, setup=poison) as s:
        replies = [await s.post(CHAT, poisoned()) for _ in range(4)]
        states = [s.state(b) for b in s.prefill]
        tried = sum(len(b.seen) for b in s.prefill)
        normal = await s.post(CHAT, chat_body())
        fault.observe(
            f"statuses {[r.status for r in replies]}, {tried} prefill calls for 4 requests, "
            f"prefill states {states}, normal request {normal.status}"
        )
        assert [r.status for r in replies] == [502] * 4
        assert "request" in replies[0].error() and "not retried" in replies[0].error()
        assert tried == 8  # two instances per request, not all three
        assert states == ["healthy"] * 3
        assert normal.status == 200


@async_test
async def test_a_500_from_one_instance_only_is_its_own_fault(fault: FaultRecorder) -> None:
    fault.describe(
        case="one prefill instance answers 500 to everything while its /health passes",
        layer="proxy",
        injected="prefill p0 answers HTTP 500 to every request; p1 serves",
        expected="every request served by p1; p0 ejected after failures_to_eject (2) failures proven by p1",
    )

    def break_p0(prefill: list, _decode: list) -> None:
        prefill[0].behaviour = fails_on_poison(500)

    async with running(2, 1, setup=break_p0) as s:
        body = chat_body(messages=[{"role": "user", "content": POISON}])
        replies = []
        while s.state(s.prefill[0]) == "healthy" and len(replies) < 8:
            replies.append(await s.post(CHAT, {**body, "model": "minimax-m2.7"}))
        s.prefill[1].behaviour = None  # p1 was never poisoned: it serves everything
        fault.observe(
            f"{len(replies)} requests, statuses {sorted({r.status for r in replies})}, p0 {s.state(s.prefill[0])}"
        )
        assert s.state(s.prefill[0]) == "ejected"
        assert all(r.status == 200 for r in replies)
        assert s.state(s.prefill[1]) == "healthy"


@async_test
async def test_a_4xx_is_relayed_without_retry_or_ejection(fault: FaultRecorder) -> None:
    fault.describe(
        case="request content a backend rejects (400 / 413 / 422)",
        layer="proxy",
        injected="every prefill answers 400, 413 or 422 to one content",
        expected="the backend's status and body relayed; one backend call per request; no instance ejected",
    )
    seen = []
    for status in (400, 413, 422):

        def reject(prefill: list, _decode: list, status: int = status) -> None:
            for backend in prefill:
                backend.behaviour = fails_on_poison(status)

        async with running(2, 1, setup=reject) as s:
            replies = [await s.post(CHAT, poisoned()) for _ in range(3)]
            calls = sum(len(b.seen) for b in s.prefill)
            states = [s.state(b) for b in s.prefill]
            seen.append(f"{status}: relayed {[r.status for r in replies]}, {calls} calls, {states}")
            assert [r.status for r in replies] == [status] * 3
            assert calls == 3
            assert states == ["healthy", "healthy"]
    fault.observe("; ".join(seen))
