"""The ingest worker: batches, marks only after the store acknowledged, retries, resumes, maintains."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.journal import BlobStore
from gateway.journal.sqlite import SQLiteJournal
from gateway.memory.embed import ClipEmbedder
from gateway.memory.ingest import Backoff, IngestWorker, MaintenancePolicy
from gateway.memory.store.base import SearchFilter, StoreUnavailable, VectorStore, probes_for
from gateway.memory.store.edge import EdgeStore
from gateway.memory.store.remote import RemoteStore
from tests.gateway.memory.conftest import noise_png
from tests.plugins.gateway_server import free_port


def down_store() -> RemoteStore:
    """A real qdrant-client aimed at a port where nothing listens: a Qdrant server that is down."""
    return RemoteStore("c", url=f"http://127.0.0.1:{free_port()}", timeout_s=2)


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def exchange_ids_in(store: VectorStore, tenant: str = "default") -> Counter[str]:
    """How many points hold text vectors per exchange (exactly one per stored exchange)."""
    hits = store.query(probes_for([1.0] + [0.0] * 511, "question"), SearchFilter(tenant), 100)
    return Counter(h.exchange_id for h in hits)


def test_drain_stores_every_kind_of_exchange(journal, blobs, embedder, store, make_exchange) -> None:
    two_images = make_exchange("compare", "left is noisier", [noise_png(1), noise_png(2)])
    text_only = make_exchange("what is 2+2?", "4", [])
    failed = make_exchange("q", "", [noise_png(3)], status="error")
    cut = make_exchange("describe", "it is a", [noise_png(4)], status="incomplete")
    for e in (two_images, text_only, failed, cut):
        journal.append(e)
    worker = IngestWorker(journal, blobs, embedder, store, batch_size=3)
    assert worker.drain() == 4
    assert journal.backlog() == 0
    assert store.count() == 4  # 2 + 1 + 0 + 1 points
    assert worker.stats.skipped == 1 and worker.stats.points == 4
    assert exchange_ids_in(store) == {two_images.id: 1, text_only.id: 1, cut.id: 1}
    image_hits = store.query(probes_for(embedder.embed_images([noise_png(2)])[0].tolist(), "image"), SearchFilter("default"), 1)
    assert image_hits[0].exchange_id == two_images.id and image_hits[0].image_index == 1


def test_marks_only_after_the_store_acknowledged_and_never_re_embeds(
    journal, blobs, embedder, make_exchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        journal.append(make_exchange(f"q{n}", f"a{n}", [noise_png(n)]))
    calls = Counter()
    real_embed = embedder.embed_images

    def counting(images: list) -> object:  # a spy around the real encoder
        calls["images"] += len(images)
        return real_embed(images)

    monkeypatch.setattr(embedder, "embed_images", counting)
    worker = IngestWorker(journal, blobs, embedder, down_store(), batch_size=10)
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            worker.run_once()
    assert journal.backlog() == 3  # nothing marked while the store is down
    assert calls["images"] == 3  # embedded once, not once per attempt

    edge = EdgeStore(tmp_path / "shard")
    worker.store = edge  # the store comes back
    assert worker.run_once() == 3
    assert journal.backlog() == 0 and edge.count() == 3 and calls["images"] == 3
    edge.close()


def test_resumes_after_restart_and_re_ingest_is_harmless(
    tmp_path: Path, blobs: BlobStore, embedder: ClipEmbedder, make_exchange
) -> None:
    journal = SQLiteJournal(tmp_path / "j.sqlite3")
    exchanges = [make_exchange(f"question {n}", f"answer {n}", [noise_png(n)]) for n in range(5)]
    for e in exchanges:
        journal.append(e)
    first = EdgeStore(tmp_path / "shard")
    worker = IngestWorker(journal, blobs, embedder, first, batch_size=2)
    assert worker.run_once() == 2
    # A crash between the store's acknowledgement and the journal mark: the next batch is upserted but
    # not marked, so it will be ingested again after the restart.
    unmarked = journal.pending(2)
    first.upsert(worker.prepare(unmarked).points)
    first.close()
    journal.close()

    journal = SQLiteJournal(tmp_path / "j.sqlite3")  # "restart": everything reopened from disk
    second = EdgeStore(tmp_path / "shard")
    assert journal.backlog() == 3
    assert IngestWorker(journal, blobs, embedder, second, batch_size=2).drain() == 3
    assert journal.backlog() == 0
    assert exchange_ids_in(second) == {e.id: 1 for e in exchanges}  # each exactly once
    second.close()
    journal.close()


def test_unusable_images_keep_the_text(journal, blobs, embedder, store, make_exchange) -> None:
    exchange = make_exchange("what is it?", "a cat", [noise_png(1), b"\x89PNG but corrupt"])
    exchange.images.append(type(exchange.images[0])("f" * 64, "image/png"))  # never stored in the BlobStore
    journal.append(exchange)
    worker = IngestWorker(journal, blobs, embedder, store)
    assert worker.drain() == 1
    assert worker.stats.images_unusable == 2
    assert store.count() == 1  # only the decodable image's point; it also holds the text vectors
    assert exchange_ids_in(store) == {exchange.id: 1}


def test_thread_retries_with_backoff_then_drains(journal, blobs, embedder, make_exchange, tmp_path: Path) -> None:
    worker = IngestWorker(journal, blobs, embedder, down_store(), poll_interval_s=0.05,
                          backoff=Backoff(initial_s=0.05, max_s=0.2))
    worker.start()
    try:
        for n in range(4):
            journal.append(make_exchange(f"q{n}", f"a{n}", [noise_png(n)]))
        wait_for(lambda: worker.stats.failures >= 3)
        assert worker.stats.retrying and "unreachable" in (worker.stats.last_error or "")
        assert journal.backlog() == 4  # the backlog grows while the store is down; chats are unaffected
        edge = EdgeStore(tmp_path / "shard")
        worker.store = edge
        wait_for(lambda: journal.backlog() == 0)
        assert edge.count() == 4 and not worker.stats.retrying
        journal.append(make_exchange("later", "still ingested", [noise_png(9)]))
        wait_for(lambda: journal.backlog() == 0)
        assert edge.count() == 5
    finally:
        worker.stop()
    assert not worker.running
    edge.close()


def test_backoff_doubles_up_to_its_ceiling() -> None:
    backoff = Backoff(initial_s=0.5, max_s=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_maintenance_runs_only_when_quiet_and_enough_new_points(
    journal, blobs, embedder, make_exchange, tmp_path: Path
) -> None:
    edge = EdgeStore(tmp_path / "shard")
    for n in range(3):
        journal.append(make_exchange(f"q{n}", f"a{n}", [noise_png(n)]))
    disabled = IngestWorker(journal, blobs, embedder, edge, maintenance=MaintenancePolicy(quiet_s=0))
    disabled.drain()
    disabled._maybe_maintain()
    assert disabled.stats.optimizations == 0

    busy = IngestWorker(journal, blobs, embedder, edge, maintenance=MaintenancePolicy(min_new_points=1, quiet_s=60))
    busy._maybe_maintain()  # activity just now: not quiet for 60 s
    assert busy.stats.optimizations == 0

    few = IngestWorker(journal, blobs, embedder, edge, maintenance=MaintenancePolicy(min_new_points=10, quiet_s=0.01))
    time.sleep(0.02)
    few._maybe_maintain()  # quiet, but 3 points are below the threshold
    assert few.stats.optimizations == 0

    quiet = IngestWorker(journal, blobs, embedder, edge, maintenance=MaintenancePolicy(min_new_points=1, quiet_s=0.01))
    time.sleep(0.02)
    quiet._maybe_maintain()
    assert quiet.stats.optimizations == 1 and quiet.stats.points_at_last_optimize == 3
    time.sleep(0.02)
    quiet._maybe_maintain()  # no new points since: nothing to do
    assert quiet.stats.optimizations == 1
    edge.close()


def test_worker_thread_runs_at_lower_cpu_priority(journal, blobs, embedder, store) -> None:
    worker = IngestWorker(journal, blobs, embedder, store, nice=7, poll_interval_s=0.05)
    worker.start()
    try:
        wait_for(lambda: worker.native_id is not None)
        process = os.getpriority(os.PRIO_PROCESS, 0)  # the calling thread: unchanged
        assert os.getpriority(os.PRIO_PROCESS, worker.native_id) == min(19, process + 7)
    finally:
        worker.stop()
