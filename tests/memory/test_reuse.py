"""Vectors computed to retrieve for a chat are the ones that chat's ingest stores, not computed twice."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np

from gateway.journal import BlobStore, Exchange, ImageRef, Journal
from gateway.memory.retrieval import RecallQuery, Thresholds
from gateway.memory.reuse import VectorReuse
from gateway.memory.service import Memory
from gateway.memory.store.base import SearchFilter
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


def test_a_chat_s_ingest_takes_what_its_retrieval_computed(tmp_path: Path, clip_cache: Path, monkeypatch) -> None:
    # Built as the gateway builds it (an empty VectorReuse once read as "none" and the worker kept nothing).
    settings = Settings(_env_file=None, data_dir=tmp_path, fastembed_cache_dir=clip_cache)
    journal = Journal(tmp_path / "journal.sqlite3")
    blobs = BlobStore(tmp_path / "images")
    memory = Memory.from_settings(settings, journal, blobs)
    memory.store.ensure_schema()
    memory.embedder.load()
    memory.text.load()
    try:
        question, image = "which service owns the orders table?", noise_png(7)
        sha = blobs.put(image)
        memory.retriever.recall(RecallQuery(question, image, sha), SearchFilter("default"), k=4,
                                thresholds=Thresholds())
        computed = {"image": memory.embedder.embed_images([image])[0],
                    "question": memory.embedder.embed_texts([question])[0]}

        calls: list[str] = []
        for name in ("embed_images", "embed_texts"):
            real = getattr(memory.embedder, name)
            monkeypatch.setattr(memory.embedder, name,
                                lambda items, _real=real, _name=name: (items and calls.append(_name)) or _real(items))
        journal.append(Exchange(
            id=uuid.uuid4().hex, created_at=time.time(), endpoint="chat.completions", model="m", tenant="default",
            user=None, messages=[{"role": "user", "text": question}], images=[ImageRef(sha, "image/png")],
            answer="the orders service", finish_reason="stop", usage=None, latency_ms=1.0))
        assert memory.worker.drain() == 1

        # The image and both encoders' question vectors came from retrieval; only the answer was embedded.
        assert memory.worker.reuse.reused == 3
        assert calls == ["embed_texts"]
        for using, vector in computed.items():
            hit = memory.store.query([_probe(vector, using)], SearchFilter("default"), 1)[0]
            assert hit.score > 0.999
    finally:
        memory.store.close()
        journal.close()


def _probe(vector: np.ndarray, using: str):
    from gateway.memory.store.base import Probe

    return Probe(vector.tolist(), using)
