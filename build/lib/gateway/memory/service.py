"""`Memory`: the one object memory is, built by the runtime (gateway.runtime) and called by the memory
routes, the chat's retrieval and the CLI. What was recorded is read and forgotten through history
(gateway.history), memory on or off; memory adds search and retrieval, and `points`, the store's part
of forgetting, which the runtime hands to history.

    memory = Memory.from_settings(settings, journal, blobs, image_loader=loader)
    memory.start()       # a gateway: opens the store (StoreLocked if held elsewhere), starts ingest and
                         # the thread that purges the store
    memory.open()        # or a process that serves nothing (a CLI command): the store alone, the
                         # command's work (drain, forget, ...) done in its own thread
    ...
    await memory.stop()  # after history stopped, before the journal closes; unfinished work stays queued
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from anyio import to_thread

from gateway import metrics
from gateway.errors import BackendUnavailable
from gateway.images import ImageDecoder, ImageError, ImageLoader
from gateway.journal import BlobStore, Journal
from gateway.memory.batching import BatchedClip, BatchedText
from gateway.memory.embed import ClipEmbedder, EmbedderError, ImageDecodeError
from gateway.memory.forget_points import StorePoints
from gateway.memory.ingest import IngestStats, IngestWorker, MaintenancePolicy
from gateway.memory.purge import PurgeScheduler
from gateway.memory.quantized import int8_clip, int8_sentences
from gateway.memory.retrieval import RecallQuery, Retriever, Source, Thresholds
from gateway.memory.reuse import VectorReuse
from gateway.memory.search import Searcher, SearchOutcome
from gateway.memory.store.base import SearchFilter, StoreError, StoreStats, Target, VectorStore
from gateway.memory.text_embed import TextEncoders
from gateway.memory.texts import JournalTexts

if TYPE_CHECKING:
    from gateway.settings import Settings

log = logging.getLogger("visionrag.memory")


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
        owns_loader: bool = False,
        thresholds: Thresholds | None = None,
        text: TextEncoders | None = None,
        purge_after_s: float = 600.0,
    ) -> None:
        self.journal = journal
        self.blobs = blobs
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
        # What history's forgetter deletes of a forgotten exchange in the store (gateway.history.forget).
        self.points = StorePoints(store)
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
        worker_name: str = "gateway",
    ) -> Memory:
        """Build everything; open nothing yet (no model load, no store connection) until `start()`.

        Pass the app's own `image_loader` to share its HTTP session; otherwise one is made from the
        same settings (same guarded fetch, same limits). `store` overrides the settings' choice (tests).
        `worker_name`: whose claims the ingest worker takes on a journal shared with other workers.
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
            name=worker_name,
            lease_s=settings.worker_lease_s,
            # An embedded store is this process's alone: beside other workers' it must not keep copies
            # of what they stored.
            private_store=settings.shared_journal and settings.qdrant_url is None,
        )
        owns = image_loader is None
        loader = image_loader or ImageLoader.from_settings(settings)
        thresholds = Thresholds.parse(settings.memory_min_scores, image=settings.memory_min_image_score,
                                      text=settings.memory_min_text_score, sentence=settings.memory_min_sentence_score,
                                      terms=settings.memory_min_terms_score)
        return cls(journal, blobs, embedder, store, worker, loader, owns_loader=owns, thresholds=thresholds,
                   text=text, purge_after_s=settings.memory_purge_after_s)

    def start(self, *, background: bool = True) -> None:
        """Open the store, start the ingest worker and the store's purge. Raises StoreLocked if another
        process holds the embedded store. A Qdrant server that is down is not an error here: the worker
        (and history's finisher of deletions) retry. `background=False` (a gateway on a shared journal,
        whose `visionrag worker`s do that work): the store alone, for search and retrieval."""
        if self._started:
            return
        try:
            self.store.ensure_schema()
        except StoreError as exc:
            from gateway.memory.store.base import SchemaMismatch, StoreLocked, StoreUnavailable

            if isinstance(exc, SchemaMismatch):
                # Chats still work and are journaled; memory waits for the rebuild instead of writing
                # points the store cannot take. History's finisher still finishes deletions as far as
                # the store lets it.
                log.error("memory: search and ingest are OFF until the store is rebuilt: %s", exc)
                self.schema_error = str(exc)
                return
            if isinstance(exc, StoreLocked) or not isinstance(exc, StoreUnavailable):
                raise
            log.warning("memory: vector store unavailable at start-up (will retry): %s", exc)
        if not background:
            return
        self.purger.start()
        # The worker loads CLIP first thing on its own thread: start-up is not delayed, and the first
        # search does not pay the load.
        self.worker.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            await asyncio.to_thread(self.purger.stop)
            await asyncio.to_thread(self.worker.stop)
            self._started = False
        await asyncio.to_thread(self.store.close)
        if self._owns_loader:
            await self.image_loader.fetcher.close()

    # --- one-off use, in a process that serves nothing (the CLI): nothing runs in the background ------

    def open(self, *, rebuild: bool = False) -> None:
        """Open the store for this process, starting nothing (no ingest worker or purge thread): a
        command's work is done in its own thread, then `stop()` closes the store.
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
