#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: endpoint_probe
short_description: Verify a vLLM OpenAI-compatible endpoint (health, models, chat, tool call, streaming)
version_added: 0.1.0
description:
  - Runs the functional verification of the MiniMax-M2 on vLLM-Ascend deployment guide against
    a running server and returns what it measured. The steps below run in this order and the
    first failure ends the task.
  - C(health) waits until C(GET /health) answers 200, for up to O(health_timeout) seconds.
    While vLLM loads the weights its port is closed, so refused connections, timeouts and 5xx
    answers are retried every O(health_interval) seconds until the deadline; a 4xx answer or
    a TLS error fails at once.
  - C(models) checks that C(GET /v1/models) lists O(served_model_name).
  - With O(chat=true), C(chat) sends O(prompt) to C(POST /v1/chat/completions) and wants
    HTTP 200 and a non-empty C(choices[0].message.content), or a non-empty C(reasoning) when
    MiniMax-M2's thinking used up O(max_tokens).
  - With O(tool_call=true), C(tool_call) sends the guide's tool-calling request
    (C(请查询上海的天气。) with the C(get_current_weather) tool, C(tool_choice=auto),
    C(temperature=0)) and wants C(choices[0].message.tool_calls[0].function.name) to be
    C(get_current_weather) and its C(arguments) a JSON object (as a string) with a non-empty
    C(city).
  - With O(stream=true), C(stream) sends the chat request with C(stream=true), parses the
    server-sent events as they arrive and measures the time to the first token (the first
    non-empty C(content) or C(reasoning) delta) and to the C([DONE]) event. A stream that
    carries an error event, ends without C([DONE]) or brings no text fails although its
    status was 200 (vLLM sends the status before generating, so later errors arrive as events).
  - Every failure message names the step, the method and URL, the reason (with a hint for the
    usual causes - a missing API key, a server started without the tool-calling flags, a
    wrong served model name) and a short excerpt of the response body. The measurements of
    the steps that passed are in the failure result too.
  - Uses only the Python standard library and Ansible's own URL code, so it runs on the
    managed node (to probe C(127.0.0.1)) or on the controller (C(delegate_to=localhost)).
  - Never reports a change.
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  url:
    description:
      - The server's base URL, C(http://HOST:PORT) (or C(https://)), optionally with a path
        prefix when a gateway serves it under one.
      - A trailing C(/) or C(/v1) (the base URL of OpenAI clients) is removed, since C(/health)
        is served at the root; RV(base_url) is the URL used.
    type: str
    required: true
  served_model_name:
    description:
      - The model name the server serves (its C(--served-model-name)), for example
        V(MiniMax-M2.7). It must be listed by C(/v1/models) and is the C(model) of every request.
    type: str
    required: true
  api_key:
    description:
      - The key of a server started with C(--api-key) (or E(VLLM_API_KEY)), sent as an
        C(Authorization) header C(Bearer <api_key>) with every request. vLLM protects C(/v1/*)
        only, so without it the C(models) step fails with HTTP 401.
      - Overrides an C(Authorization) entry of O(headers).
    type: str
  headers:
    description:
      - Extra HTTP headers sent with every request (for example for a gateway in front of the
        server). Their values are not hidden from the logs; put an API key in O(api_key).
    type: dict
    default: {}
  timeout:
    description:
      - Seconds to wait for the answer to each request (C(/v1/models), chat, tool call).
      - For the streaming request it bounds the wait for each read (the first bytes, and every
        gap between events), not the whole stream.
      - Also the longest a C(/health) attempt waits, see O(health_timeout).
      - A large O(max_tokens) or a busy server needs a larger value.
    type: float
    default: 120
  health_timeout:
    description:
      - Deadline, in seconds from the start of the task, for C(/health) to answer 200. Loading
        MiniMax-M2.7 takes minutes, so a probe right after starting the server needs a deadline
        of that order.
      - Each attempt waits up to O(timeout) but not beyond the deadline (at least 0.5 s), and
        one last attempt is made at the deadline. The failure message says how long it waited,
        how many attempts it made and the last error (for example C(connection refused)).
      - V(0) checks once (one request waiting up to O(timeout)), without retrying.
    type: float
    default: 600
  health_interval:
    description:
      - Seconds between two C(/health) attempts.
    type: float
    default: 5
  chat:
    description:
      - Run the C(chat) step.
    type: bool
    default: true
  tool_call:
    description:
      - Run the C(tool_call) step. The server must run with C(--enable-auto-tool-choice
        --tool-call-parser minimax_m2); without them vLLM answers HTTP 400 and the step fails
        saying so.
    type: bool
    default: false
  stream:
    description:
      - Run the C(stream) step (time to first token).
    type: bool
    default: false
  prompt:
    description:
      - The user message of the C(chat) and C(stream) requests.
    type: str
    default: Hello, who are you?
  max_tokens:
    description:
      - C(max_tokens) of the C(chat) and C(stream) requests. MiniMax-M2 thinks before it
        answers, so a small value may return only reasoning (which passes).
    type: int
    default: 200
  tool_call_max_tokens:
    description:
      - C(max_tokens) of the C(tool_call) request (the guide's V(512)). The model thinks before
        calling the tool; a call cut by this limit fails the step saying so.
    type: int
    default: 512
  validate_certs:
    description:
      - Verify the server's TLS certificate (C(https://) only).
    type: bool
    default: true
  use_proxy:
    description:
      - Use the proxy of the E(http_proxy)/E(https_proxy) environment (E(no_proxy) honoured).
        With V(false) the requests go straight to the server.
    type: bool
    default: true
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  check_mode:
    support: full
    details:
      - The probes change nothing (they only read and generate a few tokens), so check mode
        sends the same requests and returns the same results.
  diff_mode:
    support: none
    details: The module changes nothing, so there is no difference to show.
  platform:
    support: full
    platforms: posix
    details: Any host that reaches the server over HTTP - the node itself or the controller (C(delegate_to)).
notes:
  - The requests add to the server's load and metrics (C(/metrics) counters), nothing else.
  - The time to first token includes connecting and the prompt's prefill; it is one request on
    an otherwise idle server, not a benchmark (use C(vllm bench serve) for that).
  - MiniMax-M2 writes its thinking first. With C(--reasoning-parser minimax_m2) it is in
    C(reasoning) and the content follows; with C(minimax_m2_append_think) (the guide's choice
    for tool calling) C(<think>...</think>) stays in C(content). Both pass; RV(chat.content_excerpt)
    shows the content, or the reasoning when there is no content.
seealso:
  - name: vLLM OpenAI-compatible server
    description: The C(/health), C(/v1/models) and C(/v1/chat/completions) routes probed.
    link: https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
  - module: ansible.builtin.uri
"""

EXAMPLES = r"""
- name: Wait for the freshly started server, then check it answers
  ascend.vllm.endpoint_probe:
    url: http://127.0.0.1:8000
    served_model_name: MiniMax-M2.7
    health_timeout: 1800
    health_interval: 10

- name: Every check of the deployment guide, from the controller
  ascend.vllm.endpoint_probe:
    url: "http://{{ ansible_host }}:8000"
    served_model_name: MiniMax-M2.7
    api_key: "{{ vllm_api_key }}"
    tool_call: true
    stream: true
    health_timeout: 0
  delegate_to: localhost
  register: probe

- name: Show the measurements
  ansible.builtin.debug:
    msg: >-
      chat {{ probe.chat.latency_s }} s, tool call {{ probe.tool_call.arguments }},
      TTFT {{ probe.stream.ttft_s }} s

- name: Only health and the model list (no tokens generated)
  ascend.vllm.endpoint_probe:
    url: https://vllm.example.com/minimax
    served_model_name: MiniMax-M2.5
    chat: false
    validate_certs: false
    headers:
      X-Tenant: inference
"""

RETURN = r"""
base_url:
  description: The base URL used (O(url) without a trailing C(/) or C(/v1)).
  returned: always, except when O(url) is not a valid URL
  type: str
  sample: http://10.0.0.1:8000
health_wait_s:
  description: Seconds from the task's first C(/health) attempt until one answered 200.
  returned: when the health step passed
  type: float
  sample: 0.004
health_attempts:
  description: Number of C(/health) requests made.
  returned: when the health step passed
  type: int
  sample: 1
models:
  description: The model ids C(/v1/models) lists.
  returned: when the models step passed
  type: list
  elements: str
  sample: [MiniMax-M2.7]
chat:
  description: The chat request's measurements.
  returned: when O(chat) is true and the chat step passed
  type: dict
  contains:
    latency_s:
      description: Seconds from sending the request to the end of the answer.
      type: float
      sample: 3.412
    completion_tokens:
      description: C(usage.completion_tokens) of the answer; V(null) if the server sent no usage.
      type: int
      sample: 87
    finish_reason:
      description: C(choices[0].finish_reason) - V(stop), or V(length) when O(max_tokens) cut the reply.
      type: str
      sample: stop
    content_excerpt:
      description: The first 200 characters of the reply's content, or of its reasoning when the content is empty.
      type: str
      sample: "<think>The user wrote: Hello, who are you. I will answer briefly."
tool_call:
  description: The tool-calling request's result.
  returned: when O(tool_call) is true and the tool_call step passed
  type: dict
  contains:
    name:
      description: The function called, always C(get_current_weather).
      type: str
      sample: get_current_weather
    arguments:
      description: The call's arguments, decoded from their JSON string.
      type: dict
      sample: {city: 上海}
    latency_s:
      description: Seconds from sending the request to the end of the answer.
      type: float
      sample: 5.021
    finish_reason:
      description: C(choices[0].finish_reason), normally V(tool_calls).
      type: str
      sample: tool_calls
stream:
  description: The streamed chat request's measurements.
  returned: when O(stream) is true and the stream step passed
  type: dict
  contains:
    ttft_s:
      description: >-
        Time to first token: seconds from sending the request to receiving the first event
        with non-empty C(content) or C(reasoning) (the role-only first event does not count).
      type: float
      sample: 0.183
    total_s:
      description: Seconds from sending the request to receiving the C([DONE]) event.
      type: float
      sample: 3.377
    chunks:
      description: Number of chunk events (JSON data) before C([DONE]), the usage chunk included.
      type: int
      sample: 89
    completion_tokens:
      description: >-
        C(completion_tokens) of the usage chunk (asked for with C(stream_options.include_usage));
        V(null) without one.
      type: int
      sample: 87
    finish_reason:
      description: The C(finish_reason) of the last choice that had one.
      type: str
      sample: stop
    content_excerpt:
      description: The first 200 characters of the streamed content, or of the reasoning when no content came.
      type: str
step:
  description: The step that failed - V(health), V(models), V(chat), V(tool_call) or V(stream).
  returned: failure of a step
  type: str
  sample: tool_call
http_status:
  description: The HTTP status of the failed step's answer; V(null) when there was none (connection refused, timeout).
  returned: failure of a step
  type: int
  sample: 400
response_excerpt:
  description: >-
    The start of the failed step's response body (for a stream, the error event's data or the
    end of the stream), on one line, cut to 300 characters; V(null) when there was no answer.
  returned: failure of a step
  type: str
  sample: '{"error":"Unauthorized"}'
"""

import contextlib
import json
import time
import urllib.error
from typing import Any, Dict, Optional, Tuple

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.ascend.vllm.plugins.module_utils.endpoint_probe import (
    ProbeError,
    StreamProbe,
    chat_body,
    check_chat,
    check_models,
    check_tool_call,
    describe_error,
    health_outcome,
    http_failure,
    normalize_base_url,
    tool_call_body,
    wait_healthy,
)
from ansible_collections.ascend.vllm.plugins.module_utils.http_answer import TRANSPORT_ERRORS, answer, error_body

READ_SIZE = 65536


class _Client:
    """HTTP through Ansible's ``open_url``: answers as (status, body), transport errors raised."""

    def __init__(self, module: AnsibleModule, base_url: str) -> None:
        params = module.params
        self.base_url = base_url
        self.headers = {str(k): str(v) for k, v in (params["headers"] or {}).items()}
        self.api_key_set = bool(params["api_key"])
        if params["api_key"]:
            self.headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
            self.headers["Authorization"] = f"Bearer {params['api_key']}"
        self.validate_certs = params["validate_certs"]
        self.use_proxy = params["use_proxy"]
        self.timeout = params["timeout"]

    def url(self, path: str) -> str:
        return self.base_url + path

    def open(self, method: str, path: str, body: Optional[Dict[str, Any]], timeout: float, accept: str) -> Any:
        """The response of ``open_url``; raises ``HTTPError`` for a status >= 400."""
        headers = dict(self.headers, Accept=accept)
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return open_url(
            self.url(path),
            data=data,
            headers=headers,
            method=method,
            timeout=timeout,
            validate_certs=self.validate_certs,
            use_proxy=self.use_proxy,
            follow_redirects="safe",
            http_agent="ascend.vllm.endpoint_probe",
            use_netrc=False,  # a .netrc entry would replace the Authorization header
        )

    def call(
        self, method: str, path: str, body: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None
    ) -> Tuple[int, bytes]:
        """(status, body) of an answer, whatever its status; raises TRANSPORT_ERRORS without one."""
        return answer(lambda: self.open(method, path, body, timeout or self.timeout, "application/json"))

    def step(
        self, step: str, method: str, path: str, body: Optional[Dict[str, Any]] = None
    ) -> Tuple[int, bytes, float]:
        """(status, body, seconds) of a step's request; a transport error is the step's failure."""
        start = time.monotonic()
        try:
            status, raw = self.call(method, path, body)
        except TRANSPORT_ERRORS as exc:
            raise ProbeError(step, method, self.url(path), describe_error(exc, self.timeout)[0]) from None
        return status, raw, time.monotonic() - start


def _health(client: _Client, params: Dict[str, Any]) -> Dict[str, Any]:
    def attempt(timeout: float) -> Tuple[str, str, Optional[bytes]]:
        try:
            status, raw = client.call("GET", "/health", timeout=timeout)
        except TRANSPORT_ERRORS as exc:
            text, retry = describe_error(exc, timeout)
            return ("retry" if retry else "fail"), text, None
        outcome = health_outcome(status)
        return outcome, f"HTTP {status}", (None if outcome == "ok" else raw)

    return wait_healthy(
        attempt,
        client.url("/health"),
        health_timeout=params["health_timeout"],
        interval=params["health_interval"],
        timeout=params["timeout"],
        clock=time.monotonic,
        sleep=time.sleep,
    )


def _stream(client: _Client, params: Dict[str, Any]) -> Dict[str, Any]:
    path = "/v1/chat/completions"
    url = client.url(path)
    body = chat_body(params["served_model_name"], params["prompt"], params["max_tokens"], stream=True)
    start = time.monotonic()
    try:
        resp = client.open("POST", path, body, client.timeout, "text/event-stream")
    except urllib.error.HTTPError as exc:
        raise http_failure("stream", "POST", url, int(exc.code), error_body(exc), client.api_key_set) from None
    except TRANSPORT_ERRORS as exc:
        raise ProbeError("stream", "POST", url, describe_error(exc, client.timeout)[0]) from None
    with contextlib.closing(resp):
        status = int(resp.status)
        if status != 200:  # another 2xx/3xx (open_url raises HTTPError for >= 400)
            raise http_failure("stream", "POST", url, status, resp.read(), client.api_key_set)
        probe = StreamProbe(url, start, resp.headers.get("Content-Type"))
        # read1 returns what has arrived (up to READ_SIZE) instead of waiting for READ_SIZE bytes.
        read = getattr(resp, "read1", None) or resp.read
        while not probe.done:
            try:
                data = read(READ_SIZE)
            except TRANSPORT_ERRORS as exc:
                text = describe_error(exc, client.timeout)[0]
                raise ProbeError(
                    "stream", "POST", url, f"reading the stream after {probe.chunks} chunks: {text}", status=200
                ) from None
            if not data:
                break
            probe.feed(data, time.monotonic())
        return probe.finish(time.monotonic())


def _validate(module: AnsibleModule) -> str:
    params = module.params
    for name in ("timeout", "health_interval"):
        if params[name] <= 0:
            module.fail_json(msg=f"{name} must be more than 0, got {params[name]:g}")
    if params["health_timeout"] < 0:
        module.fail_json(msg=f"health_timeout must be 0 or more, got {params['health_timeout']:g}")
    for name in ("max_tokens", "tool_call_max_tokens"):
        if params[name] < 1:
            module.fail_json(msg=f"{name} must be at least 1, got {params[name]}")
    if not params["served_model_name"].strip():
        module.fail_json(msg="served_model_name must not be empty")
    if (params["chat"] or params["stream"]) and not params["prompt"].strip():
        module.fail_json(msg="prompt must not be empty")
    try:
        return normalize_base_url(params["url"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    return ""  # not reached: fail_json exits


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            served_model_name=dict(type="str", required=True),
            api_key=dict(type="str", no_log=True),
            headers=dict(type="dict", default={}),
            timeout=dict(type="float", default=120),
            health_timeout=dict(type="float", default=600),
            health_interval=dict(type="float", default=5),
            chat=dict(type="bool", default=True),
            tool_call=dict(type="bool", default=False),
            stream=dict(type="bool", default=False),
            prompt=dict(type="str", default="Hello, who are you?"),
            max_tokens=dict(type="int", default=200, no_log=False),
            tool_call_max_tokens=dict(type="int", default=512, no_log=False),
            validate_certs=dict(type="bool", default=True),
            use_proxy=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    base_url = _validate(module)
    params = module.params
    client = _Client(module, base_url)
    model = params["served_model_name"]
    results: Dict[str, Any] = {"base_url": base_url}
    try:
        health = _health(client, params)
        results.update(health_wait_s=health["waited_s"], health_attempts=health["attempts"])

        status, raw, _seconds = client.step("models", "GET", "/v1/models")
        results["models"] = check_models(client.url("/v1/models"), status, raw, model, client.api_key_set)

        chat_url = client.url("/v1/chat/completions")
        if params["chat"]:
            body = chat_body(model, params["prompt"], params["max_tokens"])
            status, raw, seconds = client.step("chat", "POST", "/v1/chat/completions", body)
            checked = check_chat(chat_url, status, raw, client.api_key_set)
            results["chat"] = dict(latency_s=round(seconds, 3), **checked)

        if params["tool_call"]:
            body = tool_call_body(model, params["tool_call_max_tokens"])
            status, raw, seconds = client.step("tool_call", "POST", "/v1/chat/completions", body)
            checked = check_tool_call(chat_url, status, raw, client.api_key_set)
            results["tool_call"] = dict(latency_s=round(seconds, 3), **checked)

        if params["stream"]:
            results["stream"] = _stream(client, params)
    except ProbeError as err:
        module.fail_json(
            msg=str(err), step=err.step, http_status=err.status, response_excerpt=err.body_excerpt, **results
        )

    module.exit_json(changed=False, **results)


if __name__ == "__main__":
    main()
