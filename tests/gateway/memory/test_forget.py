"""Forgetting (issue 9 §3, issue 16 §2) on both store adapters: DELETE /exchanges/{id}, POST
/exchanges/forget, retention, deletion while ingest is behind, a SIGKILL in the middle of a deletion, a
store that refuses the deletion for a while, and who may still read (and cache) the images.

"Gone" is checked the hard way: after a deletion every file under the data directory (journal and its
WAL, the store's segments and WAL, images, thumbnails) is scanned for the question's and the answer's
bytes and for the image's bytes. The qdrant-client adapter runs in its persistent local mode inside
the data directory (standing in for a server, which cannot run here).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.api.deps import wire
from gateway.api.errors import install_error_handlers
from gateway.api.history import router as history_router
from gateway.api.memory import router as memory_router
from gateway.auth import Authenticator
from gateway.history.forget import Forgetter
from gateway.history.retention import DAY_S, Retention, sweep
from gateway.history.service import History
from gateway.history.thumbnails import Thumbnails
from gateway.history.thumbnails import name as thumbnail_name
from gateway.images import ImageLoader
from gateway.journal import BlobStore, Exchange, ImageRef, Journal
from gateway.journal.disk import DiskBlobStore
from gateway.journal.sqlite import SQLiteJournal
from gateway.memory.embed import ClipEmbedder
from gateway.memory.forget_points import StorePoints
from gateway.memory.ingest import IngestWorker
from gateway.memory.service import Memory
from gateway.memory.store.base import StoreUnavailable, VectorStore
from gateway.memory.store.edge import EdgeStore
from gateway.memory.store.remote import RemoteStore
from gateway.settings import Settings
from tests.gateway.memory.conftest import noise_png
from tests.plugins.media import data_url

ROOT = Path(__file__).resolve().parents[3]
KEYS = {"key-a": "acme", "key-b": "bravo"}
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


class Data(SimpleNamespace):
    root: Path
    kind: str

    # The SQLite journal and the folder of image files: what these tests scan for what was forgotten.
    def journal(self) -> SQLiteJournal:
        return SQLiteJournal(self.root / "journal.sqlite3")

    def blobs(self) -> DiskBlobStore:
        return DiskBlobStore(self.root / "images")

    def store(self) -> VectorStore:
        if self.kind == "edge":
            store: VectorStore = EdgeStore(self.root / "qdrant" / "shard")
        else:
            store = RemoteStore("forget_test", path=str(self.root / "qdrant-local"))
        store.ensure_schema()
        return store


@pytest.fixture(params=["edge", "qdrant-client"])
def data(request: pytest.FixtureRequest, tmp_path: Path) -> Data:
    return Data(root=tmp_path / "data", kind=request.param)


def exchange(question: str, answer: str, images: list[bytes], blobs: BlobStore, *, tenant: str = "acme",
             user: str | None = None, created_at: float | None = None) -> Exchange:
    return Exchange(
        id=uuid.uuid4().hex, created_at=created_at or time.time(), endpoint="chat.completions",
        model="tiny-vlm", tenant=tenant, user=user, messages=[{"role": "user", "text": question}],
        images=[ImageRef(blobs.put(png), "image/png") for png in images], answer=answer,
        finish_reason="stop", usage=None, latency_ms=1.0)


def secret(tag: str) -> str:
    """Text found nowhere else: a marker to scan for."""
    return f"{tag}-{uuid.uuid4().hex}-{tag}"


def found_in(root: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """Which files under `root` contain each needle."""
    hits: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for name, needle in needles.items():
                if needle in content:
                    hits.setdefault(name, []).append(str(path.relative_to(root)))
    return hits


def needles_of(question: str, answer: str, png: bytes) -> dict[str, bytes]:
    middle = len(png) // 2
    return {"question": question.encode(), "answer": answer.encode(), "image": png[middle:middle + 256]}


class ThumbnailFiles:
    """Where the disk blob store keeps an image's thumbnails, for the checks that they are gone."""

    def __init__(self, blobs: DiskBlobStore) -> None:
        self.blobs = blobs

    def path(self, sha: str, size: int) -> Path:
        return self.blobs.derived_path(sha, thumbnail_name(size))


class Api(SimpleNamespace):
    client: TestClient
    memory: Memory
    history: History
    journal: SQLiteJournal
    blobs: DiskBlobStore
    store: VectorStore


