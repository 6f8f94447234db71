# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client request through the PD proxy to fake prefill/decode instances: what each backend
receives on the wire, what the client gets back, and every way a backend can fail."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Awaitable, Callable, Dict, List

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.sse import SSEParser
from tests.unit.proxy.fakes import (
    CHAT,
    COMPLETIONS,
    FakeBackend,
    Handler,
    Reply,
    Setup,
    answer,
    async_test,
    chat_body,
    chunk,
    completions_body,
    delayed,
    eventually,
    hang,
    kv_params_of,
    pieces_of,
    running,
    sse,
    stream,
    stream_body,
    tokens_of,
)

PREFILL_KV_REQUEST = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}
BODIES = {CHAT: chat_body, COMPLETIONS: completions_body}


def text_of(path: str, events: List[str]) -> str:
    """The generated text of a stream's events (``[DONE]`` last)."""
    assert events[-1] == "[DONE]", events
    key = "delta" if path == CHAT else None
    parts = []
    for data in events[:-1]:
        choice = json.loads(data)["choices"][0]
        parts.append(choice[key]["content"] if key else choice["text"])
    return "".join(parts)


def answer_text(path: str, reply: Reply) -> str:
    choice = reply.json()["choices"][0]
    return choice["message"]["content"] if path == CHAT else choice["text"]


def expected_text(backend: FakeBackend) -> str:
    return "".join(tokens_of(backend))


async def until_tried(s: Setup, broken: FakeBackend, send: Callable[[], Awaitable[Reply]]) -> List[Reply]:
    """Send requests until one was sent to ``broken`` (balancing alternates between equals)."""
    replies = [await send()]
    while len(replies) < 4 and s.proxy.pools[broken.phase].backends[broken.url].consecutive_failures == 0:
        replies.append(await send())
    return replies


# --- the protocol on the wire ----------------------------------------------------------------------


@async_test
async def test_streaming_chat_prefill_and_decode_requests_on_the_wire() -> None:
    async with running() as s:
        client_body = chat_body(stream=True, stream_options={"include_usage": True}, max_tokens=64, temperature=0)
        reply = await s.post(CHAT, client_body)
        assert reply.status == 200
        [prefill], [decode] = s.prefill[0].seen, s.decode[0].seen

    wanted_prefill = {k: v for k, v in client_body.items() if k != "stream_options"}
    wanted_prefill.update(stream=False, max_tokens=1, min_tokens=1, kv_transfer_params=PREFILL_KV_REQUEST)
    assert prefill.path == decode.path == CHAT
    assert prefill.body == wanted_prefill  # exactly: no max_completion_tokens, no stream_options
    assert decode.body == {**client_body, "kv_transfer_params": kv_params_of(s.prefill[0])}
    assert prefill.request_id == decode.request_id == reply.headers["X-Request-Id"]
    assert uuid.UUID(prefill.request_id).version == 4
    assert "Authorization" not in prefill.headers and "Authorization" not in decode.headers  # never "Bearer None"


@async_test
async def test_non_streaming_completion_drops_stream_options_and_caps_max_completion_tokens() -> None:
    async with running() as s:
        client_body = completions_body(stream=False, stream_options={"include_usage": True}, max_completion_tokens=50)
        reply = await s.post(COMPLETIONS, client_body)
        first_id = reply.headers["X-Request-Id"]
        again = await s.post(COMPLETIONS, client_body)
        [prefill, _], [decode, _] = s.prefill[0].seen, s.decode[0].seen

    assert reply.status == 200
    assert prefill.path == decode.path == COMPLETIONS
    assert prefill.body["max_completion_tokens"] == 1 and prefill.body["max_tokens"] == 1
    assert prefill.body["stream"] is False and "stream_options" not in prefill.body
    wanted_decode = {k: v for k, v in client_body.items() if k != "stream_options"}
    assert decode.body == {**wanted_decode, "kv_transfer_params": kv_params_of(s.prefill[0])}
    assert again.headers["X-Request-Id"] != first_id  # one id per client request


