"""A lean HTTP/1.1 client for the generate hot path: POSTs to the proxy's own vLLM instances.

aiohttp's ClientSession (request and response objects, connector, payload writer, stream
reader) was about a third of the proxy's busy time, for two backend requests per client
request. The proxy needs far less than a general client: it only talks to known vLLM servers,
sends a fixed set of headers and a ``bytes`` body with its ``Content-Length``, and reads either
a ``Content-Length`` JSON answer or a chunked SSE stream (a close-delimited body is handled
too). So this module is an ``asyncio.Protocol`` per connection, a parser for the status line,
headers and chunked encoding, and keep-alive pools per backend. Health checks, the ``/metrics``
relay and the other endpoints keep aiohttp.

What it keeps from the aiohttp session it replaces: no limit on connections (``limit=0``),
idle connections kept for 75 s, TLS verified with the system's CAs (``ssl`` default context,
ALPN ``http/1.1``), a connection timeout, no ``Accept-Encoding`` (the proxy relays bytes as
they are). A connection is reused only when its previous answer was read to its end, nothing
followed it, and the server did not ask to close; any error, a cancellation or an answer left
unread closes it, so a vLLM instance sees its client leave and aborts the request.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import socket
import ssl
from typing import Deque, Dict, List, Mapping, Optional, Set, cast
from urllib.parse import urlsplit

from .http_util import deadline

__all__ = [
    "ConnectFailed",
    "ConnectTimeout",
    "Disconnected",
    "MalformedAnswer",
    "ResponseParser",
    "UpstreamError",
    "UpstreamResponse",
    "Upstreams",
]

MAX_HEAD = 65536  # status line and headers together; a larger head is not a vLLM answer
MAX_LINE = 8190  # one chunk-size or trailer line (aiohttp's max_line_size)
KEEPALIVE = 75.0  # seconds an idle connection is kept (aiohttp's TCPConnector keepalive_timeout)
PAUSE_ABOVE = 1 << 20  # stop reading from a backend while this much body is not consumed yet
SMALL_BODY = 1 << 16  # smaller bodies go out in one write with the head (one TCP segment)
# After a stream's [DONE], how long its last chunk (``0``, which uvicorn writes on its own) may
# take, and how many more bytes may come, for the connection to be reused rather than closed.
DRAIN_SECONDS = 1.0
DRAIN_BYTES = 1 << 16

_HEADER = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*?)[ \t]*")  # name: value
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,18}")
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control characters but tab, CR and LF


class UpstreamError(Exception):
    """A backend could not be reached, or its answer not read. ``str()`` is the cause in words,
    for logs and for the client's 502 (which the proxy prefixes with the backend's name);
    ``status`` is what the client gets when no other backend serves the request."""

    status = 502


class ConnectFailed(UpstreamError):
    """No connection: refused, unreachable, DNS, TLS handshake or certificate."""


class ConnectTimeout(ConnectFailed):
    """No connection within ``timeouts.connect``: the backend did not answer at all (504)."""

    status = 504


class Disconnected(UpstreamError):
    """The connection closed (or broke) before the answer was complete."""


class MalformedAnswer(UpstreamError):
    """The backend's bytes are not an HTTP/1.1 answer this client can read."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"malformed HTTP answer: {problem}")


# --- the parser ---------------------------------------------------------------------------------

_HEAD, _LENGTH, _UNTIL_EOF, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _DONE = range(8)
# A chunk-size line (its extensions ignored), and the same after the CRLF that ends a chunk: what
# the parser's line-by-line path accepts, in the form servers send it.
_SIZE_LINE = rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]{0,%d})?\r?\n" % MAX_LINE
_CHUNK_FAST = {_CHUNK_SIZE: re.compile(_SIZE_LINE), _CHUNK_END: re.compile(rb"\r?\n" + _SIZE_LINE)}


