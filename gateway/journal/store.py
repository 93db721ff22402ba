"""The journal: SQLite in WAL mode, one row per exchange.

Durability: `append` returns after SQLite committed the row to its write-ahead log. With
`synchronous=NORMAL` that survives the gateway process being killed (the bytes are in the
OS's page cache); `synchronous=FULL` also survives power loss, at an fsync per exchange.

Queue: rows with `ingested_at IS NULL` are the memory path's backlog, consumed in `seq` order
and marked with `mark_ingested` once the vector store acknowledged them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import orjson

from gateway import metrics
from gateway.journal.records import Exchange

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    seq          INTEGER PRIMARY KEY,  -- rowid: increasing (only a forgotten newest row's is reused)
    id           TEXT    NOT NULL UNIQUE,
    created_at   REAL    NOT NULL,
    endpoint     TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    user         TEXT,
    status       TEXT    NOT NULL,
    record       BLOB    NOT NULL,
    ingested_at  REAL
);
CREATE INDEX IF NOT EXISTS exchanges_pending ON exchanges (seq) WHERE ingested_at IS NULL;
-- Browsing (`recent`): one tenant's rows newest first, read backwards along this index from a cursor.
CREATE INDEX IF NOT EXISTS exchanges_recent ON exchanges (tenant, created_at, seq);
-- Which exchanges use which image: forgetting an exchange deletes each blob no remaining row uses.
CREATE TABLE IF NOT EXISTS exchange_images (
    sha256       TEXT    NOT NULL,
    exchange_id  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS exchange_images_sha ON exchange_images (sha256);
CREATE INDEX IF NOT EXISTS exchange_images_exchange ON exchange_images (exchange_id);
-- Deletions under way (gateway.memory.forget): the exchange row is already gone; what is left to
-- delete elsewhere (store points, image blobs) is named here until it is done, so a restart finishes it.
CREATE TABLE IF NOT EXISTS forgetting (
    id           TEXT    PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    images       TEXT    NOT NULL,  -- JSON list of the exchange's image sha256s
    forgotten_at REAL    NOT NULL
);
"""
# user_version 1: exchange_images filled for every row (older journals are backfilled once at open).
_VERSION = 1


