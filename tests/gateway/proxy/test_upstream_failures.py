"""The model server's own failures reach clients as gateway errors that say what failed, not its internals."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.proxy.test_errors import assert_openai_error


@pytest.mark.parametrize("status, expected, code", [(500, 502, "upstream_error"),
                                                    (503, 503, "upstream_unavailable")])
def test_upstream_5xx_hides_its_internals(start_gateway, fake_upstream, status, expected, code):
    upstream = fake_upstream(None, "--fail-with", str(status))  # double: vLLM fails only on inputs we block
    gateway = start_gateway(upstream.base_url)
    for stream in (False, True):
        response = httpx.post(gateway.url + "/v1/chat/completions", timeout=30, json={
            "model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        error = assert_openai_error(response, expected, code)
        assert "NoneType" not in error["message"] and "chat_utils" not in error["message"]
        if expected == 503:  # overloaded or restarting: the client is told when to retry
            assert response.headers["Retry-After"] == "1"
    assert "NoneType" in gateway.log_tail()  # the operator still sees what happened


def test_mid_stream_break_says_what_failed_not_how(start_gateway, fake_upstream):
    upstream = fake_upstream(None, "--chunks", "32", "--break-after", "5")  # double: a crash mid-answer
    gateway = start_gateway(upstream.base_url)
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=30, json={
            "model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as response:
        body = b"".join(response.iter_bytes())
    last = body.strip().split(b"\n\n")[-1]
    assert b"upstream_error" in last and b"stream broke off" in last
    assert b"Payload" not in last and b"Error:" not in last and b"127.0.0.1" not in last