class ResponseParser:
    """An incremental parser of one HTTP/1.1 response: feed it the bytes as they come.

    ``feed()`` returns the pieces of decoded body the bytes complete (chunked framing removed;
    slices of the input, no copies where it can). ``status``, ``headers`` (names lower-cased)
    and ``content_type`` are set once the head is in; ``done`` once the body is complete;
    ``leftover`` is what came after the end (nothing, from a server answering one request).
    ``feed_eof()`` at the end of the connection: it completes a close-delimited body and raises
    :class:`Disconnected` for any other incomplete answer. Bad input raises
    :class:`MalformedAnswer`. Informational (1xx) answers are skipped.
    """

    __slots__ = (
        "_remaining",
        "_rest",
        "_started",
        "_state",
        "_trailer_bytes",
        "done",
        "headers",
        "keep_alive",
        "leftover",
        "status",
    )

    def __init__(self) -> None:
        self.status = 0
        self.headers: Dict[str, str] = {}
        self.keep_alive = False
        self.done = False
        self.leftover = b""
        self._state = _HEAD
        self._remaining = 0
        self._rest = b""  # an incomplete line (head, chunk size, trailer) waiting for its end
        self._trailer_bytes = 0
        self._started = False  # any byte received: a reused connection that sent none may be retried

    @property
    def started(self) -> bool:
        return self._started

    @property
    def content_type(self) -> str:
        """The media type, lower-cased and without parameters; aiohttp's default when absent."""
        value = self.headers.get("content-type")
        if not value:
            return "application/octet-stream"
        return value.split(";", 1)[0].strip().lower()

    def feed(self, data: bytes) -> List[bytes]:
        if data:
            self._started = True
        if self._rest:
            data, self._rest = self._rest + data, b""
        body: List[bytes] = []
        pos, size = 0, len(data)
        while pos < size:
            state = self._state
            if state in (_LENGTH, _CHUNK_DATA):
                take = min(self._remaining, size - pos)
                body.append(data if take == size else data[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_END if state == _CHUNK_DATA else self._finish()
            elif state == _UNTIL_EOF:
                body.append(data if pos == 0 else data[pos:])
                pos = size
            elif state == _DONE:
                self.leftover += data[pos:]
                break
            elif state == _HEAD:
                end = data.find(b"\r\n\r\n", pos)
                if end < 0 or end - pos > MAX_HEAD:
                    if end >= 0 or size - pos > MAX_HEAD:
                        raise MalformedAnswer(f"its header section is larger than {MAX_HEAD} bytes")
                    self._rest = data[pos:]
                    break
                self._head(data[pos:end])
                pos = end + 4
            else:  # a line of the chunked framing
                # Fast path, one regex for the usual case: the end of a chunk and the next size.
                fast = _CHUNK_FAST[state].match(data, pos) if state != _TRAILER else None
                if fast is not None:
                    pos = fast.end()
                    self._remaining = int(fast.group(1), 16)
                    self._state = _CHUNK_DATA if self._remaining else _TRAILER
                    continue
                # Otherwise line by line: a line not complete yet, odd spacing, trailers, errors.
                end = data.find(b"\n", pos)
                if end < 0 or end - pos > MAX_LINE:
                    if end >= 0 or size - pos > MAX_LINE:
                        raise MalformedAnswer(f"a chunked-encoding line longer than {MAX_LINE} bytes")
                    self._rest = data[pos:]
                    break
                line = data[pos : end - 1 if end > pos and data[end - 1] == 13 else end]  # LF or CRLF
                pos = end + 1
                self._line(line)
        return body

    def feed_eof(self) -> None:
        if self._state == _UNTIL_EOF:
            self._state = self._finish()
        if not self.done:
            if self._state == _HEAD:
                raise Disconnected("the connection closed before the answer was complete")
            raise Disconnected("the answer was cut off (the connection closed before its end)")

    def _finish(self) -> int:
        self.done = True
        return _DONE

    def _head(self, head: bytes) -> None:
        # Decoded once (latin-1 maps every byte) and checked with one regex per line: this runs
        # twice per client request.
        bad = _CTL.search(head)
        if bad is not None:
            raise MalformedAnswer(f"a control character ({bad.group()!r}) in its head")
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0]
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise MalformedAnswer(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(parts[1])
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            match = _HEADER.fullmatch(line)
            if match is None:  # no colon, a bad name, a folded line (leading space), a bare CR or LF
                raise MalformedAnswer(f"bad header line: {line[:80]!r}")
            key, text = match.group(1).lower(), match.group(2)
            # Repeated headers join with commas (RFC 9110 5.3); Content-Length checks its copies below.
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if 100 <= status < 200:
            if status == 101:
                raise MalformedAnswer("101 Switching Protocols to a POST")
            return  # 100 Continue, 103 Early Hints: the real answer follows
        connection = headers.get("connection", "").lower()
        self.keep_alive = parts[0] == "HTTP/1.1" and "close" not in connection
        coding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if status in (204, 304):
            self._state = self._finish()
        elif coding is not None:
            # The last coding decides (RFC 9112 6.3); a body with another one ends at the close.
            if coding.rsplit(",", 1)[-1].strip().lower() == "chunked":
                self._state = _CHUNK_SIZE
            else:
                self._state, self.keep_alive = _UNTIL_EOF, False
            if length is not None:
                self.keep_alive = False  # both: a smuggling risk, do not reuse the connection
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values))):
                raise MalformedAnswer(f"bad Content-Length: {length[:40]!r}")
            self._remaining = int(values.pop())
            self._state = _LENGTH if self._remaining else self._finish()
        else:
            self._state, self.keep_alive = _UNTIL_EOF, False
        self.status, self.headers = status, headers  # last: a head is in only once it is valid

    def _line(self, line: bytes) -> None:
        state = self._state
        if state == _CHUNK_SIZE:
            digits = line.split(b";", 1)[0].strip(b" \t")  # chunk extensions are ignored
            if not _HEX.fullmatch(digits):
                raise MalformedAnswer(f"bad chunk size: {line[:40]!r}")
            self._remaining = int(digits, 16)
            self._state = _CHUNK_DATA if self._remaining else _TRAILER
        elif state == _CHUNK_END:
            if line:
                raise MalformedAnswer("a chunk longer than its size")
            self._state = _CHUNK_SIZE
        elif state == _TRAILER:
            if not line:
                self._state = self._finish()
                return
            self._trailer_bytes += len(line)
            if self._trailer_bytes > MAX_HEAD:
                raise MalformedAnswer(f"its trailers are larger than {MAX_HEAD} bytes")


