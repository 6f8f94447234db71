"""The OpenAI-compatible HTTP API of the simulated server (aiohttp).

Routes as vLLM serves them: ``GET /health`` (200 empty body, 503 once the engine is dead),
``GET|POST /ping``, ``GET /v1/models``, ``GET /version``, ``GET /metrics``,
``POST /v1/completions`` and ``POST /v1/chat/completions`` (JSON or SSE), ``POST /tokenize``,
``POST /detokenize`` and, with ``--enable-tokenizer-info-endpoint``, ``GET /tokenizer_info``. With
``VLLM_SIM_ADMIN=1`` also ``POST /sim/engine_dead`` (kill the engine; SIGUSR1 does the same).

Shapes and error texts follow vLLM: errors are ``{"error": {"message", "type", "param",
"code"}}``; ``--api-key`` protects ``/v1/*`` (401 ``{"error": "Unauthorized"}``); the
response id is ``chatcmpl-``/``cmpl-`` + the ``X-Request-Id`` header when given (echoed back);
streaming sends the role first, then one chunk per token, an optional usage chunk, then
``data: [DONE]``. Streaming responses send their headers at once (as Starlette does), so an
error after that is an SSE ``error`` event, not an HTTP status.

The two generating routes live in ``api_chat.py`` and ``api_completions.py``, what they share
(request checks, ids, usage, the SSE answer) in ``api_common.py``; the tokenizer's routes in
``api_tokenize.py``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ascend_sim.vllm import VLLM_VERSION, logs
from ascend_sim.vllm.api_chat import ChatRoutes
from ascend_sim.vllm.api_common import ApiError, json_response, log
from ascend_sim.vllm.api_completions import CompletionRoutes
from ascend_sim.vllm.api_tokenize import TokenizeRoutes
from ascend_sim.vllm.config import ServeConfig
from ascend_sim.vllm.engine import Engine
from ascend_sim.vllm.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AccessLogger(AbstractAccessLogger):
    """uvicorn's access line: ``INFO:     1.2.3.4:5 - "POST /v1/x HTTP/1.1" 200 OK``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        version = f"{request.version.major}.{request.version.minor}"
        logs.uvicorn(f'{client} - "{request.method} {request.path_qs} HTTP/{version}" {response.status} {phrase}')


class Api(ChatRoutes, CompletionRoutes, TokenizeRoutes):
    """The application: routes, error and key middlewares, and the routes that generate nothing."""

    # -- application --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth], client_max_size=256 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ping", self.health)
        app.router.add_post("/ping", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/metrics", self.metrics_text)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_post("/detokenize", self.detokenize)
        if self.cfg.enable_tokenizer_info_endpoint:
            app.router.add_get("/tokenizer_info", self.tokenizer_info)
        if os.environ.get("VLLM_SIM_ADMIN") == "1":
            app.router.add_post("/sim/engine_dead", self.kill_engine)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return json_response(exc.body(), exc.status)
        except web.HTTPException as exc:
            if exc.status in (404, 405):
                return json_response({"detail": "Not Found" if exc.status == 404 else "Method Not Allowed"}, exc.status)
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # a bug in the simulator must still answer like a server
            log.error("Unexpected error: %r", exc)
            return json_response(ApiError(500, f"{type(exc).__name__}: {exc}").body(), 500)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.cfg.api_keys and request.path.startswith("/v1"):
            header = request.headers.get("Authorization", "")
            if header not in {f"Bearer {key}" for key in self.cfg.api_keys}:
                return json_response({"error": "Unauthorized"}, 401)
        return await handler(request)

    # -- simple routes ----------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=503 if self.engine.dead else 200)

    async def version(self, request: web.Request) -> web.Response:
        return json_response({"version": VLLM_VERSION})

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")

    async def kill_engine(self, request: web.Request) -> web.Response:
        self.engine.kill()
        return json_response({"engine": "dead"})

    async def models(self, request: web.Request) -> web.Response:
        data = [
            {
                "id": name,
                "object": "model",
                "created": self.created,
                "owned_by": "vllm",
                "root": self.cfg.model,
                "parent": None,
                "max_model_len": self.cfg.max_model_len,
                "permission": [
                    {
                        "id": f"modelperm-{secrets.token_hex(16)}",
                        "object": "model_permission",
                        "created": self.created,
                        "allow_create_engine": False,
                        "allow_sampling": True,
                        "allow_logprobs": True,
                        "allow_search_indices": False,
                        "allow_view": True,
                        "allow_fine_tuning": False,
                        "organization": "*",
                        "group": None,
                        "is_blocking": False,
                    }
                ],
            }
            for name in self.cfg.served_model_names
        ]
        return json_response({"object": "list", "data": data})


def make_app(cfg: ServeConfig, engine: Engine, metrics: Metrics) -> web.Application:
    return Api(cfg, engine, metrics).app()
