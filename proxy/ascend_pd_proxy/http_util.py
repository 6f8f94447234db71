"""HTTP pieces that the request flow, the admin API and the health checks share."""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, Optional

import aiohttp
from aiohttp import web

from . import protocol

if sys.version_info >= (3, 11):
    from asyncio import timeout as deadline
else:  # aiohttp depends on async-timeout before Python 3.11
    from async_timeout import timeout as deadline

__all__ = [
    "JSON",
    "backend_error",
    "bearer_header",
    "deadline",
    "describe",
    "error_origin",
    "error_response",
    "json_response",
]

JSON = "application/json"
# Key of a response's own data (aiohttp responses are mappings) saying whose fault an error is.
ORIGIN: Any = web.ResponseKey("origin", str) if hasattr(web, "ResponseKey") else "ascend_pd_proxy.origin"


def json_response(status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=JSON, headers=headers)


def error_response(status: int, message: str, *, param: Optional[str] = None, request_id: str = "") -> web.Response:
    headers = {"X-Request-Id": request_id} if request_id else None
    return json_response(status, protocol.error_body(status, message, param=param), headers)


def backend_error(status: int, message: str, request_id: str) -> web.Response:
    """An error answer that is due to the instances (502, 503, 504), not to the proxy itself."""
    response = error_response(status, message, request_id=request_id)
    response[ORIGIN] = "backend"
    return response


def error_origin(response: web.StreamResponse) -> Optional[str]:
    """Whose fault an answer is: None (no error), ``client`` (4xx: the request, judged by the
    proxy or an instance), ``backend`` (the instances failed) or ``proxy`` (the proxy's own 5xx:
    a bug, draining, the in-flight limit)."""
    if response.status < 400:
        return None
    if response.status < 500:
        return "client"
    return str(response.get(ORIGIN, "proxy"))


def describe(exc: BaseException) -> str:
    """A client-side failure to reach a backend, in words for logs and error answers."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection closed before the answer was complete"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def bearer_header(key: Optional[str]) -> Dict[str, str]:
    """The header that carries a backend key; none when no key is set (never ``Bearer None``)."""
    return {"Authorization": f"Bearer {key}"} if key else {}
