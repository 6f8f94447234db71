"""``POST /v1/chat/completions`` of the simulated API: reasoning, tool calls, JSON or SSE."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ascend_sim.vllm import fakemodel, parsers, tokens, validation
from ascend_sim.vllm.api_common import ApiBase, ApiError, dumps, json_response
from ascend_sim.vllm.engine import Job


class ChatRoutes(ApiBase):
    """The chat route: the fake model's reasoning and answer, split by the reasoning and tool parsers."""

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
        validation.check_content_type(request.headers.get("Content-Type", ""))
        body = await self._body(request)
        validation.validate(body, chat=True)
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
        out, finish, stop_reason = fakemodel.apply_stop(out, finish, body.get("stop"))
        external, internal, headers = self._request_ids(request, "chatcmpl-")
        job = Job(internal, prompt, prompt_tokens, out, finish, kv_params=body.get("kv_transfer_params"))
        parse_tools = choice == "auto" and self.cfg.tools_enabled and self.cfg.tool_call_parser == "minimax_m2"
        ctx = ChatContext(external, model, plan, parse_tools, tool_list, stop_reason)
        if stream:
            return await self._chat_stream(request, job, ctx, options, headers)
        await self._run(job)
        return json_response(self._chat_body(job, ctx), headers=headers)

    def _chat_message(self, text: str, ctx: ChatContext) -> tuple[dict[str, Any], bool]:
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

    def _chat_body(self, job: Job, ctx: ChatContext) -> dict[str, Any]:
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
        self, request: web.Request, job: Job, ctx: ChatContext, options: dict[str, Any], headers: dict[str, str]
    ) -> web.StreamResponse:
        async with self._sse(request, headers, job) as resp:
            created = int(time.time())
            head = {"id": ctx.external_id, "object": "chat.completion.chunk", "created": created, "model": ctx.model}
            include_usage = bool(options.get("include_usage")) or self.cfg.enable_force_include_usage
            continuous = include_usage and bool(options.get("continuous_usage_stats"))
            reasoning = parsers.ReasoningStreamer(self.cfg.reasoning_parser)
            streamer = parsers.ToolCallStreamer(ctx.tools) if ctx.parse_tools else None
            forced = ctx.plan.forced_call is not None and job.finish_reason == "stop"
            total = len(job.output)
            sent = 0

            prefix = f'data: {dumps(head)[:-1]},"choices":[{{"index":0,"delta":'
            suffix = ',"logprobs":null,"finish_reason":null}]}\n\n'

            def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
                if finish is None and not continuous:  # the common case, serialized cheaply
                    return (prefix + dumps(delta) + suffix).encode()
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                if finish is not None:
                    choice["stop_reason"] = ctx.stop_reason
                obj: dict[str, Any] = {**head, "choices": [choice]}
                if continuous:
                    obj["usage"] = self._usage(job, sent)
                return f"data: {dumps(obj)}\n\n".encode()

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
                await resp.write(f"data: {dumps(usage)}\n\n".encode())
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


@dataclass
class ChatContext:
    """Per-request facts the chat response builders need."""

    external_id: str
    model: str
    plan: fakemodel.Plan
    parse_tools: bool
    tools: list[dict[str, Any]] | None
    stop_reason: str | None
    finish_complete: bool = True
