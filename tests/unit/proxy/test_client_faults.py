# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Malformed clients against the proxy: a clear 4xx in vLLM's error shape and one log line,
never a 500 of the proxy's own; a client that never finishes its headers is dropped; the
proxy's own errors are told apart from the instances' on /metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Dict, List

import pytest

from ascend_pd_proxy import protocol
from tests.faults import FaultRecorder
from tests.unit.proxy.fakes import CHAT, HOST, TIMEOUTS, async_test, chat_body, running

pytestmark = pytest.mark.fault


async def raw_exchange(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read one answer (head and body), or b"" if the
    proxy closes the connection without one."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        return head + await asyncio.wait_for(reader.readexactly(length), wait)
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    finally:
        writer.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


MALFORMED: List[Dict[str, Any]] = [
    {"what": "not JSON", "raw": b"{not json", "status": 400},
    {"what": "a JSON array", "raw": b"[1, 2]", "status": 400},
    {"what": "invalid UTF-8", "raw": b'{"messages": "\xff\xfe"}', "status": 400},
    {"what": "NaN", "raw": b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', "status": 400},
    {"what": "1e999", "raw": b'{"messages": [{"role": "user", "content": "x"}], "top_p": 1e999}', "status": 400},
    {"what": "text/plain body", "body": chat_body(), "headers": {"Content-Type": "text/plain"}, "status": 400},
    {
        "what": "content part text not a string",
        "body": chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
        "status": 200,
    },
    {"what": "stream a string", "body": chat_body(stream="yes"), "status": 400},
    {"what": "max_tokens a string", "body": chat_body(max_tokens="5"), "status": 400},
]


@async_test
async def test_malformed_bodies_get_a_4xx_in_vllm_shape_and_one_log_line(
    fault: FaultRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    fault.describe(
        case="malformed client bodies",
        layer="proxy",
        injected=", ".join(m["what"] for m in MALFORMED),
        expected="400 with an OpenAI error body (the proxy's checks) or the backend's answer; "
        "one log line each, no traceback",
    )
    caplog.set_level(logging.INFO, logger="ascend_pd_proxy")
    async with running(1, 1) as s:
        seen = []
        for case in MALFORMED:
            reply = await s.post(CHAT, case.get("body"), raw=case.get("raw", b""), headers=case.get("headers"))
            seen.append(f"{case['what']}: {reply.status}")
            assert reply.status == case["status"], (case["what"], reply.body)
            if reply.status >= 400:
                assert reply.error()
    fault.observe("; ".join(seen))
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks
    refused = [r for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(refused) == sum(c["status"] >= 400 for c in MALFORMED)


@async_test
async def test_malformed_http_is_refused_with_one_line(fault: FaultRecorder, caplog: pytest.LogCaptureFixture) -> None:
    fault.describe(
        case="malformed HTTP (bad Content-Length, header too long, oversized Content-Length)",
        layer="proxy",
        injected="raw requests: Content-Length 'abc'; a 20 kB header; Content-Length beyond limits.max_body_bytes",
        expected="400 / 400 / 413 at once, the connection closed; one log line each, no traceback",
    )
    caplog.set_level(logging.DEBUG, logger="ascend_pd_proxy")
    async with running(1, 1, limits={"max_body_bytes": 1000}) as s:
        port = port_of(s.url)
        head = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        answers = {
            "bad length": await raw_exchange(port, (head + "Content-Length: abc\r\n\r\n{}").encode()),
            "long header": await raw_exchange(port, (head + f"X-Big: {'a' * 20000}\r\n\r\n").encode()),
            "huge length": await raw_exchange(port, (head + "Content-Length: 99999999\r\n\r\n{").encode()),
        }
    statuses = {k: v.split(b" ", 2)[1].decode() if v else "closed" for k, v in answers.items()}
    fault.observe(f"{statuses}; log records with a traceback: {sum(bool(r.exc_info) for r in caplog.records)}")
    assert statuses == {"bad length": "400", "long header": "400", "huge length": "413"}
    assert b'"error"' in answers["huge length"]
    assert not [r for r in caplog.records if r.exc_info]
    assert len([r for r in caplog.records if "malformed request" in r.getMessage()]) == 2


@async_test
async def test_a_client_that_never_finishes_its_headers_is_dropped(fault: FaultRecorder) -> None:
    fault.describe(
        case="slowloris: headers never finished",
        layer="proxy",
        injected="a connection sends half a request head, then a byte every 0.2 s; timeouts.client_headers 1 s",
        expected="the proxy closes it after about 1 s; other clients are served meanwhile",
    )
    async with running(1, 1, timeouts={**TIMEOUTS, "client_headers": 1}) as s:
        reader, writer = await asyncio.open_connection(HOST, port_of(s.url))
        began = time.monotonic()
        writer.write(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\n".encode())
        closed_after = None
        served = await s.post(CHAT, chat_body())
        while time.monotonic() - began < 5:
            try:
                writer.write(b"X")
                await writer.drain()
                data = await asyncio.wait_for(reader.read(100), 0.2)
            except asyncio.TimeoutError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                closed_after = time.monotonic() - began
                break
        writer.close()
        fault.observe(f"closed after {closed_after and round(closed_after, 2)} s; another client got {served.status}")
        assert closed_after is not None and 0.8 < closed_after < 3
        assert served.status == 200


@async_test
async def test_metrics_tell_the_proxys_own_errors_from_the_instances(
    fault: FaultRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fault.describe(
        case="the proxy's own 5xx on /metrics",
        layer="proxy",
        injected="a bug in the proxy's request handling (a function raising); a bad body; every instance 503",
        expected="500 in vLLM's shape, counted origin=proxy; the 400 origin=client; the 502 origin=backend",
    )
    async with running(1, 1) as s:
        bad = await s.post(CHAT, {"messages": []})
        s.prefill[0].behaviour = None

        def broken(_body: Dict[str, Any]) -> int:
            raise KeyError("simulated bug")

        with monkeypatch.context() as patch:
            patch.setattr(protocol, "prompt_tokens_estimate", broken)
            bug = await s.post(CHAT, chat_body())

        async def unavailable(*_args: Any) -> Any:
            from aiohttp import web

            return web.json_response({"error": {"message": "busy"}}, status=503)

        s.prefill[0].behaviour = unavailable
        failed = await s.post(CHAT, chat_body())
        origins = {
            origin: await s.metric("pd_proxy_errors_total", endpoint=CHAT, status=str(status), origin=origin)
            for origin, status in (("client", 400), ("proxy", 500), ("backend", 502))
        }
    fault.observe(f"answers {bad.status}, {bug.status}, {failed.status}; pd_proxy_errors_total {origins}")
    assert (bad.status, bug.status, failed.status) == (400, 500, 502)
    assert "internal error" in bug.error()
    assert origins == {"client": 1.0, "proxy": 1.0, "backend": 1.0}
