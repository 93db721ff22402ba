"""Every way a request can go wrong gives an OpenAI-shaped error with the right status, never a 500.

The gateway's own refusals, in process (tests.gateway.inprocess): the app in front of a recording
upstream (a double for the model server) that none of these requests should need. The model server's
own errors, passed through or hidden, are in tests/gateway/proxy/test_upstream_failures.py.
"""

import asyncio
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.gateway.inprocess import MODEL, Edge, edge, on_edge
from tests.plugins.gateway_server import free_port
from tests.plugins.media import data_url, image_message, png_bytes


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert {"type", "param", "code"} <= error.keys()
    if code:
        assert error["code"] == code
    return error


async def post_chat(gateway: Edge, body, **kwargs) -> httpx.Response:
    return await gateway.client.post("/v1/chat/completions", json=body, **kwargs)


def chat(tmp_path, body, **settings) -> httpx.Response:
    """One chat request to a fresh gateway with these settings."""
    return on_edge(tmp_path, lambda gateway: post_chat(gateway, body), **settings)


def test_more_images_than_the_gateway_allows(tmp_path):
    parts = [{"type": "image_url", "image_url": {"url": data_url(png_bytes())}}] * 3
    response = chat(tmp_path, {"model": MODEL, "messages": [{"role": "user", "content": parts}]},
                    max_images_per_request=2)
    assert_openai_error(response, 400, "too_many_images")


def bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (7000, 7000)).save(buf, "PNG")  # 49 Mpx, ~50 KB compressed
    return buf.getvalue()


@pytest.mark.parametrize("url, code", [
    ("data:image/png;base64,not*base64", "invalid_base64"),
    (data_url(b"GIF89a? no, just text pretending", "image/gif"), "invalid_image"),
    (data_url(bomb_png()), "image_too_large"),
    ("http://169.254.169.254/latest/meta-data/iam", "image_url_blocked"),
    ("http://10.0.0.8/diagram.png", "image_url_blocked"),
    ("file:///etc/passwd", "invalid_image_url"),
])
def test_bad_images_name_the_part(tmp_path, url, code):
    response = chat(tmp_path, {"model": MODEL, "messages": image_message(url)})
    error = assert_openai_error(response, 400, code)
    assert error["param"] == "messages[0].content[0].image_url"
    assert error["message"].startswith("messages[0].content[0].image_url: ")


def test_loopback_url_is_blocked_unless_allowlisted(tmp_path, image_server):
    image_server.routes["/x.png"] = (200, {}, png_bytes())
    response = chat(tmp_path, {"model": MODEL, "messages": image_message(image_server.url("/x.png"))})
    assert_openai_error(response, 400, "image_url_blocked")


def test_oversized_body_is_413(tmp_path):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 60_000}]}
    assert_openai_error(chat(tmp_path, body, max_body_bytes=50_000), 413, "request_too_large")


@pytest.mark.parametrize("content, code", [
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "invalid_request"),
    (b'{"model": "m"}', "invalid_value"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 7}]}]}',
     "invalid_image_url"),
])
def test_malformed_requests_are_400(tmp_path, content, code):
    response = on_edge(tmp_path, lambda gateway: gateway.client.post(
        "/v1/chat/completions", content=content, headers={"Content-Type": "application/json"}))
    assert_openai_error(response, 400, code)


def test_predict_validation_is_400(tmp_path):
    response = on_edge(tmp_path, lambda gateway: gateway.client.post(
        "/predict", json={"image_url": data_url(png_bytes())}))
    error = assert_openai_error(response, 400)
    assert error["param"] == "user_query"


def test_unknown_route_is_openai_shaped_404(tmp_path):
    assert_openai_error(on_edge(tmp_path, lambda gateway: gateway.client.get("/v1/nothing-here")), 404)


