"""What the gateway tells callers who are not its operator: /ready without upstream URLs, upstream
failures without addresses or library messages. In process; the upstream is a plain HTTP server."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.inprocess import Edge, gateway, on_edge, settings_for
from tests.plugins.gateway_server import free_port

OPS = {"Authorization": "Bearer sk-ops"}


@pytest.fixture
def replicas(image_server) -> tuple[str, str]:
    """One replica that answers /health (a plain HTTP server, standing in for vLLM's probe) and one that is down."""
    image_server.routes["/health"] = (200, {}, b"")
    return image_server.url("/v1"), f"http://127.0.0.1:{free_port()}/v1"


def ready(tmp_path, urls: list[str], headers: dict[str, str], **settings) -> tuple[int, dict]:
    async def scenario():
        async with gateway(settings_for(tmp_path, upstream_urls=urls, **settings)) as (_, client):
            return await client.get("/ready", headers=headers)

    response = asyncio.run(scenario())
    return response.status_code, response.json()


@pytest.mark.parametrize("keys", [{}, {"api_keys": "acme:sk-acme"}, {"admin_keys": "sk-ops"}],
                         ids=["open", "tenant-keys", "operator-keys"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-acme"}, {"Authorization": "Bearer nope"}],
                         ids=["no-key", "tenant-key", "wrong-key"])
def test_ready_says_how_many_replicas_answer_not_where_they_are(tmp_path, replicas, keys, headers):
    status, body = ready(tmp_path, list(replicas), headers, **keys)
    assert (status, body) == (200, {"status": "ready", "upstreams": {"healthy": 1, "total": 2}})


def test_ready_does_not_follow_the_upstream(tmp_path, replicas):
    # Ready = the gateway serves: a vLLM restart must not empty the gateway's Service (memory API
    # included); the count tells the operator, chats answer 503 + Retry-After meanwhile, and the body
    # says degraded so that nobody reading it takes the model for up (issue 21).
    status, body = ready(tmp_path, [replicas[1]], {})
    assert (status, body) == (200, {"status": "degraded", "upstreams": {"healthy": 0, "total": 1}})


def test_an_operator_key_also_gets_each_replica(tmp_path, replicas):
    up, down = replicas
    status, body = ready(tmp_path, [up, down], OPS, api_keys="acme:sk-acme", admin_keys="sk-ops")
    assert status == 200
    assert body["replicas"] == [{"url": up, "healthy": True}, {"url": down, "healthy": False}]


def test_unreachable_upstream_error_names_no_address(tmp_path, caplog):
    port = free_port()

    async def scenario():
        async with gateway(settings_for(tmp_path, upstream_urls=[f"http://127.0.0.1:{port}/v1"])) as (_, client):
            return await client.post("/v1/chat/completions",
                                     json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})

    with caplog.at_level("WARNING", logger="visionrag.upstream"):
        response = asyncio.run(scenario())
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (503, "upstream_unavailable")
    assert error["message"] == "the upstream model server is unreachable (1 of 1 replicas tried); try again shortly"
    assert f"127.0.0.1:{port}" in caplog.text  # the operator's log has where and why


@pytest.mark.parametrize("interval_s, retry_after", [(5.0, "5"), (0.2, "1"), (2.5, "3")])
def test_no_upstream_up_is_503_with_retry_after_on_every_model_route(tmp_path, interval_s, retry_after):
    """While no replica accepts connections, chats, streams, /predict and /v1/models all say when to retry:
    after one health-probe interval (whole seconds, at least 1), the soonest a replica can be back."""
    async def scenario():
        settings = settings_for(tmp_path, upstream_urls=[f"http://127.0.0.1:{free_port()}/v1"],
                                upstream_health_interval_s=interval_s)
        chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with gateway(settings) as (_, client):
            return [
                await client.post("/v1/chat/completions", json=chat),
                await client.post("/v1/chat/completions", json={**chat, "stream": True}),
                await client.post("/v1/completions", json={"model": "m", "prompt": "hi"}),
                await client.post("/predict", json={"image_url": png_data_url(), "user_query": "what?"}),
                await client.get("/v1/models"),
            ]

    for response in asyncio.run(scenario()):
        assert response.status_code == 503, (response.request.url, response.text)
        assert response.headers["Retry-After"] == retry_after
        assert response.json()["error"]["code"] == "upstream_unavailable"


def png_data_url() -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_health_and_ready(tmp_path):
    async def scenario(gateway: Edge):
        return await gateway.client.get("/health"), await gateway.client.get("/ready")

    health, ready = on_edge(tmp_path, scenario)
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