@async_test
async def test_backend_api_keys_are_sent_per_phase() -> None:
    async with running(prefill={"api_key": "prefill-key"}, decode={"api_key": "decode-key"}) as s:
        assert (await s.post(CHAT, chat_body(stream=True))).status == 200
        assert (await s.get("/v1/models")).status == 200
        [prefill], [decode, models] = s.prefill[0].seen, s.decode[0].seen

    assert prefill.headers["Authorization"] == "Bearer prefill-key"
    assert decode.headers["Authorization"] == "Bearer decode-key"
    assert models.path == "/v1/models" and models.headers["Authorization"] == "Bearer decode-key"


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "json"])
@async_test
async def test_answer_is_relayed(path: str, streaming: bool) -> None:
    async with running() as s:
        reply = await s.post(path, BODIES[path](stream=streaming))
        decode = s.decode[0]

    assert reply.status == 200
    if streaming:
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        assert reply.events() == [e.data for e in SSEParser().feed(stream_body(decode, path))]
        assert text_of(path, reply.events()) == expected_text(decode)
    else:
        assert answer_text(path, reply) == expected_text(decode)


@async_test
async def test_decode_instance_is_chosen_on_the_load_after_the_prefill() -> None:
    """Requests arriving during a long prefill must not all pile onto the decode idle at arrival."""
    async with running(decodes=2) as s:
        gate = asyncio.Event()
        for backend in s.decode:
            backend.behaviour = stream(sse(chunk(CHAT, "a"), done=False), sse(chunk(CHAT, "b")), gate=gate)
        busy = asyncio.ensure_future(s.post(CHAT, chat_body(stream=True)))
        await eventually(lambda: sum(len(b.seen) for b in s.decode) == 1)
        s.prefill[0].behaviour = delayed(0.1)
        pending = [asyncio.ensure_future(s.post(CHAT, chat_body(stream=True))) for _ in range(3)]
        await eventually(lambda: sum(len(b.seen) for b in s.decode) == 4)
        spread = sorted(len(b.seen) for b in s.decode)
        gate.set()
        replies = await asyncio.gather(busy, *pending)

    assert spread == [2, 2]  # 1 busy + 3 new: the new ones go 1 / 2, not 0 / 3
    assert all(r.status == 200 for r in replies)


@async_test
async def test_requests_one_after_another_alternate_between_idle_decode_instances() -> None:
    """At low load every decode instance is idle when a request comes: ties go round-robin, so
    one request after another reaches each decode instance in turn, not always the first."""
    async with running(decodes=2) as s:
        for _ in range(4):
            assert (await s.post(CHAT, chat_body())).status == 200
        assert [len(b.seen) for b in s.decode] == [2, 2]


# --- SSE framing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [5, 23])
@async_test
async def test_events_split_across_network_reads_are_relayed_intact(size: int) -> None:
    """Every event, including the first, arrives in pieces (some cut a UTF-8 character)."""
    async with running() as s:
        body = stream_body(s.decode[0], CHAT)
        s.decode[0].behaviour = stream(*pieces_of(body, size), delay=0.001)
        reply = await s.post(CHAT, chat_body(stream=True))

    assert reply.status == 200
    assert [json.loads(e) for e in reply.events()[:-1]] == [chunk(CHAT, t) for t in tokens_of(s.decode[0])]
    assert reply.events()[-1] == "[DONE]"


@async_test
async def test_events_merged_in_one_read_are_all_relayed() -> None:
    async with running() as s:
        texts = [f"token{i} " for i in range(20)]
        s.decode[0].behaviour = stream(sse(*(chunk(COMPLETIONS, t) for t in texts)))
        reply = await s.post(COMPLETIONS, completions_body(stream=True))

    assert reply.status == 200
    assert text_of(COMPLETIONS, reply.events()) == "".join(texts)


