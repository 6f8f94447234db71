# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ascend.vllm.pd_proxy_backends' logic against the real PD proxy (in-process, real HTTP) in front
of fake vLLM instances: list, take out, drain, put back, as a rolling restart and a scale in do."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import Future
from typing import Any, Awaitable, Dict, Iterator, List, TypeVar

import pytest
from ansible.module_utils.urls import open_url

from ansible_collections.ascend.vllm.plugins.module_utils.pd_proxy_backends import (
    ARGUMENT_SPEC,
    AdminClient,
    ProxyError,
    progress_line,
    proxy_access,
    proxy_instances,
    run_round,
    targets,
)
from tests.unit.proxy.fakes import CHAT, Setup, chat_body, chunk, running, sse, stream

KEY = "admin-key-of-the-test"
T = TypeVar("T")


class LiveProxy:
    """The proxy and its fakes on an event loop in a thread; the test drives them from outside."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready: Future = Future()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(options),), daemon=True)
        self.thread.start()
        self.s: Setup = self.ready.result(timeout=15)

    async def _main(self, options: Dict[str, Any]) -> None:
        self.stop = asyncio.Event()
        # Streams held open by a test must outlive the fakes' short idle timeout.
        async with running(admin_api_key=KEY, timeouts={"idle": 30}, **options) as setup:
            self.ready.set_result(setup)
            await self.stop.wait()

    def call(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=15)  # type: ignore[arg-type]

    def spawn(self, coro: Awaitable[T]) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=15)
        self.loop.close()

    def record(self) -> Dict[str, Any]:
        """The plan's proxy record for these fakes: p0.. are prefill0, d<i> is decode<i>."""
        s = self.s
        return {
            "prefill": [{"name": f"h1/{b.name}", "instance": "prefill0", "url": b.url} for b in s.prefill],
            "decode": [
                {"name": f"h{i + 2}/{b.name}", "instance": f"decode{i}", "url": b.url} for i, b in enumerate(s.decode)
            ],
        }


def opener(method: str, url: str, headers: Dict[str, str], data: Any) -> Any:
    return open_url(url, method=method, headers=headers, data=data, timeout=5, use_proxy=False)


@pytest.fixture
def live() -> Iterator[LiveProxy]:
    proxy = LiveProxy(decodes=2)
    try:
        yield proxy
    finally:
        proxy.close()


def params(**given: Any) -> Dict[str, Any]:
    """The module's parameters: its defaults, then ``given``."""
    return {**{k: v.get("default") for k, v in ARGUMENT_SPEC.items()}, **given}


def client(live: LiveProxy, key: str = KEY) -> AdminClient:
    return AdminClient(live.s.url, key, opener)


def states(listing: List[Dict[str, Any]]) -> Dict[str, str]:
    return {b["name"]: b["state"] for b in listing}


def test_list_shows_every_backend_and_changes_nothing(live: LiveProxy) -> None:
    result = run_round(params(), client(live), check_mode=False)
    assert result["changed"] is False and result["done"] is True
    assert states(result["backends"]) == {"p0": "healthy", "d0": "healthy", "d1": "healthy"}


def test_take_out_waits_for_the_request_in_flight_then_put_back_waits_until_routed(live: LiveProxy) -> None:
    s = live.s
    gate = live.call(_event())
    s.decode[1].behaviour = stream(sse(chunk(CHAT, "slow "), done=False), sse(chunk(CHAT, "end")), gate=gate)
    s.decode[0].health_status = 200
    # Streams one at a time until one is held on decode1: d0 answers at once, so on a slow machine
    # a first stream can be done before the next is routed (and ties go round-robin).
    requests: List[Future] = []
    for _ in range(8):
        requests.append(live.spawn(s.post(CHAT, chat_body(stream=True))))
        if _eventually(lambda: live.s.in_flight(s.decode[1]) == 1, timeout=3):
            break
    assert live.s.in_flight(s.decode[1]) == 1

    out = params(state="absent", record=live.record(), instances=["decode1"], delay=0.05, round_seconds=0.3)
    first = run_round(out, client(live), check_mode=False)
    # Its request is still running: not drained within this round, and no new request goes there.
    assert first["changed"] is True and first["changed_backends"] == ["h3/d1"] and first["done"] is False
    assert [(b["name"], b["state"], b["in_flight"]) for b in first["pending"]] == [("d1", "removed", 1)]
    assert "1 request(s) in flight" in progress_line("proxy-host", "drained", first["pending"], 1.0)
    later = live.call(s.post(CHAT, chat_body()))
    assert later.status == 200 and len(s.decode[1].seen) == 1

    live.loop.call_soon_threadsafe(gate.set)
    second = run_round(dict(out, started=first["started"], round_seconds=5), client(live), check_mode=False)
    assert second["changed"] is False and second["done"] is True and second["pending"] == []
    assert all(r.result(timeout=5).status == 200 for r in requests)
    assert "d1" not in states(second["backends"])  # drained: the proxy forgot it

    back = run_round(dict(out, state="present", started=None, round_seconds=5), client(live), check_mode=False)
    assert back["changed"] is True and back["done"] is True
    assert states(back["backends"])["h3/d1"] == "healthy"
    again = run_round(dict(out, state="present", started=None), client(live), check_mode=False)
    assert again["changed"] is False


def test_check_mode_reports_without_changing_or_waiting(live: LiveProxy) -> None:
    out = params(state="absent", record=live.record(), instances=["decode0"])
    result = run_round(out, client(live), check_mode=True)
    assert result["changed"] is True and result["done"] is True
    assert states(result["backends"])["d0"] == "healthy"


