"""`SQLiteJournal`, the Journal (gateway.journal.base) in one SQLite file: WAL mode, one row per exchange.

Durability: `append` (`append_many`) returns after SQLite committed the row (rows) to its write-ahead
log. With `synchronous=NORMAL` that survives the gateway process being killed (the bytes are in the
OS's page cache); `synchronous=FULL` also survives power loss, at an fsync per commit (the chat
recorder commits the exchanges that finish together at once). Checkpoints run on a thread of their own.

Queue: rows with `ingested_at IS NULL` are the memory path's backlog, consumed in `seq` order
and marked with `mark_ingested` once the vector store acknowledged them. Claims (`claim`) carry their
worker and lease in the row, on this machine's clock; only one process opens the file, so it holds every
role (`lead`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import orjson

from gateway import metrics
from gateway.journal.base import Unfinished
from gateway.journal.records import Exchange

log = logging.getLogger("visionrag.journal")

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
    ingested_at  REAL,
    claimed_by   TEXT,  -- the worker whose claim is live, or was until it expired
    lease_until  REAL   -- unix seconds
);
CREATE INDEX IF NOT EXISTS exchanges_pending ON exchanges (seq) WHERE ingested_at IS NULL;
CREATE INDEX IF NOT EXISTS exchanges_claims ON exchanges (claimed_by) WHERE claimed_by IS NOT NULL;
-- Browsing (`recent`): one tenant's rows newest first, read backwards along this index from a cursor
-- of the row's own keys. It replaces exchanges_recent, ordered by seq: a cursor holding seq told a
-- tenant how many rows every tenant had written.
DROP INDEX IF EXISTS exchanges_recent;
CREATE INDEX IF NOT EXISTS exchanges_browse ON exchanges (tenant, created_at, id);
-- Which exchanges use which image, written and deleted with the exchange's row: who may read an image
-- (a tenant one of whose rows names it: `image_mime`) and which blobs forgetting deletes (those no
-- remaining row names). `tenant` repeats the row's so that the access check is one index lookup, however
-- many other tenants' rows use the same image.
CREATE TABLE IF NOT EXISTS exchange_images (
    sha256       TEXT    NOT NULL,
    exchange_id  TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    mime         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS exchange_images_access ON exchange_images (sha256, tenant);
CREATE INDEX IF NOT EXISTS exchange_images_exchange ON exchange_images (exchange_id);
-- Deletions under way (gateway.history.forget): the exchange row is already gone; what is left to
-- delete elsewhere (store points, image blobs) is named here until it is done, so a restart finishes it.
CREATE TABLE IF NOT EXISTS forgetting (
    id           TEXT    PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    images       TEXT    NOT NULL,  -- JSON list of the exchange's distinct image sha256s
    forgotten_at REAL    NOT NULL,
    image_refs   INTEGER            -- how many images it carried, repeats included (NULL: not recorded)
);
-- Claims that expired and were taken by another worker, until the worker they were taken from asks.
CREATE TABLE IF NOT EXISTS takeovers (
    worker       TEXT    NOT NULL,
    exchange_id  TEXT    NOT NULL,
    PRIMARY KEY (worker, exchange_id)
);
"""
_INSERT_IMAGE = "INSERT INTO exchange_images (sha256, exchange_id, tenant, mime) VALUES (?, ?, ?, ?)"
# user_version 1: exchange_images filled for every row; 2: with each image's tenant and MIME type (older
# journals get the table rebuilt from their records once, at open), and forgetting.image_refs; 3: workers'
# claims (exchanges.claimed_by and lease_until, the takeovers table).
_VERSION = 3
# Rows per transaction when forgetting: a chat's append waits for one chunk at most, never a whole
# bulk deletion.
FORGET_CHUNK = 64
_FORGET_PAUSE_S = 0.001
# Chunks between checkpoints of a long forget: about half of SQLite's auto-checkpoint (1000 pages).
_CHECKPOINT_CHUNKS = 8
# Rows appended, marked ingested or requeued between checkpoints, which run on a thread of their own
# (`_Checkpoints`): about what SQLite's own auto-checkpoint would do (1000 pages) at an append's usual
# handful of pages. SQLite's own stays on as a backstop, far above, for a checkpoint thread that cannot keep
# up (it would run inside a commit, under `_lock`). Deletions checkpoint themselves (`forget`).
CHECKPOINT_ROWS = 128
_BACKSTOP_PAGES = 10_000


