# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PD proxy run by an operator, against fake backends: ejection and re-admission, inbound
API keys and bad input, /v1/models and /metrics, the admin API, reload and drain."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Dict, Optional

import aiohttp
import pytest

from tests.unit.proxy.fakes import (
    CHAT,
    COMPLETIONS,
    MODEL,
    FakeBackend,
    answer,
    async_test,
    chat_body,
    chunk,
    eventually,
    proxy_config,
    running,
    sse,
    stream,
)

# --- health: ejection and re-admission ------------------------------------------------------------


@async_test
async def test_failing_instance_is_ejected_after_consecutive_failures_and_gets_no_more_traffic() -> None:
    async with running(prefills=2) as s:
        broken, good = s.prefill
        broken.behaviour = answer(500, {"error": {"message": "engine dead"}})
        replies = [await s.post(CHAT, chat_body()) for _ in range(8)]
        healthy_gauge = await s.metric("pd_proxy_backend_healthy", backend="p0", phase="prefill")
        health = await s.get("/health")

    assert [r.status for r in replies] == [200] * 8
    assert len(broken.seen) == 2  # failures_to_eject, then nothing
    assert len(good.seen) == 8
    assert s.state(broken) == "ejected" and healthy_gauge == 0
    assert health.status == 200 and health.json()["prefill"] == {"healthy": 1, "total": 2}


@async_test
async def test_ejected_instance_is_readmitted_once_its_health_check_passes_again() -> None:
    async with running(health={"interval": 0.05}) as s:
        prefill = s.prefill[0]
        prefill.health_status = 503  # dead: /health fails and so would a generation
        prefill.behaviour = answer(500, {"error": {"message": "engine dead"}})
        await eventually(lambda: s.state(prefill) == "ejected", what="ejected")
        failed = await s.post(CHAT, chat_body())
        down = await s.get("/health")

        prefill.health_status, prefill.behaviour = 200, None
        await eventually(lambda: s.state(prefill) != "ejected", what="re-admitted")
        # Routable again (on probation, or healthy already): the proxy must say so, or a load
        # balancer gating on /health would never send the request that ends the probation.
        up = await s.get("/health")
        served = await s.post(CHAT, chat_body())
        state_after = s.state(prefill)

    assert failed.status >= 500 and "p0" in failed.error()  # an error naming it, never a 200
    assert down.status == 503 and down.json()["status"] == "unavailable"
    assert up.status == 200 and up.json()["status"] == "ok"
    assert served.status == 200 and state_after == "healthy"
    assert len(s.decode[0].seen) == 1  # only the request after the re-admission got to decode


@async_test
async def test_health_aliases_and_counts() -> None:
    async with running(prefills=2, decodes=3) as s:
        health, alias = await s.get("/health"), await s.get("/healthcheck")

    assert health.status == alias.status == 200
    assert health.json() == {
        "status": "ok",
        "in_flight": 0,
        "prefill": {"healthy": 2, "total": 2},
        "decode": {"healthy": 3, "total": 3},
    }


# --- inbound API keys and bad input ------------------------------------------------------------------


@async_test
async def test_inbound_api_keys() -> None:
    async with running(api_keys=["key-a", "key-b"]) as s:
        missing = await s.post(CHAT, chat_body())
        wrong = await s.post(CHAT, chat_body(), headers={"Authorization": "Bearer key-c"})
        not_bearer = await s.post(CHAT, chat_body(), headers={"Authorization": "key-a"})
        models = await s.get("/v1/models")
        good = await s.post(CHAT, chat_body(), headers={"Authorization": "Bearer key-b"})
        health, metrics = await s.get("/health"), await s.get("/metrics")

    for reply in (missing, wrong, not_bearer, models):
        assert reply.status == 401 and "API key" in reply.error()
    assert good.status == 200
    assert health.status == 200 and metrics.status == 200
    assert len(s.prefill[0].seen) == 1 and len(s.decode[0].seen) == 1  # only the good one got through
    assert "Authorization" not in s.prefill[0].seen[0].headers  # the client's key is not forwarded


BAD_INPUT: Dict[str, Any] = {
    "invalid-json": (CHAT, b'{"messages": [', 400, None),
    "not-an-object": (CHAT, b'[{"role": "user"}]', 400, None),
    "empty-body": (CHAT, b"", 400, None),
    "empty-messages": (CHAT, json.dumps({"model": MODEL, "messages": []}).encode(), 400, "messages"),
    "no-prompt": (COMPLETIONS, json.dumps({"model": MODEL}).encode(), 400, "prompt"),
    "stream-yes": (CHAT, json.dumps(chat_body(stream="yes")).encode(), 400, "stream"),
    "max-tokens-0": (CHAT, json.dumps(chat_body(max_tokens=0)).encode(), 400, "max_tokens"),
    "client-kv-params": (CHAT, json.dumps(chat_body(kv_transfer_params={"remote_host": "x"})).encode(), 400, None),
    "n-2": (CHAT, json.dumps(chat_body(n=2)).encode(), 400, "n"),
    "too-large": (CHAT, json.dumps(chat_body(padding="x" * 5000)).encode(), 413, None),
}


