# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lean upstream client (``upstream.py``): its HTTP/1.1 response parser on realistic
answers cut at every byte, and its connections against real servers: keep-alive reuse only
after a complete answer, the close that tells vLLM its client left, failures in words, TLS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any, Awaitable, Callable, List, Tuple

import pytest
from aiohttp import web

from ascend_pd_proxy import upstream
from ascend_pd_proxy.upstream import (
    ConnectFailed,
    Disconnected,
    MalformedAnswer,
    ResponseParser,
    Upstreams,
)
from tests.unit.proxy.fakes import (
    CHAT,
    HOST,
    answer,
    async_test,
    chat_body,
    eventually,
    running,
    stream_body,
    vllm_answer,
)
from tests.unit.proxy.test_limits import self_signed

JSON = "application/json"
# What vLLM (uvicorn) sends: a JSON answer with its length, and an SSE stream chunked.
JSON_BODY = b'{"id":"cmpl-1","choices":[]}'
JSON_ANSWER = (
    b"HTTP/1.1 200 OK\r\ndate: Fri, 04 Dec 2026 15:00:00 GMT\r\nserver: uvicorn\r\n"
    b"content-length: %d\r\ncontent-type: application/json\r\n\r\n%s" % (len(JSON_BODY), JSON_BODY)
)
EVENTS = [b'data: {"id":"c1","choices":[{"delta":{"content":"Hi"}}]}\n\n', b"data: [DONE]\n\n"]
SSE_ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n\r\n" + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS) + b"0\r\n\r\n"
)
# The same with what the standard allows and uvicorn does not send: extensions, trailers, LF ends.
SSE_EXOTIC = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    + b"%X;name=value;q=1\r\n%s\r\n" % (len(EVENTS[0]), EVENTS[0])
    + b"%x \n%s\n" % (len(EVENTS[1]), EVENTS[1])
    + b"0;last\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n"
)


def parse_in(pieces: List[bytes]) -> Tuple[ResponseParser, bytes]:
    parser = ResponseParser()
    body = b"".join(b"".join(parser.feed(piece)) for piece in pieces)
    return parser, body


def every_split(data: bytes) -> List[List[bytes]]:
    """``data`` in two pieces at every position, in three around each, and byte by byte."""
    splits = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    splits += [[data[:i], data[i : i + 1], data[i + 1 :]] for i in range(len(data))]
    splits.append([data[i : i + 1] for i in range(len(data))])
    return splits


@pytest.mark.parametrize(
    "raw, body, content_type",
    [
        (JSON_ANSWER, JSON_BODY, "application/json"),
        (SSE_ANSWER, b"".join(EVENTS), "text/event-stream"),
        (SSE_EXOTIC, b"".join(EVENTS), "text/event-stream"),
    ],
    ids=["content-length", "chunked", "chunked-extensions-trailers"],
)
def test_an_answer_parses_alike_however_it_is_cut(raw: bytes, body: bytes, content_type: str) -> None:
    for pieces in every_split(raw):
        parser, got = parse_in(pieces)
        assert (parser.status, got, parser.done, parser.leftover) == (200, body, True, b""), pieces
        assert parser.content_type == content_type
        assert parser.keep_alive


def test_bytes_after_the_end_are_leftover_and_the_body_stays_exact() -> None:
    for raw in (JSON_ANSWER, SSE_ANSWER):
        for pieces in every_split(raw + JSON_ANSWER):
            parser, got = parse_in(pieces)
            assert parser.done and parser.leftover == JSON_ANSWER
            assert got == (JSON_BODY if raw is JSON_ANSWER else b"".join(EVENTS))


