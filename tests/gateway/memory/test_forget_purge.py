"""Forgetting leaves nothing in the vector store's files (issue 16 §2): not the exchange's text, not its
BM25 terms, not the client's image URL, once the store's purge has run.

Qdrant only marks deleted points: their vectors and payload stay in the segment files and their
upserts in the WAL. The BM25 vector is a hashed bag of the question's and answer's words, so its term
ids (fastembed's murmur3 of each stemmed word: the same stemmer and hash recover the words) are scanned
for like the text. The scan looks for each id as a little-endian uint32 (how an id is written raw) and
as a big-endian one (how the WAL's CBOR writes it), for the vector as the engine stores it in a segment
(ids bit-packed, so neither form: the bytes come from the engine itself, see `stored_terms`), and for
the exchange's stored image vector.

Which ids: those of words that only the forgotten exchange uses (invented words and random tokens).
They are checked to be absent from every other exchange's BM25 vector, and a 4-byte id that the
store's files hold already before the exchange is written (a chance match in other bytes, ~1 in 2^32
per position) is left out of the scan, so what the scan finds after the purge is the exchange's own.

The embedded store (Qdrant Edge) is tested for all of it. A Qdrant server cannot run here; what can be
checked of the server adapter through qdrant-client's local mode is in the last tests (local mode
ignores optimizer and WAL settings, so only that they are sent and accepted is checked).
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.history.forget import Forgetter
from gateway.images import ImageLoader
from gateway.journal import BlobStore, Exchange, ImageRef
from gateway.journal.disk import DiskBlobStore
from gateway.journal.sqlite import SQLiteJournal
from gateway.memory.embed import ClipEmbedder
from gateway.memory.forget_points import StorePoints
from gateway.memory.ingest import IngestWorker
from gateway.memory.points import point_id
from gateway.memory.purge import PurgeScheduler
from gateway.memory.search import Searcher
from gateway.memory.service import Memory
from gateway.memory.store.base import Probe, SearchFilter
from gateway.memory.store.edge import EdgeStore
from gateway.memory.store.points import StorePoint, rfc3339
from gateway.memory.store.remote import VACUUM, WAL, RemoteStore
from gateway.memory.store.schema import Sparse
from gateway.memory.text_embed import TextEncoders
from gateway.memory.texts import JournalTexts
from gateway.settings import Settings
from tests.gateway.memory.conftest import noise_png
from tests.gateway.memory.test_forget import found_in

TENANT = "acme"


def exchange(blobs: BlobStore, question: str, answer: str, png: bytes, source_url: str | None = None) -> Exchange:
    return Exchange(
        id=uuid.uuid4().hex, created_at=time.time(), endpoint="chat.completions", model="tiny-vlm", tenant=TENANT,
        user=None, messages=[{"role": "user", "text": question}], images=[ImageRef(blobs.put(png), "image/png", source_url)],
        answer=answer, finish_reason="stop", usage=None, latency_ms=1.0)


def target(blobs: BlobStore) -> Exchange:
    """The exchange to forget: invented words and random tokens no other exchange uses, and an image
    URL that is a pre-signed link."""
    token = uuid.uuid4().hex
    return exchange(
        blobs,
        f"Why does the quorflaxian gearbox of unit {token[:12]} grind near the vintrobel valve?",
        f"The zellmorphic bearing {token[12:24]} wore out; replace the skarnwick shim and recalibrate the "
        f"plindertorque sensor {token[24:]}.",
        noise_png(901),
        source_url=f"https://bucket.example.com/p.png?X-Amz-Signature={uuid.uuid4().hex}",
    )


def others(blobs: BlobStore) -> list[Exchange]:
    return [
        exchange(blobs, "How do I reset the router?", "Hold the reset button for ten seconds.", noise_png(902)),
        exchange(blobs, "What port does the metrics endpoint use?", "Port 9100 serves the metrics.", noise_png(903)),
        exchange(blobs, "Which gearbox oil should I use?", "A synthetic gear oil rated for the load.", noise_png(904)),
    ]


def terms_of(text: TextEncoders, one: Exchange) -> Sparse:
    """The BM25 vector ingest stores for an exchange (the same model and input, see IngestWorker)."""
    return text.terms_document([f"{one.question}\n{one.answer}"])[0]


def stored_terms(vector: Sparse, scratch: Path) -> bytes:
    """`vector` as Qdrant Edge writes it into a segment's sparse vector storage (bit-packed ids, then the
    weights), taken from a scratch shard that holds only it: the bytes to look for in the real one."""
    store = EdgeStore(scratch)
    store.ensure_schema()
    store.upsert([StorePoint(str(uuid.uuid4()), {"terms": vector}, {"tenant": TENANT})])
    store.close()
    (page,) = scratch.glob("segments/*/vector_storage-terms/store/page_0.dat")
    record = page.read_bytes()
    return record[:len(record.rstrip(b"\0"))]


def id_needles(ids: set[int]) -> dict[str, bytes]:
    return {f"term {i} {order}": struct.pack(fmt, i) for i in ids for order, fmt in (("le", "<I"), ("be", ">I"))}


class Setup:
    def __init__(self, root: Path, embedder: ClipEmbedder, text: TextEncoders) -> None:
        self.root = root
        self.journal = SQLiteJournal(root / "journal.sqlite3")
        self.blobs = DiskBlobStore(root / "images")
        self.store = EdgeStore(root / "qdrant" / "shard")
        self.store.ensure_schema()
        self.worker = IngestWorker(self.journal, self.blobs, embedder, self.store, text=text)
        self.forgetter = Forgetter(self.journal, self.blobs, StorePoints(self.store))
        self.searcher = Searcher(embedder, self.store, JournalTexts(self.journal), text)

    def ingest(self, *exchanges: Exchange) -> None:
        for one in exchanges:
            self.journal.append(one)
        self.worker.drain()

    def forget(self, one: Exchange) -> None:
        assert self.forgetter.forget(TENANT, [one.id]) == [one.id]
        self.forgetter.finish()  # the store step, whether forget() did it or left it to the finisher

    def found_ids(self, text: str) -> list[str]:
        hits = self.searcher.search(SearchFilter(TENANT), text=text, target="terms", limit=10).hits
        return [hit.exchange_id for hit in hits]

    def close(self) -> None:
        self.store.close()
        self.journal.close()


@pytest.fixture
def setup(tmp_path: Path, embedder: ClipEmbedder, text_encoders: TextEncoders) -> Iterator[Setup]:
    made = Setup(tmp_path / "data", embedder, text_encoders)
    yield made
    made.close()


def needles_for(setup: Setup, text: TextEncoders, gone: Exchange, kept: list[Exchange], scratch: Path) -> dict[str, bytes]:
    """What of `gone` to look for, chosen before `gone` is written (see the module docstring)."""
    vector = terms_of(text, gone)
    kept_ids = {i for one in kept for i in terms_of(text, one).indices}
    own = set(vector.indices) - kept_ids
    assert len(own) >= 8, "the invented words and tokens should give the exchange terms of its own"
    ids = id_needles(own)
    already = found_in(setup.root, ids)  # chance matches in what is stored so far
    ids = {name: needle for name, needle in ids.items() if name not in already}
    assert len(ids) >= 12
    return {"question": gone.question.encode(), "answer": gone.answer.encode(),
            "image url": str(gone.images[0].source_url).encode(), "terms as stored": stored_terms(vector, scratch),
            **ids}


def test_after_the_purge_no_file_holds_the_forgotten_exchange_s_terms_url_or_text(
        setup: Setup, text_encoders: TextEncoders, tmp_path_factory: pytest.TempPathFactory) -> None:
    kept, gone = others(setup.blobs), target(setup.blobs)
    setup.ingest(*kept)
    needles = needles_for(setup, text_encoders, gone, kept, tmp_path_factory.mktemp("scratch") / "shard")
    setup.ingest(gone)
    vector = setup.store.image_vector(TENANT, gone.images[0].sha256)
    assert vector is not None
    needles["image vector"] = struct.pack("<16f", *vector[:16])
    assert setup.found_ids("quorflaxian zellmorphic skarnwick") == [gone.id]
    stored = found_in(setup.root / "qdrant", needles)
    # The store's files hold the BM25 vector and the image vector (in the segment and the WAL, where
    # the ids are big-endian); never the texts or the client's URL (the journal has them).
    assert {"terms as stored", "image vector"} <= set(stored), stored
    assert any(name.endswith(" be") for name in stored)
    assert not {"question", "answer", "image url"} & set(stored)

    setup.forget(gone)
    assert setup.found_ids("quorflaxian zellmorphic skarnwick") == []
    assert setup.store.purge_pending_since() is not None
    left = found_in(setup.root, needles)
    # Deleting alone leaves them (as today's main leaves them for good): the purge is what removes them.
    assert {"terms as stored", "image vector"} <= set(left), left

    assert setup.store.purge_deleted() is True
    assert setup.store.purge_pending_since() is None
    assert found_in(setup.root, needles) == {}
    setup.close()  # every file let go of, flushed
    assert found_in(setup.root, needles) == {}

    # The rest is intact: reopened (replaying the WAL), the store still finds what was kept.
    reopened = Setup(setup.root, setup.worker.embedder, text_encoders)
    try:
        assert reopened.store.count(TENANT) == len(kept)
        assert reopened.found_ids("router reset button") == [kept[0].id]
        assert reopened.found_ids("metrics port 9100")[0] == kept[1].id
        assert reopened.store.purge_deleted() is False  # nothing pending: no child, no outage
    finally:
        reopened.close()


def test_a_purge_after_an_earlier_purge_and_an_index_build(
        setup: Setup, text_encoders: TextEncoders, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Points in segments that a purge or an index build rewrote (immutable ones, not the appendable
    segment new points go to), and a WAL already rotated once: the second purge still removes all."""
    kept, gone = others(setup.blobs), target(setup.blobs)
    setup.ingest(*kept)
    needles = needles_for(setup, text_encoders, gone, kept, tmp_path_factory.mktemp("scratch") / "shard")
    setup.ingest(gone, first := exchange(setup.blobs, "first to go", "an answer", noise_png(905)))
    setup.forget(first)
    assert setup.store.purge_deleted() is True
    setup.store.optimize()  # the maintenance child
    assert "terms as stored" in found_in(setup.root / "qdrant", needles)

    setup.forget(gone)
    assert setup.store.purge_deleted() is True
    assert found_in(setup.root, needles) == {}
    assert setup.found_ids("router reset button") == [kept[0].id]


