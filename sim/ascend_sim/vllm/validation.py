"""Request validation as vLLM 0.33's OpenAI server does it, before any engine work.

vLLM parses a body into pydantic models (``ChatCompletionRequest``, ``CompletionRequest``) in
lax mode, and FastAPI turns a validation failure into HTTP 400: ``{"error": {"message":
"<n> validation error(s): ...", "type": "Bad Request", "param": null, "code": 400}}``. Lax
mode coerces what is unambiguous (``"5"`` or ``5.0`` for an integer, ``1`` or ``"true"`` for a
flag, an integer for a number) and refuses the rest. A body whose Content-Type is not
``application/json`` is refused the same way, before it is read. Checks that vLLM makes after
parsing (``n`` at least 1, a known ``tool_choice``) answer 400 ``BadRequestError`` elsewhere.

Here: a table of the fields both routes share and the ones of each route, and the few
shapes (messages, content parts, tools, tool_choice, stop) that need more than a type.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ascend_sim.vllm.api_common import ApiError

TRUE = {"1", "true", "t", "yes", "y", "on"}
FALSE = {"0", "false", "f", "no", "n", "off"}


class Invalid(Exception):
    """One field's validation error: pydantic's type, message and the input."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


def _int(value: Any) -> Any:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value) < 100:
        return int(value.strip())
    if isinstance(value, float):
        raise Invalid("int_from_float", "Input should be a valid integer, got a number with a fractional part")
    raise Invalid("int_type" if not isinstance(value, str) else "int_parsing", "Input should be a valid integer")


def _float(value: Any) -> Any:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
        return float(value)
    if isinstance(value, str):
        try:
            if math.isfinite(float(value)):
                return float(value)
        except ValueError:
            pass
        raise Invalid("float_parsing", "Input should be a valid number, unable to parse string as a number")
    raise Invalid("float_type", "Input should be a valid number")


def _bool(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise Invalid("bool_parsing" if isinstance(value, str) else "bool_type", "Input should be a valid boolean")


def _str(value: Any) -> None:
    if not isinstance(value, str):
        raise Invalid("string_type", "Input should be a valid string")


def _dict(value: Any) -> None:
    if not isinstance(value, dict):
        raise Invalid("dict_type", "Input should be a valid dictionary")


def _int_list(value: Any) -> Any:
    if not isinstance(value, list):
        raise Invalid("list_type", "Input should be a valid list")
    return [_int(item) for item in value]


def _stop(value: Any) -> None:
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value)):
        return
    raise Invalid("string_type", "Input should be a valid string or a list of strings")


def _tools(value: Any) -> None:
    if not isinstance(value, list):
        raise Invalid("list_type", "Input should be a valid list")
    for tool in value:
        if not isinstance(tool, dict) or not isinstance(tool.get("function"), dict):
            raise Invalid("missing", "Field required: function")
        if tool.get("type", "function") != "function":
            raise Invalid("literal_error", "Input should be 'function'")
        function = tool["function"]
        _str(function.get("name"))
        if function.get("description") is not None:
            _str(function["description"])
        if function.get("parameters") is not None:
            _dict(function["parameters"])


def _tool_choice(value: Any) -> None:
    if isinstance(value, str):
        return  # which strings are allowed is checked after parsing (a BadRequestError)
    if not isinstance(value, dict) or not isinstance(value.get("function"), dict):
        raise Invalid("union_tag_invalid", "Input should be 'none', 'auto', 'required' or a named function")
    _str(value["function"].get("name"))


def _content(value: Any) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list):
        raise Invalid("string_type", "Input should be a valid string or a list of content parts")
    for part in value:
        if isinstance(part, str):
            continue
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise Invalid("model_type", "each content part should be an object with a 'type'")
        if part["type"] == "text":
            _str(part.get("text"))


def _messages(value: Any) -> None:
    if not isinstance(value, list):
        raise Invalid("list_type", "Input should be a valid list")
    for message in value:
        if not isinstance(message, dict):
            raise Invalid("model_type", "each message should be an object")
        if "role" not in message:
            raise Invalid("missing", "Field required: role")
        _str(message["role"])
        _content(message.get("content"))
        if message.get("tool_calls") is not None and not isinstance(message["tool_calls"], list):
            raise Invalid("list_type", "tool_calls: Input should be a valid list")


Check = Callable[[Any], Any]  # the value as parsed (lax coercion), or Invalid

COMMON: dict[str, Check] = {
    "model": _str,
    "temperature": _float,
    "top_p": _float,
    "top_k": _int,
    "min_p": _float,
    "presence_penalty": _float,
    "frequency_penalty": _float,
    "repetition_penalty": _float,
    "seed": _int,
    "n": _int,
    "max_tokens": _int,
    "min_tokens": _int,
    "stop": _stop,
    "stop_token_ids": _int_list,
    "stream": _bool,
    "stream_options": _dict,
    "ignore_eos": _bool,
    "skip_special_tokens": _bool,
    "include_stop_str_in_output": _bool,
    "logit_bias": _dict,
    "response_format": _dict,
    "kv_transfer_params": _dict,
    "user": _str,
}
CHAT: dict[str, Check] = {
    **COMMON,
    "messages": _messages,
    "max_completion_tokens": _int,
    "logprobs": _bool,
    "top_logprobs": _int,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _bool,
}
# The completions route's ``logprobs`` and ``prompt_logprobs`` are checked, strictly, by vLLM's
# own validator before the model parses them (api_completions.py); chat takes prompt_logprobs too.
COMPLETIONS: dict[str, Check] = {**COMMON, "echo": _bool, "suffix": _str}


def check_content_type(header: str) -> None:
    """vLLM's dependency on its generation routes: the body must be declared JSON."""
    if header.split(";", 1)[0].strip().lower() != "application/json":
        raise bad_request(["Unsupported Media Type: Only 'application/json' is allowed"])


def bad_request(errors: list[Any]) -> ApiError:
    """FastAPI's RequestValidationError as vLLM answers it."""
    count = len(errors)
    lines = "".join(f"\n  {e}" for e in errors)
    return ApiError(400, f"{count} validation error{'s' if count != 1 else ''}:{lines}", err_type="Bad Request")


def validate(body: dict[str, Any], *, chat: bool) -> None:
    """Every field's type, as the request model parses it; 400 listing each error. ``body``
    gets the parsed values (``"5"`` becomes 5), as the handlers would see them in vLLM."""
    errors = []
    for name, check in (CHAT if chat else COMPLETIONS).items():
        value = body.get(name)
        if value is None:
            continue
        try:
            parsed = check(value)
        except Invalid as exc:
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            errors.append({"type": exc.kind, "loc": ("body", name), "msg": exc.message, "input": shown})
            continue
        if parsed is not None:
            body[name] = parsed
    if chat and "messages" not in body:
        errors.append({"type": "missing", "loc": ("body", "messages"), "msg": "Field required", "input": "{...}"})
    if errors:
        raise bad_request(errors)
    n = body.get("n")
    if n is not None and int(n) < 1:
        raise ApiError(400, f"n must be at least 1, got {int(n)}.", param="n")