def test_drained_without_instances_waits_for_every_removed_backend(live: LiveProxy) -> None:
    s = live.s
    gate = live.call(_event())
    s.decode[0].behaviour = stream(sse(chunk(CHAT, "a "), done=False), sse(chunk(CHAT, "b")), gate=gate)
    s.decode[1].behaviour = s.decode[0].behaviour
    request = live.spawn(s.post(CHAT, chat_body(stream=True)))
    _until(lambda: s.in_flight(s.decode[0]) + s.in_flight(s.decode[1]) == 1)
    busy = s.decode[0] if s.in_flight(s.decode[0]) else s.decode[1]
    # A reload that dropped the busy rank (as a scale in does): the proxy keeps it until idle.
    live.call(s.request("DELETE", "/admin/backends", {"phase": "decode", "url": busy.url}, headers=_auth()))
    waiting = run_round(params(state="drained", delay=0.05, round_seconds=0.3), client(live), check_mode=False)
    assert waiting["done"] is False and [b["name"] for b in waiting["pending"]] == [busy.name]
    live.loop.call_soon_threadsafe(gate.set)
    done = run_round(params(state="drained", delay=0.05, round_seconds=5), client(live), check_mode=False)
    assert done["done"] is True and request.result(timeout=5).status == 200


def test_a_drain_that_outlasts_the_timeout_says_so(live: LiveProxy) -> None:
    s = live.s
    gate = live.call(_event())
    s.decode[0].behaviour = stream(sse(chunk(CHAT, "a "), done=False), sse(chunk(CHAT, "b")), gate=gate)
    s.decode[1].behaviour = s.decode[0].behaviour
    request = live.spawn(s.post(CHAT, chat_body(stream=True)))
    _until(lambda: s.in_flight(s.decode[0]) + s.in_flight(s.decode[1]) == 1)
    instance = "decode0" if s.in_flight(s.decode[0]) else "decode1"
    out = params(state="absent", record=live.record(), instances=[instance], delay=0.05, timeout=0.3)
    result = run_round(out, client(live), check_mode=False)
    live.loop.call_soon_threadsafe(gate.set)
    assert result["done"] is False and result["timed_out"] is True
    assert request.result(timeout=5).status == 200


def test_wrong_key_unknown_instance_and_missing_record_are_errors_naming_them(live: LiveProxy) -> None:
    with pytest.raises(ProxyError, match="HTTP 401"):
        run_round(params(), client(live, key="wrong"), check_mode=False)
    with pytest.raises(ProxyError, match=r"decode7 not in the proxy record \(it has decode0, decode1, prefill0\)"):
        run_round(params(state="absent", record=live.record(), instances=["decode7"]), client(live), False)
    with pytest.raises(ProxyError, match="need record"):
        targets(None, ["decode0"])
    with pytest.raises(ProxyError, match="needs instances"):
        run_round(params(state="present"), client(live), False)


def test_no_answer_names_the_url() -> None:
    with pytest.raises(ProxyError, match=r"GET http://127.0.0.1:9/admin/backends: no answer"):
        AdminClient("http://127.0.0.1:9", KEY, opener).listing()


def test_proxy_access_reads_the_port_tls_and_key_of_the_configuration() -> None:
    plain = json.dumps({"listen": {"port": 8010}, "admin_api_key": "k"})
    assert proxy_access(plain, "c.json") == ("http://127.0.0.1:8010", "k")
    tls = json.dumps({"tls": {"certfile": "/c.pem", "keyfile": "/k.pem"}})
    assert proxy_access(tls, "c.json") == ("https://127.0.0.1:8009", None)
    with pytest.raises(ProxyError, match=r"c\.json: not JSON"):
        proxy_access("{", "c.json")


async def _event() -> asyncio.Event:
    return asyncio.Event()


def _auth() -> Dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def _eventually(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True


def _until(predicate: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition still false"
        time.sleep(0.01)


def test_keep_serving_refuses_to_take_out_the_last_routed_instance(live: LiveProxy) -> None:
    s = live.s
    live.call(_eject(s, s.decode[0].url))  # decode1 is then the only decode instance served
    out = params(state="absent", record=live.record(), instances=["decode1"], keep_serving=True)
    with pytest.raises(ProxyError, match=r"would leave no decode instance .*decode0: ejected.*nothing was taken out"):
        run_round(out, client(live), check_mode=False)
    assert states(run_round(params(), client(live), False)["backends"])["d1"] == "healthy"
    allowed = run_round(dict(out, instances=["prefill0"], keep_serving=False, wait=False), client(live), False)
    assert allowed["changed"] is True


async def _eject(s: Setup, url: str) -> None:
    pool = s.proxy.pools["decode"]
    for _ in range(pool.failures_to_eject):
        pool.failed(pool.backends[url], "HTTP 503")


def test_proxy_instances_carry_each_rank_s_dp_group() -> None:
    decode = [
        {"name": "n2/decode0-dp0", "instance": "decode0", "url": "http://10.0.0.2:7100/", "host": "n2", "port": 7100},
        {"name": "n2/decode0-dp1", "instance": "decode0", "url": "http://10.0.0.2:7101", "host": "n2", "port": 7101},
    ]
    assert proxy_instances(decode) == [
        {"url": "http://10.0.0.2:7100", "name": "n2/decode0-dp0", "group": "decode0"},
        {"url": "http://10.0.0.2:7101", "name": "n2/decode0-dp1", "group": "decode0"},
    ]
    assert proxy_instances([{"name": "no url"}]) == [{"url": "", "name": "no url"}]  # no group: on its own
    assert proxy_instances(None) == []
    (first, _second) = targets({"prefill": [], "decode": decode}, ["decode0"])
    assert first.body() == {
        "phase": "decode",
        "url": "http://10.0.0.2:7100",
        "name": "n2/decode0-dp0",
        "group": "decode0",
    }
