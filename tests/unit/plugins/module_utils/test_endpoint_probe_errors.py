# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endpoint probe's base URL, body excerpts, HTTP hints, error messages and transport errors."""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.endpoint_probe import (
    ProbeError,
    describe_error,
    error_message,
    excerpt,
    http_failure,
    http_hint,
    normalize_base_url,
)
from tests.unit.plugins.module_utils.endpoint_probe_helpers import AUTO_TOOL_ERROR, BASE, CHAT_URL, UNAUTHORIZED, dumps


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://10.0.0.1:8000", BASE),
        ("http://10.0.0.1:8000/", BASE),
        ("http://10.0.0.1:8000/v1", BASE),
        (" http://10.0.0.1:8000/v1/ ", BASE),
        ("https://gw.example.com/minimax/", "https://gw.example.com/minimax"),
        ("https://gw.example.com/minimax/v1", "https://gw.example.com/minimax"),
        ("http://[fd00::1]:8000", "http://[fd00::1]:8000"),
    ],
)
def test_normalize_base_url(url: str, base: str) -> None:
    assert normalize_base_url(url) == base


@pytest.mark.parametrize("url", ["10.0.0.1:8000", "ftp://h/", "http://", "", "http://h:8000/?a=1", "http://h/#x"])
def test_normalize_base_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match="url must"):
        normalize_base_url(url)


def test_excerpt() -> None:
    assert excerpt(b"") == "(empty)"
    assert excerpt(None) == "(empty)"
    assert excerpt(b'{"a":\n1}') == '{"a":\\n1}'
    assert excerpt("上海".encode()) == "上海"
    assert excerpt(b"\xff") == "\ufffd"
    long = "x" * 250 + "y" * 100
    assert excerpt(long) == "x" * 250 + "y" * 50 + "... [50 more characters]"
    assert excerpt(long, tail=True) == "[50 characters before] ..." + "x" * 200 + "y" * 100


def test_error_message() -> None:
    assert error_message(dumps(AUTO_TOOL_ERROR)).startswith('"auto" tool choice requires')
    assert error_message(dumps(UNAUTHORIZED)) == "Unauthorized"
    assert error_message(b"Bad Gateway") == "Bad Gateway"
    assert error_message(b"[1]") == "[1]"
    assert error_message(b'{"detail": "Not Found"}') == '{"detail": "Not Found"}'


def test_http_hints() -> None:
    assert "set api_key" in http_hint(401, dumps(UNAUTHORIZED), api_key_set=False)
    assert "rejected api_key" in http_hint(401, dumps(UNAUTHORIZED), api_key_set=True)
    assert "--enable-auto-tool-choice --tool-call-parser minimax_m2" in http_hint(400, dumps(AUTO_TOOL_ERROR), False)
    too_long = {"error": {"message": "This model's maximum context length is 4096 tokens. However, ...", "code": 400}}
    assert "lower max_tokens" in http_hint(400, dumps(too_long), False)
    missing = {"error": {"message": "The model `MiniMax-M2.5` does not exist.", "code": 404}}
    assert "--served-model-name" in http_hint(404, dumps(missing), False)
    assert "root" in http_hint(404, b'{"detail":"Not Found"}', False)
    assert http_hint(500, b"", False) == ""
    assert http_hint(400, b'{"error":{"message":"messages: Field required"}}', False) == ""


def test_probe_error_message_names_step_url_and_body() -> None:
    err = http_failure("tool_call", "POST", CHAT_URL, 400, dumps(AUTO_TOOL_ERROR))
    assert (err.step, err.status) == ("tool_call", 400)
    text = str(err)
    assert text.startswith(f"tool_call: POST {CHAT_URL}: HTTP 400 (the server runs without tool calling: ")
    assert ' - response: {"error": {"message": "\\"auto\\" tool choice requires' in text
    assert err.body_excerpt is not None and len(err.body_excerpt) <= 300 + len("... [999 more characters]")
    assert str(ProbeError("health", "GET", BASE + "/health", "connection refused")) == (
        f"health: GET {BASE}/health: connection refused"
    )


# -- transport errors ---------------------------------------------------------------------------


class SSLValidationError(Exception):
    """Stands for ansible.module_utils.urls.SSLValidationError (recognised by name)."""


@pytest.mark.parametrize(
    ("exc", "text", "retry"),
    [
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "connection refused (", True),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused", True),
        (urllib.error.URLError(socket.timeout("timed out")), "no answer within 5 s (timed out)", True),
        (socket.timeout("timed out"), "no answer within 5 s", True),
        (TimeoutError("The read operation timed out"), "no answer within 5 s", True),
        (urllib.error.URLError("timed out"), "no answer within 5 s", True),
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "cannot resolve the host", True),
        (http.client.RemoteDisconnected("Remote end closed connection"), "closed the connection", True),
        (ConnectionResetError(104, "Connection reset by peer"), "connection failed (", True),
        (http.client.IncompleteRead(b"ab", 10), "bad HTTP answer (IncompleteRead", True),
        (urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed")), "TLS error", False),
        (SSLValidationError("Failed to validate the SSL certificate"), "TLS error", False),
        (OSError(113, "No route to host"), "OSError: [Errno 113] No route to host", True),
    ],
)
def test_describe_error(exc: BaseException, text: str, retry: bool) -> None:
    described, retried = describe_error(exc, timeout=5)
    assert text in described
    assert retried is retry
