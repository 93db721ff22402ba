"""The PostgreSQL journal's schema, as an ordered list of migrations applied once each, at start-up.

`MIGRATIONS[n - 1]` is version n. A released migration never changes: a new shape is a new entry at the
end. `migrate` runs in one transaction under an advisory lock, so replicas starting together apply each
version once: the first takes the lock and migrates, the others wait for it, then find nothing to do.
Statements are plain `CREATE` (no `IF NOT EXISTS`): a version applied twice would fail loudly rather
than pass unnoticed.
"""

from __future__ import annotations

import logging

import psycopg

log = logging.getLogger("visionrag.journal")

MIGRATIONS: tuple[str, ...] = (
    # 1: the SQLite journal's tables (gateway.journal.sqlite), but the queue in a table of its own: claims
    # and ingest marks churn there, in rows of three small columns, while an exchange's own row is written
    # once and deleted once (an UPDATE would leave a dead copy of the whole exchange each time). Text keys
    # are in the "C" collation: byte order, as SQLite and Python compare them (browsing breaks ties by id),
    # whatever the database's locale.
    """
    CREATE TABLE exchanges (
        seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- append order: the queue's
        id           text COLLATE "C" NOT NULL UNIQUE,
        created_at   double precision NOT NULL,  -- unix seconds, the float the cursor carries
        endpoint     text NOT NULL,
        model        text COLLATE "C" NOT NULL,
        tenant       text COLLATE "C" NOT NULL,
        "user"       text COLLATE "C",
        status       text NOT NULL,
        record       bytea NOT NULL  -- the Exchange as orjson's JSON bytes
    );
    CREATE INDEX exchanges_browse ON exchanges (tenant, created_at, id);

    -- The exchanges not yet ingested, by append order; a row leaves when its exchange is ingested.
    CREATE TABLE queue (
        seq          bigint PRIMARY KEY,  -- exchanges.seq
        claimed_by   text COLLATE "C",    -- the worker whose claim is live, or was until it expired
        lease_until  timestamptz          -- on the database's clock: workers' clocks never compare
    );

    CREATE TABLE exchange_images (
        sha256       text COLLATE "C" NOT NULL,
        exchange_id  text COLLATE "C" NOT NULL,
        tenant       text COLLATE "C" NOT NULL,
        mime         text NOT NULL
    );
    CREATE INDEX exchange_images_access ON exchange_images (sha256, tenant);
    CREATE INDEX exchange_images_exchange ON exchange_images (exchange_id);

    CREATE TABLE forgetting (
        seq          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- oldest first
        id           text COLLATE "C" PRIMARY KEY,
        tenant       text COLLATE "C" NOT NULL,
        images       text[] NOT NULL,  -- the exchange's distinct image sha256s
        forgotten_at double precision NOT NULL,
        image_refs   integer
    );

    -- Claims that expired and were taken by another worker, until the worker they were taken from asks.
    CREATE TABLE takeovers (
        worker       text COLLATE "C" NOT NULL,
        exchange_id  text COLLATE "C" NOT NULL,
        PRIMARY KEY (worker, exchange_id)
    );
    """,
)

# Any constant shared by every replica: the key of the advisory lock that serializes migrations.
_LOCK = "visionrag.journal.migrations"


def migrate(conn: psycopg.Connection) -> int:
    """Bring the schema to the newest version; returns it. Safe to call from several processes at once."""
    with conn.transaction():
        # Held until this transaction ends: a replica starting meanwhile waits here, then sees the versions
        # this one recorded.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                     " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version in applied:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            log.info("journal schema: applied version %d", version)
        newest = max(applied | {len(MIGRATIONS)})
    if newest > len(MIGRATIONS):
        # A newer release migrated this database (a rolling upgrade, or a rollback): its changes add to the
        # schema, so this code still finds what it uses.
        log.warning("journal schema is at version %d, newer than this release's %d", newest, len(MIGRATIONS))
    return newest