def test_a_purge_that_drops_an_index_has_the_next_quiet_maintenance_rebuild_it(
        tmp_path: Path, embedder: ClipEmbedder) -> None:
    """The purge rewrites an indexed segment without building its index (minutes at 100k, with the store
    unavailable): searches of it are brute force until the ingest worker's maintenance rebuilds it,
    which it does at its next quiet time even with no new points."""
    import numpy as np

    from gateway.memory.ingest import MaintenancePolicy

    journal, blobs = SQLiteJournal(tmp_path / "journal.sqlite3"), DiskBlobStore(tmp_path / "images")
    store = EdgeStore(tmp_path / "shard")
    store.ensure_schema()
    # Past Qdrant's indexing threshold (~10 MB of vectors), so that optimize() builds an HNSW index.
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((6000, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.upsert([StorePoint(point_id(f"ex{n}", 0), {"image": vectors[n].tolist()},
                             {"exchange_id": f"ex{n}", "tenant": TENANT, "ts": 0.0, "time": rfc3339(0)})
                  for n in range(6000)])
    worker = IngestWorker(journal, blobs, embedder, store,
                          maintenance=MaintenancePolicy(min_new_points=1_000_000, quiet_s=0.01))
    try:
        store.optimize()
        indexed = store.stats().indexed_vectors
        assert indexed is not None and indexed >= 6000 and not store.stats().index_wanted
        store.delete_exchanges(TENANT, ["ex7"])
        assert store.purge_deleted() is True
        assert store.stats().index_wanted  # the indexed segment it rewrote has no index now
        assert (store.stats().indexed_vectors or 0) < indexed
        time.sleep(0.05)
        worker._maybe_maintain()  # quiet, and far fewer than min_new_points new points: builds anyway
        assert worker.stats.optimizations == 1
        assert not store.stats().index_wanted and (store.stats().indexed_vectors or 0) >= indexed - 1
        hits = store.query([Probe(vectors[42].tolist(), "image")], SearchFilter(TENANT), 1)
        assert hits[0].exchange_id == "ex42"
    finally:
        store.close()
        journal.close()


def test_the_memory_service_purges_by_itself_once_the_time_is_up(
        tmp_path: Path, embedder: ClipEmbedder, text_encoders: TextEncoders) -> None:
    setup = Setup(tmp_path / "data", embedder, text_encoders)
    kept, gone = others(setup.blobs), target(setup.blobs)
    setup.ingest(*kept, gone)
    memory = Memory(setup.journal, setup.blobs, embedder, setup.store, setup.worker,
                    ImageLoader.from_settings(Settings(_env_file=None)), purge_after_s=2.0)
    memory.purger.poll_s = 0.1
    memory.start()
    try:
        terms = {"terms as stored": stored_terms(terms_of(text_encoders, gone), tmp_path / "scratch")}
        deleted_at = time.time()
        setup.forget(gone)
        assert found_in(setup.root, terms)
        deadline = time.monotonic() + 120
        while not memory.purger.purges and time.monotonic() < deadline:
            time.sleep(0.1)
        assert setup.store.purge_pending_since() is None and memory.purger.purges == 1
        assert time.time() - deleted_at >= 2.0  # not before its time: one purge covers a window
        assert found_in(setup.root, terms) == {}
        assert setup.store.count(TENANT) == len(kept)
    finally:
        asyncio.run(memory.stop())
        setup.journal.close()


def test_the_scheduler_waits_for_the_oldest_deletion_s_time_and_retries_a_postponed_purge(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "shard")
    store.ensure_schema()
    scheduler = PurgeScheduler(store, after_s=600.0, poll_s=30.0, retry_s=45.0)
    try:
        assert scheduler.run_once() == 30.0  # nothing pending: the next look in poll_s
        store.delete_exchanges(TENANT, ["nothing-to-delete"])  # a deletion, whatever it matched
        since = store.purge_pending_since()
        assert since is not None
        assert scheduler.run_once(now=since + 590.0) == pytest.approx(10.0)  # due in 10 s
        store._maintenance = True  # an index build holds the store: the purge is postponed
        assert scheduler.run_once(now=since + 600.0) == 45.0 and scheduler.purges == 0
        store._maintenance = False
        assert scheduler.run_once(now=since + 645.0) == 30.0 and scheduler.purges == 1
        assert store.purge_pending_since() is None
    finally:
        store.close()


def test_hits_take_the_client_image_url_from_the_journal_not_the_store(setup: Setup) -> None:
    """Points no longer carry `image_url`; /search's `source_url` still comes back, from the journal,
    and a point written by an earlier version (URL in its payload) answers the journal's too."""
    with_url = exchange(setup.blobs, "where was this taken?", "by the harbour", noise_png(906),
                        source_url="https://example.com/harbour.png")
    setup.ingest(with_url)
    hits = setup.searcher.search(SearchFilter(TENANT), text="harbour", target="terms", limit=5).hits
    assert [hit.source_url for hit in hits] == ["https://example.com/harbour.png"]
    # As an earlier version stored it: the URL in the point's payload.
    (point,) = setup.worker.prepare([with_url]).points
    point.payload["image_url"] = "https://stale.example.com/old.png"
    setup.store.upsert([point])
    hits = setup.searcher.search(SearchFilter(TENANT), text="harbour", target="terms", limit=5).hits
    assert [hit.source_url for hit in hits] == ["https://example.com/harbour.png"]
    # Another tenant's filter never gets it, even if its points answered.
    assert setup.searcher.search(SearchFilter("bravo"), text="harbour", target="terms", limit=5).hits == []


# --- the server adapter, through qdrant-client's local mode ---------------------------------------------


def test_server_points_carry_no_image_url(tmp_path: Path, embedder: ClipEmbedder, text_encoders: TextEncoders) -> None:
    journal, blobs = SQLiteJournal(tmp_path / "journal.sqlite3"), DiskBlobStore(tmp_path / "images")
    store = RemoteStore("purge_test", location=":memory:")
    try:
        one = exchange(blobs, "q", "a", noise_png(907), source_url="https://bucket.example.com/x.png?sig=1")
        journal.append(one)
        IngestWorker(journal, blobs, embedder, store, text=text_encoders).drain()
        records, _ = store._client.scroll("purge_test", with_payload=True, limit=10)
        assert [r.payload["exchange_id"] for r in records] == [one.id]
        assert "image_url" not in records[0].payload
        assert "bucket.example.com" not in repr(records[0].payload)
        assert store.purge_pending_since() is None and store.purge_deleted() is False  # the server's job
    finally:
        store.close()
        journal.close()


def test_server_collections_are_created_to_vacuum_deleted_points_at_once() -> None:
    """What the collection is created with (local mode accepts these settings but ignores them: its
    get_collection answers Qdrant's defaults, so the request is what can be checked here)."""
    from qdrant_client import models

    from gateway.memory.store.remote import _vacuums_late, collection_layout

    layout = collection_layout()
    assert layout["optimizers_config"] is VACUUM and layout["wal_config"] is WAL
    # Vacuum as soon as a segment holds one deleted point, in any segment the server lets it (100 is
    # its minimum); WAL segments of 1 MB so that full ones, and the records in them, go sooner.
    assert VACUUM.deleted_threshold == 0.0 and VACUUM.vacuum_min_vector_number == 100
    assert WAL.wal_capacity_mb == 1
    # The same request the server gets validates against the REST model of a collection creation.
    models.CreateCollection(vectors=layout["vectors_config"], sparse_vectors=layout["sparse_vectors_config"],
                            optimizers_config=VACUUM, wal_config=WAL)
    store = RemoteStore("created", location=":memory:")
    try:
        store.ensure_schema()  # local mode takes the same create_collection call
        # ... and answers Qdrant's defaults (0.2, 1000), as a collection made by an earlier version would
        # on a server: there ensure_schema sets VACUUM on it (a PATCH local mode does not take).
        assert _vacuums_late(store._client.get_collection("created"))
    finally:
        store.close()
