"""Every image the model sees passes through the gateway: no content-part shape reaches vLLM unchecked.

vLLM reads media from shapes OpenAI does not document (no `type`, `"type": null`, a `uuid`, media keys
on other part types; see gateway/proxy/messages.py). Each shape is sent with a URL to a loopback
listener, in user and system messages, through a gateway in front of the real vLLM server: the answer
must be a 400, or an image normalized through the gateway's image path and recorded, and nothing may
ever connect to the listener unless the gateway itself was allowed to fetch from it.

Fields and message shapes the gateway refuses before looking at any part are tested in process
(tests/gateway/api/test_errors.py).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.gateway.api.test_errors import assert_openai_error
from tests.plugins.loopback import Listener
from tests.plugins.media import data_url, png_bytes

# Shapes vLLM 0.32 / 0.10.2 read as an image: the gateway must treat each as one (URL checked, so a
# loopback URL is refused as blocked) or refuse it.
IMAGE_SHAPES = {
    "no type, object": lambda u: {"image_url": {"url": u}},
    "no type, string": lambda u: {"image_url": u},
    "type null, object": lambda u: {"type": None, "image_url": {"url": u}},
    "type null, string": lambda u: {"type": None, "image_url": u},
    "image_url with uuid": lambda u: {"type": "image_url", "image_url": {"url": u}, "uuid": "cached-1"},
    "no type with uuid": lambda u: {"uuid": "cached-2", "image_url": {"url": u}},
    "input_image": lambda u: {"type": "input_image", "image_url": u},
}

# Shapes the gateway does not turn into a checked image: all refused with a 400.
REFUSED_SHAPES = {
    "text carrying image_url": lambda u: {"type": "text", "text": "hi", "image_url": {"url": u}},
    "text with uuid and image_url": lambda u: {"type": "text", "text": "hi", "uuid": "x", "image_url": u},
    "refusal carrying image_url": lambda u: {"type": "refusal", "refusal": "no", "image_url": u},
    "image_url carrying video_url": lambda u: {"type": "image_url", "image_url": {"url": u},
                                               "video_url": {"url": u}},
    "image_url carrying audio_url": lambda u: {"type": "image_url", "image_url": u, "audio_url": u},
    "audio_url": lambda u: {"type": "audio_url", "audio_url": {"url": u}},
    "audio_url, no type": lambda u: {"audio_url": {"url": u}},
    "audio_url with uuid": lambda u: {"type": "audio_url", "audio_url": u, "uuid": "a"},
    "video_url": lambda u: {"type": "video_url", "video_url": {"url": u}},
    "video_url, no type": lambda u: {"video_url": u},
    "input_audio": lambda u: {"type": "input_audio", "input_audio": {"data": u, "format": "wav"}},
    "input_audio, no type": lambda u: {"input_audio": {"data": u, "format": "wav"}},
    "image_embeds": lambda u: {"type": "image_embeds", "image_embeds": u},
    "image_embeds, no type": lambda u: {"image_embeds": u},
    "audio_embeds": lambda u: {"type": "audio_embeds", "audio_embeds": u},
    "video_embeds": lambda u: {"type": "video_embeds", "video_embeds": u},
    "prompt_embeds": lambda u: {"type": "prompt_embeds", "data": u},
    "prompt_embeds, no type": lambda u: {"prompt_embeds": u},
    "image_pil": lambda u: {"type": "image_pil", "image_pil": u},
    "file": lambda u: {"type": "file", "file": {"file_data": u, "filename": "a.pdf"}},
    "tool_reference": lambda u: {"type": "tool_reference", "name": u},
    "thinking": lambda u: {"type": "thinking", "thinking": u},
    "unknown type with image_url": lambda u: {"type": "picture", "image_url": {"url": u}},
    "numeric type": lambda u: {"type": 7, "image_url": u},
    "uuid alone": lambda u: {"uuid": "cached-3"},
    "image_url by uuid, no url": lambda u: {"type": "image_url", "image_url": None, "uuid": "cached-4"},
    "image_url object without url": lambda u: {"type": "image_url", "image_url": {"uuid": "c"}, "uuid": "c"},
    "no type, no media": lambda u: {"text": u},
    "a list": lambda u: [{"type": "image_url", "image_url": u}],
    # vLLM and OpenAI refuse a string here (only an object with a `url`): so does the gateway.
    "image_url string": lambda u: {"type": "image_url", "image_url": u},
    "image_url string with uuid": lambda u: {"type": "image_url", "image_url": u, "uuid": "cached-6"},
}


def body_with(part, role: str, model: str) -> dict:
    question = {"role": "user", "content": [{"type": "text", "text": "What is shown?"}]}
    if role == "system":
        return {"model": model, "max_tokens": 2,
                "messages": [{"role": "system", "content": [part]}, question]}
    return {"model": model, "max_tokens": 2,
            "messages": [{"role": role, "content": [part, {"type": "text", "text": "What is shown?"}]}]}


def settle(listener: Listener) -> int:
    time.sleep(0.3)  # a connection vLLM started would have arrived by now (it fetches before answering)
    return len(listener.connections)


@pytest.mark.parametrize("role", ["user", "system"])
@pytest.mark.parametrize("shape", sorted(IMAGE_SHAPES))
def test_image_shapes_go_through_the_image_path(shared_gateway, vllm_server, listener, shape, role):
    part = IMAGE_SHAPES[shape](listener.url())
    response = httpx.post(shared_gateway.url + "/v1/chat/completions",
                          json=body_with(part, role, vllm_server.model), timeout=60)
    # Checked like any image URL: loopback is not public, so the gateway refuses it.
    error = assert_openai_error(response, 400, "image_url_blocked")
    assert error["param"].startswith("messages[0].content[0].image_url")
    assert settle(listener) == 0


@pytest.mark.parametrize("role", ["user", "system"])
@pytest.mark.parametrize("shape", sorted(REFUSED_SHAPES))
def test_other_media_shapes_are_refused(shared_gateway, vllm_server, listener, shape, role):
    part = REFUSED_SHAPES[shape](listener.url())
    response = httpx.post(shared_gateway.url + "/v1/chat/completions",
                          json=body_with(part, role, vllm_server.model), timeout=60)
    error = assert_openai_error(response, 400)
    assert error["code"] in {"invalid_content_part", "unsupported_content_part", "invalid_image_url"}
    assert error["param"].startswith("messages[0].content[0]")
    assert "127.0.0.1" not in error["message"]
    assert settle(listener) == 0


@pytest.mark.parametrize("shape", ["no type, object", "type null, string", "image_url with uuid",
                                   "input_image"])
def test_image_shapes_are_normalized_and_recorded(shared_gateway, vllm_server, shape):
    image = png_bytes(color=(33, 66, 99))
    part = IMAGE_SHAPES[shape](data_url(image))
    response = httpx.post(shared_gateway.url + "/v1/chat/completions",
                          json=body_with(part, "user", vllm_server.model), timeout=60)
    assert response.status_code == 200, response.text
    exchange = shared_gateway.journal().get(response.headers["x-visionrag-exchange-id"])
    assert exchange is not None and len(exchange.images) == 1
    assert exchange.images[0].mime == "image/png"


def test_allowed_fetch_is_the_gateways_own_and_recorded(start_gateway, vllm_server, listener):
    """With the listener allow-listed, exactly one connection arrives: the gateway's fetch, not vLLM's."""
    gateway = start_gateway(vllm_server.base_url, fetch_allow_hosts=f"127.0.0.1:{listener.port}")
    url = listener.url()
    part = {"type": None, "image_url": {"url": url}, "uuid": "cached-5"}
    response = httpx.post(gateway.url + "/v1/chat/completions",
                          json=body_with(part, "user", vllm_server.model), timeout=60)
    assert response.status_code == 200, response.text
    assert settle(listener) == 1
    exchange = gateway.journal().get(response.headers["x-visionrag-exchange-id"])
    assert [image.source_url for image in exchange.images] == [url]


def test_string_parts_become_text(shared_gateway, vllm_server):
    body = {"model": vllm_server.model, "max_tokens": 2,
            "messages": [{"role": "user", "content": ["plain string part"]}]}
    response = httpx.post(shared_gateway.url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    exchange = shared_gateway.journal().get(response.headers["x-visionrag-exchange-id"])
    assert exchange.question == "plain string part"


@pytest.mark.parametrize("shape", ["no type, object", "image_url with uuid"])
def test_tokenize_checks_images_too(shared_gateway, vllm_server, listener, shape):
    """vLLM's /tokenize renders chat messages, fetching their media: the gateway checks them first."""
    body = body_with(IMAGE_SHAPES[shape](listener.url()), "user", vllm_server.model)
    del body["max_tokens"]
    response = httpx.post(shared_gateway.url + "/tokenize", json=body, timeout=60)
    assert_openai_error(response, 400, "image_url_blocked")
    body = body_with(REFUSED_SHAPES["video_url"](listener.url()), "user", vllm_server.model)
    response = httpx.post(shared_gateway.url + "/tokenize", json=body, timeout=60)
    assert_openai_error(response, 400, "unsupported_content_part")
    assert settle(listener) == 0
    body = body_with(IMAGE_SHAPES[shape](data_url(png_bytes())), "user", vllm_server.model)
    del body["max_tokens"]
    tokens = httpx.post(shared_gateway.url + "/tokenize", json=body, timeout=60)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["count"] > 16  # the image's tokens are in the prompt


def test_image_url_string_is_refused_as_vllm_refuses_it(shared_gateway, vllm_server):
    """A client that works through the gateway must work against the API it imitates: vLLM's own part
    type takes an object with a `url` (pydantic: "Input should be a valid dictionary"), never a string."""
    body = body_with({"type": "image_url", "image_url": data_url(png_bytes())}, "user", vllm_server.model)
    direct = httpx.post(vllm_server.base_url + "/chat/completions", json=body, timeout=60)
    assert direct.status_code == 400, direct.text
    assert "valid dictionary" in direct.text
    error = assert_openai_error(httpx.post(shared_gateway.url + "/v1/chat/completions", json=body, timeout=60),
                                400, "invalid_image_url")
    assert error["param"] == "messages[0].content[0].image_url"
    assert "object with a `url`" in error["message"] and "not a string" in error["message"]