class Journal:
    def __init__(self, path: Path, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connection shared by the event loop and the ingest thread, serialized by a lock:
        # every statement is short, and SQLite serializes writers anyway.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA busy_timeout=5000")
            # Deleted rows are overwritten with zeros, in their pages and on the free list: a forgotten
            # exchange's text does not linger in the file (the WAL is truncated after each deletion).
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
            if self._db.execute("PRAGMA user_version").fetchone()[0] < _VERSION:
                self._backfill_images()

    @metrics.JOURNAL_APPEND_SECONDS.time()
    def append(self, exchange: Exchange) -> None:
        """Record an exchange; durable when this returns. Appending the same id twice is a no-op."""
        row = (
            exchange.id,
            exchange.created_at,
            exchange.endpoint,
            exchange.model,
            exchange.tenant,
            exchange.user,
            exchange.status,
            orjson.dumps(exchange),  # orjson serializes dataclasses natively, ~10x faster than asdict
        )
        # One commit for the row and its image references: never a row whose images forgetting could
        # not see (it would delete a blob this exchange still uses), and one WAL commit, not two.
        with self._lock, self._transaction():
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO exchanges"
                " (id, created_at, endpoint, model, tenant, user, status, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            ).rowcount
            if inserted and exchange.images:
                self._db.executemany("INSERT INTO exchange_images (sha256, exchange_id) VALUES (?, ?)",
                                     ((image.sha256, exchange.id) for image in exchange.images))

    def get(self, exchange_id: str) -> Exchange | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM exchanges WHERE id = ?", (exchange_id,)).fetchone()
        return Exchange.from_dict(orjson.loads(row[0])) if row else None

    def pending(self, limit: int) -> list[Exchange]:
        """The oldest exchanges not yet ingested by the memory path."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM exchanges WHERE ingested_at IS NULL ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [Exchange.from_dict(orjson.loads(row[0])) for row in rows]

    def mark_ingested(self, exchange_ids: Iterable[str]) -> None:
        now = time.time()
        with self._lock, self._transaction():
            self._db.executemany(
                "UPDATE exchanges SET ingested_at = ? WHERE id = ?", ((now, i) for i in exchange_ids)
            )

    def requeue_all(self) -> int:
        """Put every exchange back in the memory path's queue (a store rebuilt from the journal)."""
        with self._lock:
            return self._db.execute("UPDATE exchanges SET ingested_at = NULL WHERE ingested_at IS NOT NULL").rowcount

    def backlog(self, tenant: str | None = None) -> int:
        """Exchanges not yet ingested (one tenant's: a scan of the pending rows only, via their index)."""
        sql, args = "SELECT count(*) FROM exchanges WHERE ingested_at IS NULL", ()
        if tenant is not None:
            sql, args = sql + " AND tenant = ?", (tenant,)
        with self._lock:
            return self._db.execute(sql, args).fetchone()[0]

    def recent(
        self,
        tenant: str,
        *,
        limit: int,
        before: tuple[float, int] | None = None,
        time_from: float | None = None,
        time_to: float | None = None,
        models: tuple[str, ...] = (),
        user: str | None = None,
    ) -> list[tuple[int, Exchange]]:
        """One tenant's exchanges, newest first, with their `seq`: (created_at, seq) orders them, and
        `before` (the last row's pair) continues after that row, so a page never repeats or skips rows
        appended meanwhile."""
        where, args = _where(
            tenant,
            ("(created_at < ? OR (created_at = ? AND seq < ?))", (before[0], before[0], before[1]) if before else None),
            ("created_at >= ?", time_from),
            ("created_at <= ?", time_to),
            (f"model IN ({', '.join('?' * len(models))})", tuple(models) or None),
            ("user = ?", user),
        )
        sql = (f"SELECT seq, record FROM exchanges INDEXED BY exchanges_recent WHERE {where}"
               " ORDER BY created_at DESC, seq DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [(seq, Exchange.from_dict(orjson.loads(record))) for seq, record in rows]

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM exchanges").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- forgetting ------------------------------------------------------------------------------
    def _backfill_images(self) -> None:
        """Fill exchange_images from the records of a journal older than that table (once)."""
        with self._transaction():
            self._db.execute("DELETE FROM exchange_images")
            for exchange_id, record in self._db.execute("SELECT id, record FROM exchanges"):
                images = orjson.loads(record).get("images") or []
                self._db.executemany("INSERT INTO exchange_images (sha256, exchange_id) VALUES (?, ?)",
                                     ((image["sha256"], exchange_id) for image in images))
            self._db.execute(f"PRAGMA user_version={_VERSION}")

    def select_ids(self, tenant: str, *, user: str | None = None, before: float | None = None,
                   limit: int = 1000) -> list[str]:
        """Ids of `tenant`'s exchanges of `user` and/or created before `before` (unix seconds)."""
        where, args = _where(tenant, ("user = ?", user), ("created_at < ?", before))
        with self._lock:
            rows = self._db.execute(f"SELECT id FROM exchanges WHERE {where} ORDER BY seq LIMIT ?",
                                    (*args, limit)).fetchall()
        return [row[0] for row in rows]

    def tenants(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT DISTINCT tenant FROM exchanges")]

    def forget(self, exchange_ids: Iterable[str], tenant: str) -> list[str]:
        """Delete `tenant`'s rows among `exchange_ids` and record what remains to delete elsewhere, in
        one transaction; then truncate the WAL so the rows' text is gone from every file. Returns the
        ids deleted (others' and unknown ids are left alone)."""
        ids = list(dict.fromkeys(exchange_ids))
        deleted: list[str] = []
        now = time.time()
        with self._lock:
            with self._transaction("IMMEDIATE"):
                for exchange_id in ids:
                    row = self._db.execute("SELECT tenant FROM exchanges WHERE id = ?", (exchange_id,)).fetchone()
                    if row is None or row[0] != tenant:
                        continue
                    shas = [r[0] for r in self._db.execute(
                        "SELECT DISTINCT sha256 FROM exchange_images WHERE exchange_id = ?", (exchange_id,))]
                    self._db.execute("INSERT OR REPLACE INTO forgetting (id, tenant, images, forgotten_at)"
                                     " VALUES (?, ?, ?, ?)", (exchange_id, tenant, orjson.dumps(shas), now))
                    self._db.execute("DELETE FROM exchange_images WHERE exchange_id = ?", (exchange_id,))
                    self._db.execute("DELETE FROM exchanges WHERE id = ?", (exchange_id,))
                    deleted.append(exchange_id)
            if deleted:
                self._truncate_wal()
        return deleted

    @contextmanager
    def _transaction(self, mode: str = "") -> Iterator[None]:
        """One atomic commit (the connection autocommits each statement otherwise). Hold `_lock`."""
        self._db.execute(f"BEGIN {mode}")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _truncate_wal(self) -> None:
        # The WAL still holds the frames that wrote the deleted rows: copy the zeroed pages into the
        # database and empty the WAL file. Busy (another process reading) -> retried at the next one.
        busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            import logging

            logging.getLogger("visionrag.journal").warning("journal WAL not truncated (a reader is active)")

    def forgetting(self) -> list[tuple[str, str, list[str]]]:
        """Deletions not finished yet: (exchange id, tenant, image sha256s)."""
        with self._lock:
            rows = self._db.execute("SELECT id, tenant, images FROM forgetting ORDER BY forgotten_at").fetchall()
        return [(i, t, orjson.loads(images)) for i, t, images in rows]

    def forgotten(self, exchange_ids: Iterable[str]) -> None:
        """Deletions finished: drop their records (nothing of the exchange is left to name)."""
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM forgetting WHERE id = ?", ((i,) for i in exchange_ids))

    def referenced(self, shas: Iterable[str]) -> set[str]:
        """The images among `shas` that some exchange in the journal still uses."""
        with self._lock:
            return {sha for sha in set(shas)
                    if self._db.execute("SELECT 1 FROM exchange_images WHERE sha256 = ? LIMIT 1", (sha,)).fetchone()}

    def present(self, exchange_ids: Iterable[str]) -> set[str]:
        """The ids among `exchange_ids` whose rows exist (the ingest worker's check for deletions)."""
        with self._lock:
            return {i for i in set(exchange_ids)
                    if self._db.execute("SELECT 1 FROM exchanges WHERE id = ?", (i,)).fetchone()}


def _where(tenant: str, *conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause for one tenant's rows: `tenant = ?` and each (clause, value) whose value is not
    None; a tuple value fills a clause of several `?`."""
    clauses, args = ["tenant = ?"], [tenant]
    for clause, value in conditions:
        if value is None:
            continue
        clauses.append(clause)
        args += list(value) if isinstance(value, tuple) else [value]
    return " AND ".join(clauses), args