class RefusingStore:
    """The real store, except that while `refusing` is set its deletions fail with StoreUnavailable, as
    Qdrant Edge's do while it builds an index (minutes at 100k points, too slow to provoke here). A
    double only for that failure: everything else, the deletion once allowed included, is the real store."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self.refusing = threading.Event()
        self.refused = 0

    def delete_points(self, tenant: str, point_ids: Sequence[str]) -> None:
        self._refuse()
        self.store.delete_points(tenant, point_ids)

    def delete_exchanges(self, tenant: str, exchange_ids: Sequence[str]) -> None:
        self._refuse()
        self.store.delete_exchanges(tenant, exchange_ids)

    def _refuse(self) -> None:
        if self.refusing.is_set():
            self.refused += 1
            raise StoreUnavailable("the embedded vector store is being indexed; retry shortly")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def api(data: Data, embedder: ClipEmbedder) -> Iterator[Api]:
    yield from _serve(data, embedder, data.store())


@pytest.fixture
def refusing(data: Data, embedder: ClipEmbedder) -> Iterator[tuple[Api, RefusingStore]]:
    store = RefusingStore(data.store())
    for api in _serve(data, embedder, store):  # type: ignore[arg-type]
        yield api, store


def _serve(data: Data, embedder: ClipEmbedder, store: VectorStore) -> Iterator[Api]:
    settings = Settings(_env_file=None, max_body_bytes=1 << 20)
    journal, blobs = data.journal(), data.blobs()
    memory = Memory(journal, blobs, embedder, store, IngestWorker(journal, blobs, embedder, store),
                    ImageLoader.from_settings(settings))
    history = History(journal, blobs, Thumbnails(blobs, embedder.decoder), points=memory.points)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await memory.image_loader.fetcher.close()

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    wire(app, settings=settings, auth=Authenticator(KEYS, "default", []), history=history, memory=memory)
    app.include_router(memory_router)
    app.include_router(history_router)
    # What the runtime starts beside ingest (which these tests drive themselves): history's finisher of
    # deletions, with the store's part plugged in.
    history.finisher.start()
    with TestClient(app) as client:
        yield Api(client=client, memory=memory, history=history, journal=journal, blobs=blobs, store=store)
    history.finisher.stop()
    store.close()
    journal.close()


def settled(journal: Journal, timeout_s: float = 20.0) -> None:
    """Wait until the finisher has finished every recorded deletion (images, points, the journal's WAL)."""
    deadline = time.monotonic() + timeout_s
    while journal.forgetting():
        assert time.monotonic() < deadline, f"deletions left unfinished: {journal.forgetting()}"
        time.sleep(0.02)


def ingest(api: Api, *exchanges: Exchange) -> None:
    for one in exchanges:
        api.journal.append(one)
    api.memory.worker.drain()


def search_ids(api: Api, headers: dict[str, str], **body: object) -> list[str]:
    response = api.client.post("/search", headers=headers, json={"limit": 20, **body})
    assert response.status_code == 200, response.text
    return [hit["exchange_id"] for hit in response.json()["data"]]


def test_delete_removes_the_exchange_everywhere_and_leaves_no_bytes(api: Api, data: Data) -> None:
    question, answer = secret("question"), secret("answer")
    png, shared = noise_png(101), noise_png(102)
    target = exchange(question, answer, [png, shared], api.blobs)
    keeps_shared = exchange("another question", "another answer", [shared], api.blobs)
    ingest(api, target, keeps_shared)
    assert search_ids(api, A, text=answer, target="answer")[0] == target.id
    sha, shared_sha = (image.sha256 for image in target.images)
    # Cached thumbnails of both images exist before the deletion.
    for one in (sha, shared_sha):
        assert api.client.get(f"/images/{one}?size=64", headers=A).status_code == 200
    thumbnails = ThumbnailFiles(api.blobs)
    assert thumbnails.path(sha, 64).exists()
    points_before = api.store.count("acme")
    needles = needles_of(question, answer, png)
    # The scan sees them before (the journal holds the texts, the blob store the image).
    assert set(found_in(data.root, needles)) == {"question", "answer", "image"}

    assert api.client.delete(f"/exchanges/{target.id}", headers=A).status_code == 204

    assert api.client.get(f"/exchanges/{target.id}", headers=A).status_code == 404
    assert api.client.delete(f"/exchanges/{target.id}", headers=A).status_code == 404
    assert api.client.get(f"/images/{sha}", headers=A).status_code == 404  # at once, finished or not
    settled(api.journal)
    assert target.id not in search_ids(api, A, text=answer, target="answer")
    assert target.id not in search_ids(api, A, text=question)
    assert target.id not in search_ids(api, A, image=data_url(png))
    assert api.store.count("acme") == points_before - 2
    # Its own image is gone (file, thumbnail, route); the image another exchange uses stays.
    assert not api.blobs.path(sha).exists() and not thumbnails.path(sha, 64).exists()
    assert api.client.get(f"/images/{sha}", headers=A).status_code == 404
    assert api.blobs.path(shared_sha).exists()
    assert api.client.get(f"/images/{shared_sha}", headers=A).status_code == 200
    assert api.journal.referenced([sha, shared_sha]) == {shared_sha}
    assert api.journal.forgetting() == []

    assert found_in(data.root, needles) == {}
    # Still nothing once the process let go of every file (the store flushed, the journal closed).
    api.store.close()
    api.journal.close()
    assert found_in(data.root, needles) == {}
    # And a reopened store and journal, replaying their WALs, do not bring it back.
    journal, store = data.journal(), data.store()
    try:
        assert journal.get(target.id) is None and store.count("acme") == points_before - 2
    finally:
        store.close()
        journal.close()


def test_another_tenants_exchange_answers_404_and_stays(api: Api) -> None:
    theirs = exchange("their question", "their answer", [noise_png(5)], api.blobs, tenant="bravo")
    ingest(api, theirs)
    response = api.client.delete(f"/exchanges/{theirs.id}", headers=A)
    assert response.status_code == 404 and response.json()["error"]["code"] == "exchange_not_found"
    assert api.client.delete("/exchanges/no-such-id", headers=A).status_code == 404
    assert api.client.get(f"/exchanges/{theirs.id}", headers=B).status_code == 200
    assert search_ids(api, B, text="their answer") == [theirs.id]
    assert api.blobs.path(theirs.images[0].sha256).exists()


def test_forget_in_bulk_by_user_and_by_date(api: Api, data: Data) -> None:
    day = DAY_S
    now = time.time()
    alice = [exchange(secret("q"), secret("a"), [noise_png(10 + n)], api.blobs, user="alice") for n in range(3)]
    old = exchange(secret("q"), secret("a"), [noise_png(20)], api.blobs, user="bob", created_at=now - 40 * day)
    recent = exchange("bob recent", "bob's recent answer", [noise_png(21)], api.blobs, user="bob")
    theirs = exchange("bravo alice", "bravo's answer", [noise_png(22)], api.blobs, tenant="bravo", user="alice")
    ingest(api, *alice, old, recent, theirs)

    response = api.client.post("/exchanges/forget", headers=A, json={"user": "alice"})
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "forget.result", "deleted": 3}
    cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 30 * day))
    assert api.client.post("/exchanges/forget", headers=A, json={"before": cutoff}).json()["deleted"] == 1
    refused = api.client.post("/exchanges/forget", headers=A, json={})
    assert refused.status_code == 400
    settled(api.journal)

    assert api.store.count("acme") == 1 and api.journal.get(recent.id) is not None
    assert api.journal.get(theirs.id) is not None and api.store.count("bravo") == 1  # another tenant's alice
    gone = [*alice, old]
    for one in gone:
        assert api.journal.get(one.id) is None and not api.blobs.path(one.images[0].sha256).exists()
    api.store.close()
    api.journal.close()
    for one in gone:
        assert found_in(data.root, needles_of(one.question, one.answer, noise_png(0))) == {}


