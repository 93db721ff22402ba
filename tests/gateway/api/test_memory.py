"""The memory HTTP API (gateway.api.memory) on both store adapters: search by text and image, tenant
scoping, errors.

The app here is assembled from the real pieces (Memory, the gateway's error handlers and
authenticator) rather than gateway.api.app, so these tests need no upstream model; the end-to-end
tests in tests/gateway/memory/test_e2e.py go through the whole gateway and vLLM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.api.deps import wire
from gateway.api.errors import install_error_handlers
from gateway.api.memory import router as memory_router
from gateway.auth import Authenticator
from gateway.images import ImageLoader
from gateway.journal import BlobStore, Exchange, Journal
from gateway.memory.embed import ClipEmbedder
from gateway.memory.ingest import IngestWorker
from gateway.memory.service import Memory
from gateway.memory.store.base import VectorStore
from gateway.memory.text_embed import TextEncoders
from gateway.settings import Settings
from tests.gateway.memory import conftest as memory_fixtures
from tests.gateway.memory.conftest import noise_png
from tests.plugins.media import data_url

# The memory fixtures (the tiny CLIP, both store adapters, a journal), as fixtures here too.
clip_cache, embedder = memory_fixtures.clip_cache, memory_fixtures.embedder
text_cache, text_encoders = memory_fixtures.text_cache, memory_fixtures.text_encoders
store, journal, blobs = memory_fixtures.store, memory_fixtures.journal, memory_fixtures.blobs
make_exchange = memory_fixtures.make_exchange

# `key-d` belongs to the default tenant: what an open gateway recorded, kept reachable once keys are on.
KEYS = {"key-a": "acme", "key-b": "bravo", "key-d": "default"}
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
D = {"Authorization": "Bearer key-d"}
OPS = {"Authorization": "Bearer key-ops"}


class Api(SimpleNamespace):
    client: TestClient
    memory: Memory
    journal: Journal


@pytest.fixture
def api(journal: Journal, blobs: BlobStore, embedder: ClipEmbedder, store: VectorStore,
        text_encoders: TextEncoders, image_server, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(_env_file=None, fetch_allow_hosts=[image_server.hostport], max_body_bytes=1 << 20)
    worker = IngestWorker(journal, blobs, embedder, store, text=text_encoders)
    memory = Memory(journal, blobs, embedder, store, worker, ImageLoader.from_settings(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await memory.image_loader.fetcher.close()  # its HTTP session lives on the app's event loop

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    wire(app, settings=settings, auth=Authenticator(KEYS, "default", ["key-ops"]), memory=memory)
    app.include_router(memory_router)
    with TestClient(app) as client:
        yield Api(client=client, memory=memory, journal=journal)


def ingest(api: Api, *exchanges: Exchange) -> None:
    for exchange in exchanges:
        api.journal.append(exchange)
    api.memory.worker.drain()


def test_search_by_image_and_by_answer_text_finds_the_exchange_first(api: Api, make_exchange) -> None:
    exchanges = [make_exchange(f"question {n}", f"the answer is number {n}", [noise_png(n)], tenant="acme")
                 for n in range(6)]
    ingest(api, *exchanges)
    target = exchanges[3]

    by_image = api.client.post("/search", headers=A, json={"image": data_url(noise_png(3)), "target": "image"})
    assert by_image.status_code == 200, by_image.text
    body = by_image.json()
    assert body["query_type"] == "image" and body["target"] == "image"
    first = body["data"][0]
    assert first["exchange_id"] == target.id and first["score"] == pytest.approx(1.0, abs=1e-3)
    assert first["question"] == "question 3" and first["answer"] == "the answer is number 3"
    assert first["image_sha256"] == target.images[0].sha256
    assert datetime.fromisoformat(first["time"]).timestamp() == pytest.approx(target.created_at, abs=1e-3)
    assert set(body["timings_ms"]) == {"embed", "store"}

    by_answer = api.client.post("/search", headers=A,
                                json={"text": "the answer is number 3", "target": "answer", "limit": 3})
    assert by_answer.json()["data"][0]["exchange_id"] == target.id
    assert len(by_answer.json()["data"]) == 3

    fused = api.client.post("/search", headers=A, json={"image": data_url(noise_png(3))})
    assert fused.status_code == 200 and fused.json()["target"] == "all"
    assert target.id in [h["exchange_id"] for h in fused.json()["data"]]

    # The result's image URL is served by the gateway, to the same tenant, with the original bytes.
    image = api.client.get(first["image_url"], headers=A)
    assert image.status_code == 200 and image.content == noise_png(3)
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"


def test_search_by_http_image_url_uses_the_guarded_fetch(api: Api, make_exchange, image_server) -> None:
    exchange = make_exchange("q", "a", [noise_png(11)], tenant="acme")
    ingest(api, exchange, make_exchange("q2", "a2", [noise_png(12)], tenant="acme"))
    image_server.routes["/cat.png"] = (200, {"Content-Type": "image/png"}, noise_png(11))
    hits = api.client.post("/search", headers=A, json={"image": image_server.url("/cat.png"), "target": "image"})
    assert hits.status_code == 200, hits.text
    assert hits.json()["data"][0]["exchange_id"] == exchange.id
    missing = api.client.post("/search", headers=A, json={"image": image_server.url("/nope.png")})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "image_fetch_failed"
    blocked = api.client.post("/search", headers=A, json={"image": "http://169.254.169.254/latest/meta-data"})
    assert blocked.status_code == 400 and blocked.json()["error"]["param"] == "image"


def test_tenants_never_see_each_other(api: Api, make_exchange) -> None:
    mine = make_exchange("secret question", "secret answer", [noise_png(1)], tenant="acme")
    theirs = make_exchange("secret question", "secret answer", [noise_png(2)], tenant="bravo")
    ingest(api, mine, theirs)
    for headers, own, other in ((A, mine, theirs), (B, theirs, mine)):
        hits = api.client.post("/search", headers=headers, json={"text": "secret answer", "limit": 10}).json()["data"]
        assert [h["exchange_id"] for h in hits] == [own.id]
        assert api.client.get(f"/exchanges/{own.id}", headers=headers).status_code == 200
        hidden = api.client.get(f"/exchanges/{other.id}", headers=headers)
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "exchange_not_found"
        assert api.client.get(f"/images/{other.images[0].sha256}", headers=headers).status_code == 404
    assert api.client.post("/search", json={"text": "secret"}).status_code == 401


def test_filters_narrow_results(api: Api, make_exchange) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    old = make_exchange("q", "same answer", [noise_png(1)], tenant="acme", model="m1", user="u1", created_at=t0)
    new = make_exchange("q", "same answer", [noise_png(2)], tenant="acme", model="m2", user="u2",
                        created_at=t0 + 3600)
    ingest(api, old, new)

    def ids(filters: dict) -> set[str]:
        response = api.client.post("/search", headers=A, json={"text": "same answer", "filters": filters})
        assert response.status_code == 200, response.text
        return {h["exchange_id"] for h in response.json()["data"]}

    assert ids({}) == {old.id, new.id}
    assert ids({"model": "m1"}) == {old.id}
    assert ids({"model": ["m1", "m2"]}) == {old.id, new.id}
    assert ids({"user": "u2"}) == {new.id}
    assert ids({"time_from": "2026-03-01T00:30:00Z"}) == {new.id}
    assert ids({"time_to": t0 + 60}) == {old.id}  # unix seconds work too
    assert ids({"model": "m1", "user": "u2"}) == set()


def test_get_exchange(api: Api, make_exchange) -> None:
    exchange = make_exchange("what?", "that", [noise_png(5)], tenant="acme", user="zed",
                             source_url="https://example.com/x.png")
    api.journal.append(exchange)  # visible before ingestion: the journal is the source of truth
    body = api.client.get(f"/exchanges/{exchange.id}", headers=A).json()
    assert body["id"] == exchange.id and body["question"] == "what?" and body["answer"] == "that"
    assert body["user"] == "zed" and body["usage"]["total_tokens"] == 15
    assert body["images"][0]["sha256"] == exchange.images[0].sha256
    assert body["images"][0]["source_url"] == "https://example.com/x.png"
    assert body["images"][0]["url"].endswith(f"/images/{exchange.images[0].sha256}")


# (body, param): the field at fault, or None when the body as a whole is (one of `text` or `image`).
BAD_SEARCHES: list[tuple[object, str | None]] = [
    ({}, None),
    ({"text": "x", "image": "data:image/png;base64,AAAA"}, None),
    ({"text": "   "}, None),
    ({"text": "x", "limit": 0}, "limit"),
    ({"text": "x", "limit": 101}, "limit"),
    ({"text": "x", "target": "everything"}, "target"),
    ({"text": "x", "filters": {"time_from": "yesterday"}}, "filters.time_from"),
    ({"text": "x", "filters": {"time_from": "2026-02-01", "time_to": "2026-01-01"}}, "filters"),
    ({"text": "x", "filters": {"colour": "red"}}, "filters.colour"),
    ({"text": "x", "time_from": "2026-02-01"}, "time_from"),  # filters are nested under `filters`
    ({"text": "x", "unknown": 1}, "unknown"),
    ({"image": "data:image/png;base64,!!!"}, "image"),
    ({"image": "data:image/png;base64,aGVsbG8="}, "image"),
    ({"image": "file:///etc/passwd"}, "image"),
    (["text", "x"], None),
]


def test_bad_search_requests_are_openai_shaped_400s(api: Api) -> None:
    for body, param in BAD_SEARCHES:
        response = api.client.post("/search", headers=A, json=body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert error["type"] == "invalid_request_error" and error["message"], body
        assert error["param"] == param, (body, error)
        assert not error["message"].startswith("Value error"), error


def test_malformed_json_and_bad_ids_are_not_500s(api: Api) -> None:
    response = api.client.post("/search", headers={**A, "content-type": "application/json"}, content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.json()["error"]["message"].startswith("request body is not valid JSON")
    assert api.client.get("/images/not-a-hash", headers=A).status_code == 404
    assert api.client.get("/exchanges/does-not-exist", headers=A).status_code == 404


def test_memory_disabled_is_a_clear_503() -> None:
    from gateway.api.memory import router

    app = FastAPI()
    install_error_handlers(app)
    wire(app, settings=Settings(_env_file=None), auth=Authenticator({}, "default"))
    app.include_router(router)  # included, but no Memory wired: VISIONRAG_MEMORY_ENABLED=false
    with TestClient(app) as client:
        response = client.post("/search", json={"text": "x"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "memory_disabled"


def test_search_body_over_the_limit_is_413(api: Api) -> None:
    response = api.client.post("/search", headers=A, json={"text": "x" * (2 << 20)})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_stats_show_a_tenant_its_own_numbers_and_an_operator_everything(api: Api, make_exchange) -> None:
    ingest(api, make_exchange("q", "a", [noise_png(1)], tenant="acme"),
           make_exchange("q", "a", [noise_png(2)], tenant="bravo"),
           make_exchange("q", "a", [noise_png(3)], tenant="bravo"))
    api.journal.append(make_exchange("q2", "a2", [], tenant="acme"))
    api.journal.append(make_exchange("q3", "a3", [], tenant="bravo"))
    api.journal.append(make_exchange("q4", "a4", [], tenant="bravo"))

    assert api.client.get("/memory/stats", headers=A).json() == {"tenant": "acme", "backlog": 1, "points": 1}
    assert api.client.get("/memory/stats", headers=B).json() == {"tenant": "bravo", "backlog": 2, "points": 2}
    assert api.client.get("/memory/stats").status_code == 401

    stats = api.client.get("/memory/stats", headers=OPS).json()
    assert stats["backlog"] == 3 and stats["journal"] == 6
    assert stats["store"]["points"] == 3 and stats["worker"]["exchanges"] == 3
    assert stats["tenants"] == {"acme": {"points": 1, "backlog": 1}, "bravo": {"points": 2, "backlog": 2},
                                "default": {"points": 0, "backlog": 0}}


def test_open_gateway_history_is_reachable_with_a_default_tenant_key(api: Api, make_exchange) -> None:
    # Recorded while the gateway was open (tenant `default`), read after keys were turned on.
    before = make_exchange("what did we say before keys?", "the open gateway's answer", [noise_png(7)])
    ingest(api, before)
    assert before.tenant == "default"
    hits = api.client.post("/search", headers=D, json={"text": "the open gateway's answer"}).json()["data"]
    assert [h["exchange_id"] for h in hits] == [before.id]
    assert api.client.get(f"/exchanges/{before.id}", headers=D).status_code == 200
    assert api.client.get(f"/images/{before.images[0].sha256}", headers=D).status_code == 200
    # ...and only with that key.
    assert api.client.post("/search", headers=A, json={"text": "the open gateway's answer"}).json()["data"] == []
    assert api.client.get(f"/exchanges/{before.id}", headers=A).status_code == 404
    assert api.client.get(f"/exchanges/{before.id}", headers=OPS).status_code == 403  # operators read no rows


def test_store_outage_is_a_503_not_a_500(journal: Journal, blobs: BlobStore, embedder: ClipEmbedder,
                                         tmp_path: Path) -> None:
    from gateway.memory.store.remote import RemoteStore
    from tests.plugins.gateway_server import free_port

    down = RemoteStore("c", url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    memory = Memory(journal, blobs, embedder, down, IngestWorker(journal, blobs, embedder, down),
                    ImageLoader.from_settings(Settings(_env_file=None)))
    app = FastAPI()
    install_error_handlers(app)
    wire(app, settings=Settings(_env_file=None), auth=Authenticator({}, "default"), memory=memory)
    app.include_router(memory_router)
    with TestClient(app) as client:
        response = client.post("/search", json={"text": "anything"})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "memory_unavailable"
        assert "127.0.0.1" not in error["message"] and "Qdrant" not in error["message"]  # said, not shown
        assert client.get("/memory/stats").json()["store"]["error"]  # the open gateway's operator sees why


def test_search_text_targets_and_fusion(api: Api, make_exchange) -> None:
    """`terms` (BM25) and `text` (sentence passages) are targets of their own; `all` fuses them with
    CLIP text->image; an image query cannot use the text-only targets."""
    ingest(api, make_exchange("what does the error dialog say?", "It shows ERR_QUOTA_7731: the storage quota "
                              "is used up.", tenant="acme"),
           make_exchange("what is in this diagram?", "Three services behind a load balancer.", tenant="acme"),
           make_exchange("other tenant", "ERR_QUOTA_7731 as well", tenant="bravo"))
    for target in ("terms", "all"):
        found = api.client.post("/search", headers=A, json={"text": "ERR_QUOTA_7731", "target": target}).json()
        assert "ERR_QUOTA_7731" in found["data"][0]["answer"] and found["target"] == target
        assert all("bravo" not in hit["answer"] for hit in found["data"])
    meaning = api.client.post("/search", headers=A, json={"text": "a load balancer in front of services",
                                                           "target": "text"}).json()
    assert meaning["data"][0]["answer"] == "Three services behind a load balancer."
    refused = api.client.post("/search", headers=A, json={"image": data_url(noise_png(1)), "target": "text"})
    assert refused.status_code == 400
