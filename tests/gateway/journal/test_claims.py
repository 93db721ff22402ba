"""The contract of workers sharing the queue (`Journal.claim`, `release`, `taken_over`, `mark_ingested`
with a worker, `lead`), run against every backend like test_contract.py. What `lead` means across
processes is PostgreSQL's alone (test_postgres.py): a journal only one process opens holds every role."""

from __future__ import annotations

import threading
import time

from gateway.journal import Journal
from tests.gateway.journal.conftest import JournalOpener
from tests.gateway.journal.test_contract import ids, make_exchange

LONG = 60.0  # a lease that does not expire during a test
SHORT = 0.3  # one that does, soon: nothing asserted while it lives (a stall of the box could outlast it)


def append(journal: Journal, count: int, start: int = 0) -> None:
    journal.append_many([make_exchange(i) for i in range(start, start + count)])


def test_a_claim_hands_out_the_oldest_unclaimed_exchanges_to_one_worker(journal: Journal) -> None:
    append(journal, 5)
    assert ids(journal.claim("w1", 2, LONG)) == ["ex-0", "ex-1"]
    assert ids(journal.claim("w2", 10, LONG)) == ["ex-2", "ex-3", "ex-4"]
    assert journal.claim("w3", 10, LONG) == []
    # A worker's own live claims come back to it (a batch it failed to embed; a restart under its name).
    assert ids(journal.claim("w1", 10, LONG)) == ["ex-0", "ex-1"] and journal.taken_over("w1") == []
    # Claimed is not ingested: still in the backlog, still what `pending` reads.
    assert journal.backlog() == 5 and ids(journal.pending(10)) == ["ex-0", "ex-1", "ex-2", "ex-3", "ex-4"]
    append(journal, 1, start=5)
    assert ids(journal.claim("w3", 10, LONG)) == ["ex-5"]


def test_claimed_exchanges_are_whole_records(journal: Journal) -> None:
    exchange = make_exchange(1, tenant="acme", user="alice")
    journal.append(exchange)
    assert journal.claim("w1", 1, LONG) == [exchange]


def test_marked_exchanges_leave_the_queue_and_their_claims_end(journal_opener: JournalOpener) -> None:
    journal = journal_opener()
    append(journal, 4)
    claimed = ids(journal.claim("w1", 3, SHORT))
    journal.mark_ingested(claimed[:2], worker="w1")
    journal.mark_ingested(["unknown", claimed[0]], worker="w1")  # harmless
    assert journal.backlog() == 2 and ids(journal.pending(10)) == ["ex-2", "ex-3"]
    time.sleep(SHORT + 0.2)
    journal.close()
    journal = journal_opener()
    # The marked never come back, to anyone; the unmarked claim expired and is handed out again.
    assert ids(journal.claim("w2", 10, LONG)) == ["ex-2", "ex-3"]
    assert journal.taken_over("w1") == ["ex-2"] and journal.taken_over("w1") == []


def test_an_expired_claim_is_taken_over_and_its_worker_learns_it_once(journal: Journal) -> None:
    append(journal, 3)
    assert ids(journal.claim("w2", 1, LONG)) == ["ex-0"]
    assert ids(journal.claim("w1", 2, SHORT)) == ["ex-1", "ex-2"]
    assert journal.taken_over("w1") == []
    time.sleep(SHORT + 0.2)
    assert ids(journal.claim("w2", 10, LONG)) == ["ex-0", "ex-1", "ex-2"]  # its own, and w1's expired
    assert sorted(journal.taken_over("w1")) == ["ex-1", "ex-2"]
    assert journal.taken_over("w1") == [] and journal.taken_over("w2") == []
    journal.mark_ingested(["ex-0", "ex-1", "ex-2"], worker="w2")
    assert journal.backlog() == 0 and journal.claim("w1", 10, LONG) == []


def test_a_worker_claiming_its_own_expired_claim_again_is_no_takeover(journal: Journal) -> None:
    append(journal, 2)
    journal.claim("w1", 2, SHORT)
    time.sleep(SHORT + 0.2)
    assert ids(journal.claim("w1", 10, LONG)) == ["ex-0", "ex-1"]
    assert journal.taken_over("w1") == []


def test_a_claim_taken_back_by_its_first_worker_is_no_longer_its_takeover(journal: Journal) -> None:
    append(journal, 1)
    journal.claim("w1", 1, SHORT)
    time.sleep(SHORT + 0.2)
    journal.claim("w2", 1, SHORT)  # w1's expired claim taken over
    time.sleep(SHORT + 0.2)
    assert ids(journal.claim("w1", 1, LONG)) == ["ex-0"]  # and w2's taken back by w1
    assert journal.taken_over("w1") == [] and journal.taken_over("w2") == ["ex-0"]


def test_release_hands_a_workers_claims_to_others_at_once(journal: Journal) -> None:
    append(journal, 4)
    journal.claim("w1", 2, LONG)
    journal.claim("w2", 1, LONG)
    journal.release("w1")
    journal.release("nobody")
    assert ids(journal.claim("w3", 10, LONG)) == ["ex-0", "ex-1", "ex-3"]  # w2's claim still lives
    assert journal.taken_over("w1") == []  # given up, not taken


def test_concurrent_claims_never_hand_one_exchange_to_two_workers(journal: Journal) -> None:
    total, workers = 300, 6
    append(journal, total)
    got: dict[str, list[str]] = {f"w{n}": [] for n in range(workers)}
    start = threading.Barrier(workers)

    def work(worker: str) -> None:
        start.wait()
        while batch := journal.claim(worker, 7, LONG):
            got[worker] += ids(batch)
            journal.mark_ingested(ids(batch), worker=worker)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for claimed in got.values() for i in claimed]
    assert sorted(every) == sorted(f"ex-{i}" for i in range(total))  # each once: none twice, none lost
    for claimed in got.values():  # each worker's in append order
        assert claimed == sorted(claimed, key=lambda i: int(i.split("-")[1]))
    assert journal.backlog() == 0


def test_forgotten_exchanges_are_never_claimed(journal: Journal) -> None:
    append(journal, 3)
    journal.claim("w1", 1, SHORT)
    assert journal.forget(["ex-0", "ex-1"], "default") == ["ex-0", "ex-1"]
    time.sleep(SHORT + 0.2)
    assert ids(journal.claim("w2", 10, LONG)) == ["ex-2"]


def test_requeued_exchanges_are_claimed_again(journal: Journal) -> None:
    append(journal, 2)
    journal.mark_ingested(ids(journal.claim("w1", 10, LONG)), worker="w1")
    assert journal.requeue_all() == 2
    assert ids(journal.claim("w2", 10, LONG)) == ["ex-0", "ex-1"] and journal.taken_over("w1") == []


def test_a_journal_holds_a_role_once_taken(journal: Journal) -> None:
    assert journal.lead("retention") is True and journal.lead("retention") is True
    assert journal.lead("another") is True