@async_test
async def test_crlf_line_ends_are_normalised_and_comments_kept() -> None:
    async with running() as s:
        body = b": keep-alive\r\n\r\n" + stream_body(s.decode[0], CHAT).replace(b"\n", b"\r\n")
        s.decode[0].behaviour = stream(*pieces_of(body, 9), delay=0.005)
        reply = await s.post(CHAT, chat_body(stream=True))

    assert text_of(CHAT, reply.events()) == expected_text(s.decode[0])
    assert reply.body.startswith(b": keep-alive\n\n")


# --- prefill failures ---------------------------------------------------------------------------------

NO_KV = {"id": "cmpl-1", "choices": [{"text": "x"}], "usage": {"prompt_tokens": 3}}
PREFILL_FAULTS: Dict[str, Any] = {
    "refused": None,  # the instance's port is closed
    "http-500": answer(500, {"error": {"message": "engine dead"}}),
    "hang": hang(),
    "no-kv-params": answer(200, NO_KV),
}
PREFILL_FAULT_STATUS = {"refused": 502, "http-500": 502, "hang": 504, "no-kv-params": 502}


async def break_backend(backend: FakeBackend, fault: Any) -> None:
    if fault is None:
        await backend.stop()
    else:
        backend.behaviour = fault


@pytest.mark.parametrize("fault", PREFILL_FAULTS)
@async_test
async def test_failed_prefill_is_retried_on_another_prefill_instance(fault: str) -> None:
    async with running(prefills=2) as s:
        broken, good = s.prefill
        await break_backend(broken, PREFILL_FAULTS[fault])
        replies = await until_tried(s, broken, lambda: s.post(CHAT, chat_body(stream=True)))
        decoded = s.decode[0].seen

    assert all(r.status == 200 and text_of(CHAT, r.events()) == expected_text(s.decode[0]) for r in replies)
    assert len(good.seen) == len(replies) and len(broken.seen) == (0 if fault == "refused" else 1)
    assert [d.body["kv_transfer_params"] for d in decoded] == [kv_params_of(good)] * len(replies)
    retried = [d.request_id for d in decoded if d.request_id.endswith("-retry1")]
    assert len(retried) == 1  # the retry has a new request id
    if broken.seen:
        assert retried[0] == broken.seen[0].request_id + "-retry1"


@pytest.mark.parametrize("fault", PREFILL_FAULTS)
@async_test
async def test_prefill_failing_everywhere_is_a_json_error_naming_the_instance(fault: str) -> None:
    async with running(timeouts={"prefill": 0.3}) as s:
        await break_backend(s.prefill[0], PREFILL_FAULTS[fault])
        reply = await s.post(CHAT, chat_body(stream=True))

    assert reply.status == PREFILL_FAULT_STATUS[fault]
    message = reply.error()
    assert "p0" in message and s.prefill[0].url in message
    if fault == "hang":
        assert "timeouts.prefill" in message
    assert s.decode[0].seen == []


@async_test
async def test_no_healthy_prefill_instance_is_503() -> None:
    def down(prefill: List[FakeBackend], _decode: List[FakeBackend]) -> None:
        prefill[0].health_status = 503

    async with running(setup=down, wait_healthy=False) as s:
        await eventually(lambda: s.state(s.decode[0]) == "healthy")
        reply = await s.post(CHAT, chat_body())
        health = await s.get("/health")

    assert reply.status == 503 and "no prefill instance" in reply.error()
    assert s.prefill[0].seen == [] and s.decode[0].seen == []
    assert health.status == 503 and health.json()["status"] == "unavailable"


# --- a backend's 4xx --------------------------------------------------------------------------------

TOO_LONG = {"error": {"message": "This model's maximum context length is 8192 tokens", "code": 400}}


