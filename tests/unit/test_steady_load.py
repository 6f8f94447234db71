"""The day-2 load generator's judgement: what counts as success, a clear error, or a bad answer."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from tests.integration.day2.load import SteadyLoad

ANSWERS = {
    "ok-json": (200, "application/json", json.dumps({"choices": [{"message": {"content": "hi"}}]})),
    "ok-stream": (200, "text/event-stream", 'data: {"choices": []}\n\ndata: [DONE]\n\n'),
    "error-json": (503, "application/json", json.dumps({"error": {"message": "no decode instance", "code": 503}})),
    "error-html": (502, "text/html", "<html>bad gateway</html>"),
    "error-event": (
        200,
        "text/event-stream",
        'data: {"error": {"message": "decode died", "code": 502}}\n\ndata: [DONE]\n\n',
    ),
    "cut-stream": (200, "text/event-stream", 'data: {"choices": []}\n\n'),
    "empty-200": (200, "application/json", ""),
    "hang": None,
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        answer = ANSWERS[self.server.mode]  # type: ignore[attr-defined]
        if answer is None:
            time.sleep(3)
            return
        status, content_type, body = answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


@pytest.mark.parametrize(
    ("mode", "stream", "kind"),
    [
        ("ok-json", False, None),
        ("ok-stream", True, None),
        ("error-json", False, "error answer"),
        ("error-html", False, "other"),
        ("error-event", True, "error event"),
        ("cut-stream", True, "cut"),
        ("empty-200", False, "cut"),
        ("hang", False, "timeout"),
    ],
)
def test_each_answer_is_judged(server: ThreadingHTTPServer, mode: str, stream: bool, kind: str) -> None:
    server.mode = mode  # type: ignore[attr-defined]
    load = SteadyLoad(f"http://127.0.0.1:{server.server_address[1]}", "m", timeout=1.0)
    outcome = load._one(stream, 1)
    assert (outcome[0] if outcome else None) == kind, outcome


def test_nothing_listening_is_refused_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    load = SteadyLoad(f"http://127.0.0.1:{port}", "m", timeout=1.0)
    assert load._one(False, 1)[0] == "refused"  # type: ignore[index]


def test_bad_counts_only_what_is_not_a_clear_error(server: ThreadingHTTPServer) -> None:
    server.mode = "error-json"  # type: ignore[attr-defined]
    with SteadyLoad(f"http://127.0.0.1:{server.server_address[1]}", "m", streams=0, plain=1, timeout=1.0) as load:
        load.wait_for(3, timeout=10)
        server.mode = "empty-200"  # type: ignore[attr-defined]
        load.wait_for(load.total + 3, timeout=10)
    assert load.kinds["error answer"] >= 3 and load.kinds["cut"] >= 1
    assert load.bad == load.kinds["cut"] and load.failed == load.total
    assert "error answer" in load.summary() and "cut" in load.summary()
