# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the endpoint probe's tests share: the endpoint's URLs and realistic vLLM answers.

The answers are shaped as vLLM 0.11+ (vLLM-Ascend) sends them: chat completions with
``reasoning`` or ``reasoning_content``, SSE streams with a role chunk, token chunks, a usage
chunk and ``data: [DONE]``, error events as ``data: {"error": {...}}``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

BASE = "http://10.0.0.1:8000"
CHAT_URL = BASE + "/v1/chat/completions"
MODELS_URL = BASE + "/v1/models"
MODEL = "MiniMax-M2.7"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


# -- realistic vLLM answers ----------------------------------------------------------------------


def chat_answer(
    content: Optional[str] = "\n\nI am MiniMax-M2, an AI assistant.",
    reasoning: Optional[str] = "The user asks who I am.",
    tool_calls: Optional[List[Dict[str, Any]]] = None,
    finish_reason: str = "stop",
    reasoning_key: str = "reasoning",
    completion_tokens: int = 42,
) -> Dict[str, Any]:
    message = {
        "role": "assistant",
        "content": content,
        "refusal": None,
        "annotations": None,
        "audio": None,
        "function_call": None,
        "tool_calls": tool_calls or [],
        reasoning_key: reasoning,
    }
    return {
        "id": "chatcmpl-3f1e0c2a9b8d4e67a1c2d3e4f5a6b7c8",
        "object": "chat.completion",
        "created": 1761900123,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
                "token_ids": None,
            }
        ],
        "service_tier": None,
        "system_fingerprint": None,
        "usage": {
            "prompt_tokens": 41,
            "total_tokens": 41 + completion_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": None,
        },
        "prompt_logprobs": None,
        "prompt_token_ids": None,
        "kv_transfer_params": None,
    }


AUTO_TOOL_ERROR = {
    "error": {
        "message": '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
}
UNAUTHORIZED = {"error": "Unauthorized"}


def chunk(delta: Dict[str, Any], finish: Optional[str] = None) -> Dict[str, Any]:
    return {
        "id": "chatcmpl-9c8b7a",
        "object": "chat.completion.chunk",
        "created": 1761900200,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def sse(*payloads: Any) -> bytes:
    """An SSE body as vLLM writes it: ``data: <compact JSON>\\n\\n`` per event."""
    out = b""
    for payload in payloads:
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        out += f"data: {text}\n\n".encode()
    return out


ROLE = chunk({"role": "assistant", "content": ""})
USAGE = {
    "id": "chatcmpl-9c8b7a",
    "object": "chat.completion.chunk",
    "created": 1761900200,
    "model": MODEL,
    "choices": [],
    "usage": {"prompt_tokens": 41, "total_tokens": 46, "completion_tokens": 5},
}
STREAM_EVENTS = [
    ROLE,
    chunk({"reasoning": "The"}),
    chunk({"reasoning": " user"}),
    chunk({"content": "\n\n你好"}),
    chunk({"content": "!"}),
    chunk({"content": ""}, finish="stop"),
    USAGE,
    "[DONE]",
]
STREAM = sse(*STREAM_EVENTS)
ENGINE_ERROR = {
    "error": {
        "message": "EngineCore encountered an issue. See stack trace (above) for the root cause.",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }
}