def test_deleting_while_ingest_is_behind_does_not_bring_it_back(api: Api, data: Data) -> None:
    question, answer = secret("q"), secret("a")
    late = exchange(question, answer, [noise_png(31)], api.blobs)
    api.journal.append(late)
    worker = api.memory.worker
    # The worker has read and embedded the batch; the deletion lands before its upsert.
    worker._prepared = worker.prepare(api.journal.pending(16))
    assert api.client.delete(f"/exchanges/{late.id}", headers=A).status_code == 204
    worker.drain()
    assert api.store.count("acme") == 0
    assert late.id not in search_ids(api, A, text=answer, target="answer")
    # The other order: upserted already, deleted before being marked ingested.
    later = exchange(secret("q"), secret("a"), [noise_png(32)], api.blobs)
    api.journal.append(later)
    worker._prepared = worker.prepare(api.journal.pending(16))
    api.store.upsert(worker._prepared.points)
    assert api.client.delete(f"/exchanges/{later.id}", headers=A).status_code == 204
    worker.drain()
    settled(api.journal)
    assert api.store.count("acme") == 0 and api.journal.backlog() == 0
    api.store.close()
    api.journal.close()
    assert found_in(data.root, needles_of(question, answer, noise_png(31))) == {}


def test_retention_forgets_what_is_older_than_its_days(data: Data, embedder: ClipEmbedder) -> None:
    journal, blobs, store = data.journal(), data.blobs(), data.store()
    now = time.time()
    old_acme = exchange(secret("q"), secret("a"), [noise_png(41)], blobs, created_at=now - 10 * DAY_S)
    new_acme = exchange("fresh", "fresh answer", [noise_png(42)], blobs, created_at=now - 1 * DAY_S)
    old_bravo = exchange("kept", "kept forever", [noise_png(43)], blobs, tenant="bravo", created_at=now - 90 * DAY_S)
    for one in (old_acme, new_acme, old_bravo):
        journal.append(one)
    IngestWorker(journal, blobs, embedder, store).drain()
    forgetter = Forgetter(journal, blobs, StorePoints(store))
    policy = Retention.parse(7, ["bravo:0"], 3600)
    assert sweep(policy, journal, forgetter, now=now) == 1
    assert forgetter.finish() == 1  # the finisher's part (History runs it in the background)
    assert journal.get(old_acme.id) is None and store.count("acme") == 1
    assert journal.get(old_bravo.id) is not None and store.count("bravo") == 1
    assert sweep(Retention(days=0), journal, forgetter) == 0
    store.close()
    journal.close()
    assert found_in(data.root, needles_of(old_acme.question, old_acme.answer, noise_png(41))) == {}


