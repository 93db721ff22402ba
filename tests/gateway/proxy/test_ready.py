"""What the gateway tells callers who are not its operator: /ready without upstream URLs, upstream
failures without addresses or library messages. In process; the upstream is a plain HTTP server."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.inprocess import gateway, settings_for
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


def test_ready_is_503_when_no_replica_answers(tmp_path, replicas):
    status, body = ready(tmp_path, [replicas[1]], {})
    assert (status, body) == (503, {"status": "unavailable", "upstreams": {"healthy": 0, "total": 1}})


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
    assert (response.status_code, error["code"]) == (502, "upstream_unreachable")
    assert error["message"] == "the upstream model server is unreachable (1 of 1 replicas tried)"
    assert f"127.0.0.1:{port}" in caplog.text  # the operator's log has where and why