def test_unreachable_upstream_is_503_with_retry_after(tmp_path):
    async def scenario(gateway: Edge) -> tuple[httpx.Response, httpx.Response]:
        response = await post_chat(gateway, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        return response, await gateway.client.get("/ready")

    response, ready = on_edge(tmp_path, scenario, upstream_urls=[f"http://127.0.0.1:{free_port()}/v1"],
                              upstream_health_interval_s=0.5)
    assert_openai_error(response, 503, "upstream_unavailable")
    assert int(response.headers["Retry-After"]) >= 1
    # The gateway still serves (memory API, probes): its readiness does not follow vLLM's.
    assert ready.status_code == 200


def test_api_keys(tmp_path):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    async def scenario() -> None:
        async with edge(tmp_path, api_keys="acme:sk-acme-1") as gateway:
            assert_openai_error(await post_chat(gateway, body), 401, "invalid_api_key")
            assert_openai_error(await post_chat(gateway, body, headers={"Authorization": "Bearer wrong"}), 401)
            async with gateway.openai(api_key="wrong") as client:
                with pytest.raises(openai.AuthenticationError):
                    await client.chat.completions.create(**body)

            async with gateway.openai(api_key="sk-acme-1") as client:
                raw = await client.chat.completions.with_raw_response.create(**body)
            assert gateway.journal().get(raw.headers["x-visionrag-exchange-id"]).tenant == "acme"
            # Health stays open for probes.
            assert (await gateway.client.get("/health")).status_code == 200

    asyncio.run(scenario())


# Content parts whose `type` is not a string: once a TypeError (unhashable) in the gateway, a 500.
ODD_TYPE_PARTS = {"object": {"type": {}, "text": "hi"}, "list": {"type": [None], "text": "hi"},
                  "nested": {"type": {"type": "text"}, "text": "hi"}}


def user(content) -> list[dict]:
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize("kind", sorted(ODD_TYPE_PARTS))
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/tokenize", "/detokenize"])
def test_part_types_that_are_not_strings_are_400(tmp_path, path, kind):
    body = {"model": MODEL, "messages": user(["first", ODD_TYPE_PARTS[kind]])}
    if path == "/detokenize":
        body["tokens"] = [1, 2]
    response = on_edge(tmp_path, lambda gateway: gateway.client.post(path, json=body))
    error = assert_openai_error(response, 400, "invalid_content_part")
    assert error["param"] == "messages[0].content[1].type"


@pytest.mark.parametrize("field, value", [
    ("mm_processor_kwargs", {"size": {"longest_edge": 100000}}),
    ("media_io_kwargs", {"image": {"mode": "I;16"}}),
    ("chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}"),
])
def test_fields_that_change_media_handling_are_refused(tmp_path, field, value):
    body = {"model": MODEL, "max_tokens": 2, field: value,
            "messages": [{"role": "user", "content": "hi"}]}
    response = chat(tmp_path, body)
    assert assert_openai_error(response, 400, "unsupported_parameter")["param"] == field


@pytest.mark.parametrize("messages, param", [
    ([{"role": "user", "content": {"type": "image_url", "image_url": "http://127.0.0.1:1/x.png"}}],
     "messages[0].content"),
    ([{"role": "user", "content": 5}], "messages[0].content"),
    ([{"content": "no role"}], "messages[0].role"),
    (["just a string"], "messages[0]"),
])
def test_malformed_messages_are_400(tmp_path, messages, param):
    body = {"model": MODEL, "max_tokens": 2, "messages": messages}
    response = chat(tmp_path, body)
    assert assert_openai_error(response, 400)["param"] == param


@pytest.mark.parametrize("body, param, code", [
    ({"prompt": "x", "prompt_embeds": "AAAA"}, "prompt_embeds", "unsupported_parameter"),
    ({"prompt": "x", "multi_modal_data": {"image": "http://127.0.0.1:1/x.png"}}, "multi_modal_data",
     "unsupported_parameter"),
    ({"prompt": {"text": "x"}}, "prompt", "invalid_value"),
    ({}, "prompt", "invalid_value"),
])
def test_text_completion_refusals(tmp_path, body, param, code):
    response = on_edge(tmp_path, lambda gateway: gateway.client.post(
        "/v1/completions", json={"model": MODEL, "max_tokens": 2, **body}))
    assert assert_openai_error(response, 400, code)["param"] == param