_KILLED_CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tests.gateway.memory.test_forget import Data
    root, kind, exchange_id, stage = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    data = Data(root=root, kind=kind)
    journal, store = data.journal(), data.store()
    assert journal.forget([exchange_id], "acme") == [exchange_id]
    if stage == "store":
        store.delete_exchanges("acme", [exchange_id])
    # Killed mid-deletion: nothing closes, nothing flushes.
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("stage", ["journal", "store"])
def test_a_sigkill_mid_delete_never_brings_it_back(data: Data, embedder: ClipEmbedder, stage: str) -> None:
    journal, blobs, store = data.journal(), data.blobs(), data.store()
    question, answer, png = secret("q"), secret("a"), noise_png(51)
    target = exchange(question, answer, [png], blobs)
    other = exchange("other", "other answer", [noise_png(52)], blobs)
    for one in (target, other):
        journal.append(one)
    IngestWorker(journal, blobs, embedder, store).drain()
    store.close()
    journal.close()

    child = subprocess.run([sys.executable, "-c", _KILLED_CHILD, str(data.root), data.kind, target.id, stage],
                           check=False, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]

    # Restart: history's finisher, with the store's part, finishes the deletion the killed process began.
    journal, store = data.journal(), data.store()
    assert [row[0] for row in journal.forgetting()] == [target.id]
    settings = Settings(_env_file=None)
    worker = IngestWorker(journal, blobs, embedder, store)
    memory = Memory(journal, blobs, embedder, store, worker, ImageLoader.from_settings(settings))
    history = History(journal, blobs, Thumbnails(blobs), points=memory.points)
    memory.start()
    history.start()
    try:
        settled(journal)
        assert journal.get(target.id) is None and store.count("acme") == 1
        assert not blobs.path(target.images[0].sha256).exists()
        worker.drain()  # re-ingesting from the journal finds nothing of it
        hits = memory.searcher.search(_filter(), text=answer, target="answer", limit=10).hits
        assert [hit.exchange_id for hit in hits] == [other.id]
    finally:
        history.finisher.stop()
        worker.stop()
        store.close()
        journal.close()
    assert found_in(data.root, needles_of(question, answer, png)) == {}


def _filter():
    from gateway.memory.store.base import SearchFilter

    return SearchFilter(tenant="acme")


def test_the_history_service_sweeps_retention_in_the_background(data: Data, embedder: ClipEmbedder) -> None:
    import asyncio

    journal, blobs, store = data.journal(), data.blobs(), data.store()
    old = exchange(secret("q"), secret("a"), [noise_png(61)], blobs, created_at=time.time() - 3 * DAY_S)
    new = exchange("new", "new answer", [noise_png(62)], blobs)
    for one in (old, new):
        journal.append(one)
    worker = IngestWorker(journal, blobs, embedder, store, poll_interval_s=0.05)
    memory = Memory(journal, blobs, embedder, store, worker, ImageLoader.from_settings(Settings(_env_file=None)))
    history = History(journal, blobs, Thumbnails(blobs), points=memory.points,
                      retention=Retention(days=2, interval_s=0.1))
    memory.start()
    history.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (journal.get(old.id) is not None or journal.backlog()
                                               or journal.forgetting()):
            time.sleep(0.05)
        assert journal.get(old.id) is None and journal.get(new.id) is not None
        assert not blobs.path(old.images[0].sha256).exists()
    finally:
        asyncio.run(history.stop())
        asyncio.run(memory.stop())
        journal.close()
    assert found_in(data.root, needles_of(old.question, old.answer, noise_png(61))) == {}