# --- a connection and its answer ----------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection to a backend, carrying one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: Optional[asyncio.Transport] = None
        self.parser: Optional[ResponseParser] = None  # the answer being read, if any
        self.body: List[bytes] = []
        self.buffered = 0
        self.error: Optional[UpstreamError] = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.draining: Optional[asyncio.TimerHandle] = None  # see UpstreamResponse.release(drain=True)
        self._waiter: Optional[asyncio.Future[None]] = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports (the vLLM image runs the proxy on
        # uvloop) implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # an idle connection has nothing to say: not reusable any more
            self.abort()
            return
        try:
            pieces = parser.feed(data)
        except UpstreamError as exc:
            self._fail(exc)
            return
        if self.draining is not None:
            self.buffered += sum(map(len, pieces))
            if parser.done:
                self.draining.cancel()
                self.draining = None
                self.body, self.buffered = [], 0
                self.finished()
            elif self.buffered > DRAIN_BYTES:
                self.abort()
            return
        if pieces:
            self.body.extend(pieces)
            self.buffered += sum(map(len, pieces))
            if self.buffered > PAUSE_ABOVE and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> Optional[bool]:
        return False  # close; connection_lost follows (a close-delimited body ends there)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self._stop_draining()
        self.pool.forget(self)
        parser = self.parser
        if parser is not None and not parser.done and self.error is None:
            try:
                parser.feed_eof()
            except Disconnected as lost:
                if exc is not None:  # reset rather than closed: say so
                    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    lost = Disconnected(f"{lost} ({cause})")
                self.error = lost
        self._wake()

    # used by the pool and the response

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Until something arrives (data, the end, an error). Cancelled: the connection closes."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        except BaseException:
            self.abort()
            raise

    def _fail(self, exc: UpstreamError) -> None:
        self.error = exc
        self.abort()
        self._wake()

    def _stop_draining(self) -> None:
        if self.draining is not None:
            self.draining.cancel()
            self.draining = None

    def abort(self) -> None:
        """Close at once (nothing left to flush matters): the backend sees its client leave."""
        self.closed = True
        self._stop_draining()
        if self.transport is not None:
            self.transport.abort()
        self.pool.forget(self)

    async def request(self, head: bytes, body: bytes) -> UpstreamResponse:
        """Send one request and wait for the head of its answer."""
        assert self.transport is not None
        parser = self.parser = ResponseParser()
        self.body, self.buffered, self.error = [], 0, None
        if len(body) < SMALL_BODY:
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            self.transport.write(body)
        while not parser.status or self.error is not None:
            if self.error is not None:
                raise self.error
            if self.closed:  # closed without a word (an idle connection the server had just closed)
                raise Disconnected("the connection closed before the answer was complete")
            await self.wait()
        return UpstreamResponse(self, parser)

    def take_body(self) -> bytes:
        pieces = self.body
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self.body, self.buffered = [], 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def finished(self) -> None:
        """The answer was read to its end: back to the pool if the connection may carry another."""
        parser = self.parser
        self.parser = None
        if parser is not None and parser.keep_alive and not parser.leftover and not self.closed:
            self.pool.put(self)
        else:
            self.abort()


class UpstreamResponse:
    """A backend's answer: ``status`` and ``content_type`` at once, the body as it comes.

    Read it to its end (``read()``, or ``readany()`` until ``b""``) and its connection goes back
    to the pool by itself. ``release()`` (always, in a ``finally``) does the same when the whole
    answer has arrived, and closes the connection otherwise; ``close()`` closes it at any time
    (a pending read raises).
    """

    __slots__ = ("_conn", "_parser", "content_type", "headers", "status")

    def __init__(self, conn: _Connection, parser: ResponseParser) -> None:
        self.status = parser.status
        self.content_type = parser.content_type
        self.headers = parser.headers
        self._conn: Optional[_Connection] = conn
        self._parser = parser

    async def readany(self) -> bytes:
        """The next decoded body bytes available (waiting for some); ``b""`` at the end."""
        conn = self._conn
        if conn is None:
            return b""
        while True:
            if conn.body:
                return conn.take_body()
            if self._parser.done:
                self._conn = None
                conn.finished()
                return b""
            if conn.error is not None:
                raise conn.error
            if conn.closed:
                raise Disconnected("the connection was closed by the proxy")
            await conn.wait()

    async def read(self) -> bytes:
        """The whole body."""
        pieces = []
        while True:
            data = await self.readany()
            if not data:
                return b"".join(pieces)
            pieces.append(data)

    def release(self, drain: bool = False) -> None:
        """Done with the answer: an unfinished one closes its connection (vLLM aborts the request).

        ``drain``: the caller has all it wants (a stream's ``[DONE]``) and the server is known
        to be ending the body: what is left (uvicorn's last chunk, in a write of its own, so
        often in a later read) is read and dropped, and the connection goes back to the pool
        once the body is complete, instead of a new connection for the next request. It closes
        if the end does not come within ``DRAIN_SECONDS`` or ``DRAIN_BYTES``.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._parser.done:
            conn.body, conn.buffered = [], 0
            conn.finished()
        elif drain and not conn.closed and conn.error is None:
            conn.body, conn.buffered = [], 0
            if conn.paused and conn.transport is not None:
                conn.paused = False
                conn.transport.resume_reading()
            conn.draining = asyncio.get_running_loop().call_later(DRAIN_SECONDS, conn.abort)
        else:
            conn.abort()

    def close(self) -> None:
        """Close the connection now, from outside its reader (a DP group lost a rank)."""
        conn = self._conn
        if conn is not None:
            conn.abort()
            conn._wake()


# --- pools ----------------------------------------------------------------------------------------


class _Pool:
    """The connections to one backend (``scheme://host:port``): no limit on their number, the
    idle ones reused most recent first and closed after ``KEEPALIVE`` seconds."""

    def __init__(self, base: str, upstreams: Upstreams) -> None:
        parts = urlsplit(base)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"a backend URL needs a host and a port: {base!r}")
        self.host, self.port = parts.hostname, parts.port
        self.tls = parts.scheme == "https"
        self.upstreams = upstreams
        self.idle: Deque[_Connection] = collections.deque()
        self.all: Set[_Connection] = set()
        self.host_line = f"Host: {parts.netloc}\r\n".encode("latin-1")
        self._sweep: Optional[asyncio.TimerHandle] = None

    def take(self) -> Optional[_Connection]:
        while self.idle:
            conn = self.idle.pop()
            # Closing: the server closed it (uvicorn does after 5 s idle), connection_lost is coming.
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def put(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self.idle.append(conn)
        if self._sweep is None:
            self._sweep = loop.call_later(KEEPALIVE, self._expire)

    def forget(self, conn: _Connection) -> None:
        self.all.discard(conn)
        if conn in self.idle:  # the server closed an idle connection (uvicorn does after 5 s)
            self.idle.remove(conn)

    def _expire(self) -> None:
        self._sweep = None
        now = asyncio.get_running_loop().time()
        while self.idle and now - self.idle[0].idle_since >= KEEPALIVE:
            self.idle.popleft().abort()
        if self.idle:
            self._sweep = asyncio.get_running_loop().call_later(
                KEEPALIVE - (now - self.idle[0].idle_since), self._expire
            )

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        limit = self.upstreams.connect_timeout
        conn = _Connection(self)
        try:
            async with deadline(limit):
                if self.tls:
                    await loop.create_connection(
                        lambda: conn,
                        self.host,
                        self.port,
                        ssl=self.upstreams.ssl_context(),
                        server_hostname=self.host,
                    )
                else:
                    await loop.create_connection(lambda: conn, self.host, self.port)
        except asyncio.TimeoutError:
            raise ConnectTimeout(f"cannot connect: no connection within {limit:g} s (timeouts.connect)") from None
        except ssl.SSLError as exc:  # a subclass of OSError: before it
            raise ConnectFailed(f"cannot connect: TLS: {exc}") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect: {_os_reason(exc)}") from None
        self.all.add(conn)
        return conn

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self.all) + list(self.idle):
            conn.abort()


def _os_reason(exc: OSError) -> str:
    """``Connection refused`` rather than asyncio's ``Connect call failed ('10.0.0.1', 7000)``."""
    if isinstance(exc, socket.gaierror):  # its errno is the resolver's, not errno's
        return f"{exc.strerror or exc}"
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


class Upstreams:
    """The proxy's connection pools to its backends, one per base URL, made on first use."""

    def __init__(self, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self._pools: Dict[str, _Pool] = {}
        self._ssl: Optional[ssl.SSLContext] = None

    def ssl_context(self) -> ssl.SSLContext:
        """As aiohttp's default for ``https``: verified against the system's CAs, ALPN http/1.1."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl

    async def post(self, base: str, path: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        """POST ``body`` (JSON, as ``headers`` says) to ``base + path``; the answer's head is in.

        Raises :class:`UpstreamError`; a cancellation closes the connection. A reused idle
        connection that closes without a byte of answer (the server closed it just then) is
        retried once on a new connection.
        """
        pool = self._pools.get(base)
        if pool is None:
            pool = self._pools[base] = _Pool(base, self)
        head = self._head(pool, path, headers, len(body))
        conn = pool.take()
        if conn is not None:
            try:
                return await conn.request(head, body)
            except Disconnected:
                if conn.parser is not None and conn.parser.started:
                    raise
        conn = await pool.connect()
        try:
            return await conn.request(head, body)
        except BaseException:
            conn.abort()
            raise

    def _head(self, pool: _Pool, path: str, headers: Mapping[str, str], length: int) -> bytes:
        lines = [f"POST {path} HTTP/1.1\r\n".encode("latin-1"), pool.host_line]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:  # a key from the config must not inject headers
                raise ValueError(f"a line break in the value of header {name}")
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"Content-Length: %d\r\n\r\n" % length)
        return b"".join(lines)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
