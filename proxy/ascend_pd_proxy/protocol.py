"""The prefill/decode protocol of vLLM-Ascend's MooncakeConnectorV1, as pure functions.

A client request becomes two backend requests under one request id:

1. prefill: the client body with ``stream: false``, ``max_tokens: 1`` (and
   ``max_completion_tokens: 1`` when the client sent it), ``min_tokens: 1``, no
   ``stream_options``, and ``kv_transfer_params`` asking for a remote decode. The prefill
   instance computes the KV cache, parks it, and answers with the ``kv_transfer_params`` that
   tell a decode instance where to pull it from.
2. decode: the client's own body plus those ``kv_transfer_params``; a non-streaming client
   request loses ``stream_options`` (vLLM rejects them without ``stream: true``).

Two kinds of request do not take that path, so that the client gets what one vLLM would answer:

- a request that asks for the prompt's own scores (``prompt_logprobs``, or ``echo`` with
  ``logprobs`` as lm-eval sends for every loglikelihood task) or for no generation at all
  (``echo`` with ``max_tokens: 0``) is served by a prefill instance alone: it computes every
  prompt position, while a decode instance receives the KV cache, never computes the prompt,
  and so has no prompt log-probabilities to give (upstream, a decode crashes on them:
  vllm-project/vllm#27449, vllm-project/vllm-ascend#13363);
- a completions request with a list of prompts is split into one PD pass per prompt, and the
  answers merged as vLLM merges them (choices in prompt order, usage summed): a prefill answers
  one ``kv_transfer_params`` per request, not per prompt.

Also here: checking a client body before anything is sent (a bad one is a 4xx, never a
backend call), the OpenAI-style error bodies, and the prompt measures balancing uses.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
# The tokenizer's routes: the same tokenizer on every instance of the deployment.
TOKENIZER_POST = ("/tokenize", "/detokenize")
TOKENIZER_GET = ("/tokenizer_info",)

# What a prefill request asks of the connector: compute the KV, keep it for a remote decode.
PREFILL_KV_REQUEST: Dict[str, Any] = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}

# A backend's 4xx is the request's fault and goes back to the client -- except these, which
# are the backend's state or the proxy's configuration (a wrong backend API key).
BACKEND_FAULT_4XX = frozenset({401, 403, 408, 429})

# Rough characters per token, to compare prompt sizes without a tokenizer. Only the ratio
# between requests matters to balancing, so one constant for all text is enough.
CHARS_PER_TOKEN = 4


class RequestError(Exception):
    """The client's request is wrong: answered with ``status`` and an OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> Dict[str, Any]:
        return error_body(self.status, self.message, param=self.param)


ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    413: "RequestEntityTooLargeError",
    415: "UnsupportedMediaTypeError",
    429: "RateLimitError",
    499: "ClientClosedRequest",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


def error_body(status: int, message: str, *, param: Optional[str] = None) -> Dict[str, Any]:
    """vLLM's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "Error"), "param": param, "code": status}}


def sse_error_event(status: int, message: str) -> bytes:
    """The event that ends a stream that failed after its headers were sent (as vLLM does)."""
    return b"data: " + json.dumps(error_body(status, message), ensure_ascii=False).encode() + b"\n\n"


def check_content_type(header: str) -> None:
    """vLLM's own check: a generation request must say its body is JSON (400 otherwise)."""
    if header.split(";", 1)[0].strip().lower() != "application/json":
        shown = f"{header[:100]!r}" if header else "none"
        raise RequestError(400, f"Unsupported Media Type: Only 'application/json' is allowed (Content-Type: {shown})")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def parse_client_body(raw: bytes, path: str) -> Dict[str, Any]:
    """Decode and check a client request body; every problem is a :class:`RequestError` (4xx).

    Strict JSON: Python's parser also takes ``NaN`` and ``Infinity`` (and turns ``1e999`` into
    infinity), which the proxy would pass on to the instances as invalid JSON."""
    if not raw:
        raise RequestError(400, "the request has no body: send a JSON object")
    try:
        body = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    if path == CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty list", param="messages")
        if not all(isinstance(m, dict) for m in messages):
            raise RequestError(400, "each entry of 'messages' must be an object", param="messages")
    else:
        prompt = body.get("prompt")
        if prompt is None or prompt == "" or prompt == []:
            raise RequestError(400, "'prompt' is required", param="prompt")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise RequestError(400, f"'stream' must be true or false, got {stream!r}", param="stream")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        # max_tokens 0 with echo: vLLM answers the prompt alone (its scores, with logprobs).
        least = 0 if key == "max_tokens" and path == COMPLETIONS and body.get("echo") else 1
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise RequestError(400, f"'{key}' must be a positive integer, got {value!r}", param=key)
    if body.get("kv_transfer_params") is not None:
        # The proxy owns the PD hand-over; a client value would point decode at arbitrary KV.
        raise RequestError(400, "'kv_transfer_params' is set by the proxy, not by clients", param="kv_transfer_params")
    n = body.get("n")
    if n is not None and n != 1:
        raise RequestError(400, f"'n' must be 1 with prefill/decode disaggregation, got {n!r}", param="n")
    return body