@pytest.mark.parametrize("case", BAD_INPUT)
@async_test
async def test_bad_input_is_a_4xx_json_error_and_reaches_no_backend(case: str) -> None:
    path, raw, status, param = BAD_INPUT[case]
    async with running(limits={"max_body_bytes": 4096}) as s:
        reply = await s.request("POST", path, raw=raw, headers={"Content-Type": "application/json"})
        still_serving = await s.post(CHAT, chat_body())

    assert reply.status == status, reply.body
    assert reply.error()
    if param is not None:
        assert reply.json()["error"]["param"] == param
    assert len(s.prefill[0].seen) == len(s.decode[0].seen) == 1  # only the good request that followed
    assert still_serving.status == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v2/chat", 404), ("POST", "/v1/embeddings", 404), ("GET", CHAT, 405), ("POST", "/v1/models", 405)],
)
@async_test
async def test_unknown_path_and_wrong_method(method: str, path: str, status: int) -> None:
    async with running() as s:
        reply = await s.request(method, path, {"x": 1})

    assert reply.status == status and path in reply.error()


# --- /v1/models and /metrics ---------------------------------------------------------------------------


@async_test
async def test_models_are_relayed_from_a_decode_instance() -> None:
    async with running(decodes=2) as s:
        await s.decode[0].stop()  # one is down: the other answers
        reply = await s.get("/v1/models")

    assert reply.status == 200
    listing = reply.json()
    assert [m["id"] for m in listing["data"]] == [MODEL] and listing["data"][0]["owned_by"] == "d1"
    assert s.prefill[0].seen == []


@async_test
async def test_metrics_count_requests_and_per_backend_outcomes() -> None:
    async with running() as s:

        async def sample() -> Dict[str, float]:
            return {
                "chat_200": await s.metric("pd_proxy_requests_total", endpoint=CHAT, status="200"),
                "chat_400": await s.metric("pd_proxy_requests_total", endpoint=CHAT, status="400"),
                "chat_502": await s.metric("pd_proxy_requests_total", endpoint=CHAT, status="502"),
                "p0_ok": await s.metric("pd_proxy_backend_requests_total", backend="p0", phase="prefill", outcome="ok"),
                "d0_ok": await s.metric("pd_proxy_backend_requests_total", backend="d0", phase="decode", outcome="ok"),
                "d0_error": await s.metric(
                    "pd_proxy_backend_requests_total", backend="d0", phase="decode", outcome="error"
                ),
                "d0_phase": await s.metric("pd_proxy_phase_seconds_count", backend="d0", phase="decode"),
                "cached": await s.metric("pd_proxy_prefill_cached_tokens_total"),
            }

        before = await sample()
        await s.post(CHAT, chat_body(stream=True))
        await s.post(CHAT, chat_body())
        await s.post(CHAT, {"messages": []})
        s.decode[0].behaviour = answer(500, {})
        await s.post(CHAT, chat_body())
        after = await sample()
        text = (await s.get("/metrics")).body.decode()

    assert before == dict.fromkeys(before, 0.0)
    assert after == {
        "chat_200": 2,
        "chat_400": 1,
        "chat_502": 1,
        "p0_ok": 3,
        "d0_ok": 2,
        "d0_error": 1,
        "d0_phase": 2,
        "cached": 24,  # 8 per prefill answer
    }
    assert 'pd_proxy_backend_in_flight{backend="p0",phase="prefill"} 0' in text
    assert "# TYPE pd_proxy_time_to_first_chunk_seconds histogram" in text


# --- admin API ---------------------------------------------------------------------------------------------

ADMIN = {"Authorization": "Bearer admin-key"}


def target(backend: FakeBackend) -> Dict[str, str]:
    return {"phase": backend.phase, "url": backend.url, "name": backend.name}


@async_test
async def test_admin_api_is_off_without_an_admin_key() -> None:
    async with running() as s:
        listing = await s.get("/admin/backends", headers=ADMIN)
        removal = await s.request("DELETE", "/admin/backends", target(s.decode[0]), headers=ADMIN)

    assert listing.status == removal.status == 404 and "admin_api_key" in listing.error()
    assert s.state(s.decode[0]) == "healthy"


@async_test
async def test_admin_api_rejects_a_wrong_key_and_bad_targets() -> None:
    async with running(admin_api_key="admin-key") as s:
        wrong = await s.get("/admin/backends", headers={"Authorization": "Bearer nope"})
        client_key = await s.request("DELETE", "/admin/backends", target(s.decode[0]))
        bad_phase = await s.post("/admin/backends", {"phase": "both", "url": "http://127.0.0.1:1"}, headers=ADMIN)
        bad_url = await s.post("/admin/backends", {"phase": "decode", "url": "127.0.0.1"}, headers=ADMIN)
        unknown = await s.request("DELETE", "/admin/backends", {"phase": "decode", "url": "http://h:1"}, headers=ADMIN)

    assert wrong.status == client_key.status == 401
    assert bad_phase.status == bad_url.status == 400 and unknown.status == 404
    assert s.state(s.decode[0]) == "healthy"


