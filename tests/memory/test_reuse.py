"""Vectors computed to retrieve for a chat are the ones that chat's ingest stores, not computed twice."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.journal import BlobStore, Exchange, ImageRef, Journal
from gateway.memory.retrieval import RecallQuery, Thresholds
from gateway.memory.reuse import VectorReuse
from gateway.memory.service import Memory
from gateway.memory.store.base import Probe, SearchFilter
from gateway.settings import Settings
from tests.memory.conftest import noise_png


def test_each_vector_is_taken_once_and_the_oldest_are_dropped() -> None:
    reuse = VectorReuse(max_entries=2)
    for n in range(3):
        reuse.put_text(f"q{n}", np.full(4, n, dtype=np.float32))
    assert reuse.take_text("q0") is None  # dropped: over the bound
    assert reuse.take_text("q2", "minilm") is None  # one vector per encoder
    assert reuse.take_text("q2")[0] == 2
    assert reuse.take_text("q2") is None  # taken once
    assert reuse.reused == 1


@pytest.fixture
def memory(tmp_path: Path, clip_cache: Path) -> Iterator[Memory]:
    """Memory built as the gateway builds it (an empty VectorReuse once read as "none" there, and the
    worker kept nothing), its models loaded, its worker not started: tests drain it themselves."""
    settings = Settings(_env_file=None, data_dir=tmp_path, fastembed_cache_dir=clip_cache)
    journal = Journal(tmp_path / "journal.sqlite3")
    memory = Memory.from_settings(settings, journal, BlobStore(tmp_path / "images"))
    memory.store.ensure_schema()
    memory.embedder.load()
    memory.text.load()
    yield memory
    asyncio.run(memory.image_loader.fetcher.close())
    memory.store.close()
    journal.close()


def test_a_chat_s_ingest_takes_what_its_retrieval_computed(memory: Memory, monkeypatch) -> None:
    question, image = "which service owns the orders table?", noise_png(7)
    sha = memory.blobs.put(image)
    memory.retriever.recall(RecallQuery(question, image, sha), SearchFilter("default"), k=4, thresholds=Thresholds())
    computed = {"image": memory.embedder.embed_images([image])[0],
                "question": memory.embedder.embed_texts([question])[0]}

    calls: list[str] = []
    for name in ("embed_images", "embed_texts"):
        real = getattr(memory.embedder, name)
        monkeypatch.setattr(memory.embedder, name,
                            lambda items, _real=real, _name=name: (items and calls.append(_name)) or _real(items))
    memory.journal.append(_exchange(question, "the orders service", sha))
    assert memory.worker.drain() == 1

    # The image and both encoders' question vectors came from retrieval; only the answer was embedded.
    assert memory.worker.reuse.reused == 3
    assert calls == ["embed_texts"]
    for using, vector in computed.items():
        hit = memory.store.query([Probe(vector.tolist(), using)], SearchFilter("default"), 1)[0]
        assert hit.score > 0.999


def test_an_image_asked_about_again_is_not_embedded_again(memory: Memory, monkeypatch) -> None:
    image = noise_png(8)
    sha = memory.blobs.put(image)
    memory.journal.append(_exchange("what does this blueprint show?", "a warehouse floor plan", sha))
    assert memory.worker.drain() == 1

    # Queries (search, retrieval) run the vision model through their batcher; ingest directly.
    queries = memory.retriever.embedder.batchers["embed_images"]
    ingest_runs: list[int] = []
    real = memory.embedder.embed_images
    monkeypatch.setattr(memory.embedder, "embed_images",
                        lambda items: (items and ingest_runs.append(len(items))) or real(items))
    sources = memory.retriever.recall(RecallQuery("and the loading docks?", image, sha),
                                      SearchFilter("default"), k=4, thresholds=Thresholds())
    assert [s.answer for s in sources] == ["a warehouse floor plan"]  # found by its image
    found = asyncio.run(memory.search(SearchFilter("default"), image=_data_url(image), target="image"))
    assert found.hits[0].score > 0.999
    assert queries.runs == 0  # neither the chat's retrieval nor the search ran the vision model

    # The chat's own exchange is then ingested with that vector too.
    memory.journal.append(_exchange("and the loading docks?", "on the east side", sha))
    assert memory.worker.drain() == 1 and ingest_runs == []
    # Another tenant's identical image is embedded: a tenant learns nothing of another's images.
    memory.retriever.recall(RecallQuery("q", image, sha), SearchFilter("other"), k=4, thresholds=Thresholds())
    assert queries.runs == 1


def _exchange(question: str, answer: str, sha: str) -> Exchange:
    return Exchange(
        id=uuid.uuid4().hex, created_at=time.time(), endpoint="chat.completions", model="m", tenant="default",
        user=None, messages=[{"role": "user", "text": question}], images=[ImageRef(sha, "image/png")],
        answer=answer, finish_reason="stop", usage=None, latency_ms=1.0)


def _data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()