def test_a_body_delimited_by_the_close_ends_at_eof_and_is_not_kept_alive() -> None:
    parser, body = parse_in([b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{", b'"a": 1}'])
    assert not parser.done and body == b'{"a": 1}'
    parser.feed_eof()
    assert parser.done and not parser.keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        SSE_ANSWER[: SSE_ANSWER.index(b"[DONE]")],  # mid-chunk
        SSE_ANSWER[: SSE_ANSWER.index(b"0\r\n\r\n")],  # between chunks, no last chunk
        SSE_ANSWER[:-2],  # no blank line after the last chunk
        JSON_ANSWER[:-1],  # one byte short of its Content-Length
    ],
)
def test_a_connection_closed_before_the_end_is_an_answer_cut_off(raw: bytes) -> None:
    parser, _ = parse_in([raw])
    with pytest.raises(Disconnected, match="cut off"):
        parser.feed_eof()


@pytest.mark.parametrize("raw", [b"", b"HTTP/1.1 200 OK\r\ncontent-le"])
def test_a_connection_closed_before_the_head_says_so(raw: bytes) -> None:
    parser, _ = parse_in([raw])
    with pytest.raises(Disconnected, match="closed before the answer was complete"):
        parser.feed_eof()


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
        (b"HTTP/2 200\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\n folded: value\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", "control character"),
        (b"HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nX A: a\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 17 + b"\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than its size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 9000, "line longer"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 70000 + b"\r\n\r\n", "larger than 65536"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 70000, "larger than 65536"),
    ],
)
def test_a_malformed_answer_is_refused_with_its_problem_named(raw: bytes, problem: str) -> None:
    for pieces in ([raw], [raw[: len(raw) // 2], raw[len(raw) // 2 :]]):
        with pytest.raises(MalformedAnswer, match=problem):
            parse_in(pieces)


def test_informational_answers_are_skipped() -> None:
    parser, body = parse_in(
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + JSON_ANSWER]
    )
    assert parser.status == 200 and parser.done and body == JSON_BODY


@pytest.mark.parametrize(
    "head, keep_alive",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", True),
        # Both framings: chunked wins, and the connection is not trusted again (request smuggling).
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False),
    ],
)
def test_bodies_without_bytes_and_keep_alive(head: bytes, keep_alive: bool) -> None:
    parser, _ = parse_in([head])
    assert parser.done and parser.keep_alive is keep_alive


