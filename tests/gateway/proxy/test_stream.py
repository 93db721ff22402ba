"""SSE splitting and reading on the way by (gateway.proxy.stream), without a model server."""

from __future__ import annotations

import orjson
import pytest

from gateway.proxy.stream import EventSplitter, StreamAssembler


def chunk(content: str | None = None, finish: str | None = None, usage: dict | None = None,
          choices: bool = True) -> bytes:
    body: dict = {"model": "m", "choices": []}
    if choices:
        body["choices"] = [{"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}]
    if usage:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


STREAM = chunk("Hel") + chunk("lo") + chunk(finish="stop") + chunk(usage={"total_tokens": 3}, choices=False) \
    + b"data: [DONE]\n\n"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_events_are_whole_and_bytes_unchanged_whatever_the_chunking(size: int) -> None:
    splitter = EventSplitter()
    events = [e for i in range(0, len(STREAM), size) for e in splitter.feed(STREAM[i:i + size])]
    assert b"".join(events) == STREAM and splitter.rest() == b""
    assert len(events) == 5 and all(e.endswith(b"\n\n") for e in events)


def test_crlf_events_and_a_trailing_partial_event() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\r\n\r\ndata: b\n\ndata: c") == [b"data: a\r\n\r\n", b"data: b\n\n"]
    assert splitter.rest() == b"data: c" and splitter.rest() == b""


def test_assembler_reads_text_finish_usage_and_done() -> None:
    splitter, assembler = EventSplitter(), StreamAssembler(strip_usage_chunk=False)
    forwarded = [e for e in splitter.feed(STREAM) if assembler.observe(e)]
    assert b"".join(forwarded) == STREAM
    assert (assembler.text, assembler.finish_reason, assembler.model) == ("Hello", "stop", "m")
    assert assembler.usage == {"total_tokens": 3} and assembler.done


def test_a_usage_chunk_the_client_did_not_ask_for_is_kept_from_it() -> None:
    splitter, assembler = EventSplitter(), StreamAssembler(strip_usage_chunk=True)
    forwarded = [e for e in splitter.feed(STREAM) if assembler.observe(e)]
    assert b"usage" not in b"".join(forwarded) and assembler.usage == {"total_tokens": 3}
    assert forwarded[-1] == b"data: [DONE]\n\n"


def test_events_that_are_not_json_chunks_pass_untouched() -> None:
    assembler = StreamAssembler(strip_usage_chunk=True)
    for event in (b": keep-alive\n\n", b"data: not json\n\n", b"data: [1, 2]\n\n", b"event: x\n\n"):
        assert assembler.observe(event)
    assert assembler.text == "" and not assembler.done
