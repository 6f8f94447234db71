"""``POST /tokenize``, ``POST /detokenize`` and ``GET /tokenizer_info`` of the simulated API.

As vLLM 0.33 serves them (``entrypoints/serve/tokenize``): outside ``/v1``, so ``--api-key``
does not cover them; ``/tokenize`` takes a ``prompt`` or chat ``messages`` (rendered with the
chat template, ``add_generation_prompt`` true by default) and answers ``{count, max_model_len,
tokens, token_strs}``; ``/detokenize`` takes ``tokens`` and answers ``{prompt}``;
``/tokenizer_info`` exists only with ``--enable-tokenizer-info-endpoint`` and answers the
tokenizer's configuration (MiniMax-M2's special tokens here). Ids: ``tokens.py``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ascend_sim.vllm import tokens
from ascend_sim.vllm.api_common import ApiBase, ApiError, json_response

# MiniMax-M2's tokenizer_config.json, the fields clients read (the template in Jinja, as the
# simulator's chat template renders it, without tools).
TOKENIZER_INFO: dict[str, Any] = {
    "tokenizer_class": "GPT2Tokenizer",
    "bos_token": "]~!b[",
    "eos_token": "[e~[",
    "unk_token": "]!d~[",
    "pad_token": None,
    "add_bos_token": False,
    "add_eos_token": False,
    "clean_up_tokenization_spaces": False,
    "chat_template": (
        "]~!b[]~b]system\n{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}"
        "{% else %}You are a helpful assistant.{% endif %}[e~[\n"
        "{% for m in messages %}{% if m['role'] == 'user' %}]~b]user\n{{ m['content'] }}[e~[\n"
        "{% elif m['role'] == 'assistant' %}]~b]ai\n{{ m['content'] }}[e~[\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}]~b]ai\n<think>\n{% endif %}"
    ),
}


class TokenizeRoutes(ApiBase):
    async def tokenize(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self._model_name(body)
        if "messages" in body:
            messages = body.get("messages")
            if not isinstance(messages, list):
                raise ApiError(400, "messages: Input should be a valid list", param="messages")
            if body.get("continue_final_message") and body.get("add_generation_prompt"):
                raise ApiError(400, "Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
            text = tokens.render_chat(messages, body.get("tools"))
            if body.get("add_generation_prompt") is False:
                text = text.removesuffix("]~b]ai\n<think>\n")
        else:
            text = body.get("prompt")
            if not isinstance(text, str):
                raise ApiError(400, "prompt: Input should be a valid string", param="prompt")
        pieces = tokens.tokenize(text)
        return json_response(
            {
                "count": len(pieces),
                "max_model_len": self.cfg.max_model_len,
                "tokens": [tokens.token_id(p) for p in pieces],
                "token_strs": pieces if body.get("return_token_strs") else None,
            }
        )

    async def detokenize(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self._model_name(body)
        ids = body.get("tokens")
        if not isinstance(ids, list):
            raise ApiError(400, "tokens: Input should be a valid list", param="tokens")
        for ident in ids:
            if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident <= 2**63 - 1:
                raise ApiError(
                    400, f"tokens: Input should be an integer between 0 and 2**63 - 1, got {ident!r}", param="tokens"
                )
        bad = tokens.out_of_vocabulary(ids)
        if bad is not None:
            raise ApiError(400, f"Token id {bad} is out of vocabulary", param="tokens")
        return json_response({"prompt": "".join(tokens.decode_tokens(ids))})

    async def tokenizer_info(self, request: web.Request) -> web.Response:
        return json_response({**TOKENIZER_INFO, "model_max_length": self.cfg.max_model_len})