def test_retrieval_for_chat_never_returns_a_forgotten_exchange(api: Api) -> None:
    from gateway.memory.retrieval import RecallQuery, Thresholds
    from gateway.memory.store.base import SearchFilter

    question = secret("q")
    target = exchange(question, secret("a"), [noise_png(71)], api.blobs)
    ingest(api, target)

    def recall() -> list[str]:
        sources = api.memory.retriever.recall(RecallQuery(question=question), SearchFilter(tenant="acme"), k=4,
                                              thresholds=Thresholds(image=0.5, text=0.5))
        return [source.exchange_id for source in sources]

    assert recall() == [target.id]
    assert api.client.delete(f"/exchanges/{target.id}", headers=A).status_code == 204
    assert recall() == []


def test_a_journal_older_than_image_references_is_backfilled(tmp_path: Path) -> None:
    blobs = DiskBlobStore(tmp_path / "images")
    journal = SQLiteJournal(tmp_path / "journal.sqlite3")
    one = exchange("q", "a", [noise_png(81), noise_png(82)], blobs)
    journal.append(one)
    # As an older version left it: no image references, schema version 0.
    journal._db.execute("DELETE FROM exchange_images")
    journal._db.execute("PRAGMA user_version=0")
    journal.close()
    journal = SQLiteJournal(tmp_path / "journal.sqlite3")
    try:
        assert journal.referenced(i.sha256 for i in one.images) == {i.sha256 for i in one.images}
    finally:
        journal.close()


# --- issue 16 §2: forgetting finishes without the client; images follow the journal -----------------


def wait_until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_delete_the_store_refuses_answers_at_once_and_is_finished_in_the_background(
        refusing: tuple[Api, RefusingStore], data: Data) -> None:
    api, store = refusing
    question, answer, png = secret("q"), secret("a"), noise_png(91)
    target = exchange(question, answer, [png], api.blobs)
    other = exchange("other question", "other answer", [noise_png(92)], api.blobs)
    ingest(api, target, other)
    sha = target.images[0].sha256
    assert api.client.get(f"/images/{sha}?size=64", headers=A).status_code == 200  # a cached thumbnail
    points = api.store.count("acme")

    store.refusing.set()
    # Today's 503 made the client retry, and the retry's 404 left the rest undone: now the answer is the
    # same as with a healthy store.
    assert api.client.delete(f"/exchanges/{target.id}", headers=A).status_code == 204
    # Gone from every read path at once, while the store still holds its points.
    assert api.client.get(f"/exchanges/{target.id}", headers=A).status_code == 404
    assert api.client.get(f"/images/{sha}", headers=A).status_code == 404
    assert api.client.get(f"/images/{sha}?size=64", headers=A).status_code == 404
    assert target.id not in search_ids(api, A, text=answer, target="answer")
    # The finisher keeps trying, with growing pauses, while the store refuses; the files go meanwhile.
    wait_until(lambda: store.refused >= 2)
    assert api.store.count("acme") == points
    assert [row[0] for row in api.journal.forgetting()] == [target.id]
    assert not api.blobs.path(sha).exists() and not ThumbnailFiles(api.blobs).path(sha, 64).exists()

    store.refusing.clear()
    settled(api.journal)
    assert api.store.count("acme") == points - 1
    assert search_ids(api, A, text="other answer", target="answer") == [other.id]
    api.store.close()
    api.journal.close()
    assert found_in(data.root, needles_of(question, answer, png)) == {}


