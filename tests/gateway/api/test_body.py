"""Reading bodies under the limit (gateway.api.body), on a bare ASGI request: no app, no model."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from gateway.api.body import read_json
from gateway.errors import GatewayError


def request(chunks: list[bytes], headers: dict[str, str] | None = None) -> tuple[Request, list[bytes]]:
    """A request whose body arrives in `chunks`; the returned list holds the chunks still unread."""
    pending = list(chunks)

    async def receive() -> dict:
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw}, receive), pending


def read(req: Request, limit: int):
    return asyncio.run(read_json(req, limit))


def test_a_chunked_body_is_read_and_parsed() -> None:
    req, _ = request([b'{"a": ', b"[1, 2]}"])
    assert read(req, 100) == {"a": [1, 2]}


def test_a_chunked_body_over_the_limit_stops_being_read() -> None:
    req, unread = request([b"x" * 60, b"x" * 60, b"x" * 60, b"x" * 60])
    with pytest.raises(GatewayError) as refused:
        read(req, 100)
    assert (refused.value.status, refused.value.code) == (413, "request_too_large")
    assert len(unread) == 2


@pytest.mark.parametrize(("length", "status", "code"), [("abc", 400, "invalid_request"),
                                                         ("101", 413, "request_too_large")])
def test_a_declared_length_is_checked_before_reading(length: str, status: int, code: str) -> None:
    req, unread = request([b"{}"], {"content-length": length})
    with pytest.raises(GatewayError) as refused:
        read(req, 100)
    assert (refused.value.status, refused.value.code) == (status, code) and unread == [b"{}"]


def test_invalid_json_says_so() -> None:
    req, _ = request([b"{nope"], {"content-length": "5"})
    with pytest.raises(GatewayError) as refused:
        read(req, 100)
    assert refused.value.code == "invalid_json" and refused.value.message.startswith("request body is not valid JSON")
