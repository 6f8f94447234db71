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

__all__ = ["JSON", "bearer_header", "deadline", "describe", "error_response", "json_response"]

JSON = "application/json"


def json_response(status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=JSON, headers=headers)


def error_response(status: int, message: str, *, param: Optional[str] = None, request_id: str = "") -> web.Response:
    headers = {"X-Request-Id": request_id} if request_id else None
    return json_response(status, protocol.error_body(status, message, param=param), headers)


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
