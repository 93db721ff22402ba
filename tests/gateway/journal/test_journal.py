import time

from gateway.journal import BlobStore, Exchange, ImageRef, Journal


def make_exchange(i: int, **fields) -> Exchange:
    return Exchange(**{
        "id": f"ex-{i}", "created_at": time.time(), "endpoint": "chat.completions", "model": "m",
        "tenant": "default", "user": None, "messages": [{"role": "user", "text": f"question {i}"}],
        "images": [], "answer": f"answer {i}", "finish_reason": "stop",
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, "latency_ms": 1.5,
        **fields,
    })


def test_append_get_round_trip(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    exchange = make_exchange(1, images=[ImageRef("a" * 64, "image/png", "https://example.com/x.png")],
                             user="alice")
    journal.append(exchange)
    assert journal.get("ex-1") == exchange
    assert journal.get("ex-1").question == "question 1"
    assert journal.get("missing") is None


def test_queue_order_mark_and_resume_after_reopen(tmp_path):
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    for i in range(5):
        journal.append(make_exchange(i))
    journal.append(make_exchange(2))  # the same id again is ignored
    assert journal.count() == 5
    assert [e.id for e in journal.pending(3)] == ["ex-0", "ex-1", "ex-2"]
    journal.mark_ingested(["ex-0", "ex-1"])
    journal.close()

    reopened = Journal(path)
    assert reopened.backlog() == 3
    assert [e.id for e in reopened.pending(10)] == ["ex-2", "ex-3", "ex-4"]


def test_blob_store_is_content_addressed(tmp_path):
    blobs = BlobStore(tmp_path / "images")
    digest = blobs.put(b"picture")
    assert blobs.put(b"picture") == digest
    assert blobs.get(digest) == b"picture"
    assert digest in blobs
    assert blobs.get("0" * 64) is None
    assert "../etc/passwd" not in blobs
    assert not list((tmp_path / "images").rglob("*.tmp"))
