"""Vectors computed to retrieve for a chat are the ones that chat's ingest stores, not computed twice."""

from __future__ import annotations

import asyncio
import base64
import time
import tracemalloc
import uuid

import numpy as np

from gateway.journal import Exchange, ImageRef
from gateway.memory.retrieval import RecallQuery, Thresholds
from gateway.memory.reuse import VectorReuse
from gateway.memory.service import Memory
from gateway.memory.store.base import Probe, SearchFilter
from tests.gateway.memory.conftest import noise_png

MIB = 1 << 20


def test_each_vector_is_taken_once_per_encoder() -> None:
    reuse = VectorReuse()
    reuse.put_text("q", np.full(4, 2, dtype=np.float32))
    assert reuse.take_text("q", "minilm") is None  # one vector per encoder
    assert reuse.take_text("q")[0] == 2
    assert reuse.take_text("q") is None  # taken once
    assert reuse.reused == 1 and len(reuse) == 0 and reuse.nbytes == 0


def test_a_text_is_keyed_by_its_digest_and_never_kept() -> None:
    reuse, vector = VectorReuse(), np.ones(512, dtype=np.float32)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(32):  # 32 distinct 1 MiB questions, gone once put
            reuse.put_text(f"{n} " + "x" * MIB, vector)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < MIB // 2  # 32 vectors and their keys, not 32 MiB of questions
    assert reuse.take_text("5 " + "x" * MIB) is not None and reuse.take_text("5 " + "x" * (MIB - 1)) is None


def test_a_row_of_a_batch_does_not_keep_the_batch_alive() -> None:
    reuse = VectorReuse()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        batch = np.ones((2048, 512), dtype=np.float32)  # 4 MiB: a batch's vectors
        reuse.put_text("q", batch[0])
        del batch
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 64 * 1024
    assert reuse.take_text("q").tolist() == [1.0] * 512


def test_entries_are_bounded_in_bytes_the_oldest_dropped_first() -> None:
    reuse = VectorReuse(max_bytes=64 * 1024)
    for n in range(1000):
        reuse.put_text(f"q{n}", np.full(512, n, dtype=np.float32))  # 2 KiB each
    assert 0 < reuse.nbytes <= 64 * 1024 and 16 <= len(reuse) < 32
    assert reuse.take_text("q999")[0] == 999 and reuse.take_text("q0") is None
    assert VectorReuse(0).put_text("q", np.ones(4)) is None and len(VectorReuse(0)) == 0


def test_entries_not_taken_in_time_expire() -> None:
    now = [1000.0]
    reuse = VectorReuse(ttl_s=300, clock=lambda: now[0])
    reuse.put_text("asked a while ago", np.ones(4))
    now[0] += 200
    reuse.put_image("a" * 64, np.ones(4))
    assert len(reuse) == 2
    now[0] += 101  # the first is 301 s old, the second 101 s
    assert reuse.take_text("asked a while ago") is None
    assert len(reuse) == 1 and reuse.nbytes > 0
    now[0] += 200
    assert len(reuse) == 0 and reuse.nbytes == 0


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


def test_a_chat_that_is_never_recorded_leaves_no_vectors_behind(memory: Memory) -> None:
    now = [0.0]
    reuse = memory.worker.reuse
    reuse.clock = lambda: now[0]
    image = noise_png(9)
    sha = memory.blobs.put(image)
    # An 8 MiB question (a chat's whole last message): what is kept is three vectors, keyed by digests.
    question = "which service owns the orders table? " + "log line " * (MIB)
    memory.retriever.recall(RecallQuery(question, image, sha), SearchFilter("default"), k=4, thresholds=Thresholds())
    assert len(reuse) == 3 and reuse.nbytes < 16 * 1024
    # Its upstream failed: the exchange never reaches the journal, and nothing takes these.
    now[0] += reuse.ttl_s + 1
    assert len(reuse) == 0 and reuse.nbytes == 0


def test_an_image_asked_about_again_is_not_embedded_again(memory: Memory, monkeypatch) -> None:
    image = noise_png(8)
    sha = memory.blobs.put(image)
    memory.journal.append(_exchange("what does this blueprint show?", "a warehouse floor plan", sha))
    assert memory.worker.drain() == 1

    # Queries (search, retrieval) run the vision model through their batcher; ingest directly.
    queries = memory.retriever.embedder.image_runs  # type: ignore[attr-defined]
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
