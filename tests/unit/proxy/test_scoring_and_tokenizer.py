# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a single vLLM answers, through the PD proxy: a request for the prompt's own scores
(lm-eval's loglikelihood: echo + logprobs) served by a prefill instance alone, a list of
prompts split into one PD pass each and merged, and the tokenizer's routes relayed."""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest
from aiohttp import web

from ascend_pd_proxy import protocol
from tests.unit.proxy.fakes import (
    COMPLETIONS,
    FakeBackend,
    answer,
    async_test,
    completions_body,
    kv_params_of,
    running,
)

LOGLIKELIHOOD = completions_body(prompt=[[11, 12, 13, 14]], echo=True, logprobs=1, max_tokens=1, temperature=0)


def scored(backend: FakeBackend, body: Dict[str, Any]) -> Dict[str, Any]:
    """A prefill's answer to a scoring request: the prompt echoed with its scores."""
    prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
    choices = [
        {"index": i, "text": f"{backend.name}:{p}", "logprobs": {"tokens": [str(t) for t in p]}}
        for i, p in enumerate(prompts)
    ]
    return {"id": "cmpl-1", "object": "text_completion", "choices": choices, "kv_transfer_params": None}


async def scoring(backend: FakeBackend, _request: web.Request, body: Dict[str, Any]) -> web.StreamResponse:
    return web.json_response(scored(backend, body))


@pytest.mark.parametrize(
    ("body", "alone"),
    [
        (LOGLIKELIHOOD, True),
        (completions_body(echo=True, max_tokens=0), True),  # the prompt alone: nothing to decode
        (completions_body(prompt_logprobs=2, max_tokens=5), True),
        ({"messages": [{"role": "user", "content": "x"}], "prompt_logprobs": 0}, True),
        (completions_body(logprobs=2, max_tokens=5), False),  # scores of generated tokens: decode has them
        (completions_body(echo=True, max_tokens=5), False),  # echo alone: decode has the prompt text
    ],
)
def test_which_requests_a_prefill_serves_alone(body: Dict[str, Any], alone: bool) -> None:
    path = COMPLETIONS if "prompt" in body else protocol.CHAT
    assert protocol.prefill_alone(body, path) is alone


@async_test
async def test_loglikelihood_is_served_by_a_prefill_instance_alone_as_sent() -> None:
    def setup(prefills: Any, _decodes: Any) -> None:
        for fake in prefills:
            fake.behaviour = scoring

    async with running(prefills=2, decodes=2, setup=setup) as s:
        reply = await s.post(COMPLETIONS, LOGLIKELIHOOD)
        assert reply.status == 200, reply.body
        served = [p for p in s.prefill if p.seen]
        assert len(served) == 1 and not any(d.seen for d in s.decode)
        [seen] = served[0].seen
        assert seen.body == LOGLIKELIHOOD  # unchanged: no kv_transfer_params, its own max_tokens
        assert reply.json() == scored(served[0], LOGLIKELIHOOD)
        assert seen.request_id == reply.headers["X-Request-Id"]


@async_test
async def test_loglikelihood_is_retried_on_another_prefill_then_fails_naming_them() -> None:
    def setup(prefills: Any, _decodes: Any) -> None:
        prefills[0].behaviour = answer(500, {"error": {"message": "engine dead"}})
        prefills[1].behaviour = scoring

    async with running(prefills=2, setup=setup) as s:
        replies = [await s.post(COMPLETIONS, LOGLIKELIHOOD) for _ in range(2)]
        assert all(r.status == 200 for r in replies)
        assert s.prefill[0].seen and not s.decode[0].seen

    async with running(setup=lambda p, _d: setattr(p[0], "behaviour", answer(502, {"error": "x"}))) as s:
        reply = await s.post(COMPLETIONS, LOGLIKELIHOOD)
        assert reply.status == 502 and "prefill instance p0" in reply.error()


@async_test
async def test_a_rejected_loglikelihood_is_relayed() -> None:
    too_many = {"error": {"message": "Requested prompt logprobs of 30, which is greater than max allowed: 20"}}

    async with running(setup=lambda p, _d: setattr(p[0], "behaviour", answer(400, too_many))) as s:
        reply = await s.post(COMPLETIONS, {**LOGLIKELIHOOD, "logprobs": 30})
        assert reply.status == 400 and reply.json() == too_many


@async_test
async def test_a_list_of_prompts_is_one_pd_pass_each_merged_in_order() -> None:
    async with running(prefills=2, decodes=2) as s:
        prompts = ["first", "second", "third"]
        reply = await s.post(COMPLETIONS, completions_body(prompt=prompts, max_tokens=4))
        assert reply.status == 200, reply.body
        merged = reply.json()
        prefilled = sorted(seen.body["prompt"] for p in s.prefill for seen in p.seen)
        decoded = {seen.body["prompt"]: seen.body for d in s.decode for seen in d.seen}
    assert prefilled == sorted(prompts) and sorted(decoded) == sorted(prompts)
    for body in decoded.values():  # each decode pulls the KV of its own prompt
        assert body["kv_transfer_params"]["remote_engine_id"].startswith("engine-p")
    assert [c["index"] for c in merged["choices"]] == [0, 1, 2]
    assert merged["kv_transfer_params"] is None


def test_merged_usage_is_summed() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "prompt_tokens_details": None}
    answers = [{"id": "a", "choices": [{"index": 0, "text": t}], "usage": usage} for t in "xy"]
    merged = protocol.merge_answers(answers)
    assert merged["usage"]["total_tokens"] == 10 and [c["text"] for c in merged["choices"]] == ["x", "y"]
    assert protocol.split_prompts(completions_body(prompt=[1, 2, 3]), COMPLETIONS) is None  # one prompt of ids
    assert len(protocol.split_prompts(completions_body(prompt=[[1], [2]]), COMPLETIONS) or []) == 2


