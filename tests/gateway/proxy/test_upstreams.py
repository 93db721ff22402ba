"""Several upstream replicas: least-outstanding balancing, failover, and recovery.

Failover runs in process, the live replica being the recording upstream (tests.gateway.inprocess);
replicas that must overlap in time or come up late are scripted upstream processes. Both are doubles
for the model server: which replica answers is the gateway's doing, not vLLM's.
"""

import concurrent.futures
import time
from collections import Counter

import httpx

from tests.gateway.inprocess import MODEL, RECORDING, Edge, on_edge
from tests.plugins.gateway_server import free_port


def chat(gateway, model="fake-vlm") -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})


def upstream_of(gateway, response) -> str:
    return gateway.journal().get(response.headers["x-visionrag-exchange-id"]).extra["upstream"]


def test_dead_replica_is_skipped_and_reported(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"

    async def scenario(gateway: Edge):
        live = gateway.upstream.base_url
        for _ in range(4):
            response = await gateway.client.post("/v1/chat/completions", json={
                "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            assert response.status_code == 200
            assert upstream_of(gateway, response) == live
        ready = (await gateway.client.get("/ready", headers={"Authorization": "Bearer sk-ops"})).json()
        assert ready["upstreams"] == {"healthy": 1, "total": 2}
        assert ready["replicas"] == [{"url": dead, "healthy": False}, {"url": live, "healthy": True}]

    on_edge(tmp_path, scenario, admin_keys="sk-ops", upstream_urls=[dead, RECORDING])


def test_least_outstanding_spreads_concurrent_requests(start_gateway, fake_upstream):
    # Doubles: two replicas that each take 0.5 s, so requests overlap.
    a, b = fake_upstream(None, "--stall", "0.5"), fake_upstream(None, "--stall", "0.5")
    gateway = start_gateway(f"{a.base_url},{b.base_url}")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: chat(gateway), range(6)))
    assert all(r.status_code == 200 for r in responses)
    assert Counter(upstream_of(gateway, r) for r in responses) == {a.base_url: 3, b.base_url: 3}


def test_replica_returns_to_rotation_when_healthy(start_gateway, fake_upstream):
    first = fake_upstream()
    late_port = free_port()
    late_url = f"http://127.0.0.1:{late_port}/v1"
    gateway = start_gateway(f"{late_url},{first.base_url}")
    assert upstream_of(gateway, chat(gateway)) == first.base_url  # late one is down: failover

    fake_upstream(late_port)  # it comes up; the health probe (every 0.5 s here) brings it back
    deadline = time.monotonic() + 10
    served = set()
    while late_url not in served and time.monotonic() < deadline:
        served.add(upstream_of(gateway, chat(gateway)))
        time.sleep(0.2)
    assert late_url in served
