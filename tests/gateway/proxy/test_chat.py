"""Chat completions through the gateway, against the real vLLM server, with the real openai SDK: what
vLLM answers reaches the client and the journal. The gateway's own part (streams, usage, fetched images,
what is forwarded) is tested in process, in test_relay.py."""

import hashlib

import httpx

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
