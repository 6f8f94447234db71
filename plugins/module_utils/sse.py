# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server-sent events as vLLM streams them: an incremental parser and the error-event test.

Pure and standard-library only, because several programs use it: the ``endpoint_probe`` module
(on managed nodes, through Ansible's module_utils), the PD proxy (in the vLLM-Ascend image,
where ``proxy/ascend_pd_proxy/sse.py`` is a symlink to this file), the simulator's
``vllm bench serve`` (``sim/ascend_sim/sse.py``, likewise) and the tests and benchmarks.
"""

from __future__ import annotations

import re
from typing import Any, List, NamedTuple, Optional

_LINE_END_RE = re.compile(rb"\r\n|\r|\n")


class SSEEvent(NamedTuple):
    """One dispatched event: its type (``message`` unless an ``event:`` line said otherwise),
    its data (the ``data:`` lines joined by newlines) and its ``id:`` (or ``None``)."""

    event: str
    data: str
    id: Optional[str] = None


class SSEParser:
    """Incremental server-sent-events parser (the WHATWG ``text/event-stream`` rules).

    ``feed()`` takes the bytes of one read, whatever their boundaries, and returns the events
    completed by them: an event split across reads is returned once its blank line arrives,
    several events in one read all at once. Lines end with CRLF, LF or CR (a CR at the end
    of a read and the LF starting the next are one line end); ``:`` lines are comments; a
    field's value loses one leading space; an event without data lines is not dispatched.
    Lines are split on bytes and decoded whole, so a UTF-8 character split across reads is
    fine. ``pending`` is the text of an event not completed yet (``""`` if none): at the end
    of the stream such an event is incomplete and, per the standard, dropped.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._skip_lf = False
        self._first_line = True
        self._data: List[str] = []
        self._event = ""
        self._id: Optional[str] = None
        self._lines: List[str] = []  # the current event's lines as received, for ``pending``

    @property
    def pending(self) -> str:
        return "\n".join([*self._lines, self._buffer.decode("utf-8", errors="replace")]).strip("\n")

    def feed(self, chunk: bytes) -> List[SSEEvent]:
        if self._skip_lf and chunk:
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
            self._skip_lf = False
        buffer = self._buffer + chunk
        events: List[SSEEvent] = []
        pos = 0
        for match in _LINE_END_RE.finditer(buffer):
            if match.group() == b"\r" and match.end() == len(buffer):
                self._skip_lf = True  # the LF of this CRLF may be in the next read
            event = self._line(buffer[pos : match.start()])
            if event is not None:
                events.append(event)
            pos = match.end()
        self._buffer = buffer[pos:]
        return events

    def _line(self, raw: bytes) -> Optional[SSEEvent]:
        line = raw.decode("utf-8", errors="replace")
        if self._first_line:
            self._first_line = False
            line = line.lstrip("\ufeff")
        if not line:
            return self._dispatch()
        self._lines.append(line)
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> Optional[SSEEvent]:
        data, event, event_id = self._data, self._event, self._id
        self._data, self._event, self._lines = [], "", []
        if not data:
            return None
        return SSEEvent(event or "message", "\n".join(data), event_id)


def stream_error(obj: Any) -> Optional[str]:
    """The message of an error event's JSON (vLLM: ``{"error": {...}}``), else ``None``."""
    if not isinstance(obj, dict):
        return None
    if "error" in obj:
        err = obj["error"]
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    if obj.get("object") == "error":  # older vLLM: the ErrorResponse itself
        return str(obj.get("message") or obj)
    return None
