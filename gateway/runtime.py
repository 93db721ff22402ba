"""The composition root: everything the gateway runs on, built once from the settings.

    runtime = Runtime.from_settings(settings)   # builds; opens nothing
    await runtime.start()                       # the upstream pool, memory (ingest, purge), then history's
                                                # finisher of deletions and retention sweeper
    ...
    await runtime.close()

The HTTP app (gateway.api.app), the CLI and the benchmarks all build their objects here, so each
object is made one way: the journal, the blob store, the image loader, the upstream pool, history
(always), memory (unless disabled) and the chat service that puts memory into answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gateway.auth import Authenticator
from gateway.history.service import History
from gateway.images import ImageLoader
from gateway.journal import BlobStore, Journal, open_blobs, open_journal
from gateway.memory.service import Memory
from gateway.memory.store.base import VectorStore
from gateway.proxy.augment import Augmenter
from gateway.proxy.chat import ChatProxy
from gateway.proxy.recorder import Recorder
from gateway.proxy.upstream import UpstreamPool
from gateway.settings import Settings


class SharedStateError(ValueError):
    """Settings that several gateway replicas cannot run on; the message says what to set."""


def check_shared_state(settings: Settings) -> None:
    """A journal shared by several processes needs vectors they all see: an embedded store (Qdrant
    Edge, under this process's data dir) would give each replica its own memory."""
    if settings.memory_enabled and _edge_on_shared(settings):
        raise SharedStateError(
            "VISIONRAG_DATABASE_URL makes the journal shared by several processes, but memory would "
            "keep its vectors in an embedded store (Qdrant Edge) only this process sees. Set "
            "VISIONRAG_QDRANT_URL to a Qdrant server or Qdrant Cloud, or VISIONRAG_MEMORY_ENABLED=false "
            "(history, images and forgetting work without memory).")


def _edge_on_shared(settings: Settings) -> bool:
    return settings.shared_journal and settings.qdrant_url is None


@dataclass
class Runtime:
    settings: Settings
    auth: Authenticator
    journal: Journal
    blobs: BlobStore
    loader: ImageLoader
    pool: UpstreamPool
    chat: ChatProxy
    history: History
    memory: Memory | None

    @classmethod
    def from_settings(cls, settings: Settings, *, store: VectorStore | None = None,
                      worker_name: str | None = None) -> Runtime:
        """Build everything the settings ask for; nothing is opened or loaded until `start()`.
        `store` replaces the vector store the settings choose (tests). `worker_name`: this process is
        the `visionrag worker` of that name, whose vector store may be its own (`for_worker`). Raises
        SharedStateError for a combination replicas cannot run on."""
        if store is None and worker_name is None:
            check_shared_state(settings)
        journal = open_journal(settings)
        blobs = open_blobs(settings)
        loader = ImageLoader.from_settings(settings)
        pool = UpstreamPool(
            settings.upstream_urls,
            api_key=settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=settings.upstream_read_timeout_s,
            health_interval_s=settings.upstream_health_interval_s,
        )
        memory = None
        if settings.memory_enabled:
            memory = Memory.from_settings(settings, journal, blobs, image_loader=loader, store=store,
                                          worker_name=worker_name or "gateway")
        # With memory on, forgetting deletes the store's points too, and thumbnails are decoded within
        # the budget CLIP's decodes share.
        history = History.from_settings(settings, journal, blobs,
                                        decoder=memory.embedder.decoder if memory is not None else None,
                                        points=memory.points if memory is not None else None)
        chat = ChatProxy(
            pool, loader,
            # Across a network a commit or an upload would hold the event loop: then they go to threads.
            Recorder(journal, blobs, offload=settings.shared_journal or settings.blob_url is not None),
            settings.max_images_per_request,
            # Chats put memory into answers when asked (or by default), through the memory service; a
            # cited source's image comes from history.
            augmenter=Augmenter.from_settings(settings, memory, history, pool),
            default_model=settings.default_model,
        )
        auth = Authenticator(settings.tenants_by_key, settings.default_tenant, settings.admin_keys)
        return cls(settings, auth, journal, blobs, loader, pool, chat, history, memory)

    @classmethod
    def for_command(cls, settings: Settings, *, threads: int | None = None) -> Runtime:
        """For a process that serves nothing (a CLI command, a benchmark): memory is built even where the
        gateway runs without it, since the data dir's exchanges can still be searched, and forgetting
        deletes their points; `threads` replaces the models' thread count. Start nothing:
        `memory.open()` opens the store alone (no ingest worker, no background thread); `close()`
        closes what was opened. On a shared journal without a Qdrant server memory stays as the settings
        say (no embedded store of this process's own: the workers' stores are elsewhere)."""
        update: dict[str, object] = {"memory_enabled": settings.memory_enabled or not _edge_on_shared(settings)}
        if threads is not None:
            update["embed_threads"] = threads
        return cls.from_settings(settings.model_copy(update=update))

    @classmethod
    def for_worker(cls, settings: Settings, name: str) -> Runtime:
        """For `visionrag worker`: memory always (its background work is the point), claiming the
        journal's backlog as `name`. Its store may be an embedded one of its own (tests, experiments):
        no gateway searches it, but no exchange lands in two workers' stores either."""
        return cls.from_settings(settings.model_copy(update={"memory_enabled": True}), worker_name=name)

    async def start(self) -> None:
        await self.pool.start()
        if self.memory is not None:
            # Opens the store: fails start-up with a clear error if another process holds it. On a shared
            # journal the workers ingest, unless this gateway is told to (Settings.ingest_here).
            await asyncio.to_thread(self.memory.start, background=self.settings.ingest_here)
        # After the store is open (the finisher deletes points in it). A gateway on a shared journal
        # leaves deletions and retention to the workers.
        if self.settings.ingest_here:
            self.history.start()

    async def close(self) -> None:
        try:
            await self.chat.recorder.drain()  # exchanges whose recording is under way, before the journal closes
            await self.history.stop()  # before the store closes; unfinished deletions stay recorded
            if self.memory is not None:
                await self.memory.stop()  # before the journal closes; unfinished work stays queued
        finally:
            await self.loader.fetcher.close()
            await self.pool.close()
            self.journal.close()