def test_content_type_is_the_media_type_and_aiohttps_default_when_absent() -> None:
    parser, _ = parse_in(
        [b"HTTP/1.1 400 Bad\r\nContent-Type: Application/JSON ; charset=utf-8\r\nContent-Length: 0\r\n\r\n"]
    )
    assert parser.status == 400 and parser.content_type == "application/json"
    parser, _ = parse_in([b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"])
    assert parser.content_type == "application/octet-stream"


# --- connections against real servers ------------------------------------------------------------


Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server that answers each request with what ``reply`` says, and counts connections."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.closed = asyncio.Event()  # a connection ended (the client closed it)
        self.heads: List[bytes] = []
        self.writers: List[asyncio.StreamWriter] = []
        self.server: Any = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        return f"http://{HOST}:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_exc: Any) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                await self.reply(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
        finally:
            writer.close()


def replying(data: bytes, close: bool = False) -> Reply:
    async def reply(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        if close:
            writer.close()
            raise ConnectionError

    return reply


HEADERS = {"Content-Type": "application/json", "X-Request-Id": "r-1", "Authorization": "Bearer k"}


@async_test
async def test_a_connection_is_reused_only_after_its_answer_was_read_to_the_end() -> None:
    ups = Upstreams(connect_timeout=1)
    server = RawServer(replying(JSON_ANSWER))
    async with server as base:
        for _ in range(3):
            got = await ups.post(base, CHAT, b"{}", HEADERS)
            assert (got.status, got.content_type, await got.read()) == (200, JSON, JSON_BODY)
        assert server.connections == 1
        # The request as sent: the fixed headers, the length, nothing else.
        assert (
            server.heads[0]
            == (
                f"POST {CHAT} HTTP/1.1\r\nHost: {base[7:]}\r\nContent-Type: application/json\r\n"
                "X-Request-Id: r-1\r\nAuthorization: Bearer k\r\nContent-Length: 2\r\n\r\n"
            ).encode()
        )
        unread = await ups.post(base, CHAT, b"{}", HEADERS)
        await eventually(lambda: unread._parser.done)
        unread.release()  # all in, only not consumed: the connection is in step, and reused
        await (await ups.post(base, CHAT, b"{}", HEADERS)).read()
        assert server.connections == 1

    server = RawServer(replying(SSE_ANSWER[:-5]))
    async with server as base:
        unfinished = await ups.post(base, CHAT, b"{}", HEADERS)
        assert await unfinished.readany() == b"".join(EVENTS)
        unfinished.release()  # its end not in: the connection cannot carry another request
        await asyncio.wait_for(server.closed.wait(), 2)
    ups.close()


@async_test
async def test_a_connection_is_not_reused_after_connection_close_or_extra_bytes() -> None:
    for data in (JSON_ANSWER.replace(b"server: uvicorn", b"connection: close"), JSON_ANSWER + b"garbage"):
        ups = Upstreams(connect_timeout=1)
        server = RawServer(replying(data))
        async with server as base:
            for _ in range(2):
                assert await (await ups.post(base, CHAT, b"{}", HEADERS)).read() == JSON_BODY
            assert server.connections == 2
        ups.close()


@async_test
async def test_an_idle_connection_the_server_closed_is_replaced_without_an_error() -> None:
    ups = Upstreams(connect_timeout=1)
    server = RawServer(replying(JSON_ANSWER, close=True))  # as uvicorn after its keep-alive timeout
    async with server as base:
        for _ in range(3):
            assert await (await ups.post(base, CHAT, b"{}", HEADERS)).read() == JSON_BODY
        assert server.connections == 3
    ups.close()


@async_test
async def test_failures_are_upstream_errors_that_name_their_cause() -> None:
    ups = Upstreams(connect_timeout=1)
    server = RawServer(replying(b"", close=True))
    async with server as base:
        with pytest.raises(Disconnected, match="closed before the answer was complete"):
            await ups.post(base, CHAT, b"{}", HEADERS)
    with pytest.raises(ConnectFailed, match="cannot connect: Connection refused"):
        await ups.post(base, CHAT, b"{}", HEADERS)
    async with RawServer(replying(b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n")) as base:
        with pytest.raises(MalformedAnswer, match="Content-Length"):
            await ups.post(base, CHAT, b"{}", HEADERS)
    async with RawServer(replying(SSE_ANSWER[:-20], close=True)) as base:
        cut = await ups.post(base, CHAT, b"{}", HEADERS)
        with pytest.raises(Disconnected, match="cut off"):
            await cut.read()
        cut.release()
    with pytest.raises(ValueError, match="line break"):
        await ups.post(base, CHAT, b"{}", {"Authorization": "Bearer k\r\nX-Evil: 1"})
    ups.close()


@async_test
async def test_a_cancelled_request_or_an_answer_left_unread_closes_the_connection() -> None:
    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # no answer: returns at the client's close

    ups = Upstreams(connect_timeout=1)
    server = RawServer(silent)
    async with server as base:
        task = asyncio.ensure_future(ups.post(base, CHAT, b"{}", HEADERS))
        await eventually(lambda: server.connections == 1)
        task.cancel()
        await asyncio.wait_for(server.closed.wait(), 2)

    async def first_event_only(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_ANSWER[: SSE_ANSWER.index(b"data: [DONE]") - 4])
        await writer.drain()
        await _reader.read(1)

    server = RawServer(first_event_only)
    async with server as base:
        streaming = await ups.post(base, CHAT, b"{}", HEADERS)
        assert await streaming.readany() == EVENTS[0]
        reading = asyncio.ensure_future(streaming.readany())
        await asyncio.sleep(0.05)
        streaming.close()  # as when a DP group loses a rank
        with pytest.raises(Disconnected):
            await reading
        streaming.release()
        await asyncio.wait_for(server.closed.wait(), 2)
    ups.close()


@async_test
async def test_a_large_answer_is_read_whole_through_the_flow_control() -> None:
    size = 3 * upstream.PAUSE_ABOVE + 12345
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + body
    ups = Upstreams(connect_timeout=1)
    async with RawServer(replying(big)) as base:
        got = await ups.post(base, CHAT, b"{}", HEADERS)
        await asyncio.sleep(0.2)  # let it fill the buffer: reading pauses
        assert await got.read() == body
    ups.close()


@async_test
async def test_https_backends_are_verified_as_aiohttp_does(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(
        lambda r, w: RawServer(replying(JSON_ANSWER))._serve(r, w), HOST, 0, ssl=context
    )
    base = f"https://{HOST}:{server.sockets[0].getsockname()[1]}"
    ups = Upstreams(connect_timeout=2)
    with pytest.raises(ConnectFailed, match=r"cannot connect: TLS: .*CERTIFICATE_VERIFY_FAILED"):
        await ups.post(base, CHAT, b"{}", HEADERS)
    ups.ssl_context().load_verify_locations(cafile=str(cert))  # the system's CAs, plus this one
    got = await ups.post(base, CHAT, b"{}", HEADERS)
    assert await got.read() == JSON_BODY
    ups.close()
    server.close()


# --- through the proxy ---------------------------------------------------------------------------


def raw_answer(data: bytes) -> Any:
    """A fake vLLM behaviour that writes ``data`` as its whole answer, then closes."""

    async def handler(_backend: Any, request: web.Request, _body: Any) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.write(data)
        request.transport.close()
        return web.Response()

    return handler


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 70000 + b"\r\n\r\n", "larger than 65536 bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnope\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", "cut off"),
        (b"", "closed before the answer was complete"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
@async_test
async def test_a_malformed_backend_answer_is_a_502_naming_the_backend(data: bytes, problem: str, stream: bool) -> None:
    async with running(retries={"attempts": 1}) as s:
        s.decode[0].behaviour = raw_answer(data)
        reply = await s.post(CHAT, chat_body(stream=stream))
        assert reply.status == 502, reply.body
        assert "decode instance d0" in reply.error() and problem in reply.error()
        s.prefill[0].behaviour = answer(404, {"error": {"message": "no such model", "code": 404}})
        assert (await s.post(CHAT, chat_body())).status == 404  # the proxy still serves


def uvicorn_stream(pause: float) -> Any:
    """A stream as uvicorn ends it: the last chunk (``0``) in a write of its own, ``pause`` after ``[DONE]``."""

    async def handler(backend: Any, request: web.Request, body: Any) -> web.StreamResponse:
        if not body.get("stream"):
            return await vllm_answer(backend, request, body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(stream_body(backend, request.path))
        await asyncio.sleep(pause)
        await response.write_eof()
        return response

    return handler


@pytest.mark.parametrize("pause", [0.0, 0.05])
@async_test
async def test_streams_and_whole_answers_reuse_their_connections(pause: float, monkeypatch: pytest.MonkeyPatch) -> None:
    connects: List[str] = []
    connect = upstream._Pool.connect

    async def counted(pool: Any) -> Any:
        connects.append(f"{pool.host}:{pool.port}")
        return await connect(pool)

    monkeypatch.setattr(upstream._Pool, "connect", counted)
    async with running() as s:
        s.decode[0].behaviour = uvicorn_stream(pause)
        for stream in (True, False, True, True, False):
            reply = await s.post(CHAT, chat_body(stream=stream))
            assert reply.status == 200 and reply.body.rstrip().endswith(b"[DONE]" if stream else b"}")
            await asyncio.sleep(2 * pause)  # the next request comes after the last chunk
        # One connection each: a stream's goes back to its pool once its last chunk is in, after [DONE].
        assert len(connects) == 2, connects


@async_test
async def test_a_drained_stream_is_reused_once_its_end_comes_and_closed_if_it_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upstream, "DRAIN_SECONDS", 0.1)
    cut = SSE_ANSWER.index(b"0\r\n\r\n")

    async def end_late(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_ANSWER[:cut])
        await asyncio.sleep(0.03)
        writer.write(SSE_ANSWER[cut:])

    ups = Upstreams(connect_timeout=1)
    for reply, connections in ((end_late, 1), (replying(SSE_ANSWER[:cut]), 2), (replying(SSE_ANSWER + b"x"), 2)):
        server = RawServer(reply)
        async with server as base:
            for _ in range(2):
                streaming = await ups.post(base, CHAT, b"{}", HEADERS)
                got = b""
                while b"[DONE]" not in got:
                    got += await streaming.readany()
                streaming.release(drain=True)
                await asyncio.sleep(0.2)  # past DRAIN_SECONDS
            assert server.connections == connections
    ups.close()


@async_test
async def test_a_body_ended_by_the_close_is_read_whole() -> None:
    ups = Upstreams(connect_timeout=1)
    server = RawServer(replying(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + JSON_BODY, close=True))
    async with server as base:
        for _ in range(2):
            assert await (await ups.post(base, CHAT, b"{}", HEADERS)).read() == JSON_BODY
        assert server.connections == 2
    ups.close()


@async_test
async def test_no_connection_within_the_connect_timeout_is_a_504_naming_the_setting() -> None:
    loop = asyncio.get_running_loop()

    async def never(*_args: Any, **_kwargs: Any) -> Any:
        await asyncio.sleep(3600)

    loop.create_connection = never  # type: ignore[method-assign]
    with pytest.raises(upstream.ConnectTimeout, match=r"no connection within 0.1 s \(timeouts.connect\)") as failed:
        await Upstreams(connect_timeout=0.1).post(f"http://{HOST}:9", CHAT, b"{}", HEADERS)
    assert failed.value.status == 504
