"""GET /metrics: the real exposition after real traffic.

The main test runs a real gateway process (uvicorn) with memory on (tiny CLIP, qdrant-client's local
mode) in front of the session's real vLLM server; a fresh process, so every count starts at zero.
Access rules, unmatched routes and a dead replica run in process (counts there are the process's,
shared with other tests, hence differences). The abandoned stream uses the scripted upstream (double),
as in test_durability: the tiny model can finish before the client's close arrives.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import REGISTRY
from tests.gateway.inprocess import gateway, settings_for
from tests.gateway.memory.conftest import TINY_CLIP
from tests.plugins.gateway_server import free_port
from tests.plugins.media import data_url, image_message, png_bytes

CHAT = "/v1/chat/completions"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str, headers: dict | None = None) -> dict:
    response = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


def test_metrics_after_a_chat_a_stream_a_refused_image_and_searches(start_gateway, vllm_server, tmp_path):
    gw = start_gateway(vllm_server.base_url, data_dir=tmp_path, memory_enabled="true",
                       fastembed_cache_dir=str(TINY_CLIP), qdrant_local_path=str(tmp_path / "qdrant"),
                       ingest_poll_interval_s="0.1")
    client = gw.client()
    messages = image_message(data_url(png_bytes()), "What is this?")
    client.chat.completions.create(model=vllm_server.model, messages=messages, max_tokens=4)
    stream = client.chat.completions.create(model=vllm_server.model, messages=messages, max_tokens=4, stream=True)
    assert [chunk for chunk in stream]
    refused = httpx.post(gw.url + CHAT, timeout=30, json={
        "model": vllm_server.model, "messages": image_message(data_url(b"not an image"), "and this?")})
    assert refused.status_code == 400
    assert httpx.get(gw.url + "/no/such/route", timeout=10).status_code == 404

    deadline = time.monotonic() + 60
    while value(scraped := scrape(gw.url), "visionrag_ingested_exchanges_total") < 2:
        assert time.monotonic() < deadline, "the two chats were not ingested"
        time.sleep(0.2)
    found = httpx.post(gw.url + "/search", json={"text": "What is this?", "target": "question"}, timeout=30)
    nothing = httpx.post(gw.url + "/search", json={"text": "x", "filters": {"model": "no-such-model"}},
                         timeout=30)
    assert (found.status_code, nothing.status_code) == (200, 200)
    assert found.json()["data"] and not nothing.json()["data"]
    scraped = scrape(gw.url)

    assert value(scraped, "visionrag_http_requests_total", route=CHAT, status="200") == 2
    assert value(scraped, "visionrag_http_requests_total", route=CHAT, status="400") == 1
    assert value(scraped, "visionrag_http_requests_total", route="unmatched", status="404") == 1
    assert value(scraped, "visionrag_http_requests_total", route="/search", status="200") == 2
    assert value(scraped, "visionrag_http_request_duration_seconds_count", route=CHAT) == 3
    assert value(scraped, "visionrag_upstream_ttfb_seconds_count", path="/chat/completions") == 2
    assert value(scraped, "visionrag_streams_started_total", route=CHAT) == 1
    assert value(scraped, "visionrag_streams_ended_total", route=CHAT, status="complete") == 1
    assert value(scraped, "visionrag_images_refused_total", code="invalid_image") == 1
    assert value(scraped, "visionrag_journal_append_seconds_count") == 2
    assert value(scraped, "visionrag_ingested_exchanges_total") == 2
    assert value(scraped, "visionrag_ingest_backlog") == 0
    assert value(scraped, "visionrag_memory_embed_seconds_count", path="ingest") >= 1
    assert value(scraped, "visionrag_memory_store_seconds_count", op="upsert") >= 1
    assert value(scraped, "visionrag_memory_embed_seconds_count", path="search") == 2
    assert value(scraped, "visionrag_memory_store_seconds_count", op="query") == 2
    assert value(scraped, "visionrag_memory_retrievals_total", source="search", outcome="ok") == 1
    assert value(scraped, "visionrag_memory_retrievals_total", source="search", outcome="empty") == 1
    assert value(scraped, "visionrag_memory_retrievals_total", source="search", outcome="error") == 0
    assert value(scraped, "visionrag_upstream_healthy", replica=vllm_server.base_url) == 1
    assert value(scraped, "visionrag_upstream_in_flight", replica=vllm_server.base_url) == 0
    assert value(scraped, "process_resident_memory_bytes") > 0


def test_an_abandoned_stream_is_counted_as_ended_incomplete(start_gateway, fake_upstream):
    upstream = fake_upstream(None, "--chunks", "200", "--chunk-delay", "0.05")
    gw = start_gateway(upstream.base_url)
    with httpx.stream("POST", gw.url + CHAT, timeout=60, json={
            "model": "fake-vlm", "stream": True, "messages": [{"role": "user", "content": "A long story."}]}) as r:
        lines = r.iter_lines()
        assert [next(lines) for _ in range(4)]  # a few events, then the client walks away

    deadline = time.monotonic() + 30
    while value(scraped := scrape(gw.url), "visionrag_streams_ended_total", route=CHAT, status="incomplete") < 1:
        assert time.monotonic() < deadline, "the abandoned stream was not counted"
        time.sleep(0.2)
    assert value(scraped, "visionrag_streams_started_total", route=CHAT) == 1
    assert value(scraped, "visionrag_streams_ended_total", route=CHAT, status="complete") == 0


def local(registry_sample: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(registry_sample, labels) or 0.0


def test_a_dead_replica_shows_in_the_health_gauge(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    before = local("visionrag_http_requests_total", route=CHAT, status="503")

    async def scenario():
        async with gateway(settings_for(tmp_path, upstream_urls=[dead])) as (_, client):
            chat = await client.post(CHAT, json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            return chat, await client.get("/metrics")

    chat, metrics = asyncio.run(scenario())
    assert chat.status_code == 503  # no replica up: retry later
    scraped = samples(metrics.text)
    assert value(scraped, "visionrag_upstream_healthy", replica=dead) == 0
    assert value(scraped, "visionrag_http_requests_total", route=CHAT, status="503") == before + 1
    assert ("visionrag_ingest_backlog", frozenset()) not in scraped  # memory is off: no backlog to report


@pytest.mark.parametrize(("keys", "headers", "status"), [
    ({}, {}, 200),
    ({}, {"Authorization": "Bearer anything"}, 200),
    ({"api_keys": "acme:sk-acme", "admin_keys": "sk-ops"}, {}, 401),
    ({"api_keys": "acme:sk-acme", "admin_keys": "sk-ops"}, {"Authorization": "Bearer sk-acme"}, 403),
    ({"api_keys": "acme:sk-acme", "admin_keys": "sk-ops"}, {"Authorization": "Bearer wrong"}, 401),
    ({"api_keys": "acme:sk-acme", "admin_keys": "sk-ops"}, {"Authorization": "Bearer sk-ops"}, 200),
    ({"api_keys": "acme:sk-acme"}, {"Authorization": "Bearer sk-acme"}, 403),
], ids=["open", "open-any-key", "keys-none", "keys-tenant", "keys-wrong", "keys-operator", "tenant-keys-only"])
def test_metrics_is_open_on_an_open_gateway_and_for_operators_once_keys_are_set(tmp_path, keys, headers, status):
    async def scenario():
        async with gateway(settings_for(tmp_path, **keys)) as (_, client):
            return await client.get("/metrics", headers=headers)

    response = asyncio.run(scenario())
    assert response.status_code == status, response.text
    if status == 200:
        assert "# TYPE visionrag_http_requests_total counter" in response.text
    else:
        assert "visionrag_" not in response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_unmatched_paths_share_one_route_label(tmp_path):
    async def scenario():
        async with gateway(settings_for(tmp_path)) as (_, client):
            for n in range(3):
                assert (await client.get(f"/scan/{n}")).status_code == 404
            return await client.get("/metrics")

    scraped = samples(asyncio.run(scenario()).text)
    routes = {dict(labels).get("route") for name, labels in scraped if name == "visionrag_http_requests_total"}
    assert "unmatched" in routes
    assert not any(route and route.startswith("/scan") for route in routes)


def test_openmetrics_is_served_when_asked(tmp_path):
    async def scenario():
        async with gateway(settings_for(tmp_path)) as (_, client):
            return await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})

    response = asyncio.run(scenario())
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
