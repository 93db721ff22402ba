"""End to end: the real gateway process (uvicorn), the real vLLM server (tiny VLM), the openai SDK,
the tiny random-weight CLIP through fastembed, and real Qdrant engines.

- Chats become searchable: by the same image, by the exact answer text, narrowed by filters, and never
  across tenants; on both adapters (embedded qdrant-edge, and qdrant-client in local mode standing in
  for a Qdrant server, which cannot run here).
- SIGKILL during ingest loses nothing and duplicates nothing.
- A Qdrant that is down costs chats nothing: the backlog grows, then drains once a store is back.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.journal import Exchange, ImageRef
from gateway.journal.disk import DiskBlobStore
from gateway.journal.sqlite import SQLiteJournal
from tests.gateway.memory.conftest import noise_png
from tests.plugins.gateway_server import GatewayProcess, free_port
from tests.plugins.media import data_url, image_message

pytestmark = pytest.mark.slow

KEYS = "acme:key-a,bravo:key-b"
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
COLLECTION = "visionrag_exchanges"


def memory_env(clip_cache: Path, adapter: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "VISIONRAG_MEMORY_ENABLED": "true",
        "VISIONRAG_FASTEMBED_CACHE_DIR": str(clip_cache),
        "VISIONRAG_INGEST_POLL_INTERVAL_S": "0.1",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }
    if adapter == "qdrant-client":
        env["VISIONRAG_QDRANT_LOCAL_PATH"] = str(data_dir / "qdrant-local")
    return env


def start(start_gateway: Callable[..., GatewayProcess], upstream: str, env: dict[str, str],
          data_dir: Path) -> GatewayProcess:
    # HF_HUB_OFFLINE reaches the gateway because the test process sets it (conftest) and the child
    # inherits the environment; the fixture passes only VISIONRAG_* settings.
    data_dir.mkdir(parents=True, exist_ok=True)
    return start_gateway(upstream, data_dir=data_dir, **{k: v for k, v in env.items() if k.startswith("VISIONRAG_")})


def chat(gateway: GatewayProcess, model: str, image: bytes | None, text: str, *, key: str, user: str) -> str:
    """One chat through the gateway with the openai SDK; returns the exchange id the gateway recorded."""
    client = gateway.client(api_key=key)
    messages = image_message(data_url(image), text) if image else [{"role": "user", "content": text}]
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, max_tokens=8, temperature=0, user=user
    )
    raw.parse()  # a valid completion
    return raw.headers["x-visionrag-exchange-id"]


def wait_drained(gateway: GatewayProcess, timeout_s: float = 60.0, headers: dict | None = None) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = httpx.get(gateway.url + "/memory/stats", headers=headers or A, timeout=10).json()
        if stats["backlog"] == 0:
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"backlog not drained: {stats}\n{gateway.log_tail()}")
        time.sleep(0.1)


def search(gateway: GatewayProcess, body: dict, headers: dict = A) -> list[dict]:
    response = httpx.post(gateway.url + "/search", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def stored_exchange_ids(adapter: str, data_dir: Path) -> Counter[str]:
    """Points per exchange id, read straight from the store's files (the gateway must be stopped)."""
    if adapter == "edge":
        import qdrant_edge as qe

        shard = qe.EdgeShard.load(str(data_dir / "qdrant" / COLLECTION))
        try:
            records, _ = shard.scroll(qe.ScrollRequest(limit=100_000, with_payload=True, with_vector=False))
        finally:
            shard.close()
        return Counter(r.payload["exchange_id"] for r in records)
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(data_dir / "qdrant-local"))
    try:
        records, _ = client.scroll(COLLECTION, limit=100_000, with_payload=True)
    finally:
        client.close()
    return Counter(r.payload["exchange_id"] for r in records)


@pytest.mark.parametrize("adapter", ["edge", "qdrant-client"])
def test_chats_are_searchable_by_image_and_answer_scoped_and_filtered(
    adapter: str, vllm_server, start_gateway, clip_cache: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    gateway = start(start_gateway, vllm_server.base_url,
                    memory_env(clip_cache, adapter, data_dir, VISIONRAG_API_KEYS=KEYS), data_dir)
    model = vllm_server.model
    first = chat(gateway, model, noise_png(1), "What is in this picture?", key="key-a", user="alice")
    second = chat(gateway, model, noise_png(2), "Describe the colours.", key="key-a", user="bob")
    text_only = chat(gateway, model, None, "Say hello.", key="key-a", user="alice")
    theirs = chat(gateway, model, noise_png(1), "What is in this picture?", key="key-b", user="alice")
    wait_drained(gateway)

    # Same image -> that exchange first, with a perfect score, and not the other tenant's same image.
    hits = search(gateway, {"image": data_url(noise_png(1)), "target": "image"})
    assert hits[0]["exchange_id"] == first and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert theirs not in {h["exchange_id"] for h in hits}
    assert {h["exchange_id"] for h in hits} == {first, second}  # text-only has no image vector

    # The exact answer text, against `answer` -> that exchange first.
    exchange = httpx.get(f"{gateway.url}/exchanges/{first}", headers=A).json()
    assert exchange["answer"] and exchange["user"] == "alice" and exchange["model"] == model
    hits = search(gateway, {"text": exchange["answer"], "target": "answer"})
    top = [h["exchange_id"] for h in hits if h["score"] == pytest.approx(hits[0]["score"], abs=1e-5)]
    assert first in top and hits[0]["answer"] == exchange["answer"]  # ties only if the answers are equal
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)

    # The image URL in a result is served by the gateway, to its tenant only.
    image_url = search(gateway, {"image": data_url(noise_png(1)), "target": "image"})[0]["image_url"]
    assert httpx.get(image_url, headers=A).content == noise_png(1)
    assert httpx.get(image_url, headers={"Authorization": "Bearer nope"}).status_code == 401

    # Filters narrow; tenants never mix.
    def ids(filters: dict, headers: dict = A) -> set[str]:
        return {h["exchange_id"] for h in search(gateway, {"text": "hello", "filters": filters}, headers)}

    assert ids({}) == {first, second, text_only}
    assert ids({"user": "bob"}) == {second}
    assert ids({"model": model}) == {first, second, text_only}
    assert ids({"model": "some-other-model"}) == set()
    second_time = httpx.get(f"{gateway.url}/exchanges/{second}", headers=A).json()["time"]
    assert ids({"time_from": second_time}) == {second, text_only}
    assert ids({}, B) == {theirs}
    assert httpx.get(f"{gateway.url}/exchanges/{first}", headers=B).status_code == 404