@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "json"])
@async_test
async def test_backend_4xx_is_relayed_as_is_and_not_retried(phase: str, streaming: bool) -> None:
    async with running(prefills=2, decodes=2) as s:
        for backend in s.prefill if phase == "prefill" else s.decode:
            backend.behaviour = answer(400, TOO_LONG)
        reply = await s.post(CHAT, chat_body(stream=streaming))
        states = {s.state(b) for b in s.prefill + s.decode}

    assert reply.status == 400 and reply.json() == TOO_LONG
    tried = s.prefill if phase == "prefill" else s.decode
    assert sum(len(b.seen) for b in tried) == 1  # not retried elsewhere
    if phase == "prefill":
        assert all(b.seen == [] for b in s.decode)
    assert states == {"healthy"}  # the request was wrong, not the backend


# --- decode failures before the first event --------------------------------------------------------

DECODE_FAULTS: Dict[str, Handler] = {
    "http-500": answer(500, {"error": {"message": "engine dead"}}),
    "error-event-first": stream(sse({"error": {"message": "KV transfer failed", "code": 500}})),
    "closed-before-any-event": stream(b""),
    "dropped-before-any-event": stream(b": ping\n\n", end="drop"),
    "hang": hang(),
    "headers-then-hang": stream(b": ping\n\n", end="hang"),
}
DECODE_FAULT_STATUS = {"hang": 504, "headers-then-hang": 504}


@pytest.mark.parametrize("fault", DECODE_FAULTS)
@async_test
async def test_decode_failing_before_its_first_event_is_retried_with_a_new_request_id(fault: str) -> None:
    async with running(decodes=2) as s:
        broken, good = s.decode
        broken.behaviour = DECODE_FAULTS[fault]
        replies = await until_tried(s, broken, lambda: s.post(CHAT, chat_body(stream=True)))

    assert all(r.status == 200 and text_of(CHAT, r.events()) == expected_text(good) for r in replies)
    assert len(broken.seen) == 1 and len(good.seen) == len(replies)
    failed_id = broken.seen[0].request_id
    retry = next(d for d in good.seen if d.request_id.startswith(failed_id[:36]))
    assert retry.request_id != failed_id and retry.request_id.endswith("-retry1")
    # The client sees one id per request, whatever the attempts were called upstream.
    assert failed_id in {r.headers["X-Request-Id"] for r in replies}
    assert {p.request_id for p in s.prefill[0].seen} == {d.request_id for d in broken.seen + good.seen}


@pytest.mark.parametrize("fault", DECODE_FAULTS)
@async_test
async def test_decode_failing_everywhere_before_its_first_event_is_a_5xx_json_error(fault: str) -> None:
    async with running() as s:
        s.decode[0].behaviour = DECODE_FAULTS[fault]
        reply = await s.post(CHAT, chat_body(stream=True))

    assert reply.status == DECODE_FAULT_STATUS.get(fault, 502)  # never 200 with an empty body
    assert "d0" in reply.error()


@pytest.mark.parametrize("fault", ["http-500", "hang", "not-json"])
@async_test
async def test_non_streaming_decode_failure_is_retried_then_a_json_error(fault: str) -> None:
    handlers = {"http-500": answer(500, {}), "hang": hang(), "not-json": answer(200, ["not", "an", "object"])}
    async with running(decodes=2) as s:
        s.decode[0].behaviour = s.decode[1].behaviour = handlers[fault]
        failed = await s.post(COMPLETIONS, completions_body())
        s.decode[1].behaviour = None
        retried = await s.post(COMPLETIONS, completions_body())

    assert failed.status == (504 if fault == "hang" else 502) and "decode instance" in failed.error()
    assert retried.status == 200 and answer_text(COMPLETIONS, retried) == expected_text(s.decode[1])


# --- decode failures after the first event -----------------------------------------------------------


