"""`History`: what was asked and answered, read from the journal and the blob store alone, and forgotten
from everywhere. Built by the runtime (gateway.runtime) whether memory is on or off, and called by the
history routes, the CLI and the chat's memory (a cited source's image).

    history = History.from_settings(settings, journal, blobs, points=memory.points if memory else None)
    history.start()        # a process that runs background work: the finisher of deletions and the
                           # retention sweeper (a gateway on a shared journal leaves them to workers)
    ...
    await history.stop()   # before memory closes the store; unfinished deletions stay recorded
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyio import to_thread

from gateway.errors import InvalidRequest, NotFound
from gateway.history.browse import ExchangePage, ExchangeQuery, decode_cursor, encode_cursor
from gateway.history.forget import Finisher, Forgetter, Points
from gateway.history.retention import Retention, RetentionSweeper
from gateway.history.thumbnails import MIME as THUMBNAIL_MIME
from gateway.history.thumbnails import Thumbnails
from gateway.images import ImageDecoder, ImageError
from gateway.journal import BlobStore, BlobStream, Journal

if TYPE_CHECKING:
    from gateway.journal import Exchange
    from gateway.settings import Settings

log = logging.getLogger("visionrag.history")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A shorter prefix than git's shortest would pick among too many ids, and could forget one by a slip.
MIN_PREFIX = 4
_CANDIDATES_SHOWN = 10


@dataclass(frozen=True, slots=True)
class StoredImage:
    data: bytes
    mime: str


@dataclass(frozen=True, slots=True)
class StreamedImage:
    stream: BlobStream  # the caller closes it
    mime: str


def _image_not_found() -> NotFound:
    return NotFound("No such image.", param="sha256", code="image_not_found")


def _exchange_not_found(exchange_id: str) -> NotFound:
    return NotFound(f"No exchange with id {exchange_id!r}.", param="exchange_id", code="exchange_not_found")


async def _blocking(fn, /, *args: Any, **kwargs: Any) -> Any:
    # The journal and the files block: run them in the same threadpool the routes' own sync work uses.
    return await to_thread.run_sync(functools.partial(fn, *args, **kwargs))


class History:
    def __init__(self, journal: Journal, blobs: BlobStore, thumbnails: Thumbnails, *,
                 points: Points | None = None, retention: Retention | None = None,
                 others_forget_s: float = 60.0) -> None:
        """`others_forget_s`: how often the finisher looks for deletions recorded by other processes."""
        self.journal = journal
        self.blobs = blobs
        self.thumbnails = thumbnails
        self.forgetter = Forgetter(journal, blobs, points)
        self.finisher = Finisher(self.forgetter, idle_s=others_forget_s)
        self.retention = RetentionSweeper(retention or Retention(), journal, self.forgetter)

    @classmethod
    def from_settings(cls, settings: Settings, journal: Journal, blobs: BlobStore, *,
                      decoder: ImageDecoder | None = None, points: Points | None = None) -> History:
        """`decoder`: the one CLIP decodes with when memory is on, so thumbnails share its decode budget.
        `points`: the vector store's part of forgetting, when memory is on."""
        retention = Retention.parse(settings.memory_retention_days, settings.memory_retention_tenant_days,
                                    settings.memory_retention_interval_s)
        thumbnails = Thumbnails(blobs, decoder or ImageDecoder.from_settings(settings))
        # On a shared journal deletions are recorded by the gateways and finished by the workers, which
        # learn of them only by looking (a cheap query of the deletions table): often, so that a forget's
        # images leave the bucket within seconds. Alone, a process hears of its own at once.
        return cls(journal, blobs, thumbnails, points=points, retention=retention,
                   others_forget_s=2.0 if settings.shared_journal else 60.0)

    def start(self) -> None:
        """Start the finisher of deletions (its first pass finishes what a stopped or killed process left;
        then it runs whenever a deletion is recorded) and the retention sweeper (if retention is set)."""
        self.finisher.start()
        self.retention.start()

    async def stop(self) -> None:
        """Stop what `start` started (nothing if it was not); unfinished deletions stay recorded."""
        await asyncio.to_thread(self.retention.stop)
        await asyncio.to_thread(self.finisher.stop)

    def finish_forgetting(self) -> int:
        """Finish every recorded deletion now, in this thread, with what an earlier process left (the
        finisher's one pass); returns how many. Raises what the store raises while it refuses."""
        return self.forgetter.finish()

    # --- what callers ask of history; every one is scoped to a tenant ----------------------------------

    async def exchange(self, tenant: str, exchange_id: str) -> Exchange:
        """The tenant's exchange, by its id or a unique prefix of it (`resolve`). NotFound for one that
        does not exist and for another tenant's alike."""
        exchange = await _blocking(self.journal.get, exchange_id)
        if exchange is None or exchange.tenant != tenant:
            exchange = await _blocking(self.journal.get, await self._by_prefix(tenant, exchange_id))
        if exchange is None or exchange.tenant != tenant:  # forgotten meanwhile
            raise _exchange_not_found(exchange_id)
        return exchange

    async def resolve(self, tenant: str, exchange_id: str) -> str:
        """The id of the tenant's exchange `exchange_id` names: that id itself, or the one id of the
        tenant's that starts with it (at least MIN_PREFIX characters), as git takes a short commit id.
        NotFound when none does; InvalidRequest naming the candidates when several do."""
        exchange = await _blocking(self.journal.get, exchange_id)
        if exchange is not None and exchange.tenant == tenant:
            return exchange_id
        return await self._by_prefix(tenant, exchange_id)

    async def short_ids(self, tenant: str, exchange_ids: list[str], at_least: int) -> list[str]:
        """The shortest prefix of each id (`at_least` characters or more) that `resolve` takes back to it
        now: what a table shows."""
        def shorten(exchange_id: str) -> str:
            for length in range(max(at_least, MIN_PREFIX), len(exchange_id)):
                if len(self.journal.ids_starting(tenant, exchange_id[:length], limit=2)) < 2:
                    return exchange_id[:length]
            return exchange_id

        return await _blocking(lambda: [shorten(one) for one in exchange_ids])

    async def _by_prefix(self, tenant: str, prefix: str) -> str:
        if len(prefix) < MIN_PREFIX:
            raise _exchange_not_found(prefix)
        found = await _blocking(self.journal.ids_starting, tenant, prefix, limit=_CANDIDATES_SHOWN + 1)
        if not found:
            raise _exchange_not_found(prefix)
        if len(found) > 1:
            shown = ", ".join(found[:_CANDIDATES_SHOWN]) + (", ..." if len(found) > _CANDIDATES_SHOWN else "")
            raise InvalidRequest(f"Exchange id prefix {prefix!r} is ambiguous: it starts {shown}. Give more of "
                                 "the id.", param="exchange_id", code="exchange_id_ambiguous")
        return found[0]

    async def list_exchanges(self, tenant: str, query: ExchangeQuery) -> ExchangePage:
        """The tenant's exchanges, newest first, one page; InvalidRequest for a cursor it did not make."""
        before = decode_cursor(query.cursor) if query.cursor else None
        rows = await _blocking(self.journal.recent, tenant, limit=query.limit + 1, before=before,
                               time_from=query.time_from, time_to=query.time_to, models=query.models,
                               user=query.user)
        page, more = rows[: query.limit], len(rows) > query.limit
        return ExchangePage(page, encode_cursor(page[-1]) if more else None)

    async def forget(self, tenant: str, exchange_id: str) -> str:
        """Forget the tenant's exchange, by its id or a unique prefix of it (`resolve`), and return its id
        (gateway.history.forget): gone from every read path when this returns; its image files and (memory
        on) points are deleted by the finisher right after, retried for as long as the store refuses.
        NotFound for one that does not exist and for another tenant's."""
        resolved = await self.resolve(tenant, exchange_id)
        forgotten = await _blocking(self.forgetter.forget, tenant, [resolved])
        if not forgotten:  # forgotten meanwhile
            raise _exchange_not_found(exchange_id)
        return resolved

    async def forget_where(self, tenant: str, *, user: str | None = None, before: float | None = None) -> int:
        """Forget every exchange of the tenant's `user` and/or created before `before` (unix seconds), as
        `forget` does; returns how many."""
        return await _blocking(self.forgetter.forget_where, tenant, user=user, before=before)

    async def image(self, tenant: str, sha256: str) -> StoredImage:
        """An image one of the tenant's exchanges carries; NotFound otherwise."""
        mime = await self._image_mime(tenant, sha256)
        data = await _blocking(self.blobs.get, sha256)
        if data is None:
            raise _image_not_found()
        return StoredImage(data, mime)

    async def image_stream(self, tenant: str, sha256: str) -> StreamedImage:
        """`image`, to be read as it is sent on rather than held whole; NotFound where `image` answers it."""
        mime = await self._image_mime(tenant, sha256)
        stream = await _blocking(self.blobs.open, sha256)
        if stream is None:
            raise _image_not_found()
        return StreamedImage(stream, mime)

    async def image_access(self, tenant: str, sha256: str) -> None:
        """NotFound unless one of the tenant's exchanges carries the image: what a conditional request
        (the caller holds the bytes already) still has to pass."""
        await self._image_mime(tenant, sha256)

    async def thumbnail(self, tenant: str, sha256: str, size: int) -> StoredImage:
        """A small WebP of an image the tenant's exchanges carried (made once, then kept in the blob store);
        NotFound exactly where `image` answers it."""
        await self._image_mime(tenant, sha256)
        try:
            data = await self.thumbnails.get(sha256, size)
        except (ImageError, OSError) as exc:  # stored bytes were verified once: not expected
            log.warning("thumbnail of %s failed: %s", sha256, exc)
            raise _image_not_found() from exc
        if data is None:
            raise _image_not_found()
        return StoredImage(data, THUMBNAIL_MIME)

    async def _image_mime(self, tenant: str, sha256: str) -> str:
        """The image's MIME type if one of the tenant's exchanges carries it, ingested or not; NotFound
        otherwise (another tenant's image alike, and a forgotten exchange's from the moment it is)."""
        if not _SHA256.match(sha256):
            raise _image_not_found()
        mime = await _blocking(self.journal.image_mime, tenant, sha256)
        if not mime:
            raise _image_not_found()
        return mime