def _prefill(data_dir: Path, count: int) -> list[str]:
    """Queue `count` image exchanges in the journal, as chats would (the gateway is not running yet)."""
    journal = SQLiteJournal(data_dir / "journal.sqlite3")
    blobs = DiskBlobStore(data_dir / "images")
    ids = []
    for n in range(count):
        sha = blobs.put(noise_png(1000 + n, size=(224, 224)))
        exchange_id = uuid.uuid4().hex
        journal.append(Exchange(
            id=exchange_id, created_at=time.time(), endpoint="chat.completions", model="tiny", tenant="default",
            user=None, messages=[{"role": "user", "text": f"question {n}"}], images=[ImageRef(sha, "image/png")],
            answer=f"answer {n}", finish_reason="stop", usage=None, latency_ms=1.0,
        ))
        ids.append(exchange_id)
    journal.close()
    return ids


@pytest.mark.parametrize("adapter", ["edge", "qdrant-client"])
def test_sigkill_during_ingest_loses_and_duplicates_nothing(
    adapter: str, vllm_server, start_gateway, clip_cache: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    queued = _prefill(data_dir, 800)
    # Batches of 4: many small store writes, so the kill lands between an upsert and its journal mark.
    env = memory_env(clip_cache, adapter, data_dir, VISIONRAG_EMBED_BATCH_SIZE="4")
    gateway = start(start_gateway, vllm_server.base_url, env, data_dir)
    # Kill while the worker is mid-backlog: some exchanges ingested, others still queued.
    deadline = time.monotonic() + 60
    while True:
        stats = httpx.get(gateway.url + "/memory/stats", timeout=10).json()
        if stats["worker"]["exchanges"] > 0 and stats["backlog"] > 100:
            break
        assert time.monotonic() < deadline and stats["backlog"] > 100, f"no mid-ingest moment seen: {stats}"
        time.sleep(0.01)
    gateway.kill()
    journal = SQLiteJournal(data_dir / "journal.sqlite3")
    left = journal.backlog()
    journal.close()
    assert 0 < left < len(queued)

    gateway.start()
    chatted = [chat(gateway, vllm_server.model, noise_png(n), "What is this?", key="x", user="u")
               for n in range(3)]
    wait_drained(gateway, timeout_s=120)
    gateway.stop()
    points = stored_exchange_ids(adapter, data_dir)
    assert set(points) == set(queued) | set(chatted)  # every exchange found after the restart
    assert set(points.values()) == {1}  # each exactly once (one image -> one point)


def test_store_down_chats_succeed_backlog_grows_then_drains(
    vllm_server, start_gateway, clip_cache: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    nowhere = f"http://127.0.0.1:{free_port()}"  # a Qdrant server URL where nothing listens
    gateway = start(start_gateway, vllm_server.base_url,
                    memory_env(clip_cache, "edge", data_dir, VISIONRAG_QDRANT_URL=nowhere), data_dir)
    ids = [chat(gateway, vllm_server.model, noise_png(n), "What is this?", key="x", user="u") for n in range(6)]
    stats = httpx.get(gateway.url + "/memory/stats", timeout=10).json()
    assert stats["backlog"] == 6 and stats["worker"]["exchanges"] == 0
    deadline = time.monotonic() + 30
    while not httpx.get(gateway.url + "/memory/stats", timeout=10).json()["worker"]["retrying"]:
        assert time.monotonic() < deadline, gateway.log_tail()
        time.sleep(0.1)
    failing = httpx.post(gateway.url + "/search", json={"text": "anything"}, timeout=30)
    assert failing.status_code == 503 and failing.json()["error"]["code"] == "memory_unavailable"
    gateway.stop()

    # The embedded store is back: same data dir, no Qdrant URL.
    gateway.env.pop("VISIONRAG_QDRANT_URL")
    gateway.start()
    ids.append(chat(gateway, vllm_server.model, noise_png(9), "And this?", key="x", user="u"))
    wait_drained(gateway)
    hits = search(gateway, {"image": data_url(noise_png(3)), "target": "image", "limit": 20})
    assert hits[0]["exchange_id"] == ids[3]
    assert {h["exchange_id"] for h in hits} == set(ids)
    gateway.stop()
    assert set(stored_exchange_ids("edge", data_dir).values()) == {1}
