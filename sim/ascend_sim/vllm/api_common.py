"""What the chat and completions routes of the simulated API share (see ``api.py``).

vLLM's error shape (:class:`ApiError`), compact JSON, and :class:`ApiBase`: the request checks
(body, model, ``max_tokens``, stream flags), vLLM's request ids, usage, running a job and the
SSE framing of a streaming answer.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ascend_sim.vllm import logs
from ascend_sim.vllm.config import ServeConfig
from ascend_sim.vllm.engine import Engine, EngineDeadError, Job
from ascend_sim.vllm.kv import KVTransferError
from ascend_sim.vllm.metrics import Metrics

log = logs.get_logger("serving_chat.py")


class ApiError(Exception):
    def __init__(self, status: int, message: str, err_type: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type or {400: "BadRequestError", 404: "NotFoundError", 500: "InternalServerError"}.get(
            status, "Error"
        )
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.err_type, "param": self.param, "code": self.status}}


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(obj), status=status, content_type="application/json", headers=headers)


class ApiBase:
    """The server's configuration, engine and metrics, and what every generating route does with them."""

    def __init__(self, cfg: ServeConfig, engine: Engine, metrics: Metrics) -> None:
        self.cfg = cfg
        self.engine = engine
        self.metrics = metrics
        self.created = int(time.time())

    # -- request checks -----------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json(loads=json.loads)
        except ValueError as exc:
            raise ApiError(400, f"JSON decode error: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Input should be a valid dictionary or object to extract fields from")
        return body

    def _model_name(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if model is None:
            return self.cfg.served_model_names[0]
        if model not in self.cfg.served_model_names:
            raise ApiError(404, f"The model `{model}` does not exist.", param="model")
        return str(model)

    def _max_tokens(self, body: dict[str, Any], prompt_len: int, *, chat: bool) -> int:
        limit = self.cfg.max_model_len
        requested = body.get("max_completion_tokens") if chat else None
        if requested is None:
            requested = body.get("max_tokens")
        if requested is not None and (not isinstance(requested, int) or isinstance(requested, bool)):
            raise ApiError(400, f"max_tokens must be an integer, got {requested!r}.", param="max_tokens")
        if requested is not None and requested < 1:
            raise ApiError(400, f"max_tokens must be at least 1, got {requested}.", param="max_tokens")
        if prompt_len >= limit:
            what = "messages" if chat else "prompt"
            raise ApiError(
                400,
                f"This model's maximum context length is {limit} tokens. However, your request has "
                f"{prompt_len} input tokens. Please reduce the length of the input {what}.",
                param="input_tokens",
            )
        if requested is None:
            return limit - prompt_len
        if requested > limit - prompt_len:
            raise ApiError(
                400,
                f"'max_tokens' or 'max_completion_tokens' is too large: {requested}. This model's maximum "
                f"context length is {limit} tokens and your request has {prompt_len} input tokens "
                f"({requested} > {limit} - {prompt_len}).",
                param="max_tokens",
            )
        return int(requested)

    @staticmethod
    def _stream_flags(body: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        stream = bool(body.get("stream", False))
        options = body.get("stream_options")
        if options and not stream:
            raise ApiError(400, "Stream options can only be defined when `stream=True`.", param="stream_options")
        return stream, options if isinstance(options, dict) else {}

    @staticmethod
    def _request_ids(request: web.Request, prefix: str) -> tuple[str, str, dict[str, str]]:
        """(external id, internal engine id, response headers) -- vLLM's X-Request-Id handling."""
        header = request.headers.get("X-Request-Id")
        base = header or secrets.token_hex(16)
        external = f"{prefix}{base}"
        # vLLM appends a random suffix to internal ids so that ids sent by clients need not be
        # unique; that is why PD needs ``remote_request_id``.
        internal = f"{external}-{secrets.token_hex(4)}"
        return external, internal, ({"X-Request-Id": header} if header else {})

    def _usage(self, job: Job, completion: int) -> dict[str, Any]:
        prompt = len(job.prompt_tokens)
        details = {"cached_tokens": job.cached_tokens} if self.cfg.enable_prompt_tokens_details else None
        return {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": details,
        }

    @staticmethod
    def _engine_failure(job: Job, exc: KVTransferError | EngineDeadError) -> ApiError:
        """What vLLM answers when a job fails: the KV pull from the prefill, or the engine itself."""
        if isinstance(exc, KVTransferError):
            return ApiError(500, f"KV transfer failed for request {job.request_id}: {exc}")
        return ApiError(500, str(exc))

    async def _run(self, job: Job) -> None:
        """Run a non-streaming job to completion, mapping engine failures to HTTP errors."""
        try:
            async with contextlib.aclosing(self.engine.generate(job)) as gen:
                async for _ in gen:
                    pass
        except (KVTransferError, EngineDeadError) as exc:
            raise self._engine_failure(job, exc) from None

    @contextlib.asynccontextmanager
    async def _sse(self, request: web.Request, headers: dict[str, str], job: Job) -> AsyncIterator[web.StreamResponse]:
        """A streaming answer for ``job``, its headers sent at once: an engine failure inside becomes
        an SSE error event (the status is gone by then), and ``[DONE]`` always ends it."""
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8", **headers})
        await resp.prepare(request)
        try:
            yield resp
        except (KVTransferError, EngineDeadError) as exc:
            err = self._engine_failure(job, exc)
            log.error("Error in streaming response: %s", err.message)
            await resp.write(f"data: {dumps(err.body())}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
