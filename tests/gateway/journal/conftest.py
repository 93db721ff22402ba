"""The backends the contract tests (test_contract.py) run against: every journal and every blob store.

A new backend is its module in gateway/journal, a branch in gateway.journal.factory, and one entry in
`JOURNALS` or `BLOB_STORES` here: each contract test then runs against it too, as `test_x[name]`. An
entry gets the test's own temporary folder and gives an empty journal (or store) of its own; a blob
store's entry also gets the test's request, to take a server from its fixture (S3: moto's server,
tests.plugins.moto_server, a fresh bucket per test). One that needs a server it cannot start skips the
test (`pytest.skip`) where none is reachable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.journal import BlobStore, Journal
from gateway.journal.disk import DiskBlobStore
from gateway.journal.s3 import S3BlobStore
from gateway.journal.sqlite import SQLiteJournal

# An opener opens the test's journal: empty at first, and the same one again at each further call (a
# restart: the test closes the instance before it).
JournalOpener = Callable[[], Journal]


def _sqlite(tmp_path: Path) -> JournalOpener:
    return lambda: SQLiteJournal(tmp_path / "journal.sqlite3")


def _disk(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return DiskBlobStore(tmp_path / "images")


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return S3BlobStore.from_url(request.getfixturevalue("s3_url"))


JOURNALS: dict[str, Callable[[Path], JournalOpener]] = {"sqlite": _sqlite}
BLOB_STORES: dict[str, Callable[[pytest.FixtureRequest, Path], BlobStore]] = {"disk": _disk, "s3": _s3}


@pytest.fixture(params=sorted(JOURNALS))
def journal_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JournalOpener]:
    """Opens the test's journal of one backend (each in turn); the last one opened is closed after the test."""
    opener, opened = JOURNALS[request.param](tmp_path), []

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
