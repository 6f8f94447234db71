"""The OpenAI-compatible HTTP API of the simulated server (aiohttp).

Routes as vLLM serves them: ``GET /health`` (200 empty body, 503 once the engine is dead),
``GET|POST /ping``, ``GET /v1/models``, ``GET /version``, ``GET /metrics``,
``POST /v1/completions`` and ``POST /v1/chat/completions`` (JSON or SSE). With
``VLLM_SIM_ADMIN=1`` also ``POST /sim/engine_dead`` (kill the engine; SIGUSR1 does the same).

Shapes and error texts follow vLLM: errors are ``{"error": {"message", "type", "param",
"code"}}``; ``--api-key`` protects ``/v1/*`` (401 ``{"error": "Unauthorized"}``); the
response id is ``chatcmpl-``/``cmpl-`` + the ``X-Request-Id`` header when given (echoed back);
streaming sends the role first, then one chunk per token, an optional usage chunk, then
``data: [DONE]``. Streaming responses send their headers at once (as Starlette does), so an
error after that is an SSE ``error`` event, not an HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ascend_sim.vllm import VLLM_VERSION, fakemodel, logs, parsers, tokens
from ascend_sim.vllm.config import ServeConfig
from ascend_sim.vllm.engine import Engine, EngineDeadError, Job
from ascend_sim.vllm.kv import KVTransferError
from ascend_sim.vllm.metrics import Metrics

log = logs.get_logger("serving_chat.py")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=_dumps(obj), status=status, content_type="application/json", headers=headers)


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


def _apply_stop(out: list[str], finish: str, stop: Any) -> tuple[list[str], str, str | None]:
    """Cut the output at the first ``stop`` string (it is not included), as vLLM does."""
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str) and s]
    if not stops:
        return out, finish, None
    text = "".join(out)
    hits = [(text.find(s), s) for s in stops if s in text]
    if not hits:
        return out, finish, None
    cut, which = min(hits)
    kept: list[str] = []
    length = 0
    for token in out:
        if length + len(token) >= cut:
            if cut > length:
                kept.append(token[: cut - length])
            break
        kept.append(token)
        length += len(token)
    return kept, "stop", which


class Api:
    def __init__(self, cfg: ServeConfig, engine: Engine, metrics: Metrics) -> None:
        self.cfg = cfg
        self.engine = engine
        self.metrics = metrics
        self.created = int(time.time())

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
        if os.environ.get("VLLM_SIM_ADMIN") == "1":
            app.router.add_post("/sim/engine_dead", self.kill_engine)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _json_response(exc.body(), exc.status)
        except web.HTTPException as exc:
            if exc.status in (404, 405):
                return _json_response(
                    {"detail": "Not Found" if exc.status == 404 else "Method Not Allowed"}, exc.status
                )
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # a bug in the simulator must still answer like a server
            log.error("Unexpected error: %r", exc)
            return _json_response(ApiError(500, f"{type(exc).__name__}: {exc}").body(), 500)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.cfg.api_keys and request.path.startswith("/v1"):
            header = request.headers.get("Authorization", "")
            if header not in {f"Bearer {key}" for key in self.cfg.api_keys}:
                return _json_response({"error": "Unauthorized"}, 401)
        return await handler(request)

    # -- simple routes ----------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=503 if self.engine.dead else 200)

    async def version(self, request: web.Request) -> web.Response:
        return _json_response({"version": VLLM_VERSION})

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")

    async def kill_engine(self, request: web.Request) -> web.Response:
        self.engine.kill()
        return _json_response({"engine": "dead"})

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
        return _json_response({"object": "list", "data": data})

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

    # -- chat ---------------------------------------------------------------------------------

    def _tool_choice(self, body: dict[str, Any]) -> Any:
        tools = body.get("tools") or None
        if tools is not None and not isinstance(tools, list):
            raise ApiError(400, "tools: Input should be a valid list", param="tools")
        choice = body.get("tool_choice", "auto" if tools else "none")
        if choice is None:
            choice = "auto" if tools else "none"
        if choice == "none":
            return choice
        if not tools:
            raise ApiError(400, "When using `tool_choice`, `tools` must be set.", param="tool_choice")
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if not any((t.get("function") or {}).get("name") == name for t in tools if isinstance(t, dict)):
                raise ApiError(400, f"Tool '{name}' has not been passed in `tools`.", param="tool_choice")
            return choice
        if choice not in ("auto", "required"):
            raise ApiError(
                400,
                f"Invalid value for `tool_choice`: {choice}! "
                'Only named tools, "none", "auto" or "required" are supported.',
                param="tool_choice",
            )
        if choice == "auto" and not self.cfg.tools_enabled:
            raise ApiError(
                400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
            )
        return choice

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        model = self._model_name(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ApiError(
                400,
                "messages: Field required" if messages is None else "messages: Input should be a valid list",
                param="messages",
            )
        stream, options = self._stream_flags(body)
        choice = self._tool_choice(body)
        tool_list = body.get("tools") or None
        prompt = tokens.render_chat(messages, tool_list if choice != "none" else None)
        prompt_tokens = tokens.tokenize(prompt)
        max_tokens = self._max_tokens(body, len(prompt_tokens), chat=True)
        plan = fakemodel.chat_plan(prompt, messages, tool_list, choice)
        out, finish = fakemodel.limit(
            plan, max_tokens, min_tokens=int(body.get("min_tokens") or 0), ignore_eos=bool(body.get("ignore_eos"))
        )
        out, finish, stop_reason = _apply_stop(out, finish, body.get("stop"))
        external, internal, headers = self._request_ids(request, "chatcmpl-")
        job = Job(internal, prompt, prompt_tokens, out, finish, kv_params=body.get("kv_transfer_params"))
        parse_tools = choice == "auto" and self.cfg.tools_enabled and self.cfg.tool_call_parser == "minimax_m2"
        ctx = _ChatContext(external, model, plan, parse_tools, tool_list, stop_reason)
        if stream:
            return await self._chat_stream(request, job, ctx, options, headers)
        await self._run(job)
        return _json_response(self._chat_body(job, ctx), headers=headers)

    async def _run(self, job: Job) -> None:
        """Run a non-streaming job to completion, mapping engine failures to HTTP errors."""
        try:
            async with contextlib.aclosing(self.engine.generate(job)) as gen:
                async for _ in gen:
                    pass
        except KVTransferError as exc:
            raise ApiError(500, f"KV transfer failed for request {job.request_id}: {exc}") from None
        except EngineDeadError as exc:
            raise ApiError(500, str(exc)) from None

    def _chat_message(self, text: str, ctx: _ChatContext) -> tuple[dict[str, Any], bool]:
        plan = ctx.plan
        if plan.forced_call is not None and ctx.finish_complete:
            name, args = plan.forced_call
            call = {
                "id": parsers.tool_call_id(),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
            }
            return {
                "role": "assistant",
                "content": None,
                "tool_calls": [call],
                "reasoning": None,
            }, plan.forced_kind == "required"
        reasoning, content = parsers.split_reasoning(text, self.cfg.reasoning_parser)
        calls: list[dict[str, Any]] = []
        if ctx.parse_tools and content:
            content, calls = parsers.extract_tool_calls(content, ctx.tools)
        return {"role": "assistant", "content": content, "tool_calls": calls, "reasoning": reasoning}, bool(calls)

    def _chat_body(self, job: Job, ctx: _ChatContext) -> dict[str, Any]:
        ctx.finish_complete = job.finish_reason == "stop"
        message, called = self._chat_message("".join(job.output), ctx)
        message = {
            "role": "assistant",
            "content": message["content"],
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
            "tool_calls": message["tool_calls"],
            "reasoning": message["reasoning"],
        }
        finish = "tool_calls" if called and job.finish_reason == "stop" else job.finish_reason
        return {
            "id": ctx.external_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": ctx.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish,
                    "stop_reason": ctx.stop_reason,
                    "token_ids": None,
                }
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": self._usage(job, len(job.output)),
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "kv_transfer_params": job.kv_out,
        }

    async def _chat_stream(
        self, request: web.Request, job: Job, ctx: _ChatContext, options: dict[str, Any], headers: dict[str, str]
    ) -> web.StreamResponse:
        resp = await self._start_sse(request, headers)
        created = int(time.time())
        head = {"id": ctx.external_id, "object": "chat.completion.chunk", "created": created, "model": ctx.model}
        include_usage = bool(options.get("include_usage")) or self.cfg.enable_force_include_usage
        continuous = include_usage and bool(options.get("continuous_usage_stats"))
        reasoning = parsers.ReasoningStreamer(self.cfg.reasoning_parser)
        streamer = parsers.ToolCallStreamer(ctx.tools) if ctx.parse_tools else None
        forced = ctx.plan.forced_call is not None and job.finish_reason == "stop"
        total = len(job.output)
        sent = 0

        prefix = f'data: {_dumps(head)[:-1]},"choices":[{{"index":0,"delta":'
        suffix = ',"logprobs":null,"finish_reason":null}]}\n\n'

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            if finish is None and not continuous:  # the common case, serialized cheaply
                return (prefix + _dumps(delta) + suffix).encode()
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            if finish is not None:
                choice["stop_reason"] = ctx.stop_reason
            obj: dict[str, Any] = {**head, "choices": [choice]}
            if continuous:
                obj["usage"] = self._usage(job, sent)
            return f"data: {_dumps(obj)}\n\n".encode()

        try:
            async with contextlib.aclosing(self.engine.generate(job)) as gen:
                async for token in gen:
                    if sent == 0:
                        await resp.write(chunk({"role": "assistant", "content": ""}, None))
                    sent += 1
                    last = sent == total
                    delta = self._chat_delta(token, reasoning, streamer, forced)
                    finish = None
                    if last:
                        called = forced and ctx.plan.forced_kind == "required"
                        called = called or (streamer is not None and streamer.called)
                        finish = "tool_calls" if called and job.finish_reason == "stop" else job.finish_reason
                    if last and forced:
                        name, args = ctx.plan.forced_call  # type: ignore[misc]
                        delta = {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": parsers.tool_call_id(),
                                    "type": "function",
                                    "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
                                }
                            ]
                        }
                    if delta or finish is not None:
                        await resp.write(chunk(delta, finish))
            if total == 0:  # a stop string at the very start: nothing to stream but the end
                await resp.write(chunk({"role": "assistant", "content": ""}, None))
                await resp.write(chunk({}, job.finish_reason))
            if include_usage:
                usage = {**head, "choices": [], "usage": self._usage(job, sent)}
                await resp.write(f"data: {_dumps(usage)}\n\n".encode())
        except KVTransferError as exc:
            await self._sse_error(resp, ApiError(500, f"KV transfer failed for request {job.request_id}: {exc}"))
        except EngineDeadError as exc:
            await self._sse_error(resp, ApiError(500, str(exc)))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    @staticmethod
    def _chat_delta(
        token: str, reasoning: parsers.ReasoningStreamer, streamer: parsers.ToolCallStreamer | None, forced: bool
    ) -> dict[str, Any]:
        if forced:
            return {}  # structured-output tool calls are sent whole at the end
        delta: dict[str, Any] = {}
        thought, content = reasoning.feed(token)
        if thought:
            delta["reasoning"] = thought
        if content:
            if streamer is None:
                delta["content"] = content
            else:
                for kind, value in streamer.feed(content):
                    if kind == "content":
                        delta["content"] = delta.get("content", "") + value
                    else:
                        delta.setdefault("tool_calls", []).append(value)
        return delta

    # -- completions --------------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        model = self._model_name(body)
        stream, options = self._stream_flags(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            prompt_tokens = [f"<{t}>" for t in prompt]
            prompt_text = "".join(prompt_tokens)
        elif isinstance(prompt, str) and prompt:
            prompt_text = prompt
            prompt_tokens = tokens.tokenize(prompt)
        elif isinstance(prompt, list) and len(prompt) > 1:
            raise ApiError(400, "The simulated server takes one prompt per request (got a batch).", param="prompt")
        else:
            raise ApiError(400, "Either prompt or prompt_embeds must be provided and non-empty.", param="prompt")
        max_tokens = body.get("max_tokens")
        max_tokens = self._max_tokens(
            {"max_tokens": 16 if max_tokens is None else max_tokens}, len(prompt_tokens), chat=False
        )
        plan = fakemodel.completion_plan(prompt_text)
        out, finish = fakemodel.limit(
            plan, max_tokens, min_tokens=int(body.get("min_tokens") or 0), ignore_eos=bool(body.get("ignore_eos"))
        )
        out, finish, stop_reason = _apply_stop(out, finish, body.get("stop"))
        external, internal, headers = self._request_ids(request, "cmpl-")
        job = Job(internal, prompt_text, prompt_tokens, out, finish, kv_params=body.get("kv_transfer_params"))
        if stream:
            return await self._completion_stream(request, job, external, model, options, headers, stop_reason)
        await self._run(job)
        text = "".join(job.output)
        if body.get("echo"):
            text = prompt_text + text
        return _json_response(
            {
                "id": external,
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "text": text,
                        "logprobs": None,
                        "finish_reason": job.finish_reason,
                        "stop_reason": stop_reason,
                        "token_ids": None,
                        "prompt_logprobs": None,
                        "prompt_token_ids": None,
                    }
                ],
                "service_tier": None,
                "system_fingerprint": None,
                "usage": self._usage(job, len(job.output)),
                "kv_transfer_params": job.kv_out,
            },
            headers=headers,
        )

    async def _completion_stream(
        self,
        request: web.Request,
        job: Job,
        external: str,
        model: str,
        options: dict[str, Any],
        headers: dict[str, str],
        stop_reason: str | None,
    ) -> web.StreamResponse:
        resp = await self._start_sse(request, headers)
        head = {"id": external, "object": "text_completion", "created": int(time.time()), "model": model}
        include_usage = bool(options.get("include_usage")) or self.cfg.enable_force_include_usage
        continuous = include_usage and bool(options.get("continuous_usage_stats"))
        total = len(job.output)
        sent = 0
        # Most chunks differ only in their text: serialize the rest once.
        prefix = f'data: {_dumps(head)[:-1]},"choices":[{{"index":0,"text":'
        suffix = ',"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'
        try:
            async with contextlib.aclosing(self.engine.generate(job)) as gen:
                async for token in gen:
                    sent += 1
                    finish = job.finish_reason if sent == total else None
                    if finish is None and not continuous:
                        await resp.write((prefix + _dumps(token) + suffix).encode())
                        continue
                    choice = {
                        "index": 0,
                        "text": token,
                        "logprobs": None,
                        "finish_reason": finish,
                        "stop_reason": stop_reason if finish else None,
                    }
                    obj: dict[str, Any] = {**head, "choices": [choice]}
                    if continuous:
                        obj["usage"] = self._usage(job, sent)
                    await resp.write(f"data: {_dumps(obj)}\n\n".encode())
            if total == 0:  # a stop string at the very start: only the end is streamed
                end = {"index": 0, "text": "", "logprobs": None, "finish_reason": job.finish_reason}
                end["stop_reason"] = stop_reason
                await resp.write(f"data: {_dumps({**head, 'choices': [end]})}\n\n".encode())
            if include_usage:
                await resp.write(
                    f"data: {_dumps({**head, 'choices': [], 'usage': self._usage(job, sent)})}\n\n".encode()
                )
        except KVTransferError as exc:
            await self._sse_error(resp, ApiError(500, f"KV transfer failed for request {job.request_id}: {exc}"))
        except EngineDeadError as exc:
            await self._sse_error(resp, ApiError(500, str(exc)))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    # -- SSE helpers ----------------------------------------------------------------------------

    @staticmethod
    async def _start_sse(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8", **headers})
        await resp.prepare(request)
        return resp

    @staticmethod
    async def _sse_error(resp: web.StreamResponse, err: ApiError) -> None:
        log.error("Error in streaming response: %s", err.message)
        await resp.write(f"data: {_dumps(err.body())}\n\n".encode())


class _ChatContext:
    """Per-request facts the chat response builders need."""

    def __init__(
        self,
        external_id: str,
        model: str,
        plan: fakemodel.Plan,
        parse_tools: bool,
        tools: list[dict[str, Any]] | None,
        stop_reason: str | None,
    ) -> None:
        self.external_id = external_id
        self.model = model
        self.plan = plan
        self.parse_tools = parse_tools
        self.tools = tools
        self.stop_reason = stop_reason
        self.finish_complete = True


def make_app(cfg: ServeConfig, engine: Engine, metrics: Metrics) -> web.Application:
    return Api(cfg, engine, metrics).app()
