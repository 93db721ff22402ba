"""Forgetting: an exchange deleted from the journal, the image files only it used, and (memory on) the
vector store.

Order, chosen so that a SIGKILL or a store outage at any point never brings anything back:
1. Journal (`Forgetter.forget`, what a DELETE waits for): the exchange's row (its text) and its image
   references are deleted and a `forgetting` record names what remains (tenant, image sha256s), in one
   transaction. From here on nothing reads it: images are served only to a tenant whose rows name them
   (`Journal.image_mime`), and with memory on, search and retrieval take texts from the journal, the
   ingest worker cannot re-add it (it deletes points of batch rows that vanished), and a reindex from
   the journal cannot find it.
2. The rest (`Forgetter.finish`, run by the `Finisher` thread, which retries it until it succeeds):
   each image no remaining exchange uses, with its thumbnails; every point of the exchange in the
   vector store (`Points`, which memory plugs in: none while memory is off); the `forgetting` record;
   and the journal's WAL emptied of the rows' old copies.
Each step of 2 is harmless to repeat, so a process killed half-way, or a store that refuses writes for
minutes (Qdrant Edge while it builds an index), only delays it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

from gateway.background import DaemonLoop
from gateway.journal import BlobStore, Journal, Unfinished

log = logging.getLogger("visionrag.history.forget")

# Ids per selection in bulk deletions (the journal deletes them FORGET_CHUNK at a time).
BATCH = 500
# Deletions finished per round: what each of the journal's calls holds its lock for.
FINISH_BATCH = 64


class Points(Protocol):
    """The vector store's part of step 2, for these layers that know no store: memory's
    (gateway.memory.forget_points) when memory is on."""

    def delete(self, forgotten: Sequence[Unfinished]) -> None:
        """Every point of these exchanges, gone. Raises while the store refuses (the finisher retries)."""
        ...


class Forgetter:
    def __init__(self, journal: Journal, blobs: BlobStore, points: Points | None = None) -> None:
        self.journal = journal
        self.blobs = blobs
        self.points = points
        # Set whenever a deletion is recorded: the finisher's cue.
        self.recorded = threading.Event()

    def forget(self, tenant: str, exchange_ids: Iterable[str]) -> list[str]:
        """Step 1 for `tenant`'s exchanges among `exchange_ids`; return those that were forgotten."""
        deleted = self.journal.forget(exchange_ids, tenant)
        if deleted:
            self.recorded.set()
        return deleted

    def forget_where(self, tenant: str, *, user: str | None = None, before: float | None = None) -> int:
        """Step 1 for every exchange of `tenant` of `user` and/or created before `before` (unix seconds)."""
        if user is None and before is None:
            raise ValueError("give a user, a time, or both")
        total = 0
        while ids := self.journal.select_ids(tenant, user=user, before=before, limit=BATCH):
            total += len(self.forget(tenant, ids))
        return total

    def finish(self) -> int:
        """Step 2 for every deletion the journal records as unfinished; returns how many were finished.
        Raises what `points` raises while the store fails, BlobUnavailable while the blob store does
        (what is done stays done)."""
        pending = self.journal.forgetting(limit=FINISH_BATCH)
        if not pending:
            return 0
        done = 0
        try:
            while pending:
                shas = {sha for one in pending for sha in one.images}
                for sha in shas - self.journal.referenced(shas):
                    self._delete_image(sha)
                if self.points is not None:
                    self.points.delete(pending)
                self.journal.forgotten(one.id for one in pending)
                done += len(pending)
                pending = self.journal.forgetting(limit=FINISH_BATCH)
        finally:
            # Once per pass, not per batch: every row deleted before this point leaves the journal's files
            # (also when the store failed: the journal's part does not wait for it).
            self.journal.scrub()
        return done

    def _delete_image(self, sha: str) -> None:
        # The original first: a render under way looks for it once its thumbnails are written (see
        # gateway.history.thumbnails), so whichever of the two comes second deletes them.
        self.blobs.delete(sha)
        self.blobs.delete_derived(sha)


class Finisher(DaemonLoop):
    """A daemon thread that finishes recorded deletions (`Forgetter.finish`): at start (what a stopped or
    killed process left), whenever a deletion is recorded, and every `idle_s` (a deletion recorded by
    another process). While a pass fails it is retried after `first_retry_s`, doubling up to `idle_s`."""

    name = "history-forget"

    def __init__(self, forgetter: Forgetter, *, first_retry_s: float = 0.5, idle_s: float = 60.0) -> None:
        super().__init__()
        self.forgetter = forgetter
        self.first_retry_s = first_retry_s
        self.idle_s = idle_s

    def start(self) -> None:
        self.forgetter.recorded.set()  # a first pass at once: what a stopped or killed process left
        super().start()

    def _wake(self) -> None:
        self.forgetter.recorded.set()  # out of the idle wait

    def _run(self) -> None:
        retry_s = 0.0
        while not self._stop.is_set():
            # Waits for work only when the last pass succeeded: a failing store is retried on its own
            # schedule, not once per new deletion.
            if not retry_s:
                self.forgetter.recorded.wait(self.idle_s)
                if self._stop.is_set():
                    return
            self.forgetter.recorded.clear()  # before the pass: a deletion recorded during it gets another
            try:
                if done := self.forgetter.finish():
                    log.info("history: finished forgetting %d exchange(s)", done)
                retry_s = 0.0
            except Exception as exc:  # noqa: BLE001 - the store (or a file) failed: retried, nothing is lost
                retry_s = min(max(retry_s * 2, self.first_retry_s), self.idle_s)
                log.warning("history: finishing deletions failed (retried in %.1f s): %s", retry_s, exc)
                self._stop.wait(retry_s)
