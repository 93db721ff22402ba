"""`Memory`: the one object memory is, built by the runtime (gateway.runtime) and called by the memory
routes and the CLI.

    memory = Memory.from_settings(settings, journal, blobs, image_loader=loader)
    memory.start()       # a gateway: opens the store (StoreLocked if held elsewhere), starts ingest and
                         # the threads that finish deletions, sweep retention and purge the store
    memory.open()        # or a process that serves nothing (a CLI command): the store alone, the
                         # command's work (drain, forget, ...) done in its own thread
    ...
    await memory.stop()  # before the journal closes; unfinished work stays queued
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyio import to_thread

from gateway import metrics
from gateway.errors import BackendUnavailable, NotFound
from gateway.images import ImageDecoder, ImageError, ImageLoader
from gateway.journal import BlobStore, Journal
from gateway.memory.batching import BatchedClip, BatchedText
from gateway.memory.browse import ExchangePage, ExchangeQuery, decode_cursor, encode_cursor
from gateway.memory.embed import ClipEmbedder, EmbedderError, ImageDecodeError
from gateway.memory.forget import Finisher, Forgetter
from gateway.memory.ingest import IngestStats, IngestWorker, MaintenancePolicy
from gateway.memory.purge import PurgeScheduler
from gateway.memory.quantized import int8_clip, int8_sentences
from gateway.memory.retention import Retention, RetentionSweeper
from gateway.memory.retrieval import RecallQuery, Retriever, Source, Thresholds
from gateway.memory.reuse import VectorReuse
from gateway.memory.search import Searcher, SearchOutcome
from gateway.memory.store.base import SearchFilter, StoreError, StoreStats, Target, VectorStore
from gateway.memory.text_embed import TextEncoders
from gateway.memory.texts import JournalTexts
from gateway.memory.thumbnails import MIME as THUMBNAIL_MIME
from gateway.memory.thumbnails import Thumbnails

if TYPE_CHECKING:
    from gateway.journal import Exchange
    from gateway.settings import Settings

log = logging.getLogger("visionrag.memory")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class StoredImage:
    data: bytes
    mime: str


def _image_not_found() -> NotFound:
    return NotFound("No such image.", param="sha256", code="image_not_found")


async def _blocking(fn, /, *args: Any, **kwargs: Any) -> Any:
    # The model and the store block: run them in the same threadpool the routes' own sync work uses.
    return await to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def open_store(settings: Settings) -> VectorStore:
    """Qdrant server/Cloud when a URL is set, else the embedded engine under data_dir.

    (`qdrant_local_path`, for tests, selects qdrant-client's local mode.)
    """
    if settings.qdrant_url:
        from gateway.memory.store.remote import RemoteStore

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return RemoteStore(settings.qdrant_collection, url=settings.qdrant_url, api_key=key)
    if settings.qdrant_local_path:
        from gateway.memory.store.remote import RemoteStore

        return RemoteStore(settings.qdrant_collection, path=str(settings.qdrant_local_path))
    from gateway.memory.store.edge import EdgeStore

    # One shard per collection name, so two collections can share a data dir.
    return EdgeStore(settings.qdrant_path / settings.qdrant_collection)


def embedder_from_settings(settings: Settings, threads: int | None = None) -> ClipEmbedder:
    """fp32 CLIP, loaded on first use; with clip_int8 its int8 copy, loaded now and checked against it
    (Int8Refused stops the start)."""
    clip = ClipEmbedder(
        settings.clip_text_model,
        settings.clip_vision_model,
        cache_dir=settings.fastembed_cache_dir,
        threads=threads or settings.embed_threads,
        batch_size=settings.embed_batch_size,
        decoder=ImageDecoder.from_settings(settings),
    )
    return int8_clip(clip) if settings.clip_int8 else clip


def text_encoders_from_settings(settings: Settings, threads: int | None = None) -> TextEncoders:
    """With clip_int8 the sentence model is int8 too, loaded now and checked (it weighs on ingest
    next to CLIP)."""
    text = TextEncoders(
        settings.sentence_model,
        settings.bm25_model,
        cache_dir=settings.text_model_cache_dir or settings.fastembed_cache_dir,
        threads=threads or settings.embed_threads,
        batch_size=settings.embed_batch_size,
    )
    return int8_sentences(text) if settings.clip_int8 else text


class Memory:
    def __init__(
        self,
        journal: Journal,
        blobs: BlobStore,
        embedder: ClipEmbedder,
        store: VectorStore,
        worker: IngestWorker,
        image_loader: ImageLoader,
        *,
        thumbnails_dir: Path,
        owns_loader: bool = False,
        thresholds: Thresholds | None = None,
        retention: Retention | None = None,
        text: TextEncoders | None = None,
        purge_after_s: float = 600.0,
    ) -> None:
        self.journal = journal
        self.blobs = blobs
        self.thumbnails_dir = thumbnails_dir
        self.embedder = embedder
        self.text = text if text is not None else worker.text
        self.store = store
        self.worker = worker
        # Hits take their texts from the journal, and forgotten exchanges are never returned. Queries
        # of concurrent requests share model runs (ingest batches by itself).
        query_clip = BatchedClip(embedder)
        query_text = BatchedText(self.text) if self.text is not None else None
        texts = JournalTexts(journal)
        self.searcher = Searcher(query_clip, store, texts, query_text)
        self.retriever = Retriever(query_clip, store, texts, worker.reuse, query_text)
        self.forgetter = Forgetter(journal, blobs, store, self.thumbnails)
        self.finisher = Finisher(self.forgetter)
        self.retention = RetentionSweeper(retention or Retention(), journal, self.forgetter)
        self.purger = PurgeScheduler(store, purge_after_s)
        self.thresholds = thresholds or Thresholds()
        self.image_loader = image_loader
        self._owns_loader = owns_loader
        self._started = False
        self.schema_error: str | None = None  # set at start() when the store needs `visionrag reindex`

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        journal: Journal,
        blobs: BlobStore,
        *,
        image_loader: ImageLoader | None = None,
        store: VectorStore | None = None,
    ) -> Memory:
        """Build everything; open nothing yet (no model load, no store connection) until `start()`.

        Pass the app's own `image_loader` to share its HTTP session; otherwise one is made from the
        same settings (same guarded fetch, same limits). `store` overrides the settings' choice (tests).
        """
        embedder = embedder_from_settings(settings)
        text = text_encoders_from_settings(settings)
        store = store or open_store(settings)
        worker = IngestWorker(
            journal,
            blobs,
            embedder,
            store,
            batch_size=settings.embed_batch_size,
            poll_interval_s=settings.ingest_poll_interval_s,
            nice=settings.ingest_nice,
            maintenance=MaintenancePolicy(
                min_new_points=settings.memory_optimize_min_points,
                quiet_s=settings.memory_optimize_quiet_s,
            ),
            reuse=VectorReuse(),
            text=text,
        )
        owns = image_loader is None
        loader = image_loader or ImageLoader.from_settings(settings)
        thresholds = Thresholds.parse(settings.memory_min_scores, image=settings.memory_min_image_score,
                                      text=settings.memory_min_text_score, sentence=settings.memory_min_sentence_score,
                                      terms=settings.memory_min_terms_score)
        retention = Retention.parse(settings.memory_retention_days, settings.memory_retention_tenant_days,
                                    settings.memory_retention_interval_s)
        return cls(journal, blobs, embedder, store, worker, loader, thumbnails_dir=settings.thumbnails_dir,
                   owns_loader=owns, thresholds=thresholds, retention=retention, text=text,
                   purge_after_s=settings.memory_purge_after_s)

    def start(self) -> None:
        """Open the store, start the ingest worker and the finisher of deletions. Raises StoreLocked if
        another process holds the embedded store. A Qdrant server that is down is not an error here: the
        worker and the finisher retry."""
        if self._started:
            return
        try:
            self.store.ensure_schema()
        except StoreError as exc:
            from gateway.memory.store.base import SchemaMismatch, StoreLocked, StoreUnavailable

            if isinstance(exc, SchemaMismatch):
                # Chats still work and are journaled; memory waits for the rebuild instead of writing
                # points the store cannot take. Deletions are still finished as far as they can be.
                log.error("memory: search and ingest are OFF until the store is rebuilt: %s", exc)
                self.schema_error = str(exc)
                self.finisher.start()
                return
            if isinstance(exc, StoreLocked) or not isinstance(exc, StoreUnavailable):
                raise
            log.warning("memory: vector store unavailable at start-up (will retry): %s", exc)
        # Its first pass finishes what a stopped or killed process left; it then runs whenever a
        # deletion is recorded, with or without retention.
        self.finisher.start()
        self.retention.start()
        self.purger.start()
        # The worker loads CLIP first thing on its own thread: start-up is not delayed, and the first
        # search does not pay the load.
        self.worker.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            await asyncio.to_thread(self.retention.stop)
            await asyncio.to_thread(self.purger.stop)
            await asyncio.to_thread(self.worker.stop)
            self._started = False
        await asyncio.to_thread(self.finisher.stop)  # unfinished deletions stay recorded for the next start
        await asyncio.to_thread(self.store.close)
        if self._owns_loader:
            await self.image_loader.fetcher.close()

    # --- one-off use, in a process that serves nothing (the CLI): nothing runs in the background ------

    def open(self, *, rebuild: bool = False) -> None:
        """Open the store for this process, starting nothing (no ingest worker, finisher, retention or
        purge thread): a command's work is done in its own thread, then `stop()` closes the store.
        `rebuild`: drop the store, recreate it with this version's schema and queue every journaled
        exchange to be embedded again (then `drain()`). Raises StoreLocked while another process (a
        running gateway) holds the embedded store, SchemaMismatch when it needs `visionrag reindex`,
        StoreError when it cannot be reached."""
        if rebuild:
            self.store.recreate()
            self.journal.requeue_all()
        else:
            self.store.ensure_schema()

    def drain(self, on_progress: Callable[[int], None] | None = None) -> IngestStats:
        """Embed the journal's whole backlog now, in this thread, reporting each batch's count. Raises
        EmbedderError or StoreError; what is not done stays queued."""
        self.worker.drain(on_progress=on_progress)
        return self.worker.stats

    def finish_forgetting(self) -> int:
        """Finish every recorded deletion now, in this thread, with what an earlier process left
        (the finisher's one pass); returns how many. Raises StoreError while the store refuses."""
        return self.forgetter.finish()

    def store_stats(self) -> StoreStats:
        """The store's size. Raises StoreLocked while another process holds it, StoreError otherwise."""
        return self.store.stats()

    def optimize_here(self) -> bool:
        """Build the store's index now; whether anything changed. The embedded store builds it in this
        process (where a serving gateway forks a child to keep answering); a server indexes itself."""
        optimize_here = getattr(self.store, "optimize_here", None)
        return optimize_here() if optimize_here is not None else self.store.optimize()

    def stats(self) -> dict[str, Any]:
        """Backlog and progress of the whole memory path, for the operator's /memory/stats."""
        result: dict[str, Any] = {
            "backlog": self.journal.backlog(),
            "journal": self.journal.count(),
            "worker": {"running": self.worker.running, **self.worker.stats.as_dict()},
            "embedder": {"loaded": self.embedder.loaded, "threads": self.embedder.threads},
        }
        if self.schema_error:
            result["schema_error"] = self.schema_error
        try:
            store = self.store.stats()
            result["store"] = {
                "backend": store.backend,
                "points": store.points,
                "indexed_vectors": store.indexed_vectors,
            }
        except StoreError as exc:
            result["store"] = {"error": str(exc)}
        return result

    # --- what callers ask of memory; every one is scoped to a tenant ---------------------------------

    async def search(
        self,
        flt: SearchFilter,
        *,
        text: str | None = None,
        image: str | None = None,
        target: Target = "all",
        limit: int = 10,
    ) -> SearchOutcome:
        """Exactly one of `text` / `image` (a URL or data: URL, loaded with the gateway's guarded fetch).

        Raises ImageError (param `image`) for the client's image, BackendUnavailable when the model or the
        store fails.
        """
        loaded = None
        if image is not None:
            try:
                loaded = await self.image_loader.load(image)
            except ImageError as exc:
                exc.param = "image"
                raise
        self.worker.touch()
        try:
            outcome = await _blocking(self.searcher.search, flt, text=text, image=loaded.data if loaded else None,
                                      image_sha256=loaded.sha256 if loaded else None, target=target, limit=limit)
        except ImageDecodeError:
            # Its message names an index in a batch, which means nothing to a client that sent one image.
            raise ImageError("image: the image cannot be decoded", param="image") from None
        except (EmbedderError, StoreError) as exc:
            metrics.retrieval("search", None)
            raise BackendUnavailable("search") from exc
        metrics.retrieval("search", len(outcome.hits))
        return outcome

    async def recall(self, flt: SearchFilter, query: RecallQuery, *, k: int) -> list[Source]:
        """The past exchanges (within `flt`) that bear on `query`, best first, at most `k`.

        Raises BackendUnavailable when the model or the store fails; the caller goes on without memory.
        """
        self.worker.touch()
        try:
            sources = await _blocking(self.retriever.recall, query, flt, k=k, thresholds=self.thresholds)
        except (EmbedderError, StoreError) as exc:
            metrics.retrieval("chat", None)
            raise BackendUnavailable("memory") from exc
        metrics.retrieval("chat", len(sources))
        return sources

    async def exchange(self, tenant: str, exchange_id: str) -> Exchange:
        """The tenant's exchange. NotFound for one that does not exist and for another tenant's alike."""
        exchange = await _blocking(self.journal.get, exchange_id)
        if exchange is None or exchange.tenant != tenant:
            raise NotFound(f"No exchange with id {exchange_id!r}.", param="exchange_id", code="exchange_not_found")
        return exchange

    async def forget(self, tenant: str, exchange_id: str) -> None:
        """Forget the tenant's exchange (gateway.memory.forget): gone from every read path when this
        returns; its points and image files are deleted by the finisher right after, retried for as long
        as the store refuses. NotFound for one that does not exist and for another tenant's alike."""
        forgotten = await _blocking(self.forgetter.forget, tenant, [exchange_id])
        if not forgotten:
            raise NotFound(f"No exchange with id {exchange_id!r}.", param="exchange_id", code="exchange_not_found")

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

    async def image_access(self, tenant: str, sha256: str) -> None:
        """NotFound unless one of the tenant's exchanges carries the image: what a conditional request
        (the caller holds the bytes already) still has to pass."""
        await self._image_mime(tenant, sha256)

    async def _image_mime(self, tenant: str, sha256: str) -> str:
        """The image's MIME type if one of the tenant's exchanges carries it, ingested or not; NotFound
        otherwise (another tenant's image alike, and a forgotten exchange's from the moment it is)."""
        if not _SHA256.match(sha256):
            raise _image_not_found()
        mime = await _blocking(self.journal.image_mime, tenant, sha256)
        if not mime:
            raise _image_not_found()
        return mime

    # --- browsing and thumbnails (the web page's grids) -----------------------------------------------

    @functools.cached_property
    def thumbnails(self) -> Thumbnails:
        # A cache in local files, whichever BlobStore keeps the originals; decoded within the budget CLIP's
        # decodes share.
        return Thumbnails(self.thumbnails_dir, self.embedder.decoder)

    async def list_exchanges(self, tenant: str, query: ExchangeQuery) -> ExchangePage:
        """The tenant's exchanges, newest first, one page; InvalidRequest for a cursor it did not make."""
        before = decode_cursor(query.cursor) if query.cursor else None
        rows = await _blocking(self.journal.recent, tenant, limit=query.limit + 1, before=before,
                               time_from=query.time_from, time_to=query.time_to, models=query.models,
                               user=query.user)
        page, more = rows[: query.limit], len(rows) > query.limit
        return ExchangePage(page, encode_cursor(page[-1]) if more else None)

    async def thumbnail(self, tenant: str, sha256: str, size: int) -> StoredImage:
        """A small WebP of an image the tenant's exchanges carried (made once, then read from disk);
        NotFound exactly where `image` answers it."""
        await self._image_mime(tenant, sha256)
        try:
            data = await self.thumbnails.get(sha256, size, self.blobs)
        except (ImageError, OSError) as exc:  # stored bytes were verified once: not expected
            log.warning("thumbnail of %s failed: %s", sha256, exc)
            raise _image_not_found() from exc
        if data is None:
            raise _image_not_found()
        return StoredImage(data, THUMBNAIL_MIME)

    async def tenant_stats(self, tenant: str) -> dict[str, Any]:
        """One tenant's backlog and stored points (None while the store is unavailable)."""
        return await _blocking(self._tenant_stats, tenant)

    async def all_stats(self, tenants: list[str]) -> dict[str, Any]:
        """The whole memory path, and each of `tenants`' points and backlog."""
        return await _blocking(self._all_stats, tenants)

    def _tenant_stats(self, tenant: str) -> dict[str, Any]:
        result: dict[str, Any] = {"tenant": tenant, "backlog": self.journal.backlog(tenant)}
        try:
            result["points"] = self.store.count(tenant)
        except StoreError as exc:
            log.warning("memory stats: the store is unavailable: %s", exc)
            result["points"] = None
        return result

    def _all_stats(self, tenants: list[str]) -> dict[str, Any]:
        result = self.stats()
        if "error" not in result["store"]:
            try:
                result["tenants"] = {t: {"points": self.store.count(t), "backlog": self.journal.backlog(t)}
                                     for t in tenants}
            except StoreError as exc:
                result["store"] = {"error": str(exc)}
        return result