@pytest.mark.parametrize("end", ["drop", "hang", "eof"], ids=["connection-dropped", "idle-timeout", "eof-no-done"])
@async_test
async def test_decode_failing_mid_stream_ends_with_an_sse_error_event_then_done(end: str) -> None:
    async with running(decodes=2) as s:
        first = sse(chunk(CHAT, "partial"), done=False)
        for backend in s.decode:
            backend.behaviour = stream(first, delay=0.01, end=end)
        reply = await s.post(CHAT, chat_body(stream=True))

    assert reply.status == 200
    events = reply.events()
    assert [json.loads(events[0]), events[-1]] == [chunk(CHAT, "partial"), "[DONE]"]
    assert len(events) == 3
    message = json.loads(events[1])["error"]["message"]
    assert "failed mid-stream" in message and ("d0" in message or "d1" in message)
    assert sum(len(b.seen) for b in s.decode) == 1  # committed: no retry after the first event


@async_test
async def test_decode_error_event_mid_stream_is_relayed_and_counted() -> None:
    async with running() as s:
        error = {"error": {"message": "engine died", "code": 500}}
        s.decode[0].behaviour = stream(sse(chunk(CHAT, "a"), error))
        reply = await s.post(CHAT, chat_body(stream=True))
        errors = await s.metric("pd_proxy_backend_requests_total", backend="d0", phase="decode", outcome="error")

    assert [json.loads(e) for e in reply.events()[:-1]] == [chunk(CHAT, "a"), error]
    assert reply.events()[-1] == "[DONE]" and errors == 1


# --- client disconnect ------------------------------------------------------------------------------------


@async_test
async def test_client_disconnect_mid_stream_cancels_the_upstream_decode() -> None:
    async with running() as s:
        decode = s.decode[0]
        decode.behaviour = stream(sse(chunk(CHAT, "first"), done=False), end="hang")
        async with s.client.post(s.url + CHAT, json=chat_body(stream=True)) as response:
            assert response.status == 200
            assert (await response.content.readline()).startswith(b"data: ")
            assert s.in_flight(decode) == 1
            response.close()  # the client goes away
        await eventually(lambda: decode.cancelled == 1, timeout=1.0, what="decode request cancelled")
        await eventually(lambda: s.proxy.in_flight == 0 and s.in_flight(decode) == 0, timeout=1.0)
        assert s.state(decode) == "healthy"  # the client left; the backend did nothing wrong


@async_test
async def test_client_disconnect_during_prefill_cancels_it() -> None:
    async with running() as s:
        s.prefill[0].behaviour = hang()
        task = asyncio.ensure_future(s.post(CHAT, chat_body(stream=True)))
        await eventually(lambda: len(s.prefill[0].seen) == 1)
        task.cancel()
        await eventually(lambda: s.prefill[0].cancelled == 1, timeout=0.4, what="prefill request cancelled")
        assert s.decode[0].seen == []


# --- a DP group losing a rank --------------------------------------------------------------------------

# Long enough that only the group's loss, not a timeout, can end a stalled request in a test.
PATIENT = {"decode": 30, "decode_first_chunk": 30, "idle": 30}


async def landed(s: Setup, task: asyncio.Task[Reply]) -> FakeBackend:
    """The decode fake a request in flight went to."""
    await eventually(lambda: any(s.in_flight(b) for b in s.decode), what="a decode holds the request")
    return next(b for b in s.decode if s.in_flight(b))


def rank_lost(s: Setup, sibling: FakeBackend) -> None:
    """What the health checks do when a rank's process is gone: two failures, ejected."""
    pool = s.proxy.pools["decode"]
    for _ in range(2):
        pool.failed(pool.backends[sibling.url], "health check: Cannot connect (connection refused)")


