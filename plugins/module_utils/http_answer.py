# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An HTTP answer as ``(status, body)`` whatever its status, for the modules that poll servers.

Ansible's ``open_url`` raises ``HTTPError`` for a status >= 400; a 503 from a loading server
is an answer to judge like a 200, not an exception. What is raised is only the absence of an
answer, one of ``TRANSPORT_ERRORS`` (``endpoint_probe.describe_error`` puts it in words).
"""

from __future__ import annotations

import contextlib
import http.client
import urllib.error
from typing import Any, Callable, Optional, Tuple

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError

# What sending a request or reading its answer raises when there is no HTTP answer: refused or
# reset connections, timeouts and name resolution (OSError, URLError among them), a broken
# HTTP exchange, and open_url's own proxy and TLS errors.
TRANSPORT_ERRORS = (OSError, http.client.HTTPException, UrlsConnectionError)


def error_body(exc: urllib.error.HTTPError, limit: Optional[int] = None) -> bytes:
    """The body of an error answer; empty when the connection went away mid-body."""
    try:
        return (exc.read() if limit is None else exc.read(limit)) or b""
    except (OSError, http.client.HTTPException, ValueError):
        return b""


def answer(open_response: Callable[[], Any], limit: Optional[int] = None) -> Tuple[int, bytes]:
    """``(status, body)`` of the response ``open_response()`` opens (an ``open_url`` call).

    ``limit`` caps the bytes read of the body. Raises ``TRANSPORT_ERRORS`` without an answer.
    """
    try:
        with contextlib.closing(open_response()) as resp:
            return int(resp.status), (resp.read() if limit is None else resp.read(limit))
    except urllib.error.HTTPError as exc:
        return int(exc.code), error_body(exc, limit)