@async_test
async def test_a_list_of_prompts_with_a_failing_prompt_is_that_failure() -> None:
    async def refuse_second(backend: FakeBackend, request: web.Request, body: Dict[str, Any]) -> web.StreamResponse:
        if body["prompt"] == "second":
            return web.json_response({"error": {"message": "too long"}}, status=400)
        return web.json_response({"choices": [{"text": "x"}], "kv_transfer_params": kv_params_of(backend)})

    async with running(setup=lambda p, _d: setattr(p[0], "behaviour", refuse_second)) as s:
        reply = await s.post(COMPLETIONS, completions_body(prompt=["first", "second"]))
        assert reply.status == 400 and json.loads(reply.body)["error"]["message"] == "too long"
        streamed = await s.post(COMPLETIONS, completions_body(prompt=["a", "b"], stream=True))
        assert streamed.status == 400 and "cannot be streamed" in streamed.error()


@async_test
async def test_tokenize_and_detokenize_go_to_a_decode_instance() -> None:
    async with running(prefills=1, decodes=2) as s:
        tokens = await s.post("/tokenize", {"model": "m", "prompt": "hé", "add_special_tokens": False})
        assert tokens.status == 200 and tokens.json()["tokens"] == [104, 233]
        text = await s.post("/detokenize", {"model": "m", "tokens": [104, 233]})
        assert text.status == 200 and text.json() == {"prompt": "hé"}
        info = await s.get("/tokenizer_info")
        assert info.status == 200 and info.json()["served_by"] in ("d0", "d1")
        assert not s.prefill[0].seen
        assert {seen.path for d in s.decode for seen in d.seen} == {"/tokenize", "/detokenize", "/tokenizer_info"}
        wrong = await s.get("/tokenize")
        assert wrong.status == 405 and "use POST" in wrong.error()


@async_test
async def test_tokenizer_falls_back_to_prefill_and_relays_4xx() -> None:
    def setup(_prefills: Any, decodes: Any) -> None:
        decodes[0].tokenizer_behaviour = answer(503, {"error": "overloaded"})

    async with running(setup=setup) as s:
        tokens = await s.post("/tokenize", {"prompt": "ab"})
        assert tokens.status == 200 and tokens.json()["tokens"] == [97, 98]
        assert [seen.path for seen in s.prefill[0].seen] == ["/tokenize"]

    def missing(_prefills: Any, decodes: Any) -> None:  # a server without --enable-tokenizer-info-endpoint
        decodes[0].tokenizer_behaviour = answer(404, {"detail": "Not Found"})

    async with running(setup=missing) as s:
        info = await s.get("/tokenizer_info")
        assert info.status == 404 and info.json() == {"detail": "Not Found"}


@async_test
async def test_tokenizer_failing_everywhere_is_502_naming_each_and_open_like_vllm() -> None:
    def setup(prefills: Any, decodes: Any) -> None:
        for fake in prefills + decodes:
            fake.tokenizer_behaviour = answer(500, {"error": "boom"})

    async with running(setup=setup, api_keys=["k"]) as s:
        reply = await s.post("/tokenize", {"prompt": "ab"})  # no key: vLLM's --api-key guards /v1 only
        assert reply.status == 502 and "d0: HTTP 500" in reply.error() and "p0: HTTP 500" in reply.error()
        denied = await s.post(COMPLETIONS, LOGLIKELIHOOD)
        assert denied.status == 401  # generation still needs the key
