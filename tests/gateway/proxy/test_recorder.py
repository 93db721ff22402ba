"""The recorder across a network (`offload`): PostgreSQL for the journal and S3 (moto's server) for the
images, both real. Recording goes to threads, chats finishing together share a commit, and a request
cancelled while it waits is recorded all the same."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from gateway.images import LoadedImage
from gateway.journal.postgres import PostgresJournal
from gateway.journal.s3 import S3BlobStore
from gateway.proxy.recorder import Outcome, PendingExchange, Recorder


def pending(n: int) -> PendingExchange:
    data = f"image {n}".encode()
    sha = hashlib.sha256(data).hexdigest()
    image = LoadedImage(data, "image/png", sha, 1, 1, None, "data:")
    return PendingExchange("chat.completions", "acme", "m", None, [{"role": "user", "text": f"q{n}"}], [image])


@pytest.fixture
def recorder(postgres_url: str, s3_url: str):
    journal = PostgresJournal(postgres_url, pool_size=2)
    blobs = S3BlobStore.from_url(s3_url)
    yield Recorder(journal, blobs, offload=True)
    journal.close()


def test_chats_finishing_together_are_recorded_with_their_images(recorder: Recorder) -> None:
    commits: list[int] = []
    append_many = recorder.journal.append_many
    recorder.journal.append_many = lambda exchanges: (commits.append(len(exchanges)), append_many(exchanges))[1]

    async def main() -> list:
        return await asyncio.gather(*(recorder.record(pending(n), Outcome("a", "stop", None, None)) for n in range(16)))

    exchanges = asyncio.run(main())
    for exchange in exchanges:
        assert recorder.journal.get(exchange.id) == exchange
        assert recorder.blobs.get(exchange.images[0].sha256) == f"image {exchanges.index(exchange)}".encode()
    # One commit in flight at a time, the rest gathering behind it: fewer commits than chats.
    assert sum(commits) == 16 and len(commits) < 16


def test_a_request_cancelled_while_recording_is_recorded_all_the_same(recorder: Recorder) -> None:
    one, two = pending(1), pending(2)

    async def main() -> None:
        waiting = asyncio.ensure_future(recorder.record(one, Outcome("a", "stop", None, None)))
        await asyncio.sleep(0)
        waiting.cancel()  # the client went away
        recorder.record_now(two, Outcome("", None, None, None, status="incomplete"))  # a stream's cleanup
        await recorder.drain()

    asyncio.run(main())
    assert recorder.journal.get(one.id) is not None
    assert recorder.journal.get(two.id).status == "incomplete"


def test_a_recording_nobody_waits_for_says_when_it_fails(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(exchanges):
        raise ConnectionError("the database went away")

    recorder.journal.append_many = refuse

    async def main() -> None:
        recorder.record_now(pending(3), Outcome("", None, None, None, status="incomplete"))
        await recorder.drain()

    asyncio.run(main())
    assert "could not be recorded: the database went away" in caplog.text
