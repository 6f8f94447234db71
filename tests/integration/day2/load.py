"""Steady, bounded client load through the PD proxy while a day-2 operation runs, counted.

A few worker threads, each sending one request after the other: ``streams`` of them streaming
chat completions, ``plain`` non-streaming ones. A request succeeds when it gets HTTP 200 and a
whole answer: a JSON completion with a choice, or an SSE stream that ends with ``[DONE]`` and
carries no error event. Anything else (a refused connection, a 5xx, a stream cut or ended by an
error event) is a failure, kept with what went wrong. Concurrency is bounded by the number of
workers, so the load is what a few steady clients put on the proxy, not a flood.

Each failure also has a kind (``kinds`` counts them). Clear errors, which tell the client at
once what happened: ``error answer`` (an HTTP error with an OpenAI-style JSON body),
``error event`` (a stream ended by an error event, then ``[DONE]``), ``refused`` (nothing
listens: the client knows at once). Bad ones (``bad``): ``timeout`` (no answer within
``timeout``: a hang), ``cut`` (HTTP 200 with an empty, truncated or unusable body, or a
connection closed mid-answer) and ``other``.

    with SteadyLoad(url, model) as load:
        ...                                 # the operation
    assert load.failed == 0, load.failures
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.sse import SSEParser, stream_error


@dataclass
class SteadyLoad:
    url: str  # the proxy's base URL, http://host:port
    model: str
    streams: int = 2
    plain: int = 2
    max_tokens: int = 24
    timeout: float = 120.0
    pause: float = 0.05  # between two requests of a worker
    succeeded: int = 0
    failures: List[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: List[threading.Thread] = field(default_factory=list)
    started: float = 0.0
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def bad(self) -> int:
        """Failures that are not a clear error: hangs, cut or empty answers."""
        return sum(n for kind, n in self.kinds.items() if kind not in CLEAR)

    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    def __enter__(self) -> SteadyLoad:
        self.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        self.started = time.monotonic()
        kinds = [True] * self.streams + [False] * self.plain
        self._threads = [threading.Thread(target=self._worker, args=(kind,), daemon=True) for kind in kinds]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Let every worker finish the request it is in, then stop."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 10)
        self.seconds = time.monotonic() - self.started

    def wait_for(self, count: int, timeout: float = 120.0) -> None:
        """Until ``count`` requests have completed (the load is really flowing)."""
        end = time.monotonic() + timeout
        while self.total < count:
            if time.monotonic() > end:
                raise AssertionError(f"only {self.total} requests completed in {timeout} s: {self.failures[:3]}")
            time.sleep(0.2)

    def summary(self) -> str:
        rate = self.total / self.seconds if self.seconds else 0.0
        return (
            f"{self.total} requests in {self.seconds:.0f} s ({rate:.1f}/s, {self.streams} streaming + "
            f"{self.plain} non-streaming clients): {self.succeeded} succeeded, {self.failed} failed"
            + (f" ({', '.join(f'{n} {kind}' for kind, n in sorted(self.kinds.items()))})" if self.kinds else "")
        )

    def _worker(self, stream: bool) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            outcome = self._one(stream, number)
            with self._lock:
                if outcome is None:
                    self.succeeded += 1
                else:
                    kind, problem = outcome
                    self.kinds[kind] += 1
                    self.failures.append(f"{'stream' if stream else 'plain'} request: {kind}: {problem}")
            time.sleep(self.pause)

    def _one(self, stream: bool, number: int) -> Optional[Tuple[str, str]]:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": f"Count to {number % 7 + 3}, briefly."}],
            "max_tokens": self.max_tokens,
            "stream": stream,
        }
        request = urllib.request.Request(
            self.url.rstrip("/") + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _judge_stream(response) if stream else _judge_json(response.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return ("error answer" if _error_message(raw) else "other"), f"HTTP {exc.code}: {raw[:300]!r}"
        except (TimeoutError, socket.timeout) as exc:
            return "timeout", f"no answer within {self.timeout:g} s: {exc}"
        except ConnectionRefusedError as exc:
            return "refused", str(exc)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError):
                return "refused", str(exc.reason)
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                return "timeout", f"no answer within {self.timeout:g} s: {exc.reason}"
            return "other", f"no answer: {exc}"
        except (http.client.HTTPException, ConnectionError) as exc:
            return "cut", f"the connection broke: {type(exc).__name__}: {exc}"
        except OSError as exc:
            return "other", f"no answer: {exc}"


CLEAR = ("error answer", "error event", "refused")


def _error_message(raw: bytes) -> Optional[str]:
    """The message of an OpenAI-style error body, or None when it is not one."""
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        return None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else None


def _judge_json(raw: bytes) -> Optional[Tuple[str, str]]:
    try:
        answer = json.loads(raw)
    except ValueError:
        return "cut", f"HTTP 200, not JSON: {raw[:200]!r}"
    if not answer.get("choices"):
        return "cut", f"HTTP 200, no choices: {raw[:200]!r}"
    return None


def _judge_stream(response: Any) -> Optional[Tuple[str, str]]:
    """None for a whole stream; an error event is a clear error only if ``[DONE]`` follows it."""
    parser = SSEParser()
    error: Optional[str] = None
    while True:
        chunk = response.read1(65536)
        if not chunk:
            return "cut", f"the stream ended without [DONE]{f' after an error event: {error}' if error else ''}"
        for event in parser.feed(chunk):
            if event.data == "[DONE]":
                return None if error is None else ("error event", error)
            try:
                error = error or stream_error(json.loads(event.data))
            except ValueError:
                return "cut", f"an event that is not JSON: {event.data[:200]!r}"
