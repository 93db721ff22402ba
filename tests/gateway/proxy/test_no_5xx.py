"""Nothing a client sends yields a 5xx, from the gateway or from vLLM behind it.

Odd but well-formed requests are sent through a gateway in front of the real vLLM server; each must be
answered (200) or refused with a 4xx in OpenAI's shape. Found by probing vLLM 0.32 directly: a typeless
image part crashed it with a 500 and left its multimodal cache inconsistent, so a later, valid request
with the same image failed too.

Malformed bodies and content parts the gateway refuses itself, before anything reaches vLLM, are
tested in process: tests/gateway/api/test_bodies.py and test_errors.py.
"""

from __future__ import annotations

import httpx
import pytest

from tests.plugins.media import data_url, png_bytes

IMAGE = data_url(png_bytes(color=(70, 80, 90)))


def user(content) -> list[dict]:
    return [{"role": "user", "content": content}]


CHAT_CASES = {
    "typeless image part": {"messages": user([{"type": None, "image_url": IMAGE}])},
    "image in an assistant message": {"messages": [
        {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": IMAGE}}]},
        {"role": "user", "content": "and now?"}]},
    "image in a tool message": {"messages": [
        {"role": "tool", "tool_call_id": "1", "content": [{"type": "image_url", "image_url": {"url": IMAGE}}]}]},
    "n=0": {"messages": user("hi"), "n": 0},
    "max_tokens over the context": {"messages": user("hi"), "max_tokens": 10**12},
    "temperature as text": {"messages": user("hi"), "temperature": "hot"},
    "out-of-vocabulary logit_bias": {"messages": user("hi"), "logit_bias": {"99999999": 5}},
    "too many logprobs": {"messages": user("hi"), "logprobs": True, "top_logprobs": 1000},
    "invalid JSON schema": {"messages": user("hi"), "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
    "invalid regex": {"messages": user("hi"), "structured_outputs": {"regex": "(a"}},
    "tool_choice without parser": {"messages": user("hi"), "tools": [
        {"type": "function", "function": {"name": "f"}}], "tool_choice": "auto"},
    "unknown role": {"messages": [{"role": "wizard", "content": "hi"}]},
    "null user content": {"messages": [{"role": "user", "content": None}]},
    "empty content list": {"messages": user([])},
    "text part null": {"messages": user([{"type": "text", "text": None}])},
    "image detail high": {"messages": user([{"type": "image_url", "image_url": {"url": IMAGE, "detail": "high"}}])},
    "mime that lies": {"messages": user([{"type": "image_url", "image_url": {
        "url": IMAGE.replace("image/png", "image/gif")}}])},
    "prompt over the context": {"messages": user("hi " * 5000)},
    "huge seed": {"messages": user("hi"), "seed": 2**70},
    "chat_template_kwargs clash": {"messages": user("hi"), "chat_template_kwargs": {"messages": 5}},
    "stream_options without stream": {"messages": user("hi"), "stream_options": {"include_usage": True}},
    "bad tool-call arguments": {"messages": [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]},
        {"role": "user", "content": "hi"}]},
    "stream with n=2": {"messages": user("hi"), "stream": True, "n": 2},
    "part type an object": {"messages": user([{"type": {}, "text": "hi"}])},
    "part type a list": {"messages": user([{"type": [None], "text": "hi"}])},
    "image part type a list": {"messages": user([{"type": ["image_url"], "image_url": {"url": IMAGE}}])},
    "image_url a string": {"messages": user([{"type": "image_url", "image_url": IMAGE}])},
}

@pytest.mark.parametrize("case", sorted(CHAT_CASES))
def test_odd_chat_requests_are_never_5xx(shared_gateway, vllm_server, case):
    body = {"model": vllm_server.model, "max_tokens": 2, **CHAT_CASES[case]}
    response = httpx.post(shared_gateway.url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert {"message", "type", "param", "code"} <= response.json()["error"].keys()