@async_test
async def test_admin_api_adds_and_removes_backends_at_run_time() -> None:
    async with running(spare=1, admin_api_key="admin-key") as s:
        old, new = s.decode[0], s.spare[0]
        gate = asyncio.Event()
        old.behaviour = stream(sse(chunk(CHAT, "slow "), done=False), sse(chunk(CHAT, "answer")), gate=gate)
        in_flight = asyncio.ensure_future(s.post(CHAT, chat_body(stream=True)))
        await eventually(lambda: s.in_flight(old) == 1)

        added = await s.post("/admin/backends", target(new), headers=ADMIN)
        await eventually(lambda: s.state(new) == "healthy", what="added backend admitted")
        removed = await s.request("DELETE", "/admin/backends", target(old), headers=ADMIN)
        listing = (await s.get("/admin/backends", headers=ADMIN)).json()
        # Three at once, held by the new backend: with the removed one routable, load balancing
        # would send it one of them.
        new_gate = asyncio.Event()
        new.behaviour = stream(sse(chunk(CHAT, "new "), done=False), sse(chunk(CHAT, "one")), gate=new_gate)
        pending = [asyncio.ensure_future(s.post(CHAT, chat_body(stream=True))) for _ in range(3)]
        await eventually(lambda: len(old.seen) + len(new.seen) == 4)
        new_gate.set()
        later = await asyncio.gather(*pending)

        gate.set()
        finished = await in_flight
        await eventually(lambda: s.state(old) == "gone", what="removed backend forgotten once idle")
        names = [b["name"] for b in (await s.get("/admin/backends", headers=ADMIN)).json()["backends"]]

    assert added.status == 200 and added.json()["state"] in ("unknown", "healthy")
    assert removed.status == 200 and removed.json()["in_flight"] == 1
    assert {b["name"]: b["state"] for b in listing["backends"]}["d0"] == "removed"
    assert listing["decode"] == {"healthy": 1, "total": 1}
    assert all(r.status == 200 for r in later)
    assert len(old.seen) == 1 and len(new.seen) == 3  # nothing new for the removed one
    assert finished.status == 200
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in finished.events()[:-1]] == ["slow ", "answer"]
    assert sorted(names) == ["p0", "s0"]


# --- reload (SIGHUP) ----------------------------------------------------------------------------------------


@async_test
async def test_reload_applies_a_rewritten_configuration(tmp_path: Path) -> None:
    path = tmp_path / "proxy.json"
    async with running(spare=1, config_path=path) as s:
        old, new = s.decode[0], s.spare[0]
        path.write_text(json.dumps(proxy_config(s.prefill, [new], decode={"api_key": "new-key"})))
        s.proxy.reload()
        await eventually(lambda: s.state(new) == "healthy", what="new instance admitted")
        replies = [await s.post(CHAT, chat_body()) for _ in range(3)]
        gone = s.state(old)

        path.write_text("{not json")
        s.proxy.reload()  # a broken file keeps the running configuration
        still = await s.post(CHAT, chat_body())

    assert all(r.status == 200 for r in replies) and still.status == 200
    assert gone == "gone" and old.seen == []
    assert len(new.seen) == 4 and all(d.headers["Authorization"] == "Bearer new-key" for d in new.seen)


# --- drain (SIGTERM) ---------------------------------------------------------------------------------------


async def open_connection_refused(url: str) -> Optional[BaseException]:
    """The error of a request on a new connection, or None if it was answered."""
    try:
        async with aiohttp.ClientSession() as fresh, fresh.get(url + "/health") as response:
            await response.read()
            return None
    except aiohttp.ClientConnectionError as exc:
        return exc


@async_test
async def test_drain_stops_accepting_lets_in_flight_finish_then_returns() -> None:
    async with running() as s:
        gate = asyncio.Event()
        s.decode[0].behaviour = stream(sse(chunk(CHAT, "a"), done=False), sse(chunk(CHAT, "b")), gate=gate)
        in_flight = asyncio.ensure_future(s.post(CHAT, chat_body(stream=True)))
        await eventually(lambda: s.in_flight(s.decode[0]) == 1)
        assert (await s.get("/health")).status == 200  # leaves an idle keep-alive connection in s.client

        drain = asyncio.ensure_future(s.proxy.drain(s.runner))
        await eventually(lambda: s.proxy.draining)
        await asyncio.sleep(0.05)
        refused = await open_connection_refused(s.url)
        health = await s.get("/health")  # on the kept-alive connection
        new_request = await s.post(CHAT, chat_body())
        assert not drain.done()

        gate.set()
        finished = await in_flight
        await asyncio.wait_for(drain, 2.0)

    assert isinstance(refused, aiohttp.ClientConnectorError)
    assert health.status == 503 and health.json()["status"] == "draining"
    assert new_request.status == 503 and "shutting down" in new_request.error()
    assert finished.status == 200 and finished.events()[-1] == "[DONE]" and len(finished.events()) == 3
