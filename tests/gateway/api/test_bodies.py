"""Request bodies: the key is checked before a byte of the body is read, every body is limited, and
/predict's errors name /predict's own fields. In process (no model needed): nothing here reaches an upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.gateway.inprocess import gateway, on_edge, settings_for
from tests.plugins.media import data_url, png_bytes

KEY = {"Authorization": "Bearer sk-acme"}
CHUNK = b"x" * 65536


class Body:
    """A streamed body (no Content-Length) that counts how many of its chunks the app asked for."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.read += 1
            yield CHUNK


def test_every_route_with_a_body_checks_the_key_before_reading_it(tmp_path):
    async def scenario() -> dict[str, tuple[int, int]]:
        async with gateway(settings_for(tmp_path, api_keys="acme:sk-acme")) as (app, client):
            routes = [(method.upper(), path) for path, operations in app.openapi()["paths"].items()
                      for method in operations if method in ("post", "put", "patch")]
            assert ("POST", "/search") in routes and ("POST", "/predict") in routes
            seen = {}
            for method, path in routes:
                body = Body(chunks=3200)  # 200 MiB if it were read
                response = await client.request(method, path, content=body)
                seen[f"{method} {path}"] = (response.status_code, body.read)
            return seen

    seen = asyncio.run(scenario())
    assert seen and all(status == 401 and read == 0 for status, read in seen.values()), seen


@pytest.mark.parametrize("path", ["/predict", "/v1/chat/completions"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_bodies_over_the_limit_are_413_and_read_no_further(tmp_path, path, declared):
    async def scenario():
        async with gateway(settings_for(tmp_path, api_keys="acme:sk-acme", max_body_bytes=1 << 20)) as (_, client):
            body = Body(chunks=3200)
            headers = {**KEY, "Content-Length": str(3200 * len(CHUNK))} if declared else KEY
            response = await client.post(path, content=body, headers=headers)
            return response, body.read

    response, read = asyncio.run(scenario())
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"
    assert read <= (0 if declared else 17)  # declared: refused unread; streamed: stops past 1 MiB


def predict(tmp_path, **request) -> dict:
    async def scenario():
        async with gateway(settings_for(tmp_path)) as (_, client):
            return await client.post("/predict", **request)

    response = asyncio.run(scenario())
    assert response.status_code == 400, response.text
    return response.json()["error"]


def test_invalid_json_to_predict_is_invalid_json(tmp_path):
    error = predict(tmp_path, content=b'{"image_url": ', headers={"Content-Type": "application/json"})
    assert error["code"] == "invalid_json" and error["message"].startswith("request body is not valid JSON")


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"image_url": data_url(png_bytes())}, "user_query", "invalid_value"),
    ({"image_url": data_url(png_bytes()), "user_query": ""}, "user_query", "invalid_value"),
    ({"image_url": data_url(png_bytes()), "user_query": "q", "max_tokens": 0}, "max_tokens", "invalid_value"),
    ({"image_url": data_url(png_bytes()), "user_query": "q", "colour": 1}, "colour", "invalid_value"),
    ({"user_query": "q"}, "image_url", "invalid_value"),
    # Past validation, the image goes through the chat path: its errors name `image_url` too.
    ({"image_url": "file:///etc/passwd", "user_query": "q", "model": "m"}, "image_url", "invalid_image_url"),
    ({"image_url": "data:image/png;base64,!!!", "user_query": "q", "model": "m"}, "image_url", "invalid_base64"),
    ({"image_url": "http://127.0.0.1:9/a.png", "user_query": "q", "model": "m"}, "image_url",
     "image_url_blocked"),
])
def test_predict_errors_name_the_predict_fields(tmp_path, body, param, code):
    error = predict(tmp_path, json=body)
    assert (error["param"], error["code"]) == (param, code), error
    assert error["message"].startswith(f"{param}: ") and "messages[" not in error["message"], error


def test_predict_body_that_is_not_an_object_is_400(tmp_path):
    error = predict(tmp_path, json=["image_url", "user_query"])
    assert error["code"] == "invalid_request" and error["param"] is None


def test_openapi_still_documents_the_bodies_read_by_hand(tmp_path):
    async def scenario() -> dict:
        async with gateway(settings_for(tmp_path)) as (_, client):
            return (await client.get("/openapi.json")).json()

    paths = asyncio.run(scenario())["paths"]
    predict_schema = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(predict_schema["properties"]) == {"image_url", "user_query", "max_tokens", "model", "visionrag"}
    assert predict_schema["required"] == ["image_url", "user_query"]
    search_schema = paths["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"text", "image", "target", "limit", "filters"} <= set(search_schema["properties"])
    assert "time_from" in search_schema["properties"]["filters"]["properties"]  # nested model inlined
    assert "$ref" not in str(search_schema)


@pytest.mark.parametrize("raw", [
    b"", b"null", b"[]", b"[1,2]", b'"text"', b"{", b"\xff\xfe", b'{"messages": "\\ud800"}',
    b"[" * 100_000 + b"]" * 100_000, b'{"messages": [{"role": "user", "content": "' + b"9" * 100 + b'"}], "n": '
    + b"9" * 400 + b"}",
])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize"])
def test_malformed_bodies_are_4xx(tmp_path, path, raw):
    response = on_edge(tmp_path, lambda gateway: gateway.client.post(
        path, content=raw, headers={"Content-Type": "application/json"}))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]
