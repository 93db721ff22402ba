"""The OpenAPI document tells the truth, and /docs works offline.

In process (httpx's ASGI transport). /openapi.json and /docs need no lifespan; the test that checks
the document against the gateway's real answers runs it, with keys on, memory off and nothing
listening upstream (so the upstream routes really answer their documented 502).
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from gateway.api.app import create_app
from gateway.api.openapi.document import describe
from tests.gateway.inprocess import gateway, settings_for

ROOT = Path(__file__).resolve().parents[3]
TINY_CLIP = ROOT / "models" / "clip-tiny"
IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"}
PROBES = {"/health", "/ready"}


def fetch(app, *paths: str, root_path: str = "") -> list[httpx.Response]:
    """GETs without the lifespan: what a browser opening /docs asks for."""
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(run())


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict[str, Any]:
    app = create_app(settings_for(tmp_path_factory.mktemp("openapi"), max_body_bytes=1 << 20))
    [response] = fetch(app, "/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()


def operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = document["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def schema_validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator for one component schema, its `$ref`s resolved within the document."""
    schema = {**document["components"]["schemas"][name], "components": document["components"]}
    return Draft202012Validator(schema)


def test_the_document_is_valid_openapi(document):
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_no_422_anywhere(document):
    for method, path, operation in operations(document):
        assert "422" not in operation["responses"], f"{method} {path}"
    assert not {"HTTPValidationError", "ValidationError"} & set(document["components"]["schemas"])


def test_keys_are_bearer_schemes_on_every_route_but_the_probes(document):
    schemes = document["components"]["securitySchemes"]
    assert {name: (s["type"], s["scheme"]) for name, s in schemes.items()} == {
        "ApiKey": ("http", "bearer"), "OperatorKey": ("http", "bearer")}
    assert "optional" in schemes["ApiKey"]["description"]
    for method, path, operation in operations(document):
        if path == "/health":
            assert operation["security"] == []
        elif path == "/ready":  # open to probes; an operator key adds each replica
            assert operation["security"] == [{}, {"OperatorKey": []}]
        else:
            assert operation["security"] and {} not in operation["security"], f"{method} {path}"
            assert "401" in operation["responses"], f"{method} {path}"
    assert document["paths"]["/metrics"]["get"]["security"] == [{"OperatorKey": []}]
    assert document["paths"]["/memory/stats"]["get"]["security"] == [{"ApiKey": []}, {"OperatorKey": []}]
    assert document["paths"]["/search"]["post"]["security"] == [{"ApiKey": []}]


def test_every_body_route_documents_its_body_and_400_401_413(document):
    posts = [(path, op) for method, path, op in operations(document) if method == "post"]
    assert {p for p, _ in posts} >= {"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize",
                                     "/predict", "/search"}
    for path, operation in posts:
        assert operation["requestBody"]["content"]["application/json"]["schema"], path
        for status in ("400", "401", "413"):
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
        examples = operation["responses"]["413"]["content"]["application/json"]["examples"]
        assert examples["request_too_large"]["value"]["error"]["code"] == "request_too_large"
        assert "1048576-byte limit" in examples["request_too_large"]["value"]["error"]["message"]
    predict = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    search = document["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(predict["required"]) == {"image_url", "user_query"}
    assert set(search["properties"]) >= {"text", "image", "target", "limit", "filters"}


def test_every_error_example_has_the_error_shape(document):
    errors = schema_validator(document, "ErrorResponse")
    seen = 0
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")) or path == "/ready":
                continue
            for name, example in response["content"]["application/json"]["examples"].items():
                errors.validate(example["value"])
                assert set(example["value"]["error"]) == {"message", "type", "param", "code"}, (path, name)
                seen += 1
    assert seen > 50


def test_errors_per_route(document):
    def codes(path: str, method: str, status: str) -> set:
        examples = document["paths"][path][method]["responses"][status]["content"]["application/json"]["examples"]
        return {e["value"]["error"]["code"] for e in examples.values()}

    assert codes("/exchanges/{exchange_id}", "get", "404") == {"exchange_not_found"}
    assert codes("/images/{sha256}", "get", "404") == {"image_not_found"}
    for path, method in [("/search", "post"), ("/memory/stats", "get")]:
        assert "memory_disabled" in codes(path, method, "503"), path
    # History needs the journal alone: memory off changes nothing there (issue 17).
    for path, method in [("/exchanges", "get"), ("/exchanges/{exchange_id}", "get"), ("/exchanges/{exchange_id}",
                         "delete"), ("/exchanges/forget", "post"), ("/images/{sha256}", "get")]:
        assert "503" not in document["paths"][path][method]["responses"], (path, method)
    for path, method in [("/v1/chat/completions", "post"), ("/v1/completions", "post"), ("/predict", "post"),
                         ("/v1/models", "get"), ("/tokenize", "post")]:
        assert codes(path, method, "502") >= {"upstream_error"}, path
        assert codes(path, method, "503") == {"upstream_unavailable"}, path
        assert codes(path, method, "504") == {"upstream_timeout"}, path
    assert "502" not in document["paths"]["/search"]["post"]["responses"]  # memory, not the model server
    assert codes("/metrics", "get", "403") == {"permission_denied"}
    assert {"invalid_json", "unsupported_content_part", "too_many_images"} <= codes(
        "/v1/chat/completions", "post", "400")
    # A string path parameter cannot fail validation: its only 400 is a prefix of several ids (issue 21).
    for method in ("get", "delete"):
        assert codes("/exchanges/{exchange_id}", method, "400") == {"exchange_id_ambiguous"}, method


def test_chat_request_body_and_answers(document):
    operation = document["paths"]["/v1/chat/completions"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert resolve(document, body)["additionalProperties"] is True  # unknown fields pass through
    chat = schema_validator(document, "ChatCompletionRequest")
    chat.validate({
        "model": "m", "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 8,
        "temperature": 0.2, "user": "u", "top_k": 5,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "image_url", "image_url": "https://example.com/cat.png"},
            ]},
        ],
    })
    for invalid in ({"model": "m"}, {"messages": []},
                    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
                    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
                        "url": "data:,", "detail": "huge"}}]}]}):
        assert not chat.is_valid(invalid), invalid
    answer = operation["responses"]["200"]
    assert set(answer["content"]) == {"application/json", "text/event-stream"}
    assert resolve(document, answer["content"]["application/json"]["schema"])["title"] == "ChatCompletion"
    assert "x-visionrag-exchange-id" in answer["headers"]


