# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSE parser (plugins/module_utils/sse.py) on vLLM's streams: events split anywhere across reads."""

from __future__ import annotations

import json
from typing import List, Tuple

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.sse import SSEEvent, SSEParser
from tests.unit.plugins.module_utils.endpoint_probe_helpers import ROLE, STREAM, STREAM_EVENTS, chunk, sse


def parse(reads: List[bytes]) -> Tuple[List[SSEEvent], SSEParser]:
    parser = SSEParser()
    events: List[SSEEvent] = []
    for data in reads:
        events.extend(parser.feed(data))
    return events, parser


def split_every(data: bytes, size: int) -> List[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


EXPECTED = [
    SSEEvent("message", p if isinstance(p, str) else json.dumps(p, ensure_ascii=False, separators=(",", ":")))
    for p in STREAM_EVENTS
]


def test_sse_whole_stream_in_one_read() -> None:
    events, parser = parse([STREAM])
    assert events == EXPECTED
    assert parser.pending == ""


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 101])
def test_sse_events_split_across_reads(size: int) -> None:
    events, parser = parse(split_every(STREAM, size))
    assert events == EXPECTED
    assert parser.pending == ""


def test_sse_each_read_returns_the_events_it_completes() -> None:
    parser = SSEParser()
    first, second = sse(ROLE), sse(chunk({"content": "你好"}))
    # half an event: nothing yet
    assert parser.feed(first[:30]) == []
    assert parser.pending.startswith("data: {")
    # the rest of the first, a whole second and half of the [DONE] event in one read
    done = sse("[DONE]")
    out = parser.feed(first[30:] + second + done[:8])
    assert [json.loads(e.data) for e in out] == [ROLE, chunk({"content": "你好"})]
    assert parser.feed(done[8:]) == [SSEEvent("message", "[DONE]")]


def test_sse_utf8_character_split_across_reads() -> None:
    data = 'data: {"content":"上海"}\n\n'.encode()
    cut = data.index("海".encode()) + 1  # inside the 3-byte character
    events, _ = parse([data[:cut], data[cut:]])
    assert events == [SSEEvent("message", '{"content":"上海"}')]


@pytest.mark.parametrize("sep", [b"\r\n", b"\r", b"\n"])
def test_sse_line_endings(sep: bytes) -> None:
    data = b"data: a" + sep + sep + b"data: b" + sep + sep
    assert parse([data])[0] == [SSEEvent("message", "a"), SSEEvent("message", "b")]
    # split between the CR and the LF of a CRLF: still one line end, not a blank line
    assert parse(split_every(data, 1))[0] == [SSEEvent("message", "a"), SSEEvent("message", "b")]


def test_sse_crlf_split_does_not_dispatch_early() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: one\r") == []
    assert parser.feed(b"\ndata: two\r\n") == []
    assert parser.feed(b"\r\n") == [SSEEvent("message", "one\ntwo")]


def test_sse_fields_comments_and_types() -> None:
    data = (
        b"\xef\xbb\xbf: keep-alive\n\n"  # a BOM, a comment, a blank line: no event
        b'event: error\ndata: {"message": "boom"}\nid: 7\n\n'
        b"data:no space\ndata:  two spaces\n\n"
        b"event: ping\n\n"  # no data: not dispatched, and the type is reset
        b"data\n\n"  # a field without colon: empty data line
        b"retry: 1000\nunknown: x\ndata: last\n\n"
    )
    events, _ = parse([data])
    assert events == [
        SSEEvent("error", '{"message": "boom"}', "7"),
        SSEEvent("message", "no space\n two spaces", "7"),
        SSEEvent("message", "", "7"),
        SSEEvent("message", "last", "7"),
    ]


def test_sse_incomplete_event_at_the_end_is_pending() -> None:
    events, parser = parse([sse(ROLE) + b"data: [DONE]\n"])
    assert events == [EXPECTED[0]]
    assert parser.pending == "data: [DONE]"
