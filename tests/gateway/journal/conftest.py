"""The backends the contract tests (test_contract.py) run against: every journal and every blob store.

A new backend is its module in gateway/journal, a branch in gateway.journal.factory, and one entry in
`JOURNALS` or `BLOB_STORES` here: each contract test then runs against it too, as `test_x[name]`. An
entry gives an empty journal (or store) of its own: it gets the test's request and asks it for the
fixtures it needs (`tmp_path`; `postgres_url`, a fresh database on the session's PostgreSQL server;
`s3_url`, a fresh bucket on the session's moto server, tests.plugins.moto_server). One that needs a server
it cannot start skips the test (`pytest.skip`) where none is available.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.journal import BlobStore, Journal
from gateway.journal.disk import DiskBlobStore
from gateway.journal.postgres import PostgresJournal
from gateway.journal.s3 import S3BlobStore
from gateway.journal.sqlite import SQLiteJournal

# An opener opens the test's journal: empty at first, and the same one again at each further call (a
# restart: the test closes the instance before it).
JournalOpener = Callable[[], Journal]


def _sqlite(request: pytest.FixtureRequest) -> JournalOpener:
    path = request.getfixturevalue("tmp_path") / "journal.sqlite3"
    return lambda: SQLiteJournal(path)


def _postgres(request: pytest.FixtureRequest) -> JournalOpener:
    url = request.getfixturevalue("postgres_url")
    return lambda: PostgresJournal(url, pool_size=2)


def _disk(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return DiskBlobStore(tmp_path / "images")


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return S3BlobStore.from_url(request.getfixturevalue("s3_url"))


JOURNALS: dict[str, Callable[[pytest.FixtureRequest], JournalOpener]] = {"sqlite": _sqlite, "postgres": _postgres}
BLOB_STORES: dict[str, Callable[[pytest.FixtureRequest, Path], BlobStore]] = {"disk": _disk, "s3": _s3}


@pytest.fixture(params=sorted(JOURNALS))
def journal_opener(request: pytest.FixtureRequest) -> Iterator[JournalOpener]:
    """Opens the test's journal of one backend (each in turn); the last one opened is closed after the test."""
    opener, opened = JOURNALS[request.param](request), []

    def open_again() -> Journal:
        opened.append(opener())
        return opened[-1]

    yield open_again
    if opened:
        opened[-1].close()


@pytest.fixture
def journal(journal_opener: JournalOpener) -> Journal:
    """An empty journal of one backend (each in turn)."""
    return journal_opener()


@pytest.fixture(params=sorted(BLOB_STORES))
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """An empty blob store of one backend (each in turn)."""
    return BLOB_STORES[request.param](request, tmp_path)
