import threading
import time

from gateway.journal import Exchange, ImageRef
from gateway.journal.disk import DiskBlobStore
from gateway.journal.sqlite import SQLiteJournal


def make_exchange(i: int, **fields) -> Exchange:
    return Exchange(**{
        "id": f"ex-{i}", "created_at": time.time(), "endpoint": "chat.completions", "model": "m",
        "tenant": "default", "user": None, "messages": [{"role": "user", "text": f"question {i}"}],
        "images": [], "answer": f"answer {i}", "finish_reason": "stop",
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, "latency_ms": 1.5,
        **fields,
    })


def test_append_get_round_trip(tmp_path):
    journal = SQLiteJournal(tmp_path / "j.sqlite3")
    exchange = make_exchange(1, images=[ImageRef("a" * 64, "image/png", "https://example.com/x.png")],
                             user="alice")
    journal.append(exchange)
    assert journal.get("ex-1") == exchange
    assert journal.get("ex-1").question == "question 1"
    assert journal.get("missing") is None


def test_queue_order_mark_and_resume_after_reopen(tmp_path):
    path = tmp_path / "j.sqlite3"
    journal = SQLiteJournal(path)
    for i in range(5):
        journal.append(make_exchange(i))
    journal.append(make_exchange(2))  # the same id again is ignored
    assert journal.count() == 5
    assert [e.id for e in journal.pending(3)] == ["ex-0", "ex-1", "ex-2"]
    journal.mark_ingested(["ex-0", "ex-1"])
    journal.close()

    reopened = SQLiteJournal(path)
    assert reopened.backlog() == 3
    assert [e.id for e in reopened.pending(10)] == ["ex-2", "ex-3", "ex-4"]


def test_blob_store_is_content_addressed(tmp_path):
    blobs = DiskBlobStore(tmp_path / "images")
    digest = blobs.put(b"picture")
    assert blobs.put(b"picture") == digest
    assert blobs.get(digest) == b"picture"
    assert digest in blobs
    assert blobs.get("0" * 64) is None
    assert "../etc/passwd" not in blobs
    assert not list((tmp_path / "images").rglob("*.tmp"))


def test_image_access_follows_the_journals_rows(tmp_path):
    journal = SQLiteJournal(tmp_path / "j.sqlite3")
    sha = "b" * 64
    journal.append(make_exchange(1, tenant="acme", images=[ImageRef(sha, "image/webp")]))
    journal.append(make_exchange(2, tenant="bravo", images=[ImageRef(sha, "image/webp")]))
    assert journal.image_mime("acme", sha) == journal.image_mime("bravo", sha) == "image/webp"
    assert journal.image_mime("other", sha) is None and journal.image_mime("acme", "c" * 64) is None
    assert journal.forget(["ex-1"], "acme") == ["ex-1"]
    # From the moment the row is gone, whatever is left elsewhere (blob, store points).
    assert journal.image_mime("acme", sha) is None
    assert journal.image_mime("bravo", sha) == "image/webp" and journal.referenced([sha]) == {sha}


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
