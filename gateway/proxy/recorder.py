"""Turning a finished request into a journal record: images first, then the row that names them."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from gateway import logs, metrics
from gateway.images import LoadedImage
from gateway.journal import BlobStore, Exchange, ImageRef, Journal
from gateway.journal.records import Status
from gateway.proxy.messages import message_texts

log = logging.getLogger("visionrag.recorder")


@dataclass(slots=True)
class PendingExchange:
    """What is known about an exchange while it is in flight."""

    endpoint: str
    tenant: str
    model: str
    user: str | None
    messages: list[dict[str, str]]
    images: list[LoadedImage]
    # What memory put into the answer (MemoryUse.journal()); None when it was not asked for.
    memory: dict[str, Any] | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        logs.bind(exchange_id=self.id)

    @classmethod
    def from_request(cls, endpoint: str, tenant: str, payload: dict[str, Any], images: list[LoadedImage],
                     messages: list[dict[str, str]] | None = None) -> PendingExchange:
        """`messages` defaults to the text of the payload's chat messages."""
        user = payload.get("user")
        return cls(
            endpoint=endpoint,
            tenant=tenant,
            model=str(payload.get("model") or ""),
            user=user if isinstance(user, str) else None,
            messages=message_texts(payload["messages"]) if messages is None else messages,
            images=images,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an exchange ended: what the upstream answered, as the journal records it."""

    answer: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    model: str | None  # the model the upstream says answered (else the one asked for)
    upstream: str | None = None
    status: Status = "complete"


class Recorder:
    """Records finished exchanges. On the event loop, `record` joins the exchanges recorded in the same turn
    of the loop into one commit (a group commit: under load, one WAL write for several chats instead of one
    each); `record_now` commits at once, for code that cannot wait (a cancelled stream's cleanup).

    `offload`: the journal or the blob store is across a network (PostgreSQL, S3), where a commit or an
    upload takes a round trip or several, too long to hold the event loop for. Then images are stored and
    commits made on threads, one commit at a time while the next batch gathers, each exchange's recording
    in a task of its own that a cancelled request does not stop (`drain` waits for those left)."""

    def __init__(self, journal: Journal, blobs: BlobStore, *, offload: bool = False) -> None:
        self.journal = journal
        self.blobs = blobs
        self.offload = offload
        self._batch: list[tuple[Exchange, asyncio.Future[None]]] = []
        self._committing = False
        self._tasks: set[asyncio.Task[Exchange]] = set()

    async def record(self, pending: PendingExchange, outcome: Outcome) -> Exchange:
        """Store the images, then the exchange. Durable when this returns."""
        if self.offload:
            # Shielded: a client that leaves cancels this wait, never the recording itself.
            return await asyncio.shield(self._spawn(pending, outcome))
        exchange = self._store(pending, outcome)
        loop = asyncio.get_running_loop()
        committed = loop.create_future()
        self._batch.append((exchange, committed))
        if len(self._batch) == 1:
            loop.call_soon(self._commit)
        try:
            await committed
        except asyncio.CancelledError:
            metrics.recorded(outcome.status)  # `_commit` records it all the same
            raise
        metrics.recorded(outcome.status)
        return exchange

    def record_now(self, pending: PendingExchange, outcome: Outcome) -> None:
        """`record` without waiting: durable when this returns, or, offloaded, once its task is done."""
        if self.offload:
            self._spawn(pending, outcome)
            return
        exchange = self._store(pending, outcome)
        self.journal.append(exchange)
        metrics.recorded(outcome.status)

    async def drain(self) -> None:
        """Wait for the recordings under way (offloaded): before the journal closes."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, pending: PendingExchange, outcome: Outcome) -> asyncio.Task[Exchange]:
        task = asyncio.get_running_loop().create_task(self._record_offloaded(pending, outcome))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Exchange]) -> None:
        self._tasks.discard(task)
        # Retrieved here too: a recording whose request left (or a stream's cleanup) has nobody else to
        # see that it failed.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("an exchange could not be recorded: %s", exc)

    async def _record_offloaded(self, pending: PendingExchange, outcome: Outcome) -> Exchange:
        exchange = await asyncio.to_thread(self._store, pending, outcome)
        committed = asyncio.get_running_loop().create_future()
        self._batch.append((exchange, committed))
        if not self._committing:
            self._committing = True
            asyncio.get_running_loop().create_task(self._commit_offloaded())
        await committed
        metrics.recorded(outcome.status)
        return exchange

    async def _commit_offloaded(self) -> None:
        """Commit what gathered, on a thread, until nothing is left: one commit in flight at a time, and
        what arrives meanwhile goes together in the next."""
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                try:
                    await asyncio.to_thread(self.journal.append_many, [exchange for exchange, _ in batch])
                except Exception as exc:  # noqa: BLE001 - each waiting request fails as its own append would have
                    for _, committed in batch:
                        committed.set_exception(exc)
                    continue
                for _, committed in batch:
                    committed.set_result(None)
        finally:
            self._committing = False

    def _commit(self) -> None:
        batch, self._batch = self._batch, []
        try:
            self.journal.append_many([exchange for exchange, _ in batch])
        except Exception as exc:  # noqa: BLE001 - each waiting request fails as its own append would have
            for _, committed in batch:
                if not committed.done():
                    committed.set_exception(exc)
            return
        for _, committed in batch:
            if not committed.done():  # a request cancelled meanwhile: its exchange is recorded all the same
                committed.set_result(None)

    def _store(self, pending: PendingExchange, outcome: Outcome) -> Exchange:
        """Store the images; return the exchange that names them."""
        refs = []
        for image in pending.images:
            self.blobs.put(image.data, image.sha256)  # a no-op when those bytes are already stored
            refs.append(ImageRef(image.sha256, image.mime, image.source_url))
        return Exchange(
            id=pending.id,
            created_at=pending.created_at,
            endpoint=pending.endpoint,
            model=outcome.model or pending.model,
            tenant=pending.tenant,
            user=pending.user,
            messages=pending.messages,
            images=refs,
            answer=outcome.answer,
            finish_reason=outcome.finish_reason,
            usage=outcome.usage,
            latency_ms=round((time.perf_counter() - pending.started) * 1000, 3),
            status=outcome.status,
            extra={key: value for key, value in (("upstream", outcome.upstream), ("memory", pending.memory)) if value},
        )
