"""History test fixtures: the history routes' app with memory off and with memory on.

`api` is parametrized: with memory off the app has History alone (what the runtime builds with
VISIONRAG_MEMORY_ENABLED=false: the memory routes answer 503); with memory on, History and Memory are
built as the runtime builds them (thumbnails decoded with CLIP's decoder, forgetting deleting the
store's points), on the embedded store and the tiny CLIP. Either way the app is assembled from the real
pieces rather than gateway.api.app, so these tests need no upstream model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.api.deps import wire
from gateway.api.errors import install_error_handlers
from gateway.api.history import router as history_router
from gateway.api.memory import router as memory_router
from gateway.auth import Authenticator
from gateway.history.service import History
from gateway.images import ImageLoader
from gateway.journal import BlobStore, Exchange, Journal
from gateway.memory.ingest import IngestWorker
from gateway.memory.service import Memory
from gateway.memory.store.edge import EdgeStore
from gateway.settings import Settings
from tests.gateway.memory import conftest as memory_fixtures

# The memory fixtures (the tiny CLIP, a journal, a blob store), as fixtures here too.
clip_cache, embedder = memory_fixtures.clip_cache, memory_fixtures.embedder
text_cache, text_encoders = memory_fixtures.text_cache, memory_fixtures.text_encoders
journal, blobs, make_exchange = memory_fixtures.journal, memory_fixtures.blobs, memory_fixtures.make_exchange

KEYS = {"key-a": "acme", "key-b": "bravo", "key-d": "default"}
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


class Api(SimpleNamespace):
    client: TestClient
    history: History
    memory: Memory | None  # None: memory off
    journal: Journal


@pytest.fixture(params=["memory-off", "memory-on"])
def api(request: pytest.FixtureRequest, journal: Journal, blobs: BlobStore, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(_env_file=None, data_dir=tmp_path, max_body_bytes=1 << 20)
    memory = None
    if request.param == "memory-on":
        embedder = request.getfixturevalue("embedder")
        store = EdgeStore(tmp_path / "qdrant" / "shard")
        store.ensure_schema()
        worker = IngestWorker(journal, blobs, embedder, store, text=request.getfixturevalue("text_encoders"))
        memory = Memory(journal, blobs, embedder, store, worker, ImageLoader.from_settings(settings))
        history = History.from_settings(settings, journal, blobs, decoder=embedder.decoder, points=memory.points)
    else:
        history = History.from_settings(settings, journal, blobs)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if memory is not None:
            await memory.image_loader.fetcher.close()  # its HTTP session lives on the app's event loop

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    wire(app, settings=settings, auth=Authenticator(KEYS, "default", ["key-ops"]), history=history, memory=memory)
    app.include_router(memory_router)
    app.include_router(history_router)
    with TestClient(app) as client:
        yield Api(client=client, history=history, memory=memory, journal=journal)
    if memory is not None:
        memory.store.close()


def ingest(api: Api, *exchanges: Exchange) -> None:
    """Record the exchanges; with memory on, embed them too."""
    for exchange in exchanges:
        api.journal.append(exchange)
    if api.memory is not None:
        api.memory.worker.drain()
