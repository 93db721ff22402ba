"""Chat completions through the gateway, against the real vLLM server, with the real openai SDK."""

import hashlib

import httpx
import pytest

from tests.plugins.media import data_url, image_message, png_bytes


def test_image_as_data_url_is_answered_and_recorded(shared_gateway, vllm_server):
    image = png_bytes(color=(10, 120, 200))
    raw = shared_gateway.client().chat.completions.with_raw_response.create(
        model=vllm_server.model, messages=image_message(data_url(image)), max_tokens=8, temperature=0,
        user="alice",
    )
    completion = raw.parse()
    exchange_id = raw.headers["x-visionrag-exchange-id"]

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 8
    assert completion.choices[0].message.content

    exchange = shared_gateway.journal().get(exchange_id)
    assert exchange.status == "complete" and exchange.endpoint == "chat.completions"
    assert exchange.answer == completion.choices[0].message.content
    assert exchange.usage == completion.usage.model_dump(exclude_none=True) | exchange.usage
    assert exchange.usage["completion_tokens"] == 8
    assert exchange.finish_reason == "length"
    assert exchange.model == vllm_server.model
    assert exchange.user == "alice" and exchange.tenant == "default"
    assert exchange.question == "What does this diagram show?"
    assert [(i.sha256, i.mime, i.source_url) for i in exchange.images] == [
        (hashlib.sha256(image).hexdigest(), "image/png", None)]
    stored = shared_gateway.data_dir / "images" / exchange.images[0].sha256[:2] / exchange.images[0].sha256
    assert stored.read_bytes() == image
    assert exchange.latency_ms > 0


def test_response_is_what_vllm_itself_returns(shared_gateway, vllm_server):
    """Request fields the gateway doesn't use (logprobs, vLLM's top_k) and vLLM's extra response fields
    pass through untouched."""
    body = {"model": vllm_server.model, "messages": image_message(data_url(png_bytes())), "max_tokens": 6,
            "temperature": 0, "logprobs": True, "top_logprobs": 2, "top_k": 5}
    direct = httpx.post(vllm_server.base_url + "/chat/completions", json=body, timeout=60).json()
    via = httpx.post(shared_gateway.url + "/v1/chat/completions", json=body, timeout=60).json()

    assert via.keys() == direct.keys()
    assert via["choices"][0].keys() == direct["choices"][0].keys()
    assert via["choices"][0]["message"] == direct["choices"][0]["message"]
    assert via["usage"] == direct["usage"]
    assert len(via["choices"][0]["logprobs"]["content"]) == 6
    assert len(via["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2


def test_text_only_chat_is_recorded_without_images(shared_gateway, vllm_server):
    raw = shared_gateway.client().chat.completions.with_raw_response.create(
        model=vllm_server.model, messages=[{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Name a database."}],
        max_tokens=4, temperature=0)
    exchange = shared_gateway.journal().get(raw.headers["x-visionrag-exchange-id"])
    assert exchange.images == []
    assert exchange.messages == [{"role": "system", "text": "Be brief."},
                                 {"role": "user", "text": "Name a database."}]


def test_http_image_url_is_fetched_by_the_gateway(start_gateway, vllm_server, image_server):
    image = png_bytes(color=(0, 200, 0))
    image_server.routes["/er-diagram.png"] = (200, {"Content-Type": "image/png"}, image)
    gateway = start_gateway(vllm_server.base_url, fetch_allow_hosts=image_server.hostport)
    url = image_server.url("/er-diagram.png")

    raw = gateway.client().chat.completions.with_raw_response.create(
        model=vllm_server.model, messages=image_message(url), max_tokens=4)
    assert raw.parse().choices[0].message.content

    exchange = gateway.journal().get(raw.headers["x-visionrag-exchange-id"])
    assert exchange.images[0].source_url == url
    assert exchange.images[0].sha256 == hashlib.sha256(image).hexdigest()


@pytest.mark.parametrize("include_usage", [True, False])
def test_streaming_is_relayed_and_recorded(shared_gateway, vllm_server, include_usage):
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    raw = shared_gateway.client().chat.completions.with_raw_response.create(
        model=vllm_server.model, messages=image_message(data_url(png_bytes())), max_tokens=10,
        temperature=0, stream=True, **options)
    chunks = list(raw.parse())

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage_chunks = [c for c in chunks if c.usage]
    assert finish == ["length"]
    # The client gets the usage chunk only if it asked; the journal gets usage either way.
    assert len(usage_chunks) == (1 if include_usage else 0)
    if include_usage:
        assert usage_chunks[0].choices == [] and usage_chunks[0].usage.completion_tokens == 10

    exchange = shared_gateway.journal().get(raw.headers["x-visionrag-exchange-id"])
    assert exchange.status == "complete"
    assert exchange.answer == text
    assert exchange.finish_reason == "length"
    assert exchange.usage["completion_tokens"] == 10


def test_stream_matches_non_stream(shared_gateway, vllm_server):
    client = shared_gateway.client()
    messages = image_message(data_url(png_bytes(color=(90, 90, 0))))
    whole = client.chat.completions.create(model=vllm_server.model, messages=messages, max_tokens=8,
                                           temperature=0)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=vllm_server.model, messages=messages, max_tokens=8, temperature=0, stream=True) if c.choices)
    assert streamed == whole.choices[0].message.content


def test_models_pass_through(shared_gateway, vllm_server):
    via = httpx.get(shared_gateway.url + "/v1/models").json()
    direct = httpx.get(vllm_server.base_url + "/models").json()
    assert [m["id"] for m in via["data"]] == [m["id"] for m in direct["data"]] == [vllm_server.model]


def test_predict_keeps_the_seed_service_shape(shared_gateway, vllm_server):
    image = png_bytes(color=(1, 2, 3))
    response = httpx.post(shared_gateway.url + "/predict", timeout=60, json={
        "image_url": data_url(image), "user_query": "Which tables are shown?", "max_tokens": 5})
    assert response.status_code == 200
    assert list(response.json()) == ["output"] and response.json()["output"]

    exchange = shared_gateway.journal().get(response.headers["x-visionrag-exchange-id"])
    assert exchange.endpoint == "predict"
    assert exchange.answer == response.json()["output"]
    assert exchange.question == "Which tables are shown?"
    assert exchange.images[0].sha256 == hashlib.sha256(image).hexdigest()
    assert exchange.usage["completion_tokens"] == 5


def test_health_and_ready(shared_gateway):
    assert httpx.get(shared_gateway.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(shared_gateway.url + "/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
