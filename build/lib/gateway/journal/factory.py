"""Which journal and which blob store the settings ask for: the one place that names a backend's class.

Journals: SQLite under the data dir (gateway.journal.sqlite), the embedded default, or PostgreSQL
(gateway.journal.postgres) when `database_url` is set. Blob stores: a local folder (gateway.journal.disk),
the embedded default, or S3-compatible storage (gateway.journal.s3) when `blob_url` is set.
Another backend is a module implementing the Protocol of gateway.journal.base, a branch here chosen by
a setting, and a parameter of the fixtures in tests/gateway/journal/conftest.py, whose contract tests
it must pass. Backends are imported when chosen, so one's client library is needed only where it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.journal.base import BlobStore, Journal
    from gateway.settings import Settings


def open_journal(settings: Settings) -> Journal:
    """The PostgreSQL journal at `settings.database_url` (its schema migrated to this release's) if one is
    set, else the SQLite journal under the data dir (`settings.journal_path`); created if missing."""
    if settings.database_url is not None:
        from gateway.journal.postgres import PostgresJournal

        return PostgresJournal(settings.database_url.get_secret_value(), pool_size=settings.database_pool_size)

    from gateway.journal.sqlite import SQLiteJournal

    return SQLiteJournal(settings.journal_path, synchronous=settings.journal_synchronous)


def open_blobs(settings: Settings) -> BlobStore:
    """The bucket of `settings.blob_url` (s3://bucket/prefix) when set; otherwise the images under the
    data dir (`settings.images_dir`, their thumbnails in `settings.thumbnails_dir`), created if missing."""
    if settings.blob_url:
        from gateway.journal.s3 import S3BlobStore

        return S3BlobStore.from_url(settings.blob_url)
    from gateway.journal.disk import DiskBlobStore

    return DiskBlobStore(settings.images_dir, settings.thumbnails_dir)
