# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endpoint probe's stream measurements: time to first token, chunks, usage, and failed streams."""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.endpoint_probe import ProbeError, StreamProbe
from tests.unit.plugins.module_utils.endpoint_probe_helpers import (
    CHAT_URL,
    ENGINE_ERROR,
    ROLE,
    STREAM,
    STREAM_EVENTS,
    USAGE,
    chat_answer,
    chunk,
    dumps,
    sse,
)


def run_stream(reads: List[Tuple[float, bytes]], content_type: Optional[str] = "text/event-stream") -> StreamProbe:
    probe = StreamProbe(CHAT_URL, start=100.0, content_type=content_type)
    for now, data in reads:
        probe.feed(data, now)
    return probe


def test_stream_measures_ttft_total_and_chunks() -> None:
    events = [sse(e) for e in STREAM_EVENTS]
    # the role chunk at +0.05 is not a token; the first reasoning delta arrives at +0.25
    reads = [(100.05, events[0]), (100.25, events[1]), (100.3, b"".join(events[2:6])), (100.4, events[6] + events[7])]
    probe = run_stream(reads)
    assert probe.done
    assert probe.finish(101.0) == {
        "ttft_s": 0.25,
        "total_s": 0.4,
        "chunks": 7,
        "completion_tokens": 5,
        "finish_reason": "stop",
        "content_excerpt": "\n\n你好!",
    }


def test_stream_ttft_is_the_read_that_completes_the_first_token_event() -> None:
    first_token = sse(chunk({"content": "Hi"}))
    reads = [(100.1, sse(ROLE) + first_token[:20]), (100.6, first_token[20:] + sse("[DONE]"))]
    result = run_stream(reads).finish(100.7)
    assert (result["ttft_s"], result["total_s"], result["chunks"]) == (0.6, 0.6, 2)
    assert result["completion_tokens"] is None


def test_stream_reasoning_only_excerpt() -> None:
    probe = run_stream([(100.2, sse(ROLE, chunk({"reasoning_content": "Think"}, "length"), "[DONE]"))])
    result = probe.finish(100.3)
    assert (result["content_excerpt"], result["finish_reason"]) == ("Think", "length")


def test_stream_long_reasoning_then_content_excerpt_is_the_content() -> None:
    thinking = [chunk({"reasoning": "x" * 50}) for _ in range(6)]
    answer = [chunk({"content": "y" * 150}), chunk({"content": "z" * 100})]
    result = run_stream([(100.1, sse(ROLE, *thinking, *answer, "[DONE]"))]).finish(100.2)
    assert result["content_excerpt"] == "y" * 150 + "z" * 50 + "..."


def test_stream_byte_by_byte_gives_the_same_result() -> None:
    reads = [(100.0 + i * 0.001, bytes([b])) for i, b in enumerate(STREAM)]
    result = run_stream(reads).finish(200.0)
    assert result["chunks"] == 7 and result["completion_tokens"] == 5
    first_token_end = len(sse(STREAM_EVENTS[0], STREAM_EVENTS[1]))
    assert result["ttft_s"] == round((first_token_end - 1) * 0.001, 3)


def test_stream_error_event_after_a_200_fails_even_with_done() -> None:
    body = sse(ROLE, chunk({"reasoning": "The"}), ENGINE_ERROR, "[DONE]")
    probe = run_stream([(100.2, body)])
    with pytest.raises(ProbeError) as exc:
        probe.finish(100.3)
    text = str(exc.value)
    assert exc.value.step == "stream" and exc.value.status == 200
    assert text.startswith(
        f"stream: POST {CHAT_URL}: the stream (HTTP 200) carried error event: EngineCore encountered an issue."
    )
    assert ' - response: {"error":{"message":"EngineCore' in text


def test_stream_older_vllm_error_object() -> None:
    old = {"object": "error", "message": "KV transfer failed", "type": "InternalServerError", "code": 500}
    with pytest.raises(ProbeError, match="carried error event: KV transfer failed"):
        run_stream([(100.1, sse(ROLE, old, "[DONE]"))]).finish(100.2)


def test_stream_sse_error_type_event() -> None:
    body = sse(ROLE) + b'event: error\ndata: {"message": "overloaded"}\n\n' + sse("[DONE]")
    with pytest.raises(ProbeError, match=r'carried error event: \{"message": "overloaded"\}'):
        run_stream([(100.1, body)]).finish(100.2)


def test_stream_without_done_fails() -> None:
    body = sse(ROLE, chunk({"content": "Hi"}), chunk({"content": "!"}))
    probe = run_stream([(100.1, body)])
    assert not probe.done
    with pytest.raises(ProbeError) as exc:
        probe.finish(100.2)
    text = str(exc.value)
    assert "the stream (HTTP 200) ended without 'data: [DONE]' after 3 chunks - response: [" in text
    assert text.endswith('"finish_reason":null}]}\\n\\n')  # the end of the stream is shown


def test_stream_cut_inside_an_event() -> None:
    body = sse(ROLE, chunk({"content": "Hi"})) + b'data: {"id":"chatcmpl-9c8b7a","obj'
    with pytest.raises(ProbeError, match=r"ended without 'data: \[DONE\]' \(cut inside an event\) after 2 chunks"):
        run_stream([(100.1, body)]).finish(100.2)


def test_stream_not_sse_says_the_content_type() -> None:
    body = dumps(chat_answer())
    with pytest.raises(ProbeError, match="Content-Type is 'application/json', not text/event-stream"):
        run_stream([(100.1, body)], content_type="application/json").finish(100.2)


def test_stream_without_text_fails() -> None:
    with pytest.raises(ProbeError, match="no content or reasoning in the 2 chunks"):
        run_stream([(100.1, sse(ROLE, USAGE, "[DONE]"))]).finish(100.2)


def test_stream_non_json_event_fails() -> None:
    with pytest.raises(ProbeError, match="an event whose data is not JSON - response: Internal Server Error"):
        run_stream([(100.1, sse(ROLE, "Internal Server Error", "[DONE]"))]).finish(100.2)


def test_stream_ignores_events_after_done() -> None:
    probe = run_stream([(100.1, sse(ROLE, chunk({"content": "Hi"}), "[DONE]", ENGINE_ERROR))])
    assert probe.finish(100.2)["chunks"] == 2
