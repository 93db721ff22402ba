"""Forgetting: an exchange deleted from the journal, the store, and the image files only it used.

Order, chosen so that a SIGKILL at any point never brings anything back:
1. Journal, one transaction: the exchange's row (its text) is deleted and a `forgetting` record names
   what remains (tenant, image sha256s); the WAL is then truncated (secure_delete zeroed the pages).
   From here on search and retrieval cannot return it (texts come from the journal, gateway.memory.texts),
   the ingest worker cannot re-add it (it deletes points of batch rows that vanished), and a reindex
   from the journal cannot find it.
2. Store: every point of the exchange (by tenant and exchange id).
3. Images: each blob no remaining exchange uses, with its cached thumbnails.
4. Journal: the `forgetting` record is dropped.
A process killed after 1 leaves the record; `resume()` (at the memory service's start) does 2-4 again,
each step being harmless to repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from gateway.journal import BlobStore, Journal
from gateway.memory.store.base import VectorStore
from gateway.memory.thumbnails import SIZES, Thumbnails

log = logging.getLogger("visionrag.memory.forget")

# Rows per journal transaction and store call in bulk deletions.
BATCH = 500


class Forgetter:
    def __init__(self, journal: Journal, blobs: BlobStore, store: VectorStore, thumbnails: Thumbnails) -> None:
        self.journal = journal
        self.blobs = blobs
        self.store = store
        self.thumbnails = thumbnails

    def forget(self, tenant: str, exchange_ids: Iterable[str]) -> list[str]:
        """Forget `tenant`'s exchanges among `exchange_ids`; return those that were forgotten.
        Raises StoreError if the store fails after step 1: the rest is then finished by `resume()`."""
        deleted = self.journal.forget(exchange_ids, tenant)
        if deleted:
            self.finish()
        return deleted

    def forget_where(self, tenant: str, *, user: str | None = None, before: float | None = None) -> int:
        """Forget every exchange of `tenant` of `user` and/or created before `before` (unix seconds)."""
        if user is None and before is None:
            raise ValueError("give a user, a time, or both")
        total = 0
        while ids := self.journal.select_ids(tenant, user=user, before=before, limit=BATCH):
            total += len(self.forget(tenant, ids))
        return total

    def finish(self) -> int:
        """Steps 2-4 for every deletion the journal records as unfinished; returns how many."""
        pending = self.journal.forgetting()
        by_tenant: dict[str, list[str]] = {}
        for exchange_id, tenant, _ in pending:
            by_tenant.setdefault(tenant, []).append(exchange_id)
        for tenant, ids in by_tenant.items():
            for start in range(0, len(ids), BATCH):
                self.store.delete_exchanges(tenant, ids[start:start + BATCH])
        shas = {sha for _, _, images in pending for sha in images}
        for sha in shas - self.journal.referenced(shas):
            self._delete_image(sha)
        self.journal.forgotten(exchange_id for exchange_id, _, _ in pending)
        return len(pending)

    def resume(self) -> int:
        """Finish deletions a stopped or killed process left unfinished (at start-up)."""
        done = self.finish()
        if done:
            log.info("memory: finished %d interrupted deletion(s)", done)
        return done

    def _delete_image(self, sha: str) -> None:
        self.blobs.delete(sha)
        for size in SIZES:
            path = self.thumbnails.path(sha, size)
            path.unlink(missing_ok=True)
            # A render killed half-way leaves its temporary file beside the thumbnail's name.
            for tmp in _glob(path.parent, f".{path.name}.*.tmp"):
                tmp.unlink(missing_ok=True)


def _glob(folder: Path, pattern: str) -> list[Path]:
    return list(folder.glob(pattern)) if folder.is_dir() else []