def test_images_are_image_content(document):
    answer = document["paths"]["/images/{sha256}"]["get"]["responses"]["200"]
    assert set(answer["content"]) == IMAGE_TYPES
    assert all(c["schema"] == {"type": "string", "format": "binary"} for c in answer["content"].values())
    assert answer["headers"]["X-Content-Type-Options"]["schema"]["const"] == "nosniff"


def test_the_image_types_follow_the_settings(tmp_path):
    app = create_app(settings_for(tmp_path, image_formats="PNG,TIFF"))
    answer = app.openapi()["paths"]["/images/{sha256}"]["get"]["responses"]["200"]
    assert set(answer["content"]) == {"image/png", "image/tiff"}


def test_bodies_are_described_even_when_a_route_declares_none(tmp_path):
    app = create_app(settings_for(tmp_path))
    document = app.openapi()
    for path in ("/predict", "/search"):
        del document["paths"][path]["post"]["requestBody"]
    describe(document, app, max_body_bytes=1024, image_formats=["PNG"])
    predict = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    search = document["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "user_query" in predict["properties"] and "filters" in search["properties"]
    validate(document)


@pytest.mark.parametrize("memory", [False, True], ids=["memory-off", "memory-on"])
def test_documented_statuses_are_the_ones_the_gateway_answers(tmp_path, memory):
    """Every route, asked without a key, with a wrong key, with too big a body, with invalid JSON and
    with a valid request: each answer's status is one the document lists for that route."""
    memory_settings = {}
    if memory:
        if not (TINY_CLIP / ".built").exists():
            pytest.fail("the tiny CLIP is missing: run `make memory-test-deps`")
        memory_settings = {"memory_enabled": True, "fastembed_cache_dir": TINY_CLIP}
    settings = settings_for(tmp_path, api_keys="acme:sk-acme", admin_keys="sk-ops", max_body_bytes=4096,
                            **memory_settings)
    tenant = {"Authorization": "Bearer sk-acme"}
    valid = {"/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
             "/v1/completions": {"prompt": "hi"}, "/tokenize": {"prompt": "hi"}, "/detokenize": {"tokens": [1]},
             "/predict": {"image_url": "data:,", "user_query": "hi"}, "/search": {"text": "cat"},
             "/exchanges/forget": {"user": "nobody"}}

    async def scenario() -> list[tuple[str, str, str, int, dict]]:
        answers = []
        async with gateway(settings) as (app, client):
            document = app.openapi()
            for method, template, operation in operations(document):
                path = template.replace("{exchange_id}", "nope").replace("{sha256}", "0" * 64)
                key = {"Authorization": "Bearer sk-ops"} if operation["security"] == [{"OperatorKey": []}] else tenant
                probes = {"no key": {}, "wrong key": {"headers": {"Authorization": "Bearer sk-wrong"}},
                          "valid": {"headers": key, **({"json": valid[path]} if method == "post" else {})}}
                if method == "post":
                    probes["too large"] = {"headers": key, "json": {"prompt": "x" * 8192}}
                    probes["invalid json"] = {"headers": key, "content": b"{"}
                for probe, request in probes.items():
                    response = await client.request(method.upper(), path, **request)
                    body = response.json() if "json" in response.headers.get("content-type", "") else {}
                    answers.append((template, operation, probe, response.status_code, body))
        return answers

    answers = asyncio.run(scenario())
    wrong = [(path, probe, status) for path, op, probe, status, _ in answers if str(status) not in op["responses"]]
    assert not wrong, wrong
    statuses = {(path, probe): status for path, _, probe, status, _ in answers}
    for path, operation, probe, status, body in answers:
        if "401" in operation["responses"] and probe in ("no key", "wrong key"):
            assert status == 401, (path, probe, body)
        if status >= 400 and path != "/ready":
            examples = operation["responses"][str(status)]["content"]["application/json"]["examples"]
            assert body["error"]["code"] in {e["value"]["error"]["code"] for e in examples.values()}, (path, body)
    body_routes = ["/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize", "/predict"]
    for path in [*body_routes, "/search"] if memory else body_routes:
        assert statuses[(path, "too large")] == 413 and statuses[(path, "invalid json")] == 400, path
    assert statuses[("/v1/chat/completions", "valid")] == 503  # nothing listens upstream: retry later
    assert statuses[("/health", "no key")] == 200
    # The history routes answer alike, memory on or off.
    assert statuses[("/exchanges/{exchange_id}", "valid")] == 404
    assert statuses[("/images/{sha256}", "valid")] == 404
    assert statuses[("/exchanges", "valid")] == statuses[("/exchanges/forget", "valid")] == 200
    assert statuses[("/exchanges/forget", "too large")] == 413
    if memory:
        assert statuses[("/exchanges/{exchange_id}", "valid")] == 404
        assert statuses[("/images/{sha256}", "valid")] == 404
        assert statuses[("/search", "valid")] == statuses[("/memory/stats", "valid")] == 200
    else:  # the memory routes stop at 503 memory_disabled, before reading a body
        assert statuses[("/search", "valid")] == statuses[("/search", "too large")] == 503


def test_docs_load_only_from_the_gateway(tmp_path):
    app = create_app(settings_for(tmp_path))
    [page] = fetch(app, "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "SwaggerUIBundle" in html
    assert not re.search(r"https?://", html), "the page must not reach outside the gateway"
    urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert len(urls) == 4 and all(u.startswith("/") for u in urls), urls
    expected = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
    for url, response in zip(urls, fetch(app, *urls), strict=True):
        assert response.status_code == 200, url
        kind = next(v for k, v in expected.items() if url.endswith(k))
        assert kind in response.headers["content-type"], (url, response.headers["content-type"])
    assert len(fetch(app, "/static/swagger-ui/swagger-ui-bundle.js")[0].content) > 1_000_000
    assert fetch(app, "/redoc")[0].status_code == 404  # it would need fonts from the internet


def test_docs_behind_a_path_prefix(tmp_path):
    app = create_app(settings_for(tmp_path))
    [page] = fetch(app, "/docs", root_path="/gw")
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert urls and all(u.startswith("/gw/") for u in urls), urls


def test_the_swagger_ui_files_ship_with_the_package():
    """The Dockerfile does `pip install .`: package data not declared would be missing from the image."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gateway"]
    shipped = {path for pattern in patterns for path in (ROOT / "gateway").glob(pattern)}
    static = {path for path in (ROOT / "gateway" / "static").rglob("*") if path.is_file()}
    assert {p.name for p in static} >= {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE"}
    assert static <= shipped, sorted(static - shipped)


def test_the_root_sends_browsers_to_the_page_and_stays_out_of_the_document(document, tmp_path):
    """`/` is where people type first: a browser (Accept: text/html) is sent to the page, relative to
    wherever a proxy mounts the gateway; an API client gets the JSON 404 of any unknown path."""
    app = create_app(settings_for(tmp_path))

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
            return [await client.get("/", headers=browser), await client.get("/", headers={"Accept": "application/json"}),
                    await client.get("/"), await client.get("/nowhere")]

    browser, api, plain, unknown = asyncio.run(run())
    assert browser.status_code == 303 and browser.headers["location"] == "ui"
    for response in (api, plain):
        assert response.status_code == 404 and response.json() == unknown.json()
    assert unknown.json()["error"]["type"] == "not_found_error"
    assert "/" not in document["paths"]


def test_the_web_pages_files_ship_with_the_package():
    """The page's own files, its vendored libraries (gateway/ui/static/vendor) included."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gateway"]
    shipped = {path for pattern in patterns for path in (ROOT / "gateway").glob(pattern)}
    static = {path for path in (ROOT / "gateway" / "ui" / "static").rglob("*") if path.is_file()}
    assert {p.name for p in static} >= {"index.html", "chat.js", "markdown.js", "marked.esm.js", "LICENSE"}
    assert static <= shipped, sorted(static - shipped)