def is_stream(body: Dict[str, Any]) -> bool:
    return bool(body.get("stream"))


def prefill_alone(body: Dict[str, Any], path: str) -> bool:
    """Whether a prefill instance alone serves this request (see the module docstring)."""
    if body.get("prompt_logprobs") is not None:
        return True
    if path != COMPLETIONS or not body.get("echo"):
        return False
    return body.get("logprobs") is not None or body.get("max_tokens") == 0


def split_prompts(body: Dict[str, Any], path: str) -> Optional[List[Dict[str, Any]]]:
    """One body per prompt when a completions request has several, else None."""
    prompt = body.get("prompt")
    if path != COMPLETIONS or not isinstance(prompt, list) or len(prompt) < 2:
        return None
    if all(isinstance(p, str) for p in prompt) or all(isinstance(p, list) for p in prompt):
        return [{**body, "prompt": p} for p in prompt]
    return None  # one prompt of token ids (or a malformed list, which vLLM will refuse)


def merge_answers(answers: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The answers of one-prompt requests as vLLM answers the batch: choices indexed in prompt
    order, usage summed (the cached tokens are the last prompt's, as vLLM reports them)."""
    merged = dict(answers[0])
    choices = []
    for index, answer in enumerate(answers):
        for choice in answer.get("choices") or []:
            choices.append({**choice, "index": index})
    merged["choices"] = choices
    usages = [a.get("usage") for a in answers if isinstance(a.get("usage"), dict)]
    if usages:
        usage = dict(usages[-1])
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            usage[key] = sum(int(u.get(key) or 0) for u in usages)
        merged["usage"] = usage
    merged["kv_transfer_params"] = None
    return merged


# The keys a phase's request sets itself; every other key is the client's, sent unchanged.
PHASE_KEYS = frozenset(
    ("stream", "stream_options", "max_tokens", "max_completion_tokens", "min_tokens", "kv_transfer_params")
)


def prefill_keys(body: Dict[str, Any]) -> Dict[str, Any]:
    """What a prefill request sets: one token, no stream, and the request to keep the KV."""
    keys: Dict[str, Any] = {"stream": False, "max_tokens": 1, "min_tokens": 1}
    if "max_completion_tokens" in body:
        keys["max_completion_tokens"] = 1
    keys["kv_transfer_params"] = dict(PREFILL_KV_REQUEST)
    return keys


def decode_keys(body: Dict[str, Any], kv_transfer_params: Dict[str, Any]) -> Dict[str, Any]:
    """What a decode request sets: the client's own phase keys, and where to pull the KV from."""
    keys = {key: value for key, value in body.items() if key in PHASE_KEYS}
    keys["kv_transfer_params"] = kv_transfer_params
    if not is_stream(body):
        keys.pop("stream_options", None)
    return keys


def _client_keys(body: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in body.items() if key not in PHASE_KEYS}


def prefill_body(body: Dict[str, Any]) -> Dict[str, Any]:
    return {**_client_keys(body), **prefill_keys(body)}


def decode_body(body: Dict[str, Any], kv_transfer_params: Dict[str, Any]) -> Dict[str, Any]:
    return {**_client_keys(body), **decode_keys(body, kv_transfer_params)}


class EncodedBody:
    """The client's body serialised once, without the phase keys; each phase's request is its
    own few keys spliced in front. A 200k-token prompt is ~800 KB of JSON that the prefill, the
    decode and every retry send: serialising it per request would cost milliseconds each."""

    __slots__ = ("_client", "body")

    def __init__(self, body: Dict[str, Any]) -> None:
        self.body = body
        self._client = json.dumps(_client_keys(body)).encode()

    def prefill(self) -> bytes:
        return self._with(prefill_keys(self.body))

    def decode(self, kv_transfer_params: Dict[str, Any]) -> bytes:
        return self._with(decode_keys(self.body, kv_transfer_params))

    def whole(self) -> bytes:
        """The client's request as it came (a prefill instance serving it alone)."""
        return self._with({key: value for key, value in self.body.items() if key in PHASE_KEYS})

    def _with(self, keys: Dict[str, Any]) -> bytes:
        own = json.dumps(keys).encode()
        if self._client == b"{}":
            return own
        if own == b"{}":
            return self._client
        return own[:-1] + b", " + self._client[1:]


class PrefillAnswerError(Exception):
    """A prefill instance answered 200 with something a decode cannot use."""


def read_prefill_answer(raw: bytes) -> Tuple[Dict[str, Any], Optional[int]]:
    """The ``kv_transfer_params`` of a prefill answer and its cached-token count (if reported)."""
    try:
        answer = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise PrefillAnswerError(f"the answer is not JSON: {raw[:200]!r}") from None
    if not isinstance(answer, dict):
        raise PrefillAnswerError(f"the answer is not a JSON object: {raw[:200]!r}")
    params = answer.get("kv_transfer_params")
    if not isinstance(params, dict) or not params:
        raise PrefillAnswerError(
            "the answer has no kv_transfer_params: is the instance started with "
            "--kv-transfer-config and kv_role kv_producer?"
        )
    usage = answer.get("usage")
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return params, cached if isinstance(cached, int) and not isinstance(cached, bool) else None


def _text_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return sum(len(text) for text in texts if isinstance(text, str))
    return 0


def prompt_tokens_estimate(body: Dict[str, Any]) -> int:
    """Approximate prompt length in tokens: the load a request puts on a prefill instance."""
    if "messages" in body:
        chars = sum(_text_length(m.get("content")) for m in body["messages"] if isinstance(m, dict))
        tools = body.get("tools")
        if tools:
            chars += len(json.dumps(tools))
        return max(1, chars // CHARS_PER_TOKEN)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)  # already token ids
    if isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
        return max(1, sum(len(p) for p in prompt))  # a batch of token-id lists
    if isinstance(prompt, list):
        return max(1, sum(len(p) if isinstance(p, (str, list)) else 0 for p in prompt) // CHARS_PER_TOKEN)
    return max(1, len(str(prompt)) // CHARS_PER_TOKEN)


def prefix_key(body: Dict[str, Any], chars: int) -> str:
    """The start of the prompt, for prefix affinity: requests sharing it share prefill KV cache."""
    if "messages" in body:
        parts = []
        size = 0
        for message in body["messages"]:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content, sort_keys=True)
            parts.append(f"{message.get('role')}:{text}")
            size += len(parts[-1])
            if size >= chars:
                break
        return "\n".join(parts)[:chars]
    prompt = body.get("prompt")
    return (prompt if isinstance(prompt, str) else json.dumps(prompt))[:chars]


class SSEFramer:
    """Cuts a byte stream into whole server-sent events without decoding them.

    The relay's hot path: each read returns the bytes of the events it completed (or ``b""``),
    ready to forward as they came, so the client never receives half an event and the proxy
    never re-serializes one. Events end at a blank line; CR and CRLF line ends (which vLLM does
    not send, but the standard allows) are turned into LF first, a CR at the end of a read
    waiting for the next in case it is half of a CRLF.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._cr = False

    def feed(self, data: bytes) -> bytes:
        """The bytes of the events ``data`` completes; ``feed(b"")`` at the end of the stream."""
        at_end = not data
        if self._cr:
            data, self._cr = b"\r" + data, False
        if b"\r" in data:
            if data.endswith(b"\r") and not at_end:
                data, self._cr = data[:-1], True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._pending + data if self._pending else data
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._pending = buffer
            return b""
        self._pending = buffer[end + 2 :]
        return buffer[: end + 2]

    @property
    def pending(self) -> bytes:
        """Bytes of an event not completed yet."""
        return self._pending + (b"\r" if self._cr else b"")
