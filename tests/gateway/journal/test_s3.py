"""What only the S3 blob store does: objects in a bucket under a prefix, reached through boto3's standard
configuration, and failures of the endpoint as BlobUnavailable. The contract it shares with every backend
is tested in test_contract.py; the endpoint here is moto's real server (tests.plugins.moto_server)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import pytest

from gateway.journal import BlobUnavailable, open_blobs
from gateway.journal.s3 import S3BlobStore, parse_url
from gateway.settings import Settings
from tests.plugins.gateway_server import free_port
from tests.plugins.moto_server import MotoServer


def test_open_blobs_gives_the_bucket_of_the_blob_url(s3_url: str, moto_server: MotoServer, tmp_path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", blob_url=s3_url)
    blobs = open_blobs(settings)
    assert isinstance(blobs, S3BlobStore)
    digest = blobs.put(b"picture")
    blobs.put_derived(digest, "64.webp", b"small")
    _, prefix = parse_url(s3_url)
    assert moto_server.keys(s3_url) == [f"{prefix}/{digest}", f"{prefix}/thumbnails/{digest}/64.webp"]
    assert not (tmp_path / "data").exists()  # nothing of it on local disk


@pytest.mark.parametrize("prefix", ["", "/", "/a/b", "/a/b/"])
def test_prefixes_with_or_without_slashes(moto_server: MotoServer, s3_url: str, prefix: str) -> None:
    bucket, _ = parse_url(s3_url)
    blobs = S3BlobStore.from_url(f"s3://{bucket}{prefix}")
    digest = blobs.put(b"picture")
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    assert moto_server.keys(f"s3://{bucket}") == [f"{base}{digest}"]
    assert blobs.get(digest) == b"picture"


@pytest.mark.parametrize("url", ["images", "s3://", "s3:///prefix", "http://bucket/prefix", "s3://bucket/p?x=1",
                                 "s3://bucket/p#f"])
def test_a_blob_url_that_is_not_one_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        open_blobs(Settings(_env_file=None, blob_url=url))


def test_an_image_already_stored_is_not_uploaded_again(s3_url: str) -> None:
    blobs = S3BlobStore.from_url(s3_url)
    sent: list[str] = []
    blobs.client.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.method))
    digest = blobs.put(b"picture")
    assert sent == ["HEAD", "PUT"]
    sent.clear()
    assert blobs.put(b"picture", digest) == digest
    assert sent == ["HEAD"]  # found: no upload


def test_keys_that_are_not_sha256_digests_never_reach_the_endpoint(s3_url: str) -> None:
    blobs = S3BlobStore.from_url(s3_url)
    sent: list[str] = []
    blobs.client.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.url))
    for key in ("../etc/passwd", "", "A" * 64, "0" * 63, "0" * 64 + "\n", f"{'0' * 64}/x"):
        assert blobs.get(key) is None and blobs.open(key) is None and key not in blobs
        assert blobs.delete(key) is False and blobs.get_derived(key, "64.webp") is None
        blobs.delete_derived(key)
    assert sent == []


def test_many_threads_share_one_store(s3_url: str) -> None:
    blobs = S3BlobStore.from_url(s3_url)
    pictures = [f"picture {n % 8}".encode() for n in range(64)]  # each stored by several threads at once
    with ThreadPoolExecutor(16) as pool:
        digests = list(pool.map(blobs.put, pictures))
        assert list(pool.map(blobs.get, digests)) == pictures
    assert digests == [hashlib.sha256(p).hexdigest() for p in pictures]


# --- an endpoint that fails ------------------------------------------------------------------------


def _every_call(blobs: S3BlobStore, digest: str) -> list:
    return [lambda: blobs.put(b"new picture"), lambda: blobs.get(digest), lambda: blobs.open(digest),
            lambda: digest in blobs, lambda: blobs.delete(digest), lambda: blobs.get_derived(digest, "64.webp"),
            lambda: blobs.put_derived(digest, "64.webp", b"small"), lambda: blobs.delete_derived(digest)]


def test_an_endpoint_that_is_down_is_blob_unavailable(s3_url: str, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    digest = S3BlobStore.from_url(s3_url).put(b"picture")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    blobs = S3BlobStore.from_url(s3_url)
    for call in _every_call(blobs, digest):
        started = time.monotonic()
        with pytest.raises(BlobUnavailable) as raised:
            call()
        # Retried (standard mode: three attempts, with backoff), then given up: not a request held for minutes.
        assert time.monotonic() - started < 15
        error = raised.value
        assert error.status == 503 and error.code == "storage_unavailable"
        assert "127.0.0.1" not in error.message and "S3" not in error.message  # said, not shown
        assert "EndpointConnectionError" in type(error.__cause__).__name__
    assert "Could not connect to the endpoint URL" in caplog.text  # the operator's log says why


class Throttling(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that answers every request 503 SlowDown, as S3 does under too high a request rate.
    moto does not throttle, so this stand-in does; it counts the requests to see the client's retries."""

    requests: ClassVar[list[str]] = []

    def _slow_down(self) -> None:
        Throttling.requests.append(self.command)
        body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = _slow_down

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def throttling() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Throttling.requests = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_throttling_is_retried_then_blob_unavailable(s3_url: str, throttling: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", throttling)
    blobs = S3BlobStore.from_url(s3_url)
    with pytest.raises(BlobUnavailable):
        blobs.get("0" * 64)
    assert Throttling.requests == ["GET"] * 3  # the standard retry mode's three attempts
    Throttling.requests.clear()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the standard variable still sets how many
    with pytest.raises(BlobUnavailable):
        S3BlobStore.from_url(s3_url).get("0" * 64)
    assert Throttling.requests == ["GET"]


def test_a_chat_through_the_gateway_stores_its_image_in_the_bucket(s3_url: str, moto_server: MotoServer,
                                                                   tmp_path) -> None:
    from tests.gateway.inprocess import MODEL, Edge, on_edge
    from tests.plugins.media import data_url, image_message, png_bytes

    image = png_bytes(color=(10, 120, 200))

    async def scenario(gateway: Edge):
        async with gateway.openai() as client:
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=image_message(data_url(image)), max_tokens=4)
        return gateway.journal().get(raw.headers["x-visionrag-exchange-id"])

    exchange = on_edge(tmp_path / "data", scenario, blob_url=s3_url)
    sha = hashlib.sha256(image).hexdigest()
    assert exchange.images[0].sha256 == sha
    _, prefix = parse_url(s3_url)
    assert moto_server.keys(s3_url) == [f"{prefix}/{sha}"]
    assert S3BlobStore.from_url(s3_url).get(sha) == image
    assert not (tmp_path / "data" / "images").exists()  # the data dir keeps the journal only
