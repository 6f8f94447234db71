"""``POST /v1/completions`` of the simulated API: one raw prompt (text or token ids), JSON or SSE."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from aiohttp import web

from ascend_sim.vllm import fakemodel, tokens
from ascend_sim.vllm.api_common import ApiBase, ApiError, dumps, json_response
from ascend_sim.vllm.engine import Job


class CompletionRoutes(ApiBase):
    """The completions route: raw text out, no reasoning or tool parsing."""

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
        out, finish, stop_reason = fakemodel.apply_stop(out, finish, body.get("stop"))
        external, internal, headers = self._request_ids(request, "cmpl-")
        job = Job(internal, prompt_text, prompt_tokens, out, finish, kv_params=body.get("kv_transfer_params"))
        if stream:
            return await self._completion_stream(request, job, external, model, options, headers, stop_reason)
        await self._run(job)
        text = "".join(job.output)
        if body.get("echo"):
            text = prompt_text + text
        return json_response(
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
        async with self._sse(request, headers, job) as resp:
            head = {"id": external, "object": "text_completion", "created": int(time.time()), "model": model}
            include_usage = bool(options.get("include_usage")) or self.cfg.enable_force_include_usage
            continuous = include_usage and bool(options.get("continuous_usage_stats"))
            total = len(job.output)
            sent = 0
            # Most chunks differ only in their text: serialize the rest once.
            prefix = f'data: {dumps(head)[:-1]},"choices":[{{"index":0,"text":'
            suffix = ',"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'
            async with contextlib.aclosing(self.engine.generate(job)) as gen:
                async for token in gen:
                    sent += 1
                    finish = job.finish_reason if sent == total else None
                    if finish is None and not continuous:
                        await resp.write((prefix + dumps(token) + suffix).encode())
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
                    await resp.write(f"data: {dumps(obj)}\n\n".encode())
            if total == 0:  # a stop string at the very start: only the end is streamed
                end = {"index": 0, "text": "", "logprobs": None, "finish_reason": job.finish_reason}
                end["stop_reason"] = stop_reason
                await resp.write(f"data: {dumps({**head, 'choices': [end]})}\n\n".encode())
            if include_usage:
                await resp.write(
                    f"data: {dumps({**head, 'choices': [], 'usage': self._usage(job, sent)})}\n\n".encode()
                )
        return resp
