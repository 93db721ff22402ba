"""The model server's own answers to bad requests reach clients as they are; its failures (5xx, a
stall, a stream broken off) as gateway errors that say what failed, not its internals.

The 4xx are the real vLLM's; the failures are the scripted upstream's (tests.plugins.fake_upstream),
since vLLM fails only on inputs the gateway blocks. The gateway's own refusals are in
tests/gateway/api/test_errors.py.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.gateway.api.test_errors import assert_openai_error
from tests.plugins.media import data_url, png_bytes


def post_chat(gateway, body, **kwargs) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=60, **kwargs)


def test_unknown_model_is_vllms_own_404(shared_gateway, vllm_server):
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    direct = httpx.post(vllm_server.base_url + "/chat/completions", json=body, timeout=60)
    via = post_chat(shared_gateway, body)
    assert via.status_code == direct.status_code == 404
    assert via.json() == direct.json()
    with pytest.raises(openai.NotFoundError):
        shared_gateway.client().chat.completions.create(**body)


def test_more_images_than_the_model_allows_is_vllms_400(shared_gateway, vllm_server):
    parts = [{"type": "image_url", "image_url": {"url": data_url(png_bytes(color=c))}}
             for c in ((1, 1, 1), (2, 2, 2))]
    response = post_chat(shared_gateway, {"model": vllm_server.model, "max_tokens": 2,
                                          "messages": [{"role": "user", "content": parts}]})
    assert response.status_code == 400
    assert "At most 1 image" in response.text


def test_stalled_upstream_is_504(start_gateway, fake_upstream):
    upstream = fake_upstream(None, "--stall", "5")  # double: vLLM can't be told to hang
    gateway = start_gateway(upstream.base_url, upstream_read_timeout_s=0.5)
    response = post_chat(gateway, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(response, 504, "upstream_timeout")


def test_upstream_dying_mid_stream_is_recorded_incomplete(start_gateway, fake_upstream):
    upstream = fake_upstream(None, "--chunks", "32", "--break-after", "5")  # double: a crash mid-answer
    gateway = start_gateway(upstream.base_url)
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=30, json={
            "model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as response:
        exchange_id = response.headers["x-visionrag-exchange-id"]
        body = b"".join(response.iter_bytes())
    assert b"upstream_error" in body  # the stream ends with an error event, not silently
    exchange = gateway.journal().get(exchange_id)
    assert exchange.status == "incomplete"
    assert exchange.answer == "tok0 tok1 tok2 tok3 tok4 "




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