@pytest.mark.parametrize("lost", ["another-rank", "its-own-rank"])
@async_test
async def test_requests_stalled_on_a_group_that_lost_a_rank_are_retried_on_another_group(lost: str) -> None:
    async with running(decodes=4, group_size=2, timeouts=PATIENT) as s:
        for backend in s.decode:
            backend.behaviour = hang()  # wherever it lands, the request stalls
        task = asyncio.ensure_future(s.post(COMPLETIONS, completions_body()))
        stalled = await landed(s, task)
        group = s.decode[:2] if stalled in s.decode[:2] else s.decode[2:]
        other = [b for b in s.decode if b not in group]
        for backend in other:
            backend.behaviour = None
        # A rank that stops answering is ejected too: its own requests are aborted as well.
        rank_lost(s, stalled if lost == "its-own-rank" else next(b for b in group if b is not stalled))
        reply = await task
        health = (await s.get("/health")).json()
        healthy = {b.name: await s.metric("pd_proxy_backend_healthy", backend=b.name, phase="decode") for b in s.decode}

    assert reply.status == 200 and answer_text(COMPLETIONS, reply) in {expected_text(b) for b in other}
    assert health["decode"] == {"healthy": 2, "total": 4}
    assert healthy == {b.name: float(b in other) for b in s.decode}
    if lost == "another-rank":
        assert s.state(stalled) == "healthy"  # held, not blamed: it comes back with its group


@async_test
async def test_a_stream_on_a_group_that_lost_a_rank_ends_with_an_error_naming_the_group() -> None:
    async with running(decodes=4, group_size=2, timeouts=PATIENT) as s:
        for backend in s.decode:
            backend.behaviour = stream(sse(chunk(CHAT, "partial"), done=False), end="hang")
        task = asyncio.ensure_future(s.post(CHAT, chat_body(stream=True)))
        stalled = await landed(s, task)
        group = s.decode[:2] if stalled in s.decode[:2] else s.decode[2:]
        await eventually(lambda: bool(stalled.seen), what="the stream started")
        await asyncio.sleep(0.05)  # the first event relayed: the stream is committed
        lost = next(b for b in group if b is not stalled)
        rank_lost(s, lost)
        reply = await task
        for backend in s.decode:
            backend.behaviour = None
        later = [await s.post(COMPLETIONS, completions_body(max_tokens=4)) for _ in range(4)]

    events = reply.events()
    assert reply.status == 200 and events[-1] == "[DONE]" and json.loads(events[0]) == chunk(CHAT, "partial")
    message = json.loads(events[-2])["error"]["message"]
    name = "decode0" if stalled in s.decode[:2] else "decode1"
    assert f"instance {stalled.name} failed mid-stream" in message, message
    assert f"aborted, its DP group {name} lost {lost.name}" in message, message
    # Later requests are served by the other group alone, never by the held rank.
    assert [r.status for r in later] == [200] * 4
    assert len(stalled.seen) == 1 and not lost.seen[1:], (stalled.seen, lost.seen)


@async_test
async def test_a_group_failing_every_request_is_retried_on_another_group_and_ejected() -> None:
    """Both ranks of decode1 fail (their KV pulls cannot reach the prefill) while /health passes:
    the retry goes to another group, not to the sibling rank, so the failures are charged."""
    # Slow to eject: many retries, each of which could pick the sibling rank.
    async with running(decodes=4, group_size=2, health={"failures_to_eject": 5}) as s:
        broken = s.decode[2:]
        for backend in broken:
            backend.behaviour = answer(500, {"error": {"message": "cannot connect to the prefill engine", "code": 500}})
        replies = [await s.post(COMPLETIONS, completions_body(max_tokens=4)) for _ in range(24)]
        states = [s.state(b) for b in s.decode]

    assert [r.status for r in replies] == [200] * 24, [r.body[:200] for r in replies if r.status != 200][:2]
    assert {answer_text(COMPLETIONS, r) for r in replies} <= {expected_text(b) for b in s.decode[:2]}
    assert states[:2] == ["healthy", "healthy"] and "ejected" in states[2:], states
    assert sum(len(b.seen) for b in broken) >= 2
