"""Chats and completions relayed and recorded: the gateway's own part, in process (tests.gateway.inprocess).

The upstream is the recording one, a double for the model server: what it received is what the
gateway forwarded, and its answers are OpenAI-shaped like vLLM's. What vLLM itself returns through the
gateway (logprobs, greedy text, the model list, media it accepts) is in test_chat.py and
test_completions.py, against the real vLLM.
"""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from tests.gateway.inprocess import MODEL, Edge, Reply, on_edge
from tests.plugins.media import data_url, image_message, png_bytes


def test_text_only_chat_is_recorded_without_images(tmp_path):
    async def scenario(gateway: Edge):
        async with gateway.openai() as client:
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Name a database."}],
                max_tokens=4, temperature=0)
        return gateway.journal().get(raw.headers["x-visionrag-exchange-id"])

    exchange = on_edge(tmp_path, scenario)
    assert exchange.images == []
    assert exchange.messages == [{"role": "system", "text": "Be brief."},
                                 {"role": "user", "text": "Name a database."}]


def test_http_image_url_is_fetched_by_the_gateway(tmp_path, image_server):
    image = png_bytes(color=(0, 200, 0))
    image_server.routes["/er-diagram.png"] = (200, {"Content-Type": "image/png"}, image)
    url = image_server.url("/er-diagram.png")

    async def scenario(gateway: Edge):
        async with gateway.openai() as client:
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=image_message(url), max_tokens=4)
        return raw, gateway.journal()

    raw, journal = on_edge(tmp_path, scenario, fetch_allow_hosts=image_server.hostport)
    assert raw.parse().choices[0].message.content

    exchange = journal.get(raw.headers["x-visionrag-exchange-id"])
    assert exchange.images[0].source_url == url
    assert exchange.images[0].sha256 == hashlib.sha256(image).hexdigest()


@pytest.mark.parametrize("include_usage", [True, False])
def test_streaming_is_relayed_and_recorded(tmp_path, include_usage):
    options = {"stream_options": {"include_usage": True}} if include_usage else {}

    async def scenario(gateway: Edge):
        async with gateway.openai() as client:
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=image_message(data_url(png_bytes())), max_tokens=10,
                temperature=0, stream=True, **options)
            chunks = [chunk async for chunk in raw.parse()]
        return raw, chunks, gateway.journal()

    raw, chunks, journal = on_edge(tmp_path, scenario)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage_chunks = [c for c in chunks if c.usage]
    assert finish == ["length"]
    # The client gets the usage chunk only if it asked; the journal gets usage either way.
    assert len(usage_chunks) == (1 if include_usage else 0)
    if include_usage:
        assert usage_chunks[0].choices == [] and usage_chunks[0].usage.completion_tokens == 10

    exchange = journal.get(raw.headers["x-visionrag-exchange-id"])
    assert exchange.status == "complete"
    assert exchange.answer == text
    assert exchange.finish_reason == "length"
    assert exchange.usage["completion_tokens"] == 10


def test_streamed_text_completion_is_recorded(tmp_path):
    async def scenario(gateway: Edge):
        async with gateway.openai() as client, client.completions.with_streaming_response.create(
                model=MODEL, prompt=["first", "second"], max_tokens=6, stream=True) as response:
            exchange_id = response.headers["x-visionrag-exchange-id"]
            chunks = [chunk async for chunk in await response.parse()]
        return exchange_id, chunks, gateway.journal()

    exchange_id, chunks, journal = on_edge(tmp_path, scenario)
    text = "".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == 0)
    assert all(c.usage is None for c in chunks)  # the gateway's own usage request stays hidden
    exchange = journal.get(exchange_id)
    assert exchange.status == "complete" and exchange.answer == text
    assert exchange.question == "first\nsecond"
    assert exchange.usage and exchange.usage["completion_tokens"] > 0


# ---- what the upstream receives ---------------------------------------------------------------------


def test_the_upstream_gets_the_clients_fields_but_not_the_gateways_nor_the_clients_key(tmp_path):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "user": "ana",
            "temperature": 0.5, "top_k": 5, "visionrag": {"memory": False}}

    async def scenario(gateway: Edge):
        response = await gateway.client.post("/v1/chat/completions", json=body,
                                             headers={"Authorization": "Bearer sk-acme", "X-Trace": "t-1"})
        return response, gateway.upstream.requests("/v1/chat/completions")

    response, (forwarded,) = on_edge(tmp_path, scenario, api_keys="acme:sk-acme", upstream_api_key="sk-upstream")
    assert response.status_code == 200, response.text
    assert response.headers["x-visionrag-memory"] == "off"
    assert forwarded.json() == {k: v for k, v in body.items() if k != "visionrag"}
    assert forwarded.headers["Authorization"] == "Bearer sk-upstream"  # the deployment's, never the client's
    assert "X-Trace" not in forwarded.headers


def test_a_stream_asks_the_upstream_for_usage_whether_or_not_the_client_did(tmp_path):
    async def scenario(gateway: Edge):
        for options in ({}, {"stream_options": {"include_usage": False}}):
            response = await gateway.client.post("/v1/chat/completions", json={
                "model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}], **options})
            assert response.status_code == 200, response.text
            assert b'"usage"' not in response.content and response.content.endswith(b"data: [DONE]\n\n")
        return gateway.upstream.requests("/v1/chat/completions")

    forwarded = on_edge(tmp_path, scenario)
    assert [r.json()["stream_options"] for r in forwarded] == [{"include_usage": True}] * 2


def test_images_reach_the_upstream_as_the_bytes_the_gateway_checked(tmp_path, image_server):
    """Whatever shape and source an image came in, the model server is sent a data: URL of the bytes the
    gateway fetched and verified (so it never fetches anything itself)."""
    fetched, inline = png_bytes(color=(0, 200, 0)), png_bytes(color=(9, 9, 9))
    image_server.routes["/a.png"] = (200, {"Content-Type": "image/png"}, fetched)
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": image_server.url("/a.png"), "detail": "high"}},
        {"image_url": {"url": data_url(inline)}},  # vLLM's untyped shape
        "and these?",
    ]}]

    async def scenario(gateway: Edge):
        response = await gateway.client.post("/v1/chat/completions", json={"model": MODEL, "messages": messages})
        return response, gateway.upstream.requests("/v1/chat/completions")

    response, (forwarded,) = on_edge(tmp_path, scenario, fetch_allow_hosts=image_server.hostport)
    assert response.status_code == 200, response.text
    parts = forwarded.json()["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert parts[2] == {"type": "text", "text": "and these?"}
    urls = [p["image_url"]["url"] for p in parts[:2]]
    assert all(url.startswith("data:image/png;base64,") for url in urls)
    assert [base64.b64decode(url.split(",", 1)[1]) for url in urls] == [fetched, inline]


def test_the_upstreams_own_refusal_reaches_the_client_as_it_is(tmp_path):
    refusal = {"error": {"message": "This model's maximum context length is 2048 tokens.",
                         "type": "BadRequestError", "param": None, "code": 400}}

    async def scenario(gateway: Edge):
        gateway.upstream.reply("/v1/chat/completions", Reply(status=400, json=refusal))
        return await gateway.client.post("/v1/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}]})

    response = on_edge(tmp_path, scenario)
    assert response.status_code == 400
    assert orjson.loads(response.content) == refusal
