"""GET /images/{sha256} on every blob store (a local folder, and S3 through moto's server): the original
streamed from the store, never read whole; thumbnails kept in the store beside it; forgetting deletes
both; a store that is down answers 503, not a traceback. On the memory routes' app of test_memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.history.thumbnails import SIZES, name
from gateway.journal import BlobStore, BlobStream
from gateway.journal.s3 import S3BlobStore
from gateway.memory.store.base import VectorStore
from gateway.memory.store.remote import RemoteStore
from tests.gateway.api import test_memory as memory_routes
from tests.gateway.api.test_memory import A, Api
from tests.gateway.journal.conftest import BLOB_STORES
from tests.gateway.memory.conftest import noise_png
from tests.plugins.gateway_server import free_port

# The memory routes' app and what it is made of, as fixtures here too; `blobs` and `store` are this
# module's own.
api, make_exchange, journal = memory_routes.api, memory_routes.make_exchange, memory_routes.journal
clip_cache, embedder = memory_routes.clip_cache, memory_routes.embedder
text_cache, text_encoders = memory_routes.text_cache, memory_routes.text_encoders


@pytest.fixture(params=sorted(BLOB_STORES))
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return BLOB_STORES[request.param](request, tmp_path)


@pytest.fixture
def store() -> Iterator[VectorStore]:
    """One store adapter: what is tested here does not depend on it."""
    adapter = RemoteStore("test_exchanges", location=":memory:")
    adapter.ensure_schema()
    yield adapter
    adapter.close()


class Opened:
    """Records the streams the blob store opens and whether each was closed; whole reads (`get`) fail."""

    def __init__(self, blobs: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.closed: list[bool] = []
        open_blob = blobs.open

        def opened(sha256: str) -> BlobStream | None:
            stream = open_blob(sha256)
            if stream is None:
                return None
            index = len(self.closed)
            self.closed.append(False)

            def close() -> None:
                stream.close()
                self.closed[index] = True

            return BlobStream(stream.size, iter(stream), close)

        def whole(sha256: str) -> bytes | None:
            raise AssertionError("the original was read whole")

        monkeypatch.setattr(blobs, "open", opened)
        monkeypatch.setattr(blobs, "get", whole)


def test_the_original_is_streamed_from_the_blob_store(api: Api, make_exchange, blobs: BlobStore, monkeypatch) -> None:
    large = noise_png(1, (1000, 800))  # random pixels: megabytes, many chunks
    exchange = make_exchange("q", "a", [large], tenant="acme")
    api.journal.append(exchange)
    sha = exchange.images[0].sha256
    opened = Opened(blobs, monkeypatch)

    response = api.client.get(f"/images/{sha}", headers=A)
    assert response.status_code == 200 and response.content == large
    assert response.headers["content-length"] == str(len(large)) and response.headers["content-type"] == "image/png"
    assert response.headers["etag"] == f'"{sha}"' and response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "private, no-cache"
    assert opened.closed == [True]
    # A copy the caller holds costs a 304, without opening the blob.
    again = api.client.get(f"/images/{sha}", headers={**A, "If-None-Match": f'"{sha}"'})
    assert again.status_code == 304 and again.content == b"" and opened.closed == [True]
    # Another tenant, or an image no exchange carries, opens nothing either.
    assert api.client.get(f"/images/{sha}", headers=memory_routes.B).status_code == 404
    assert api.client.get(f"/images/{'0' * 64}", headers=A).status_code == 404
    assert opened.closed == [True]


def test_thumbnails_are_kept_in_the_blob_store(api: Api, make_exchange, blobs: BlobStore, monkeypatch) -> None:
    exchange = make_exchange("q", "a", [noise_png(2, (600, 400))], tenant="acme")
    api.journal.append(exchange)
    sha = exchange.images[0].sha256

    first = api.client.get(f"/images/{sha}", headers=A, params={"size": 64})
    assert first.status_code == 200 and first.headers["content-type"] == "image/webp"
    assert first.content == blobs.get_derived(sha, name(64))
    assert all(blobs.get_derived(sha, name(size)) for size in SIZES)  # one render made every size
    # Later requests (any replica's) are served from the store, without the original.
    monkeypatch.setattr(blobs, "get", lambda sha256: pytest.fail("the original was read again"))
    assert api.client.get(f"/images/{sha}", headers=A, params={"size": 100}).content == blobs.get_derived(sha, name(128))


def test_forgetting_deletes_the_image_and_its_thumbnails_from_the_blob_store(
        api: Api, make_exchange, blobs: BlobStore, request: pytest.FixtureRequest) -> None:
    exchange = make_exchange("q", "a", [noise_png(3)], tenant="acme")
    kept = make_exchange("q", "a", [noise_png(4)], tenant="acme")
    api.journal.append(exchange)
    api.journal.append(kept)
    sha, kept_sha = exchange.images[0].sha256, kept.images[0].sha256
    for one in (sha, kept_sha):
        assert api.client.get(f"/images/{one}", headers=A, params={"size": 64}).status_code == 200

    assert api.client.delete(f"/exchanges/{exchange.id}", headers=A).status_code == 204
    api.history.forgetter.finish()  # what the finisher thread does right after (not started here)

    assert sha not in blobs and all(blobs.get_derived(sha, name(size)) is None for size in SIZES)
    assert kept_sha in blobs and blobs.get_derived(kept_sha, name(64))
    if isinstance(blobs, S3BlobStore):  # nothing of it left in the bucket
        keys = request.getfixturevalue("moto_server").keys(request.getfixturevalue("s3_url"))
        assert [key for key in keys if sha in key] == [] and len(keys) == 1 + len(SIZES)


@pytest.mark.parametrize("blobs", ["s3"], indirect=True)
def test_a_blob_store_that_is_down_is_a_503(api: Api, make_exchange, blobs: S3BlobStore, s3_url: str,
                                            monkeypatch, caplog) -> None:
    exchange = make_exchange("q", "a", [noise_png(5)], tenant="acme")
    api.journal.append(exchange)
    sha = exchange.images[0].sha256
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(blobs, "client", S3BlobStore.from_url(s3_url).client)

    for params in ({}, {"size": 64}):
        response = api.client.get(f"/images/{sha}", headers=A, params=params)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "storage_unavailable" and error["type"] == "upstream_error"
        assert "127.0.0.1" not in error["message"] and "Traceback" not in response.text
    assert "EndpointConnectionError" in caplog.text  # the operator's log says why
