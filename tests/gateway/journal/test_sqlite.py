"""What only the SQLite journal does: WAL mode and its durability setting, migrations of older journals,
deletions committed in chunks and checkpointed out of the WAL. The contract it shares with every
backend is tested in test_contract.py."""

import sqlite3
import threading

from gateway.journal import ImageRef, open_journal
from gateway.journal.sqlite import SQLiteJournal
from gateway.settings import Settings
from tests.gateway.journal.test_contract import make_exchange


def test_open_journal_gives_the_settings_sqlite_file_in_wal_mode(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", journal_synchronous="FULL")
    journal = open_journal(settings)
    try:
        assert isinstance(journal, SQLiteJournal) and journal.path == settings.journal_path
        assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        journal.close()
    journal = open_journal(Settings(_env_file=None, data_dir=tmp_path / "data"))
    try:
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        journal.close()


def test_a_journal_of_the_previous_shape_gets_image_types_and_tenants(tmp_path):
    path = tmp_path / "j.sqlite3"
    journal = SQLiteJournal(path)
    journal.append(make_exchange(1, tenant="acme", images=[ImageRef("d" * 64, "image/jpeg")]))
    # As version 1 left it: image references without tenant or type.
    journal._db.executescript("""
        DROP TABLE exchange_images;
        CREATE TABLE exchange_images (sha256 TEXT NOT NULL, exchange_id TEXT NOT NULL);
        CREATE INDEX exchange_images_sha ON exchange_images (sha256);
        INSERT INTO exchange_images VALUES ('dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd', 'ex-1');
        PRAGMA user_version=1;
    """)
    journal.close()
    journal = SQLiteJournal(path)
    assert journal.image_mime("acme", "d" * 64) == "image/jpeg"
    assert journal.referenced(["d" * 64]) == {"d" * 64}
    journal.close()


def test_a_long_forget_lets_appends_in_between_its_transactions(tmp_path):
    """A bulk deletion commits in chunks: an append (a chat, on the event loop) waits for one chunk, not for
    the whole deletion. Seen from outside: a count taken between appends finds it half done."""
    journal = SQLiteJournal(tmp_path / "j.sqlite3")
    total = 4000
    for i in range(total):
        journal.append(make_exchange(i))
    forgetting = threading.Thread(target=journal.forget, args=([f"ex-{i}" for i in range(total)], "default"))
    forgetting.start()
    appended, left = 0, set()
    while forgetting.is_alive():
        journal.append(make_exchange(total + appended))
        appended += 1
        left.add(journal.count() - appended)
    forgetting.join()
    assert journal.count() == appended and len(journal.forgetting()) == total
    assert any(0 < n < total for n in left), sorted(left)
    journal.close()


def test_scrub_empties_the_wal_unless_another_process_reads_it(tmp_path):
    path = tmp_path / "j.sqlite3"
    journal = SQLiteJournal(path)
    for i in range(3):
        journal.append(make_exchange(i))
    journal.forget(["ex-1"], "default")
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 0
    assert journal.scrub() is True and wal.stat().st_size == 0

    journal.forget(["ex-2"], "default")
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM exchanges").fetchone()  # holds a snapshot: the WAL must stay
    try:
        assert journal.scrub() is False
    finally:
        reader.close()
    assert journal.scrub() is True and wal.stat().st_size == 0
    journal.close()


def test_a_journal_of_the_previous_shape_gets_worker_claims(tmp_path):
    path = tmp_path / "j.sqlite3"
    journal = SQLiteJournal(path)
    journal.append(make_exchange(1, images=[ImageRef("d" * 64, "image/jpeg")]))
    journal.append(make_exchange(2))
    # As version 2 left it: no claim columns, no takeovers.
    journal._db.executescript("""
        DROP INDEX exchanges_claims;
        ALTER TABLE exchanges DROP COLUMN claimed_by;
        ALTER TABLE exchanges DROP COLUMN lease_until;
        DROP TABLE takeovers;
        PRAGMA user_version=2;
    """)
    journal.close()
    journal = SQLiteJournal(path)
    try:
        assert journal._db.execute("PRAGMA user_version").fetchone()[0] == 3
        assert [e.id for e in journal.claim("w1", 10, 60)] == ["ex-1", "ex-2"]
        assert journal.image_mime("default", "d" * 64) == "image/jpeg"
    finally:
        journal.close()