def test_a_bulk_forget_the_store_refuses_forgets_every_match(refusing: tuple[Api, RefusingStore]) -> None:
    api, store = refusing
    alice = [exchange(secret("q"), secret("a"), [noise_png(93 + n)], api.blobs, user="alice") for n in range(3)]
    kept = exchange("bob's question", "bob's answer", [noise_png(96)], api.blobs, user="bob")
    ingest(api, *alice, kept)
    store.refusing.set()
    response = api.client.post("/exchanges/forget", headers=A, json={"user": "alice"})
    assert response.status_code == 200, response.text
    assert response.json()["deleted"] == 3
    assert api.client.get("/exchanges", headers=A, params={"user": "alice"}).json()["data"] == []
    for one in alice:
        assert api.client.get(f"/images/{one.images[0].sha256}", headers=A).status_code == 404
    wait_until(lambda: store.refused >= 1)
    assert api.store.count("acme") == 4
    store.refusing.clear()
    settled(api.journal)
    assert api.store.count("acme") == 1 and api.journal.get(kept.id) is not None


def test_an_image_is_served_before_its_exchange_is_ingested(api: Api) -> None:
    png = noise_png(97)
    fresh = exchange("just asked", "just answered", [png], api.blobs)
    api.journal.append(fresh)  # recorded; the ingest worker has not embedded it
    sha = fresh.images[0].sha256
    response = api.client.get(f"/images/{sha}", headers=A)
    assert response.status_code == 200 and response.content == png
    assert response.headers["content-type"] == "image/png"
    assert api.client.get(f"/images/{sha}?size=64", headers=A).headers["content-type"] == "image/webp"
    assert api.client.get(f"/images/{sha}", headers=B).status_code == 404  # another tenant's, still
    assert api.store.count("acme") == 0


def test_images_are_revalidated_at_each_use_and_a_forgotten_one_is_refused(api: Api) -> None:
    target = exchange("q", "a", [noise_png(98)], api.blobs)
    ingest(api, target)
    sha = target.images[0].sha256
    for path, etag in ((f"/images/{sha}", f'"{sha}"'), (f"/images/{sha}?size=100", f'W/"{sha}-128"')):
        response = api.client.get(path, headers=A)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "private, no-cache"
        assert response.headers["vary"] == "Authorization"
        assert response.headers["etag"] == etag
        # What a browser sends to revalidate its copy: a 304 without the bytes, same headers.
        again = api.client.get(path, headers={**A, "If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag and again.headers["cache-control"] == "private, no-cache"
        # A second key in the same browser gets its own answer, not the first key's copy.
        assert api.client.get(path, headers={**B, "If-None-Match": etag}).status_code == 404
    assert api.client.get(f"/images/{sha}", headers={**A, "If-None-Match": '"other", W/"' + sha + '"'}).status_code == 304

    assert api.client.delete(f"/exchanges/{target.id}", headers=A).status_code == 204
    for path, etag in ((f"/images/{sha}", f'"{sha}"'), (f"/images/{sha}?size=100", f'W/"{sha}-128"')):
        assert api.client.get(path, headers={**A, "If-None-Match": etag}).status_code == 404


def test_every_point_is_deleted_by_id_repeated_images_and_older_records_included(data: Data,
                                                                                 embedder: ClipEmbedder) -> None:
    journal, blobs, store = data.journal(), data.blobs(), data.store()
    png = noise_png(99)
    twice = exchange(secret("q"), secret("a"), [png, png], blobs)  # one blob, two images, two points
    text_only = exchange(secret("q"), secret("a"), [], blobs)
    older = exchange(secret("q"), secret("a"), [noise_png(100)], blobs)
    theirs = exchange("their q", "their a", [noise_png(101)], blobs, tenant="bravo")
    for one in (twice, text_only, older, theirs):
        journal.append(one)
    IngestWorker(journal, blobs, embedder, store).drain()
    assert store.count("acme") == 4 and store.count("bravo") == 1
    forgetter = Forgetter(journal, blobs, StorePoints(store))
    try:
        assert forgetter.forget("acme", [twice.id, text_only.id, older.id, theirs.id]) == [twice.id, text_only.id,
                                                                                          older.id]
        assert {row.id: row.image_refs for row in journal.forgetting()} == {twice.id: 2, text_only.id: 0, older.id: 1}
        # As a version that did not count images recorded it: found by exchange id instead.
        journal._db.execute("UPDATE forgetting SET image_refs = NULL WHERE id = ?", (older.id,))
        assert forgetter.finish() == 3
        assert store.count("acme") == 0 and store.count("bravo") == 1
        # By id, yet only the tenant's own points: another tenant's point ids change nothing.
        from gateway.memory.points import point_id

        store.delete_points("acme", [point_id(theirs.id, 0)])
        assert store.count("bravo") == 1
        store.delete_points("bravo", [point_id(theirs.id, 0)])
        assert store.count("bravo") == 0
    finally:
        store.close()
        journal.close()
