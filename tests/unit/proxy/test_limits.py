# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxy's limits and optional features: max_in_flight, a slow client body, the drain
deadline, the health canary, and TLS as ``__main__`` sets it up."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ascend_pd_proxy.__main__ import _ssl_context, main
from ascend_pd_proxy.config import parse
from ascend_pd_proxy.server import Proxy, make_runner
from tests.unit.proxy.fakes import (
    CHAT,
    HOST,
    answer,
    async_test,
    chat_body,
    chunk,
    eventually,
    running,
    sse,
    stream,
)


@async_test
async def test_beyond_max_in_flight_requests_get_503_at_once() -> None:
    gate = asyncio.Event()
    async with running(limits={"max_in_flight": 1}, timeouts={"idle": 5}) as s:
        s.decode[0].behaviour = stream(sse(chunk(CHAT, "first"), done=False), sse(chunk(CHAT, "second")), gate=gate)
        held = asyncio.ensure_future(s.post(CHAT, chat_body(stream=True)))
        await eventually(lambda: s.proxy.in_flight == 1, what="one request in flight")
        started = time.monotonic()
        refused = await s.post(CHAT, chat_body())
        waited = time.monotonic() - started
        gate.set()
        first = await held

    assert refused.status == 503 and "limits.max_in_flight" in refused.error()
    assert waited < 1.0  # refused, not queued behind the held request
    assert first.status == 200 and first.events()[-1] == "[DONE]"


@async_test
async def test_a_client_body_that_does_not_arrive_gets_408() -> None:
    async with running(timeouts={"client_body": 0.3}) as s:
        host, port = s.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        writer.write(head.encode() + b'{"messages": [')  # and then nothing more
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()

    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert s.prefill[0].seen == []  # nothing was sent upstream


@async_test
async def test_drain_deadline_cancels_what_is_still_running() -> None:
    async with running(drain_timeout=0.3, timeouts={"idle": 30}) as s:
        s.decode[0].behaviour = stream(sse(chunk(CHAT, "forever"), done=False), end="hang")
        held = asyncio.ensure_future(s.post(CHAT, chat_body(stream=True)))
        await eventually(lambda: s.proxy.in_flight == 1, what="one request in flight")
        started = time.monotonic()
        await s.proxy.drain(s.runner)
        drained_in = time.monotonic() - started
        try:
            reply = await asyncio.wait_for(held, 5)
            events = reply.events()
        except aiohttp.ClientPayloadError:
            events = []  # the stream was cut: the client sees an incomplete body, not a hang
        await eventually(lambda: s.decode[0].cancelled == 1, what="upstream decode cancelled")

    assert 0.25 < drained_in < 3.0
    assert "[DONE]" not in events


@async_test
async def test_canary_ejects_an_instance_that_answers_health_but_cannot_generate() -> None:
    async with running(decodes=2, health={"interval": 0.05, "canary": True}) as s:
        broken, good = s.decode
        broken.behaviour = answer(500, {"error": {"message": "NPU out of memory"}})
        await eventually(lambda: s.state(broken) == "ejected", what="canary ejection")
        replies = [await s.post(CHAT, chat_body()) for _ in range(4)]
        last_error = s.proxy.pools["decode"].backends[broken.url].last_error

    assert last_error == "canary completion: HTTP 500"
    assert [r.status for r in replies] == [200] * 4
    canaries = [seen for seen in good.seen if seen.path == "/v1/completions"]
    assert canaries and canaries[0].body == {
        "model": "minimax-m2.7",
        "prompt": "ping",
        "max_tokens": 1,
        "stream": False,
    }


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "proxy.crt", directory / "proxy.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_serves_https_with_the_configured_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    cfg = parse(
        {
            "prefill": {"instances": ["http://127.0.0.1:7000"]},
            "decode": {"instances": ["http://127.0.0.1:7100"]},
            "tls": {"certfile": str(cert), "keyfile": str(key)},
        }
    )

    async def scenario() -> tuple[int, dict]:
        runner = make_runner(Proxy(cfg))
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, ssl_context=_ssl_context(cfg))
        await site.start()
        port = runner.addresses[0][1]
        trust = ssl.create_default_context(cafile=str(cert))
        try:
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"https://{HOST}:{port}/health", ssl=trust) as reply,
            ):
                return reply.status, await reply.json()
        finally:
            await runner.cleanup()

    status, body = asyncio.run(scenario())
    assert status == 503 and body["status"] == "unavailable"  # served over TLS; no backend up
    plain = {"prefill": {"instances": ["http://127.0.0.1:7000"]}, "decode": {"instances": ["http://127.0.0.1:7100"]}}
    assert _ssl_context(parse(plain)) is None


def test_unusable_tls_files_are_a_configuration_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "proxy.json"
    config.write_text(
        json.dumps(
            {
                "prefill": {"instances": ["http://127.0.0.1:7000"]},
                "decode": {"instances": ["http://127.0.0.1:7100"]},
                "tls": {"certfile": "/nope/cert.pem", "keyfile": "/nope/key.pem"},
            }
        )
    )
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "tls.certfile / tls.keyfile: cannot load /nope/cert.pem / /nope/key.pem: No such file" in err
