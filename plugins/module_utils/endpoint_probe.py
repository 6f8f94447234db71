# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Request bodies, response checks, SSE parsing and measurements of an OpenAI-compatible vLLM server.

No Ansible imports and no I/O: ``plugins/modules/endpoint_probe.py`` sends the requests and
these build their bodies and judge the answers. The answers read are those vLLM (and
vLLM-Ascend, which serves vLLM's OpenAI API) gives:

* ``GET /health``: 200 with an empty body when the engine is up; 503 once the engine died.
  While the weights load the HTTP port is bound but not listening: connections are refused.
* ``GET /v1/models``: ``{"object": "list", "data": [{"id": <served name>, ...}]}``.
* ``POST /v1/chat/completions``: ``choices[0].message`` with ``content``, and the thinking in
  ``reasoning`` (``reasoning_content`` before vLLM 0.11) when a reasoning parser runs; with
  ``--reasoning-parser minimax_m2_append_think`` the ``<think>...</think>`` stays in
  ``content``. Tool calls (``--enable-auto-tool-choice --tool-call-parser minimax_m2``) come as
  ``message.tool_calls[].function`` with ``name`` and ``arguments``, a JSON object as a string.
* Errors: ``{"error": {"message", "type", "param", "code"}}`` (``{"error": "Unauthorized"}``
  for a missing or wrong ``--api-key``).
* Streaming (``"stream": true``): server-sent events, one ``data: <chunk JSON>`` per token
  with ``choices[0].delta``, an optional usage chunk, then ``data: [DONE]``. The HTTP status
  (200) is sent before generation starts, so a failure during generation arrives as an event
  ``data: {"error": {...}}`` (followed by ``[DONE]``), never as a status.

Every failure is a :class:`ProbeError` naming the step, the request and the reason, with a
short excerpt of what the server sent.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import urlsplit, urlunsplit

from ansible_collections.ascend.vllm.plugins.module_utils.sse import SSEEvent, SSEParser, stream_error

DEFAULT_PROMPT = "Hello, who are you?"

# The tool-calling check of the deployment guide, verbatim: the weather question and the
# get_current_weather schema, tool_choice auto, temperature 0, 512 tokens.
WEATHER_PROMPT = "请查询上海的天气。"
WEATHER_FUNCTION = "get_current_weather"
WEATHER_REQUIRED_ARGUMENT = "city"
WEATHER_TOOL: Dict[str, Any] = {
    "type": "function",
    "function": {
        "name": WEATHER_FUNCTION,
        "description": "Get weather by city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TOOL_CALL_MAX_TOKENS = 512

# What a failure message shows of a response body, and a reply's text in the results.
EXCERPT_CHARS = 300
CONTENT_EXCERPT_CHARS = 200

# vLLM's answer to tool_choice "auto" when the server runs without the tool flags:
# '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'.
AUTO_TOOL_CHOICE_ERROR = "tool choice requires --enable-auto-tool-choice"
TOOL_FLAGS = "--enable-auto-tool-choice --tool-call-parser minimax_m2"

DONE = "[DONE]"
# The text fields of a message or a stream delta: the reply, and the thinking under its
# current (vLLM >= 0.11) and former name.
TEXT_FIELDS = ("content", "reasoning", "reasoning_content")

Body = Union[bytes, str, None]


class ProbeError(Exception):
    """A failed step: ``step`` (health, models, chat, tool_call, stream), the request, the reason.

    ``body`` is what the server sent (an excerpt goes into the message), ``status`` the HTTP
    status when there was an answer.
    """

    def __init__(
        self,
        step: str,
        method: str,
        url: str,
        problem: str,
        body: Body = None,
        status: Optional[int] = None,
        tail: bool = False,
    ) -> None:
        self.step = step
        self.method = method
        self.url = url
        self.problem = problem
        self.status = status
        self.body_excerpt = None if body is None else excerpt(body, tail=tail)
        text = f"{step}: {method} {url}: {problem}"
        if self.body_excerpt is not None:
            text += f" - response: {self.body_excerpt}"
        super().__init__(text)


# -- text helpers ---------------------------------------------------------------------------


def _text(body: Body) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body


def excerpt(body: Body, limit: int = EXCERPT_CHARS, tail: bool = False) -> str:
    """``body`` on one line (newlines shown as ``\\n``), cut to ``limit`` characters.

    ``tail`` keeps the end instead of the beginning (the end of a stream tells more).
    """
    text = _text(body).replace("\r", "\\r").replace("\n", "\\n")
    if not text:
        return "(empty)"
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if tail:
        return f"[{cut} characters before] ...{text[-limit:]}"
    return f"{text[:limit]}... [{cut} more characters]"


def _short(text: str, limit: int = CONTENT_EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def normalize_base_url(url: str) -> str:
    """The server's root URL: ``http(s)://host:port[/prefix]``, no trailing ``/`` nor ``/v1``.

    ``http://h:8000/v1`` (the OpenAI clients' base URL) becomes ``http://h:8000``, since
    ``/health`` is served at the root. Raises ``ValueError`` for anything else than an
    http(s) URL with a host, or one with a query or fragment.
    """
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be an http:// or https:// URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"url must not have a query or fragment, got {url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def error_message(body: Body) -> str:
    """The ``error.message`` of a vLLM error answer, else the body as text."""
    text = _text(body)
    try:
        err = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return text
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"]
    return err if isinstance(err, str) else text


def http_hint(status: int, body: Body, api_key_set: bool) -> str:
    """What a failed status most likely means for a vLLM server, or ``""``."""
    text = error_message(body)
    if status == 401:
        if api_key_set:
            return "the server rejected api_key (compare it with the server's --api-key)"
        return "the server wants an API key (it runs with --api-key): set api_key"
    if status == 400 and AUTO_TOOL_CHOICE_ERROR in text:
        return f"the server runs without tool calling: start vLLM with {TOOL_FLAGS}"
    if status == 400 and "maximum context length" in text:
        return "the request does not fit the server's --max-model-len: lower max_tokens"
    if status == 404 and "does not exist" in text:
        return "the server does not serve this model name (--served-model-name)"
    if status == 404:
        return "no such route: is url the vLLM server's root?"
    return ""


def http_failure(step: str, method: str, url: str, status: int, body: Body, api_key_set: bool = False) -> ProbeError:
    """The error for an answer whose status is not 200."""
    hint = http_hint(status, body, api_key_set)
    problem = f"HTTP {status}" + (f" ({hint})" if hint else "")
    return ProbeError(step, method, url, problem, body=body, status=status)


def describe_error(exc: BaseException, timeout: Optional[float] = None) -> Tuple[str, bool]:
    """A transport error (no HTTP answer) as ``(text, worth retrying)``.

    Refused connections, timeouts, resets and unresolvable names are worth retrying while a
    server starts; a TLS failure (certificate, protocol) is not.
    """
    reason: Any = exc
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
    # SSLCertVerificationError included; open_url's own SSLValidationError/NoSSLError by name
    # (this file imports nothing from Ansible).
    if isinstance(reason, ssl.SSLError) or type(reason).__name__ in ("SSLValidationError", "NoSSLError"):
        return f"TLS error: {reason} (set validate_certs=false for a self-signed certificate)", False
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused ({reason})", True
    if isinstance(reason, (socket.timeout, TimeoutError)) or (isinstance(reason, str) and "timed out" in reason):
        within = f" within {timeout:g} s" if timeout is not None else ""
        return f"no answer{within} (timed out)", True
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host ({reason})", True
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without answering", True
    if isinstance(reason, ConnectionError):
        return f"connection failed ({reason})", True
    if isinstance(reason, http.client.HTTPException):
        return f"bad HTTP answer ({type(reason).__name__}: {reason})", True
    return f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason, True


# -- /health ---------------------------------------------------------------------------------

# What one /health attempt returns: ("ok" | "retry" | "fail", description, body).
Attempt = Tuple[str, str, Body]

# An attempt close to the deadline still gets this long to answer.
MIN_ATTEMPT_TIMEOUT = 0.5


def health_outcome(status: int) -> str:
    """``ok`` for 200; ``fail`` for a 4xx (wrong URL or route, will not change); else ``retry``.

    5xx answers are retried: vLLM answers 503 only with a dead engine, but a gateway in front
    of a starting server answers 502/503 until it is up.
    """
    if status == 200:
        return "ok"
    if 400 <= status < 500:
        return "fail"
    return "retry"


def wait_healthy(
    attempt: Callable[[float], Attempt],
    url: str,
    *,
    health_timeout: float,
    interval: float,
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Dict[str, Any]:
    """Call ``attempt(request timeout)`` until it says ``ok``, ``fail``, or the deadline passes.

    With ``health_timeout`` 0 there is one attempt with ``timeout``. Otherwise each attempt
    gets ``timeout`` but not beyond the deadline (at least :data:`MIN_ATTEMPT_TIMEOUT`), the
    attempts are ``interval`` apart, and one last attempt is made at the deadline. Returns
    ``{"waited_s", "attempts"}``; raises :class:`ProbeError` naming the wait and the last error.
    """
    start = clock()
    deadline = start + health_timeout
    attempts = 0
    while True:
        remaining = deadline - clock()
        request_timeout = timeout if health_timeout <= 0 else min(timeout, max(remaining, MIN_ATTEMPT_TIMEOUT))
        attempts += 1
        outcome, detail, body = attempt(request_timeout)
        now = clock()
        if outcome == "ok":
            return {"waited_s": round(now - start, 3), "attempts": attempts}
        if outcome == "fail":
            raise ProbeError("health", "GET", url, f"{detail} (not retried)", body=body)
        if now >= deadline:
            waited = (
                "after one attempt (health_timeout=0)"
                if health_timeout <= 0
                else f"after waiting {now - start:.1f} s (health_timeout={health_timeout:g} s, {attempts} attempts)"
            )
            raise ProbeError("health", "GET", url, f"not healthy {waited}; last error: {detail}", body=body)
        sleep(max(0.0, min(interval, deadline - now)))


# -- /v1/models ------------------------------------------------------------------------------


def _json(step: str, method: str, url: str, status: int, raw: Body) -> Any:
    try:
        return json.loads(_text(raw))
    except ValueError as exc:
        raise ProbeError(step, method, url, f"the answer is not JSON ({exc})", body=raw, status=status) from None


def check_models(url: str, status: int, raw: Body, served_model_name: str, api_key_set: bool = False) -> List[str]:
    """The model ids the server lists; raises unless ``served_model_name`` is one of them."""
    if status != 200:
        raise http_failure("models", "GET", url, status, raw, api_key_set)
    body = _json("models", "GET", url, status, raw)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
        raise ProbeError("models", "GET", url, "no 'data' list of models with an 'id'", body=raw, status=status)
    models = [m["id"] for m in data]
    if served_model_name not in models:
        raise ProbeError(
            "models",
            "GET",
            url,
            f"{served_model_name!r} is not served; the server serves {models} "
            "(served_model_name must be the server's --served-model-name)",
            body=raw,
            status=status,
        )
    return models


# -- chat and tool calling -----------------------------------------------------------------


def chat_body(model: str, prompt: str, max_tokens: int, stream: bool = False) -> Dict[str, Any]:
    """The chat request of the deployment guide's curl check, with the probe's prompt.

    A streamed request asks for the usage chunk (``stream_options.include_usage``).
    """
    body: Dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def tool_call_body(model: str, max_tokens: int = TOOL_CALL_MAX_TOKENS) -> Dict[str, Any]:
    """The deployment guide's tool-calling request (the weather in Shanghai)."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": WEATHER_PROMPT}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "temperature": 0,
        "max_tokens": max_tokens,
    }


def _first_choice(step: str, url: str, status: int, raw: Body, key: str) -> Dict[str, Any]:
    body = _json(step, "POST", url, status, raw)
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProbeError(step, "POST", url, "no 'choices' in the answer", body=raw, status=status)
    choice = choices[0]
    if not isinstance(choice.get(key), dict):
        raise ProbeError(step, "POST", url, f"no 'choices[0].{key}' in the answer", body=raw, status=status)
    return choice


def _usage_tokens(raw: Body, key: str) -> Optional[int]:
    try:
        usage = json.loads(_text(raw)).get("usage")
    except (ValueError, AttributeError):
        return None
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reply_text(fields: Dict[str, Any]) -> Tuple[str, str]:
    """(content, thinking) of a message or delta; absent and null fields are ``""``."""
    content = fields.get("content")
    thinking = fields.get("reasoning") or fields.get("reasoning_content")
    return (content if isinstance(content, str) else ""), (thinking if isinstance(thinking, str) else "")


def check_chat(url: str, status: int, raw: Body, api_key_set: bool = False) -> Dict[str, Any]:
    """``{completion_tokens, finish_reason, content_excerpt}`` of a chat answer.

    The reply must have a non-empty ``content`` or, when the thinking used up max_tokens, a
    non-empty ``reasoning``; ``content_excerpt`` is the content (else the reasoning), cut.
    """
    if status != 200:
        raise http_failure("chat", "POST", url, status, raw, api_key_set)
    choice = _first_choice("chat", url, status, raw, "message")
    content, thinking = _reply_text(choice["message"])
    if not content.strip() and not thinking.strip():
        problem = "empty reply: no content and no reasoning in choices[0].message"
        raise ProbeError("chat", "POST", url, problem, body=raw, status=status)
    return {
        "completion_tokens": _usage_tokens(raw, "completion_tokens"),
        "finish_reason": choice.get("finish_reason"),
        "content_excerpt": _short(content if content.strip() else thinking),
    }


def check_tool_call(url: str, status: int, raw: Body, api_key_set: bool = False) -> Dict[str, Any]:
    """``{name, arguments, finish_reason}`` of the weather request's answer.

    ``choices[0].message.tool_calls[0].function`` must name ``get_current_weather`` and its
    ``arguments`` must be a JSON object (as a string) with a non-empty string ``city``.
    """
    step = "tool_call"

    def fail(problem: str) -> ProbeError:
        return ProbeError(step, "POST", url, problem, body=raw, status=status)

    if status != 200:
        raise http_failure(step, "POST", url, status, raw, api_key_set)
    choice = _first_choice(step, url, status, raw, "message")
    calls = choice["message"].get("tool_calls")
    if not isinstance(calls, list) or not calls:
        finish = choice.get("finish_reason")
        if finish == "length":
            raise fail("no tool_calls in choices[0].message: the answer was cut at tool_call_max_tokens")
        raise fail(f"no tool_calls in choices[0].message (finish_reason {finish!r}: the model answered in text)")
    function = calls[0].get("function") if isinstance(calls[0], dict) else None
    if not isinstance(function, dict):
        raise fail("tool_calls[0] has no 'function'")
    name = function.get("name")
    if name != WEATHER_FUNCTION:
        raise fail(f"tool_calls[0] calls {name!r}, not {WEATHER_FUNCTION!r}")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        raise fail(f"tool_calls[0].function.arguments is {type(arguments).__name__}, not a JSON string")
    try:
        parsed = json.loads(arguments)
    except ValueError as exc:
        raise fail(f"tool_calls[0].function.arguments is not JSON ({exc}): {arguments}") from None
    if not isinstance(parsed, dict):
        raise fail(f"tool_calls[0].function.arguments is not a JSON object: {arguments}")
    city = parsed.get(WEATHER_REQUIRED_ARGUMENT)
    if not isinstance(city, str) or not city.strip():
        raise fail(f"tool_calls[0].function.arguments has no {WEATHER_REQUIRED_ARGUMENT!r} string: {arguments}")
    return {"name": name, "arguments": parsed, "finish_reason": choice.get("finish_reason")}


# -- server-sent events ------------------------------------------------------------------------


class StreamProbe:
    """Measures one streamed chat answer from the bytes of its reads and their arrival times.

    ``start`` is the time the request was sent; ``feed(data, now)`` gets each read as it
    arrives (``now`` on the same clock), ``finish(now)`` at the end of the body (or after
    ``[DONE]``, see ``done``) checks the stream and returns the measurements:

    * ``ttft_s``: from ``start`` to the read that brought the first non-empty ``content`` or
      ``reasoning`` delta (the role-only first chunk does not count);
    * ``total_s``: from ``start`` to ``data: [DONE]``;
    * ``chunks``: the chunk events (JSON data) before ``[DONE]``, the usage chunk included;
    * ``completion_tokens``: from the usage chunk (``None`` without one);
    * ``finish_reason`` and ``content_excerpt`` (the streamed content, else the reasoning).

    An error event (``event: error``, or data ``{"error": ...}`` as vLLM sends), an event whose
    data is not JSON, a stream without ``[DONE]`` or without any text fail, although the HTTP
    status was 200.
    """

    def __init__(self, url: str, start: float, content_type: Optional[str] = None) -> None:
        self.url = url
        self.start = start
        self.content_type = content_type
        self.parser = SSEParser()
        self.chunks = 0
        self.ttft: Optional[float] = None
        self.done_at: Optional[float] = None
        self.error: Optional[Tuple[str, str]] = None  # (problem, event data)
        self.completion_tokens: Optional[int] = None
        self.finish_reason: Optional[str] = None
        self._content = ""
        self._thinking = ""
        self._tail = b""

    @property
    def done(self) -> bool:
        return self.done_at is not None

    def feed(self, data: bytes, now: float) -> None:
        self._tail = (self._tail + data)[-4 * EXCERPT_CHARS :]
        for event in self.parser.feed(data):
            self._event(event, now)

    def _event(self, event: SSEEvent, now: float) -> None:
        if self.error is not None or self.done:
            return  # the first error is the one reported; nothing counts after [DONE]
        if event.event == "error":
            self.error = (f"error event: {excerpt(event.data)}", event.data)
            return
        if event.data.strip() == DONE:
            self.done_at = now
            return
        try:
            obj = json.loads(event.data)
        except ValueError:
            self.error = ("an event whose data is not JSON", event.data)
            return
        message = stream_error(obj)
        if message is not None:
            self.error = (f"error event: {message}", event.data)
            return
        if not isinstance(obj, dict):
            self.error = ("an event whose data is not a JSON object", event.data)
            return
        self.chunks += 1
        usage = obj.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.completion_tokens = usage["completion_tokens"]
        for choice in obj.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            content, thinking = _reply_text(delta)
            if (content or thinking) and self.ttft is None:
                self.ttft = now - self.start
            # enough of each for the excerpt (and a few characters more: "..." marks the cut)
            if len(self._content) <= CONTENT_EXCERPT_CHARS:
                self._content += content
            if len(self._thinking) <= CONTENT_EXCERPT_CHARS:
                self._thinking += thinking

    def _fail(self, problem: str, body: Body, tail: bool = False) -> ProbeError:
        return ProbeError("stream", "POST", self.url, problem, body=body, status=200, tail=tail)

    def finish(self, now: float) -> Dict[str, Any]:
        if self.error is not None:
            problem, data = self.error
            raise self._fail(f"the stream (HTTP 200) carried {problem}", data)
        if not self.done:
            pending = self.parser.pending
            problem = "the stream (HTTP 200) ended without 'data: [DONE]'"
            if pending:
                problem += " (cut inside an event)"
            problem += f" after {self.chunks} chunks"
            if self.content_type and "text/event-stream" not in self.content_type:
                problem += f"; Content-Type is {self.content_type!r}, not text/event-stream"
            raise self._fail(problem, self._tail, tail=True)
        if self.ttft is None:
            problem = f"no content or reasoning in the {self.chunks} chunks of the stream"
            raise self._fail(problem, self._tail, tail=True)
        content, thinking = self._content, self._thinking
        return {
            "ttft_s": round(self.ttft, 3),
            "total_s": round((self.done_at or now) - self.start, 3),
            "chunks": self.chunks,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
            "content_excerpt": _short(content if content.strip() else thinking),
        }
