"""What only the PostgreSQL journal does: chosen by the settings, migrations applied once however many
replicas start together, roles held by one process at a time (and freed when it dies), claims shared by
several processes, VACUUM at `scrub`. The contract it shares with every backend is tested in
test_contract.py and test_claims.py; all of it on a real server (tests.plugins.postgres)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from gateway.journal import open_journal
from gateway.journal.migrations import MIGRATIONS, migrate
from gateway.journal.postgres import PostgresJournal
from gateway.settings import Settings
from tests.gateway.journal.test_contract import ids, make_exchange

ROOT = Path(__file__).resolve().parents[3]
# A process that takes a role and keeps it until killed.
LEADER = """
import sys, time
from gateway.journal.postgres import PostgresJournal
journal = PostgresJournal(sys.argv[1], pool_size=1)
print(journal.lead("retention"), flush=True)
time.sleep(600)
"""


@pytest.fixture
def open_pg(postgres_url: str):
    """Opens journals on the test's database; all are closed after the test."""
    opened: list[PostgresJournal] = []

    def opener(pool_size: int = 2) -> PostgresJournal:
        opened.append(PostgresJournal(postgres_url, pool_size=pool_size))
        return opened[-1]

    yield opener
    for journal in opened:
        journal.close()


def test_open_journal_gives_postgres_when_a_database_url_is_set_and_never_logs_its_password(
        postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The test server trusts every connection, so any password passes: it only has to stay out of the logs.
    url = postgres_url.replace("postgres@", "postgres:hunter2-secret@")
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", database_url=SecretStr(url), database_pool_size=3)
    with caplog.at_level(logging.DEBUG):
        journal = open_journal(settings)
    try:
        assert isinstance(journal, PostgresJournal) and journal._pool.max_size == 3
        journal.append(make_exchange(1))
        assert journal.get("ex-1") == make_exchange(1, created_at=journal.get("ex-1").created_at)
        assert not settings.journal_path.exists()  # the embedded journal is not touched
        assert "hunter2" not in caplog.text and "schema version" in caplog.text
    finally:
        journal.close()


def test_a_malformed_url_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError, match="not a valid PostgreSQL connection string") as refused:
        PostgresJournal("postgresql://visionrag:hunter2%zz@db.example/visionrag")
    assert "hunter2" not in str(refused.value) and refused.value.__cause__ is None
    assert refused.value.__suppress_context__


def test_replicas_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    replicas, started = 8, threading.Barrier(8)
    opened: list[PostgresJournal] = []
    failures: list[BaseException] = []

    def start() -> None:
        started.wait()
        try:
            opened.append(PostgresJournal(postgres_url, pool_size=1))
        except BaseException as exc:  # noqa: BLE001 - every failure is reported below
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == [] and len(opened) == replicas
        assert {journal.version for journal in opened} == {len(MIGRATIONS)}
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall() == [
                (version,) for version in range(1, len(MIGRATIONS) + 1)]
        opened[0].append(make_exchange(1))
        assert opened[-1].get("ex-1") is not None
    finally:
        for journal in opened:
            journal.close()


def test_a_schema_newer_than_this_release_is_used_as_it_is(postgres_url: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
        with caplog.at_level(logging.WARNING):
            assert migrate(conn) == len(MIGRATIONS) + 1
    assert "newer than this release" in caplog.text


def test_a_role_is_held_by_one_journal_at_a_time(open_pg) -> None:
    first, second = open_pg(), open_pg()
    assert first.lead("retention") is True and first.lead("retention") is True
    assert second.lead("retention") is False and second.lead("finisher") is True
    assert first.lead("finisher") is False
    first.close()
    assert second.lead("retention") is True


def test_a_dead_process_gives_up_its_roles(open_pg, postgres_url: str) -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER, postgres_url],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        assert leader.stdout.readline().strip() == "True"
        journal = open_pg()
        assert journal.lead("retention") is False
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
    deadline = time.monotonic() + 10
    while not journal.lead("retention"):  # the server ends the dead client's session, and its locks
        assert time.monotonic() < deadline, "the dead process's role was never freed"
        time.sleep(0.05)


def test_a_role_whose_session_was_lost_is_taken_again(open_pg, postgres_url: str) -> None:
    journal = open_pg()
    assert journal.lead("retention") is True
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (journal._leader.info.backend_pid,))
    assert journal.lead("retention") is False  # the lock went with the session
    assert journal.lead("retention") is True


def test_claims_from_several_processes_never_overlap(open_pg) -> None:
    """Several journals (each a pool of its own, as separate workers have), two threads each."""
    total = 400
    open_pg().append_many([make_exchange(i) for i in range(total)])
    journals = [open_pg() for _ in range(4)]
    got: dict[str, list[str]] = {}
    started = threading.Barrier(2 * len(journals))

    def work(journal: PostgresJournal, worker: str) -> None:
        got[worker] = []
        started.wait()
        while batch := journal.claim(worker, 5, 60):
            got[worker] += ids(batch)
            journal.mark_ingested(ids(batch), worker=worker)

    threads = [threading.Thread(target=work, args=(journal, f"w{n}-{t}"))
               for n, journal in enumerate(journals) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for claimed in got.values() for i in claimed]
    assert len(every) == total and set(every) == {f"ex-{i}" for i in range(total)}
    assert sum(1 for claimed in got.values() if claimed) > 1  # shared, not one worker taking it all


def test_scrub_vacuums_forgotten_rows_out_of_the_tables_pages(open_pg, postgres_url: str) -> None:
    journal = open_pg()
    journal.append_many([make_exchange(i, answer=f"marker-{i}-answer") for i in range(3)])
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")

        def row_versions(marker: str) -> int:
            """Tuples in the table's pages (live or dead) whose bytes hold `marker`."""
            return admin.execute(
                "SELECT count(*) FROM generate_series(0, pg_relation_size('exchanges') / 8192 - 1) AS page,"
                " heap_page_items(get_raw_page('exchanges', page::int)) AS item"
                " WHERE position(convert_to(%s, 'UTF8') in item.t_data) > 0", (marker,)).fetchone()[0]

        # A transaction older than the deletion may still read the row: VACUUM keeps it, scrub says so.
        with psycopg.connect(postgres_url) as old:
            old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            assert old.execute("SELECT count(*) FROM exchanges").fetchone()[0] == 3
            assert journal.forget(["ex-1"], "default") == ["ex-1"]
            assert row_versions("marker-1-") == 1
            assert journal.scrub() is False and row_versions("marker-1-") == 1
        assert journal.scrub() is True
        assert row_versions("marker-1-") == 0 and row_versions("marker-0-") == 1 and row_versions("marker-2-") == 1
    assert ids(journal.pending(10)) == ["ex-0", "ex-2"]

