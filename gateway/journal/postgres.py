"""`PostgresJournal`, the Journal (gateway.journal.base) in PostgreSQL, shared by every gateway replica and
`visionrag worker`: chosen when VISIONRAG_DATABASE_URL is set.

The SQLite journal's tables (gateway.journal.migrations), the queue in one of its own, reached through a
pool of autocommit connections (psycopg_pool): each call is one statement, so one transaction and one
round trip, whatever it touches (an exchange, its image references and its place in the queue; a deleted
row and its `forgetting` record). Durability is the server's: with its default `synchronous_commit=on`,
`append` returns once the commit is flushed to PostgreSQL's WAL (and to synchronous standbys, if any).

Several workers share the queue through `claim`: `FOR UPDATE SKIP LOCKED` hands each exchange to one
worker at a time, under a lease measured on the database's clock. `lead` is a session-level advisory lock
on a connection of its own, outside the pool: held until the journal closes or its process dies (the
server ends the session, and the lock with it).

What PostgreSQL keeps of a forgotten exchange, and what the gateway does about each:
- Dead row versions. `forget` deletes the rows (the exchange's, its image references, its place in the
  queue) at once: no query sees them again. An exchange's row is written once and never updated (claims
  and ingest marks change the queue's rows), so one version of it is left, in the table's pages (a long
  record's in its TOAST table) and its keys in the indexes, until a VACUUM removes them. Autovacuum gets
  there eventually; `scrub`, run by the finisher of deletions after each pass, runs VACUUM on the
  journal's tables at once. VACUUM cannot remove a version that a transaction older than the deletion may
  still see (a long transaction, a prepared one, a replication slot or a standby's feedback): `scrub`
  then returns False, and the next pass runs it again.
- Free space. VACUUM marks the space free but does not zero it: the bytes stay in the data file until a
  later row is written over them (appends fill the free space of the table's pages) or the table is
  rewritten (`VACUUM FULL`, `pg_repack`: maintenance with locks the gateway does not take). Storage
  encrypted at rest keeps them off a lost or discarded disk.
- WAL. The insert is in PostgreSQL's WAL until its segment is recycled after a checkpoint (within about
  max_wal_size of writes) and, where WAL is archived for point-in-time recovery, in the archive until it
  expires.
- Replicas and backups. Streaming replicas apply the deletion and the VACUUM as the primary does (a
  delayed replica after its delay). Backups and WAL archives keep the rows until they expire: their
  retention bounds how long a forgotten exchange can still be restored, and the gateway cannot shorten it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from gateway import metrics
from gateway.journal.base import Unfinished
from gateway.journal.migrations import migrate
from gateway.journal.records import Exchange

log = logging.getLogger("visionrag.journal")

# Rows per statement when forgetting: a deletion's transaction stays short (appends never wait for it:
# they touch other rows), and a long list is not one huge statement.
FORGET_CHUNK = 500

# One statement for a group of exchanges and their images: unnest turns the columns sent as arrays back
# into rows, in the batch's order (identity values, the queue's order, follow it). An id already recorded,
# or repeated later in the batch, is skipped; only the rows inserted get image references.
_APPEND = """
WITH added AS (
    INSERT INTO exchanges (id, created_at, endpoint, model, tenant, "user", status, record)
    SELECT id, created_at, endpoint, model, tenant, "user", status, record
    FROM unnest(%s::text[], %s::float8[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %b::bytea[])
        WITH ORDINALITY AS batch (id, created_at, endpoint, model, tenant, "user", status, record, n)
    ORDER BY n
    ON CONFLICT (id) DO NOTHING
    RETURNING seq, id
), queued AS (
    INSERT INTO queue (seq) SELECT seq FROM added
)
INSERT INTO exchange_images (sha256, exchange_id, tenant, mime)
SELECT image.sha256, image.exchange_id, image.tenant, image.mime
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS image (sha256, exchange_id, tenant, mime)
JOIN added ON added.id = image.exchange_id
"""

# The oldest queued exchanges under no live claim, locked as they are found; rows another worker is
# claiming right now are skipped, not waited for. An expired claim of another worker becomes a takeover
# it can learn of; one of this worker's own comes back to it and is no takeover.
_CLAIM = """
WITH picked AS (
    SELECT seq, claimed_by FROM queue
    WHERE lease_until IS NULL OR lease_until < now() OR claimed_by = %(worker)s
    ORDER BY seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE queue SET claimed_by = %(worker)s, lease_until = now() + %(lease_s)s * interval '1 second'
    FROM picked WHERE queue.seq = picked.seq
    RETURNING queue.seq, picked.claimed_by AS previous
), rows AS (
    SELECT seq, id, record, previous FROM claimed JOIN exchanges USING (seq)
), noted AS (
    INSERT INTO takeovers (worker, exchange_id)
    SELECT previous, id FROM rows WHERE previous <> %(worker)s
    ON CONFLICT DO NOTHING
), back AS (
    DELETE FROM takeovers WHERE worker = %(worker)s AND exchange_id IN (SELECT id FROM rows)
)
SELECT seq, record FROM rows
"""

# Rows, their image references and their `forgetting` records in one statement (one transaction). A
# deletion recorded again (the id was appended again and forgotten again) moves to the end of the list.
_FORGET = """
WITH gone AS (
    DELETE FROM exchanges WHERE id = ANY(%(ids)s) AND tenant = %(tenant)s RETURNING seq, id
), dequeued AS (
    DELETE FROM queue WHERE seq IN (SELECT seq FROM gone)
), refs AS (
    DELETE FROM exchange_images WHERE exchange_id IN (SELECT id FROM gone) RETURNING exchange_id, sha256
)
INSERT INTO forgetting (id, tenant, images, forgotten_at, image_refs)
SELECT gone.id, %(tenant)s,
       coalesce(array_agg(DISTINCT refs.sha256) FILTER (WHERE refs.sha256 IS NOT NULL), '{}'),
       %(now)s, count(refs.sha256)
FROM gone LEFT JOIN refs ON refs.exchange_id = gone.id
GROUP BY gone.id
ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, images = excluded.images,
    forgotten_at = excluded.forgotten_at, image_refs = excluded.image_refs, seq = DEFAULT
RETURNING id
"""

_TABLES = "exchanges, queue, exchange_images, forgetting, takeovers"

# After a VACUUM: whether something holds a snapshot or a transaction id older than `horizon` (the first
# transaction id not yet started when the scrub began), so that VACUUM had to keep row versions deleted
# before it. The age of a transaction id grows with how long ago it started. Autovacuum's workers are
# left out: VACUUM ignores another VACUUM's snapshot. A role without pg_read_all_stats sees no other
# role's sessions here.
_HELD_BACK = """
WITH horizon AS (SELECT age(%s::xid) AS age)
SELECT EXISTS (
    SELECT FROM pg_stat_activity, horizon
    WHERE pid <> pg_backend_pid() AND (datname = current_database() OR datname IS NULL)
      AND backend_type <> 'autovacuum worker'
      AND greatest(age(backend_xmin), age(backend_xid)) > horizon.age
) OR EXISTS (
    SELECT FROM pg_prepared_xacts, horizon WHERE age(transaction) > horizon.age
) OR EXISTS (
    SELECT FROM pg_replication_slots, horizon WHERE age(xmin) > horizon.age
)
"""


class PostgresJournal:
    def __init__(self, url: str, pool_size: int = 8) -> None:
        self._conninfo = url
        self.where = _where_to(url)
        # A server that cannot be reached fails the start-up here, with libpq's own message.
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            self.version = migrate(conn)
        self._pool = ConnectionPool(url, min_size=pool_size, max_size=pool_size, open=True,
                                    kwargs={"autocommit": True}, name="visionrag-journal")
        self._leader: psycopg.Connection | None = None
        self._roles: set[str] = set()
        self._lead_lock = threading.Lock()
        log.info("journal: PostgreSQL at %s, schema version %d", self.where, self.version)

    # --- recording --------------------------------------------------------------------------------
    def append(self, exchange: Exchange) -> None:
        self.append_many([exchange])

    def append_many(self, exchanges: Sequence[Exchange]) -> None:
        if not exchanges:
            return
        with metrics.journal_appends(len(exchanges)):
            self._append_many(exchanges)

    def _append_many(self, exchanges: Sequence[Exchange]) -> None:
        rows = [(e.id, e.created_at, e.endpoint, e.model, e.tenant, e.user, e.status, orjson.dumps(e))
                for e in exchanges]
        # A repeated id is never inserted: its first record wins, and only that one's images count.
        first = {e.id: e for e in reversed(exchanges)}
        images = [(image.sha256, e.id, e.tenant, image.mime) for e in first.values() for image in e.images]
        columns = [list(column) for column in zip(*rows, strict=True)]
        image_columns = [list(column) for column in zip(*images, strict=True)] if images else [[], [], [], []]
        with self._pool.connection() as conn:
            conn.execute(_APPEND, (*columns, *image_columns))

    # --- reading ----------------------------------------------------------------------------------
    def get(self, exchange_id: str) -> Exchange | None:
        row = self._one("SELECT record FROM exchanges WHERE id = %s", (exchange_id,))
        return _exchange(row[0]) if row else None

    def pending(self, limit: int) -> list[Exchange]:
        rows = self._all("SELECT record FROM queue JOIN exchanges USING (seq) ORDER BY seq LIMIT %s", (limit,))
        return [_exchange(row[0]) for row in rows]

    def backlog(self, tenant: str | None = None) -> int:
        if tenant is None:
            return self._one("SELECT count(*) FROM queue", ())[0]
        return self._one("SELECT count(*) FROM queue JOIN exchanges USING (seq) WHERE tenant = %s", (tenant,))[0]

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
        """Read backwards along (tenant, created_at, id): `before` continues strictly after that row."""
        where, args = _where(
            tenant,
            ("(created_at, id) < (%s, %s)", before),
            ("created_at >= %s", time_from),
            ("created_at <= %s", time_to),
            ("model = ANY(%s)", list(models) or None),
            ('"user" = %s', user),
        )
        rows = self._all(f"SELECT record FROM exchanges WHERE {where} ORDER BY created_at DESC, id DESC LIMIT %s",
                         (*args, limit))
        return [_exchange(row[0]) for row in rows]

    def count(self) -> int:
        return self._one("SELECT count(*) FROM exchanges", ())[0]

    def image_mime(self, tenant: str, sha256: str) -> str | None:
        row = self._one("SELECT mime FROM exchange_images WHERE sha256 = %s AND tenant = %s LIMIT 1",
                        (sha256, tenant))
        return row[0] if row else None

    def select_ids(self, tenant: str, *, user: str | None = None, before: float | None = None,
                   limit: int = 1000) -> list[str]:
        where, args = _where(tenant, ('"user" = %s', user), ("created_at < %s", before))
        return [row[0] for row in self._all(f"SELECT id FROM exchanges WHERE {where} LIMIT %s", (*args, limit))]

    def ids_starting(self, tenant: str, prefix: str, limit: int = 10) -> list[str]:
        # LIKE on a "C"-collated column walks the id index; the prefix's own wildcards are escaped.
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._all("SELECT id FROM exchanges WHERE id LIKE %s AND tenant = %s ORDER BY id LIMIT %s",
                         (pattern, tenant, limit))
        return [row[0] for row in rows]

    def tenants(self) -> list[str]:
        return [row[0] for row in self._all("SELECT DISTINCT tenant FROM exchanges", ())]

    def referenced(self, shas: Iterable[str]) -> set[str]:
        rows = self._all("SELECT DISTINCT sha256 FROM exchange_images WHERE sha256 = ANY(%s)", (list(shas),))
        return {row[0] for row in rows}

    def present(self, exchange_ids: Iterable[str]) -> set[str]:
        return {row[0] for row in self._all("SELECT id FROM exchanges WHERE id = ANY(%s)", (list(exchange_ids),))}

    # --- the queue --------------------------------------------------------------------------------
    def mark_ingested(self, exchange_ids: Iterable[str], worker: str | None = None) -> None:
        # Off the queue, and every claim on them with it (whoever held it).
        self._run("DELETE FROM queue WHERE seq IN (SELECT seq FROM exchanges WHERE id = ANY(%s))",
                  (list(exchange_ids),))

    def claim(self, worker: str, limit: int, lease_s: float) -> list[Exchange]:
        rows = self._all(_CLAIM, {"worker": worker, "limit": limit, "lease_s": lease_s})
        return [_exchange(record) for _, record in sorted(rows)]

    def release(self, worker: str) -> None:
        self._run("UPDATE queue SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = %s", (worker,))

    def taken_over(self, worker: str) -> list[str]:
        return [row[0] for row in self._all("DELETE FROM takeovers WHERE worker = %s RETURNING exchange_id",
                                            (worker,))]

    def requeue_all(self) -> int:
        with self._pool.connection() as conn:
            return conn.execute("INSERT INTO queue (seq) SELECT seq FROM exchanges ON CONFLICT DO NOTHING").rowcount

    def lead(self, role: str) -> bool:
        """Held while this journal's leader session lives: each call checks it still does (a server restart
        or a dropped connection ends the session and its locks; the next call tries to take the role anew)."""
        with self._lead_lock:
            try:
                if self._leader is None:
                    self._leader = self._leader_session()
                if role in self._roles:
                    self._leader.execute("SELECT 1")
                    return True
                taken = self._leader.execute("SELECT pg_try_advisory_lock(hashtext('visionrag.lead'), hashtext(%s))",
                                             (role,)).fetchone()
                if taken and taken[0]:
                    self._roles.add(role)
                    log.info("journal: this process now leads %r", role)
                    return True
                return False
            except psycopg.OperationalError as exc:
                log.warning("journal: leader session lost (%s); roles %s given up", exc, sorted(self._roles))
                if self._leader is not None:
                    self._leader.close()
                self._leader, self._roles = None, set()
                return False

    def _leader_session(self) -> psycopg.Connection:
        conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        # The server notices a vanished client (a network cut, a host gone) within about a minute, not the
        # OS's two hours, and ends the session: its roles are free for another process.
        for setting, value in (("tcp_keepalives_idle", 30), ("tcp_keepalives_interval", 10),
                               ("tcp_keepalives_count", 3)):
            conn.execute("SELECT set_config(%s, %s, false)", (setting, str(value)))
        return conn

    # --- forgetting -------------------------------------------------------------------------------
    def forget(self, exchange_ids: Iterable[str], tenant: str) -> list[str]:
        ids = list(dict.fromkeys(exchange_ids))
        deleted: set[str] = set()
        for start in range(0, len(ids), FORGET_CHUNK):
            rows = self._all(_FORGET, {"ids": ids[start:start + FORGET_CHUNK], "tenant": tenant, "now": time.time()})
            deleted.update(row[0] for row in rows)
        return [exchange_id for exchange_id in ids if exchange_id in deleted]

    def forgetting(self, limit: int = -1) -> list[Unfinished]:
        rows = self._all("SELECT id, tenant, images, image_refs FROM forgetting ORDER BY seq LIMIT %s",
                         (None if limit < 0 else limit,))
        return [Unfinished(*row) for row in rows]

    def forgotten(self, exchange_ids: Iterable[str]) -> None:
        self._run("DELETE FROM forgetting WHERE id = ANY(%s)", (list(exchange_ids),))

    def scrub(self) -> bool:
        """VACUUM the journal's tables, their indexes included (VACUUM may otherwise leave index entries
        of a few deleted rows for later). Returns False when an older snapshot kept VACUUM from removing
        what was deleted before this scrub began."""
        with self._pool.connection() as conn:
            horizon = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())").fetchone()[0]
            conn.execute(f"VACUUM (INDEX_CLEANUP ON) {_TABLES}")
            held = conn.execute(_HELD_BACK, (str(int(horizon) % 2**32),)).fetchone()[0]
        if held:
            log.warning("journal: VACUUM kept deleted rows an older transaction may still see; retried at the"
                        " next deletion")
        return not held

    def close(self) -> None:
        with self._lead_lock:
            if self._leader is not None:
                self._leader.close()  # its advisory locks go with the session
                self._leader, self._roles = None, set()
        self._pool.close()

    # --- helpers ----------------------------------------------------------------------------------
    def _one(self, sql: str, args: Any) -> tuple[Any, ...] | None:
        with self._pool.connection() as conn:
            return conn.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Any) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def _run(self, sql: str, args: Any) -> None:
        with self._pool.connection() as conn:
            conn.execute(sql, args)


def _exchange(record: bytes) -> Exchange:
    return Exchange.from_dict(orjson.loads(record))


def _where(tenant: str, *conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause for one tenant's rows: `tenant = %s` and each (clause, value) whose value is not
    None; a tuple value fills a clause of several `%s`."""
    clauses, args = ["tenant = %s"], [tenant]
    for clause, value in conditions:
        if value is None:
            continue
        clauses.append(clause)
        args += list(value) if isinstance(value, tuple) else [value]
    return " AND ".join(clauses), args


def _where_to(url: str) -> str:
    """host:port/dbname of a connection string, for logs: never its password. A string libpq cannot parse
    is refused without libpq's message, which quotes the part it could not parse (the password, maybe)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ValueError("the database URL is not a valid PostgreSQL connection string"
                         " (postgresql://user:password@host:port/dbname)") from None
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"
