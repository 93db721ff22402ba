"""Deleted points' data leaves the store's files within a set time of the deletion.

Qdrant keeps a deleted point's vectors and payload in its files until a vacuum, and its upsert in the
WAL until that rotates (see `VectorStore.delete_exchanges`). `PurgeScheduler` is a daemon thread that
calls the store's `purge_deleted()` once the oldest deletion it has not purged is `after_s` old: one
purge then covers every deletion of that window (on the embedded store a purge rewrites the segments
holding them while the store answers "unavailable", so it is not run per deletion). A failed or
postponed purge (an index build under way) is retried every `retry_s`. A Qdrant server purges by
itself (collection settings, see `remote.collection_layout`): its store never reports one pending.
"""

from __future__ import annotations

import logging
import time

from gateway.background import DaemonLoop
from gateway.memory.store.base import VectorStore

log = logging.getLogger("visionrag.memory.purge")


class PurgeScheduler(DaemonLoop):
    name = "memory-purge"
    join_s = 60.0  # `stop` lets a purge under way finish

    def __init__(self, store: VectorStore, after_s: float = 600.0, *, poll_s: float = 30.0,
                 retry_s: float = 60.0) -> None:
        super().__init__()
        self.store = store
        self.after_s = after_s
        # A deletion is noticed within poll_s; it is due after_s later, so a poll shorter than that keeps
        # the purge on time.
        self.poll_s = min(poll_s, after_s)
        self.retry_s = min(retry_s, after_s)
        self.purges = 0

    def run_once(self, now: float | None = None) -> float:
        """Purge if the oldest pending deletion is due; returns the seconds until the next check."""
        since = self.store.purge_pending_since()
        if since is None:
            return self.poll_s
        wait = since + self.after_s - (time.time() if now is None else now)
        if wait > 0:
            return min(self.poll_s, wait)
        started = time.monotonic()
        try:
            self.store.purge_deleted()
        except Exception as exc:  # noqa: BLE001 - retried; the deletions stay pending until it succeeds
            log.warning("memory: purging deleted points failed (retrying in %.0f s): %s", self.retry_s, exc)
            return self.retry_s
        if self.store.purge_pending_since() is not None:  # postponed: maintenance held the store
            return self.retry_s
        self.purges += 1
        log.info("memory: purged deleted points from the store's files in %.1f s", time.monotonic() - started)
        return self.poll_s

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.run_once())
