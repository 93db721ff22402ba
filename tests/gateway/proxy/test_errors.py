"""Every way a request can go wrong gives an OpenAI-shaped error with the right status, never a 500."""

import io

import httpx
import openai
import pytest
from PIL import Image

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


def test_more_images_than_the_gateway_allows(start_gateway, vllm_server):
    gateway = start_gateway(vllm_server.base_url, max_images_per_request=2)
    parts = [{"type": "image_url", "image_url": {"url": data_url(png_bytes())}}] * 3
    response = post_chat(gateway, {"model": vllm_server.model, "messages": [{"role": "user", "content": parts}]})
    assert_openai_error(response, 400, "too_many_images")


def test_more_images_than_the_model_allows_is_vllms_400(shared_gateway, vllm_server):
    parts = [{"type": "image_url", "image_url": {"url": data_url(png_bytes(color=c))}}
             for c in ((1, 1, 1), (2, 2, 2))]
    response = post_chat(shared_gateway, {"model": vllm_server.model, "max_tokens": 2,
                                          "messages": [{"role": "user", "content": parts}]})
    assert response.status_code == 400
    assert "At most 1 image" in response.text


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
def test_bad_images_name_the_part(shared_gateway, vllm_server, url, code):
    response = post_chat(shared_gateway, {"model": vllm_server.model, "messages": image_message(url)})
    error = assert_openai_error(response, 400, code)
    assert error["param"] == "messages[0].content[0].image_url"
    assert error["message"].startswith("messages[0].content[0].image_url: ")


def test_loopback_url_is_blocked_unless_allowlisted(shared_gateway, vllm_server, image_server):
    image_server.routes["/x.png"] = (200, {}, png_bytes())
    response = post_chat(shared_gateway, {"model": vllm_server.model,
                                          "messages": image_message(image_server.url("/x.png"))})
    assert_openai_error(response, 400, "image_url_blocked")


def test_oversized_body_is_413(start_gateway, vllm_server):
    gateway = start_gateway(vllm_server.base_url, max_body_bytes=50_000)
    body = {"model": vllm_server.model, "messages": [{"role": "user", "content": "x" * 60_000}]}
    assert_openai_error(post_chat(gateway, body), 413, "request_too_large")


@pytest.mark.parametrize("content, code", [
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "invalid_request"),
    (b'{"model": "m"}', "invalid_value"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 7}]}]}',
     "invalid_image_url"),
])
def test_malformed_requests_are_400(shared_gateway, content, code):
    response = httpx.post(shared_gateway.url + "/v1/chat/completions", content=content,
                          headers={"Content-Type": "application/json"})
    assert_openai_error(response, 400, code)


def test_predict_validation_is_400(shared_gateway):
    response = httpx.post(shared_gateway.url + "/predict", json={"image_url": data_url(png_bytes())})
    error = assert_openai_error(response, 400)
    assert error["param"] == "user_query"


def test_unknown_route_is_openai_shaped_404(shared_gateway):
    assert_openai_error(httpx.get(shared_gateway.url + "/v1/nothing-here"), 404)


def test_unreachable_upstream_is_503_with_retry_after(start_gateway):
    gateway = start_gateway(f"http://127.0.0.1:{free_port()}/v1")
    response = post_chat(gateway, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(response, 503, "upstream_unavailable")
    assert int(response.headers["Retry-After"]) >= 1
    # The gateway still serves (memory API, probes): its readiness does not follow vLLM's.
    assert httpx.get(gateway.url + "/ready").status_code == 200


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


def test_api_keys(start_gateway, vllm_server):
    gateway = start_gateway(vllm_server.base_url, api_keys="acme:sk-acme-1")
    body = {"model": vllm_server.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert_openai_error(post_chat(gateway, body), 401, "invalid_api_key")
    assert_openai_error(post_chat(gateway, body, headers={"Authorization": "Bearer wrong"}), 401)
    with pytest.raises(openai.AuthenticationError):
        gateway.client(api_key="wrong").chat.completions.create(**body)

    raw = gateway.client(api_key="sk-acme-1").chat.completions.with_raw_response.create(**body)
    assert gateway.journal().get(raw.headers["x-visionrag-exchange-id"]).tenant == "acme"
    # Health stays open for probes.
    assert httpx.get(gateway.url + "/health").status_code == 200