class SQLiteJournal:
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
            # exchange's text does not linger in the file (`scrub` then empties the WAL).
            self._db.execute("PRAGMA secure_delete=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version < 2:
                # Older shapes: image references rebuilt below (their indexes go with them); deletions
                # recorded without `image_refs` keep NULL there.
                self._db.execute("DROP TABLE IF EXISTS exchange_images")
                _add_columns(self._db, "forgetting", "image_refs INTEGER")
            if version < 3:
                _add_columns(self._db, "exchanges", "claimed_by TEXT", "lease_until REAL")
            self._db.executescript(_SCHEMA)
            if version < 2:
                self._backfill_images()
            self._db.execute(f"PRAGMA user_version={_VERSION}")
            # A checkpoint inside a commit would copy pages and fsync twice on the appender's thread, the
            # event loop's for chats: they run on `_checkpoints`' thread instead.
            self._db.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_PAGES}")
        # Checkpoints run here, not on the connection appends use: their copying and fsyncs go on while
        # chats append.
        self._checkpointer = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._checkpointer.execute("PRAGMA busy_timeout=0")  # another process reading: skip, retried next time
        self._checkpoint_lock = threading.Lock()
        self._checkpoints = _Checkpoints(self)
        self._unchecked_rows = 0  # written since a checkpoint was last asked for

    def append(self, exchange: Exchange) -> None:
        """Record an exchange; durable when this returns. Appending the same id twice is a no-op."""
        self.append_many([exchange])

    def append_many(self, exchanges: Sequence[Exchange]) -> None:
        """Record exchanges in one commit (a group commit: their pages written once); durable when this
        returns. An id already in the journal (or earlier in `exchanges`) is skipped."""
        if not exchanges:
            return
        with metrics.journal_appends(len(exchanges)):
            self._append_many(exchanges)

    def _append_many(self, exchanges: Sequence[Exchange]) -> None:
        rows = [(
            exchange.id,
            exchange.created_at,
            exchange.endpoint,
            exchange.model,
            exchange.tenant,
            exchange.user,
            exchange.status,
            orjson.dumps(exchange),  # orjson serializes dataclasses natively, ~10x faster than asdict
        ) for exchange in exchanges]
        # One commit for the rows and their image references: never a row whose images forgetting could
        # not see (it would delete a blob this exchange still uses), and one WAL commit, not two.
        with self._lock, self._transaction():
            for exchange, row in zip(exchanges, rows, strict=True):
                inserted = self._db.execute(
                    "INSERT OR IGNORE INTO exchanges"
                    " (id, created_at, endpoint, model, tenant, user, status, record)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                ).rowcount
                if inserted and exchange.images:
                    self._db.executemany(_INSERT_IMAGE, ((image.sha256, exchange.id, exchange.tenant, image.mime)
                                                         for image in exchange.images))
            checkpoint = self._wrote(len(rows))
        if checkpoint:
            self._checkpoints.request()

    def _wrote(self, rows: int) -> bool:
        """Count rows written; True when a checkpoint is due (ask `_checkpoints`, off the lock). Hold `_lock`."""
        self._unchecked_rows += rows
        if self._unchecked_rows < CHECKPOINT_ROWS:
            return False
        self._unchecked_rows = 0
        return True

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

    def mark_ingested(self, exchange_ids: Iterable[str], worker: str | None = None) -> None:
        now = time.time()
        # Whoever marks ends every claim on the rows: once ingested, nobody claims them again anyway.
        with self._lock, self._transaction():
            marked = self._db.executemany(
                "UPDATE exchanges SET ingested_at = ?, claimed_by = NULL, lease_until = NULL WHERE id = ?",
                ((now, i) for i in exchange_ids),
            ).rowcount
            checkpoint = self._wrote(marked)
        if checkpoint:
            self._checkpoints.request()

    def claim(self, worker: str, limit: int, lease_s: float) -> list[Exchange]:
        """The oldest rows neither ingested nor under another worker's live claim, now `worker`'s until the
        lease ends. An expired claim of another worker becomes a takeover it can learn of; one of this
        worker's own comes back to it (live or not) and is no takeover."""
        now = time.time()
        # IMMEDIATE: the rows read are the rows written, even with another connection to the file claiming.
        with self._lock, self._transaction("IMMEDIATE"):
            rows = self._db.execute(
                "SELECT seq, id, claimed_by, record FROM exchanges"
                " WHERE ingested_at IS NULL AND (lease_until IS NULL OR lease_until < ? OR claimed_by = ?)"
                " ORDER BY seq LIMIT ?",
                (now, worker, limit),
            ).fetchall()
            self._db.executemany("UPDATE exchanges SET claimed_by = ?, lease_until = ? WHERE seq = ?",
                                 ((worker, now + lease_s, seq) for seq, *_ in rows))
            self._db.executemany("INSERT OR IGNORE INTO takeovers (worker, exchange_id) VALUES (?, ?)",
                                 ((previous, i) for _, i, previous, _ in rows if previous not in (None, worker)))
            self._db.executemany("DELETE FROM takeovers WHERE worker = ? AND exchange_id = ?",
                                 ((worker, i) for _, i, _, _ in rows))
            checkpoint = self._wrote(len(rows))
        if checkpoint:
            self._checkpoints.request()
        return [Exchange.from_dict(orjson.loads(record)) for *_, record in rows]

    def release(self, worker: str) -> None:
        with self._lock:
            self._db.execute("UPDATE exchanges SET claimed_by = NULL, lease_until = NULL"
                             " WHERE claimed_by = ? AND ingested_at IS NULL", (worker,))

    def taken_over(self, worker: str) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("DELETE FROM takeovers WHERE worker = ? RETURNING exchange_id",
                                                       (worker,)).fetchall()]

    def lead(self, role: str) -> bool:
        """Every role: the file is this process's alone."""
        return True

    def requeue_all(self) -> int:
        """Put every exchange back in the memory path's queue (a store rebuilt from the journal)."""
        with self._lock:
            requeued = self._db.execute("UPDATE exchanges SET ingested_at = NULL WHERE ingested_at IS NOT NULL").rowcount
            checkpoint = self._wrote(requeued)
        if checkpoint:
            self._checkpoints.request()
        return requeued

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
        before: tuple[float, str] | None = None,
        time_from: float | None = None,
        time_to: float | None = None,
        models: tuple[str, ...] = (),
        user: str | None = None,
    ) -> list[Exchange]:
        """One tenant's exchanges, newest first: (created_at, id) orders them, and `before` (the last
        row's pair) continues after that row, so a page never repeats or skips rows appended meanwhile."""
        where, args = _where(
            tenant,
            ("(created_at < ? OR (created_at = ? AND id < ?))", (before[0], before[0], before[1]) if before else None),
            ("created_at >= ?", time_from),
            ("created_at <= ?", time_to),
            (f"model IN ({', '.join('?' * len(models))})", tuple(models) or None),
            ("user = ?", user),
        )
        sql = (f"SELECT record FROM exchanges INDEXED BY exchanges_browse WHERE {where}"
               " ORDER BY created_at DESC, id DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [Exchange.from_dict(orjson.loads(row[0])) for row in rows]

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM exchanges").fetchone()[0]

    def close(self) -> None:
        self._checkpoints.stop()
        with self._checkpoint_lock:
            self._checkpointer.close()
        with self._lock:
            self._db.close()

    def image_mime(self, tenant: str, sha256: str) -> str | None:
        """The MIME type of the image if one of `tenant`'s exchanges carries it, else None: who may read
        an image. A forgotten exchange's images answer None from the moment its row is deleted."""
        with self._lock:
            row = self._db.execute("SELECT mime FROM exchange_images WHERE sha256 = ? AND tenant = ? LIMIT 1",
                                   (sha256, tenant)).fetchone()
        return row[0] if row else None

    # --- forgetting ------------------------------------------------------------------------------
    def _backfill_images(self) -> None:
        """Fill exchange_images from the records of a journal older than its current shape (once)."""
        with self._transaction():
            self._db.execute("DELETE FROM exchange_images")
            for exchange_id, tenant, record in self._db.execute("SELECT id, tenant, record FROM exchanges"):
                images = orjson.loads(record).get("images") or []
                self._db.executemany(_INSERT_IMAGE, ((image["sha256"], exchange_id, tenant, image["mime"])
                                                     for image in images))

    def select_ids(self, tenant: str, *, user: str | None = None, before: float | None = None,
                   limit: int = 1000) -> list[str]:
        """Ids of `tenant`'s exchanges of `user` and/or created before `before` (unix seconds)."""
        where, args = _where(tenant, ("user = ?", user), ("created_at < ?", before))
        with self._lock:
            # In no particular order: stops at `limit` along the index instead of sorting every match.
            return self._one_json(f"SELECT json_group_array(id) FROM (SELECT id FROM exchanges WHERE {where}"
                                  " LIMIT ?)", (*args, limit))

    def ids_starting(self, tenant: str, prefix: str, limit: int = 10) -> list[str]:
        # A range along the id index (BINARY collation: byte order) rather than LIKE, which is
        # case-insensitive here and would need its wildcards escaped. No id goes past U+10FFFF.
        with self._lock:
            rows = self._db.execute("SELECT id FROM exchanges WHERE id >= ? AND id < ? AND tenant = ? ORDER BY id"
                                    " LIMIT ?", (prefix, prefix + "\U0010ffff", tenant, limit)).fetchall()
        return [row[0] for row in rows]

    def tenants(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT DISTINCT tenant FROM exchanges")]

    def forget(self, exchange_ids: Iterable[str], tenant: str) -> list[str]:
        """Delete `tenant`'s rows among `exchange_ids` and record what remains to delete elsewhere (the
        `forgetting` table), FORGET_CHUNK rows per transaction (a row and its record always in the same
        one). Returns the ids deleted (others' and unknown ids are left alone), in the given order.

        The rows' pages are zeroed (secure_delete), but earlier copies stay in the WAL and the database
        file until `scrub()`."""
        ids = list(dict.fromkeys(exchange_ids))
        deleted: set[str] = set()
        for start in range(0, len(ids), FORGET_CHUNK):
            if start:
                # threading.Lock is not fair: released and taken again at once, it would come back here
                # before a waiting append even woke up. The pause lets every waiter in first.
                time.sleep(_FORGET_PAUSE_S)
            with self._lock, self._transaction("IMMEDIATE"):
                deleted.update(self._forget_chunk(ids[start:start + FORGET_CHUNK], tenant))
            if (start // FORGET_CHUNK) % _CHECKPOINT_CHUNKS == _CHECKPOINT_CHUNKS - 1:
                # Off the appends' lock, before the WAL reaches the auto-checkpoint size: that checkpoint
                # (copying and two fsyncs) would run inside a commit, under the lock, a chat's maybe.
                self._checkpoint("PASSIVE")
        return [exchange_id for exchange_id in ids if exchange_id in deleted]

    def _forget_chunk(self, ids: list[str], tenant: str) -> list[str]:
        """One chunk of `forget`, inside its transaction: a few statements, none a row at a time."""
        # `+tenant`: found by id (unique), the tenant only checked; by the tenant's index it would scan them all.
        found = self._one_json("SELECT json_group_array(id) FROM exchanges WHERE +tenant = ? AND id IN"
                               " (SELECT value FROM json_each(?))", (tenant, orjson.dumps(ids)))
        if not found:
            return []
        chunk = orjson.dumps(found)
        self._db.execute(
            "INSERT OR REPLACE INTO forgetting (id, tenant, images, forgotten_at, image_refs)"
            " SELECT value, ?,"
            " (SELECT json_group_array(DISTINCT sha256) FROM exchange_images WHERE exchange_id = value), ?,"
            " (SELECT count(*) FROM exchange_images WHERE exchange_id = value)"
            " FROM json_each(?)", (tenant, time.time(), chunk))
        self._db.execute("DELETE FROM exchange_images WHERE exchange_id IN (SELECT value FROM json_each(?))", (chunk,))
        self._db.execute("DELETE FROM exchanges WHERE id IN (SELECT value FROM json_each(?))", (chunk,))
        return found

    def scrub(self) -> bool:
        """Make deleted rows leave the files: copy the zeroed pages into the database file and empty the
        WAL, whose older frames still hold what the rows were. Returns False when a reader in another
        process kept the WAL from being emptied (the next scrub does it).

        The copying runs on a connection of its own, so appends go on meanwhile; only the final step,
        which finds little left to copy and cuts the WAL file to nothing, holds the appends' lock (it
        must see no write of this process in progress)."""
        self._checkpoint("PASSIVE")
        # The checkpoints' lock before the appends': a background checkpoint still running is waited for
        # while chats go on appending.
        with self._checkpoint_lock, self._lock:
            busy = bool(self._checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
        if busy:
            log.warning("journal WAL not emptied (another process is reading it); retried at the next deletion")
        return not busy

    def _one_json(self, sql: str, args: tuple[Any, ...]) -> Any:
        """The JSON value of a one-row, one-column query, parsed. Hold `_lock`. The forgetting path reads
        its many rows this way, in one step: the sqlite3 module gives up the GIL at every step, and each
        wait to get it back (up to the interpreter's switch interval) would be spent holding the lock."""
        return orjson.loads(self._db.execute(sql, args).fetchone()[0])

    def _checkpoint(self, mode: str) -> bool:
        """A checkpoint on its own connection; True when it could not finish (another process reading)."""
        with self._checkpoint_lock:
            return bool(self._checkpointer.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()[0])

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

    def forgetting(self, limit: int = -1) -> list[Unfinished]:
        """Deletions not finished yet, oldest first, at most `limit` (-1: all)."""
        with self._lock:
            rows = self._one_json("SELECT json_group_array(json_array(id, tenant, json(images), image_refs))"
                                  " FROM (SELECT * FROM forgetting ORDER BY rowid LIMIT ?)", (limit,))
        return [Unfinished(*row) for row in rows]

    def forgotten(self, exchange_ids: Iterable[str]) -> None:
        """Deletions finished: drop their records (nothing of the exchange is left to name)."""
        with self._lock:
            self._db.execute("DELETE FROM forgetting WHERE id IN (SELECT value FROM json_each(?))",
                             (orjson.dumps(list(exchange_ids)),))

    def referenced(self, shas: Iterable[str]) -> set[str]:
        """The images among `shas` that some exchange in the journal still uses."""
        with self._lock:
            return set(self._one_json("SELECT json_group_array(DISTINCT sha256) FROM exchange_images"
                                      " WHERE sha256 IN (SELECT value FROM json_each(?))", (orjson.dumps(list(shas)),)))

    def present(self, exchange_ids: Iterable[str]) -> set[str]:
        """The ids among `exchange_ids` whose rows exist (the ingest worker's check for deletions)."""
        with self._lock:
            return {i for i in set(exchange_ids)
                    if self._db.execute("SELECT 1 FROM exchanges WHERE id = ?", (i,)).fetchone()}


def _add_columns(db: sqlite3.Connection, table: str, *columns: str) -> None:
    """Add the columns (`name TYPE`) that `table` lacks; nothing if the table does not exist yet."""
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for column in columns:
        if present and column.split()[0] not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


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


class _Checkpoints:
    """The journal's checkpoints, on a thread started at the first one asked for: the copying of WAL pages
    into the database file and its fsyncs then never stall an append (a chat waiting on the event loop).

    PASSIVE: a checkpoint neither waits for nor blocks the appends; what it could not copy yet is copied
    by the next one."""

    def __init__(self, journal: SQLiteJournal) -> None:
        self._journal = journal
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def request(self) -> None:
        with self._start_lock:
            if self._stopping:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="journal-checkpoint", daemon=True)
                self._thread.start()
        self._wanted.set()

    def stop(self) -> None:
        with self._start_lock:
            self._stopping = True
            thread = self._thread
        self._wanted.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                self._journal._checkpoint("PASSIVE")
            except sqlite3.Error as exc:  # retried at the next request; SQLite's backstop still bounds the WAL
                log.warning("journal checkpoint failed: %s", exc)
