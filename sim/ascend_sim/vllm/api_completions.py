"""``POST /v1/completions`` of the simulated API, JSON or SSE, as vLLM 0.33 serves it.

- ``prompt``: a string, a list of strings, a list of token ids or a list of token-id lists;
  one choice per prompt, ``index`` in prompt order, ``usage`` summed over them, and
  ``kv_transfer_params`` those of the first (vLLM's ``request_output_to_completion_response``).
  Streaming answers the prompts one after the other (vLLM interleaves them; either is valid).
- ``echo``: the prompt comes first in the text; with ``max_tokens: 0`` only the prompt (the
  engine still runs one step, which ``usage`` counts, as vLLM's does).
- ``logprobs`` (an int, at most the server's ``--max-logprobs``): the ``logprobs`` object
  (``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``); with ``echo`` the prompt
  tokens come first, the first one without a score. ``prompt_logprobs`` (or ``echo`` with
  ``logprobs``) also fills the choice's ``prompt_logprobs``. Scores: ``logprobs.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ascend_sim.vllm import fakemodel, logprobs, tokens, validation
from ascend_sim.vllm.api_common import ApiBase, ApiError, dumps, json_response
from ascend_sim.vllm.engine import Job

EMPTY_PROMPT = "Either prompt or prompt_embeds must be provided and non-empty."


@dataclass
class Choice:
    """One prompt of the request: its job, and what the answer shows of it."""

    job: Job
    positions: list[logprobs.Position | None] | None  # prompt + output, when scores are asked for
    stop_reason: str | None


def _prompts(prompt: Any) -> list[tuple[str, list[str]]]:
    """``(text, tokens)`` of each prompt of ``prompt`` (vLLM's four shapes)."""
    if isinstance(prompt, str):
        items: list[Any] = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        items = [prompt]
    elif (
        isinstance(prompt, list)
        and prompt
        and (all(isinstance(p, str) for p in prompt) or all(isinstance(p, list) for p in prompt))
    ):
        items = prompt
    elif prompt is None or prompt == "" or prompt == []:
        raise ApiError(400, EMPTY_PROMPT, param="prompt")
    else:
        raise ApiError(
            400,
            "prompt: Input should be a valid string, a list of strings, a list of token ids "
            "or a list of lists of token ids",
            param="prompt",
        )
    out = []
    for item in items:
        if isinstance(item, str):
            if not item:
                raise ApiError(400, EMPTY_PROMPT, param="prompt")
            out.append((item, tokens.tokenize(item)))
            continue
        if not item or not all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            raise ApiError(400, EMPTY_PROMPT if not item else "prompt: token ids must be integers", param="prompt")
        bad = tokens.out_of_vocabulary(item)
        if bad is not None:
            raise ApiError(400, f"Token id {bad} is out of vocabulary", param="prompt")
        pieces = tokens.decode_tokens(item)
        out.append(("".join(pieces), pieces))
    return out


class CompletionRoutes(ApiBase):
    """The completions route: raw text out, no reasoning or tool parsing."""

    def _logprob_counts(self, body: dict[str, Any], stream: bool) -> tuple[int | None, int | None]:
        """(``logprobs``, prompt logprobs) as vLLM validates them; None = not asked for."""
        for name in ("prompt_logprobs", "logprobs"):
            value = body.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ApiError(400, f"`{name}` must be an integer.", param=name)
        top, prompt_top = body.get("logprobs"), body.get("prompt_logprobs")
        if prompt_top is not None:
            if stream and (prompt_top > 0 or prompt_top == -1):
                raise ApiError(400, "`prompt_logprobs` are not available when `stream=True`.", param="prompt_logprobs")
            if prompt_top < -1:
                raise ApiError(400, "`prompt_logprobs` must be a positive value or -1.", param="prompt_logprobs")
        if top is not None and top < -1:
            raise ApiError(400, "`logprobs` must be a positive value or -1.", param="logprobs")
        if prompt_top is None and body.get("echo"):
            prompt_top = top
        vocab = len(tokens.VOCAB)  # the fake model's candidates: its whole vocabulary
        limit = vocab if self.cfg.max_logprobs == -1 else self.cfg.max_logprobs
        for what, value in (("sample", top), ("prompt", prompt_top)):
            if value:
                asked = vocab if value == -1 else value
                if asked > limit:
                    name = "logprobs" if what == "sample" else "prompt_logprobs"
                    message = f"Requested {what} logprobs of {asked}, which is greater than max allowed: {limit}"
                    raise ApiError(400, message, param=name)
        return (None if top is None else (vocab if top == -1 else top)), (
            None if prompt_top is None else (vocab if prompt_top == -1 else prompt_top)
        )

    async def completions(self, request: web.Request) -> web.StreamResponse:
        validation.check_content_type(request.headers.get("Content-Type", ""))
        body = await self._body(request)
        validation.validate(body, chat=False)
        model = self._model_name(body)
        stream, options = self._stream_flags(body)
        prompts = _prompts(body.get("prompt"))
        top, prompt_top = self._logprob_counts(body, stream)
        echo = bool(body.get("echo"))
        requested = body.get("max_tokens")
        echo_only = echo and requested == 0  # vLLM runs one engine step and shows only the prompt
        external, internal, headers = self._request_ids(request, "cmpl-")
        choices: list[Choice] = []
        for i, (prompt_text, prompt_tokens) in enumerate(prompts):
            wanted = 1 if echo_only else (16 if requested is None else requested)
            max_tokens = self._max_tokens({"max_tokens": wanted}, len(prompt_tokens), chat=False)
            plan = fakemodel.completion_plan(prompt_text)
            out, finish = fakemodel.limit(
                plan, max_tokens, min_tokens=int(body.get("min_tokens") or 0), ignore_eos=bool(body.get("ignore_eos"))
            )
            out, finish, stop_reason = fakemodel.apply_stop(out, finish, body.get("stop"))
            job = Job(
                internal.replace(external, f"{external}-{i}", 1),
                prompt_text,
                prompt_tokens,
                out,
                finish,
                kv_params=body.get("kv_transfer_params"),
            )
            scored = top is not None or prompt_top is not None
            widest = max(top or 0, prompt_top or 0)
            positions = logprobs.score(prompt_tokens + out, len(prompt_tokens), widest) if scored else None
            choices.append(Choice(job, positions, stop_reason))
        if stream:
            return await self._completion_stream(
                request, choices, external, model, options, headers, top, echo, echo_only
            )
        await asyncio.gather(*(self._run(c.job) for c in choices))
        answers = [self._choice(i, c, echo, echo_only, top, prompt_top) for i, c in enumerate(choices)]
        jobs = [c.job for c in choices]
        return json_response(
            {
                "id": external,
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": answers,
                "service_tier": None,
                "system_fingerprint": None,
                "usage": self._usage_of(jobs),
                "kv_transfer_params": jobs[0].kv_out,
            },
            headers=headers,
        )

    def _choice(
        self, index: int, choice: Choice, echo: bool, echo_only: bool, top: int | None, prompt_top: int | None
    ) -> dict[str, Any]:
        job = choice.job
        prompt_len = len(job.prompt_tokens)
        if echo_only:
            sequence, first = list(job.prompt_tokens), 0
        elif echo:
            sequence, first = [*job.prompt_tokens, *job.output], 0
        else:
            sequence, first = list(job.output), prompt_len
        positions = choice.positions
        shown = None
        if top is not None and positions is not None:
            shown = logprobs.completion_logprobs(sequence, positions[first : first + len(sequence)], top)
        prompt_scores = None
        if prompt_top is not None and positions is not None:
            prompt_scores = logprobs.prompt_logprobs(job.prompt_tokens, positions[:prompt_len], prompt_top)
        return {
            "index": index,
            "text": "".join(sequence),
            "logprobs": shown,
            "finish_reason": job.finish_reason,
            "stop_reason": choice.stop_reason,
            "token_ids": None,
            "prompt_logprobs": prompt_scores,
            "prompt_token_ids": None,
        }

    def _usage_of(self, jobs: list[Job], done: list[int] | None = None) -> dict[str, Any]:
        """``usage`` over every prompt (``done``: completion tokens so far, when streaming)."""
        prompt = sum(len(j.prompt_tokens) for j in jobs)
        completion = sum(done) if done is not None else sum(len(j.output) for j in jobs)
        usage = self._usage(jobs[-1], 0)
        usage.update(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
        return usage

    async def _completion_stream(
        self,
        request: web.Request,
        choices: list[Choice],
        external: str,
        model: str,
        options: dict[str, Any],
        headers: dict[str, str],
        top: int | None,
        echo: bool,
        echo_only: bool,
    ) -> web.StreamResponse:
        jobs = [c.job for c in choices]
        done = [0] * len(jobs)
        async with self._sse(request, headers, jobs[0]) as resp:
            head = {"id": external, "object": "text_completion", "created": int(time.time()), "model": model}
            include_usage = bool(options.get("include_usage")) or self.cfg.enable_force_include_usage
            continuous = include_usage and bool(options.get("continuous_usage_stats"))
            for index, choice in enumerate(choices):
                await self._stream_choice(resp, head, index, choice, done, top, echo, echo_only, continuous)
            if include_usage:
                usage = self._usage_of(jobs, done)
                await resp.write(f"data: {dumps({**head, 'choices': [], 'usage': usage})}\n\n".encode())
        return resp

    async def _stream_choice(
        self,
        resp: web.StreamResponse,
        head: dict[str, Any],
        index: int,
        choice: Choice,
        done: list[int],
        top: int | None,
        echo: bool,
        echo_only: bool,
        continuous: bool,
    ) -> None:
        job = choice.job
        total = len(job.output)
        prompt_len = len(job.prompt_tokens)
        echoed = not echo
        shown = 0  # characters sent so far: the logprobs' text offsets go on from there
        # Most chunks differ only in their text: serialize the rest once.
        prefix = f'data: {dumps(head)[:-1]},"choices":[{{"index":{index},"text":'
        suffix = ',"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'
        async with contextlib.aclosing(self.engine.generate(job)) as gen:
            async for token in gen:
                done[index] += 1
                finish = job.finish_reason if done[index] == total else None
                if echoed:
                    sequence, first = [token], prompt_len + done[index] - 1
                else:
                    echoed = True
                    sequence = list(job.prompt_tokens) if echo_only else [*job.prompt_tokens, token]
                    first = 0
                    if echo_only:
                        finish = job.finish_reason
                text = "".join(sequence)
                if finish is None and not continuous and top is None and sequence == [token]:
                    shown += len(text)
                    await resp.write((prefix + dumps(token) + suffix).encode())
                    continue
                scores = None
                if top is not None and choice.positions is not None:
                    scores = logprobs.completion_logprobs(
                        sequence, choice.positions[first : first + len(sequence)], top, shown
                    )
                shown += len(text)
                out: dict[str, Any] = {
                    "index": index,
                    "text": text,
                    "logprobs": scores,
                    "finish_reason": finish,
                    "stop_reason": choice.stop_reason if finish else None,
                }
                obj: dict[str, Any] = {**head, "choices": [out]}
                if continuous:
                    obj["usage"] = self._usage(job, done[index])
                await resp.write(f"data: {dumps(obj)}\n\n".encode())
                if echo_only:
                    return
        if total == 0:  # a stop string at the very start: only the end is streamed
            end = {"index": index, "text": "", "logprobs": None, "finish_reason": job.finish_reason}
            end["stop_reason"] = choice.stop_reason
            await resp.write(f"data: {dumps({**head, 'choices': [end]})}\n\n".encode())
