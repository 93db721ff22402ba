"""The contract of gateway.journal.base (`Journal`, `BlobStore`), run against every backend.

The fixtures (conftest.py) give each test a fresh journal or blob store of each backend in turn, so what
is asserted here is what the rest of the gateway may rely on whichever backend it runs on. What only one
backend does (SQLite's WAL, its migrations; files on disk) is tested in that backend's own module.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from gateway import metrics
from gateway.journal import BlobStore, Exchange, ImageRef, Journal, Unfinished
from tests.gateway.journal.conftest import JournalOpener

T0 = 1.75e9


def make_exchange(i: int, **fields) -> Exchange:
    return Exchange(**{
        "id": f"ex-{i}", "created_at": time.time(), "endpoint": "chat.completions", "model": "m",
        "tenant": "default", "user": None, "messages": [{"role": "user", "text": f"question {i}"}],
        "images": [], "answer": f"answer {i}", "finish_reason": "stop",
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, "latency_ms": 1.5,
        **fields,
    })


def ids(exchanges: list[Exchange]) -> list[str]:
    return [e.id for e in exchanges]


def test_backends_implement_the_protocols(journal: Journal, blobs: BlobStore) -> None:
    assert isinstance(journal, Journal) and isinstance(blobs, BlobStore)


# --- recording and reading --------------------------------------------------------------------------------

def test_append_get_round_trip(journal: Journal):
    exchange = make_exchange(1, images=[ImageRef("a" * 64, "image/png", "https://example.com/x.png")],
                             user="alice")
    journal.append(exchange)
    assert journal.get("ex-1") == exchange
    assert journal.get("ex-1").question == "question 1"
    assert journal.get("missing") is None


def test_an_append_is_seen_whole_by_every_read_and_the_same_id_again_changes_nothing(journal: Journal) -> None:
    timed = metrics.REGISTRY.get_sample_value("visionrag_journal_append_seconds_count") or 0.0
    first = make_exchange(1, tenant="acme", images=[ImageRef("a" * 64, "image/png"), ImageRef("b" * 64, "image/jpeg"),
                                                    ImageRef("a" * 64, "image/png")])
    journal.append(first)
    assert journal.get(first.id) == first and ids(journal.pending(10)) == [first.id]
    assert ids(journal.recent("acme", limit=10)) == [first.id] and journal.present([first.id]) == {first.id}
    assert journal.image_mime("acme", "a" * 64) == "image/png" and journal.image_mime("acme", "b" * 64) == "image/jpeg"
    assert journal.referenced(["a" * 64, "b" * 64, "c" * 64]) == {"a" * 64, "b" * 64}
    assert journal.count() == 1 and journal.tenants() == ["acme"]

    journal.mark_ingested([first.id])
    again = make_exchange(1, tenant="bravo", answer="another answer", images=[ImageRef("c" * 64, "image/webp")])
    journal.append(again)
    assert journal.get(first.id) == first and journal.count() == 1
    assert journal.pending(10) == [] and journal.backlog() == 0  # the first record's ingest mark stays
    assert journal.image_mime("bravo", "c" * 64) is None and journal.referenced(["c" * 64]) == set()
    assert metrics.REGISTRY.get_sample_value("visionrag_journal_append_seconds_count") == timed + 2


def test_append_many_is_appends_in_order_in_one_go(journal: Journal) -> None:
    timed = metrics.REGISTRY.get_sample_value("visionrag_journal_append_seconds_count") or 0.0
    journal.append(make_exchange(1))
    batch = [make_exchange(2, images=[ImageRef("a" * 64, "image/png")]), make_exchange(1, answer="again"),
             make_exchange(3), make_exchange(2, answer="again")]
    journal.append_many(batch)
    assert ids(journal.pending(10)) == ["ex-1", "ex-2", "ex-3"]
    assert [journal.get(f"ex-{i}").answer for i in (1, 2, 3)] == ["answer 1", "answer 2", "answer 3"]
    assert journal.referenced(["a" * 64]) == {"a" * 64}
    journal.append_many([])
    assert journal.count() == 3
    assert metrics.REGISTRY.get_sample_value("visionrag_journal_append_seconds_count") == timed + 5


def test_reads_that_take_a_tenant_see_that_tenants_exchanges_only(journal: Journal) -> None:
    sha = "d" * 64
    mine = make_exchange(1, tenant="acme", user="alice", created_at=T0, images=[ImageRef(sha, "image/png")])
    theirs = make_exchange(2, tenant="bravo", user="alice", created_at=T0 + 1)
    for one in (mine, theirs):
        journal.append(one)
    assert ids(journal.recent("acme", limit=10)) == [mine.id] and journal.recent("nobody", limit=10) == []
    assert journal.backlog("acme") == 1 and journal.backlog("nobody") == 0 and journal.backlog() == 2
    assert journal.select_ids("bravo", user="alice") == [theirs.id]
    assert journal.image_mime("acme", sha) == "image/png" and journal.image_mime("bravo", sha) is None
    assert journal.forget([theirs.id], "acme") == [] and journal.get(theirs.id) == theirs
    assert sorted(journal.tenants()) == ["acme", "bravo"]
    # Not scoped: the memory service compares the tenant itself, the ingest worker reads every tenant's.
    assert journal.get(theirs.id).tenant == "bravo" and journal.present([mine.id, theirs.id]) == {mine.id, theirs.id}


# --- browsing -------------------------------------------------------------------------------------------------

def test_recent_is_newest_first_by_creation_then_id_and_pages_never_repeat_or_skip(journal: Journal) -> None:
    # Appended out of order, several in the same instant.
    rows = [make_exchange(i, created_at=T0 + t) for i, t in ((3, 1), (1, 2), (4, 0), (2, 1), (5, 1), (0, 2))]
    for one in rows:
        journal.append(one)
    newest_first = sorted(rows, key=lambda e: (e.created_at, e.id), reverse=True)
    assert ids(journal.recent("default", limit=10)) == ids(newest_first)
    assert ids(journal.recent("default", limit=3)) == ids(newest_first[:3])

    seen: list[str] = []
    page = journal.recent("default", limit=2)
    late = [make_exchange(8, created_at=T0 + 5), make_exchange(9, created_at=T0 + 0.5)]
    while page:
        seen += ids(page)
        if late:  # appended between pages: a newer one is before the cursor, an older one still ahead
            journal.append(late.pop())
        page = journal.recent("default", limit=2, before=(page[-1].created_at, page[-1].id))
    assert seen == ids(sorted([*rows, make_exchange(9, created_at=T0 + 0.5)],
                              key=lambda e: (e.created_at, e.id), reverse=True))


def test_recent_filters_by_time_model_and_user(journal: Journal) -> None:
    rows = [make_exchange(i, created_at=T0 + i, model=model, user=user)
            for i, (model, user) in enumerate([("m1", "alice"), ("m2", "bob"), ("m1", None), ("m3", "alice"),
                                               ("m2", "alice")])]
    for one in rows:
        journal.append(one)

    def recent(**filters) -> list[str]:
        return ids(journal.recent("default", limit=10, **filters))

    assert recent(time_from=T0 + 1, time_to=T0 + 3) == ["ex-3", "ex-2", "ex-1"]  # both bounds included
    assert recent(time_from=T0 + 3) == ["ex-4", "ex-3"] and recent(time_to=T0) == ["ex-0"]
    assert recent(models=("m1", "m2")) == ["ex-4", "ex-2", "ex-1", "ex-0"] and recent(models=("m9",)) == []
    assert recent(user="alice") == ["ex-4", "ex-3", "ex-0"]
    assert recent(user="alice", models=("m1", "m3"), time_from=T0 + 1) == ["ex-3"]
    assert recent(user="alice", before=(T0 + 4, "ex-4")) == ["ex-3", "ex-0"]


# --- the memory path's queue ------------------------------------------------------------------------------

def test_queue_order_mark_and_resume_after_reopen(journal_opener: JournalOpener):
    journal = journal_opener()
    for i in range(5):
        journal.append(make_exchange(i))
    journal.append(make_exchange(2))  # the same id again is ignored
    assert journal.count() == 5
    assert [e.id for e in journal.pending(3)] == ["ex-0", "ex-1", "ex-2"]
    journal.mark_ingested(["ex-0", "ex-1"])
    journal.close()

    reopened = journal_opener()
    assert reopened.backlog() == 3
    assert [e.id for e in reopened.pending(10)] == ["ex-2", "ex-3", "ex-4"]


def test_pending_hands_out_each_exchange_until_it_is_marked_and_never_after(journal_opener: JournalOpener) -> None:
    journal = journal_opener()
    # In the order appended, whatever their creation times, every tenant's.
    for i, (tenant, t) in enumerate([("acme", 5), ("bravo", 1), ("acme", 3), ("acme", 0)]):
        journal.append(make_exchange(i, tenant=tenant, created_at=T0 + t))
    assert ids(journal.pending(10)) == ["ex-0", "ex-1", "ex-2", "ex-3"]
    assert ids(journal.pending(2)) == ["ex-0", "ex-1"]  # reading takes nothing off
    journal.mark_ingested(["ex-1", "ex-2", "unknown"])
    journal.mark_ingested(["ex-1"])  # twice: harmless
    assert ids(journal.pending(10)) == ["ex-0", "ex-3"]
    assert journal.backlog() == 2 and journal.backlog("acme") == 2 and journal.backlog("bravo") == 0
    journal.close()

    journal = journal_opener()
    assert ids(journal.pending(10)) == ["ex-0", "ex-3"]
    journal.mark_ingested(ids(journal.pending(10)))
    assert journal.pending(10) == [] and journal.backlog() == 0


def test_requeue_all_puts_every_ingested_exchange_back_in_order(journal: Journal) -> None:
    for i in range(4):
        journal.append(make_exchange(i))
    journal.mark_ingested(["ex-0", "ex-2"])
    assert journal.requeue_all() == 2
    assert ids(journal.pending(10)) == ["ex-0", "ex-1", "ex-2", "ex-3"] and journal.backlog() == 4
    assert journal.requeue_all() == 0


# --- forgetting ---------------------------------------------------------------------------------------------

def test_image_access_follows_the_journals_rows(journal: Journal):
    sha = "b" * 64
    journal.append(make_exchange(1, tenant="acme", images=[ImageRef(sha, "image/webp")]))
    journal.append(make_exchange(2, tenant="bravo", images=[ImageRef(sha, "image/webp")]))
    assert journal.image_mime("acme", sha) == journal.image_mime("bravo", sha) == "image/webp"
    assert journal.image_mime("other", sha) is None and journal.image_mime("acme", "c" * 64) is None
    assert journal.forget(["ex-1"], "acme") == ["ex-1"]
    # From the moment the row is gone, whatever is left elsewhere (blob, store points).
    assert journal.image_mime("acme", sha) is None
    assert journal.image_mime("bravo", sha) == "image/webp" and journal.referenced([sha]) == {sha}


def test_forget_deletes_the_tenants_rows_and_records_what_is_left_to_delete(journal: Journal) -> None:
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    twice = make_exchange(1, tenant="acme", user="alice", images=[ImageRef(a, "image/png"), ImageRef(b, "image/png"),
                                                                  ImageRef(a, "image/png")])
    text_only = make_exchange(2, tenant="acme")
    kept = make_exchange(3, tenant="acme", images=[ImageRef(c, "image/png")])
    theirs = make_exchange(4, tenant="bravo", images=[ImageRef(b, "image/png")])
    for one in (twice, text_only, kept, theirs):
        journal.append(one)
    journal.mark_ingested([twice.id])

    # The given order, each once; unknown ids and another tenant's are left alone.
    assert journal.forget([text_only.id, "unknown", twice.id, text_only.id, theirs.id], "acme") == [text_only.id,
                                                                                                    twice.id]
    for gone in (twice, text_only):
        assert journal.get(gone.id) is None
    assert journal.present([twice.id, text_only.id, kept.id, theirs.id]) == {kept.id, theirs.id}
    assert ids(journal.recent("acme", limit=10)) == [kept.id] and ids(journal.pending(10)) == [kept.id, theirs.id]
    assert journal.select_ids("acme") == [kept.id] and journal.select_ids("acme", user="alice") == []
    assert journal.count() == 2 and journal.backlog("acme") == 1
    assert journal.image_mime("acme", a) is None and journal.image_mime("acme", b) is None
    assert journal.referenced([a, b, c]) == {b, c}  # b: bravo's exchange still carries it

    unfinished = journal.forgetting()  # forgotten together: in no particular order among themselves
    assert sorted((u.id, u.tenant, sorted(u.images), u.image_refs) for u in unfinished) == [
        (twice.id, "acme", [a, b], 3), (text_only.id, "acme", [], 0)]
    assert all(isinstance(u, Unfinished) for u in unfinished)
    assert len(journal.forgetting(limit=1)) == 1
    journal.forgotten([text_only.id, "unknown"])
    assert [u.id for u in journal.forgetting()] == [twice.id]
    journal.forgotten([twice.id])
    assert journal.forgetting() == []


def test_forgetting_lists_deletions_oldest_first(journal: Journal) -> None:
    for i in range(4):
        journal.append(make_exchange(i))
    for exchange_id in ("ex-2", "ex-0", "ex-3"):
        assert journal.forget([exchange_id], "default") == [exchange_id]
    assert [u.id for u in journal.forgetting()] == ["ex-2", "ex-0", "ex-3"]
    assert [u.id for u in journal.forgetting(limit=2)] == ["ex-2", "ex-0"]


def test_an_exchange_forgotten_again_is_the_newest_deletion(journal: Journal) -> None:
    journal.append_many([make_exchange(1), make_exchange(2)])
    journal.forget(["ex-1"], "default")
    journal.forget(["ex-2"], "default")
    journal.append(make_exchange(1))  # the same id recorded again, then forgotten again
    journal.forget(["ex-1"], "default")
    assert [u.id for u in journal.forgetting()] == ["ex-2", "ex-1"]


def test_select_ids_by_user_and_creation_time(journal: Journal) -> None:
    for i, user in enumerate(["alice", "bob", "alice", None, "alice"]):
        journal.append(make_exchange(i, created_at=T0 + i, user=user))
    assert sorted(journal.select_ids("default")) == ["ex-0", "ex-1", "ex-2", "ex-3", "ex-4"]
    assert sorted(journal.select_ids("default", user="alice")) == ["ex-0", "ex-2", "ex-4"]
    assert sorted(journal.select_ids("default", before=T0 + 2)) == ["ex-0", "ex-1"]  # strictly before
    assert journal.select_ids("default", user="alice", before=T0 + 2) == ["ex-0"]
    some = journal.select_ids("default", user="alice", limit=2)
    assert len(some) == 2 and set(some) <= {"ex-0", "ex-2", "ex-4"}


def test_ids_starting_with_a_prefix_are_the_tenants_only_in_id_order(journal: Journal) -> None:
    for exchange_id, tenant in (("ab12", "default"), ("ab1x", "default"), ("AB13", "default"), ("ab19", "acme"),
                                ("a_b%", "default"), ("axyz", "default")):
        journal.append(make_exchange(0, id=exchange_id, tenant=tenant))
    assert journal.ids_starting("default", "ab1") == ["ab12", "ab1x"]  # case-sensitive; not acme's
    assert journal.ids_starting("default", "ab1", limit=1) == ["ab12"]
    assert journal.ids_starting("acme", "ab1") == ["ab19"]
    assert journal.ids_starting("default", "ab12") == ["ab12"]  # a whole id is its own prefix
    assert journal.ids_starting("default", "a_") == ["a_b%"] and journal.ids_starting("default", "a%") == []  # no wildcards
    assert journal.ids_starting("default", "zz") == []
    journal.forget(["ab12"], "default")
    assert journal.ids_starting("default", "ab1") == ["ab1x"]


def test_scrub_leaves_what_was_not_forgotten(journal: Journal) -> None:
    for i in range(3):
        journal.append(make_exchange(i))
    assert journal.forget(["ex-1"], "default") == ["ex-1"]
    assert journal.scrub() is True
    assert journal.get("ex-1") is None and journal.get("ex-0") is not None
    assert ids(journal.pending(10)) == ["ex-0", "ex-2"] and [u.id for u in journal.forgetting()] == ["ex-1"]


# --- image bytes ----------------------------------------------------------------------------------------------

def test_blob_store_is_content_addressed(blobs: BlobStore):
    digest = blobs.put(b"picture")
    assert blobs.put(b"picture") == digest
    assert blobs.get(digest) == b"picture"
    assert digest in blobs
    assert blobs.get("0" * 64) is None
    assert "../etc/passwd" not in blobs


def test_blobs_put_get_delete(blobs: BlobStore) -> None:
    picture, other = b"picture", b"another picture"
    digest = hashlib.sha256(picture).hexdigest()
    assert blobs.put(picture) == digest and blobs.put(other, hashlib.sha256(other).hexdigest()) != digest
    assert blobs.get(hashlib.sha256(other).hexdigest()) == other
    assert blobs.delete(digest) is True
    assert blobs.get(digest) is None and digest not in blobs and blobs.delete(digest) is False
    assert blobs.put(picture) == digest and blobs.get(digest) == picture  # stored again after a deletion
    assert blobs.get(hashlib.sha256(other).hexdigest()) == other  # the other untouched


def test_keys_that_are_not_sha256_digests_are_never_stored(blobs: BlobStore) -> None:
    digest = blobs.put(b"picture")
    for key in ("../etc/passwd", "", digest.upper(), digest[:-1], digest + "0", f"{digest[:2]}/{digest}"):
        assert blobs.get(key) is None and key not in blobs and blobs.delete(key) is False
    assert blobs.get(digest) == b"picture"


def test_blob_stores_implement_the_protocol(blobs: BlobStore) -> None:
    assert isinstance(blobs, BlobStore)


def test_open_streams_the_bytes_in_chunks(blobs: BlobStore) -> None:
    picture = os.urandom(600 * 1024)  # more than one chunk of any backend
    digest = blobs.put(picture)
    with blobs.open(digest) as stream:
        assert stream.size == len(picture)
        chunks = list(stream)
    assert b"".join(chunks) == picture and len(chunks) > 1 and all(chunks)
    # Closed half-way (a client that left): nothing breaks, and the next read starts afresh.
    stream = blobs.open(digest)
    assert next(iter(stream))
    stream.close()
    assert b"".join(blobs.open(digest)) == picture
    assert blobs.open("0" * 64) is None
    for key in ("../etc/passwd", "", digest.upper(), digest[:-1], f"{digest}\n"):
        assert blobs.open(key) is None


def test_a_stream_opened_before_a_deletion_reads_to_the_end(blobs: BlobStore) -> None:
    picture = os.urandom(300 * 1024)
    digest = blobs.put(picture)
    with blobs.open(digest) as stream:
        assert blobs.delete(digest) is True
        assert b"".join(stream) == picture
    assert blobs.open(digest) is None


def test_derived_objects_live_beside_their_image_until_deleted(blobs: BlobStore) -> None:
    digest, other = blobs.put(b"picture"), blobs.put(b"other picture")
    assert blobs.get_derived(digest, "64.webp") is None
    blobs.put_derived(digest, "64.webp", b"small")
    blobs.put_derived(digest, "512.webp", b"large")
    blobs.put_derived(other, "64.webp", b"other small")
    assert blobs.get_derived(digest, "64.webp") == b"small" and blobs.get_derived(digest, "512.webp") == b"large"
    blobs.put_derived(digest, "64.webp", b"small again")  # replaced whole
    assert blobs.get_derived(digest, "64.webp") == b"small again"
    # Deleting the image leaves them to `delete_derived` (forgetting calls both, the original first).
    assert blobs.delete(digest) is True and blobs.get_derived(digest, "64.webp") == b"small again"
    blobs.delete_derived(digest)
    assert blobs.get_derived(digest, "64.webp") is None and blobs.get_derived(digest, "512.webp") is None
    blobs.delete_derived(digest)  # harmless to repeat
    assert blobs.get_derived(other, "64.webp") == b"other small" and blobs.get(other) == b"other picture"
    # Derived objects of an image not stored (a render racing its deletion) are stored and deleted alike.
    missing = hashlib.sha256(b"never stored").hexdigest()
    blobs.put_derived(missing, "64.webp", b"orphan")
    blobs.delete_derived(missing)
    assert blobs.get_derived(missing, "64.webp") is None


def test_derived_objects_take_only_keys_and_names(blobs: BlobStore) -> None:
    digest = blobs.put(b"picture")
    for key in ("../etc/passwd", "", digest.upper(), digest[:-1], f"{digest}/x"):
        assert blobs.get_derived(key, "64.webp") is None
        blobs.delete_derived(key)  # nothing to do, nothing raised
        with pytest.raises(ValueError):
            blobs.put_derived(key, "64.webp", b"x")
    for name in ("../64.webp", "64", "64.webp/x", "", ".webp", "64.WEBP", "a b.webp"):
        with pytest.raises(ValueError):
            blobs.put_derived(digest, name, b"x")
    assert blobs.get(digest) == b"picture"
