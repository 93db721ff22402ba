"""What the rest of the gateway may ask of a journal and of a blob store: the contract every backend keeps.

`Journal` is the durable record of every exchange and the memory path's queue; `BlobStore` holds the
images those exchanges carry, addressed by their sha256. Callers hold these Protocols, never a
backend's class: `open_journal` / `open_blobs` (gateway.journal.factory) pick the backend, and
tests/gateway/journal/test_contract.py is the contract in executable form, run against every backend.

Threads: one instance is shared by the event loop (`append`, from the chat recorder, and the memory
routes' reads), the ingest worker's thread and the finisher of deletions, so every method is safe to call
from several threads at once. All of them block; `append` and `append_many` run on the event loop, so they
must stay short.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple, Protocol, Self, runtime_checkable

from gateway.errors import BackendUnavailable
from gateway.journal.records import Exchange


class Unfinished(NamedTuple):
    """A deletion whose journal part is done (`Journal.forget`) and whose rest is not."""

    id: str
    tenant: str
    images: list[str]  # the exchange's distinct image sha256s
    image_refs: int | None  # how many images it carried, repeats included; None if recorded before this was


@runtime_checkable
class Journal(Protocol):
    """Exchanges by id, each with its tenant, creation time and images, and three views of them:

    - the queue: exchanges not yet ingested, in the order they were appended (`pending`), each taken off
      for good by `mark_ingested` once the vector store holds it;
    - browsing: one tenant's exchanges newest first, paged by cursor (`recent`);
    - forgetting: rows deleted (`forget`) while a `forgetting` record names what remains to delete
      elsewhere (store points, image blobs) until the forgetter says it is done (`forgotten`).

    Tenant scoping: the calls that take a tenant (`recent`, `backlog(tenant)`, `image_mime`, `select_ids`,
    `ids_starting`, `forget`) see that tenant's exchanges only. `get`, `present`, `pending`, `referenced` and `count` see
    every tenant's: their callers are the ingest worker and the forgetter, or they compare
    `Exchange.tenant` themselves (the memory service answers another tenant's exchange as a missing one).

    Implementations time `append` with `gateway.metrics.JOURNAL_APPEND_SECONDS`.
    """

    def append(self, exchange: Exchange) -> None:
        """Record an exchange; durable when this returns (to the backend's configured durability).

        The row and its image references (who may read each image, which blobs forgetting may delete)
        commit in one transaction: no reader ever sees one without the other. Appending an id that is
        already recorded is a no-op: the first record stays, and so does its ingest mark."""
        ...

    def append_many(self, exchanges: Sequence[Exchange]) -> None:
        """`append` for several exchanges in one commit (a group commit: the chat recorder's, for the
        chats that finish together): all of them durable when this returns, or none. In order, as many
        `append` calls would be: a repeated id, here or already recorded, keeps its first record. Each
        exchange counts one observation of the append timer."""
        ...

    def get(self, exchange_id: str) -> Exchange | None:
        """The exchange with this id, whichever its tenant; None if unknown or forgotten."""
        ...

    def pending(self, limit: int) -> list[Exchange]:
        """At most `limit` exchanges not yet ingested (every tenant's), oldest appended first."""
        ...

    def mark_ingested(self, exchange_ids: Iterable[str], worker: str | None = None) -> None:
        """These exchanges leave the queue: `pending` and `claim` never return them again (unless
        `requeue_all`), however often they are called or the journal reopened. Marking one twice, or an
        unknown id, is harmless. The ingest worker marks only after the store acknowledged, so each
        exchange is handed out until it is stored and then never again. `worker`: who stored them (its
        claims on them end)."""
        ...

    def claim(self, worker: str, limit: int, lease_s: float) -> list[Exchange]:
        """`pending` for one of several workers sharing the backlog: at most `limit` exchanges not yet
        ingested and under no live claim of another worker, oldest appended first, now claimed by
        `worker` for `lease_s` seconds (its own live claims come back: a batch it failed to embed, or
        a restart under the same name). While a claim lives no other `claim` returns its exchanges, however many workers claim
        at once; once it expired (its worker died or hung) they are claimed again, and the worker they
        were taken from can learn it (`taken_over`). Claimed exchanges still count in `backlog`."""
        ...

    def release(self, worker: str) -> None:
        """End `worker`'s live claims without marking them (a worker stopping with work unfinished):
        other workers claim those exchanges at once instead of after the lease."""
        ...

    def taken_over(self, worker: str) -> list[str]:
        """Ids of exchanges `worker` had claimed that another worker claimed after the claim expired,
        each returned once (what a restarted worker with a store of its own drops from it)."""
        ...

    def lead(self, role: str) -> bool:
        """Whether this journal object holds `role` (e.g. "retention"), taking it if nobody does: among
        all processes sharing the journal at most one holds a role at a time, until it closes the
        journal or dies. A journal that only one process opens holds every role."""
        ...

    def requeue_all(self) -> int:
        """Put every ingested exchange back in the queue (a store rebuilt from the journal), in their
        append order; returns how many were requeued."""
        ...

    def backlog(self, tenant: str | None = None) -> int:
        """How many exchanges are not yet ingested: every tenant's, or `tenant`'s only."""
        ...

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
        """At most `limit` of `tenant`'s exchanges, newest first: ordered by (created_at, id) descending,
        so rows created in the same instant still have one order. `before` is the (created_at, id) of the
        last row of the previous page: the page continues strictly after it, so paging never repeats or
        skips a row, whatever was appended meanwhile (and a cursor tells nothing of other tenants).

        Filters, all at once when several are given: `time_from <= created_at <= time_to` (either bound
        may be left out), `model` one of `models` (empty: any), `user` equal."""
        ...

    def count(self) -> int:
        """How many exchanges the journal holds, every tenant's."""
        ...

    def close(self) -> None:
        """Release the backend's resources; no other call follows."""
        ...

    def image_mime(self, tenant: str, sha256: str) -> str | None:
        """The MIME type of the image if one of `tenant`'s exchanges carries it, else None: who may read
        an image. Another tenant's image answers None, and a forgotten exchange's images answer None from
        the moment `forget` deleted its row (unless another of the tenant's exchanges carries them)."""
        ...

    def select_ids(self, tenant: str, *, user: str | None = None, before: float | None = None,
                   limit: int = 1000) -> list[str]:
        """Ids of at most `limit` of `tenant`'s exchanges of `user` (if given) and created before `before`
        (unix seconds, strictly; if given), in no particular order."""
        ...

    def ids_starting(self, tenant: str, prefix: str, limit: int = 10) -> list[str]:
        """Ids of at most `limit` of `tenant`'s exchanges that start with `prefix` (case-sensitive, no
        wildcards), in id order: what a short id shown in a table stands for (`History.resolve`)."""
        ...

    def tenants(self) -> list[str]:
        """Every tenant that has at least one exchange, each once, in no particular order."""
        ...

    def forget(self, exchange_ids: Iterable[str], tenant: str) -> list[str]:
        """Delete `tenant`'s exchanges among `exchange_ids`; returns the ids deleted, in the given order,
        each once. Another tenant's ids and unknown ids are left alone (and not returned).

        Each deleted exchange gets a `forgetting` record (its distinct image sha256s and how many images
        it carried) in the same transaction that deletes its row and image references: never a row gone
        without its record. When this returns no read sees the exchanges (`get`, `recent`, `pending`,
        `image_mime`, `referenced`, `present`, `select_ids`). A long list may commit in several
        transactions, so that appends (chats) are not held up for the whole deletion.

        What the backend's own storage may still hold of the rows (old copies, logs) goes at `scrub`."""
        ...

    def scrub(self) -> bool:
        """Make what `forget` deleted leave the backend's storage, as far as the backend can. Returns
        False when something kept it from finishing (the next scrub does it), True otherwise."""
        ...

    def forgetting(self, limit: int = -1) -> list[Unfinished]:
        """Deletions whose `forgetting` record is still there, oldest first, at most `limit` (-1: all)."""
        ...

    def forgotten(self, exchange_ids: Iterable[str]) -> None:
        """Deletions finished: drop their `forgetting` records (unknown ids are ignored)."""
        ...

    def referenced(self, shas: Iterable[str]) -> set[str]:
        """The images among `shas` that some exchange still in the journal carries, whichever its tenant:
        the blobs forgetting must keep."""
        ...

    def present(self, exchange_ids: Iterable[str]) -> set[str]:
        """The ids among `exchange_ids` whose exchanges are in the journal (the ingest worker's check for
        deletions that happened while it embedded them)."""
        ...


class BlobUnavailable(BackendUnavailable):
    """The blob store cannot be reached or failed (a refused connection, a timeout, throttling, a 5xx,
    refused credentials), after its client's own retries: retrying later may work. The API answers it
    503 `storage_unavailable`, its cause logged, never shown."""

    def __init__(self) -> None:
        super().__init__("image storage", code="storage_unavailable")


class BlobStream:
    """One stored blob being read: `size` bytes, in chunks as it is iterated. Each step blocks (a file
    read, a network read), so an event loop iterates it from a thread. `close()` releases what the read
    holds (a file, a connection), also when it stopped half-way; a `with` block closes it."""

    def __init__(self, size: int, chunks: Iterator[bytes], close: Callable[[], None]) -> None:
        self.size = size
        self._chunks = chunks
        self._close = close

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class BlobStore(Protocol):
    """Image bytes stored once, under the hex sha256 of their content, and objects derived from each
    image (its thumbnails) kept beside it.

    Keys are lowercase 64-character hex digests: anything else is never stored (`get`, `open` and
    `get_derived` answer None, `in` False, `delete` False), so a key from a request can be passed as it
    came. A derived object's name is the code's own (`64.webp`: a variant, a dot, an extension); any other
    raises ValueError.

    Failures of the storage itself raise BlobUnavailable (a local folder's OSError is left as it is: a
    failing disk is not an outage to wait out)."""

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store `data` unless its key is already there; return the key (its sha256). Idempotent: the same
        bytes give the same key and are stored once. `sha256`, when given, is the caller's digest of
        `data` (not checked again). A reader, or a restart after a crash, never finds part of the bytes
        under the key: it finds all of them or nothing."""
        ...

    def get(self, sha256: str) -> bytes | None:
        """The bytes stored under the key; None if there are none."""
        ...

    def open(self, sha256: str) -> BlobStream | None:
        """The bytes stored under the key as a stream of chunks, for a reader that passes them on
        without holding them all (a response); None if there are none. Whether there are is decided
        here: a deletion after this returns does not cut the stream short."""
        ...

    def __contains__(self, sha256: str) -> bool:
        """Whether bytes are stored under the key."""
        ...

    def delete(self, sha256: str) -> bool:
        """Remove the bytes (forgetting); False if there were none. What was derived from them stays
        until `delete_derived`."""
        ...

    def put_derived(self, sha256: str, name: str, data: bytes) -> None:
        """Store `data` as the object `name` derived from the image under the key, replacing one of that
        name; whole or not at all, as `put`. Raises ValueError for a key that is not one."""
        ...

    def get_derived(self, sha256: str, name: str) -> bytes | None:
        """The object `name` derived from the image under the key; None if there is none."""
        ...

    def delete_derived(self, sha256: str) -> None:
        """Remove every object derived from the image under the key (forgetting; harmless to repeat)."""
        ...
