"""Server-sent events from the upstream: split into events, relayed as they come, read on the way by.

The gateway forwards the upstream's bytes event by event (never rewritten) and, on the side,
assembles the answer text, finish reason and usage for the journal.
"""

from __future__ import annotations

from typing import Any

import orjson

_DONE = b"[DONE]"


class EventSplitter:
    """Cuts a byte stream into complete SSE events (each ending with its blank line)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        events = []
        start = 0
        # Each separator is searched for again only once passed: an upstream that ends its events with
        # LF alone would otherwise have the rest of the buffer scanned for CRLF after every event.
        lf = buffer.find(b"\n\n")
        crlf = buffer.find(b"\r\n\r\n")
        while lf >= 0 or crlf >= 0:
            if crlf >= 0 and (lf < 0 or crlf < lf):
                end = crlf + 4
            else:
                end = lf + 2
            events.append(buffer[start:end])
            start = end
            if 0 <= lf < start:
                lf = buffer.find(b"\n\n", start)
            if 0 <= crlf < start:
                crlf = buffer.find(b"\r\n\r\n", start)
        self._buffer = buffer[start:]
        return events

    def rest(self) -> bytes:
        """Whatever trailed the last complete event when the stream ended."""
        rest, self._buffer = self._buffer, b""
        return rest


def _data_of(event: bytes) -> bytes | None:
    if event.startswith(b"data:"):  # the usual event: its first line is its data
        end = event.find(b"\n")
        line = event if end < 0 else event[:end]
        cr = line.find(b"\r")
        return (line if cr < 0 else line[:cr])[5:].strip()
    for line in event.splitlines():
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


class StreamAssembler:
    """Accumulates choice 0's text, its finish reason and the usage from completion chunk events."""

    def __init__(self, strip_usage_chunk: bool) -> None:
        # True when the gateway asked for usage on the client's behalf: the client did not ask for
        # that chunk, so it is kept out of what the client receives.
        self._strip_usage_chunk = strip_usage_chunk
        self._parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.done = False

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def observe(self, event: bytes) -> bool:
        """Read one event; return whether it goes on to the client."""
        data = _data_of(event)
        if data is None:
            return True
        if data == _DONE:
            self.done = True
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(chunk, dict):
            return True
        self.model = self.model or chunk.get("model")
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        choices = chunk.get("choices") or []
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            # chat.completion.chunk carries `delta.content`; a text_completion chunk carries `text`.
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if content and isinstance(content, str):
                self._parts.append(content)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return not (self._strip_usage_chunk and usage and not choices)
